"""What the store conformance suite's parts share: the knobs, failing, skipping, comparing."""

from __future__ import annotations

from typing import ClassVar

import pytest

from statemachine import EventLog, LoggedEvent, Store

from .records import differences

__all__ = ["CONFORMANCE_PROPERTY", "Duties", "fail", "read_log", "same_record"]

#: The ``user_properties`` key of a conformance test that did not apply to the store; the
#: plugin prints these at the end of the run, so a declaration is never silent.
CONFORMANCE_PROPERTY = "phasekit-conformance"


def fail(message: str) -> None:
    """Fail the test with ``message`` alone (no traceback: the message says it all)."""
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


def same_record(got: object, want: object, what: str) -> None:
    """Fail, listing each differing field, unless ``got`` equals ``want``."""
    __tracebackhide__ = True
    if got == want:
        return
    found = differences(got, want) or [f"{got!r} != {want!r}"]
    fail(f"{what}:\n  " + "\n  ".join(found))


def read_log(log: EventLog, after: int = 0) -> list[LoggedEvent]:
    """Every logged event above position ``after``, page by page."""
    found: list[LoggedEvent] = []
    while page := log.read_events(after, limit=500):
        found += page
        after = page[-1].position
    return found


class Duties:
    """The knobs of the suite, and how its tests say a part of the contract does not apply."""

    #: Whether several processes may share one store (a file, a database).
    multiprocess: ClassVar[bool] = True
    #: Threads, and processes, adding to one counter at once.
    threads: ClassVar[int] = 4
    processes: ClassVar[int] = 3
    #: Increments each thread or process makes.
    increments: ClassVar[int] = 25

    def not_applicable(self, request: pytest.FixtureRequest, reason: str) -> None:
        """Skip the test, and have the plugin print ``reason`` at the end of the run."""
        __tracebackhide__ = True
        request.node.user_properties.append((CONFORMANCE_PROPERTY, reason))
        pytest.skip(reason)

    def event_log_of(self, store: Store, request: pytest.FixtureRequest) -> EventLog:
        """``store`` as an ``EventLog``; the test does not apply to a store without one."""
        if not isinstance(store, EventLog):
            self.not_applicable(
                request,
                f"{type(store).__name__} keeps no event log (statemachine.EventLog): a tracker "
                "on it delivers notifiers in-process only, and the relay cannot run on it",
            )
        assert isinstance(store, EventLog)
        return store
