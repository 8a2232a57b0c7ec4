"""Spec load + validate + compile (figure 4): the bundled phase set and a generated 50 x 12."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import yaml
from transitions import Machine

from statemachine import check_spec, load_spec, parse_spec

from .harness import Case, Figure, Settings, Target, batch, interleaved
from .profiles import profile_if_missed

__all__ = ["generated_spec", "spec_figures"]

SECTION = "4. Spec load + validate + compile"
MS = 1e3


def generated_spec(phases: int = 50, statuses: int = 12) -> str:
    """A phase set of ``phases`` phases and ``statuses`` statuses, as YAML text.

    Statuses ``s00`` (initial) to ``s{n-3}`` form a chain of ``advance_i`` triggers ending
    in ``done`` (terminal, success); ``fail`` and ``reset`` reach every working status.
    """
    names = [f"s{i:02d}" for i in range(statuses - 2)]
    working = names[1:]
    lines = ["phasekit: 1", "name: generated", "statuses:"]
    lines.append(f"  {names[0]}: {{initial: true}}")
    lines += [f"  {name}: {{active: true}}" for name in working]
    lines += ["  done: {terminal: true, success: true}", "  failed: {terminal: true}"]
    lines.append("transitions:")
    chain = [*names, "done"]
    for i, (source, dest) in enumerate(itertools.pairwise(chain)):
        lines.append(f"  - {{trigger: advance_{i}, source: {source}, dest: {dest}}}")
    lines.append(f"  - {{trigger: fail, source: [{', '.join(names)}], dest: failed}}")
    lines.append(f"  - {{trigger: reset, source: [{', '.join(working)}], dest: {names[0]}}}")
    lines.append("phases:")
    lines += [f"  - {{name: phase_{i:02d}, weight: {1 + i % 3}}}" for i in range(phases)]
    lines += [
        "aggregate:",
        "  status:",
        "    - {any: [failed], then: failed}",
        "    - {all: [done], then: done}",
        f"    - {{any: [{', '.join(working)}], then: {working[0]}}}",
        f"    - {{any: [done], then: {working[0]}}}",
        f"    - {{otherwise: {names[0]}}}",
        "  current_phase:",
        f"    - [{', '.join(working)}]",
        f"    - [{names[0]}]",
    ]
    return "\n".join(lines) + "\n"


def _by_hand(text: str) -> Callable[[], object]:
    """The transitions way: ``yaml.safe_load`` and a ``Machine`` from the plain data."""

    def build() -> object:
        data = yaml.safe_load(text)
        statuses = list(data["statuses"])
        return Machine(
            model=None,
            states=statuses,
            transitions=[
                {"trigger": t["trigger"], "source": t["source"], "dest": t["dest"]}
                for t in data["transitions"]
            ],
            initial=next(s for s, f in data["statuses"].items() if f.get("initial")),
            auto_transitions=False,
        )

    return build


def _times(fn: Callable[[], object]) -> Callable[[], Callable[[int], None]]:
    def prepare() -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                fn()

        return run

    return prepare


def spec_figures(settings: Settings) -> list[Figure]:
    bundled = load_spec("ingestion")
    bundled_text = Path(bundled.filename).read_text(encoding="utf-8")
    generated = generated_spec()
    parse_spec(generated, "generated.yaml")  # fails loudly if the generator is wrong
    n = settings.n(20, least=5)
    cases: dict[str, Case] = {
        "bundled": batch(_times(lambda: load_spec("ingestion")), n),
        "bundled_hand": batch(_times(_by_hand(bundled_text)), n),
        "generated": batch(_times(lambda: parse_spec(generated, "generated.yaml")), max(2, n // 4)),
        "generated_hand": batch(_times(_by_hand(generated)), max(2, n // 4)),
        "generated_checks": batch(
            _times(lambda: check_spec(parse_spec(generated, "generated.yaml"))), max(2, n // 4)
        ),
    }
    samples = interleaved(cases, settings.rounds)
    hand = "yaml.safe_load + transitions Machine (no validation)"
    figures = [
        Figure.compare(
            "spec.bundled",
            SECTION,
            "bundled `ingestion`: `load_spec` (5 statuses, 4 phases)",
            samples["bundled"],
            samples["bundled_hand"],
            unit="ms",
            factor=MS,
            baseline_label=hand,
            target=Target("< 5 ms", "value", 5.0),
        ),
        Figure.compare(
            "spec.generated",
            SECTION,
            "generated 50 phases x 12 statuses: `parse_spec`",
            samples["generated"],
            samples["generated_hand"],
            unit="ms",
            factor=MS,
            baseline_label=hand,
            target=Target("< 100 ms", "value", 100.0),
        ),
        Figure.compare(
            "spec.generated_checks",
            SECTION,
            "generated 50 x 12: `parse_spec` + `check_spec` (static analysis, for scale)",
            samples["generated_checks"],
            samples["generated_hand"],
            unit="ms",
            factor=MS,
            baseline_label=hand,
        ),
    ]
    profile_if_missed(
        settings, figures[0], lambda: [load_spec("ingestion") for _ in range(50)], 50, "loads"
    )
    profile_if_missed(
        settings,
        figures[1],
        lambda: [parse_spec(generated, "generated.yaml") for _ in range(10)],
        10,
        "parses",
    )
    return figures
