"""The Store protocol every persistence backend implements, and how a URL picks one."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidArgument, PhaseKitError
from .events import HistoryEvent
from .records import JobRecord

__all__ = ["SpecArchive", "Store", "StoreFactory", "list_order", "open_store"]


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
