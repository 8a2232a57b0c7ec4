"""What the dashboard reads from a store (jobs, histories, phase sets), off the event loop."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, final
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool

from ..errors import InvalidArgument, PhaseKitError, SpecError
from ..limits import validate_job_id
from ..runtime import PhaseSet, load_spec, stored_phase_set
from ..spec import bundled_names
from ..store import HistoryEvent, JobCounter, JobRecord, SpecArchive, Store

__all__ = ["StoreReader", "job_id_from_raw_path"]

log = logging.getLogger("phasekit.web")

#: How long one count of the store's jobs per status serves the list pages (seconds).
COUNTS_TTL = 1.0


def job_id_from_raw_path(raw_path: str, prefix: str) -> tuple[str, str | None]:
    """The job id after ``prefix`` in a raw (still percent-encoded) path, and what follows it.

    Each ``/``-separated segment is decoded on its own, so ``a%2Fb/history`` is the history
    of job ``a/b`` while ``a%2Fhistory`` is job ``a/history``. A trailing literal ``history``
    segment is the only suffix; any other literal slash belongs to the id.
    """
    rest = raw_path.partition("?")[0].split(prefix, 1)[-1]
    segments = rest.split("/")
    suffix = None
    if len(segments) > 1 and segments[-1] == "history":
        suffix = segments.pop()
    return "/".join(unquote(s, errors="strict") for s in segments), suffix


@final
class StoreReader:
    """A store read from worker threads, with the phase sets of its jobs remembered.

    A phase set is found as ``phasekit jobs show`` finds it, without a config: the definition
    the store keeps under the job's fingerprint, else the bundled phase set of its name.
    A fingerprint names one definition for good, so what was found is kept.
    """

    __slots__ = ("_counted", "_counts", "_keyset", "_lock", "_phase_sets", "_spec_filter", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._phase_sets: dict[str, PhaseSet] = {}
        listing = inspect.signature(store.list).parameters
        self._spec_filter = "spec" in listing
        self._keyset = "after" in listing
        self._counts = isinstance(store, JobCounter)
        self._counted: tuple[float, dict[tuple[str, str], int]] | None = None

    async def job(self, job_id: str) -> JobRecord | None:
        """The stored job, or None (also for an id no job can have)."""
        try:
            job_id = validate_job_id(job_id)
        except PhaseKitError:
            return None
        return await run_in_threadpool(self.store.load, job_id)

    async def jobs(
        self,
        *,
        status: str | None,
        spec: str | None,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[JobRecord]:
        """Jobs, most recently updated first, of one status and phase set if asked, after the
        job ``after`` names (``(updated_at, job_id)``) if given."""
        options: dict[str, Any] = {"status": status, "limit": limit, "offset": offset}
        if after is not None:
            if not self._keyset:
                raise InvalidArgument(
                    f"store {type(self.store).__name__} cannot list jobs after a given one "
                    "(no after= on its list); page with offset"
                )
            options["after"] = after
        if spec is not None:
            if not self._spec_filter:
                raise InvalidArgument(
                    f"store {type(self.store).__name__} cannot filter jobs by phase set"
                )
            options["spec"] = spec
        return await run_in_threadpool(lambda: self.store.list(**options))

    @property
    def keyset(self) -> bool:
        """Whether the store pages by keyset (``list(after=...)``)."""
        return self._keyset

    async def counts(self) -> dict[tuple[str, str], int] | None:
        """The number of jobs of each ``(phase set, status)`` in the whole store, or None
        when the store cannot count without reading every job.

        Counting reads every job's row (an index of them), so one count serves every page
        of this process for ``COUNTS_TTL`` seconds: live pages refetch on every burst of
        events, and counting for each would make the dashboard's cost grow with the store.
        """
        if not self._counts:
            return None
        store = self.store
        assert isinstance(store, JobCounter)
        now = time.monotonic()
        with self._lock:
            cached = self._counted
        if cached is not None and now - cached[0] < COUNTS_TTL:
            return cached[1]
        counted = await run_in_threadpool(store.count_jobs)
        with self._lock:
            self._counted = (now, counted)
        return counted

    async def history(self, job_id: str) -> list[HistoryEvent]:
        """The job's history, oldest first."""
        return await run_in_threadpool(self.store.history, job_id)

    def phase_set(self, record: JobRecord) -> PhaseSet | None:
        """The job's phase set, or None when neither the store nor phasekit has it (blocking)."""
        with self._lock:
            found = self._phase_sets.get(record.spec_fingerprint)
        if found is not None:
            return found
        try:
            if isinstance(self.store, SpecArchive):
                found = stored_phase_set(self.store, record.spec_fingerprint)
            if found is None and record.spec_name in bundled_names():
                found = load_spec(record.spec_name)
        except (PhaseKitError, SpecError):
            log.warning("the phase set of job %r could not be read", record.job_id, exc_info=True)
            return None
        if found is not None:
            with self._lock:
                self._phase_sets[record.spec_fingerprint] = found
        return found

    async def phase_sets(self, records: Iterable[JobRecord]) -> dict[str, PhaseSet | None]:
        """The phase set of each fingerprint among ``records``."""
        distinct = {r.spec_fingerprint: r for r in records}
        return await run_in_threadpool(
            lambda: {fp: self.phase_set(r) for fp, r in distinct.items()}
        )
