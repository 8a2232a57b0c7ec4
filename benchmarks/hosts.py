"""Host applications (figure 8): an AsyncTracker's commit against a Tracker's, and writers on
the phases of one job against writers on jobs of their own.

The figures drive jobs by id, as host applications do (a web handler with an
AsyncTracker, workers with a Tracker each). SQLite files live in a temporary folder;
PostgreSQL tables in a schema of their own (``phasekit_bench_…``), dropped with everything
in it at the end. The writers are worker processes of their own (``hosts_writer.py``).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing
import queue
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from statemachine.plugins.sql import SQLStore

from statemachine import AsyncTracker, MemoryStore, PhaseSet, Tracker

from .databases import STORE_PREFIX, Database, pg_schema, pg_unusable, sqlite_database
from .harness import Case, Figure, Settings, Target, batch, interleaved, median, spread
from .hosts_drivers import AiosqliteCalls, driver_cases
from .hosts_writer import WRITERS, Run, Task, writer
from .machine import pg_server_version
from .profiles import profile_if_missed

__all__ = ["host_figures"]

SECTION = "8. Host applications"
US = 1e6
_ids = itertools.count()


# -- 1. AsyncTracker commit ----------------------------------------------------------------


def _sync_by_id(tracker: Tracker) -> Callable[[], Callable[[int], None]]:
    """``tracker.fire(job_id, "discovery", ...)`` by id: a new job per batch, its phase started."""

    def prepare() -> Callable[[int], None]:
        job_id = f"sync-{next(_ids)}"
        tracker.create_job(job_id)
        tracker.fire(job_id, "discovery", "start")

        def run(n: int) -> None:
            fire = tracker.fire
            for _ in range(n):
                fire(job_id, "discovery", "pause")
                fire(job_id, "discovery", "resume")

        return run

    return prepare


async def _async_batch(tracker: AsyncTracker, pairs: int) -> float:
    """One timed batch inside the event loop: seconds per ``await tracker.fire(...)``."""
    job_id = f"async-{next(_ids)}"
    await tracker.create_job(job_id)
    await tracker.fire(job_id, "discovery", "start")
    fire = tracker.fire
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(pairs):
            await fire(job_id, "discovery", "pause")
            await fire(job_id, "discovery", "resume")
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / (2 * pairs)


def _async_tracker(spec: PhaseSet, db: Database) -> AsyncTracker:
    """An AsyncTracker on the tables of ``db.tracker``, the SQL store on its async driver."""
    store = SQLStore(db.store_url, schema=db.schema, table_prefix=STORE_PREFIX, asyncio=True)
    return AsyncTracker(spec, store, load_entrypoints=False)


async def _counted_fires(tracker: AsyncTracker, pairs: int) -> float | None:
    """Calls on aiosqlite's thread per ``await tracker.fire(...)``, counted untimed."""
    job_id = f"counted-{next(_ids)}"
    await tracker.create_job(job_id)
    await tracker.fire(job_id, "discovery", "start")
    with AiosqliteCalls() as counter:
        for _ in range(pairs):
            await tracker.fire(job_id, "discovery", "pause")
            await tracker.fire(job_id, "discovery", "resume")
    return None if counter.calls is None else counter.calls / (2 * pairs)


def async_commit_figures(settings: Settings, spec: PhaseSet, db: Database) -> list[Figure]:
    """``await tracker.fire(...)`` by id on an AsyncTracker against ``Tracker.fire`` by id,
    and one call on the async driver against one on the sync driver, in the same rounds."""
    name = "SQLite" if db.backend == "sqlite" else "PostgreSQL"
    sqlite = db.backend == "sqlite"
    adriver, driver = ("aiosqlite", "sqlite3") if sqlite else ("psycopg async", "psycopg")
    pairs = settings.n(200 if sqlite else 100, least=20)
    calls = settings.n(2000 if sqlite else 1000, least=200)
    sync = db.tracker(spec)
    with asyncio.Runner() as runner, ExitStack() as stack:  # one event loop, created once
        atracker = _async_tracker(spec, db)
        stack.callback(sync.close)
        stack.callback(lambda: runner.run(atracker.close()))
        runner.run(atracker.__aenter__())
        cases: dict[str, Case] = {
            "async": lambda: runner.run(_async_batch(atracker, pairs)),
            "sync": batch(_sync_by_id(sync), pairs, 2),
            **driver_cases(db, runner, calls, stack),
        }
        for case in cases.values():  # warm-up: connections opened, statements cached
            case()
        samples = interleaved(cases, settings.rounds)
        per_fire = runner.run(_counted_fires(atracker, 10)) if sqlite else None
        commit = Figure.compare(
            f"hosts.async.{db.backend}",
            SECTION,
            f"{name}: `await AsyncTracker.fire(job_id, ...)`, one transition by id",
            samples["async"],
            samples["sync"],
            unit="µs/commit",
            factor=US,
            baseline_label=f"`Tracker.fire(job_id, ...)` by id, same {name} store",
            target=Target("≤ 1.3x the sync Tracker", "ratio", 1.3),
            note=(
                f"one caller, sequential; {adriver} in one event loop (asyncio.Runner), each "
                "batch timed inside the loop; both load the job, plan and commit "
                "(compare-and-swap) per call"
            ),
        )
        call = Figure.compare(
            f"hosts.driver.{db.backend}",
            SECTION,
            f"{name}: one driver call, {adriver} (`await conn.execute('SELECT 1')`)",
            samples["driver async"],
            samples["driver sync"],
            unit="µs/call",
            factor=US,
            baseline_label=f"{driver}, the same call",
            note=_driver_note(commit, samples, per_fire, adriver),
        )
        profile_if_missed(
            settings,
            commit,
            lambda: runner.run(_async_batch(atracker, pairs * 5)),
            pairs * 10,
            f"AsyncTracker.fire by id on {name}",
        )
    return [commit, call]


def _driver_note(
    commit: Figure, samples: dict[str, list[float]], per_fire: float | None, adriver: str
) -> str:
    """What the async driver's calls account for of the async commit's extra time."""
    extra = median(samples["driver async"]) - median(samples["driver sync"])
    beyond = commit.value - (commit.baseline_value or 0.0)
    if per_fire is None:
        return (
            f"every round trip to the server is awaited on the event loop; the async fire "
            f"costs {beyond:,.0f} µs more than the sync one, {extra * US:,.1f} µs more per call"
        )
    return (
        f"every {adriver} call is a round trip to the connection's own thread; a fire by id "
        f"makes {per_fire:.0f} (counted): {per_fire:.0f} x {extra * US:,.1f} µs = "
        f"{per_fire * extra * US:,.0f} µs of the {beyond:,.0f} µs an async fire costs beyond "
        "a sync one"
    )


def memory_async_figure(settings: Settings, spec: PhaseSet) -> Figure:
    """The AsyncTracker's own layer: the same fires by id on memory stores (no driver)."""
    pairs = settings.n(2000, least=200)
    sync = Tracker(spec, MemoryStore(), load_entrypoints=False)
    with asyncio.Runner() as runner:
        atracker = AsyncTracker(spec, MemoryStore(), load_entrypoints=False)
        try:
            runner.run(atracker.__aenter__())
            cases: dict[str, Case] = {
                "async": lambda: runner.run(_async_batch(atracker, pairs)),
                "sync": batch(_sync_by_id(sync), pairs, 2),
            }
            for case in cases.values():
                case()
            samples = interleaved(cases, settings.rounds)
        finally:
            runner.run(atracker.close())
            sync.close()
    return Figure.compare(
        "hosts.async.memory",
        SECTION,
        "memory store: `await AsyncTracker.fire(job_id, ...)`, one transition by id",
        samples["async"],
        samples["sync"],
        unit="µs/commit",
        factor=US,
        baseline_label="`Tracker.fire(job_id, ...)` by id, memory store",
        note=(
            "the AsyncTracker's own layer, no driver: the job's asyncio lock, greenlet_spawn, "
            "and the read-only snapshot it returns"
        ),
    )


# -- 2. Writers on the phases of one job ---------------------------------------------------


class _Writers:
    """``WRITERS`` worker processes (fresh interpreters), kept for every run of the section."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._barrier = ctx.Barrier(WRITERS)
        self._results: Any = ctx.Queue()
        self._inboxes: list[Any] = [ctx.Queue() for _ in range(WRITERS)]
        self._processes = [
            ctx.Process(
                target=writer,
                args=(self._inboxes[w], self._results, self._barrier),
                daemon=True,
            )
            for w in range(WRITERS)
        ]
        for p in self._processes:
            p.start()

    def run(self, tasks: list[Task]) -> list[Run]:
        """Every writer's run of its task, started together (a barrier)."""
        for inbox, task in zip(self._inboxes, tasks, strict=True):
            inbox.put(task)
        done: list[Run] = []
        deadline = time.monotonic() + 300
        while len(done) < len(tasks):
            try:
                result = self._results.get(timeout=5)
            except queue.Empty:
                codes = [p.exitcode for p in self._processes]
                if any(c is not None for c in codes) or time.monotonic() > deadline:
                    raise RuntimeError(f"writers did not all report (exit codes {codes})") from None
                continue
            if isinstance(result, str):  # a writer's traceback
                raise RuntimeError(f"a writer failed:\n{result}")
            done.append(result)
        return done

    def __enter__(self) -> _Writers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for p in self._processes:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def _started_job(tracker: Tracker, job_id: str) -> str:
    """A new job with every phase running (progress is reported on running phases)."""
    tracker.create_job(job_id)
    for phase in tracker.spec.phase_names:
        tracker.fire(job_id, phase, "start")
    return job_id


def _lean_job(tracker: Tracker, db: Database, job_id: str) -> str:
    """A new job in the hand-written tables."""
    conn = db.connect()
    try:
        db.hand_job(conn, tracker.spec, job_id)
    finally:
        conn.close()
    return job_id


def _round(writers: _Writers, tracker: Tracker, db: Database, kind: str, n: int) -> list[Run]:
    """One run: ``WRITERS`` processes, each on its own phase of one job (``shared``) or of a
    job of its own (``different``); or one writer on a job, the others idle (``alone``).
    ``lean-shared`` and ``lean-different`` are the same with hand-written lean commits."""
    phases = list(tracker.spec.phase_names)[:WRITERS]
    tag = f"{kind}-{next(_ids)}"
    lean = kind.startswith("lean-")
    make = (
        (lambda job_id: _lean_job(tracker, db, job_id))
        if lean
        else (lambda job_id: _started_job(tracker, job_id))
    )
    if kind.endswith("different"):
        jobs = [make(f"{tag}-{w}") for w in range(WRITERS)]
    else:
        jobs = [make(tag)] * WRITERS
    reports = [n] * WRITERS if kind != "alone" else [n] + [0] * (WRITERS - 1)
    tasks = [Task(db, *task, lean=lean) for task in zip(jobs, phases, reports, strict=True)]
    return writers.run(tasks)


def _rate(runs: list[Run]) -> float:
    """Commits per second of the writers together, from the first start to the last end."""
    start = min(r.start for r in runs)
    end = max(r.end for r in runs)
    return sum(r.commits for r in runs) / (end - start)


def writer_figures(
    settings: Settings, spec: PhaseSet, db: Database, writers: _Writers
) -> list[Figure]:
    """Writers on the phases of one job against as many writers on jobs of their own."""
    name = "SQLite" if db.backend == "sqlite" else "PostgreSQL"
    n = settings.n(250, least=50)
    rounds = 2 if settings.quick else 5
    tracker = db.tracker(spec)
    samples: dict[str, list[list[Run]]] = {"shared": [], "different": [], "alone": []}
    if db.backend == "postgresql":
        samples |= {"lean-shared": [], "lean-different": []}
    kinds = list(samples)
    try:
        _round(writers, tracker, db, "different", max(10, n // 10))  # warm-up
        for r in range(rounds):
            shift = r % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                samples[kind].append(_round(writers, tracker, db, kind, n))
    finally:
        tracker.close()
    rates = {kind: [_rate(runs) for runs in done] for kind, done in samples.items()}
    conflicts = [sum(r.conflicts for r in runs) for runs in samples["shared"]]
    commits = [sum(r.commits for r in runs) for runs in samples["shared"]]
    failed = sum(r.failed for runs in samples["shared"] for r in runs)
    elsewhere = sum(r.conflicts for runs in samples["different"] for r in runs)
    per_100 = [100.0 * c / k for c, k in zip(conflicts, commits, strict=True)]
    target = (
        Target("≥ 0.5x writers on jobs of their own", "ratio", 0.5, at_most=False)
        if db.backend == "postgresql"
        else None
    )
    throughput = Figure.compare(
        f"hosts.writers.{db.backend}",
        SECTION,
        f"{name}: {WRITERS} writer processes, each `report_progress` on its own phase of one job",
        rates["shared"],
        rates["different"],
        unit="commits/s",
        baseline_label=f"{WRITERS} writer processes, each on a job of its own",
        target=target,
        note=(
            f"{n} reports per writer per run, {rounds} runs each, interleaved; 2 cores shared "
            "by the writers"
            + (" and the server" if db.backend == "postgresql" else "")
            + ". The floor: every commit of the job updates its one job row (the version "
            "check), so the writers' transactions take turns on that row"
            + (
                "'s lock"
                if db.backend == "postgresql"
                else " (and SQLite takes one writer at a time anyway)"
            )
            + "; a writer that loaded the job before another's commit fails its "
            "compare-and-swap, waits a jittered backoff, reloads and plans again"
        ),
    )
    retries = Figure(
        key=f"hosts.conflicts.{db.backend}",
        section=SECTION,
        label=f"{name}: conflicts per 100 commits, {WRITERS} writers on one job",
        value=median(per_100),
        unit="conflicts/100 commits",
        spread=spread(per_100),
        note=(
            f"`ConcurrentUpdateError` raised by `save` (counted by a store subclass), "
            f"{sum(conflicts):,} for {sum(commits):,} commits in {rounds} runs; "
            f"{failed} report(s) failed after `conflict_retries` (8); writers on jobs of "
            f"their own: {elsewhere} conflicts"
        ),
    )
    alone = Figure.compare(
        f"hosts.writers.alone.{db.backend}",
        SECTION,
        f"{name}: the same {WRITERS} writers on one job, against one writer alone on a job",
        rates["shared"],
        rates["alone"],
        unit="commits/s",
        baseline_label="1 writer process on a job (the others idle): one commit at a time",
    )
    alone.note = (
        "below 1x: together the writers of one job commit less than one of them alone, so "
        "the lost compare-and-swaps, backoffs and reloads cost more than overlapping one "
        "writer's load and plan with another's commit gains"
        if (alone.ratio or 0.0) < 1.0
        else "at or above 1x: one writer's load and plan overlap another's commit, and gain "
        "more than the lost compare-and-swaps, backoffs and reloads cost"
    )
    figures = [throughput, alone, retries]
    if db.backend == "postgresql":
        floor = Figure.compare(
            f"hosts.writers.lean.{db.backend}",
            SECTION,
            f"{name}: the floor: {WRITERS} lean hand-written writers on the phases of one job",
            rates["lean-shared"],
            rates["lean-different"],
            unit="commits/s",
            baseline_label=f"the same {WRITERS} lean writers, each on a job of its own",
            note=(
                "what a careful engineer commits per report when a job's aggregate lives in its "
                "row, psycopg by hand: UPDATE the job row (version + 1, progress) RETURNING the "
                "version, then the phase row and one history row in a pipeline, COMMIT; no load, "
                "no compare-and-swap. Its ratio is the cost of one row per job: the job row's "
                "lock is held to the commit's WAL flush, and the other writers of the job wait"
            ),
        )
        figures.append(floor)
    return figures


# -- the section -----------------------------------------------------------------------------


def host_figures(settings: Settings, spec: PhaseSet, machine: dict[str, str]) -> list[Figure]:
    """Both figures on SQLite, and on PostgreSQL when its server answers."""
    figures: list[Figure] = []
    writers: list[Figure] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="phasekit-bench-")))
        databases = [stack.enter_context(sqlite_database(folder))]
        skipped = pg_unusable(settings.pg_url)
        if skipped is None:
            assert settings.pg_url is not None
            machine["PostgreSQL server"] = pg_server_version(settings.pg_url)
            databases.append(stack.enter_context(pg_schema(settings.pg_url)))
        figures.append(memory_async_figure(settings, spec))
        for db in databases:
            figures += async_commit_figures(settings, spec, db)
        # One set of writer processes for both stores; PostgreSQL's figure (the one with
        # the target) first.
        with _Writers() as pool:
            for db in reversed(databases):
                writers += writer_figures(settings, spec, db, pool)
    figures += writers
    if skipped is not None:
        figures.append(
            Figure(
                key="skipped.hosts.postgresql",
                section=SECTION,
                label="PostgreSQL host figures",
                value=float("nan"),
                unit="",
                spread=(float("nan"), float("nan")),
                note=skipped,
            )
        )
    return figures
