"""Sweeping deadlines: firing ``on_timeout`` on phases past their deadline, once or on a timer.

A tracker's ``sweep()`` claims the due phases from its store's deadline index and fires each
one's ``on_timeout`` trigger through the commit protocol: guards, vetoes and the version
check apply as to any change, so a worker that finished the phase first wins, and the sweep
passes that phase by. ``Sweeper`` calls a sweep every so often in a background thread
(``sweep_every:`` in a tracker config, and ``phasekit sweep --every``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from .limits import parse_duration

__all__ = ["SWEEP_BATCH", "SWEEP_LEASE", "Sweeper"]

log = logging.getLogger("phasekit")

#: Due phases one claim takes; a sweep claims again until fewer come back.
SWEEP_BATCH = 100
#: How long a claimed phase stays claimed (seconds): a sweep that dies mid-way leaves its
#: claims to another sweep after that.
SWEEP_LEASE = 60.0


class Sweeper:
    """Calls ``sweep`` every ``every`` in a daemon thread until ``stop()``.

    A sweep that fails is logged and the next one runs on time: the claims of the failed
    one expire, and nothing is lost.
    """

    def __init__(
        self, sweep: Callable[[], object], every: float | str | timedelta, *, name: str = ""
    ) -> None:
        self.every = parse_duration(every, "sweep_every").total_seconds()
        self._sweep = sweep
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"phasekit-sweeper{'-' + name if name else ''}", daemon=True
        )

    def start(self) -> None:
        """Start sweeping (the first sweep runs at once)."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sweep()
            except Exception:
                log.exception(
                    "phasekit: the deadline sweep failed; the next runs in %gs", self.every
                )
            self._stop.wait(self.every)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the sweep in progress, waiting for it up to ``timeout`` seconds."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()
