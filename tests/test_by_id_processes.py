"""Working by id from several processes on one SQL store: nothing lost, nothing surfaced.

Every writer is a real process (``tests/byid_worker.py``) driving phases of shared jobs with
``fire``/``report_progress`` by id; a worker reports every exception a call raised on its
stdout, so a conflict that reached a caller fails the test. Then the store is read back: the
counters, the statuses, the history (exactly the transitions made) and the event log (every
commit).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import statemachine.plugins.sql as sql_plugin
from statemachine.plugins.sql import SQLStore

from statemachine import (
    AsyncTracker,
    Event,
    InvalidTransition,
    PhaseSet,
    Tracker,
    TransitionRequest,
    hookimpl,
)

from .conftest import StoreTarget

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "byid_worker.py"
PHASES = ("discovery", "extraction", "transformation", "loading")
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=SQL_BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if request.param == "sqlite":
        return StoreTarget("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
    pg: StoreTarget = request.getfixturevalue("pg_target")
    return pg


@pytest.fixture
def store(target: StoreTarget) -> Iterator[SQLStore]:
    """The test's own reader of the store (a sync pool of its own)."""
    opened = target.open()
    yield opened
    opened.close()


def worker(target: StoreTarget, command: str, *args: str) -> subprocess.Popen[str]:
    """``tests/byid_worker.py`` in a new Python process, on ``target``'s store."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), command, target.url, json.dumps(target.options), *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_lanes(
    target: StoreTarget, writers: list[tuple[str, list[list[Any]]]]
) -> tuple[list[dict[str, Any]], float]:
    """Start one worker per ``(kind, lanes)``, let them go at once; their reports, wall time."""
    procs = [worker(target, "lanes", kind, json.dumps(lanes)) for kind, lanes in writers]
    try:
        for proc in procs:  # every worker has its tracker built and is waiting
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                proc.kill()
                pytest.fail(f"a worker did not start ({line!r}): {proc.communicate()[1]}")
        began = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=120) for proc in procs]
        elapsed = time.perf_counter() - began
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert [p.returncode for p in procs] == [0] * len(procs), [err for _, err in results]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in results], elapsed


def logged(store: SQLStore) -> list[Event]:
    events: list[Event] = []
    after = 0
    while page := store.read_events(after, limit=1000):
        events.extend(e.event for e in page)
        after = page[-1].position
    return events


def check_jobs(
    ingestion: PhaseSet, store: SQLStore, lanes: dict[str, dict[str, int]]
) -> dict[str, int]:
    """Every job of ``lanes`` ({job: {phase: reports}}) is exactly as its lanes left it: the
    counters, the statuses, its history and its events. The committed changes, by type."""
    with Tracker(ingestion, store=store, load_entrypoints=False) as reader:
        everything = logged(store)
        for job_id, phases in lanes.items():
            job = reader.get_job(job_id)
            for phase, reports in phases.items():
                state = job.phases[phase]
                assert (state.items_processed, state.items_total) == (reports, reports)
                assert (state.status, state.progress) == ("completed", 100.0)
            assert job.get_overall_status() == "completed"
            commits = sum(reports + 2 for reports in phases.values())
            assert job.version == 1 + commits
            history = reader.history(job_id)
            assert [e.type for e in history] == ["job_created"] + ["phase_changed"] * 2 * len(
                phases
            )
            made = [(e.phase, e.trigger) for e in history[1:]]  # type: ignore[union-attr]
            assert sorted(made) == sorted(
                (phase, trigger) for phase in phases for trigger in ("start", "complete")
            )
            for phase in phases:
                assert made.index((phase, "start")) < made.index((phase, "complete"))
            events = [e for e in everything if e.job_id == job_id]
            # Every commit is in the log, once: one version each, 1 to the last.
            assert sorted({e.version for e in events}) == list(range(1, job.version + 1))
            assert [e.type for e in events].count("job_created") == 1
            for phase, reports in phases.items():
                reported = [
                    e.items_processed
                    for e in events
                    if e.type == "progress_updated" and e.phase == phase
                ]
                assert reported == list(range(1, reports + 1))  # in commit order
    counts: Counter[str] = Counter(e.type for e in everything)
    # One phase_changed or progress_updated event per commit, one job_created per job.
    commits = sum(reports + 2 for phases in lanes.values() for reports in phases.values())
    assert counts["phase_changed"] + counts["progress_updated"] == commits
    assert counts["job_created"] == len(lanes)
    return dict(counts)


def describe(results: list[dict[str, Any]], writers: list[tuple[str, list[list[Any]]]]) -> str:
    return ", ".join(
        f"{kind} {r['calls']} calls {r['seconds']:.2f}s (slowest {r['slowest_call'] * 1000:.0f} ms)"
        for (kind, _), r in zip(writers, results, strict=True)
    )


@pytest.mark.slow
def test_four_processes_on_the_four_phases_of_one_job_lose_nothing(
    ingestion: PhaseSet, target: StoreTarget, store: SQLStore
) -> None:
    reports = 100
    with Tracker(ingestion, store=target.open(), load_entrypoints=False) as setup:
        setup.create_job("shared")
    writers = [("sync", [["shared", phase, reports]]) for phase in PHASES]
    results, elapsed = run_lanes(target, writers)
    print(
        f"\n{target.backend}: 4 processes x 102 by-id calls in {elapsed:.2f}s: "
        f"{describe(results, writers)}"
    )
    assert [r["exceptions"] for r in results] == [[]] * 4  # no call saw an exception
    assert [r["calls"] for r in results] == [reports + 2] * 4
    counts = check_jobs(ingestion, store, {"shared": dict.fromkeys(PHASES, reports)})
    assert counts["progress_updated"] == 4 * reports
    assert (counts["phase_changed"], counts["job_created"]) == (8, 1)


@pytest.mark.slow
def test_async_tasks_and_sync_processes_beside_them_share_jobs_and_lose_nothing(
    ingestion: PhaseSet, target: StoreTarget, store: SQLStore
) -> None:
    """One process runs 8 tasks on one AsyncTracker, two sync processes run beside it.

    Job ``a``: its four phases, one task each (tasks of one tracker on one job). Jobs ``b``
    and ``c``: discovery and extraction by tasks, transformation by the first sync process,
    loading by the second, so every writer writes a job another process writes too.
    """
    reports = 50
    tasks = [["a", phase, reports] for phase in PHASES] + [
        [job, phase, reports] for job in ("b", "c") for phase in PHASES[:2]
    ]
    writers: list[tuple[str, list[list[Any]]]] = [
        ("async", tasks),
        ("sync", [[job, "transformation", reports] for job in ("b", "c")]),
        ("sync", [[job, "loading", reports] for job in ("b", "c")]),
    ]
    with Tracker(ingestion, store=target.open(), load_entrypoints=False) as setup:
        for job_id in ("a", "b", "c"):
            setup.create_job(job_id)
    results, elapsed = run_lanes(target, writers)
    print(
        f"\n{target.backend}: 8 async tasks + 2 sync processes, 3 jobs, in {elapsed:.2f}s: "
        f"{describe(results, writers)}"
    )
    assert [r["exceptions"] for r in results] == [[]] * 3  # no call saw an exception
    assert [r["calls"] for r in results] == [
        8 * (reports + 2),
        2 * (reports + 2),
        2 * (reports + 2),
    ]
    counts = check_jobs(
        ingestion, store, {job: dict.fromkeys(PHASES, reports) for job in ("a", "b", "c")}
    )
    assert counts["progress_updated"] == 12 * reports
    assert (counts["phase_changed"], counts["job_created"]) == (24, 3)


class OtherProcessFirst:
    """The first time it is asked about a change, another process fires ``trigger`` on the same
    phase, by id, and commits: the change planned here is stale by the time it is saved."""

    name = "other-process-first"

    def __init__(self, target: StoreTarget, trigger: str, *, awaited: bool) -> None:
        self.args = [
            sys.executable,
            str(WORKER),
            "fire",
            target.url,
            json.dumps(target.options),
        ]
        self.trigger = trigger
        self.awaited = awaited
        self.asked: list[str] = []
        self.answers: list[str] = []

    def _command(self, event: TransitionRequest) -> list[str]:
        return [*self.args, event.job_id, event.phase, self.trigger]

    @hookimpl
    def before_transition(self, event: TransitionRequest) -> Any:
        self.asked.append(event.source)
        if len(self.asked) > 1:
            return None
        if not self.awaited:
            done = subprocess.run(self._command(event), capture_output=True, text=True, check=True)
            self.answers.append(done.stdout.strip())
            return None

        async def in_a_subprocess() -> None:  # the AsyncTracker awaits it, the loop runs on
            proc = await asyncio.create_subprocess_exec(
                *self._command(event), stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            self.answers.append(out.decode().strip())

        return in_a_subprocess()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_by_id_fire_another_process_made_impossible_names_the_new_status(
    ingestion: PhaseSet, target: StoreTarget, store: SQLStore, kind: str
) -> None:
    with Tracker(ingestion, store=target.open(), load_entrypoints=False) as setup:
        setup.create_job("j")
        setup.fire("j", "discovery", "start")
    other = OtherProcessFirst(target, "fail", awaited=kind == "async")
    message = "job 'j', phase 'discovery': cannot 'complete' from status 'failed'"
    if kind == "sync":
        with (
            Tracker(ingestion, store=target.open(), plugins=[other], load_entrypoints=False) as t,
            pytest.raises(InvalidTransition, match=message) as info,
        ):
            t.fire("j", "discovery", "complete")
    else:

        async def main() -> None:
            async with AsyncTracker(
                ingestion,
                target.url,
                plugins=[other, sql_plugin],
                store_options=target.options,
                load_entrypoints=False,
            ) as t:
                await t.fire("j", "discovery", "complete")

        with pytest.raises(InvalidTransition, match=message) as info:
            asyncio.run(main())
    assert info.value.status == "failed"
    assert other.answers == ["failed"]  # the other process committed its change
    assert other.asked == ["running"]  # planned once; the reloaded phase allows no complete
    with Tracker(ingestion, store=store, load_entrypoints=False) as reader:
        job = reader.get_job("j")
        assert (job.version, job.phases["discovery"].status) == (3, "failed")  # it stands
        assert [(e.type, getattr(e, "trigger", None)) for e in reader.history("j")] == [
            ("job_created", None),
            ("phase_changed", "start"),
            ("phase_changed", "fail"),
        ]
        # And a plain by-id fire after the fact names the new status too.
        with pytest.raises(InvalidTransition, match="cannot 'start' from status 'failed'"):
            reader.fire("j", "discovery", "start")
