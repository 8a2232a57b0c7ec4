"""Deadlines of a phase set: when a phase in a status stops waiting, and why.

A status may declare a ``timeout`` (counted from entering the status) and a ``heartbeat``
(counted from the phase's last change or progress report). The phase's deadline is the
earlier of the two; every commit stores it with the phase, so a store finds the phases past
their deadline from an index, and a sweep fires the status's ``on_timeout`` trigger on them.

A deadline is never left out for want of a timestamp: when a record does not say when the
phase entered its status (it was written before phasekit kept that, or before the phase set
had a deadline), the phase's last change stands in for it, then the job's creation, and the
phase's next report stores that stand-in. A phase stored before its status had a deadline
has none in the store until a tracker's first sweep gives it one (``Tracker.sweep`` dates
such phases before it claims), so it is swept like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..limits import format_duration
from ..spec import PhaseSetDef
from ..store import PhaseRecord

__all__ = ["DeadlineRule", "Deadlines", "Overdue"]


@dataclass(frozen=True, slots=True)
class DeadlineRule:
    """The deadlines of one status, and the trigger fired when one passes."""

    status: str
    timeout: timedelta | None
    heartbeat: timedelta | None
    on_timeout: str

    def describe(self) -> str:
        """``timeout 2h, heartbeat 5m`` (what diagrams and listings show)."""
        parts = []
        if self.timeout is not None:
            parts.append(f"timeout {format_duration(self.timeout)}")
        if self.heartbeat is not None:
            parts.append(f"heartbeat {format_duration(self.heartbeat)}")
        return ", ".join(parts)

    def short(self) -> str:
        """``⏱ 2h`` (``⏱ 2h ♥ 5m`` with a heartbeat): the label a diagram puts on the status."""
        parts = []
        if self.timeout is not None:
            parts.append(f"⏱ {format_duration(self.timeout)}")
        if self.heartbeat is not None:
            parts.append(f"♥ {format_duration(self.heartbeat)}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Overdue:
    """A phase past its deadline: the trigger to fire and the error that says why."""

    trigger: str
    error: str
    deadline: datetime


class Deadlines:
    """The deadline rules of a phase set, by status; empty when it declares none."""

    __slots__ = ("rules",)

    def __init__(self, definition: PhaseSetDef) -> None:
        self.rules: dict[str, DeadlineRule] = {
            name: DeadlineRule(name, s.timeout_after, s.heartbeat_after, s.on_timeout)
            for name, s in definition.statuses.items()
            if s.has_deadline and s.on_timeout is not None
        }

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule(self, status: str) -> DeadlineRule | None:
        """The deadlines of ``status``, or None."""
        return self.rules.get(status)

    def next_deadline(
        self, status: str, entered_at: datetime | None, last_change: datetime | None
    ) -> datetime | None:
        """The deadline of a phase in ``status`` that entered it at ``entered_at`` and last
        changed at ``last_change`` (either may stand in for the other when missing)."""
        rule = self.rules.get(status)
        if rule is None:
            return None
        return _earliest(rule, entered_at or last_change, last_change or entered_at)[0]

    def of_record(self, phase: PhaseRecord, created_at: datetime) -> datetime | None:
        """The deadline ``phase`` (a phase of a job created at ``created_at``) has now."""
        rule = self.rules.get(phase.status)
        if rule is None:
            return None
        entered = phase.entered_at or phase.updated_at or created_at
        return _earliest(rule, entered, phase.updated_at or entered)[0]

    def overdue(self, phase: PhaseRecord, created_at: datetime, now: datetime) -> Overdue | None:
        """Why ``phase`` is past its deadline at ``now``, or None when it is not."""
        rule = self.rules.get(phase.status)
        if rule is None:
            return None
        entered = phase.entered_at or phase.updated_at or created_at
        deadline, which = _earliest(rule, entered, phase.updated_at or entered)
        if deadline is None or deadline > now:
            return None
        if which == "heartbeat":
            assert rule.heartbeat is not None
            error = f"heartbeat of {format_duration(rule.heartbeat)} missed in status {rule.status}"
        else:
            assert rule.timeout is not None
            error = f"timeout of {format_duration(rule.timeout)} passed in status {rule.status}"
        return Overdue(rule.on_timeout, error, deadline)


def _earliest(
    rule: DeadlineRule, entered: datetime | None, last_change: datetime | None
) -> tuple[datetime | None, str]:
    """The earlier of the status's deadlines, and which one it is."""
    best: datetime | None = None
    which = ""
    if rule.timeout is not None and entered is not None:
        best, which = entered + rule.timeout, "timeout"
    if rule.heartbeat is not None and last_change is not None:
        beat = last_change + rule.heartbeat
        if best is None or beat < best:
            best, which = beat, "heartbeat"
    return best, which
