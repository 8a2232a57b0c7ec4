"""The job's overall status, current phase and progress, computed from its phases."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass

from ..spec import Condition, PhaseSetDef, default_current_phase_groups, first_firing

__all__ = ["Aggregator", "StatusExplanation"]


@dataclass(frozen=True, slots=True)
class StatusExplanation:
    """Why a job has its overall status: the rule that fired and the phases that made it fire."""

    status: str
    rule_index: int
    rule: str
    phases: tuple[str, ...]
    statuses: tuple[str, ...]

    def __str__(self) -> str:
        which = f"rule {self.rule_index + 1} ({self.rule})"
        if not self.phases:
            return f"{self.status}: {which} fired"
        return f"{self.status}: {which} fired because of {', '.join(self.phases)}"


class Aggregator:
    """The aggregation rules of one phase set, compiled for cheap repeated evaluation.

    Which rule fires is ``spec.rules``' answer, the one the static checks use; the overall
    status and current phase of each combination of statuses are remembered (``outline``).
    """

    __slots__ = (
        "_conditions",
        "_current_groups",
        "_names",
        "_rules",
        "_total_weight",
        "_weights",
        "outline",
    )

    #: Distinct combinations of phase statuses whose outline is remembered (a job's phases
    #: take few of the combinations a phase set allows, and each entry is a tuple and a str).
    OUTLINE_CACHE_SIZE = 4096

    def __init__(self, defn: PhaseSetDef) -> None:
        self._names = tuple(p.name for p in defn.phases)
        self._weights = tuple(p.weight for p in defn.phases)
        self._total_weight = sum(self._weights)
        self._rules = tuple(defn.aggregate.status)
        self._conditions = tuple(Condition.of(r) for r in self._rules)
        if defn.aggregate.current_phase is not None:
            groups = [frozenset(g) for g in defn.aggregate.current_phase]
        else:
            groups = default_current_phase_groups(defn)
        self._current_groups = tuple(groups)
        #: ``outline(statuses)``: the overall status and current phase of phases in
        #: ``statuses`` (a tuple), remembered per combination: commits ask it every time.
        self.outline = functools.lru_cache(maxsize=self.OUTLINE_CACHE_SIZE)(self._outline)

    def _outline(self, statuses: tuple[str, ...]) -> tuple[str, str | None]:
        return self.status(statuses), self.current_phase(statuses)

    def _first_rule(self, statuses: Sequence[str]) -> int:
        index = first_firing(self._conditions, set(statuses))
        if index is None:  # unreachable for a validated phase set: its last rule is ``otherwise``
            raise AssertionError("no aggregation rule fired")
        return index

    def status(self, statuses: Sequence[str]) -> str:
        """The overall status of phases in ``statuses``."""
        return self._rules[self._first_rule(statuses)].result

    def explain(self, statuses: Sequence[str]) -> StatusExplanation:
        """The rule that gives the overall status, and the phases it looked at."""
        index = self._first_rule(statuses)
        rule, condition = self._rules[index], self._conditions[index]
        if condition.kind == "otherwise":
            contributing: tuple[str, ...] = ()
        else:
            contributing = tuple(
                n for n, s in zip(self._names, statuses, strict=True) if s in condition.statuses
            )
        return StatusExplanation(
            status=rule.result,
            rule_index=index,
            rule=rule.describe(),
            phases=contributing,
            statuses=tuple(dict.fromkeys(statuses)),
        )

    def current_phase(self, statuses: Sequence[str]) -> str | None:
        """The first phase in a status of the first group that has one, else None."""
        for group in self._current_groups:
            for name, status in zip(self._names, statuses, strict=True):
                if status in group:
                    return name
        return None

    def progress(self, progresses: Sequence[float]) -> float:
        """The weighted mean of the phases' progress, 0.0 to 100.0."""
        if len(progresses) != len(self._weights):
            raise ValueError(f"{len(progresses)} progresses for {len(self._weights)} phases")
        total: float = sum(map(operator.mul, self._weights, progresses))
        return min(100.0, max(0.0, total / self._total_weight))
