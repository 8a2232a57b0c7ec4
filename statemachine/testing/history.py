"""``assert_history``: a job's phase changes against a compact list, with a readable failure."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeAlias

from statemachine import HISTORY_TYPES, HistoryEvent, JobState, PhaseChanged, Tracker

__all__ = ["Expected", "assert_history", "describe_change", "describe_event", "tracker_in_use"]

#: One expected change: ``(phase, trigger)``, ``(phase, trigger, error)``, ``"phase: trigger"``
#: or ``"phase: source -> dest"``.
Expected: TypeAlias = tuple[str, str] | tuple[str, str, str | None] | str

#: What ``assert_history`` reads a history from.
Subject: TypeAlias = (
    JobState | tuple[Tracker, str] | tuple[Tracker, JobState] | Sequence[HistoryEvent]
)

_ARROW = re.compile(r"^\s*(?P<phase>[^:]+?)\s*:\s*(?P<source>\S+)\s*->\s*(?P<dest>\S+)\s*$")
_TRIGGER = re.compile(r"^\s*(?P<phase>[^:]+?)\s*:\s*(?P<trigger>\S+)\s*$")

# Trackers of running ``tracker`` fixtures, newest last: ``assert_history(job, ...)`` finds a
# job's history in one of them.
_in_use: list[Tracker] = []


@contextmanager
def tracker_in_use(tracker: Tracker) -> Iterator[Tracker]:
    """Within the block, ``assert_history(job, ...)`` finds the history of ``tracker``'s jobs."""
    _in_use.append(tracker)
    try:
        yield tracker
    finally:
        _in_use.remove(tracker)


@dataclass(frozen=True, slots=True)
class _Want:
    """An expected change, parsed: the fields it pins (None: any)."""

    text: str
    phase: str
    trigger: str | None = None
    source: str | None = None
    dest: str | None = None
    error: str | None = None
    check_error: bool = False

    def matches(self, change: PhaseChanged) -> bool:
        return (
            change.phase == self.phase
            and self.trigger in (None, change.trigger)
            and self.source in (None, change.source)
            and self.dest in (None, change.dest)
            and (not self.check_error or change.error == self.error)
        )


def _parse(item: object, index: int) -> _Want:
    """An expected entry as a ``_Want``; a malformed one raises ``TypeError`` saying why."""
    if isinstance(item, str):
        if found := _ARROW.match(item):
            return _Want(item.strip(), found["phase"], source=found["source"], dest=found["dest"])
        if found := _TRIGGER.match(item):
            return _Want(item.strip(), found["phase"], trigger=found["trigger"])
    elif (
        isinstance(item, tuple)
        and len(item) in (2, 3)
        and all(isinstance(part, str) for part in item[:2])
        and (len(item) == 2 or item[2] is None or isinstance(item[2], str))
    ):
        if len(item) == 2:
            return _Want(f"{item[0]}: {item[1]}", item[0], trigger=item[1])
        error = item[2]
        return _Want(
            f"{item[0]}: {item[1]} (error {error!r})",
            item[0],
            trigger=item[1],
            error=error,
            check_error=True,
        )
    raise TypeError(
        f"expected history entry {index + 1} is {item!r}; write (phase, trigger), "
        "(phase, trigger, error), 'phase: trigger' or 'phase: source -> dest'"
    )


def describe_change(change: PhaseChanged) -> str:
    """``discovery: not_started -> running (start)``, with the error where there is one."""
    error = f", error {change.error!r}" if change.error is not None else ""
    return f"{change.phase}: {change.source} -> {change.dest} ({change.trigger}{error})"


def describe_event(event: HistoryEvent) -> str:
    """One line for any history event: a phase change, the creation, a deletion."""
    if isinstance(event, PhaseChanged):
        return describe_change(event)
    if event.type == "job_created":
        return f"created (version {event.version})"
    return f"{event.type.replace('_', ' ')} (version {event.version})"


def _history_of(subject: Subject) -> tuple[str, list[HistoryEvent]]:
    """The job's id (for messages) and its history."""
    if isinstance(subject, JobState):
        for tracker in reversed(_in_use):
            if tracker.store.load(subject.job_id) is not None:
                return subject.job_id, tracker.history(subject.job_id)
        raise TypeError(
            f"assert_history(job, ...) finds the history of jobs of the `tracker` fixture, and "
            f"job {subject.job_id!r} is not one; pass (tracker, job_id) or tracker.history(job_id)"
        )
    if (
        isinstance(subject, tuple)
        and len(subject) == 2
        and isinstance(subject[0], Tracker)
        and isinstance(subject[1], str | JobState)
    ):
        tracker, job = subject
        job_id = job if isinstance(job, str) else job.job_id
        return job_id, tracker.history(job_id)
    if isinstance(subject, Sequence):
        events = [e for e in subject if isinstance(e, HISTORY_TYPES)]
        if len(events) == len(subject):
            return (events[0].job_id if events else "?"), events
    raise TypeError(
        "assert_history() reads a history from a job of the `tracker` fixture, "
        f"(tracker, job_id) or a list of history events, not {type(subject).__name__}"
    )


def assert_history(subject: Subject, expected: Sequence[Expected]) -> None:
    """Check a job's phase changes, in order, against ``expected``.

    ``subject`` is a job of the ``tracker`` fixture, ``(tracker, job_id)``, or a list of
    history events (``await async_tracker.history(job_id)``). The job's creation, which
    every history starts with, is not listed. Each entry of ``expected`` pins the change at
    its place: ``("discovery", "start")`` or ``"discovery: start"`` (phase and trigger),
    ``("loading", "fail", "disk full")`` (and the error), or ``"discovery: not_started ->
    running"`` (phase, source and destination). On a mismatch the ``AssertionError`` shows
    every expected entry beside every change the job had.
    """
    __tracebackhide__ = True
    if isinstance(expected, str):
        raise TypeError("expected is a list of entries, not one string: wrap it in [...]")
    wants = [_parse(item, i) for i, item in enumerate(expected)]
    job_id, events = _history_of(subject)
    changes = [e for e in events if isinstance(e, PhaseChanged)]
    wrong = [
        i
        for i in range(max(len(wants), len(changes)))
        if i >= len(wants) or i >= len(changes) or not wants[i].matches(changes[i])
    ]
    if not wrong:
        return
    raise AssertionError(_mismatch(job_id, wants, changes, wrong))


def _mismatch(
    job_id: str, wants: list[_Want], changes: list[PhaseChanged], wrong: list[int]
) -> str:
    """The failure message: a row per entry, expected beside actual, wrong rows marked."""
    count = f"{len(wants)} expected, {len(changes)} in the history"
    lines = [f"history of job {job_id!r} differs at change {wrong[0] + 1} ({count}):"]
    left = [w.text for w in wants]
    right = [describe_change(c) for c in changes]
    width = max([len("expected"), *map(len, left)])
    lines.append(f"     #  {'expected':<{width}}  actual")
    for i in range(max(len(left), len(right))):
        mark = ">" if i in wrong else " "
        want = left[i] if i < len(left) else "-"
        got = right[i] if i < len(right) else "-"
        lines.append(f"  {mark} {i + 1:>2}  {want:<{width}}  {got}")
    return "\n".join(lines)
