"""The jobs and events the store conformance suite writes: every field set, nothing default."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from statemachine import (
    Event,
    JobCreated,
    JobRecord,
    JobStatusChanged,
    PhaseChanged,
    PhaseRecord,
    PhaseSet,
    ProgressUpdated,
    load_spec,
)

__all__ = [
    "T0",
    "all_events",
    "change_events",
    "created_events",
    "differences",
    "moved",
    "new_record",
    "record_differences",
    "rich_record",
    "suite_spec",
]

#: When the suite's jobs begin; microseconds included, which a store must keep.
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

#: Metadata of every JSON kind, nested, with text outside ASCII.
RICH_METADATA: dict[str, Any] = {
    "source": "s3://bucket/päth with spaces/ü.csv",
    "tries": [1, 2, 3],
    "nested": {"none": None, "yes": True, "no": False, "ratio": 0.1, "empty": {}},
    "big": 2**53,
    "list_of_objects": [{"a": 1}, {"b": [None]}],
}


@functools.cache
def suite_spec() -> PhaseSet:
    """The phase set of the suite's jobs: the bundled ``ingestion``."""
    return load_spec("ingestion")


def new_record(
    job_id: str,
    *,
    at: datetime = T0,
    status: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> JobRecord:
    """A new job's record (version 1), created ``at``, in overall ``status`` if given."""
    record = suite_spec().initial_record(job_id, metadata, at=at)
    return record if status is None else record.replace(status=status)


def rich_record(job_id: str) -> JobRecord:
    """A job with every field of the job and of its phases set, the way a store must keep it."""
    t = [T0 + timedelta(seconds=n, microseconds=n * 1111) for n in range(12)]
    phases = (
        PhaseRecord("discovery", "completed", 100.0, 10, 10, t[1], t[2], t[2], None, t[2], None),
        PhaseRecord("extraction", "running", 16.5, 33, 200, t[3], None, t[4], None, t[3], t[9]),
        PhaseRecord("transformation", "paused", 2.25, 1, None, t[5], None, t[6], None, t[6]),
        PhaseRecord(
            "loading", "failed", 0.0, 0, 0, None, t[7], t[7], "upstream refused: 503 ü", t[7]
        ),
    )
    return JobRecord(
        job_id=job_id,
        spec_name=suite_spec().name,
        spec_fingerprint=suite_spec().fingerprint,
        status="failed",
        current_phase="loading",
        progress=29.6875,
        version=7,
        created_at=t[0],
        updated_at=t[7],
        phases=phases,
        metadata=RICH_METADATA,
    )


def created_events(record: JobRecord) -> list[Event]:
    """The events of a job's creation, as a tracker hands them to ``create``."""
    spec = suite_spec()
    return [
        JobCreated(
            job_id=record.job_id,
            version=record.version,
            at=record.created_at,
            spec=record.spec_name,
            phases=[p.phase_name for p in record.phases],
            initial_status=spec.initial_status,
            metadata=dict(record.metadata),
        )
    ]


def change_events(
    record: JobRecord, phase: str, trigger: str, source: str, dest: str, *, at: datetime
) -> list[Event]:
    """The events of one commit that moves ``phase``: its change, progress and the aggregate."""
    version = record.version
    return [
        PhaseChanged(
            job_id=record.job_id,
            version=version,
            at=at,
            phase=phase,
            trigger=trigger,
            source=source,
            dest=dest,
            error="boom" if dest == "failed" else None,
        ),
        ProgressUpdated(
            job_id=record.job_id,
            version=version,
            at=at,
            phase=phase,
            items_processed=version,
            items_total=100,
            progress=float(version),
            job_progress=version / 4,
        ),
        JobStatusChanged(
            job_id=record.job_id,
            version=version,
            at=at,
            old_status="not_started",
            new_status="running",
            old_current_phase=None,
            new_current_phase=phase,
            progress=version / 4,
        ),
    ]


def moved(record: JobRecord, phase: str, dest: str, *, at: datetime) -> JobRecord:
    """The record one commit later: ``phase`` in ``dest``, the version one higher."""
    phases = tuple(
        dataclasses.replace(p, status=dest, updated_at=at, entered_at=at)
        if p.phase_name == phase
        else p
        for p in record.phases
    )
    return record.replace(version=record.version + 1, updated_at=at, phases=phases)


def differences(got: object, want: object, where: str = "") -> list[str]:
    """Where two records (or events, or values) differ, field by field: ``path: got != want``."""
    if dataclasses.is_dataclass(want) and not isinstance(want, type) and type(got) is type(want):
        found: list[str] = []
        for f in dataclasses.fields(want):
            found += differences(getattr(got, f.name), getattr(want, f.name), f"{where}.{f.name}")
        return found
    if isinstance(want, tuple | list) and type(got) is type(want) and len(got) == len(want):
        found = []
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            found += differences(g, w, f"{where}[{i}]")
        return found
    if isinstance(want, datetime) and isinstance(got, datetime) and got.tzinfo is None:
        return [f"{where.lstrip('.')}: {got!r} has no time zone (want {want.isoformat()})"]
    if got == want and type(got) is type(want):
        return []
    return [f"{where.lstrip('.') or 'value'}: {got!r} != {want!r} (stored vs given)"]


def record_differences(got: JobRecord | None, want: JobRecord) -> list[str]:
    """``differences`` of a loaded record, or that none was found."""
    if got is None:
        return [f"load({want.job_id!r}) gave None"]
    return differences(got, want)


def all_events(commits: Sequence[Sequence[Event]]) -> list[Event]:
    """Every event of ``commits``, in order."""
    return [event for commit in commits for event in commit]
