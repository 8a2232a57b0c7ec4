"""The hooks phasekit calls: the contract between phasekit and its plugins.

Each hook says how it is called. *Collect*: when a Tracker is built, every implementation is
called and the mappings are merged (a name registered twice is an error). *Veto*: before a
transition is saved, every implementation is asked; any answer but None rejects it, and so
does an exception (fail closed). *Notify*: after a change is committed, each implementation
is called on its own; an exception is logged with the plugin's name and goes no further.
Implementations are plain functions or methods: hook wrappers are refused at registration,
since each implementation is called on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import pluggy

from ..runtime import Action, Guard
from ..store import (
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    PhaseChanged,
    ProgressUpdated,
    StoreFactory,
    TransitionRequest,
)

__all__ = ["HOOK_KINDS", "PROJECT", "Veto", "hookimpl", "hookspec"]

#: The pluggy project name and the entry-point group of plugins.
PROJECT = "phasekit"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's hook implementation: ``@hookimpl def phase_changed(self, event): ...``
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True, slots=True)
class Veto:
    """Returned from ``before_transition`` to reject the transition, saying why."""

    reason: str


# Collect hooks: called when a Tracker is built; every plugin's answer is merged.


@hookspec
def register_stores() -> Mapping[str, StoreFactory] | None:
    """Stores by URL scheme; ``factory(url, **options)`` returns a Store.

    Collect: every implementation's mapping is merged when a Tracker is built.
    """


@hookspec
def register_notifiers() -> Mapping[str, Callable[..., object]] | None:
    """Notifiers by name for config files: ``factory(**options)`` returns a plugin object.

    Collect: every implementation's mapping is merged when a config file is read.
    """


@hookspec
def register_guards() -> Mapping[str, Guard] | None:
    """Guards by name, referenced by a transition's ``conditions`` and ``unless``.

    Collect: every implementation's mapping is merged when a Tracker is built.
    """


@hookspec
def register_actions() -> Mapping[str, Action] | None:
    """Actions by name, referenced by a transition's ``after``.

    Collect: every implementation's mapping is merged when a Tracker is built.
    """


@hookspec
def before_transition(event: TransitionRequest) -> Veto | None:
    """Return a ``Veto`` to reject a transition that passed its guards; None lets it pass.

    Veto: every implementation is asked before the transition is saved; a ``Veto``, any
    other answer but None, or an exception rejects it.
    """


@hookspec
def job_created(event: JobCreated) -> None:
    """A job was created and stored.

    Notify: called after the commit, each implementation isolated from the others.
    """


@hookspec
def phase_changed(event: PhaseChanged) -> None:
    """A phase changed status; the change is committed.

    Notify: called after the commit, each implementation isolated from the others.
    """


@hookspec
def progress_updated(event: ProgressUpdated) -> None:
    """A phase's counters changed; the change is committed.

    Notify: called after the commit, each implementation isolated from the others.
    """


@hookspec
def job_status_changed(event: JobStatusChanged) -> None:
    """The job's overall status or current phase changed; the change is committed.

    Notify: called after the commit, each implementation isolated from the others.
    """


@hookspec
def job_deleted(event: JobDeleted) -> None:
    """A job was deleted; the deletion is committed.

    Notify: called after the commit, each implementation isolated from the others.
    """


#: How each hook is called, as its docstring says: ``collect``, ``veto`` or ``notify``.
HOOK_KINDS: dict[str, Literal["collect", "veto", "notify"]] = {
    "register_stores": "collect",
    "register_notifiers": "collect",
    "register_guards": "collect",
    "register_actions": "collect",
    "before_transition": "veto",
    "job_created": "notify",
    "phase_changed": "notify",
    "progress_updated": "notify",
    "job_status_changed": "notify",
    "job_deleted": "notify",
}
