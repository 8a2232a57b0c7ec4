"""Several processes on one SQL store: restore elsewhere, and concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from statemachine import JobExists, PhaseSet, Tracker

from .conftest import StoreTarget

REPO = Path(__file__).resolve().parents[1]
WORKERS = 4
INCREMENTS = 100


def worker(target: StoreTarget, command: str, *args: str) -> subprocess.Popen[str]:
    """``tests/sql_worker.py`` in a new Python process, on ``target``'s store."""
    options = json.dumps(target.options)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sql_worker", command, target.url, options, *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def failure_of(proc: subprocess.Popen[str]) -> str:
    """What a worker wrote on stderr, once it has ended (for an assertion's message)."""
    proc.kill()
    _, err = proc.communicate(timeout=30)
    return err


def test_a_job_restored_in_another_process_is_identical(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    with Tracker(ingestion, store=store_target.open(), load_entrypoints=False) as t:
        job = t.create_job("job-1", metadata={"source": "s3://bucket/x", "tries": [1, 2]})
        discovery, extraction, loading = (
            job.phases[n] for n in ("discovery", "extraction", "loading")
        )
        discovery.start()
        discovery.update_progress(items_processed=10, items_total=10)
        discovery.complete()
        extraction.start()
        extraction.update_progress(items_processed=33, items_total=200)
        extraction.pause()
        extraction.resume()
        loading.fail("upstream refused: 503")
        expected = job.to_schema().model_dump_json()
    shown = worker(store_target, "show", "job-1")
    out, err = shown.communicate(timeout=60)
    assert shown.returncode == 0, err
    assert out.strip() == expected


def test_four_processes_incrementing_one_counter_lose_no_update(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    with Tracker(ingestion, store=store_target.open(), load_entrypoints=False) as t:
        t.create_job("counter").phases["extraction"].start()
    procs = [
        worker(store_target, "increment", "counter", "extraction", str(INCREMENTS))
        for _ in range(WORKERS)
    ]
    for proc in procs:  # every worker is loaded and waiting: they start together
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            pytest.fail(f"a worker did not start: {failure_of(proc)}")
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [proc.communicate(timeout=120) for proc in procs]
    elapsed = time.perf_counter() - started
    assert [proc.returncode for proc in procs] == [0] * WORKERS, [err for _, err in results]
    conflicts = [int(out) for out, _ in results]
    with Tracker(ingestion, store=store_target.open(), load_entrypoints=False) as t:
        job = t.get_job("counter")
    assert job.phases["extraction"].items_processed == WORKERS * INCREMENTS
    assert job.version == 2 + WORKERS * INCREMENTS
    print(
        f"\n{store_target.backend}: {WORKERS}x{INCREMENTS} increments in {elapsed:.2f}s, "
        f"{sum(conflicts)} version conflicts retried"
    )


def test_two_stores_creating_the_same_job_one_wins_and_the_other_gets_job_exists(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    first, second = store_target.open(), store_target.open()
    record = ingestion.initial_record("job-1", {"by": "first"})
    first.create(record, [])
    with pytest.raises(JobExists):
        second.create(ingestion.initial_record("job-1", {"by": "second"}), [])
    loaded = second.load("job-1")
    assert loaded is not None
    assert loaded.metadata == {"by": "first"}
    first.close()
    second.close()


def test_threads_sharing_one_tracker_and_store_commit_every_change(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    failures: list[BaseException] = []

    def drive(tracker: Tracker, worker_id: int) -> None:
        try:
            for n in range(10):
                job = tracker.create_job(f"w{worker_id}-{n}")
                job.phases["discovery"].start()
                job.phases["discovery"].complete()
        except BaseException as exc:
            failures.append(exc)

    with Tracker(ingestion, store=store_target.open(), load_entrypoints=False) as tracker:
        threads = [threading.Thread(target=drive, args=(tracker, i)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        jobs = tracker.list_jobs(limit=1000)
        assert len(jobs) == 80
        assert {job.version for job in jobs} == {3}
        assert {len(tracker.history(job.job_id)) for job in jobs} == {3}
