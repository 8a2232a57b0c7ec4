"""Planning a change to one phase without touching it: what a commit saves, then applies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .compiler import Outcome
from .errors import InvalidTransition, TransitionRejected
from .limits import check_count, check_error
from .records import PhaseRecord

if TYPE_CHECKING:
    from .job import JobState
    from .phase import PhaseState

__all__ = ["Change", "plan_progress", "plan_transition"]


@dataclass(slots=True)
class Change:
    """A planned change to one phase: its status before, the phase after, and the cause.

    Built on every trigger, so it is a plain slotted class; nothing mutates it once planned.
    """

    index: int
    source: str
    after: PhaseRecord
    at: datetime
    trigger: str | None = None
    transition: int | None = None
    error: str | None = None
    data: Mapping[str, Any] | None = None

    @property
    def phase(self) -> str:
        return self.after.phase_name

    @property
    def is_transition(self) -> bool:
        return self.trigger is not None


def plan_transition(
    job: JobState,
    phase: PhaseState,
    trigger: str,
    error: str | None,
    data: Mapping[str, Any],
) -> Change:
    """Check ``trigger`` (source status, guards) and compute the phase it leads to.

    Raises ``InvalidTransition`` or ``TransitionRejected``; changes nothing either way.
    """
    spec = job.spec
    status = phase.status
    compiled = spec.compiled
    fixed = compiled.fixed.get((trigger, status))
    if fixed is None and trigger not in compiled.allowed.get(status, ()):
        raise _invalid(job, phase, trigger)
    error = check_error(error)
    if fixed is not None:
        dest, transition = fixed
    else:  # guards decide: drive the machine on a stand-in
        outcome = Outcome(job, phase, trigger, error, data)
        if not compiled.drive(outcome):
            raise TransitionRejected(
                job_id=job.job_id,
                phase=phase.phase_name,
                trigger=trigger,
                reason="; ".join(outcome.rejected) or "no transition's guards passed",
            )
        dest, transition = outcome.status, outcome.transition
    flags = spec.status_def(dest)
    now = datetime.now(UTC)
    index = phase._index
    before = job._phases[index]
    after = PhaseRecord._build(
        before.phase_name,
        dest,
        100.0 if flags.success else before.progress,  # progress
        before.items_processed,
        before.items_total,
        before.started_at or (now if flags.active else None),  # started_at
        now if flags.terminal else None,  # completed_at
        now,  # updated_at
        error if error is not None else (before.error if flags.terminal else None),
    )
    return Change(
        index=index,
        source=status,
        after=after,
        at=now,
        trigger=trigger,
        transition=transition,
        error=error,
        data=data,
    )


def _invalid(job: JobState, phase: PhaseState, trigger: str) -> InvalidTransition:
    spec = job.spec
    return InvalidTransition(
        job_id=job.job_id,
        phase=phase.phase_name,
        trigger=trigger,
        status=phase.status,
        allowed=spec.allowed_triggers(phase.status),
        reason=None if spec.has_trigger(trigger) else f"phase set has no trigger {trigger!r}",
    )


def plan_progress(
    job: JobState, phase: PhaseState, items_processed: int, items_total: int | None
) -> Change:
    """Compute the phase after a progress report; the rules of DESIGN's progress section."""
    spec = job.spec
    if spec.status_def(phase.status).terminal:
        raise InvalidTransition(
            job_id=job.job_id,
            phase=phase.phase_name,
            trigger="update_progress",
            status=phase.status,
            allowed=spec.allowed_triggers(phase.status),
            reason=f"progress cannot change in terminal status {phase.status!r}",
        )
    processed = check_count("items_processed", items_processed)
    total = phase.items_total if items_total is None else check_count("items_total", items_total)
    if total is not None and processed > total:
        raise ValueError(f"items_processed ({processed}) is greater than items_total ({total})")
    if total is None:
        progress = phase.progress
    else:
        cap = spec.progress_cap
        progress = cap if total == 0 else min(cap, 100.0 * processed / total)
    now = datetime.now(UTC)
    before = job._phases[phase._index]
    after = PhaseRecord._build(
        before.phase_name,
        before.status,
        progress,
        processed,
        total,
        before.started_at,
        before.completed_at,
        now,  # updated_at
        before.error,
    )
    return Change(index=phase._index, source=phase.status, after=after, at=now)
