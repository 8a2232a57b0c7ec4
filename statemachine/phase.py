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
    """

    __slots__ = (
        "_job",
        "completed_at",
        "error",
        "items_processed",
        "items_total",
        "phase_name",
        "progress",
        "started_at",
        "status",
        "updated_at",
    )

    phase_name: str
    status: str
    progress: float
    items_processed: int
    items_total: int | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime | None
    error: str | None

    def __init__(self, job: JobState, record: PhaseRecord) -> None:
        self._job = job
        self._load(record)

    def _load(self, r: PhaseRecord) -> None:
        self.phase_name = r.phase_name
        self.status = r.status
        self.progress = r.progress
        self.items_processed = r.items_processed
        self.items_total = r.items_total
        self.started_at = r.started_at
        self.completed_at = r.completed_at
        self.updated_at = r.updated_at
        self.error = r.error

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
        return PhaseRecord(
            phase_name=self.phase_name,
            status=self.status,
            progress=self.progress,
            items_processed=self.items_processed,
            items_total=self.items_total,
            started_at=self.started_at,
            completed_at=self.completed_at,
            updated_at=self.updated_at,
            error=self.error,
        )

    def to_schema(self) -> PhaseStateSchema:
        """The phase as a pydantic model, for APIs."""
        return PhaseStateSchema.model_validate(self.to_record(), from_attributes=True)

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
