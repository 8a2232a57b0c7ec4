"""Timing: interleaved repeats, medians and spreads, and the figures a run reports."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Case",
    "Figure",
    "Settings",
    "Target",
    "batch",
    "interleaved",
    "median",
    "paired_ratios",
    "pause_resume",
    "spread",
]

#: One timed batch: runs its operations and returns the seconds one operation took.
Case = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Settings:
    """How much to measure: the quick smoke run, or the full run that writes RESULTS.md."""

    quick: bool
    rounds: int  # interleaved repeats of each micro-benchmark
    pg_url: str | None
    psm: bool  # measure python-statemachine in its own virtualenv

    @property
    def scale(self) -> float:
        """Batch sizes are multiplied by this (smaller in quick mode)."""
        return 0.25 if self.quick else 1.0

    def n(self, full: int, *, least: int = 1) -> int:
        """A batch size: ``full`` in a full run, scaled down in a quick one."""
        return max(least, int(full * self.scale))


def pause_resume(model: Any) -> Callable[[int], None]:
    """A batch body: ``n`` times ``model.pause()`` then ``model.resume()`` (two triggers)."""

    def run(n: int) -> None:
        pause, resume = model.pause, model.resume
        for _ in range(n):
            pause()
            resume()

    return run


def batch(prepare: Callable[[], Callable[[int], object]], n: int, ops_per_call: int = 1) -> Case:
    """A case that times ``run(n)``: ``n`` calls of ``ops_per_call`` operations each.

    ``prepare()`` builds a fresh ``run`` before each batch, untimed (a new job, a new
    tracker), so no batch inherits another's state. The garbage collector is off while the
    batch runs (as in ``timeit``) and collects between batches.
    """

    def case() -> float:
        run = prepare()
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run(n)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        return elapsed / (n * ops_per_call)

    return case


def interleaved(cases: Mapping[str, Case], rounds: int) -> dict[str, list[float]]:
    """Run every case once per round, rotating the order, so drift hits all cases alike."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(cases[name]())
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Lowest and highest of the repeats."""
    return (min(values), max(values))


def paired_ratios(subject: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Subject over baseline, round by round: rounds ran side by side, so drift cancels."""
    return [s / b for s, b in zip(subject, baseline, strict=True)]


@dataclass(frozen=True, slots=True)
class Target:
    """A target a figure must meet: on its ratio or on its value, at most or at least a limit."""

    text: str
    on: Literal["ratio", "value"]
    limit: float
    at_most: bool = True

    def met(self, figure: Figure) -> bool | None:
        observed = figure.ratio if self.on == "ratio" else figure.value
        if observed is None:
            return None
        return observed <= self.limit if self.at_most else observed >= self.limit


@dataclass(slots=True)
class Figure:
    """One reported figure: a median, its spread, its baseline and ratio, its target."""

    key: str
    section: str
    label: str
    value: float
    unit: str
    spread: tuple[float, float]
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    ratio_spread: tuple[float, float] | None = None
    target: Target | None = None
    note: str = ""
    #: The subject's profile (top entries of cProfile), taken when its target is missed.
    profile: str | None = field(default=None, repr=False, compare=False)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self)

    @classmethod
    def compare(
        cls,
        key: str,
        section: str,
        label: str,
        subject: Sequence[float],
        baseline: Sequence[float] | None,
        *,
        unit: str,
        factor: float = 1.0,
        baseline_label: str | None = None,
        target: Target | None = None,
        note: str = "",
    ) -> Figure:
        """A figure from per-round samples (values times ``factor``), ratios paired by round."""
        values = [v * factor for v in subject]
        figure = cls(
            key=key,
            section=section,
            label=label,
            value=median(values),
            unit=unit,
            spread=spread(values),
            target=target,
            note=note,
        )
        if baseline is not None:
            base = [v * factor for v in baseline]
            ratios = paired_ratios(values, base)
            figure.baseline = baseline_label
            figure.baseline_value = median(base)
            figure.ratio = median(ratios)
            figure.ratio_spread = spread(ratios)
        return figure
