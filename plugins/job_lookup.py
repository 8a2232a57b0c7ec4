"""What the observability plugins read about the job of an event: its phase set and its phases.

An event names its job, phase and statuses, not the job's phase set, the flags of a status or
when the phase started. ``JobLookup`` finds them in the store the events came from (one load
per finished phase, phase sets cached), so a phase started in one process and finished in
another is measured from its stored ``started_at``. ``SeenEvents`` remembers the ids of the
events a plugin has handled, so an event the relay delivers twice is observed once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from statemachine import (
    InvalidArgument,
    InvalidArgumentType,
    JobRecord,
    PersistenceError,
    PhaseChanged,
    PhaseKitError,
    PhaseSet,
    SpecArchive,
    Store,
    load_spec,
    open_store,
    spec_from_dict,
)

__all__ = [
    "REMEMBERED",
    "FinishedPhase",
    "JobLookup",
    "Remembered",
    "SeenEvents",
    "nanoseconds",
    "open_store_option",
]

K = TypeVar("K")
V = TypeVar("V")

log = logging.getLogger("phasekit.plugins")

#: How many jobs (their phase set, their last status) and event ids a plugin remembers. The relay
#: delivers an event again only when it did not save its cursor after it (at most one batch,
#: or ``save_every`` seconds of deliveries), far fewer than this.
REMEMBERED = 10_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def nanoseconds(at: datetime) -> int:
    """``at`` as integer nanoseconds since the Unix epoch, exactly (no float rounding)."""
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def open_store_option(
    plugin: str, store: object, options: Mapping[str, Any] | None
) -> tuple[Store, bool]:
    """The store a plugin reads, from its ``store`` option; and whether the plugin opened it.

    A ``Store`` object is used as given (``tracker.store``); a URL names a SQL store
    (``sqlite:///…``, ``postgresql://…``), which the plugin opens, and closes with itself.
    """
    if isinstance(store, str):
        scheme = store.partition("://")[0]
        if scheme == "memory":
            raise InvalidArgument(
                f"{plugin} store: a memory:// store lives inside its tracker; pass the store "
                "object (tracker.store) instead of the URL"
            )
        # Imported here: the SQL store plugin is phasekit's own, so its factories are the ones
        # ``sqlite://`` and ``postgresql://`` name; any other store is passed as an object.
        from .sql import register_stores  # noqa: PLC0415

        factories = register_stores()
        if scheme.split("+", 1)[0] not in factories:
            raise InvalidArgument(
                f"{plugin} store: a URL names a SQL store ({', '.join(sorted(factories))}), "
                f"not {scheme or 'a URL without a scheme'}; pass any other store as an object"
            )
        return open_store(store, factories, **dict(options or {})), True
    if options:
        raise InvalidArgumentType(f"{plugin} store_options apply to a store URL, not to a Store")
    if store is None:
        raise InvalidArgument(
            f"the {plugin} plugin reads the jobs its events are about: give it the tracker's "
            "store (store=tracker.store, or the store URL in a config)"
        )
    if not isinstance(store, Store):
        raise InvalidArgumentType(
            f"{plugin} store must be a Store or a store URL, not {type(store).__name__}"
        )
    return store, False


def _phase_sets(specs: Iterable[PhaseSet | str]) -> list[PhaseSet]:
    if isinstance(specs, str | PhaseSet):
        specs = [specs]
    return [spec if isinstance(spec, PhaseSet) else load_spec(spec) for spec in specs]


class Remembered(Generic[K, V]):
    """The last ``size`` keys put, with their values: a bounded, thread-safe LRU mapping."""

    __slots__ = ("_items", "_lock", "_size")

    def __init__(self, size: int = REMEMBERED) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        """Remember ``key`` as the newest; the oldest is forgotten past ``size``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self._size:
                self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._items.pop(key, None)


class SeenEvents:
    """The ids of the last events handled, so that an event the relay delivers again is noticed.

    An id is added once its event was handled: one whose handling failed is handled again
    when the relay retries it.
    """

    __slots__ = ("_ids",)

    def __init__(self, size: int = REMEMBERED) -> None:
        self._ids: Remembered[str, bool] = Remembered(size)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids.put(event_id, True)


@dataclass(frozen=True, slots=True)
class FinishedPhase:
    """A phase that entered a terminal status, with what the store keeps of it."""

    job_id: str
    spec: str
    phase: str
    #: The terminal status it entered.
    status: str
    #: Whether that status has the ``success`` flag.
    success: bool
    trigger: str
    #: When it first entered an ``active`` status; None when it never did.
    started_at: datetime | None
    #: When it entered ``status``: the event's ``at``, which the store keeps as ``completed_at``.
    completed_at: datetime
    error: str | None
    items_processed: int
    items_total: int | None
    metadata: Mapping[str, Any]

    @property
    def outcome(self) -> str:
        """``success`` or ``failure``, from the terminal status's ``success`` flag."""
        return "success" if self.success else "failure"


class JobLookup:
    """The phase set and stored record of the job an event is about, from one store.

    Phase sets come from ``specs`` (``PhaseSet`` objects, bundled names or paths) and else
    from the store, which keeps every phase set it has seen (``SpecArchive``). The phase set
    of each of the last jobs seen is remembered, so an event that finishes nothing costs no
    store read. Safe to use from several threads.
    """

    __slots__ = ("_by_fingerprint", "_by_name", "_jobs", "_lock", "_owns_store", "store")

    def __init__(
        self,
        store: Store,
        specs: Iterable[PhaseSet | str] = (),
        *,
        owns_store: bool = False,
        size: int = REMEMBERED,
    ) -> None:
        self.store = store
        self._owns_store = owns_store
        self._lock = threading.Lock()
        self._jobs: Remembered[str, str] = Remembered(size)  # job id -> phase set name
        self._by_name: dict[str, PhaseSet] = {}
        self._by_fingerprint: dict[str, PhaseSet] = {}
        for spec in _phase_sets(specs):
            self._by_name[spec.name] = spec
            self._by_fingerprint[spec.fingerprint] = spec

    def remember(self, job_id: str, spec: str) -> None:
        """Remember that ``job_id`` is a job of the phase set ``spec`` (a ``JobCreated`` says)."""
        self._jobs.put(job_id, spec)

    def forget(self, job_id: str) -> None:
        """Forget ``job_id`` (it was deleted)."""
        self._jobs.pop(job_id)

    def record(self, job_id: str) -> JobRecord | None:
        """The job as the store has it now; None when it is gone."""
        try:
            return self.store.load(job_id)
        except PhaseKitError:
            raise
        except Exception as exc:
            raise PersistenceError(f"job {job_id!r}: store failed to load: {exc}") from exc

    def spec_name(self, job_id: str) -> str | None:
        """The name of ``job_id``'s phase set: remembered, else stored; None when it is gone."""
        name = self._jobs.get(job_id)
        if name is None:
            record = self.record(job_id)
            if record is None:
                return None
            name = record.spec_name
            self._jobs.put(job_id, name)
        return name

    def phase_set(self, name: str, job_id: str) -> PhaseSet | None:
        """The phase set ``name`` of the job ``job_id``; None when the job is gone.

        A name seen before is answered from memory; otherwise the job's record says which
        version (fingerprint) of the phase set it has, and the store gives that version.
        """
        with self._lock:
            spec = self._by_name.get(name)
        if spec is not None:
            return spec
        record = self.record(job_id)
        return None if record is None else self.phase_set_of(record)

    def phase_set_of(self, record: JobRecord) -> PhaseSet:
        """The very version of the phase set ``record`` was made with."""
        fingerprint = record.spec_fingerprint
        with self._lock:
            spec = self._by_fingerprint.get(fingerprint)
        if spec is not None:
            return spec
        definition = (
            self.store.recall_spec(fingerprint) if isinstance(self.store, SpecArchive) else None
        )
        if definition is None:
            raise PhaseKitError(
                f"job {record.job_id!r} has phase set {record.spec_name!r} (fingerprint "
                f"{fingerprint}), which the store does not keep: pass it to the plugin (specs=)"
            )
        spec = spec_from_dict(definition, filename=f"<stored phase set {fingerprint}>")
        if spec.fingerprint != fingerprint:  # the tracker refuses it too: changed by hand
            raise PersistenceError(
                f"the store keeps phase set {spec.name!r} under fingerprint {fingerprint}, but "
                f"that definition's fingerprint is {spec.fingerprint}: it was changed outside "
                "phasekit"
            )
        with self._lock:
            self._by_fingerprint[fingerprint] = spec
            self._by_name.setdefault(spec.name, spec)
        return spec

    def finished_phase(self, event: PhaseChanged) -> FinishedPhase | None:
        """The phase ``event`` moved into a terminal status, as stored; None for another change.

        A change into a status the job's phase set (as remembered) declares non-terminal is
        answered without reading the store. None too when the job is gone (deleted before a
        relay delivered the event): its phases' timestamps went with it.
        """
        name = self._jobs.get(event.job_id)
        with self._lock:
            remembered = None if name is None else self._by_name.get(name)
        if (
            remembered is not None
            and event.dest in remembered.statuses
            and not remembered.status_def(event.dest).terminal
        ):
            return None
        record = self.record(event.job_id)
        if record is None:
            log.info(
                "phasekit: job %r is gone: its phase %r is not observed", event.job_id, event.phase
            )
            return None
        self._jobs.put(event.job_id, record.spec_name)
        spec = self.phase_set_of(record)  # the job's own version of its phase set decides
        phase = next((p for p in record.phases if p.phase_name == event.phase), None)
        if phase is None or not _is_terminal(spec, event.dest):
            return None
        return FinishedPhase(
            job_id=event.job_id,
            spec=record.spec_name,
            phase=event.phase,
            status=event.dest,
            success=spec.status_def(event.dest).success,
            trigger=event.trigger,
            started_at=phase.started_at,
            completed_at=event.at,
            error=event.error,
            items_processed=phase.items_processed,
            items_total=phase.items_total,
            metadata=record.metadata,
        )

    def close(self) -> None:
        """Close the store if the plugin opened it (from a URL)."""
        if self._owns_store:
            self.store.close()


def _is_terminal(spec: PhaseSet, status: str) -> bool:
    """Whether ``status`` is a terminal status of ``spec`` (one it lacks is not)."""
    return status in spec.statuses and spec.status_def(status).terminal
