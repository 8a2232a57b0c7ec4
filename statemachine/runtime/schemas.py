"""Pydantic models of phases and jobs, for web APIs and JSON output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..store import JobRecord, PhaseRecord

__all__ = ["JobStateSchema", "PhaseStateSchema", "job_schema", "phase_schema"]


class PhaseStateSchema(BaseModel):
    """One phase of a job."""

    model_config = ConfigDict(frozen=True)

    phase_name: str
    status: str
    progress: float = Field(ge=0, le=100)
    items_processed: int = Field(ge=0)
    items_total: int | None = Field(None, ge=0)
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    error: str | None = None
    entered_at: AwareDatetime | None = Field(
        None, description="When the phase entered its current status."
    )
    deadline: AwareDatetime | None = Field(
        None,
        description="When the phase's status stops waiting (its timeout or heartbeat); past "
        "it, a sweep fires the status's on_timeout trigger. Null when the status has none.",
    )
    allowed_triggers: list[str] | None = Field(
        None,
        description="Triggers declared from the phase's status, in declaration order (guards "
        "not asked); null when the phase set was not at hand.",
    )


class JobStateSchema(BaseModel):
    """A job: its aggregate (overall status, current phase, progress) and its phases in order."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    spec: str = Field(description="Name of the job's phase set.")
    status: str = Field(description="Overall status from the phase set's aggregation rules.")
    current_phase: str | None
    progress: float = Field(ge=0, le=100, description="Weighted progress of the phases.")
    version: int = Field(ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    phases: list[PhaseStateSchema]


def phase_schema(
    record: PhaseRecord, allowed: Callable[[str], Sequence[str]] | None = None
) -> PhaseStateSchema:
    """The API model of a stored phase; ``allowed(status)`` gives its allowed triggers."""
    schema = PhaseStateSchema.model_validate(record, from_attributes=True)
    if allowed is None:
        return schema
    return schema.model_copy(update={"allowed_triggers": list(allowed(record.status))})


def job_schema(
    record: JobRecord, allowed: Callable[[str], Sequence[str]] | None = None
) -> JobStateSchema:
    """The API model of a stored job, read from its record alone; with ``allowed`` (a phase
    set's ``allowed_triggers``), each phase says which triggers its status allows."""
    return JobStateSchema(
        job_id=record.job_id,
        spec=record.spec_name,
        status=record.status,
        current_phase=record.current_phase,
        progress=record.progress,
        version=record.version,
        metadata=dict(record.metadata),
        created_at=record.created_at,
        updated_at=record.updated_at,
        phases=[phase_schema(p, allowed) for p in record.phases],
    )
