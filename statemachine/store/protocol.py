"""The Store protocol every persistence backend implements, and how a URL picks one."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidArgument, InvalidArgumentType, PhaseKitError
from .events import Event, HistoryEvent, LoggedEvent
from .records import JobRecord, PhaseRecord

__all__ = [
    "DeadLetter",
    "DeadlineIndex",
    "DuePhase",
    "EventLog",
    "RelayCursor",
    "RelayLedger",
    "SpecArchive",
    "Store",
    "StoreFactory",
    "list_order",
    "open_store",
]


@runtime_checkable
class Store(Protocol):
    """Where jobs live. One ``save`` is one atomic step, guarded by the job's version."""

    def create(self, record: JobRecord, events: Sequence[Event]) -> None:
        """Store a new job and its creation events; ``JobExists`` if the id is taken."""

    def load(self, job_id: str) -> JobRecord | None:
        """The job as stored now, or None."""

    def save(self, record: JobRecord, *, expected_version: int, events: Sequence[Event]) -> None:
        """Replace the job if the stored version is ``expected_version`` and append ``events``.

        ``events`` are every event of the commit, in order: the status changes among them
        (``HISTORY_TYPES``) go to the job's history, and all of them to the event log of a
        store that keeps one. All or nothing: a version mismatch raises
        ``ConcurrentUpdateError`` and writes nothing.
        """

    def list(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[JobRecord]:
        """Jobs, most recently updated first, optionally only those in overall ``status``."""

    def history(self, job_id: str) -> builtins.list[HistoryEvent]:
        """The job's history (creation, then every status change) in commit order."""

    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""


@runtime_checkable
class SpecArchive(Protocol):
    """A store that keeps the phase sets it has seen, so jobs load without the YAML file."""

    def remember_spec(self, name: str, fingerprint: str, definition: Mapping[str, Any]) -> None:
        """Keep ``definition`` (the phase set as JSON-ready data) under its fingerprint."""

    def recall_spec(self, fingerprint: str) -> dict[str, Any] | None:
        """The definition kept under ``fingerprint``, or None."""


@runtime_checkable
class EventLog(Protocol):
    """A store's log of every committed event: the outbox the relay delivers from.

    Positions grow in commit order: once a reader has read up to position ``p``, no event
    at a position ``<= p`` appears later, whatever order concurrent transactions commit in.
    """

    def read_events(self, after: int = 0, *, limit: int = 1000) -> builtins.list[LoggedEvent]:
        """Up to ``limit`` events at positions above ``after``, in position order."""

    def last_position(self) -> int:
        """The highest position a reader can see now (0 for an empty log)."""

    def prune_events(self, *, before: datetime) -> int:
        """Remove events committed before ``before`` that every relay cursor has passed.

        Returns how many were removed. Events a notifier has not had yet are kept.
        """


@dataclass(frozen=True, slots=True)
class RelayCursor:
    """Where one notifier's delivery stands, as the store keeps it."""

    notifier: str
    #: The last position delivered (or dead-lettered); 0 before the first.
    position: int = 0
    #: Failed attempts at the event after ``position``.
    attempts: int = 0
    #: Not before this time is the next attempt made (a backoff, or ``Retry-After``).
    retry_at: datetime | None = None
    #: Why the notifier is disabled (its endpoint is gone), or None.
    disabled: str | None = None
    #: The last failure, for ``phasekit relay --status``.
    last_error: str | None = None
    #: The relay that holds the lease, and until when.
    owner: str | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a notifier could not deliver, kept until ``--retry-dead`` delivers it."""

    notifier: str
    position: int
    event: Event
    reason: str
    attempts: int
    at: datetime


@runtime_checkable
class RelayLedger(Protocol):
    """What a relay keeps in the store: a cursor and a lease per notifier, and dead letters.

    A lease makes one relay at a time deliver a notifier's events; it lasts ``lease``
    seconds from its last renewal, so the lease of a relay that died expires.
    """

    def claim_cursor(self, notifier: str, owner: str, *, lease: float) -> RelayCursor | None:
        """Take or renew ``notifier``'s lease for ``owner``; its cursor, or None when
        another owner holds an unexpired lease."""

    def save_cursor(
        self,
        cursor: RelayCursor,
        owner: str,
        *,
        lease: float,
        dead_letter: DeadLetter | None = None,
    ) -> bool:
        """Store the cursor and renew the lease, if ``owner`` still holds it; atomic with
        adding ``dead_letter``. False (nothing written) when the lease was lost."""

    def release_cursor(self, notifier: str, owner: str) -> None:
        """Give up ``owner``'s lease on ``notifier``, if it holds it."""

    def relay_cursors(self) -> builtins.list[RelayCursor]:
        """Every notifier's cursor, by name."""

    def dead_letters(
        self, notifier: str | None = None, *, limit: int = 1000
    ) -> builtins.list[DeadLetter]:
        """Dead letters, oldest position first, of one notifier or of all."""

    def remove_dead_letter(self, notifier: str, position: int) -> None:
        """Forget a dead letter (it was delivered after all)."""


@dataclass(frozen=True, slots=True)
class DuePhase:
    """A phase past its deadline, claimed by one sweep until ``claimed_until``."""

    job_id: str
    phase_name: str
    #: The phase's status when it was claimed.
    status: str
    #: The deadline that passed.
    deadline: datetime
    #: Until when other sweeps pass the phase by (the stored deadline meanwhile).
    claimed_until: datetime


@runtime_checkable
class DeadlineIndex(Protocol):
    """A store that finds phases past their deadline from an index, without a scan.

    Every ``save`` stores each phase's ``deadline`` (``PhaseRecord.deadline``); these
    methods read it. A claim moves a due phase's stored deadline to ``claimed_until``, so
    sweeps running at once (in other threads, processes or machines) split the due phases
    between them, and a sweep that dies mid-way leaves its claims to expire.
    """

    def claim_due(
        self, now: datetime, *, spec: str, limit: int = 100, lease: float = 60.0
    ) -> builtins.list[DuePhase]:
        """Up to ``limit`` phases of jobs of phase set ``spec`` whose deadline is at or before
        ``now``, earliest first, each claimed for ``lease`` seconds; phases another sweep
        holds are skipped."""

    def release_due(self, phase: DuePhase, deadline: datetime | None) -> None:
        """Give a claimed phase that was not fired the ``deadline`` it has (None: none), if
        nobody changed the phase since it was claimed."""

    def undated_phases(
        self,
        *,
        spec: str,
        fingerprint: str,
        statuses: Sequence[str],
        after: tuple[str, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[tuple[str, datetime, PhaseRecord]]:
        """Phases in ``statuses`` of jobs of phase set ``spec`` whose deadline may be out of
        date: none stored, or the job was kept under another ``fingerprint`` (an earlier
        version of the phase set). ``(job_id, the job's created_at, phase)``, by job id and
        phase name, after ``after``."""

    def set_deadline(
        self, job_id: str, phase_name: str, status: str, deadline: datetime | None
    ) -> None:
        """Store ``deadline`` for the phase if it is still in ``status`` (no new version: the
        deadline follows from the phase's timestamps and the phase set)."""


@runtime_checkable
class JobCounter(Protocol):
    """A store that counts its jobs without reading them (the dashboard's counts)."""

    def count_jobs(self) -> dict[tuple[str, str], int]:
        """The number of stored jobs of each ``(phase set name, overall status)``."""


#: What ``register_stores`` maps a URL scheme to: ``factory(url, **options)`` returns a Store.
StoreFactory = Callable[..., Store]


def open_store(url: str, factories: Mapping[str, StoreFactory], **options: Any) -> Store:
    """Open the store ``url`` names, with the factory registered for its scheme."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        # Not quoted: a malformed URL may still hold a password.
        raise InvalidArgument(
            "the store is not a URL; expected SCHEME://…, with SCHEME one of "
            f"{', '.join(sorted(factories))}"
        )
    factory = factories.get(scheme) or factories.get(scheme.split("+", 1)[0])
    if factory is None:
        raise PhaseKitError(
            f"no store for {scheme}:// URLs; known schemes: {', '.join(sorted(factories))} "
            "(a plugin can add one with the register_stores hook)"
        )
    return factory(url, **options)


def list_order(record: JobRecord) -> tuple[float, str]:
    """Sort key of ``Store.list``: most recently updated first, then by id."""
    return (-record.updated_at.timestamp(), record.job_id)


def list_cursor(after: object) -> tuple[datetime, str]:
    """``after`` of a keyset ``list``, checked: the ``(updated_at, job_id)`` of the last job of
    the previous page (``(record.updated_at, record.job_id)``)."""
    if (
        not isinstance(after, tuple)
        or len(after) != 2
        or not isinstance(after[0], datetime)
        or after[0].tzinfo is None
        or not isinstance(after[1], str)
    ):
        raise InvalidArgumentType(
            "after must be (updated_at, job_id) of the last job of the previous page: a "
            f"timezone-aware datetime and a str, not {type(after).__name__}"
        )
    return after[0], after[1]
