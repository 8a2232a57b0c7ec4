"""``all_paths``: the shortest trigger sequence to each status of a phase set, to parametrise."""

from __future__ import annotations

from dataclasses import dataclass

from statemachine import PhaseSet, PhaseState, load_spec
from statemachine.spec.rules import expand_sources

__all__ = ["StatusPath", "all_paths"]


@dataclass(frozen=True, slots=True)
class StatusPath:
    """How a phase gets from the initial status to ``status``: the triggers, in order."""

    #: The status the path ends in.
    status: str
    #: The triggers that lead there (empty for the initial status).
    triggers: tuple[str, ...]
    #: Every status on the way, the initial one first and ``status`` last.
    statuses: tuple[str, ...]
    #: Guards the path's transitions name (``conditions`` and ``unless``): the path is
    #: walked only where they allow it.
    guards: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """A test id: ``running-via-start``; the initial status is its bare name."""
        if not self.triggers:
            return self.status
        return f"{self.status}-via-{'-'.join(self.triggers)}"

    def walk(self, phase: PhaseState) -> None:
        """Fire the triggers on ``phase`` (a phase in the initial status), one after another."""
        for trigger in self.triggers:
            phase.trigger(trigger)

    def __str__(self) -> str:
        return self.id


def all_paths(spec: PhaseSet | str, *, include_initial: bool = True) -> list[StatusPath]:
    """The shortest path (fewest triggers) from the initial status to every status it reaches.

    One ``StatusPath`` per reachable status, in the order the statuses are declared;
    statuses no transition reaches are left out (``check_spec`` warns of them). Breadth
    first; among the shortest ways the one naming fewest guards, so a path needs a guard
    only where every shortest way does. In ``pytest.mark.parametrize("path", all_paths(spec))``
    each test's id is the path's ``id`` (the plugin hands pytest those ids).
    """
    phase_set = spec if isinstance(spec, PhaseSet) else load_spec(spec)
    definition = phase_set.definition
    statuses = list(definition.statuses)
    edges: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {s: [] for s in statuses}
    for transition in definition.transitions:
        guards = (*transition.conditions, *transition.unless)
        for source in expand_sources(transition.sources, statuses):
            edges[source].append((transition.trigger, transition.dest, guards))
    initial = phase_set.initial_status
    found = {initial: StatusPath(initial, (), (initial,))}
    frontier = [initial]
    while frontier:  # one level (one more trigger) at a time
        reached: dict[str, StatusPath] = {}
        for status in frontier:
            here = found[status]
            for trigger, dest, guards in edges[status]:
                if dest in found:
                    continue
                path = StatusPath(
                    dest,
                    (*here.triggers, trigger),
                    (*here.statuses, dest),
                    tuple(dict.fromkeys((*here.guards, *guards))),
                )
                best = reached.get(dest)
                if best is None or len(path.guards) < len(best.guards):
                    reached[dest] = path
        found.update(reached)
        frontier = list(reached)
    return [
        found[status]
        for status in statuses
        if status in found and (include_initial or status != initial)
    ]
