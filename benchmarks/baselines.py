"""The baselines phasekit is measured against, built with nothing but ``transitions``."""

from __future__ import annotations

from typing import Any

from transitions import Machine

from statemachine import PhaseSet

__all__ = ["NaiveJob", "NaivePhase", "Unregistered", "machine_kwargs", "raw_machine"]


def machine_kwargs(spec: PhaseSet) -> dict[str, Any]:
    """The phase set as ``Machine`` keywords: its statuses and transitions, nothing more."""
    definition = spec.definition
    statuses = list(definition.statuses)
    return {
        "states": statuses,
        "transitions": [
            {
                "trigger": t.trigger,
                "source": statuses if t.sources == ("*",) else list(t.sources),
                "dest": t.dest,
            }
            for t in definition.transitions
        ],
        "initial": definition.initial_status,
        "auto_transitions": False,
    }


def raw_machine(spec: PhaseSet) -> Machine:
    """One shared machine with ``model=None``: what phasekit compiles to, used by hand."""
    return Machine(model=None, **machine_kwargs(spec))


class Unregistered:
    """A plain object the raw machine drives by event name; never ``add_model``-ed."""

    def __init__(self, state: str) -> None:
        self.state = state


class NaivePhase:
    """A phase as a ``transitions`` model of its own (``add_model`` binds its triggers)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.progress = 0.0


class NaiveJob:
    """A job the naive way: one ``add_model``-ed model per phase on a shared machine."""

    def __init__(self, job_id: str, machine: Machine, phase_names: tuple[str, ...]) -> None:
        self.job_id = job_id
        self.phases = {name: NaivePhase(name) for name in phase_names}
        machine.add_model(list(self.phases.values()))
