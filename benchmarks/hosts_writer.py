"""A writer process of figure 8: progress reports by id on one phase of a job, for the run.

Each writer is a fresh interpreter (multiprocessing's spawn) with a Tracker of its own per
database, on a store that counts the conflicts its ``save`` raises; every run is on new jobs.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from statemachine.plugins.sql import SQLStore

from statemachine import ConcurrentUpdateError, Event, JobRecord, Tracker, load_spec

from .databases import HAND_PREFIX, STORE_PREFIX, Database, libpq_url

__all__ = ["WRITERS", "CountingStore", "Run", "Task", "writer"]

#: Writer processes per run: one per phase of the ingestion phase set.
WRITERS = 4


class CountingStore(SQLStore):
    """The SQL store, counting the ``ConcurrentUpdateError`` its ``save`` raises."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conflicts = 0

    def save(
        self,
        record: JobRecord,
        *,
        expected_version: int,
        events: Sequence[Event],
        idempotency_key: str | None = None,
    ) -> None:
        try:
            super().save(
                record,
                expected_version=expected_version,
                events=events,
                idempotency_key=idempotency_key,
            )
        except ConcurrentUpdateError:
            self.conflicts += 1
            raise


@dataclass(frozen=True, slots=True)
class Task:
    """One run of one writer: ``reports`` progress reports on ``phase`` of ``job_id``."""

    db: Database
    job_id: str
    phase: str
    reports: int
    #: Hand-written lean commits on the hand-written tables instead of the Tracker.
    lean: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    """What a writer did: its commits, conflicts and failed reports, and when (monotonic)."""

    start: float
    end: float
    commits: int
    conflicts: int
    failed: int


def _tracker(db: Database, trackers: dict[Database, Tracker]) -> Tracker:
    """This writer's Tracker on ``db`` (one per database, kept for its runs)."""
    if db not in trackers:
        store = CountingStore(db.store_url, schema=db.schema, table_prefix=STORE_PREFIX)
        trackers[db] = Tracker(load_spec("ingestion"), store=store, load_entrypoints=False)
    return trackers[db]


def _run(task: Task, barrier: Any, trackers: dict[Database, Tracker]) -> Run:
    tracker = _tracker(task.db, trackers)
    store = tracker.store
    assert isinstance(store, CountingStore)
    tracker.get_job(task.job_id)  # connected, and the store knows the job, before the start
    job_id, phase, total = task.job_id, task.phase, task.reports
    report = tracker.report_progress
    failed = 0
    conflicts = store.conflicts
    barrier.wait(timeout=120)
    start = time.monotonic()  # the clock every process of the machine shares
    for i in range(1, total + 1):
        try:
            report(job_id, phase, i, total)
        except ConcurrentUpdateError:  # still losing after `conflict_retries` retries
            failed += 1
    end = time.monotonic()
    return Run(start, end, total - failed, store.conflicts - conflicts, failed)


def _lean_statements(schema: str | None) -> tuple[str, str, str]:
    """What a careful engineer commits per progress report when the job's aggregate lives in
    its row: the job row (its version and progress), the phase row, one history row."""
    p = HAND_PREFIX if schema is None else f'"{schema}".{HAND_PREFIX}'
    return (
        f"UPDATE {p}jobs SET version = version + 1, progress = progress + %s, updated_at = %s "
        "WHERE job_id = %s RETURNING version",
        f"UPDATE {p}phases SET progress = %s, items_processed = %s, items_total = %s, "
        "updated_at = %s WHERE job_id = %s AND phase_name = %s",
        f"INSERT INTO {p}history (job_id, version, event_type, phase, at, event) "
        "VALUES (%s, %s, 'progress_updated', %s, %s, %s)",
    )


def _run_lean(task: Task, barrier: Any) -> Run:
    """The floor of the figure: ``reports`` lean hand-written commits on PostgreSQL."""
    job_row, phase_row, history_row = _lean_statements(task.db.schema)
    with psycopg.connect(libpq_url(task.db.hand_target)) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        barrier.wait(timeout=120)
        start = time.monotonic()
        step = 99.0 / task.reports / WRITERS
        for i in range(1, task.reports + 1):
            now = datetime.now(UTC)
            row = conn.execute(job_row, (step, now, task.job_id)).fetchone()
            assert row is not None
            with conn.pipeline():
                conn.execute(
                    phase_row,
                    (99.0 * i / task.reports, i, task.reports, now, task.job_id, task.phase),
                )
                conn.execute(history_row, (task.job_id, row[0], task.phase, now, "{}"))
            conn.commit()
        end = time.monotonic()
    return Run(start, end, task.reports, 0, 0)


def writer(inbox: Any, results: Any, barrier: Any) -> None:
    """Run the tasks ``inbox`` brings until it brings None; a failure goes back as text."""
    trackers: dict[Database, Tracker] = {}
    try:
        while (task := inbox.get()) is not None:
            try:
                run = _run_lean(task, barrier) if task.lean else _run(task, barrier, trackers)
                results.put(run)
            except Exception:
                barrier.abort()  # the other writers stop waiting for this one
                results.put(traceback.format_exc())
    finally:
        for tracker in trackers.values():
            tracker.close()
