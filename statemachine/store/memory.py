"""The in-memory store (``memory://``): fast, shared by threads, gone with the process."""

from __future__ import annotations

import bisect
import builtins
import copy
import dataclasses
import heapq
import logging
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from ..errors import ConcurrentUpdateError, InvalidArgumentType, JobExists, JobNotFound
from ..limits import check_count, check_page
from .events import EVENT_TYPES, HISTORY_TYPES, Event, HistoryEvent, JobCreated, LoggedEvent
from .protocol import DeadLetter, DuePhase, RelayCursor, list_cursor, list_order
from .records import JobRecord, PhaseRecord

log = logging.getLogger("phasekit")

#: Events the memory store's log keeps by default; older ones make way (and are counted).
MAX_LOGGED_EVENTS = 100_000

__all__ = ["MemoryStore"]


def _phases_in(record: JobRecord, wanted: Mapping[str, str]) -> bool:
    """Whether every phase named in ``wanted`` is in the status it maps to."""
    statuses = {p.phase_name: p.status for p in record.phases}
    return all(statuses.get(name) == status for name, status in wanted.items())


def _packed_at(packed: _Packed) -> datetime:
    """The ``at`` of a packed event (every event class declares it fourth)."""
    at: datetime = packed[4]
    return at


# History is kept packed: per event, one tuple of its ``type`` tag and its field values in
# declaration order, the containers of a ``JobCreated`` copied into tuples (its phases, and
# its metadata's items). That takes a third of the memory of the event object with its
# ``__dict__``, and the garbage collector stops visiting a packed event once it holds no
# other container (no metadata, or flat metadata). ``history()`` validates the values back
# into equal events, with the same ids.
_Packed = tuple[Any, ...]


def _pack(event: Event) -> _Packed:
    values = event.__dict__
    if isinstance(event, JobCreated):
        metadata = values["metadata"]
        values = {
            **values,
            "phases": tuple(values["phases"]),
            "metadata": tuple(copy.deepcopy(metadata).items()) if metadata else (),
        }
    return (event.type, *values.values())


def _unpack(packed: _Packed) -> Event:
    kind, *values = packed
    cls = EVENT_TYPES[kind]
    fields = dict(zip(cls.model_fields, copy.deepcopy(values), strict=True))
    if cls is JobCreated:
        fields["metadata"] = dict(fields["metadata"])
    # Validation copies the events' lists and dicts, not what they hold: hence the deep copy.
    return cast(Event, cls.model_validate(fields))


class MemoryStore:
    """A store in this process's memory (``memory://``): fast, shared by threads, not durable.

    It keeps an event log too, so a relay delivers from it as from a durable store; the log
    holds the last ``max_events`` events (older ones make way, counted in
    ``dropped_events`` and logged).
    """

    def __init__(self, *, max_events: int = MAX_LOGGED_EVENTS) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._history: dict[str, builtins.list[_Packed]] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        self.max_events = check_count("max_events", max_events, minimum=1)
        self._log: deque[tuple[int, _Packed]] = deque()
        self._position = 0
        self._appended = threading.Condition(self._lock)
        self._interrupts = 0
        self._cursors: dict[str, RelayCursor] = {}
        self._dead: dict[tuple[str, int], DeadLetter] = {}
        self._keys: dict[str, set[str]] = {}
        # The deadline index: each phase's stored deadline (its record's, or a sweep's claim)
        # and a heap of (deadline, job id, phase) with stale entries dropped when popped.
        self._deadlines: dict[tuple[str, str], datetime] = {}
        self._due: builtins.list[tuple[datetime, str, str]] = []
        #: Events the log let go of before every reader had them.
        self.dropped_events = 0

    @classmethod
    def from_url(cls, url: str = "memory://", **options: Any) -> MemoryStore:
        options.pop("asyncio", None)  # the memory store serves sync and async trackers alike
        unknown = set(options) - {"max_events"}
        if unknown:
            raise InvalidArgumentType(
                f"memory:// takes only the option max_events, got {', '.join(sorted(unknown))}"
            )
        return cls(**options)

    def create(self, record: JobRecord, events: Sequence[Event]) -> None:
        with self._lock:
            if record.job_id in self._jobs:
                raise JobExists(record.job_id)
            self._jobs[record.job_id] = record
            self._index_deadlines(None, record)
            self._history[record.job_id] = [
                _pack(e) for e in events if isinstance(e, HISTORY_TYPES)
            ]
            self._append(events)

    def load(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def load_many(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """The stored jobs among ``job_ids``, by id (missing ids are left out)."""
        jobs = self._jobs
        return {i: jobs[i] for i in job_ids if i in jobs}

    def save(
        self,
        record: JobRecord,
        *,
        expected_version: int,
        events: Sequence[Event],
        idempotency_key: str | None = None,
    ) -> None:
        with self._lock:
            current = self._jobs.get(record.job_id)
            if current is None:
                raise JobNotFound(record.job_id)
            if current.version != expected_version:
                raise ConcurrentUpdateError(
                    record.job_id, expected_version=expected_version, actual_version=current.version
                )
            self._jobs[record.job_id] = record
            self._index_deadlines(current, record)
            if idempotency_key is not None:
                self._keys.setdefault(record.job_id, set()).add(idempotency_key)
            if events:
                self._history[record.job_id].extend(
                    [_pack(e) for e in events if isinstance(e, HISTORY_TYPES)]
                )
                self._append(events)

    def delete(self, job_id: str, *, expected_version: int, events: Sequence[Event]) -> None:
        """Delete the job at ``expected_version`` with its history, and log ``events``."""
        with self._lock:
            current = self._jobs.get(job_id)
            if current is None:
                raise JobNotFound(job_id)
            if current.version != expected_version:
                raise ConcurrentUpdateError(
                    job_id, expected_version=expected_version, actual_version=current.version
                )
            del self._jobs[job_id]
            for phase in current.phases:
                self._deadlines.pop((job_id, phase.phase_name), None)
            self._history.pop(job_id, None)
            self._keys.pop(job_id, None)
            self._append(events)

    def seen_idempotency_key(self, job_id: str, key: str) -> bool:
        """Whether a change of job ``job_id`` was committed with ``key``."""
        with self._lock:
            return key in self._keys.get(job_id, ())

    def _append(self, events: Sequence[Event]) -> None:
        """Add ``events`` to the log (the lock is held)."""
        if not events:
            return
        log_ = self._log
        for event in events:
            self._position += 1
            log_.append((self._position, _pack(event)))
        excess = len(log_) - self.max_events
        if excess > 0:
            for _ in range(excess):
                log_.popleft()
            lagging = min((c.position for c in self._cursors.values()), default=None)
            if lagging is not None and lagging < log_[0][0] - 1:
                self.dropped_events += excess
                log.warning(
                    "phasekit: the memory store's event log keeps %d events; %d were let go "
                    "before every notifier had them",
                    self.max_events,
                    excess,
                )
        self._appended.notify_all()

    # -- DeadlineIndex -----------------------------------------------------------------------

    def _index_deadlines(self, before: JobRecord | None, record: JobRecord) -> None:
        """Note the deadlines of the phases ``record`` changed (the lock is held)."""
        old = (
            before.phases if before is not None and len(before.phases) == len(record.phases) else ()
        )
        deadlines = self._deadlines
        for i, phase in enumerate(record.phases):
            if old and old[i] is phase:
                continue  # unchanged: a claim on it stands, as in a SQL store
            key = (record.job_id, phase.phase_name)
            if phase.deadline is None:
                deadlines.pop(key, None)
            elif deadlines.get(key) != phase.deadline:
                deadlines[key] = phase.deadline
                heapq.heappush(self._due, (phase.deadline, *key))
        if len(self._due) > 2 * len(deadlines) + 1024:  # mostly stale (progress moved them)
            self._due = [(d, job, phase) for (job, phase), d in deadlines.items()]
            heapq.heapify(self._due)

    def claim_due(
        self, now: datetime, *, spec: str, limit: int = 100, lease: float = 60.0
    ) -> builtins.list[DuePhase]:
        """Up to ``limit`` phases of phase set ``spec`` past their deadline, earliest first,
        each claimed for ``lease`` seconds (other claims pass it by meanwhile)."""
        check_count("limit", limit, minimum=1)
        until = now + timedelta(seconds=lease)
        claimed: builtins.list[DuePhase] = []
        others: builtins.list[tuple[datetime, str, str]] = []
        with self._lock:
            heap, deadlines = self._due, self._deadlines
            while heap and heap[0][0] <= now and len(claimed) < limit:
                deadline, job_id, phase_name = heapq.heappop(heap)
                if deadlines.get((job_id, phase_name)) != deadline:
                    continue  # stale: the phase changed since
                record = self._jobs[job_id]
                if record.spec_name != spec:
                    others.append((deadline, job_id, phase_name))
                    continue
                status = next(p.status for p in record.phases if p.phase_name == phase_name)
                deadlines[(job_id, phase_name)] = until
                heapq.heappush(heap, (until, job_id, phase_name))
                claimed.append(DuePhase(job_id, phase_name, status, deadline, until))
            for entry in others:
                heapq.heappush(heap, entry)
        return claimed

    def release_due(self, phase: DuePhase, deadline: datetime | None) -> None:
        """Give a claimed phase its ``deadline`` back, unless it changed since the claim."""
        key = (phase.job_id, phase.phase_name)
        with self._lock:
            if self._deadlines.get(key) != phase.claimed_until:
                return
            if deadline is None:
                del self._deadlines[key]
            else:
                self._deadlines[key] = deadline
                heapq.heappush(self._due, (deadline, *key))

    def undated_phases(
        self,
        *,
        spec: str,
        fingerprint: str,
        statuses: Sequence[str],
        after: tuple[str, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[tuple[str, datetime, PhaseRecord]]:
        """Phases in ``statuses`` of ``spec``'s jobs without a deadline, or kept under another
        fingerprint (this store looks at every job: it holds one process's jobs)."""
        wanted = set(statuses)
        found: builtins.list[tuple[str, datetime, PhaseRecord]] = []
        with self._lock:
            records = [r for r in self._jobs.values() if r.spec_name == spec]
        for record in sorted(records, key=lambda r: r.job_id):
            for phase in sorted(record.phases, key=lambda p: p.phase_name):
                if after is not None and (record.job_id, phase.phase_name) <= after:
                    continue
                if phase.status in wanted and (
                    phase.deadline is None or record.spec_fingerprint != fingerprint
                ):
                    found.append((record.job_id, record.created_at, phase))
                    if len(found) >= limit:
                        return found
        return found

    def set_deadline(
        self, job_id: str, phase_name: str, status: str, deadline: datetime | None
    ) -> None:
        """Store ``deadline`` for the phase if it is still in ``status`` (same version)."""
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None:
                return
            phases = builtins.list(record.phases)
            for i, phase in enumerate(phases):
                if phase.phase_name == phase_name and phase.status == status:
                    if phase.deadline == deadline:
                        return
                    phases[i] = dataclasses.replace(phase, deadline=deadline)
                    updated = record.replace(phases=tuple(phases))
                    self._jobs[job_id] = updated
                    self._index_deadlines(record, updated)
                    return

    # -- EventLog ----------------------------------------------------------------------------

    def read_events(self, after: int = 0, *, limit: int = 1000) -> builtins.list[LoggedEvent]:
        """Up to ``limit`` events at positions above ``after``, in position order."""
        check_count("limit", limit, minimum=1)
        with self._lock:
            log_ = self._log
            if not log_ or log_[-1][0] <= after:
                return []
            start = max(0, after + 1 - log_[0][0])
            picked = [log_[i] for i in range(start, min(len(log_), start + limit))]
        return [LoggedEvent(position, _unpack(packed)) for position, packed in picked]

    def last_position(self) -> int:
        """The position of the last event appended (0 for none)."""
        return self._position

    def prune_events(self, *, before: datetime) -> int:
        """Remove events before ``before`` that every relay cursor has passed."""
        with self._lock:
            passed = min((c.position for c in self._cursors.values()), default=self._position)
            removed = 0
            log_ = self._log
            while log_ and log_[0][0] <= passed and _packed_at(log_[0][1]) < before:
                log_.popleft()
                removed += 1
            return removed

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an event above ``after``; whether one came."""
        with self._lock:
            interrupts = self._interrupts
            self._appended.wait_for(
                lambda: self._position > after or self._interrupts != interrupts, timeout
            )
            return self._position > after

    def wake_waiters(self) -> None:
        """End every ``wait_for_events`` in progress (a relay that stops calls it)."""
        with self._lock:
            self._interrupts += 1
            self._appended.notify_all()

    # -- RelayLedger -------------------------------------------------------------------------

    def claim_cursor(self, notifier: str, owner: str, *, lease: float) -> RelayCursor | None:
        now = datetime.now(UTC)
        with self._lock:
            cursor = self._cursors.get(notifier) or RelayCursor(notifier)
            held = cursor.owner not in (None, owner)
            if held and cursor.lease_until is not None and cursor.lease_until > now:
                return None
            cursor = dataclasses.replace(
                cursor, owner=owner, lease_until=now + timedelta(seconds=lease)
            )
            self._cursors[notifier] = cursor
            return cursor

    def save_cursor(
        self,
        cursor: RelayCursor,
        owner: str,
        *,
        lease: float,
        dead_letter: DeadLetter | None = None,
    ) -> bool:
        now = datetime.now(UTC)
        with self._lock:
            current = self._cursors.get(cursor.notifier)
            if current is None or current.owner != owner:
                return False
            self._cursors[cursor.notifier] = dataclasses.replace(
                cursor, owner=owner, lease_until=now + timedelta(seconds=lease)
            )
            if dead_letter is not None:
                self._dead[(dead_letter.notifier, dead_letter.position)] = dead_letter
            return True

    def release_cursor(self, notifier: str, owner: str) -> None:
        with self._lock:
            current = self._cursors.get(notifier)
            if current is not None and current.owner == owner:
                self._cursors[notifier] = dataclasses.replace(current, owner=None, lease_until=None)

    def relay_cursors(self) -> builtins.list[RelayCursor]:
        with self._lock:
            return [self._cursors[name] for name in sorted(self._cursors)]

    def dead_letters(
        self, notifier: str | None = None, *, limit: int = 1000
    ) -> builtins.list[DeadLetter]:
        with self._lock:
            letters = [d for d in self._dead.values() if notifier in (None, d.notifier)]
        letters.sort(key=lambda d: (d.position, d.notifier))
        return letters[:limit]

    def remove_dead_letter(self, notifier: str, position: int) -> None:
        with self._lock:
            self._dead.pop((notifier, position), None)

    def list(
        self,
        *,
        status: str | None = None,
        spec: str | None = None,
        phase_status: Mapping[str, str] | None = None,
        limit: int = 100,
        offset: int = 0,
        after: tuple[datetime, str] | None = None,
    ) -> builtins.list[JobRecord]:
        limit, offset = check_page(limit, offset)
        wanted = dict(phase_status or {})
        cursor = None if after is None else list_cursor(after)
        with self._lock:
            records = [
                r
                for r in self._jobs.values()
                if (status is None or r.status == status)
                and (spec is None or r.spec_name == spec)
                and (not wanted or _phases_in(r, wanted))
            ]
        records.sort(key=list_order)
        if cursor is not None:
            last = (-cursor[0].timestamp(), cursor[1])
            records = records[bisect.bisect_right(records, last, key=list_order) :]
        return records[offset : offset + limit]

    def count_jobs(self) -> dict[tuple[str, str], int]:
        """The number of jobs of each ``(phase set name, overall status)``."""
        with self._lock:
            return dict(Counter((r.spec_name, r.status) for r in self._jobs.values()))

    def history(self, job_id: str) -> builtins.list[HistoryEvent]:
        with self._lock:
            packed = builtins.list(self._history.get(job_id, ()))
        return [cast(HistoryEvent, _unpack(p)) for p in packed]

    def remember_spec(self, name: str, fingerprint: str, definition: Mapping[str, Any]) -> None:
        with self._lock:
            self._specs.setdefault(fingerprint, dict(definition))

    def recall_spec(self, fingerprint: str) -> dict[str, Any] | None:
        return self._specs.get(fingerprint)

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._jobs)

    def __repr__(self) -> str:
        return f"<MemoryStore: {len(self._jobs)} jobs>"
