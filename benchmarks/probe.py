"""Creates many jobs in a fresh interpreter and prints what they cost, as JSON.

Run as ``python -m benchmarks.probe KIND JOBS [WHAT]``, KIND one of ``detached`` (``spec.new_job``),
``tracker`` (``Tracker.create_job``, memory store, no plugins) or ``naive`` (one
``add_model``-ed transitions model per phase on a shared machine). A fresh process per
measurement keeps one measurement's garbage and caches out of the next.

WHAT ``both`` (the default) makes the jobs three times: without tracemalloc (creation rate,
and the growth of the resident set), under tracemalloc (bytes held per job, and the
allocation sites holding them), and with the garbage collector off (its share of the time).
WHAT ``time`` makes them once, without tracemalloc.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from transitions import Machine

from statemachine import PhaseSet, Tracker, load_spec

from .baselines import NaiveJob, machine_kwargs

__all__ = ["KINDS", "main", "measure"]

KINDS = ("detached", "tracker", "naive")
#: Allocation sites reported per memory measurement.
TOP_SITES = 14


def _rss() -> int:
    """The resident set size of this process, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maker(kind: str, spec: PhaseSet) -> Callable[[str], object]:
    if kind == "detached":
        spec.new_job("warm-up")
        return spec.new_job
    if kind == "tracker":
        tracker = Tracker(spec, load_entrypoints=False)
        tracker.create_job("warm-up")
        return tracker.create_job
    if kind == "naive":
        machine = Machine(model=None, **machine_kwargs(spec))
        names = spec.phase_names
        return lambda job_id: NaiveJob(job_id, machine, names)
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def _timed(make: Callable[[str], object], ids: list[str]) -> dict[str, Any]:
    gc.collect()
    rss = _rss()
    start = time.perf_counter()
    made = [make(job_id) for job_id in ids]
    elapsed = time.perf_counter() - start
    gc.collect()
    grown = _rss() - rss
    del made
    return {"seconds": elapsed, "jobs_per_s": len(ids) / elapsed, "rss_per_job": grown / len(ids)}


def _traced(make: Callable[[str], object], ids: list[str]) -> dict[str, Any]:
    """Bytes held per job, and the allocation sites that hold them (the memory profile)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    made = [make(job_id) for job_id in ids]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    n = len(ids)
    sites = after.compare_to(before, "lineno")
    top = [
        f"{s.size_diff / n:8.1f} B/job {s.count_diff / n:6.2f} blocks/job  {s.traceback[0]}"
        for s in sites[:TOP_SITES]
    ]
    held = sum(s.size_diff for s in sites)
    del made
    return {"bytes_per_job": held / n, "top_sites": top}


def measure(kind: str, jobs: int, what: str = "both") -> dict[str, Any]:
    spec = load_spec("ingestion")
    ids = [f"job-{i:07d}" for i in range(jobs)]  # made beforehand: not part of a job's cost
    result: dict[str, Any] = {"kind": kind, "jobs": jobs}
    result.update(_timed(_maker(kind, spec), ids))
    if what == "both":
        result.update(_traced(_maker(kind, spec), ids))
        # The same creation with the cyclic garbage collector off: how much of the time is
        # the collector walking the objects of the jobs already made.
        gc.disable()
        try:
            result["jobs_per_s_gc_off"] = _timed(_maker(kind, spec), ids)["jobs_per_s"]
        finally:
            gc.enable()
    return result


def main(argv: list[str]) -> int:
    kind, jobs, *what = argv
    print(json.dumps(measure(kind, int(jobs), *what)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
