"""One webhook attempt's limits: its deadline, its peer, the answer read, what its logs show."""

from __future__ import annotations

import email.utils
import logging
import math
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final

import httpx

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_RETRY_AFTER",
    "Answer",
    "RedactingFilter",
    "Watchdog",
    "discard_body",
    "parse_retry_after",
    "resolved_blocked_address",
    "shut_down",
]

#: Of an answer's body, phasekit reads up to this many bytes (and discards them); it stops
#: reading a longer one after the network read that passes the limit, and drops the connection.
MAX_ANSWER_BYTES: Final = 64 * 1024

#: The longest wait a ``Retry-After`` can ask for, in seconds (one day); a longer one is cut
#: to this, so no receiver can push a retry past any date a relay can compute.
MAX_RETRY_AFTER: Final = 86_400.0

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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` value asks for: delay-seconds or an HTTP-date (RFC 9110).

    None when it is absent or unreadable; a date in the past is 0; at most ``MAX_RETRY_AFTER``.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value) if len(value) < 10 else MAX_RETRY_AFTER
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as HTTP-dates are
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def resolved_blocked_address(host: str, port: int, blocked: Callable[[str], bool]) -> str | None:
    """The first address ``host`` resolves to that ``blocked`` refuses, else None.

    A name that does not resolve here is not refused: a proxy may resolve it, and a direct
    connection fails on its own (and the connected address is checked again, see Watchdog).
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for *_, address in found:
        if blocked(str(address[0])):
            return str(address[0])
    return None


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
    blocked: str | None = None  # the link-local address the attempt was stopped at

    @property
    def accepted(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the endpoint asks never to be sent anything again."""
        return self.status == 410

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
    """Cuts the connection of an attempt that outlives its deadline, that close() gives up,
    or that reached an address ``blocked`` refuses."""

    # httpx's timeouts bound each socket operation, not an attempt: an endpoint sending a
    # byte every second never trips a 5 s read timeout. So each attempt arms a timer that, at
    # the deadline, shuts the connection's socket down, which wakes the blocked read or write
    # at once. The socket comes from httpcore's "trace" extension (the stream each new
    # connection returns); the pool holds one connection, so the last socket seen is the one
    # an attempt uses, reused or new. Opening a connection cannot be cut this way; it is
    # bounded by the connect timeout instead, and a socket connected after the deadline (or
    # after stop()) is shut down as soon as it is seen.
    #
    # The same trace shows the address each new connection reached, after any name lookup:
    # one that ``blocked`` refuses is cut before a byte of the request (or a TLS handshake) is
    # written to it, so a name that resolves to a metadata address is caught even when its
    # answer changed since the check before the attempt (DNS rebinding).

    # One watcher thread per Watchdog waits for the running attempt's deadline (a Timer per
    # attempt would start and join a thread for every delivery); it ends after a minute with
    # no attempt, and the next attempt starts it again.

    def __init__(self, name: str, blocked: Callable[[str], bool] | None = None) -> None:
        self._name = name
        self._blocked = blocked
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # an attempt began or ended
        self._attempt = 0  # the number of the running (or last) attempt
        self._watcher: threading.Thread | None = None
        self._done = False  # forget() was called: the watcher ends
        # Until when the watcher sleeps (monotonic; inf while it is awake or not started).
        self._sleeps_until = math.inf
        self._sock: socket.socket | None = None
        self._ends_at: float | None = None  # the running attempt's deadline (monotonic)
        self._expired = False  # the running (or last) attempt hit its deadline
        self._stopped = False  # close() gave up: cut every attempt from now on
        self._refused: str | None = None  # the blocked address the running attempt reached

    @property
    def expired(self) -> bool:
        """Whether the running or last attempt was cut at its deadline."""
        return self._expired

    @property
    def stopped(self) -> bool:
        """Whether close() has given up on the attempts."""
        return self._stopped

    @property
    def refused(self) -> str | None:
        """The blocked address the running or last attempt connected to, if it did."""
        return self._refused

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's ``trace`` extension: note each new connection's socket; check its peer."""
        if not event.endswith(_CONNECTED_EVENTS):
            return
        sock = info["return_value"].get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            return
        peer = _peer_address(sock) if self._blocked is not None else None
        with self._lock:
            self._sock = sock
            if peer is not None and self._blocked is not None and self._blocked(peer):
                self._refused = peer
            if self._expired or self._stopped or self._refused is not None:
                self._cut()

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Run one attempt, whose connection is cut once ``seconds`` have passed."""
        with self._lock:
            self._attempt += 1
            self._ends_at = time.monotonic() + seconds
            self._expired = False
            self._refused = None
            if self._stopped:  # close() gave up just before this attempt: no reused connection
                self._cut()
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(
                    target=_watch, args=(weakref.ref(self),), name=self._name, daemon=True
                )
                self._watcher.start()
            elif self._ends_at < self._sleeps_until:  # the watcher would wake too late
                self._changed.notify_all()
        try:
            yield
        finally:
            with self._lock:  # the watcher finds out when it wakes: no hand-off per attempt
                self._ends_at = None

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
        """Drop the socket, once the client that owns it is closed; end the watcher thread."""
        with self._lock:
            self._sock = None
            self._done = True
            self._changed.notify_all()
            watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(1.0)

    def _watch_once(self, cut: int) -> tuple[int, bool]:
        """Wait for the running attempt's deadline (or a change); cut it once it passed.

        ``cut`` is the last attempt cut. Returns it (updated), and whether to keep watching.
        """
        with self._lock:
            if self._done:
                return cut, False
            ends_at = self._ends_at
            now = time.monotonic()
            if ends_at is None or self._attempt == cut:  # nothing to watch: wait for an attempt
                self._sleeps_until = now + _WATCHER_IDLE
                woken = self._changed.wait(_WATCHER_IDLE)
                self._sleeps_until = math.inf
                return cut, woken or self._ends_at is not None
            left = ends_at - now
            if left > 0:
                self._sleeps_until = ends_at
                self._changed.wait(left)
                self._sleeps_until = math.inf
                return cut, True
            self._expired = True
            self._cut()
            return self._attempt, True

    def _cut(self) -> None:
        """Shut the connection's socket down (the lock held)."""
        if self._sock is not None:
            shut_down(self._sock)


#: How long a Watchdog's watcher thread waits for an attempt before it ends (seconds).
_WATCHER_IDLE = 60.0


def _watch(ref: weakref.ReferenceType[Watchdog]) -> None:
    """The watcher thread: keeps no Watchdog alive between two waits."""
    cut = 0
    while True:
        watchdog = ref()
        if watchdog is None:
            return
        cut, going = watchdog._watch_once(cut)
        if not going:
            with watchdog._lock:
                if watchdog._done or watchdog._ends_at is None:
                    if watchdog._watcher is threading.current_thread():
                        watchdog._watcher = None
                    return
        del watchdog


def _peer_address(sock: socket.socket) -> str | None:
    """The IP address a TCP socket is connected to; None for other sockets."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        return str(sock.getpeername()[0])
    except OSError:  # reset already
        return None
