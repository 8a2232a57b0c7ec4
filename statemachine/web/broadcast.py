"""One reader of a store's event log per app, fanning every event out to each stream."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Final, final

from ..store import EventLog, LoggedEvent

__all__ = ["EventBroadcaster", "Subscription"]

log = logging.getLogger("phasekit.web")

#: A batch of events for one subscriber, or None: the stream must end (closed, or too slow).
Batch = list[LoggedEvent] | None


@final
class Subscription:
    """One stream's queue of batches, filled from the reader thread on the stream's loop."""

    __slots__ = ("_limit", "_loop", "overflowed", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()
        self.overflowed = False
        self._loop = loop
        self._limit = limit

    def deliver(self, batch: Batch) -> bool:
        """Hand ``batch`` to the stream's loop (from any thread); False if the loop is gone."""
        try:
            self._loop.call_soon_threadsafe(self._put, batch)
        except RuntimeError:  # the loop was closed: the stream is gone
            return False
        return True

    def _put(self, batch: Batch) -> None:
        if self.overflowed:
            return
        if batch is not None and self.queue.qsize() >= self._limit:
            # A client this far behind reconnects with Last-Event-ID and reads the store.
            self.overflowed = True
            batch = None
        self.queue.put_nowait(batch)


@final
class EventBroadcaster:
    """Follows ``log`` in one thread while anyone listens, and gives each event to everyone.

    The thread starts with the first subscriber (at the log's last position) and ends when
    the last one leaves. Recent events are kept (``buffer``), so a stream that resumes from
    a position among them reads nothing from the store.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_floor",
        "_lock",
        "_position",
        "_running",
        "_stop",
        "_subscribers",
        "batch",
        "catchup_reads",
        "followers_started",
        "log",
        "poll",
        "queue_limit",
        "reads",
        "wait",
    )

    def __init__(
        self,
        log: EventLog,
        *,
        buffer: int = 1000,
        batch: int = 500,
        wait: float = 1.0,
        poll: float = 0.25,
        queue_limit: int = 1000,
    ) -> None:
        self.log: Final = log
        self.batch = batch
        self.wait = wait
        self.poll = poll
        self.queue_limit = queue_limit
        #: ``read_events`` calls of the follower thread, and of streams catching up.
        self.reads = 0
        self.catchup_reads = 0
        #: How many follower threads were started (one at a time, at most).
        self.followers_started = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._subscribers: set[Subscription] = set()
        self._buffer: deque[LoggedEvent] = deque(maxlen=buffer)
        # Every event above ``_floor`` up to ``_position`` is in the buffer (or was pushed out).
        self._floor = 0
        self._position = 0
        self._running = False
        self._closed = False

    @property
    def subscribers(self) -> int:
        """How many streams listen now."""
        with self._lock:
            return len(self._subscribers)

    def subscribe(
        self, loop: asyncio.AbstractEventLoop, after: int | None
    ) -> tuple[Subscription, int, list[LoggedEvent] | None]:
        """A new subscription, the position it starts after, and the buffered events above
        ``after`` (None when the buffer does not reach back that far). Blocking: it may
        read the log's last position."""
        sub = Subscription(loop, self.queue_limit)
        with self._lock:
            if self._closed:
                raise RuntimeError("the dashboard is shut down")
            if not self._running:
                self._position = self._floor = self.log.last_position()
                self._buffer.clear()
                self._running = True
                self._stop.clear()
                self.followers_started += 1
                threading.Thread(
                    target=self._follow, name="phasekit-web-events", daemon=True
                ).start()
            self._subscribers.add(sub)
            position = self._position
            backlog: list[LoggedEvent] | None = []
            if after is not None and after < position:
                # Every event above the floor is in the buffer; below it, the store has them.
                if after >= self._floor:
                    backlog = [e for e in self._buffer if e.position > after]
                else:
                    backlog = None
        return sub, position, backlog

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub``; the follower stops after the last one leaves."""
        with self._lock:
            self._subscribers.discard(sub)

    def read_between(self, after: int, upto: int) -> list[LoggedEvent]:
        """The events above ``after`` up to ``upto``, read from the log (a stream catching up)."""
        found: list[LoggedEvent] = []
        while after < upto:
            batch = self.log.read_events(after, limit=self.batch)
            with self._lock:
                self.catchup_reads += 1
            if not batch:
                break
            found.extend(e for e in batch if e.position <= upto)
            after = batch[-1].position
        return found

    def close(self) -> None:
        """End every stream and the follower thread."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        self._stop.set()
        for sub in subscribers:
            sub.deliver(None)

    def _follow(self) -> None:
        wait: Callable[[int, float], bool] | None = getattr(self.log, "wait_for_events", None)
        while True:
            with self._lock:
                if not self._subscribers or self._closed:
                    self._running = False
                    return
                position = self._position
            try:
                batch = self.log.read_events(position, limit=self.batch)
            except Exception:  # the database is away for a while: try again, say so once a turn
                if self._closed:
                    return  # the store was closed with the app
                log.warning("the dashboard could not read the event log", exc_info=True)
                self._stop.wait(max(self.poll, 1.0))
                continue
            self.reads += 1
            if batch:
                with self._lock:
                    self._buffer.extend(batch)
                    self._position = batch[-1].position
                    if len(self._buffer) == self._buffer.maxlen:
                        self._floor = self._buffer[0].position - 1
                    targets = list(self._subscribers)
                gone = [sub for sub in targets if not sub.deliver(batch)]
                for sub in gone:
                    self.unsubscribe(sub)
                continue
            if self._stop.is_set():
                continue
            try:
                if callable(wait):
                    wait(position, self.wait)
                else:
                    self._stop.wait(self.poll)
            except Exception:
                if self._closed:
                    return
                log.warning("the dashboard could not wait for events", exc_info=True)
                self._stop.wait(max(self.poll, 1.0))
