"""A phase set compiled into one shared ``transitions`` machine, driven phase by phase."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from transitions import Machine

from ..spec import PhaseSetDef, expand_sources

__all__ = ["CompiledMachine", "StandIn"]

# transitions logs every step at DEBUG; phasekit reports what matters itself.
logging.getLogger("transitions").setLevel(logging.WARNING)


class StandIn(Protocol):
    """What the machine is driven on instead of a real phase, so nothing real moves.

    The machine reads and writes ``status``; a guard callback asks ``check_guard``; the
    transition that fired is written to ``transition`` where the status alone cannot tell.
    """

    status: str
    trigger: str
    transition: int

    def check_guard(self, name: str, expect: bool, dest: str) -> bool:
        """Whether guard ``name`` answers ``expect`` for the transition to ``dest``."""
        ...


class _GuardCall:
    """A guard referenced by name, resolved by the stand-in so one machine serves every job."""

    __slots__ = ("expect", "name")

    def __init__(self, name: str, expect: bool) -> None:
        self.name = name
        self.expect = expect

    def __call__(self, event: Any) -> bool:
        stand_in: StandIn = event.model
        return stand_in.check_guard(self.name, self.expect, event.transition.dest)


class _Mark:
    """Records which declared transition fired (its index in the phase set)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, event: Any) -> None:
        event.model.transition = self.index


class CompiledMachine:
    """One ``transitions.Machine`` (``model=None``, no auto transitions) for a phase set.

    A trigger is resolved in one of two ways, with the same answer. Where the machine holds a
    single unguarded transition for the trigger and the source status, its destination is read
    from the machine's transition table (``fixed``): the machine has no state callbacks, so
    driving it could only reach that destination. Where guards decide, the machine is driven
    on a stand-in (``drive``), which asks the guards in declaration order.
    """

    __slots__ = ("_events", "_only", "allowed", "fixed", "machine")

    def __init__(self, defn: PhaseSetDef) -> None:
        statuses = list(defn.statuses)
        self.machine = Machine(
            model=None,
            states=statuses,
            initial=defn.initial_status,
            auto_transitions=False,
            send_event=True,
            model_attribute="status",
        )
        expanded = [
            (index, t, expand_sources(t.sources, statuses))
            for index, t in enumerate(defn.transitions)
        ]
        candidates: dict[tuple[str, str], list[int]] = {}
        for index, t, sources in expanded:
            for source in sources:
                candidates.setdefault((t.trigger, source), []).append(index)
        # Where a trigger has one transition from a status, the status alone says which one
        # fired; only guarded alternatives need a callback that marks the one taken.
        self._only: dict[tuple[str, str], int] = {
            pair: found[0] for pair, found in candidates.items() if len(found) == 1
        }
        for index, t, sources in expanded:
            guards: list[Any] = [_GuardCall(g, True) for g in t.conditions]
            guards += [_GuardCall(g, False) for g in t.unless]
            ambiguous = any(len(candidates[(t.trigger, s)]) > 1 for s in sources)
            self.machine.add_transition(
                t.trigger,
                list[Any](sources),
                t.dest,
                conditions=guards,
                after=[_Mark(index)] if ambiguous else [],
            )
        allowed: dict[str, dict[str, None]] = {s: {} for s in statuses}
        for trigger, source in candidates:
            allowed[source][trigger] = None
        #: Triggers allowed from each status by source alone, in declaration order.
        self.allowed: dict[str, tuple[str, ...]] = {s: tuple(a) for s, a in allowed.items()}
        self._events = self.machine.events
        #: ``(trigger, source) -> (dest, transition index)`` where the machine holds exactly one
        #: transition and it has no guard: the table alone decides, nothing needs driving.
        self.fixed: dict[tuple[str, str], tuple[str, int]] = {}
        for (trigger, source), index in self._only.items():
            (transition,) = self._events[trigger].transitions[source]
            if not transition.conditions and transition.dest is not None:
                self.fixed[(trigger, source)] = (transition.dest, index)

    def drive(self, stand_in: StandIn) -> bool:
        """Fire ``stand_in.trigger`` on the stand-in; False when every guard path said no.

        Used where guards decide; ``fixed`` answers the other triggers without driving.

        On success, ``stand_in.status`` is the destination and ``stand_in.transition`` the
        index of the declared transition that fired.
        """
        source = stand_in.status
        if not self._events[stand_in.trigger].trigger(stand_in):
            return False
        if stand_in.transition < 0:
            stand_in.transition = self._only[(stand_in.trigger, source)]
        return True
