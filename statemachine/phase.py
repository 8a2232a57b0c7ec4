"""One phase of a job: a light object the shared machine drives by trigger name."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .records import PhaseRecord
from .schemas import PhaseStateSchema

if TYPE_CHECKING:
    from .job import JobState

__all__ = ["PhaseState", "PhaseStatus"]


class PhaseStatus(StrEnum):
    """The statuses of the bundled ``ingestion`` phase set (the default)."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class PhaseState:
    """The state of one phase: status, progress, counters, timestamps and error.

    Each phase set makes a subclass with one method per declared trigger (``phase.start()``),
    so the methods are real attributes that ``dir()`` and editors see. Every change goes
    through the job, which checks it against the phase set and commits it where configured.

    A phase is a view of its job: the job holds the immutable ``PhaseRecord`` of each phase
    (shared with the record its store keeps), and a change replaces the record. The fields
    are read-only, always current, and two views of the same phase of the same job are equal.
    """

    __slots__ = ("_index", "_job")

    def __init__(self, job: JobState, index: int) -> None:
        self._job = job
        self._index = index

    @property
    def phase_name(self) -> str:
        """The phase's name in its phase set."""
        return self._job._phases[self._index].phase_name

    @property
    def status(self) -> str:
        """The current status (a ``PhaseStatus`` value for the default phase set)."""
        return self._job._phases[self._index].status

    @property
    def progress(self) -> float:
        """0.0 to 100.0; capped below 100 until a success status."""
        return self._job._phases[self._index].progress

    @property
    def items_processed(self) -> int:
        """Items processed, as last reported."""
        return self._job._phases[self._index].items_processed

    @property
    def items_total(self) -> int | None:
        """Items to process in all, when known."""
        return self._job._phases[self._index].items_total

    @property
    def started_at(self) -> datetime | None:
        """When the phase first entered an ``active`` status."""
        return self._job._phases[self._index].started_at

    @property
    def completed_at(self) -> datetime | None:
        """When the phase entered a ``terminal`` status."""
        return self._job._phases[self._index].completed_at

    @property
    def updated_at(self) -> datetime | None:
        """When the phase last changed; None until its first change."""
        return self._job._phases[self._index].updated_at

    @property
    def error(self) -> str | None:
        """The error the last trigger carried; cleared on entering a non-terminal status."""
        return self._job._phases[self._index].error

    @property
    def job(self) -> JobState:
        """The job this phase belongs to."""
        return self._job

    @property
    def weight(self) -> float:
        """The phase's share of the job's progress, from the phase set."""
        return self._job.spec.weight(self.phase_name)

    def trigger(self, name: str, error: str | None = None, **data: Any) -> None:
        """Fire trigger ``name``; ``error`` is recorded on the phase, ``data`` reaches guards."""
        self._job._fire(self, name, error, data)

    def may(self, trigger: str) -> bool:
        """Whether ``trigger`` would succeed now: allowed from this status and its guards pass."""
        return self._job._may(self, trigger)

    def allowed_triggers(self) -> list[str]:
        """Triggers declared from the current status, in declaration order (guards not asked)."""
        return list(self._job.spec.allowed_triggers(self.status))

    def update_progress(self, items_processed: int, items_total: int | None = None) -> None:
        """Record counters; with a known total, progress becomes ``100 * processed / total``."""
        self._job._update_progress(self, items_processed, items_total)

    def is_terminal(self) -> bool:
        """Whether the current status is flagged ``terminal``."""
        return self._job.spec.status_def(self.status).terminal

    def is_active(self) -> bool:
        """Whether the current status is flagged ``active``."""
        return self._job.spec.status_def(self.status).active

    def to_record(self) -> PhaseRecord:
        """An immutable snapshot, as stores keep it."""
        return self._job._phases[self._index]

    def to_schema(self) -> PhaseStateSchema:
        """The phase as a pydantic model, for APIs."""
        return PhaseStateSchema.model_validate(self.to_record(), from_attributes=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PhaseState):
            return NotImplemented
        return self._job is other._job and self._index == other._index

    def __hash__(self) -> int:
        return hash((id(self._job), self._index))

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.phase_name!r} of job {self._job.job_id!r}: "
            f"{self.status} {self.progress:.1f}%>"
        )


def _trigger_method(trigger: str) -> Any:
    def fire(self: PhaseState, error: str | None = None, **data: Any) -> None:
        self._job._fire(self, trigger, error, data)

    fire.__name__ = fire.__qualname__ = trigger
    fire.__doc__ = f"Fire {trigger!r} on this phase (see ``PhaseState.trigger``)."
    return fire


def phase_class(spec_name: str, triggers: list[str]) -> type[PhaseState]:
    """A ``PhaseState`` subclass with one method per trigger of a phase set."""
    namespace: dict[str, Any] = {"__slots__": (), "__module__": __name__}
    for trigger in triggers:
        namespace[trigger] = _trigger_method(trigger)
    title = "".join(part.capitalize() for part in spec_name.replace("-", "_").split("_"))
    return type(f"{title}PhaseState", (PhaseState,), namespace)
