"""Processes the relay tests start, kill and watch.

Run as ``python -m tests.relay_worker COMMAND ARGS...`` from the repository's root:

- ``exit-without-close PATH JOBS kept|dropped``: a ``memory://`` tracker whose one notifier
  (relayed by a thread) appends each event's id to PATH, slowly; commits JOBS jobs' worth of
  changes, prints the event ids of its log as JSON, and ends the interpreter normally without
  ``close()``. ``kept`` keeps the tracker in a global, ``dropped`` lets go of it (and collects
  it) before the end; ``stuck`` keeps it, with a notifier that fails every attempt.
- ``commit CONFIG SEED [PAUSE]``: ``Tracker.from_config(CONFIG)`` (its notifiers relayed as the
  config says), then commits changes on a few jobs at a time, forever, PAUSE seconds apart
  (default 0): phases started, progress reported, phases completed or failed, finished jobs
  deleted now and then, new jobs created. Prints ``ready`` after its first commit.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import time
from pathlib import Path

from statemachine import DeliveryError, Event, JobState, Tracker

#: Jobs ``commit`` works on at a time.
ACTIVE_JOBS = 4


class SlowLines:
    """A relayed notifier that takes a millisecond per event and writes its id on a line;
    ``stuck``, it fails every attempt instead."""

    def __init__(self, path: str, *, stuck: bool = False) -> None:
        self.out = Path(path).open("a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.stuck = stuck

    def deliver(self, event: Event) -> None:
        if self.stuck:
            raise DeliveryError("the receiver is down")
        time.sleep(0.001)
        self.out.write(f"{event.event_id}\n")

    job_created = phase_changed = progress_updated = job_status_changed = job_deleted = deliver


def commit_jobs(tracker: Tracker, jobs: int) -> None:
    for n in range(jobs):
        job = tracker.create_job(f"job-{n}")
        for name in ("discovery", "extraction"):
            phase = job.phases[name]
            phase.start()
            phase.update_progress(items_processed=1, items_total=2)
            phase.complete()


def exit_without_close(path: str, jobs: int, mode: str) -> None:
    def run() -> Tracker:
        tracker = Tracker(
            "ingestion",
            notifiers={"lines": SlowLines(path, stuck=mode == "stuck")},
            relay_options={"drain_timeout": 0.5, "backoff": 0.05} if mode == "stuck" else None,
            load_entrypoints=False,
        )
        commit_jobs(tracker, jobs)
        logged = tracker.store.read_events(0, limit=1_000_000)  # type: ignore[attr-defined]
        print(json.dumps([e.event.event_id for e in logged]), flush=True)
        return tracker

    if mode in ("kept", "stuck"):
        globals()["kept_tracker"] = run()
    else:
        run()
        gc.collect()


def step(tracker: Tracker, job: JobState, rng: random.Random) -> bool:
    """One commit on ``job``; False once the job has nothing left to do."""
    for phase in job.phases.values():
        if phase.status == "not_started":
            phase.start()
            return True
        if phase.status == "running":
            roll = rng.random()
            if roll < 0.6:
                done = min(10, phase.items_processed + rng.randint(1, 4))
                if done < 10:
                    phase.update_progress(items_processed=done, items_total=10)
                else:
                    phase.complete()
            elif roll < 0.65:
                phase.fail("worker gave up")
            else:
                phase.update_progress(items_processed=phase.items_processed, items_total=10)
            return True
    return False


def commit_forever(config: str, seed: int, pause: float = 0.0) -> None:
    rng = random.Random(seed)
    tracker = Tracker.from_config(config)
    active: list[JobState] = []
    made = 0
    first = True
    while True:
        while len(active) < ACTIVE_JOBS:
            active.append(tracker.create_job(f"s{seed}-job-{made}"))
            made += 1
        job = rng.choice(active)
        if not step(tracker, job, rng):
            active.remove(job)
            if rng.random() < 0.3:
                tracker.delete_job(job.job_id)
        if first:
            print("ready", flush=True)
            first = False
        if pause:
            time.sleep(pause)


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "exit-without-close":
        exit_without_close(args[0], int(args[1]), args[2])
    elif command == "commit":
        commit_forever(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 0.0)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
