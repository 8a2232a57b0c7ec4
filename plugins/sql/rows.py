"""Between records and rows: the parameters a commit writes, and the queries that read jobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, or_, select
from sqlalchemy.engine import Row

from statemachine import Event, HistoryEvent, JobRecord, PhaseChanged, PhaseRecord

from .schema import Tables

__all__ = [
    "JobQueries",
    "event_params",
    "job_params",
    "log_params",
    "phase_params",
    "records_from_rows",
]


def job_params(record: JobRecord) -> dict[str, Any]:
    """The jobs row of ``record``, by column."""
    return {
        "job_id": record.job_id,
        "spec_name": record.spec_name,
        "spec_fingerprint": record.spec_fingerprint,
        "status": record.status,
        "current_phase": record.current_phase,
        "progress": record.progress,
        "version": record.version,
        "metadata": dict(record.metadata),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def phase_params(job_id: str, position: int, phase: PhaseRecord) -> dict[str, Any]:
    """The phases row of ``phase``, the ``position``-th phase of job ``job_id``."""
    return {
        "job_id": job_id,
        "b_job_id": job_id,
        "phase_name": phase.phase_name,
        "b_phase_name": phase.phase_name,
        "position": position,
        "status": phase.status,
        "progress": phase.progress,
        "items_processed": phase.items_processed,
        "items_total": phase.items_total,
        "started_at": phase.started_at,
        "completed_at": phase.completed_at,
        "updated_at": phase.updated_at,
        "error": phase.error,
        "entered_at": phase.entered_at,
        "deadline": phase.deadline,
    }


def event_params(
    event: HistoryEvent, data: str, idempotency_key: str | None = None
) -> dict[str, Any]:
    """The history row of ``event`` (``data`` is its JSON): the event and its fields worth
    querying."""
    changed = event if isinstance(event, PhaseChanged) else None
    return {
        "job_id": event.job_id,
        "version": event.version,
        "event_type": event.type,
        "phase": changed.phase if changed else None,
        "trigger": changed.trigger if changed else None,
        "source": changed.source if changed else None,
        "dest": changed.dest if changed else None,
        "error": changed.error if changed else None,
        "at": event.at,
        "event": data,
        "idempotency_key": idempotency_key,
    }


def log_params(event: Event, data: str) -> dict[str, Any]:
    """The event log row of ``event`` (``data`` is its JSON)."""
    return {
        "event_id": event.event_id,
        "job_id": event.job_id,
        "event_type": event.type,
        "version": event.version,
        "at": event.at,
        "event": data,
    }


def records_from_rows(rows: Iterable[Row[Any]]) -> list[JobRecord]:
    """Records from rows of ``JobQueries`` (one row per job and phase, a job's rows adjacent)."""
    records: list[JobRecord] = []
    job: tuple[Any, ...] | None = None
    phases: list[PhaseRecord] = []
    for row in rows:
        values = tuple(row)
        if job is None or values[0] != job[0]:
            if job is not None:
                records.append(_record(job, phases))
            job, phases = values[:_JOB_WIDTH], []
        if values[_JOB_WIDTH] is not None:
            phases.append(PhaseRecord(*values[_JOB_WIDTH:]))
    if job is not None:
        records.append(_record(job, phases))
    return records


def _record(job: tuple[Any, ...], phases: Sequence[PhaseRecord]) -> JobRecord:
    (job_id, spec_name, fingerprint, status, current, progress, version, meta, created, updated) = (
        job
    )
    return JobRecord(
        job_id=job_id,
        spec_name=spec_name,
        spec_fingerprint=fingerprint,
        status=status,
        current_phase=current,
        progress=progress,
        version=version,
        created_at=created,
        updated_at=updated,
        phases=tuple(phases),
        metadata=meta if meta is not None else {},
    )


_JOB_WIDTH = 10


class JobQueries:
    """The selects that read jobs with their phases: one statement, so one snapshot."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        jobs = tables.jobs
        self._by_id = self._with_phases(
            select(jobs).where(jobs.c.job_id == bindparam("job_id")).subquery("job")
        )
        self._by_ids = self._with_phases(
            select(jobs)
            .where(jobs.c.job_id.in_(bindparam("job_ids", expanding=True)))
            .subquery("job")
        )
        self._pages: dict[tuple[bool, bool, int, bool], Select[Any]] = {}

    def _with_phases(self, job: Any, *order: ColumnElement[Any]) -> Select[Any]:
        phases = self.tables.phases
        # PhaseRecord's field order, after the ten job columns.
        phase_columns = [
            phases.c.phase_name,
            phases.c.status,
            phases.c.progress,
            phases.c.items_processed,
            phases.c.items_total,
            phases.c.started_at,
            phases.c.completed_at,
            phases.c.updated_at,
            phases.c.error,
            phases.c.entered_at,
            phases.c.deadline,
        ]
        return (
            select(
                job.c.job_id,
                job.c.spec_name,
                job.c.spec_fingerprint,
                job.c.status,
                job.c.current_phase,
                job.c.progress,
                job.c.version,
                job.c["metadata"],
                job.c.created_at,
                job.c.updated_at,
                *(c.label(f"phase_{c.name}") for c in phase_columns),
            )
            .select_from(job.outerjoin(phases, phases.c.job_id == job.c.job_id))
            .order_by(*order, job.c.job_id, phases.c.position)
        )

    def by_id(self) -> Select[Any]:
        """One job, parameter ``job_id``."""
        return self._by_id

    def by_ids(self) -> Select[Any]:
        """Several jobs, parameter ``job_ids`` (a list)."""
        return self._by_ids

    def page(
        self, *, status: bool, spec: bool, phase_statuses: int = 0, after: bool = False
    ) -> Select[Any]:
        """A page of jobs, most recently updated first, then by id.

        Parameters ``limit`` and ``offset``; ``status`` and ``spec`` when filtered on;
        ``phase_0``/``phase_status_0``, ... for each of ``phase_statuses`` pairs a job's phase
        must be in (each an indexed lookup of the phases table); with ``after``, the jobs
        listed after the one updated at ``after_at`` with id ``after_id`` (keyset pagination:
        the index is entered at that job, whatever the page's depth).
        """
        key = (status, spec, phase_statuses, after)
        query = self._pages.get(key)
        if query is None:
            jobs, phases = self.tables.jobs, self.tables.phases
            inner = select(jobs)
            if after:
                at = bindparam("after_at", type_=jobs.c.updated_at.type)
                # The first condition alone bounds the index scan; the second drops the jobs
                # of the same instant up to the cursor's id.
                inner = inner.where(
                    jobs.c.updated_at <= at,
                    or_(jobs.c.updated_at < at, jobs.c.job_id > bindparam("after_id")),
                )
            if status:
                inner = inner.where(jobs.c.status == bindparam("status"))
            if spec:
                inner = inner.where(jobs.c.spec_name == bindparam("spec"))
            for i in range(phase_statuses):
                inner = inner.where(
                    select(phases.c.job_id)
                    .where(
                        phases.c.phase_name == bindparam(f"phase_{i}"),
                        phases.c.status == bindparam(f"phase_status_{i}"),
                        phases.c.job_id == jobs.c.job_id,
                    )
                    .exists()
                )
            page = (
                inner.order_by(jobs.c.updated_at.desc(), jobs.c.job_id)
                .limit(bindparam("limit"))
                .offset(bindparam("offset"))
                .subquery("job")
            )
            query = self._with_phases(page, page.c.updated_at.desc())
            self._pages[key] = query
        return query

    def counts(self) -> Select[Any]:
        """The number of jobs of each phase set name and overall status."""
        jobs = self.tables.jobs
        return select(jobs.c.spec_name, jobs.c.status, func.count()).group_by(
            jobs.c.spec_name, jobs.c.status
        )
