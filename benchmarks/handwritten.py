"""The durable baselines: the ingestion job's commits written by hand with sqlite3 or psycopg.

What an application without phasekit would write for the same job: a transition table, the
ingestion aggregation rules as ``if``s, and per transition one transaction with the same three
statements the SQL store runs (the job row's compare-and-swap on its version, the changed
phase row, one history row), over the same tables (the store's DDL, another prefix), with the
same values (timestamps, the event as JSON).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = ["HandWrittenJob", "PhaseRow", "sqlite_timestamp"]

# The ingestion phase set, by hand.
TRANSITIONS = {
    ("start", "not_started"): "running",
    ("pause", "running"): "paused",
    ("resume", "paused"): "running",
    ("complete", "running"): "completed",
    ("fail", "not_started"): "failed",
    ("fail", "running"): "failed",
    ("fail", "paused"): "failed",
}
ACTIVE = {"running"}
TERMINAL = {"completed", "failed"}
SUCCESS = {"completed"}
PHASES = ("discovery", "extraction", "transformation", "loading")


def sqlite_timestamp(value: datetime | None) -> str | None:
    """A UTC timestamp as the SQL store writes it in SQLite (the text SQLAlchemy reads back)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def overall_status(statuses: list[str]) -> str:
    if "failed" in statuses:
        return "failed"
    if all(s == "completed" for s in statuses):
        return "completed"
    if "running" in statuses or "paused" in statuses:
        return "running"
    if "completed" in statuses:
        return "running"
    return "not_started"


def current_phase(statuses: list[str]) -> str | None:
    for group in (("running", "paused"), ("not_started",)):
        for name, status in zip(PHASES, statuses, strict=True):
            if status in group:
                return name
    return None


class PhaseRow:
    """One phase of the hand-written job, as its row holds it."""

    __slots__ = (
        "completed_at",
        "error",
        "items_processed",
        "items_total",
        "name",
        "progress",
        "started_at",
        "status",
        "updated_at",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = "not_started"
        self.progress = 0.0
        self.items_processed = 0
        self.items_total: int | None = None
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.updated_at: datetime | None = None
        self.error: str | None = None


class HandWrittenJob:
    """A job of the ingestion phase set committed by hand through a DB-API connection.

    ``sqlite`` connections must be in autocommit mode (``isolation_level=None``): the job
    runs ``BEGIN IMMEDIATE``/``COMMIT`` itself, as the store does. psycopg connections are
    used in their default transaction mode and committed.
    """

    def __init__(self, conn: Any, backend: str, prefix: str, job_id: str, fingerprint: str) -> None:
        self.conn = conn
        self.sqlite = backend == "sqlite"
        self.job_id = job_id
        self.fingerprint = fingerprint
        self.version = 1
        self.phases = [PhaseRow(name) for name in PHASES]
        self.created_at = datetime.now(UTC)
        p = "?" if self.sqlite else "%s"
        self._update_job = (
            f"UPDATE {prefix}jobs SET spec_name={p}, spec_fingerprint={p}, status={p}, "
            f"current_phase={p}, progress={p}, version={p}, metadata={p}, created_at={p}, "
            f"updated_at={p} WHERE job_id={p} AND version={p}"
        )
        self._update_phase = (
            f"UPDATE {prefix}phases SET position={p}, status={p}, progress={p}, "
            f"items_processed={p}, items_total={p}, started_at={p}, completed_at={p}, "
            f"updated_at={p}, error={p} WHERE job_id={p} AND phase_name={p}"
        )
        self._insert_history = (
            f"INSERT INTO {prefix}history (job_id, version, event_type, phase, trigger, source, "
            f"dest, error, at, event) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
        )
        self._insert_job = (
            f"INSERT INTO {prefix}jobs (job_id, spec_name, spec_fingerprint, status, "
            f"current_phase, progress, version, metadata, created_at, updated_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
        )
        self._insert_phase = (
            f"INSERT INTO {prefix}phases (job_id, phase_name, position, status, progress, "
            f"items_processed, items_total, started_at, completed_at, updated_at, error) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
        )

    def _ts(self, value: datetime | None) -> Any:
        return sqlite_timestamp(value) if self.sqlite else value

    def _begin(self) -> Any:
        cursor = self.conn.cursor()
        if self.sqlite:
            cursor.execute("BEGIN IMMEDIATE")
        return cursor

    def _commit(self) -> None:
        if self.sqlite:
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()

    def _update_job_row(
        self,
        cursor: Any,
        statuses: list[str],
        progresses: list[float],
        version: int,
        now: datetime,
    ) -> None:
        """The job row's compare-and-swap, as the SQL store does it."""
        cursor.execute(
            self._update_job,
            (
                "ingestion",
                self.fingerprint,
                overall_status(statuses),
                current_phase(statuses),
                sum(progresses) / len(progresses),
                version,
                "{}",
                self._ts(self.created_at),
                self._ts(now),
                self.job_id,
                self.version,
            ),
        )
        if cursor.rowcount != 1:
            raise RuntimeError(f"job {self.job_id!r} changed under us")

    def create(self) -> None:
        """Insert the job, its phases and its creation event."""
        now = self.created_at
        cursor = self._begin()
        cursor.execute(
            self._insert_job,
            (
                *(self.job_id, "ingestion", self.fingerprint, "not_started", PHASES[0], 0.0, 1),
                *("{}", self._ts(now), self._ts(now)),
            ),
        )
        for position, phase in enumerate(self.phases):
            cursor.execute(
                self._insert_phase,
                (*(self.job_id, phase.name, position, phase.status, 0.0, 0), *(None,) * 5),
            )
        event = {"type": "job_created", "job_id": self.job_id, "version": 1}
        cursor.execute(
            self._insert_history,
            (self.job_id, 1, "job_created", *(None,) * 5, self._ts(now), json.dumps(event)),
        )
        self._commit()

    def fire(self, position: int, trigger: str) -> None:
        """Commit ``trigger`` on the phase at ``position``: one transaction, three statements."""
        phase = self.phases[position]
        source = phase.status
        dest = TRANSITIONS[(trigger, source)]  # KeyError: not allowed from this status
        now = datetime.now(UTC)
        started_at = phase.started_at or (now if dest in ACTIVE else None)
        completed_at = now if dest in TERMINAL else None
        progress = 100.0 if dest in SUCCESS else phase.progress
        statuses = [p.status for p in self.phases]
        statuses[position] = dest
        progresses = [p.progress for p in self.phases]
        progresses[position] = progress
        version = self.version + 1
        event = {
            "event_id": uuid.uuid4().hex,
            "job_id": self.job_id,
            "version": version,
            "at": now.isoformat(),
            "type": "phase_changed",
            "phase": phase.name,
            "trigger": trigger,
            "source": source,
            "dest": dest,
            "error": None,
        }
        cursor = self._begin()
        try:
            self._update_job_row(cursor, statuses, progresses, version, now)
            cursor.execute(
                self._update_phase,
                (
                    position,
                    dest,
                    progress,
                    phase.items_processed,
                    phase.items_total,
                    self._ts(started_at),
                    self._ts(completed_at),
                    self._ts(now),
                    None,
                    self.job_id,
                    phase.name,
                ),
            )
            cursor.execute(
                self._insert_history,
                (
                    *(self.job_id, version, "phase_changed", phase.name, trigger, source, dest),
                    *(None, self._ts(now), json.dumps(event)),
                ),
            )
            self._commit()
        except BaseException:
            self.conn.rollback()
            raise
        phase.status, phase.progress = dest, progress
        phase.started_at, phase.completed_at, phase.updated_at = started_at, completed_at, now
        self.version = version

    def progress(self, position: int, items_processed: int, items_total: int) -> None:
        """Commit a progress report: the job row (compare-and-swap) and the phase row."""
        phase = self.phases[position]
        now = datetime.now(UTC)
        progress = min(99.0, 100.0 * items_processed / items_total) if items_total else 99.0
        progresses = [p.progress for p in self.phases]
        progresses[position] = progress
        statuses = [p.status for p in self.phases]
        version = self.version + 1
        cursor = self._begin()
        try:
            self._update_job_row(cursor, statuses, progresses, version, now)
            cursor.execute(
                self._update_phase,
                (
                    position,
                    phase.status,
                    progress,
                    items_processed,
                    items_total,
                    self._ts(phase.started_at),
                    self._ts(phase.completed_at),
                    self._ts(now),
                    phase.error,
                    self.job_id,
                    phase.name,
                ),
            )
            self._commit()
        except BaseException:
            self.conn.rollback()
            raise
        phase.progress, phase.items_processed, phase.items_total = (
            progress,
            items_processed,
            items_total,
        )
        phase.updated_at = now
        self.version = version
