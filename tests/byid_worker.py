"""Another process driving jobs by id, as ``tests/test_by_id_processes.py`` needs several.

Run as ``python tests/byid_worker.py COMMAND URL OPTIONS_JSON ARGS...`` (OPTIONS_JSON: the
SQL store's options, e.g. its schema and table prefix):

- ``lanes sync|async LANES_JSON``: print ``ready``, wait for a line on stdin, then drive every
  lane ``[job_id, phase, reports]``: ``fire(start)``, ``report_progress`` 1, 2, … ``reports``
  out of ``reports``, ``fire(complete)``, all by id. ``sync`` is one ``Tracker`` taking the
  lanes' steps in turn (one step of each lane, then the next); ``async`` is one
  ``AsyncTracker`` with a task per lane. Every exception a call raises is caught and kept;
  the last line printed is JSON: ``{"exceptions": [...], "calls": N, "seconds": S,
  "slowest_call": S}``.
- ``fire JOB_ID PHASE TRIGGER``: fire one trigger by id; print the phase's new status, or
  the exception as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import statemachine.plugins.sql as sql_plugin
from statemachine.plugins.sql import SQLStore

from statemachine import AsyncTracker, Tracker, load_spec

SPEC = load_spec("ingestion")

Step = tuple[str, tuple[Any, ...], dict[str, Any]]


def lane_steps(job_id: str, phase: str, reports: int) -> Iterator[Step]:
    """The by-id calls that drive one phase of one job: start, progress, complete."""
    yield "fire", (job_id, phase, "start"), {}
    for n in range(1, reports + 1):
        yield "report_progress", (job_id, phase, n), {"items_total": reports}
    yield "fire", (job_id, phase, "complete"), {}


class Outcome:
    """What the calls of this process did: exceptions, calls made, the slowest call."""

    def __init__(self) -> None:
        self.exceptions: list[dict[str, str]] = []
        self.calls = 0
        self.slowest = 0.0

    def record(self, step: Step, seconds: float, exc: BaseException | None) -> None:
        self.calls += 1
        self.slowest = max(self.slowest, seconds)
        if exc is not None:
            name, args, _ = step
            self.exceptions.append(
                {"call": f"{name}{args!r}", "type": type(exc).__name__, "message": str(exc)}
            )

    def report(self, seconds: float) -> str:
        return json.dumps(
            {
                "exceptions": self.exceptions,
                "calls": self.calls,
                "seconds": round(seconds, 3),
                "slowest_call": round(self.slowest, 4),
            }
        )


def wait_for_go() -> float:
    """Say ``ready`` (the tracker is built), wait for the test's line; the time it came."""
    print("ready", flush=True)
    sys.stdin.readline()
    return time.perf_counter()


def run_sync(url: str, options: dict[str, Any], lanes: list[list[Any]], outcome: Outcome) -> None:
    with Tracker(SPEC, store=SQLStore(url, **options), load_entrypoints=False) as tracker:
        tracker.get_job(lanes[0][0])  # connected, the tables checked
        began = wait_for_go()
        steps = [lane_steps(*lane) for lane in lanes]
        while steps:
            for lane in list(steps):
                step = next(lane, None)
                if step is None:
                    steps.remove(lane)
                    continue
                name, args, kwargs = step
                called = time.perf_counter()
                try:
                    getattr(tracker, name)(*args, **kwargs)
                except Exception as exc:  # reported on stdout, for the test to see
                    outcome.record(step, time.perf_counter() - called, exc)
                else:
                    outcome.record(step, time.perf_counter() - called, None)
        print(outcome.report(time.perf_counter() - began), flush=True)


async def run_async(
    url: str, options: dict[str, Any], lanes: list[list[Any]], outcome: Outcome
) -> None:
    async with AsyncTracker(
        SPEC, url, plugins=[sql_plugin], store_options=options, load_entrypoints=False
    ) as tracker:
        await tracker.get_job(lanes[0][0])  # connected, the tables checked
        began = await asyncio.to_thread(wait_for_go)

        async def drive(job_id: str, phase: str, reports: int) -> None:
            for step in lane_steps(job_id, phase, reports):
                name, args, kwargs = step
                call: Callable[..., Awaitable[Any]] = getattr(tracker, name)
                called = time.perf_counter()
                try:
                    await call(*args, **kwargs)
                except Exception as exc:  # reported on stdout, for the test to see
                    outcome.record(step, time.perf_counter() - called, exc)
                else:
                    outcome.record(step, time.perf_counter() - called, None)

        await asyncio.gather(*(drive(*lane) for lane in lanes))
        print(outcome.report(time.perf_counter() - began), flush=True)


def fire_once(url: str, options: dict[str, Any], job_id: str, phase: str, trigger: str) -> str:
    with Tracker(SPEC, store=SQLStore(url, **options), load_entrypoints=False) as tracker:
        try:
            job = tracker.fire(job_id, phase, trigger)
        except Exception as exc:  # reported on stdout, for the test to see
            return json.dumps({"type": type(exc).__name__, "message": str(exc)})
        return job.phases[phase].status


def main(argv: list[str]) -> int:
    command, url, raw_options, *args = argv
    options = json.loads(raw_options)
    if command == "fire":
        print(fire_once(url, options, *args), flush=True)
        return 0
    if command != "lanes":
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    kind, lanes = args[0], json.loads(args[1])
    if kind == "sync":
        run_sync(url, options, lanes, Outcome())
    else:
        asyncio.run(run_async(url, options, lanes, Outcome()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
