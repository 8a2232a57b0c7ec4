"""A phase set compiled into one shared ``transitions`` machine, driven phase by phase."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transitions import Machine

from .context import Guard, TransitionContext
from .errors import PhaseKitError
from .spec import PhaseSetDef

if TYPE_CHECKING:
    from .job import JobState
    from .phase import PhaseState

__all__ = ["CompiledMachine", "Outcome"]

# transitions logs every step at DEBUG; phasekit reports what matters itself.
logging.getLogger("transitions").setLevel(logging.WARNING)


class Outcome:
    """A stand-in phase the machine is driven on, so the real phase moves only after a commit.

    It carries what guards need (the real job and phase, the trigger's data) and collects
    what the dry run learns: the destination, the transition that fired, the guards that said no.
    """

    __slots__ = ("data", "error", "job", "phase", "rejected", "status", "transition", "trigger")

    def __init__(
        self,
        job: JobState,
        phase: PhaseState,
        trigger: str,
        error: str | None,
        data: Mapping[str, Any],
    ) -> None:
        self.status = phase.status  # the machine reads and writes this attribute
        self.job = job
        self.phase = phase
        self.trigger = trigger
        self.error = error
        self.data = data
        self.transition = -1
        self.rejected: list[str] = []


class _GuardCall:
    """A guard referenced by name, resolved per job so one machine serves every registry."""

    __slots__ = ("expect", "name")

    def __init__(self, name: str, expect: bool) -> None:
        self.name = name
        self.expect = expect

    def __call__(self, event: Any) -> bool:
        outcome: Outcome = event.model
        guards: Mapping[str, Guard] = outcome.job._guards
        guard = guards.get(self.name)
        if guard is None:
            known = ", ".join(sorted(guards)) or "none"
            raise PhaseKitError(
                f"phase set {outcome.job.spec.name!r}: trigger {outcome.trigger!r} needs guard "
                f"{self.name!r}, which no plugin registered (registered guards: {known})"
            )
        ctx = TransitionContext(
            job=outcome.job,
            phase=outcome.phase,
            trigger=outcome.trigger,
            source=outcome.phase.status,
            dest=event.transition.dest,
            error=outcome.error,
            data=outcome.data,
        )
        if bool(guard(ctx)) is self.expect:
            return True
        outcome.rejected.append(
            f"guard {self.name!r} {'said no' if self.expect else 'said yes (unless)'}"
        )
        return False


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
            (index, t, statuses if t.sources == ("*",) else list(t.sources))
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

    def drive(self, outcome: Outcome) -> bool:
        """Fire ``outcome.trigger`` on the stand-in; False when every guard path said no.

        Used where guards decide; ``fixed`` answers the other triggers without driving.

        On success, ``outcome.status`` is the destination and ``outcome.transition`` the
        index of the declared transition that fired.
        """
        source = outcome.status
        if not self._events[outcome.trigger].trigger(outcome):
            return False
        if outcome.transition < 0:
            outcome.transition = self._only[(outcome.trigger, source)]
        return True
