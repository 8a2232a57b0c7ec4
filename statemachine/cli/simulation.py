"""A simulated ingestion run: seeded plans of jobs, and worker threads that carry them out."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from ..errors import PhaseKitError
from ..runtime import JobState, PhaseSet

__all__ = ["JobPlan", "PhasePlan", "Worker", "plan_jobs"]

_SOURCES = (
    "s3://demo-bucket/orders/2024-06",
    "gs://demo-lake/clickstream/day=17",
    "postgresql://crm.internal/customers",
    "sftp://partner.example/invoices",
    "https://api.example.com/v2/events",
    "s3://demo-bucket/sensors/raw",
)
_FAILURES = (
    "connection reset by peer while reading part-00042.parquet",
    "schema mismatch: column 'amount' is text, expected decimal(12,2)",
    "quota exceeded on target table analytics.events",
    "checksum mismatch in batch 17 (expected 9f2c…, got 03ab…)",
)
#: Probability that a run has one failing job, and that a job pauses once.
FAILURE_CHANCE = 0.75
PAUSE_CHANCE = 0.5


@dataclass(frozen=True, slots=True)
class PhasePlan:
    """What happens to one phase: its items, in how many steps, and a pause or failure."""

    phase: str
    items: int
    steps: int
    pause_after: int | None = None
    fail_after: int | None = None
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class JobPlan:
    """One simulated job: its id, source, start delay (in ticks) and phases."""

    job_id: str
    source: str
    delay: int
    phases: tuple[PhasePlan, ...]


def plan_jobs(
    spec: PhaseSet, count: int, *, seed: int, prefix: str, failures: bool = True
) -> list[JobPlan]:
    """Plans for ``count`` jobs of ``spec``, all decided by ``seed``."""
    rng = random.Random(seed)
    failing = rng.randrange(count) if failures and rng.random() < FAILURE_CHANCE else None
    plans = []
    for index in range(count):
        phases = []
        fail_phase = rng.randrange(len(spec.phase_names)) if index == failing else None
        pause_phase = rng.randrange(len(spec.phase_names)) if rng.random() < PAUSE_CHANCE else None
        volume = rng.choice((1_000, 5_000, 20_000, 80_000))
        for position, name in enumerate(spec.phase_names):
            steps = rng.randint(8, 12)
            # The first phase finds files; the others move records.
            items = rng.randint(20, 400) if position == 0 else rng.randint(volume // 2, volume)
            pause_after = rng.randint(2, steps - 2) if position == pause_phase else None
            fail_after = rng.randint(2, steps - 1) if position == fail_phase else None
            failure = rng.choice(_FAILURES) if fail_after is not None else None
            phases.append(PhasePlan(name, items, steps, pause_after, fail_after, failure))
        plans.append(
            JobPlan(
                job_id=f"{prefix}-{index + 1}",
                source=rng.choice(_SOURCES),
                delay=rng.randint(0, 4),
                phases=tuple(phases),
            )
        )
    return plans


class Worker(threading.Thread):
    """Drives one tracked job through its plan: start, progress, maybe pause, complete or fail.

    Uses the bundled ``ingestion`` triggers (``start``, ``pause``, ``resume``, ``complete``,
    ``fail``). A store or plugin error stops the worker; ``error`` says what it was.
    """

    def __init__(self, job: JobState, plan: JobPlan, *, tick: float, stop: threading.Event):
        super().__init__(name=f"phasekit-demo-{plan.job_id}", daemon=True)
        self.job = job
        self.plan = plan
        self.tick = tick
        self.stop = stop
        self.error: str | None = None
        self.started = 0.0
        self.finished: float | None = None

    def _wait(self, ticks: float) -> bool:
        """Sleep ``ticks`` ticks; False when the run is being stopped."""
        return not self.stop.wait(self.tick * ticks)

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            if self._wait(self.plan.delay):
                self._run_phases()
        except PhaseKitError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished = time.monotonic()

    def _run_phases(self) -> None:
        for plan in self.plan.phases:
            phase = self.job.phases[plan.phase]
            phase.trigger("start")
            for step in range(1, plan.steps + 1):
                if not self._wait(1):
                    return
                if step == plan.fail_after:
                    phase.trigger("fail", error=plan.failure)
                    return
                phase.update_progress(plan.items * step // plan.steps, plan.items)
                if step == plan.pause_after:
                    phase.trigger("pause")
                    if not self._wait(6):
                        return
                    phase.trigger("resume")
            phase.trigger("complete")

    @property
    def elapsed(self) -> float:
        """Seconds the worker has run (so far, or in all)."""
        if not self.started:
            return 0.0
        return (self.finished or time.monotonic()) - self.started
