"""A writer killed with SIGKILL mid-stream leaves a consistent store behind."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from plugins.sql import SQLStore
from statemachine import JobCreated, JobRecord, PhaseChanged, PhaseSet, Tracker

from .conftest import StoreTarget

REPO = Path(__file__).resolve().parents[1]
LINES_BEFORE_KILL = 120


def assert_consistent(record: JobRecord, history: list[JobCreated | PhaseChanged]) -> None:
    """The history replays to the stored phase statuses, and the versions agree."""
    created, *changes = history
    assert isinstance(created, JobCreated)
    assert created.version == 1
    statuses = dict.fromkeys(created.phases, created.initial_status)
    versions = [created.version]
    for change in changes:
        assert isinstance(change, PhaseChanged)
        assert statuses[change.phase] == change.source
        statuses[change.phase] = change.dest
        versions.append(change.version)
    assert versions == sorted(set(versions))
    assert record.version >= versions[-1]
    assert {p.phase_name: p.status for p in record.phases} == statuses


def test_a_writer_killed_mid_stream_loses_nothing_it_reported_committed(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sql_worker",
            "write",
            store_target.url,
            json.dumps(store_target.options),
            "crash",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    text = "".join(writer.stdout.readline() for _ in range(LINES_BEFORE_KILL))
    time.sleep(random.uniform(0, 0.05))  # anywhere in the commits that follow
    writer.send_signal(signal.SIGKILL)  # well into its stream, most likely mid-commit
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL, writer.stderr and writer.stderr.read()
    # Every line it printed, each after its call returned, reports a commit; a line the
    # kill cut short reports nothing.
    *lines, _ = (text + writer.stdout.read()).split("\n")
    reported: dict[str, int] = {}
    for line in lines:
        job_id, number = line.split()
        reported[job_id] = int(number)

    if store_target.backend == "sqlite":
        path = store_target.url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    store: SQLStore = store_target.open()
    stored = {r.job_id: r for r in store.list(limit=10_000)}
    last = max(reported, key=lambda j: int(j.rsplit("-", 1)[1]))
    for job_id, version in reported.items():
        record = stored[job_id]
        if job_id == last:  # the job in flight: its reported commits, perhaps one more
            assert record.version in (version, version + 1)
            print(
                f"\n{store_target.backend}: killed after {len(lines)} reported commits on "
                f"{len(reported)} jobs; job in flight stored at version {record.version}, "
                f"last reported {version}; {len(stored)} jobs stored"
            )
        else:
            assert record.version == version
    unreported = set(stored) - set(reported)
    assert len(unreported) <= 1  # a creation committed as the writer died, at most
    for job_id, record in stored.items():
        assert_consistent(record, store.history(job_id))
    with Tracker(ingestion, store=store, load_entrypoints=False) as tracker:
        for job_id, record in stored.items():  # each restores; its aggregate is its own
            job = tracker.get_job(job_id)
            assert job.get_overall_status() == record.status
            assert job.get_overall_progress() == record.progress
        tracker.create_job("after-the-crash").phases["discovery"].start()
        assert tracker.get_job("after-the-crash").version == 2
