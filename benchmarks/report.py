"""The results: a table for the terminal, and RESULTS.md with the machine, ratios and profiles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .floors import CHANGES, FLOORS
from .harness import Figure

__all__ = ["results_markdown", "table"]


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit.endswith("/s"):
        return f"{value:,.0f}"
    if unit.startswith("B/"):
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:.3g}x" if value < 10 else f"{value:,.0f}x"


def _met(figure: Figure) -> str:
    met = figure.met
    if met is None:
        return ""
    return "met" if met else "**missed**"


def _row(figure: Figure) -> list[str]:
    unit = figure.unit
    value = _number(figure.value, unit)
    if not math.isnan(figure.value):
        lo, hi = figure.spread
        value = f"{value} {unit} ({_number(lo, unit)} - {_number(hi, unit)})"
    else:
        value = f"n/a: {figure.note}"
    baseline = ""
    if figure.baseline is not None:
        base = figure.baseline_value
        shown = "" if base is None else f": {_number(base, unit)} {unit}"
        baseline = f"{figure.baseline}{shown}"
    ratio = _ratio(figure.ratio)
    if ratio and figure.ratio_spread is not None:
        lo, hi = figure.ratio_spread
        ratio = f"{ratio} ({lo:.3g} - {hi:.3g})"
    target = figure.target.text if figure.target is not None else ""
    return [figure.label, value, baseline, ratio, target, _met(figure)]


def _ordered(figures: Sequence[Figure]) -> list[Figure]:
    """By section number ("1. Trigger cost"), in the order measured within a section."""
    return sorted(figures, key=lambda f: int(f.section.split(".", 1)[0]))


HEADER = ["figure", "phasekit: median (spread)", "baseline: median", "ratio (spread)", "target"]


def table(figures: Sequence[Figure]) -> str:
    """A markdown table of the figures, one section after another."""
    lines: list[str] = []
    section = None
    for figure in _ordered(figures):
        if figure.section != section:
            section = figure.section
            if lines:
                lines.append("")
            lines.append(f"### {section}")
            lines.append("")
            lines.append("| " + " | ".join([*HEADER, "met?"]) + " |")
            lines.append("|" + "---|" * (len(HEADER) + 1))
        cells = [c.replace("|", "\\|") for c in _row(figure)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(figures: Sequence[Figure]) -> str:
    shown = [f for f in _ordered(figures) if f.note and not math.isnan(f.value)]
    return "\n".join(f"- **{f.label}**: {f.note}" for f in shown)


def _misses(figures: Sequence[Figure]) -> str:
    missed = [f for f in _ordered(figures) if f.met is False]
    if not missed:
        return "Every target was met in this run."
    parts: list[str] = []
    for f in missed:
        target = f.target.text if f.target else ""
        observed = (
            _ratio(f.ratio) if f.target and f.target.on == "ratio" else _number(f.value, f.unit)
        )
        parts.append(f"### {f.label}\n\nTarget {target}; measured {observed}.\n")
        floor = FLOORS.get(f.key)
        parts.append(floor.strip() if floor else "No explanation is recorded for this miss yet.")
        if f.profile:
            parts.append(f"\n```text\n{f.profile}\n```")
        parts.append("")
    return "\n".join(parts)


def results_markdown(
    figures: Sequence[Figure],
    machine: Mapping[str, str],
    *,
    command: str,
    rounds: int,
    seconds: float,
    load: tuple[str, str],
) -> str:
    """RESULTS.md: the machine, how it was measured, the figures, and why a target was missed."""
    met = sum(1 for f in figures if f.met is True)
    missed = sum(1 for f in figures if f.met is False)
    machine_lines = "\n".join(f"| {k} | {v} |" for k, v in machine.items())
    return f"""# phasekit benchmark results

Written by `{command}` in {seconds / 60:.1f} minutes. Do not edit by hand: run it again.
Targets: **{met} met, {missed} missed**.

## Machine

| | |
|---|---|
{machine_lines}
| load average (1, 5, 15 min) at start / end | {load[0]} / {load[1]} |

## Method

Every figure is the median of repeats, with the lowest and highest repeat in brackets (the
spread), beside a baseline measured in the same run. Micro-benchmarks run {rounds} rounds; in
each round every case of a figure runs one batch, in an order that rotates from round to round
(interleaving), so drift on this shared machine hits subject and baseline alike. A ratio is the
median of the per-round ratios (subject over the baseline of the same round), with its spread.
Batches run with the garbage collector off, collecting between batches. Scale figures run in
fresh processes. `benchmarks/README.md` says what each figure measures.

## Results

{table(figures)}

## Notes

{_notes(figures)}

## Changes made to phasekit for these figures
{CHANGES}
## Missed targets: the floor, and the profile that shows it

{_misses(figures)}
"""
