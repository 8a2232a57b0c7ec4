"""Another process using a SQL store, as the cross-process tests need one.

Run as ``python -m tests.sql_worker COMMAND URL OPTIONS_JSON ARGS...``:

- ``show JOB_ID``: print the job's ``JobStateSchema`` as JSON.
- ``increment JOB_ID PHASE TIMES``: print ``ready``, wait for a line on stdin, then add 1 to
  the phase's ``items_processed`` TIMES times (load, update, retry on a version conflict);
  print the number of conflicts.
- ``write PREFIX``: create jobs PREFIX-0, PREFIX-1, … and drive each through ``WRITE_PLAN``
  until killed, printing ``try JOB_ID VERSION`` before each call (the version it commits)
  and ``done JOB_ID VERSION`` once the call has returned.
- ``coalesce JOB_ID``: with progress kept in memory for an hour between saves, create the
  job, start its first phase and report progress 1, 2, 3, … out of 1,000,000, printing
  ``saved N`` for the report that was saved and ``memory N`` for each one kept in memory,
  until killed.
- ``soak SECONDS SEED JOB_ID...``: print ``ready``, wait for a line on stdin, then run
  ``soak`` on the jobs for SECONDS seconds and print what it did as JSON.
- ``die-notifying JOB_ID``: create the job and start its first phase, with a plugin that
  kills this process (SIGKILL) when it is told of the phase change.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from statemachine.plugins.sql import SQLStore

from statemachine import ConcurrentUpdateError, JobState, PhaseChanged, Tracker, hookimpl, load_spec

#: What ``write`` does to every phase of a job, in order: (trigger, or None for progress).
WRITE_PLAN: tuple[str | None, ...] = ("start", None, "complete")
#: The counters ``write`` reports on a phase.
WRITE_PROGRESS = (7, 10)


def main(argv: list[str]) -> int:
    command, url, options, *args = argv
    store = SQLStore(url, **json.loads(options))
    interval = 3600.0 if command == "coalesce" else None
    with Tracker(
        load_spec("ingestion"), store=store, load_entrypoints=False, progress_interval=interval
    ) as tracker:
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
        elif command == "coalesce":
            coalesce_forever(tracker, args[0])
        elif command == "die-notifying":
            tracker.plugins.register(DieOnNotification(), name="die-on-notification")
            job = tracker.create_job(args[0])
            print("created", flush=True)
            job.phases[next(iter(job.phases))].start()
            print("still alive", flush=True)
        elif command == "soak":
            seconds, seed, job_ids = float(args[0]), int(args[1]), args[2:]
            print("ready", flush=True)
            sys.stdin.readline()
            done = soak(tracker, job_ids, time.monotonic() + seconds, random.Random(seed))
            print(json.dumps(done), flush=True)
        else:
            print(f"unknown command {command!r}", file=sys.stderr)
            return 2
    return 0


class DieOnNotification:
    """A plugin that kills its process as it is told of a phase change: after the commit."""

    @hookimpl
    def phase_changed(self, event: PhaseChanged) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def write_steps(job: JobState) -> list[tuple[str, str | None]]:
    """The (phase, trigger or None for progress) calls ``write`` makes on a job, in order."""
    return [(phase, step) for phase in job.phases for step in WRITE_PLAN]


def write_forever(tracker: Tracker, prefix: str) -> None:
    n = 0
    while True:
        job_id = f"{prefix}-{n}"
        print("try", job_id, 1, flush=True)
        job = tracker.create_job(job_id, metadata={"n": n})
        print("done", job_id, job.version, flush=True)
        for phase, step in write_steps(job):
            print("try", job_id, job.version + 1, flush=True)
            if step is None:
                job.phases[phase].update_progress(*WRITE_PROGRESS)
            else:
                job.phases[phase].trigger(step)
            print("done", job_id, job.version, flush=True)
        n += 1


def coalesce_forever(tracker: Tracker, job_id: str) -> None:
    job = tracker.create_job(job_id)
    phase = job.phases[next(iter(job.phases))]
    phase.start()
    phase.update_progress(1, 1_000_000)
    print("saved", 1, flush=True)
    count = 1
    while True:
        count += 1
        phase.update_progress(count)
        print("memory", count, flush=True)


def soak(
    tracker: Tracker, job_ids: Sequence[str], until: float, rng: random.Random
) -> dict[str, Any]:
    """Until ``until`` (``time.monotonic()``), change jobs at random, retrying on conflicts.

    Each change loads the job, then adds 1 to a phase's ``items_processed`` (four times in
    five) or toggles the phase between running and paused; a ``ConcurrentUpdateError``
    starts it over. Returns the changes committed, by ``JOB_ID/PHASE``, and the conflicts.
    """
    increments: dict[str, int] = {}
    toggles: dict[str, int] = {}
    conflicts = 0
    phases = list(tracker.spec.phase_names)
    while time.monotonic() < until:
        job_id, phase, toggle = rng.choice(job_ids), rng.choice(phases), rng.random() < 0.2
        while True:
            state = tracker.get_job(job_id).phases[phase]
            try:
                if toggle:
                    state.trigger("pause" if state.status == "running" else "resume")
                else:
                    state.update_progress(items_processed=state.items_processed + 1)
                break
            except ConcurrentUpdateError:
                conflicts += 1
        done = toggles if toggle else increments
        done[f"{job_id}/{phase}"] = done.get(f"{job_id}/{phase}", 0) + 1
    return {"increments": increments, "toggles": toggles, "conflicts": conflicts}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
