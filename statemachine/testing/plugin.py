"""The pytest plugin (entry point ``pytest11``, name ``phasekit``): fixtures and hooks.

Installed with phasekit, it gives every test suite ``clock``, ``phase_set``,
``tracker_plugins``, ``tracker`` and ``webhook_receiver``, the ``phase_set`` marker, test
ids for ``all_paths``, and the summary of store conformance tests that did not apply.
``-p no:phasekit`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from statemachine import MemoryStore, PhaseSet, Tracker, load_spec, spec_from_dict

from .clock import Clock
from .conformance import CONFORMANCE_PROPERTY
from .history import tracker_in_use
from .paths import StatusPath
from .webhooks import WebhookReceiver

__all__ = [
    "DEFAULT_PHASE_SET",
    "clock",
    "phase_set",
    "pytest_configure",
    "pytest_make_parametrize_id",
    "pytest_terminal_summary",
    "tracker",
    "tracker_plugins",
    "webhook_receiver",
]

#: The phase set of the ``tracker`` fixture when no marker or fixture says otherwise.
DEFAULT_PHASE_SET = "ingestion"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "phase_set(spec): the phase set of phasekit's `tracker` fixture: a bundled name, a "
        "YAML file (relative to the test's file or the working directory), a PhaseSet or a dict",
    )


def _phase_set_of(value: object, test_file: Path) -> PhaseSet:
    """The phase set a ``phase_set`` marker names."""
    if isinstance(value, PhaseSet):
        return value
    if isinstance(value, Mapping):
        return spec_from_dict(value)
    if isinstance(value, str | os.PathLike):
        beside = test_file.parent / value
        return load_spec(beside if beside.is_file() else value)
    raise TypeError(
        "@pytest.mark.phase_set takes a bundled name, a path, a PhaseSet or a dict, "
        f"not {type(value).__name__}"
    )


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves (``clock.advance("5m")``); the ``tracker`` fixture reads it."""
    return Clock()


@pytest.fixture
def phase_set(request: pytest.FixtureRequest) -> PhaseSet:
    """The phase set of the ``tracker`` fixture: ``@pytest.mark.phase_set(...)``, else
    the bundled ``ingestion``. Override the fixture to choose one for a whole module."""
    marker = request.node.get_closest_marker("phase_set")
    if marker is None:
        return load_spec(DEFAULT_PHASE_SET)
    if len(marker.args) != 1 or marker.kwargs:
        raise TypeError("@pytest.mark.phase_set takes one argument: the phase set")
    return _phase_set_of(marker.args[0], Path(str(request.node.path)))


@pytest.fixture
def tracker_plugins() -> list[object]:
    """Plugin objects the ``tracker`` fixture gets (none): override it to add yours."""
    return []


@pytest.fixture
def tracker(phase_set: PhaseSet, clock: Clock, tracker_plugins: list[object]) -> Iterator[Tracker]:
    """A ``Tracker`` of ``phase_set`` on a fresh memory store, reading ``clock``, with
    ``tracker_plugins`` and no entry-point plugins; closed after the test."""
    with (
        Tracker(
            phase_set,
            store=MemoryStore(),
            plugins=tracker_plugins,
            clock=clock,
            load_entrypoints=False,
        ) as opened,
        tracker_in_use(opened),
    ):
        yield opened


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on 127.0.0.1 verifying Standard Webhooks signatures with its
    ``secret``; stopped after the test."""
    with WebhookReceiver() as receiver:
        yield receiver


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Readable ids for ``all_paths``: ``test_x[completed-via-start-complete]``."""
    return val.id if isinstance(val, StatusPath) else None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the store conformance tests that did not apply to a store, and why."""
    reasons: dict[str, list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        for key, value in getattr(report, "user_properties", ()):
            if key == CONFORMANCE_PROPERTY:
                reasons.setdefault(str(value), []).append(report.nodeid.partition("::")[2])
    if not reasons:
        return
    terminalreporter.section("phasekit store conformance: not applicable")
    for reason, tests in reasons.items():
        terminalreporter.write_line(f"{reason} ({', '.join(tests)})")
