"""Pydantic models of phases and jobs, for web APIs and JSON output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["JobStateSchema", "PhaseStateSchema"]


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
