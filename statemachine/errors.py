"""Exceptions raised by phasekit, and the located issue a spec error is made of.

Every error phasekit raises on purpose is a ``PhaseKitError``::

    PhaseKitError
    ├── SpecError (ValueError)          a phase-set document is invalid; .issues lists all
    ├── ConfigError (ValueError)        a tracker config is invalid (statemachine.tracker_config)
    ├── InvalidArgument (ValueError)    an argument out of range, malformed or too large
    ├── InvalidArgumentType (TypeError) an argument of the wrong type
    ├── InvalidTransition               a trigger the phase's status does not allow
    ├── TransitionRejected              a guard or a plugin's veto said no
    ├── UnknownPhase (KeyError)         a phase the phase set does not declare
    ├── JobNotFound (LookupError)       no such job in the store
    ├── JobExists                       the id is taken
    ├── ConcurrentUpdateError           another writer committed first
    ├── PersistenceError                the store failed; nothing was changed
    ├── SpecMismatch                    a stored job the phase set cannot represent
    └── DeliveryError                   a notifier could not deliver an event: retried
        └── PermanentDeliveryError      ... and retrying will not help: dead-lettered now
            └── EndpointGone            ... and the endpoint is gone: the notifier is disabled

The built-in bases (``ValueError``, ``TypeError``, ``KeyError``) keep ``except ValueError``
and the like working. Anything else that escapes phasekit is a bug, and the CLI shows it as one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ConcurrentUpdateError",
    "DeliveryError",
    "EndpointGone",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidTransition",
    "JobExists",
    "JobNotFound",
    "PermanentDeliveryError",
    "PersistenceError",
    "PhaseKitError",
    "SpecError",
    "SpecIssue",
    "SpecMismatch",
    "TransitionRejected",
    "UnknownPhase",
    "did_you_mean",
]

Severity = Literal["error", "warning"]


class PhaseKitError(Exception):
    """Base class of every error phasekit raises on purpose."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``choices`` is close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a phase-set document, located as precisely as the input allows."""

    code: str
    message: str
    path: str = ""
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    severity: Severity = "error"
    filename: str = "<string>"

    def format(self) -> str:
        """``FILE:LINE:COL: code: message``, the form compilers and editors understand."""
        where = self.filename
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: {self.code}: {self.message}"
        if self.hint:
            text += f" (did you mean {self.hint!r}?)"
        return text

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping, as ``phasekit validate --format json`` prints it."""
        return {
            "file": self.filename,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


class SpecError(PhaseKitError, ValueError):
    """A phase-set document is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues: list[SpecIssue] = sorted(
            issues, key=lambda i: (i.filename, i.line or 0, i.column or 0, i.path)
        )
        super().__init__(self.__str__())

    @property
    def filename(self) -> str:
        return self.issues[0].filename if self.issues else "<string>"

    def __str__(self) -> str:
        return "\n".join(issue.format() for issue in self.issues)


class InvalidArgument(PhaseKitError, ValueError):
    """An argument phasekit refuses: out of range, malformed or too large; says what is valid."""


class InvalidArgumentType(PhaseKitError, TypeError):
    """An argument of a type phasekit does not take; says which type it wants."""


class InvalidTransition(PhaseKitError):
    """A trigger was fired from a status that does not allow it."""

    def __init__(
        self,
        *,
        job_id: str,
        phase: str,
        trigger: str,
        status: str,
        allowed: Sequence[str],
        reason: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.phase = phase
        self.trigger = trigger
        self.status = status
        self.allowed = tuple(allowed)
        choices = ", ".join(self.allowed) if self.allowed else "none"
        what = reason or f"cannot {trigger!r} from status {status!r}"
        super().__init__(
            f"job {job_id!r}, phase {phase!r}: {what}; allowed triggers from {status!r}: {choices}"
        )


class TransitionRejected(PhaseKitError):
    """A guard or a plugin's veto refused a transition; ``reason`` says why."""

    def __init__(
        self, *, job_id: str, phase: str, trigger: str, reason: str, rejected_by: str | None = None
    ) -> None:
        self.job_id = job_id
        self.phase = phase
        self.trigger = trigger
        self.reason = reason
        self.rejected_by = rejected_by
        by = f" by {rejected_by}" if rejected_by else ""
        super().__init__(f"job {job_id!r}, phase {phase!r}: {trigger!r} rejected{by}: {reason}")


class UnknownPhase(PhaseKitError, KeyError):
    """A phase name that the job's phase set does not declare."""

    def __init__(self, phase: str, *, job_id: str | None, known: Sequence[str]) -> None:
        self.phase = phase
        self.job_id = job_id
        self.known = tuple(known)
        job = f"job {job_id!r} has " if job_id else ""
        hint = did_you_mean(phase, self.known)
        super().__init__(f"{job}no phase {phase!r}{hint}; phases: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class JobNotFound(PhaseKitError, LookupError):
    """No job with this id is in the store."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r} in the store")


class JobExists(PhaseKitError):
    """A job with this id is already in the store."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"a job {job_id!r} already exists")


class ConcurrentUpdateError(PhaseKitError):
    """Another writer committed a newer version of the job first; reload and retry."""

    def __init__(self, job_id: str, *, expected_version: int, actual_version: int | None) -> None:
        self.job_id = job_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "gone" if actual_version is None else f"at version {actual_version}"
        super().__init__(
            f"job {job_id!r} changed under us: expected version {expected_version}, "
            f"the store has it {actual}; reload the job and retry"
        )


class PersistenceError(PhaseKitError):
    """The store failed for a reason other than a version conflict; nothing was changed."""


class SpecMismatch(PhaseKitError):
    """A stored job holds statuses or phases that the phase set cannot represent."""


class DeliveryError(PhaseKitError):
    """A notifier could not deliver an event; the relay tries again later.

    A notifier the relay drives raises it (or any exception) from a notification hook when
    the event did not get through. ``retry_after`` (seconds) is how long the receiver asked
    to be left alone, e.g. from a ``Retry-After`` header; the relay waits at least that long.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The receiver refused the event for good (e.g. HTTP 400): it is dead-lettered at once."""


class EndpointGone(PermanentDeliveryError):
    """The receiver is gone (HTTP 410): the event is dead-lettered and the notifier disabled.

    A disabled notifier gets nothing more until ``phasekit relay --retry-dead`` enables it
    again; its cursor stays where it was, so nothing committed meanwhile is lost.
    """
