"""Progress reports that coalescing keeps in memory, each saved within its interval.

With ``Tracker(progress_interval=...)`` a phase's progress is saved at most once per interval
per job; reports in between are held here, the newest per phase, and saved by a background
thread once the interval since the job's last save has passed, or by ``flush()``/``close()``.
The tracker does the saving (it knows the commit protocol); this module keeps the books.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .runtime import JobState

__all__ = ["HeldReport", "ProgressHold"]

#: Jobs whose last save time is kept before those older than the interval are forgotten.
_SAVES_KEPT = 1024


@dataclass(slots=True)
class HeldReport:
    """The newest progress report of one phase, made on ``job`` (a caller's copy)."""

    job: JobState
    index: int
    items_processed: int
    items_total: int | None
    #: When the report was made (its phase's ``updated_at`` once saved).
    at: datetime


class ProgressHold:
    """Held reports by job id and phase, with the time each job is due to be saved."""

    def __init__(self, interval: float, save_due: Callable[[], None]) -> None:
        self.interval = interval
        self._save_due = save_due
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the saver waits on it for a due time
        self._held: dict[str, dict[int, HeldReport]] = {}
        self._due: dict[str, float] = {}
        self._last_save: dict[str, float] = {}
        self._saves_kept = _SAVES_KEPT
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __len__(self) -> int:
        with self._lock:
            return sum(len(reports) for reports in self._held.values())

    @property
    def jobs_remembered(self) -> int:
        """How many jobs' last save times are kept (the jobs of about one interval)."""
        with self._lock:
            return len(self._last_save)

    def hold_or_save(self, report: HeldReport) -> bool:
        """Hold ``report`` if its job was saved less than an interval ago (True), else note
        that the caller saves it now (False). A held report replaces an older one of its phase.
        """
        job_id = report.job.job_id
        now = time.monotonic()
        with self._lock:
            last = self._last_save.get(job_id)
            if last is None or now - last >= self.interval:
                self._saved(job_id, now)
                return False
            self._held.setdefault(job_id, {})[report.index] = report
            if job_id not in self._due:  # a new due time: the saver may have to wake sooner
                self._due[job_id] = last + self.interval
                self._start()
                self._wake.notify()
            return True

    def included(self, job: JobState) -> None:
        """``job`` was committed: the reports held from this copy are saved with it."""
        with self._lock:
            reports = self._held.get(job.job_id)
            if reports is None:
                return
            for index in [i for i, r in reports.items() if r.job is job]:
                del reports[index]
            if not reports:
                del self._held[job.job_id]
                self._due.pop(job.job_id, None)
            self._saved(job.job_id, time.monotonic())

    def take(self, *, due_only: bool = False) -> dict[str, dict[int, HeldReport]]:
        """Remove and return the held reports (only those whose job is due, with ``due_only``)."""
        now = time.monotonic()
        with self._lock:
            ids = [j for j, at in self._due.items() if at <= now] if due_only else list(self._held)
            taken = {job_id: self._held.pop(job_id) for job_id in ids if job_id in self._held}
            for job_id in ids:
                self._due.pop(job_id, None)
                self._saved(job_id, now)
            return taken

    def drop(self, job_id: str) -> None:
        """Forget what is held for ``job_id`` (the job was deleted)."""
        with self._lock:
            self._held.pop(job_id, None)
            self._due.pop(job_id, None)
            self._last_save.pop(job_id, None)

    def put_back(self, job_id: str, reports: dict[int, HeldReport]) -> None:
        """Hold ``reports`` again after a failed save (newer ones of the same phase win)."""
        with self._lock:
            held = self._held.setdefault(job_id, {})
            for index, report in reports.items():
                held.setdefault(index, report)
            self._due.setdefault(job_id, time.monotonic() + self.interval)
            self._wake.notify()

    def stop(self) -> None:
        """Stop the background saver (held reports stay held)."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _saved(self, job_id: str, now: float) -> None:
        saves = self._last_save
        saves[job_id] = now
        if len(saves) > self._saves_kept:
            # A save older than the interval holds no report back: forget it, so the map
            # holds the jobs of one interval, not every job ever reported on.
            for old in [j for j, at in saves.items() if now - at >= self.interval]:
                del saves[old]
            self._saves_kept = max(_SAVES_KEPT, 2 * len(saves))

    def _start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="phasekit-progress", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    now = time.monotonic()
                    wait = min(self._due.values(), default=now + 3600) - now
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
                if self._stopping:
                    return
            self._save_due()
