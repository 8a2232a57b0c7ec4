"""One webhook attempt's limits: its deadline, the answer read, the URL its logs show."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final

import httpx

__all__ = ["MAX_ANSWER_BYTES", "Answer", "RedactingFilter", "Watchdog", "discard_body", "shut_down"]

#: Of an answer's body, phasekit reads up to this many bytes (and discards them); it stops
#: reading a longer one after the network read that passes the limit, and drops the connection.
MAX_ANSWER_BYTES: Final = 64 * 1024

# httpcore trace events (``<logger>.<step>.complete``) whose return value is a new connection.
_CONNECTED_EVENTS = (
    ".connect_tcp.complete",
    ".connect_unix_socket.complete",
    ".start_tls.complete",
)


def discard_body(response: httpx.Response) -> None:
    """Read and drop the body, or its first ``MAX_ANSWER_BYTES`` or so when it is longer."""
    # A body read to its end leaves the connection reusable; closing the response before then
    # closes the connection, so the rest of a long answer is never read.
    received = 0
    with suppress(httpx.TransportError):  # cut at the deadline or reset: the status has come
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > MAX_ANSWER_BYTES:
                return


def shut_down(sock: socket.socket) -> None:
    """End both directions of ``sock``, waking a thread blocked on it; its owner closes it."""
    with suppress(OSError):  # already closed by its owner
        # The plain socket method, also for TLS: ssl.SSLSocket.shutdown would tear down its
        # TLS state under the thread that is reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@dataclass(frozen=True, slots=True)
class Answer:
    """How one attempt ended: the endpoint's HTTP status, or why there was none."""

    status: int | None
    retry_after: float | None = None
    error: str = ""

    @property
    def accepted(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """An answer that sending again would not change: 3xx, or 4xx other than 429."""
        return (
            self.status is not None
            and not self.accepted
            and self.status < 500
            and self.status != 429
        )

    @property
    def reason(self) -> str:
        """What to log about an attempt that was not accepted."""
        return self.error if self.status is None else f"HTTP {self.status}"


class RedactingFilter(logging.Filter):
    """Shows one URL, in the records of the logger it is added to, in its redacted form."""

    def __init__(self, url: httpx.URL, shown: str) -> None:
        super().__init__()
        self._url = url
        self._shown = shown

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the URL among the record's arguments; never drop a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._shown if isinstance(arg, httpx.URL) and arg == self._url else arg
                for arg in record.args
            )
        return True


class Watchdog:
    """Cuts the connection of an attempt that outlives its deadline or that close() gives up."""

    # httpx's timeouts bound each socket operation, not an attempt: an endpoint sending a
    # byte every second never trips a 5 s read timeout. So each attempt arms a timer that, at
    # the deadline, shuts the connection's socket down, which wakes the blocked read or write
    # at once. The socket comes from httpcore's "trace" extension (the stream each new
    # connection returns); the pool holds one connection, so the last socket seen is the one
    # an attempt uses, reused or new. Opening a connection cannot be cut this way; it is
    # bounded by the connect timeout instead, and a socket connected after the deadline (or
    # after stop()) is shut down as soon as it is seen.

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._ends_at: float | None = None  # the running attempt's deadline (monotonic)
        self._expired = False  # the running (or last) attempt hit its deadline
        self._stopped = False  # close() gave up: cut every attempt from now on

    @property
    def expired(self) -> bool:
        """Whether the running or last attempt was cut at its deadline."""
        return self._expired

    @property
    def stopped(self) -> bool:
        """Whether close() has given up on the attempts."""
        return self._stopped

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's ``trace`` extension: note the socket of each new connection."""
        if not event.endswith(_CONNECTED_EVENTS):
            return
        sock = info["return_value"].get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sock = sock
            if self._expired or self._stopped:
                self._cut()

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Run one attempt, whose connection is cut once ``seconds`` have passed."""
        timer = threading.Timer(seconds, self._expire)
        timer.name = self._name
        timer.daemon = True
        with self._lock:
            self._ends_at = time.monotonic() + seconds
            self._expired = False
            if self._stopped:  # close() gave up just before this attempt: no reused connection
                self._cut()
        timer.start()
        try:
            yield
        finally:
            with self._lock:
                self._ends_at = None
            timer.cancel()
            timer.join()

    def time_left(self) -> float:
        """Seconds until the running attempt's deadline; 0 when none is running."""
        with self._lock:
            return 0.0 if self._ends_at is None else max(0.0, self._ends_at - time.monotonic())

    def stop(self) -> None:
        """Cut the running attempt now, and every later one as soon as it connects."""
        with self._lock:
            self._stopped = True
            if self._ends_at is not None:
                self._cut()

    def forget(self) -> None:
        """Drop the socket, once the client that owns it is closed."""
        with self._lock:
            self._sock = None

    def _expire(self) -> None:
        """The timer's action: cut the attempt, if it is still running."""
        with self._lock:
            if self._ends_at is None:
                return  # the attempt ended just in time
            self._expired = True
            self._cut()

    def _cut(self) -> None:
        """Shut the connection's socket down (the lock held)."""
        if self._sock is not None:
            shut_down(self._sock)
