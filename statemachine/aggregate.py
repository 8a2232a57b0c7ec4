"""The job's overall status, current phase and progress, computed from its phases."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass

from .spec import PhaseSetDef

__all__ = ["Aggregator", "StatusExplanation"]

_ANY, _ALL, _OTHERWISE = 0, 1, 2


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

    ``any``/``all`` rules depend only on the set of statuses present among the phases
    (the same reading ``checks.first_rule`` uses for the exhaustive shadowing check).
    """

    __slots__ = (
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
        self._rules: tuple[tuple[int, frozenset[str], str, str], ...] = tuple(
            (_ANY, frozenset(r.any), r.result, r.describe())
            if r.any is not None
            else (_ALL, frozenset(r.all), r.result, r.describe())
            if r.all is not None
            else (_OTHERWISE, frozenset(), r.result, r.describe())
            for r in defn.aggregate.status
        )
        if defn.aggregate.current_phase is not None:
            groups = [frozenset(g) for g in defn.aggregate.current_phase]
        else:
            groups = [
                frozenset(n for n, s in defn.statuses.items() if not s.initial and not s.terminal),
                frozenset(n for n, s in defn.statuses.items() if s.initial),
            ]
        self._current_groups = tuple(groups)
        #: ``outline(statuses)``: the overall status and current phase of phases in
        #: ``statuses`` (a tuple), remembered per combination: commits ask it every time.
        self.outline = functools.lru_cache(maxsize=self.OUTLINE_CACHE_SIZE)(self._outline)

    def _outline(self, statuses: tuple[str, ...]) -> tuple[str, str | None]:
        return self.status(statuses), self.current_phase(statuses)

    def _first_rule(self, present: frozenset[str] | set[str]) -> int:
        for index, (kind, names, _result, _text) in enumerate(self._rules):
            if kind == _ANY:
                if not names.isdisjoint(present):
                    return index
            elif kind == _ALL:
                if present <= names:
                    return index
            else:
                return index
        # Unreachable for a validated phase set: its last rule is ``otherwise``.
        raise AssertionError("no aggregation rule fired")

    def status(self, statuses: Sequence[str]) -> str:
        """The overall status of phases in ``statuses``."""
        return self._rules[self._first_rule(set(statuses))][2]

    def explain(self, statuses: Sequence[str]) -> StatusExplanation:
        """The rule that gives the overall status, and the phases it looked at."""
        index = self._first_rule(set(statuses))
        kind, names, result, text = self._rules[index]
        if kind == _OTHERWISE:
            contributing: tuple[str, ...] = ()
        else:
            contributing = tuple(
                n for n, s in zip(self._names, statuses, strict=True) if s in names
            )
        return StatusExplanation(
            status=result,
            rule_index=index,
            rule=text,
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
