"""Static analysis of a valid phase set: statuses no phase can reach or leave, dead rules."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from itertools import combinations
from typing import NamedTuple

from ..errors import SpecIssue
from .model import PhaseSetDef
from .rules import WILDCARD, Condition, expand_sources, first_firing

__all__ = [
    "MAX_RULE_CHECKS",
    "MAX_STATUS_SETS",
    "analyse",
    "first_rule",
    "reachable_statuses",
    "status_set_count",
    "status_sets",
]

#: Most sets of statuses the exact rule check enumerates; beyond it the check is skipped.
MAX_STATUS_SETS = 2**16
#: Most (set of statuses, rule) pairs the rule check tries, which bounds its time (about a
#: quarter of a second) however many rules a phase set has; beyond it the check is skipped.
MAX_RULE_CHECKS = 2**20


class _Finding(NamedTuple):
    code: str
    path: str
    message: str
    hint: str | None = None


def analyse(
    defn: PhaseSetDef,
    locations: Mapping[str, tuple[int, int]] | None = None,
    filename: str = "<string>",
) -> list[SpecIssue]:
    """Warnings about a valid phase set, located through ``locations`` (issue path -> line, col)."""
    where = locations or {}
    findings = [
        *_status_findings(defn),
        *_rule_findings(defn),
        *_current_phase_findings(defn),
        *_near_miss_findings(defn),
        *_deadline_findings(defn),
    ]
    return [
        SpecIssue(
            code=code,
            message=message,
            path=path,
            line=where[path][0] if path in where else None,
            column=where[path][1] if path in where else None,
            hint=hint,
            severity="warning",
            filename=filename,
        )
        for code, path, message, hint in findings
    ]


# -- the status graph ---------------------------------------------------------------------


def _successors(defn: PhaseSetDef) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in defn.statuses}
    for transition in defn.transitions:
        if transition.dest not in edges:
            continue
        for source in expand_sources(transition.sources, defn.statuses):
            if source in edges:
                edges[source].add(transition.dest)
    return edges


def _closure(start: Iterable[str], edges: Mapping[str, set[str]]) -> set[str]:
    seen = set(start)
    todo = list(seen)
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def reachable_statuses(defn: PhaseSetDef) -> list[str]:
    """The statuses a phase can reach from the initial status (itself included), in order."""
    seen = _closure([defn.initial_status], _successors(defn))
    return [name for name in defn.statuses if name in seen]


def _status_findings(defn: PhaseSetDef) -> Iterator[_Finding]:
    initial = defn.initial_status
    edges = _successors(defn)
    reachable = _closure([initial], edges)
    terminal = [name for name, status in defn.statuses.items() if status.terminal]
    predecessors: dict[str, set[str]] = {name: set() for name in defn.statuses}
    for source, dests in edges.items():
        for dest in dests:
            predecessors[dest].add(source)
    # A dead end is reported itself; the statuses leading into it are not reported again.
    dead_ends = [n for n, s in defn.statuses.items() if not s.terminal and not edges[n]]
    can_finish = _closure([*terminal, *dead_ends], predecessors)

    for name, status in defn.statuses.items():
        path = f"statuses.{name}"
        if name not in reachable:
            yield _Finding(
                "unreachable-status",
                path,
                f"status {name!r} cannot be reached: no chain of transitions leads to it "
                f"from the initial status {initial!r}",
            )
        if status.terminal:
            continue
        if name in dead_ends:
            yield _Finding(
                "dead-end-status",
                path,
                f"status {name!r} is not terminal but no transition leaves it: a phase in it "
                "can never finish; mark it terminal or add a transition from it",
            )
        elif name in reachable and name not in can_finish:
            goal = ", ".join(terminal) if terminal else "none is declared"
            yield _Finding(
                "cannot-finish",
                path,
                f"from status {name!r} no chain of transitions reaches a terminal status "
                f"({goal}): a phase in it can never finish",
            )
    yield from _terminal_exit_findings(defn, terminal)


def _terminal_exit_findings(defn: PhaseSetDef, terminal: list[str]) -> Iterator[_Finding]:
    # An explicit exit is reported once per terminal status; a "*" source once per
    # transition, since listing the sources is the one fix for all the statuses it covers.
    exits: dict[str, list[int]] = {name: [] for name in terminal}
    star_findings: list[_Finding] = []
    for index, transition in enumerate(defn.transitions):
        if WILDCARD in transition.sources:
            if terminal:
                star_findings.append(
                    _Finding(
                        "terminal-has-exit",
                        f"transitions[{index}]",
                        f'transition {transition.trigger!r} has source "*", which includes '
                        f"the terminal statuses {', '.join(terminal)}: a finished phase could "
                        "change again; list its sources explicitly",
                    )
                )
            continue
        for source in transition.sources:
            if source in exits:
                exits[source].append(index)
    for name, indices in exits.items():
        if indices:
            triggers = ", ".join(
                f"{defn.transitions[i].trigger} (transitions[{i}])" for i in indices
            )
            yield _Finding(
                "terminal-has-exit",
                f"transitions[{indices[0]}]",
                f"terminal status {name!r} has outgoing transitions: {triggers}; a finished "
                f"phase could change again, so drop them or make {name!r} non-terminal",
            )
    yield from star_findings


def _current_phase_findings(defn: PhaseSetDef) -> Iterator[_Finding]:
    reachable = set(reachable_statuses(defn))
    for group_index, group in enumerate(defn.aggregate.current_phase or []):
        for index, name in enumerate(group):
            if name in defn.statuses and name not in reachable:
                yield _Finding(
                    "current-phase-unreachable-status",
                    f"aggregate.current_phase[{group_index}][{index}]",
                    f"current-phase group {group_index + 1} names status {name!r}, which no "
                    f"phase can reach from the initial status {defn.initial_status!r}",
                )


# -- aggregation rules --------------------------------------------------------------------


def first_rule(defn: PhaseSetDef, present: frozenset[str], n_phases: int) -> int:
    """Index of the aggregation rule that fires when ``present`` are the phases' statuses.

    ``any: [A, B]`` fires when a phase is in A or B (``present`` meets {A, B}); ``all: [A, B]``
    when every phase is (``present`` is a subset of {A, B}); ``otherwise`` always fires.
    ``n_phases`` phases hold between 1 and ``n_phases`` distinct statuses; other sets raise
    ``ValueError``, as does a rule list that lets no rule fire.
    """
    if not 0 < len(present) <= n_phases:
        raise ValueError(
            f"{n_phases} phase(s) hold between 1 and {n_phases} distinct statuses, "
            f"not {len(present)}: {sorted(present)}"
        )
    index = first_firing([Condition.of(r) for r in defn.aggregate.status], present)
    if index is None:
        raise ValueError(f"no aggregation rule fires for {sorted(present)}")
    return index


class _Alphabet(NamedTuple):
    """The statuses the rule check varies: those rules name, plus one for all the others."""

    named: list[str]
    other: str | None

    @classmethod
    def of(cls, defn: PhaseSetDef) -> _Alphabet:
        # Statuses no rule names are interchangeable: ``any`` never sees them and ``all``
        # only sees that one of them is present. One stands for all, and since a set
        # holding any of them holds at least one, the size bound stays exact.
        mentioned = {s for r in defn.aggregate.status for s in (r.any or r.all or ())}
        reachable = reachable_statuses(defn)
        others = [s for s in reachable if s not in mentioned]
        return cls([s for s in reachable if s in mentioned], others[0] if others else None)

    @property
    def largest(self) -> int:
        return len(self.named) + (self.other is not None)

    def count(self, max_size: int) -> int:
        named = len(self.named)
        total = sum(math.comb(named, k) for k in range(1, min(max_size, named) + 1))
        if self.other is not None:
            total += sum(math.comb(named, k) for k in range(min(max_size - 1, named) + 1))
        return total

    def sets(self, max_size: int) -> Iterator[frozenset[str]]:
        for size in range(1, min(max_size, self.largest) + 1):
            for combo in combinations(self.named, size):
                yield frozenset(combo)
            if self.other is not None:
                for combo in combinations(self.named, size - 1):
                    yield frozenset((*combo, self.other))


def status_set_count(defn: PhaseSetDef) -> int:
    """How many sets ``status_sets`` yields, computed without enumerating them."""
    return _Alphabet.of(defn).count(len(defn.phases))


def status_sets(defn: PhaseSetDef) -> Iterator[frozenset[str]]:
    """Every set of statuses a job's phases can hold at once, as far as the rules can tell.

    Yields the non-empty sets of at most (number of phases) reachable statuses, smallest
    first, with the statuses no rule names collapsed into one of them (the first declared).
    """
    return _Alphabet.of(defn).sets(len(defn.phases))


def _describe(defn: PhaseSetDef, indices: Iterable[int]) -> str:
    rules = defn.aggregate.status
    texts = [f"rule {i + 1} ({rules[i].describe()})" for i in sorted(indices)]
    return " and ".join(filter(None, [", ".join(texts[:-1]), texts[-1]]))


def _rule_findings(defn: PhaseSetDef) -> Iterator[_Finding]:
    rules = defn.aggregate.status
    conditions = [Condition.of(r) for r in rules]
    alphabet = _Alphabet.of(defn)
    n_phases = len(defn.phases)
    bounded = alphabet.count(n_phases)

    def affordable(sets: int) -> bool:
        return sets <= MAX_STATUS_SETS and sets * len(rules) <= MAX_RULE_CHECKS

    if not affordable(bounded):
        yield _Finding(
            "check-skipped",
            "aggregate.status",
            f"not checked whether every aggregation rule can fire: the rules name "
            f"{len(alphabet.named)} reachable statuses, so {bounded} combinations for "
            f"{n_phases} phases would have to be tried against {len(rules)} rules (the limits "
            f"are {MAX_STATUS_SETS} combinations and {MAX_RULE_CHECKS} tries)",
        )
        return
    # Without the size bound, if that is cheap too, so a rule that only a larger job could
    # fire says how large.
    unbounded = affordable(alphabet.count(alphabet.largest))
    max_size = alphabet.largest if unbounded else n_phases
    smallest_firing: dict[int, int] = {}
    for present in alphabet.sets(max_size):
        index = first_firing(conditions, present)
        # Sets come smallest first, so the first one that fires a rule is its smallest.
        if index is not None and index not in smallest_firing:
            smallest_firing[index] = len(present)

    silent = [i for i in range(len(rules)) if smallest_firing.get(i, n_phases + 1) > n_phases]
    shadows: dict[int, set[int]] = {i: set() for i in silent}
    if silent:
        for present in alphabet.sets(n_phases):
            index = first_firing(conditions, present)
            for later in silent:
                if index is not None and later > index and conditions[later].holds(present):
                    shadows[later].add(index)

    for index in silent:
        head = f"rule {index + 1} ({rules[index].describe()}) never fires"
        statuses = conditions[index].statuses
        if not shadows[index] and statuses is not None:
            yield _Finding(
                "rule-never-fires",
                f"aggregate.status[{index}]",
                f"{head}: none of its statuses ({', '.join(sorted(statuses))}) can be reached "
                f"from the initial status {defn.initial_status!r}",
            )
            continue
        verb = "fires" if len(shadows[index]) == 1 else "fire"
        message = f"{head}: {_describe(defn, shadows[index])} always {verb} first"
        if index in smallest_firing:
            message += (
                f" in a job of {n_phases} phase{'s' if n_phases != 1 else ''}; it could fire "
                f"only with {smallest_firing[index]} or more phases"
            )
        yield _Finding("rule-never-fires", f"aggregate.status[{index}]", message)


# -- job-level statuses -------------------------------------------------------------------


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one character inserted, deleted or replaced."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    return a[i + (len(a) == len(b)) :] == b[i + 1 :]


def _near_miss_findings(defn: PhaseSetDef) -> Iterator[_Finding]:
    """A job-level status one edit away from a declared status is most likely a typo."""
    for index, rule in enumerate(defn.aggregate.status):
        result = rule.result
        if result in defn.statuses:
            continue
        close = next((s for s in defn.statuses if _one_edit_apart(result, s)), None)
        if close is not None:
            key = "otherwise" if rule.otherwise is not None else "then"
            yield _Finding(
                "near-miss-status",
                f"aggregate.status[{index}].{key}",
                f"rule {index + 1} gives the job status {result!r}, one letter away from the "
                f"declared status {close!r}; a job-level status of its own is fine, a typo is not",
                close,
            )


# -- deadlines ------------------------------------------------------------------------------


def _deadline_findings(defn: PhaseSetDef) -> Iterator[_Finding]:
    """A deadline on a terminal status, and an active status left without one."""
    timed = [name for name, s in defn.statuses.items() if s.has_deadline]
    for name in timed:
        status = defn.statuses[name]
        if status.terminal:
            key = "timeout" if status.timeout is not None else "heartbeat"
            yield _Finding(
                "deadline-on-terminal",
                f"statuses.{name}.{key}",
                f"status {name!r} is terminal but has a {key}: work in it is over (and takes no "
                f"progress reports), so its {status.on_timeout!r} fires on every phase that ends "
                "there",
            )
    if not timed:
        return
    for name, status in defn.statuses.items():
        if status.active and not status.has_deadline:
            yield _Finding(
                "active-without-deadline",
                f"statuses.{name}",
                f"active status {name!r} has no deadline while {', '.join(map(repr, timed))} "
                f"{'has' if len(timed) == 1 else 'have'} one: a phase whose worker died in "
                f"{name!r} stays there for good; add a 'timeout' or 'heartbeat'",
            )
