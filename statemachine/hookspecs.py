"""The hooks phasekit calls: the contract between phasekit and its plugins."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pluggy

from .context import Action, Guard
from .events import JobCreated, JobStatusChanged, PhaseChanged, ProgressUpdated, TransitionRequest
from .store import Store

__all__ = ["PROJECT", "Veto", "hookimpl", "hookspec"]

#: The pluggy project name and the entry-point group of plugins.
PROJECT = "phasekit"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's hook implementation: ``@hookimpl def phase_changed(self, event): ...``
hookimpl = pluggy.HookimplMarker(PROJECT)

StoreFactory = Callable[..., Store]


@dataclass(frozen=True, slots=True)
class Veto:
    """Returned from ``before_transition`` to reject the transition, saying why."""

    reason: str


# Collect hooks: called when a Tracker is built; every plugin's answer is merged.


@hookspec
def register_stores() -> Mapping[str, StoreFactory] | None:
    """Stores by URL scheme; ``factory(url, **options)`` returns a Store."""


@hookspec
def register_notifiers() -> Mapping[str, Callable[..., object]] | None:
    """Notifiers by name for config files: ``factory(**options)`` returns a plugin object."""


@hookspec
def register_guards() -> Mapping[str, Guard] | None:
    """Guards by name, referenced by a transition's ``conditions`` and ``unless``."""


@hookspec
def register_actions() -> Mapping[str, Action] | None:
    """Actions by name, referenced by a transition's ``after``."""


# Veto hook: every implementation is asked before a transition is saved.


@hookspec
def before_transition(event: TransitionRequest) -> Veto | None:
    """Return a ``Veto`` to reject a transition that passed its guards; None lets it pass."""


# Notification hooks: called after the change is committed, each implementation isolated.


@hookspec
def job_created(event: JobCreated) -> None:
    """A job was created and stored."""


@hookspec
def phase_changed(event: PhaseChanged) -> None:
    """A phase changed status; the change is committed."""


@hookspec
def progress_updated(event: ProgressUpdated) -> None:
    """A phase's counters changed; the change is committed."""


@hookspec
def job_status_changed(event: JobStatusChanged) -> None:
    """The job's overall status or current phase changed; the change is committed."""
