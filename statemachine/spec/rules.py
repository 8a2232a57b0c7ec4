"""The rules of the format that several stages read, written once.

Which statuses a transition's ``source`` names, and which aggregation rule fires for the
statuses a job's phases are in: the compiler, the runtime's aggregate, the static checks and
the diagrams all ask these functions, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Literal

from .model import PhaseSetDef, StatusRule

__all__ = [
    "WILDCARD",
    "Condition",
    "default_current_phase_groups",
    "expand_sources",
    "first_firing",
]

#: ``source: "*"``: every status of the phase set. It stands alone, never inside a list.
WILDCARD = "*"


def expand_sources(sources: Sequence[str], statuses: Iterable[str]) -> list[str]:
    """The statuses a transition starts from: all of ``statuses`` for ``"*"``, else ``sources``.

    ``sources`` is ``TransitionDef.sources``. A list that holds ``"*"`` beside other names is
    refused when the document is validated (``wildcard-in-list``); here it raises ``ValueError``.
    """
    if WILDCARD not in sources:
        return list(sources)
    if len(sources) == 1:
        return list(statuses)
    raise ValueError(f'"{WILDCARD}" stands alone as a source, not inside a list: {list(sources)}')


@dataclass(frozen=True, slots=True)
class Condition:
    """When an aggregation rule fires, as a test of the *set* of statuses present.

    ``any: [A, B]`` fires when some phase is in A or B (the set meets {A, B}); ``all: [A, B]``
    when every phase is (the set is a subset of {A, B}); ``otherwise`` always fires. Nothing
    else about the phases matters, which is what makes the shadowing check exact.
    """

    kind: Literal["any", "all", "otherwise"]
    statuses: frozenset[str]

    @classmethod
    def of(cls, rule: StatusRule) -> Condition:
        if rule.any is not None:
            return cls("any", frozenset(rule.any))
        if rule.all is not None:
            return cls("all", frozenset(rule.all))
        return cls("otherwise", frozenset())

    def holds(self, present: Set[str]) -> bool:
        """Whether the rule fires when ``present`` are the statuses of the job's phases."""
        if self.kind == "any":
            return not self.statuses.isdisjoint(present)
        if self.kind == "all":
            return present <= self.statuses
        return True


def first_firing(conditions: Sequence[Condition], present: Set[str]) -> int | None:
    """The index of the first condition that holds for ``present``, or None."""
    return next((i for i, c in enumerate(conditions) if c.holds(present)), None)


def default_current_phase_groups(defn: PhaseSetDef) -> list[frozenset[str]]:
    """The ``current_phase`` groups of a phase set that declares none.

    The first phase whose status is neither initial nor terminal; else the first phase in a
    terminal status that is not ``success`` (where the job stopped); else the first phase in
    the initial status.
    """
    statuses = defn.statuses.items()
    return [
        frozenset(n for n, s in statuses if not s.initial and not s.terminal),
        frozenset(n for n, s in statuses if s.terminal and not s.success),
        frozenset(n for n, s in statuses if s.initial),
    ]
