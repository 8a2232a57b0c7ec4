"""A writer killed with SIGKILL at random points leaves a consistent store behind.

Each kill point is a seed: it picks how long the writer runs (from a kill during start-up and
table creation to one hundreds of commits in) and a jitter on top, so the kill lands
anywhere: between commits, inside one, while a line is half printed.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from statemachine.plugins.sql import SQLStore

from statemachine import JobCreated, JobRecord, PhaseChanged, PhaseSet, Tracker, load_spec

from .conftest import Recorder, StoreTarget
from .sql_worker import WRITE_PROGRESS, write_steps

REPO = Path(__file__).resolve().parents[1]
KILL_POINTS = 5  # per backend
STARTUP_KILL_POINTS = 2  # of which the first ones kill the writer before it reports anything
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def worker(target: StoreTarget, *args: str) -> subprocess.Popen[str]:
    """``tests/sql_worker.py`` in a new Python process, on ``target``'s store."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sql_worker",
            args[0],
            target.url,
            json.dumps(target.options),
            *args[1:],
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill(process: subprocess.Popen[str], read: str = "") -> list[str]:
    """SIGKILL the process; the complete lines it printed (a line cut short is left out).

    ``read`` is what was already read from its output.
    """
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.stdout is not None and process.stderr is not None
    # Read through the text streams (``communicate`` would skip what they have buffered).
    out, err = process.stdout.read(), process.stderr.read()
    assert process.returncode == -signal.SIGKILL, err
    return (read + out).split("\n")[:-1]


@dataclass
class Crash:
    """What a killed writer reported, and the store it left."""

    target: StoreTarget
    attempted: dict[str, int]  # job id -> the last version a call was made to commit
    committed: dict[str, int]  # job id -> the last version a call returned with
    stored: dict[str, JobRecord]
    history: dict[str, list[JobCreated | PhaseChanged]]

    def open(self) -> SQLStore:
        return self.target.open()


def crash_target(backend: str, seed: int, tmp: Path, request: pytest.FixtureRequest) -> StoreTarget:
    if backend == "sqlite":
        return StoreTarget("sqlite", f"sqlite:///{tmp / 'jobs.db'}")
    url, schema = request.getfixturevalue("pg_schema")
    return StoreTarget("postgresql", url, {"schema": schema, "table_prefix": f"crash{seed}_"})


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=range(KILL_POINTS))
def crash(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Crash]:
    """A writer killed at the kill point ``request.param`` and what it left, read once."""
    seed: int = request.param
    rng = random.Random(seed)
    target = crash_target(backend, seed, tmp_path_factory.mktemp("crash"), request)
    writer = worker(target, "write", "crash")
    assert writer.stdout is not None
    read: list[str] = []
    if seed < STARTUP_KILL_POINTS:  # during start-up: imports, opening the store, its tables
        time.sleep(rng.uniform(0.0, 1.2))
    else:
        for _ in range(rng.randint(1, 800)):
            read.append(writer.stdout.readline())
            if not read[-1]:
                pytest.fail(f"the writer stopped early: {writer.communicate()[1]}")
    time.sleep(rng.uniform(0.0, 0.02))
    lines = kill(writer, "".join(read))
    attempted: dict[str, int] = {}
    committed: dict[str, int] = {}
    for line in lines:
        what, job_id, version = line.split()
        (attempted if what == "try" else committed)[job_id] = int(version)
    store = target.open()
    try:
        stored = {r.job_id: r for r in store.list(limit=100_000)}
        history = {job_id: store.history(job_id) for job_id in stored}
    finally:
        store.close()
    print(
        f"\n{backend} kill point {seed}: {len(committed)} jobs reported, "
        f"{sum(committed.values())} commits; {len(stored)} jobs stored"
    )
    yield Crash(target, attempted, committed, stored, history)


def replay(version: int) -> tuple[list[tuple[str, str, int, int | None]], list[tuple[str, ...]]]:
    """The phases (name, status, items) and the status changes of a written job at ``version``."""
    job = load_spec("ingestion").new_job("replay")
    changes: list[tuple[str, ...]] = []
    for phase, step in write_steps(job)[: version - 1]:
        state = job.phases[phase]
        if step is None:
            state.update_progress(*WRITE_PROGRESS)
        else:
            source = state.status
            state.trigger(step)
            changes.append((phase, step, source, state.status))
    phases = [
        (p.phase_name, p.status, p.items_processed, p.items_total) for p in job.phases.values()
    ]
    return phases, changes


def test_a_killed_writer_loses_no_commit_it_reported(crash: Crash) -> None:
    for job_id, version in crash.committed.items():
        assert job_id in crash.stored
        assert crash.stored[job_id].version >= version


def test_a_killed_writer_leaves_no_change_it_had_not_made(crash: Crash) -> None:
    assert set(crash.stored) <= set(crash.attempted)
    for job_id, record in crash.stored.items():
        assert record.version <= crash.attempted[job_id]
        # What a call was attempting when the kill came is there in full or not at all.
        assert record.version in (crash.committed.get(job_id), crash.attempted[job_id])


def test_a_killed_writer_leaves_each_job_whole_with_the_history_of_its_version(
    crash: Crash,
) -> None:
    for job_id, record in crash.stored.items():
        phases, changes = replay(record.version)
        assert [
            (p.phase_name, p.status, p.items_processed, p.items_total) for p in record.phases
        ] == phases
        assert record.metadata == {"n": int(job_id.rsplit("-", 1)[1])}
        created, *rest = crash.history[job_id]
        assert isinstance(created, JobCreated) and created.version == 1
        assert [(e.phase, e.trigger, e.source, e.dest) for e in rest] == changes  # type: ignore[union-attr]
        versions = [e.version for e in crash.history[job_id]]
        assert versions == sorted(set(versions)) and versions[-1] <= record.version


def test_a_store_left_by_a_killed_writer_opens_cleanly_and_takes_new_work(
    crash: Crash, ingestion: PhaseSet
) -> None:
    if crash.target.backend == "sqlite":
        path = crash.target.url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Tracker(ingestion, store=crash.open(), load_entrypoints=False) as tracker:
        for job_id, record in crash.stored.items():  # each restores; its aggregate is its own
            job = tracker.get_job(job_id)
            assert (job.get_overall_status(), job.get_overall_progress()) == (
                record.status,
                record.progress,
            )
        tracker.create_job("after-the-crash").phases["discovery"].start()
        assert tracker.get_job("after-the-crash").version == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_progress_kept_in_memory_is_lost_with_the_process_and_nothing_else(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, ingestion: PhaseSet
) -> None:
    target = crash_target(backend, 99, tmp_path, request)
    coalescing = worker(target, "coalesce", "job-1")
    assert coalescing.stdout is not None
    assert coalescing.stdout.readline() == "saved 1\n"
    for _ in range(50):
        assert coalescing.stdout.readline().startswith("memory ")
    kill(coalescing)
    with Tracker(ingestion, store=target.open(), load_entrypoints=False) as tracker:
        job = tracker.get_job("job-1")
        assert job.version == 3  # created, started, the one saved progress report
        assert job.phases["discovery"].status == "running"
        assert (job.phases["discovery"].items_processed, job.phases["discovery"].items_total) == (
            1,
            1_000_000,
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_change_whose_process_dies_before_announcing_it_is_stored_and_never_announced(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, ingestion: PhaseSet
) -> None:
    target = crash_target(backend, 98, tmp_path, request)
    dying = worker(target, "die-notifying", "job-1")
    out, err = dying.communicate(timeout=60)
    assert dying.returncode == -signal.SIGKILL, err
    assert out == "created\n"  # killed inside phase_changed, before start() returned
    recorder = Recorder()
    with Tracker(
        ingestion, store=target.open(), plugins=[recorder], load_entrypoints=False
    ) as tracker:
        job = tracker.get_job("job-1")
        assert (job.version, job.phases["discovery"].status) == (2, "running")
        assert [e.type for e in tracker.history("job-1")] == ["job_created", "phase_changed"]
    assert recorder.events == []  # restoring announces nothing: that notification is lost
