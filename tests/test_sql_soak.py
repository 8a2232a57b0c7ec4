"""A bounded soak: many jobs changed at once by threads and by processes, on each SQL store.

Every worker loads a job, changes it and retries on ``ConcurrentUpdateError``, for a few
seconds. Afterwards every counter adds up exactly, every worker has ended, and no thread
or database connection is left behind.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from statemachine.plugins.sql import SQLStore, store_url

from statemachine import PhaseSet, Tracker

from .conftest import StoreTarget
from .sql_worker import soak

REPO = Path(__file__).resolve().parents[1]
JOBS = 24
THREADS = 8
PROCESSES = 4
SECONDS = 4.0
JOIN_TIMEOUT = 60.0  # far beyond SECONDS: a worker still running then is stuck


@pytest.fixture
def target(store_target: StoreTarget) -> StoreTarget:
    """The test's store, its PostgreSQL connections named so that they can be counted."""
    if store_target.backend != "postgresql":
        return store_target
    name = f"phasekit-soak-{secrets.token_hex(4)}"
    options = {
        **store_target.options,
        "engine_options": {"connect_args": {"application_name": name}},
    }
    return StoreTarget(store_target.backend, store_target.url, options)


def application_name(target: StoreTarget) -> str | None:
    engine_options: dict[str, Any] = target.options.get("engine_options", {})
    name: str | None = engine_options.get("connect_args", {}).get("application_name")
    return name


@pytest.fixture
def connections(target: StoreTarget) -> Iterator[Callable[[], int]]:
    """The number of database connections the test's stores hold open now."""
    name = application_name(target)
    if name is None:  # SQLite: the files this process has open on the database
        path = target.url.removeprefix("sqlite:///")

        def open_files() -> int:
            fds = Path("/proc/self/fd")
            if not fds.is_dir():
                pytest.skip("needs /proc to count open files")
            count = 0
            for fd in fds.iterdir():
                with suppress(OSError):  # closed since it was listed
                    count += os.readlink(fd).startswith(path)
            return count

        yield open_files
        return
    admin = create_engine(store_url(target.url), poolclass=NullPool)

    def backends() -> int:
        with admin.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
            return int(conn.execute(query, {"name": name}).scalar_one())

    yield backends
    admin.dispose()


def settles_to(count: Callable[[], int], expected: int, timeout: float = 10.0) -> bool:
    """Whether ``count()`` gets to ``expected`` within ``timeout`` (a server sees closes late)."""
    deadline = time.monotonic() + timeout
    while count() != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def create_jobs(tracker: Tracker) -> list[str]:
    """``JOBS`` jobs with every phase started (version 5: created, then four starts)."""
    job_ids = [f"soak-{n}" for n in range(JOBS)]
    for job_id in job_ids:
        job = tracker.create_job(job_id)
        for phase in job.phases.values():
            phase.start()
    return job_ids


def merged(results: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str], int]:
    increments: Counter[str] = Counter()
    toggles: Counter[str] = Counter()
    for result in results:
        increments.update(result["increments"])
        toggles.update(result["toggles"])
    return increments, toggles, sum(r["conflicts"] for r in results)


def assert_nothing_lost(
    tracker: Tracker, job_ids: list[str], increments: Counter[str], toggles: Counter[str]
) -> None:
    """Every committed change is in the store, once: counters, statuses, versions, history."""
    for job_id in job_ids:
        job = tracker.get_job(job_id)
        changes = 0
        for name, phase in job.phases.items():
            key = f"{job_id}/{name}"
            assert phase.items_processed == increments[key], key
            assert phase.status == ("paused" if toggles[key] % 2 else "running"), key
            changes += increments[key] + toggles[key]
        assert job.version == 5 + changes, job_id
        toggled = sum(toggles[f"{job_id}/{name}"] for name in job.phases)
        assert len(tracker.history(job_id)) == 5 + toggled, job_id


def test_eight_threads_sharing_one_tracker_lose_no_update_and_leak_nothing(
    ingestion: PhaseSet, target: StoreTarget, connections: Callable[[], int]
) -> None:
    threads_before = set(threading.enumerate())
    connections_before = connections()
    store = target.open()
    tracker = Tracker(ingestion, store=store, load_entrypoints=False)
    job_ids = create_jobs(tracker)
    results: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    until = time.monotonic() + SECONDS

    def drive(seed: int) -> None:
        try:
            results.append(soak(tracker, job_ids, until, random.Random(seed)))
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=drive, args=(seed,)) for seed in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(JOIN_TIMEOUT)
    assert not [w for w in workers if w.is_alive()], "a worker is stuck"
    assert failures == []
    increments, toggles, conflicts = merged(results)
    assert_nothing_lost(tracker, job_ids, increments, toggles)
    assert store.engine.pool.checkedout() == 0
    tracker.close()
    assert store.engine.pool.checkedout() == 0
    assert settles_to(connections, connections_before)
    # Threads of earlier tests may end meanwhile; none may be added.
    assert set(threading.enumerate()) <= threads_before
    assert threading.active_count() <= len(threads_before)
    print(
        f"\n{target.backend}: {THREADS} threads, {sum(increments.values())} increments and "
        f"{sum(toggles.values())} toggles in {SECONDS:g}s, {conflicts} conflicts retried"
    )


def test_four_processes_on_many_jobs_lose_no_update_and_leak_no_connection(
    ingestion: PhaseSet, target: StoreTarget, connections: Callable[[], int]
) -> None:
    connections_before = connections()
    with Tracker(ingestion, store=target.open(), load_entrypoints=False) as tracker:
        job_ids = create_jobs(tracker)
    command = [sys.executable, "-m", "tests.sql_worker", "soak", target.url]
    options = json.dumps(target.options)
    procs = [
        subprocess.Popen(
            [*command, options, str(SECONDS), str(seed), *job_ids],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(PROCESSES)
    ]
    try:
        for proc in procs:  # every worker is loaded and waiting: they start together
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=JOIN_TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0] * PROCESSES, [err for _, err in outputs]
    increments, toggles, conflicts = merged([json.loads(out) for out, _ in outputs])
    with Tracker(ingestion, store=target.open(), load_entrypoints=False) as tracker:
        assert_nothing_lost(tracker, job_ids, increments, toggles)
    assert settles_to(connections, connections_before)
    print(
        f"\n{target.backend}: {PROCESSES} processes, {sum(increments.values())} increments and "
        f"{sum(toggles.values())} toggles in {SECONDS:g}s, {conflicts} conflicts retried"
    )


def test_a_closed_store_gives_back_every_connection(
    target: StoreTarget, connections: Callable[[], int]
) -> None:
    before = connections()
    store: SQLStore = target.open()
    assert store.load("nobody") is None
    assert connections() > before  # the pool keeps the connection it used, until closed
    store.close()
    assert settles_to(connections, before)
