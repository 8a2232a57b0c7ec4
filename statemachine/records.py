"""Immutable snapshots of a job and its phases: what stores save and load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

__all__ = ["JobRecord", "PhaseRecord"]


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    """One phase of a job as stored: the fields of ``PhaseState``."""

    phase_name: str
    status: str
    progress: float = 0.0
    items_processed: int = 0
    items_total: int | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored: its aggregate, its phases in order and its version."""

    job_id: str
    spec_name: str
    spec_fingerprint: str
    status: str
    current_phase: str | None
    progress: float
    version: int
    created_at: datetime
    updated_at: datetime
    phases: tuple[PhaseRecord, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def phase(self, name: str) -> PhaseRecord | None:
        """The record of phase ``name``, or None."""
        return next((p for p in self.phases if p.phase_name == name), None)

    def replace(self, **changes: Any) -> JobRecord:
        """A copy with ``changes`` applied (records are immutable)."""
        return replace(self, **changes)
