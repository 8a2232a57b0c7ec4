"""The worker example: real processes sharing one job by id on a SQLite store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statemachine import PhaseChanged, Tracker

WORKER = Path(__file__).resolve().parent.parent / "examples" / "worker.py"
PHASES = ["discovery", "extraction", "transformation", "loading"]


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    with Tracker("ingestion", store=url):  # the tables, made once before the workers race
        pass
    return url


def worker(store: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), store, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def transitions(store: str, job_id: str) -> list[tuple[str, str]]:
    with Tracker("ingestion", store=store) as tracker:
        history = tracker.history(job_id)
    return [(e.phase, e.trigger) for e in history if isinstance(e, PhaseChanged)]


def test_four_workers_one_per_phase_run_a_shared_job_to_completion(store: str) -> None:
    workers = [
        worker(store, "--job", "J", "--phase", phase, "--items", "300", "--batch", "7")
        for phase in PHASES
    ]
    for phase, process in zip(PHASES, workers, strict=True):
        code, out, err = finish(process)
        assert (code, err) == (0, ""), out
        assert out.splitlines()[-1] == f"J: {phase}=completed"
    with Tracker("ingestion", store=store) as tracker:
        job = tracker.get_job("J")
        assert job.get_overall_status() == "completed"
        assert [(p.items_processed, p.items_total) for p in job] == [(300, 300)] * 4
        # 1 creation, then per phase: a start, 43 reports (300 items in batches of 7), a complete.
        assert job.version == 1 + 4 * (1 + 43 + 1)
        for phase in PHASES:
            assert tracker.store.seen_idempotency_key("J", f"{phase}:start")
            assert tracker.store.seen_idempotency_key("J", f"{phase}:complete")
    assert sorted(transitions(store, "J")) == sorted(
        (phase, trigger) for phase in PHASES for trigger in ("start", "complete")
    )


def test_one_worker_on_all_phases_advances_them_round_robin(store: str) -> None:
    code, out, err = finish(worker(store, "--job", "R", "--phases", "all", "--items", "50"))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == (
        "R: discovery=completed, extraction=completed, transformation=completed, loading=completed"
    )
    # Every phase started before the first one completed: one batch each, in turn.
    assert transitions(store, "R") == [(p, "start") for p in PHASES] + [
        (p, "complete") for p in PHASES
    ]


def test_a_killed_worker_restarted_on_its_task_finishes_it_once(store: str) -> None:
    args = ("--job", "K", "--phase", "extraction", "--items", "100", "--batch", "5")
    first = worker(store, *args, "--delay", "0.05")
    assert first.stdout is not None
    assert first.stdout.readline() == "K: extraction running from 0/100\n"
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    with Tracker("ingestion", store=store) as tracker:
        stopped = tracker.get_job("K").phases["extraction"]
        assert stopped.status == "running"
        assert stopped.items_processed < 100

    code, out, err = finish(worker(store, *args))
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"K: extraction running from {stopped.items_processed}/100"
    assert transitions(store, "K") == [("extraction", "start"), ("extraction", "complete")]
    with Tracker("ingestion", store=store) as tracker:
        done = tracker.get_job("K").phases["extraction"]
        assert (done.status, done.items_processed, done.items_total) == ("completed", 100, 100)


def test_a_task_run_again_after_it_finished_commits_nothing(store: str) -> None:
    args = ("--job", "A", "--phase", "discovery", "--items", "20")
    assert finish(worker(store, *args))[0] == 0
    with Tracker("ingestion", store=store) as tracker:
        version = tracker.get_job("A").version
    code, out, _ = finish(worker(store, *args))
    assert (code, out.splitlines()[0]) == (0, "A: discovery already completed")
    with Tracker("ingestion", store=store) as tracker:
        assert tracker.get_job("A").version == version


def test_a_task_delivered_twice_at_once_commits_each_transition_once(store: str) -> None:
    args = ("--job", "D", "--phase", "loading", "--items", "200", "--batch", "10")
    twins = [worker(store, *args, "--delay", "0.01") for _ in range(2)]
    for process in twins:
        code, out, err = finish(process)
        assert (code, err) == (0, ""), out
        assert out.splitlines()[-1] == "D: loading=completed"
    assert transitions(store, "D") == [("loading", "start"), ("loading", "complete")]


def test_a_failed_phase_fails_the_job_and_stops_the_other_phases(store: str) -> None:
    code, out, err = finish(
        worker(
            store,
            "--job",
            "F",
            "--phases",
            "all",
            "--items",
            "100",
            "--batch",
            "10",
            "--fail-in",
            "extraction",
        )
    )
    assert (code, err) == (1, "")
    # A batch of each phase in turn: when extraction fails at 50, the others are at 50 or 60.
    assert out.splitlines()[4:] == [
        "F: extraction failed",
        "F: transformation stopped at 60/100: the job failed",
        "F: loading stopped at 60/100: the job failed",
        "F: discovery stopped at 70/100: the job failed",
        "F: discovery=running, extraction=failed, transformation=running, loading=running",
    ]
    with Tracker("ingestion", store=store) as tracker:
        job = tracker.get_job("F")
        assert job.get_overall_status() == "failed"
        assert job.phases["extraction"].error == "simulated failure at item 50"
    assert ("extraction", "fail") in transitions(store, "F")


def test_an_unknown_phase_is_refused_before_anything_runs(store: str) -> None:
    code, _, err = finish(worker(store, "--job", "U", "--phase", "extracton"))
    assert code == 1
    assert "no phase 'extracton'" in err
    with Tracker("ingestion", store=store) as tracker:
        assert tracker.list_jobs() == []
