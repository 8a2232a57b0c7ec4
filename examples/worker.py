"""A worker that runs an ingestion job's phases and reports progress through a Tracker.

    python examples/worker.py sqlite:///phasekit.db --job nightly-1 --items 5000

It creates the job if the store does not have it, and otherwise carries on where the job
stopped: finished phases are skipped, a paused phase is resumed. Any process (the CLI, a
web service) can watch the job in the same store meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import time

from statemachine import JobNotFound, PhaseKitError, Tracker


def run(
    store: str, job_id: str, *, items: int, batch: int, delay: float, fail_in: str | None
) -> str:
    """Run every unfinished phase of the job; its overall status at the end."""
    # Saving each progress report at most every 0.2 s keeps a fast loop from hammering the
    # store; status changes are always saved at once, and close() saves what is pending.
    with Tracker("ingestion", store=store, progress_interval=0.2) as tracker:
        try:
            job = tracker.get_job(job_id)
        except JobNotFound:
            job = tracker.create_job(job_id, metadata={"worker": "examples/worker.py"})
        if job.get_overall_status() == "failed":
            return "failed"  # a failed ingestion is not retried phase by phase
        for phase in job:
            if phase.is_terminal():
                continue
            if phase.may("resume"):
                phase.trigger("resume")
            elif phase.may("start"):
                phase.trigger("start")
            print(f"{job.job_id}: {phase.phase_name} {phase.status}", flush=True)
            for done in range(min(phase.items_processed, items), items + 1, batch):
                if phase.phase_name == fail_in and done >= items // 2:
                    phase.trigger("fail", error=f"simulated failure at item {done}")
                    print(f"{job.job_id}: {phase.phase_name} failed", flush=True)
                    return job.get_overall_status()
                phase.update_progress(done, items)
                time.sleep(delay)
            phase.update_progress(items, items)
            phase.trigger("complete")
            print(f"{job.job_id}: {phase.phase_name} completed", flush=True)
        return job.get_overall_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="store URL, e.g. sqlite:///phasekit.db")
    parser.add_argument("--job", default="worker-job", help="job id (created if missing)")
    parser.add_argument("--items", type=int, default=1000, help="items per phase")
    parser.add_argument("--batch", type=int, default=100, help="items per progress report")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per batch")
    parser.add_argument("--fail-in", metavar="PHASE", help="fail this phase halfway")
    args = parser.parse_args(argv)
    try:
        status = run(
            args.store,
            args.job,
            items=args.items,
            batch=max(1, args.batch),
            delay=args.delay,
            fail_in=args.fail_in,
        )
    except (PhaseKitError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.job}: {status}")
    return 0 if status != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
