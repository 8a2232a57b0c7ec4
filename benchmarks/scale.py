"""Scale (figure 2): memory per job and jobs created per second, many jobs in one process."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from statemachine import PhaseSet, Tracker

from . import psm
from .harness import Figure, Settings, Target, median, spread
from .profiles import profile_if_missed, shorten_paths

__all__ = ["extrapolate_seconds", "scale_figures"]

SCALE = "2. Scale"
ROOT = Path(__file__).resolve().parent.parent
MEMORY_TARGET = Target("≤ 1.5 KB (1,500 B) per job", "value", 1_500)
RATE_TARGET = Target("≥ 50,000 jobs/s", "value", 50_000, at_most=False)


def _probe(kind: str, jobs: int, what: str = "both") -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.probe", kind, str(jobs), what],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=1_800,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _create(kind: str, spec: PhaseSet, jobs: int) -> None:
    if kind == "detached":
        made = [spec.new_job(f"job-{i}") for i in range(jobs)]
    else:
        tracker = Tracker(spec, load_entrypoints=False)
        made = [tracker.create_job(f"job-{i}") for i in range(jobs)]
    del made


def extrapolate_seconds(small: tuple[int, float], large: tuple[int, float], n: int) -> float:
    """Seconds to make ``n`` jobs, from two timings, for a cost ``a·n + b·n²`` (add_model's).

    The per-job cost is ``a + b·n`` (each add_model scans the models already registered), so
    two sizes fix ``a`` and ``b``.
    """
    (n1, t1), (n2, t2) = small, large
    b = (t2 / n2 - t1 / n1) / (n2 - n1)
    a = t1 / n1 - b * n1
    return a * n + b * n * n


def scale_figures(settings: Settings, spec: PhaseSet) -> list[Figure]:
    jobs = 20_000 if settings.quick else 100_000
    naive_jobs = 1_000 if settings.quick else 10_000
    repeats = 1 if settings.quick else 3
    runs: dict[str, list[dict[str, Any]]] = {
        "detached": [],
        "tracker": [],
        "small": [],
        "naive": [],
    }
    for r in range(repeats):
        # Memory per model does not depend on the number of models: traced in round 0 only.
        order = [
            ("detached", "detached", jobs, "both"),
            ("tracker", "tracker", jobs, "both"),
            ("small", "naive", naive_jobs // 2, "time"),
            ("naive", "naive", naive_jobs, "both" if r == 0 else "time"),
        ]
        shift = r % len(order)
        for name, kind, count, what in order[shift:] + order[:shift]:
            runs[name].append(_probe(kind, count, what))

    naive_bytes = runs["naive"][0]["bytes_per_job"]
    naive_rss = runs["naive"][0]["rss_per_job"]
    small_s = median([r["seconds"] for r in runs["small"]])
    large_s = median([r["seconds"] for r in runs["naive"]])
    naive_rate_measured = naive_jobs / large_s
    extrapolated = extrapolate_seconds((naive_jobs // 2, small_s), (naive_jobs, large_s), jobs)
    naive_rate = jobs / extrapolated
    naive_label = (
        f"transitions, add_model per phase (4 models/job), measured at {naive_jobs:,} jobs"
    )
    figures: list[Figure] = []
    for kind, label in (
        ("detached", "phasekit detached jobs (`spec.new_job`)"),
        ("tracker", "phasekit Tracker jobs, memory store (`create_job`)"),
    ):
        samples = runs[kind]
        memory = [s["bytes_per_job"] for s in samples]
        rss = median([s["rss_per_job"] for s in samples])
        figures.append(
            Figure(
                key=f"scale.memory.{kind}",
                section=SCALE,
                label=f"{label}: memory per job at {jobs:,} jobs (tracemalloc)",
                value=median(memory),
                unit="B/job",
                spread=spread(memory),
                baseline=naive_label,
                baseline_value=naive_bytes,
                ratio=median(memory) / naive_bytes,
                target=MEMORY_TARGET,
                note=f"RSS growth {rss:,.0f} B/job (naive: {naive_rss:,.0f} B/job)",
            )
        )
        if figures[-1].met is False:
            figures[-1].profile = (
                f"tracemalloc: what {jobs:,} jobs hold, by allocation site, per job (a block "
                "CPython reuses from a free list counts at the site that first allocated it)\n"
                + "\n".join(shorten_paths(line) for line in samples[0]["top_sites"])
            )
        rates = [s["jobs_per_s"] for s in samples]
        figures.append(
            Figure(
                key=f"scale.rate.{kind}",
                section=SCALE,
                label=f"{label}: jobs created per second, {jobs:,} jobs",
                value=median(rates),
                unit="jobs/s",
                spread=spread(rates),
                baseline=f"transitions add_model per phase, extrapolated to {jobs:,} jobs",
                baseline_value=naive_rate,
                ratio=median(rates) / naive_rate,
                target=RATE_TARGET,
                note=(
                    f"naive: {naive_rate_measured:,.0f} jobs/s measured at {naive_jobs:,} jobs, "
                    f"{naive_jobs // 2 / small_s:,.0f} at {naive_jobs // 2:,}; "
                    f"{jobs:,} jobs would take {extrapolated:,.0f} s "
                    "(fit a·n + b·n², add_model scans its model list)"
                ),
            )
        )
        gc_off = median([s["jobs_per_s_gc_off"] for s in samples])
        figures[-1].note += f"; with the garbage collector off: {gc_off:,.0f} jobs/s"
        profile_if_missed(
            settings,
            figures[-1],
            partial(_create, kind, spec, 20_000),
            20_000,
            f"jobs created ({kind}); cProfile does not show the garbage collector: with it "
            f"off, {jobs:,} jobs are made at {gc_off:,.0f} jobs/s instead of "
            f"{figures[-1].value:,.0f}",
        )
    figures += _psm_figures(settings, spec, naive_jobs, figures)
    return figures


def _psm_figures(
    settings: Settings, spec: PhaseSet, jobs: int, figures: list[Figure]
) -> list[Figure]:
    if not settings.psm:
        return []
    try:
        out = psm.probe(psm.ensure_venv(), spec, "scale", jobs, len(spec.phase_names))
    except psm.PsmUnavailable as exc:
        return [
            Figure(
                key="scale.psm",
                section=SCALE,
                label="phasekit vs python-statemachine 3.x (one machine per phase)",
                value=float("nan"),
                unit="B/job",
                spread=(float("nan"), float("nan")),
                note=f"unavailable: {exc}",
            )
        ]
    version = out["versions"]["python-statemachine"]
    memory = next(f for f in figures if f.key == "scale.memory.detached")
    rate = next(f for f in figures if f.key == "scale.rate.detached")
    baseline = f"python-statemachine {version}, 4 machines/job, at {jobs:,} jobs"
    return [
        Figure(
            key="scale.psm.memory",
            section=SCALE,
            label="phasekit detached jobs: memory per job",
            value=memory.value,
            unit="B/job",
            spread=memory.spread,
            baseline=baseline,
            baseline_value=out["bytes_per_job"],
            ratio=memory.value / out["bytes_per_job"],
        ),
        Figure(
            key="scale.psm.rate",
            section=SCALE,
            label="phasekit detached jobs: jobs created per second",
            value=rate.value,
            unit="jobs/s",
            spread=rate.spread,
            baseline=baseline,
            baseline_value=out["jobs_per_s"],
            ratio=rate.value / out["jobs_per_s"],
        ),
    ]
