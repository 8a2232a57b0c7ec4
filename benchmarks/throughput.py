"""PostgreSQL throughput (figure 3): commits per second from 1 and from 4 worker processes.

Each worker is a process of its own with its own Tracker (or its own hand-written
connection) and its own jobs; all start together (a barrier) and commit transitions for the
same number of seconds.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass
from typing import Any

from statemachine import load_spec

from .databases import Database
from .harness import Figure, Settings

__all__ = ["throughput_figures"]

SECTION = "3. Durable commits"
JOBS_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class _Task:
    """What one worker process does: whose commits, where, under which job ids, how long."""

    kind: str  # "store" (a Tracker on the SQL store) or "hand" (hand-written psycopg)
    db: Database
    tag: str
    seconds: float


def _worker(task: _Task, barrier: Any, results: Any) -> None:
    kind, db, tag, seconds = task.kind, task.db, task.tag, task.seconds
    spec = load_spec("ingestion")
    fires: list[Any] = []
    closer: Any = None
    if kind == "store":
        tracker = db.tracker(spec)
        closer = tracker.close
        for j in range(JOBS_PER_WORKER):
            phase = tracker.create_job(f"{tag}-{j}").phases["discovery"]
            phase.trigger("start")
            fires.append(phase.trigger)
    else:
        conn = db.connect()
        closer = conn.close
        for j in range(JOBS_PER_WORKER):
            job = db.hand_job(conn, spec, f"{tag}-{j}")
            job.fire(0, "start")
            fires.append(lambda trigger, job=job: job.fire(0, trigger))
    try:
        barrier.wait(timeout=120)
        commits = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for fire in fires:
                fire("pause")
                fire("resume")
            commits += 2 * len(fires)
        elapsed = time.perf_counter() - start
        results.put((commits, elapsed))
    finally:
        closer()


def _collect(results: Any, processes: list[Any], kind: str) -> list[tuple[int, float]]:
    """Every worker's (commits, seconds); a worker that dies fails the run, naming its exit."""
    done: list[tuple[int, float]] = []
    deadline = time.monotonic() + 300
    while len(done) < len(processes):
        try:
            done.append(results.get(timeout=5))
        except queue.Empty:
            codes = [p.exitcode for p in processes]
            if any(code not in (None, 0) for code in codes) or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{kind} workers did not all report (exit codes {codes})"
                ) from None
    return done


def _run(kind: str, db: Database, workers: int, seconds: float, tag: str) -> float:
    """Commits per second of ``workers`` processes together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_worker,
            args=(_Task(kind, db, f"{tag}-w{w}", seconds), barrier, results),
            daemon=True,
        )
        for w in range(workers)
    ]
    for p in processes:
        p.start()
    try:
        done = _collect(results, processes, kind)
    finally:
        for p in processes:
            p.join(timeout=60)
    return float(sum(commits / elapsed for commits, elapsed in done))


def throughput_figures(settings: Settings, db: Database) -> list[Figure]:
    seconds = 1.0 if settings.quick else 3.0
    repeats = 1 if settings.quick else 3
    figures = []
    for workers in (1, 4):
        samples: dict[str, list[float]] = {"store": [], "hand": []}
        for r in range(repeats):
            order = ["store", "hand"] if r % 2 == 0 else ["hand", "store"]
            for kind in order:
                tag = f"tp{workers}-{kind}-{r}"
                samples[kind].append(_run(kind, db, workers, seconds, tag))
        figures.append(
            Figure.compare(
                f"durable.postgresql.workers{workers}",
                SECTION,
                f"PostgreSQL store throughput, {workers} worker process{'es' * (workers > 1)}",
                samples["store"],
                samples["hand"],
                unit="commits/s",
                baseline_label=f"hand-written psycopg, {workers} worker(s)",
                note=(
                    f"{seconds:.0f} s per run, {JOBS_PER_WORKER} jobs per worker; 2 cores shared "
                    "by the workers and the server"
                ),
            )
        )
    return figures
