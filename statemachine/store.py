"""The Store protocol every persistence backend implements, and the in-memory store."""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import ConcurrentUpdateError, JobExists, JobNotFound, PhaseKitError
from .events import HistoryEvent, JobCreated, PhaseChanged
from .records import JobRecord

__all__ = ["MemoryStore", "SpecArchive", "Store", "list_order", "open_store"]


@runtime_checkable
class Store(Protocol):
    """Where jobs live. One ``save`` is one atomic step, guarded by the job's version."""

    def create(self, record: JobRecord, events: Sequence[HistoryEvent]) -> None:
        """Store a new job and its creation events; ``JobExists`` if the id is taken."""

    def load(self, job_id: str) -> JobRecord | None:
        """The job as stored now, or None."""

    def save(
        self, record: JobRecord, *, expected_version: int, events: Sequence[HistoryEvent]
    ) -> None:
        """Replace the job if the stored version is ``expected_version`` and append ``events``.

        All or nothing: a version mismatch raises ``ConcurrentUpdateError`` and writes nothing.
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


def open_store(url: str, factories: Mapping[str, Callable[..., Store]], **options: Any) -> Store:
    """Open the store ``url`` names, with the factory registered for its scheme."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise PhaseKitError(
            f"store {url!r} is not a URL; expected SCHEME://…, with SCHEME one of "
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


# History is kept packed: per event, one tuple of its ``type`` tag and its field values in
# declaration order, the containers of a ``JobCreated`` copied into tuples (its phases, and
# its metadata's items). That takes a third of the memory of the event object with its
# ``__dict__``, and the garbage collector stops visiting a packed event once it holds no
# other container (no metadata, or flat metadata). ``history()`` validates the values back
# into equal events, with the same ids.
_Packed = tuple[Any, ...]
_EVENT_TYPES: dict[str, type[HistoryEvent]] = {
    "job_created": JobCreated,
    "phase_changed": PhaseChanged,
}


def _pack(event: HistoryEvent) -> _Packed:
    values = event.__dict__
    if isinstance(event, JobCreated):
        metadata = values["metadata"]
        values = {
            **values,
            "phases": tuple(values["phases"]),
            "metadata": tuple(copy.deepcopy(metadata).items()) if metadata else (),
        }
    return (event.type, *values.values())


def _unpack(packed: _Packed) -> HistoryEvent:
    kind, *values = packed
    cls = _EVENT_TYPES[kind]
    fields = dict(zip(cls.model_fields, copy.deepcopy(values), strict=True))
    if cls is JobCreated:
        fields["metadata"] = dict(fields["metadata"])
    # Validation copies the events' lists and dicts, not what they hold: hence the deep copy.
    return cls.model_validate(fields)


class MemoryStore:
    """A store in this process's memory (``memory://``): fast, shared by threads, not durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._history: dict[str, builtins.list[_Packed]] = {}
        self._specs: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_url(cls, url: str = "memory://", **options: Any) -> MemoryStore:
        if options:
            raise TypeError(f"memory:// takes no options, got {', '.join(sorted(options))}")
        return cls()

    def create(self, record: JobRecord, events: Sequence[HistoryEvent]) -> None:
        with self._lock:
            if record.job_id in self._jobs:
                raise JobExists(record.job_id)
            self._jobs[record.job_id] = record
            self._history[record.job_id] = [_pack(e) for e in events]

    def load(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def load_many(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """The stored jobs among ``job_ids``, by id (missing ids are left out)."""
        jobs = self._jobs
        return {i: jobs[i] for i in job_ids if i in jobs}

    def save(
        self, record: JobRecord, *, expected_version: int, events: Sequence[HistoryEvent]
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
            if events:
                self._history[record.job_id].extend([_pack(e) for e in events])

    def list(
        self,
        *,
        status: str | None = None,
        spec: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobRecord]:
        with self._lock:
            records = [
                r
                for r in self._jobs.values()
                if (status is None or r.status == status) and (spec is None or r.spec_name == spec)
            ]
        records.sort(key=list_order)
        return records[offset : offset + limit]

    def history(self, job_id: str) -> builtins.list[HistoryEvent]:
        with self._lock:
            packed = builtins.list(self._history.get(job_id, ()))
        return [_unpack(p) for p in packed]

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
