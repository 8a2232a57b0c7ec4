"""A worker that runs phases of a shared ingestion job by id, through a Tracker.

    python examples/worker.py sqlite:///phasekit.db --job nightly-1 --phase discovery --items 5000
    python examples/worker.py sqlite:///phasekit.db --job nightly-1 --phases all --items 5000

Several workers (processes, machines) may share one job, each running some of its phases:
``--phase`` (repeatable) names them, ``--phases all`` takes every phase and advances them
round-robin, one batch each in turn. The job is created by whichever worker comes first.

Each worker holds the job id, never a job object: it fires triggers with ``Tracker.fire`` and
reports counts with ``Tracker.report_progress``, so writers on other phases never conflict
with it. A (job, phase) is one task. Its transitions carry idempotency keys naming the task
(``discovery:start``, ``discovery:complete``), so a worker restarted on the same task, or a
task delivered twice, commits each transition once: it picks the phase up where the store
has it (its counts, running or paused) and a finished phase is left as it is. Progress
reports are absolute counts, which are safe to repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence

from statemachine import InvalidTransition, JobExists, PhaseKitError, Tracker


def claim(tracker: Tracker, job_id: str) -> None:
    """Make sure the job exists; another worker creating it first is fine."""
    with contextlib.suppress(JobExists):
        tracker.create_job(job_id, metadata={"created_by": "examples/worker.py"})


def run_phase(
    tracker: Tracker,
    job_id: str,
    phase: str,
    *,
    items: int,
    batch: int,
    delay: float,
    fail_at: int | None = None,
) -> Iterator[str | None]:
    """Run one phase of the job, a batch per step; a step yields a line to print, or None.

    When another writer finished the phase meanwhile (a task delivered twice), the trigger
    or report it made impossible raises ``InvalidTransition``: their change stands, and this
    run ends there.
    """
    try:
        yield from _drive(
            tracker, job_id, phase, items=items, batch=batch, delay=delay, fail_at=fail_at
        )
    except InvalidTransition:
        state = tracker.get_job(job_id).phases[phase]
        if not state.is_terminal():
            raise
        yield f"{job_id}: {phase} {state.status} by another worker"


def _drive(
    tracker: Tracker,
    job_id: str,
    phase: str,
    *,
    items: int,
    batch: int,
    delay: float,
    fail_at: int | None,
) -> Iterator[str | None]:
    job = tracker.get_job(job_id)
    state = job.phases[phase]
    if state.is_terminal():
        yield f"{job_id}: {phase} already {state.status}"
        return
    if state.may("resume"):
        # A phase may be paused and resumed more than once: the key names the version.
        job = tracker.fire(job_id, phase, "resume", idempotency_key=f"{phase}:resume@{job.version}")
    elif state.may("start"):
        job = tracker.fire(job_id, phase, "start", idempotency_key=f"{phase}:start")
    done = job.phases[phase].items_processed
    yield f"{job_id}: {phase} {job.phases[phase].status} from {done}/{items}"
    while done < items:
        if fail_at is not None and done >= fail_at:
            error = f"simulated failure at item {done}"
            tracker.fire(job_id, phase, "fail", error=error, idempotency_key=f"{phase}:fail")
            yield f"{job_id}: {phase} failed"
            return
        done = min(items, done + batch)
        job = tracker.report_progress(job_id, phase, done, items)
        if job.get_overall_status() == "failed":
            yield f"{job_id}: {phase} stopped at {done}/{items}: the job failed"
            return
        time.sleep(delay)
        yield None
    tracker.fire(job_id, phase, "complete", idempotency_key=f"{phase}:complete")
    yield f"{job_id}: {phase} completed"


def round_robin(phases: Sequence[Iterator[str | None]]) -> Iterator[str]:
    """A step of each phase in turn until every phase is done; the lines they yield."""
    active = list(phases)
    while active:
        for steps in list(active):
            try:
                line = next(steps)
            except StopIteration:
                active.remove(steps)
                continue
            if line is not None:
                yield line


def run(
    store: str,
    job_id: str,
    phases: Sequence[str],
    *,
    items: int,
    batch: int,
    delay: float,
    fail_in: str | None = None,
) -> dict[str, str]:
    """Run ``phases`` of the job; each one's status at the end."""
    with Tracker("ingestion", store=store) as tracker:
        if "all" in phases:
            phases = tracker.spec.phase_names
        for phase in phases:
            if phase not in tracker.spec.phase_names:
                known = ", ".join(tracker.spec.phase_names)
                raise PhaseKitError(f"no phase {phase!r} in {tracker.spec.name!r}; phases: {known}")
        claim(tracker, job_id)
        steps = [
            run_phase(
                tracker,
                job_id,
                phase,
                items=items,
                batch=batch,
                delay=delay,
                fail_at=items // 2 if phase == fail_in else None,
            )
            for phase in dict.fromkeys(phases)
        ]
        for line in round_robin(steps):
            print(line, flush=True)
        job = tracker.get_job(job_id)
        return {phase: job.phases[phase].status for phase in dict.fromkeys(phases)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="store URL, e.g. sqlite:///phasekit.db")
    parser.add_argument("--job", required=True, help="job id (created if missing)")
    parser.add_argument(
        "--phase",
        "--phases",
        dest="phases",
        action="append",
        required=True,
        help="a phase to run (repeat for several, comma-separated, or 'all')",
    )
    parser.add_argument("--items", type=int, default=1000, help="items per phase")
    parser.add_argument("--batch", type=int, default=100, help="items per progress report")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per batch")
    parser.add_argument("--fail-in", metavar="PHASE", help="fail this phase halfway")
    args = parser.parse_args(argv)
    phases = [name for value in args.phases for name in value.split(",") if name]
    try:
        statuses = run(
            args.store,
            args.job,
            phases,
            items=max(0, args.items),
            batch=max(1, args.batch),
            delay=args.delay,
            fail_in=args.fail_in,
        )
    except (PhaseKitError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{phase}={status}" for phase, status in statuses.items())
    print(f"{args.job}: {summary}")
    return 0 if all(status == "completed" for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
