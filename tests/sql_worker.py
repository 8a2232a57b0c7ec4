"""Another process using a SQL store, as the cross-process tests need one.

Run as ``python -m tests.sql_worker COMMAND URL OPTIONS_JSON ARGS...``:

- ``show JOB_ID``: print the job's ``JobStateSchema`` as JSON.
- ``increment JOB_ID PHASE TIMES``: print ``ready``, wait for a line on stdin, then add 1 to
  the phase's ``items_processed`` TIMES times (load, update, retry on a version conflict);
  print the number of conflicts.
- ``write PREFIX``: create jobs PREFIX-0, PREFIX-1, … and drive each through every phase,
  printing ``JOB_ID VERSION`` after each committed call, until killed.
"""

from __future__ import annotations

import json
import sys

from plugins.sql import SQLStore
from statemachine import ConcurrentUpdateError, Tracker, load_spec


def main(argv: list[str]) -> int:
    command, url, options, *args = argv
    store = SQLStore(url, **json.loads(options))
    with Tracker(load_spec("ingestion"), store=store, load_entrypoints=False) as tracker:
        if command == "show":
            print(tracker.get_job(args[0]).to_schema().model_dump_json())
        elif command == "increment":
            job_id, phase, times = args[0], args[1], int(args[2])
            print("ready", flush=True)
            sys.stdin.readline()
            conflicts = 0
            for _ in range(times):
                while True:
                    state = tracker.get_job(job_id).phases[phase]
                    try:
                        state.update_progress(items_processed=state.items_processed + 1)
                        break
                    except ConcurrentUpdateError:
                        conflicts += 1
            print(conflicts, flush=True)
        elif command == "write":
            write_forever(tracker, args[0])
        else:
            print(f"unknown command {command!r}", file=sys.stderr)
            return 2
    return 0


def write_forever(tracker: Tracker, prefix: str) -> None:
    n = 0
    while True:
        job = tracker.create_job(f"{prefix}-{n}", metadata={"n": n})
        print(job.job_id, job.version, flush=True)
        for phase in job.phases.values():
            for step in ("start", "progress", "complete"):
                if step == "progress":
                    phase.update_progress(items_processed=7, items_total=10)
                else:
                    phase.trigger(step)
                print(job.job_id, job.version, flush=True)
        n += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
