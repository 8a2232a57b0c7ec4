"""The in-memory store (``memory://``): fast, shared by threads, gone with the process."""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from ..errors import ConcurrentUpdateError, InvalidArgumentType, JobExists, JobNotFound
from ..limits import check_page
from .events import EVENT_TYPES, HistoryEvent, JobCreated
from .protocol import list_order
from .records import JobRecord

__all__ = ["MemoryStore"]


# History is kept packed: per event, one tuple of its ``type`` tag and its field values in
# declaration order, the containers of a ``JobCreated`` copied into tuples (its phases, and
# its metadata's items). That takes a third of the memory of the event object with its
# ``__dict__``, and the garbage collector stops visiting a packed event once it holds no
# other container (no metadata, or flat metadata). ``history()`` validates the values back
# into equal events, with the same ids.
_Packed = tuple[Any, ...]


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
    cls = EVENT_TYPES[kind]
    fields = dict(zip(cls.model_fields, copy.deepcopy(values), strict=True))
    if cls is JobCreated:
        fields["metadata"] = dict(fields["metadata"])
    # Validation copies the events' lists and dicts, not what they hold: hence the deep copy.
    return cast(HistoryEvent, cls.model_validate(fields))


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
            raise InvalidArgumentType(
                f"memory:// takes no options, got {', '.join(sorted(options))}"
            )
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
        limit, offset = check_page(limit, offset)
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
