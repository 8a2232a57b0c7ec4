"""What guards and actions are called with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import JobState
    from .phase import PhaseState

__all__ = ["Action", "Guard", "TransitionContext"]


@dataclass(frozen=True, slots=True)
class TransitionContext:
    """A transition being decided (for a guard) or just committed (for an action).

    For a guard, ``phase`` and ``job`` are still unchanged; for an action they already show
    ``dest``. ``data`` holds the keyword arguments the trigger was fired with.
    """

    job: JobState
    phase: PhaseState
    trigger: str
    source: str
    dest: str
    error: str | None
    data: Mapping[str, Any]


#: A guard says whether a transition may happen; it must not change anything.
Guard = Callable[[TransitionContext], bool]
#: An action runs after a transition was committed and applied.
Action = Callable[[TransitionContext], None]
