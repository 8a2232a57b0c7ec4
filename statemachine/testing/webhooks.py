"""``WebhookReceiver``: a real HTTP endpoint on 127.0.0.1 that verifies Standard Webhooks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, final

from statemachine import InvalidArgument

__all__ = ["MAX_BODY_BYTES", "Delivery", "Rejection", "WebhookReceiver", "new_secret"]

# Standard Webhooks v1 (https://www.standardwebhooks.com/), written here from the standard
# rather than imported from the bundled notifier: the core never imports a plugin, and a
# receiver written apart from the sender is what a test of the sender needs.
_ID: Final = "webhook-id"
_TIMESTAMP: Final = "webhook-timestamp"
_SIGNATURE: Final = "webhook-signature"
_PREFIX: Final = "whsec_"

#: The largest body the receiver reads; a longer one is answered 413 and rejected.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
#: How far a signed timestamp may be from now, as the standard's libraries allow by default.
DEFAULT_TOLERANCE: Final = timedelta(minutes=5)


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return _PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key_of(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret (the value is never shown)."""
    encoded = secret.removeprefix(_PREFIX)
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("a webhook secret is not whsec_ and base64 (not shown)") from None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A request whose signature verified: its headers (names in lower case) and body."""

    webhook_id: str
    timestamp: int
    body: bytes
    headers: dict[str, str]
    path: str
    #: The status the receiver answered with.
    status: int

    @property
    def message(self) -> dict[str, Any]:
        """The body as JSON: ``{"type", "timestamp", "data"}`` for phasekit's notifier."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def type(self) -> str:
        """The message's ``type`` (``phase_changed``, ...)."""
        return str(self.message["type"])

    @property
    def data(self) -> dict[str, Any]:
        """The message's ``data``: the event's fields."""
        data: dict[str, Any] = self.message["data"]
        return data


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request the receiver refused (401, or 413 for a body too long), and why."""

    reason: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    path: str = ""


@final
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that takes Standard Webhooks requests, as a receiver would.

    Every ``POST`` is verified: the ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` headers (names in any case) must be present, the timestamp within
    ``tolerance`` of now, and one ``v1,`` signature the HMAC-SHA256 of
    ``"{id}.{timestamp}.{body}"`` keyed with one of ``secrets`` (several during a rotation).
    A verified request is answered 204 (or what ``fail_next`` asked) and kept in
    ``received``; any other is answered 401 and kept in ``rejected``.
    """

    def __init__(
        self,
        secret: str | Sequence[str] | None = None,
        *,
        tolerance: timedelta | float | None = DEFAULT_TOLERANCE,
        now: Callable[[], float] = time.time,
        path: str = "/webhooks",
    ) -> None:
        listed = [secret] if isinstance(secret, str) else list(secret or [new_secret()])
        if not listed:
            raise InvalidArgument("a webhook receiver needs at least one secret")
        #: The secrets a signature may be made with; ``secret`` is the first.
        self.secrets: tuple[str, ...] = tuple(listed)
        self._keys = [_key_of(s) for s in self.secrets]
        if isinstance(tolerance, timedelta):
            tolerance = tolerance.total_seconds()
        self.tolerance = tolerance
        self._now = now
        self._path = "/" + path.lstrip("/")
        self._lock = threading.Condition()
        self._received: list[Delivery] = []
        self._attempts: list[Delivery] = []
        self._rejected: list[Rejection] = []
        self._failures: list[tuple[int, float | None]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- running -------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        """Listen on a free port of 127.0.0.1, in a thread of this process."""
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a test's output is not the place for an access log

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how soon stop() returns
            name="phasekit-webhook-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (requests in progress are let finish)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what a test reads ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where to send: ``http://127.0.0.1:PORT/webhooks``."""
        if self._server is None:
            raise RuntimeError("the webhook receiver is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self._path}"

    @property
    def secret(self) -> str:
        """The (first) secret senders sign with."""
        return self.secrets[0]

    @property
    def received(self) -> list[Delivery]:
        """Verified requests answered 2xx, in the order they arrived."""
        with self._lock:
            return list(self._received)

    @property
    def attempts(self) -> list[Delivery]:
        """Every verified request, the ones ``fail_next`` answered with an error too."""
        with self._lock:
            return list(self._attempts)

    @property
    def rejected(self) -> list[Rejection]:
        """Requests that failed verification, with the reason."""
        with self._lock:
            return list(self._rejected)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """Wait until ``count`` deliveries were received; all of them so far.

        Raises ``AssertionError`` after ``timeout`` seconds, saying what did arrive.
        """
        __tracebackhide__ = True
        with self._lock:
            if self._lock.wait_for(lambda: len(self._received) >= count, timeout):
                return list(self._received)
            got, rejected = list(self._received), list(self._rejected)
        seen = ", ".join(d.type for d in got) or "none"
        refused = "".join(f"\n  rejected: {r.reason}" for r in rejected)
        raise AssertionError(
            f"the webhook receiver got {len(got)} of {count} deliveries in {timeout:g}s "
            f"(types: {seen}); {len(rejected)} rejected{refused}"
        )

    def fail_next(
        self, count: int = 1, status: int = 503, retry_after: float | None = None
    ) -> None:
        """Answer the next ``count`` verified requests with ``status`` (and ``Retry-After``)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def clear(self) -> None:
        """Forget what was received and rejected."""
        with self._lock:
            self._received.clear()
            self._attempts.clear()
            self._rejected.clear()

    # -- a request -----------------------------------------------------------------------

    def verify(self, headers: dict[str, str], body: bytes) -> str | None:
        """Why the request fails verification, or None when it verifies.

        ``headers`` are the request's, names in lower case.
        """
        for name in (_ID, _TIMESTAMP, _SIGNATURE):
            if not headers.get(name):
                return f"no {name} header"
        msg_id, stamp = headers[_ID], headers[_TIMESTAMP]
        if not stamp.isascii() or not stamp.isdigit():
            return f"{_TIMESTAMP} {stamp[:40]!r} is not integer Unix seconds"
        if self.tolerance is not None:
            off = int(stamp) - self._now()
            if abs(off) > self.tolerance:
                when = "ahead of" if off > 0 else "behind"
                return (
                    f"{_TIMESTAMP} is {abs(off):.0f}s {when} now "
                    f"(tolerance {self.tolerance:g}s): a replay, or a clock off"
                )
        signed = f"{msg_id}.{stamp}.".encode() + body
        wanted = [
            base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()) for key in self._keys
        ]
        given = [
            part.removeprefix("v1,").encode()
            for part in headers[_SIGNATURE].split()
            if part.startswith("v1,")
        ]
        if not given:
            return f"{_SIGNATURE} holds no v1 signature"
        if any(hmac.compare_digest(g, w) for g in given for w in wanted):
            return None
        return f"no {_SIGNATURE} matches a secret (wrong secret, or body or headers changed)"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        """Answer one ``POST`` (the server's handler calls it)."""
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        path = request.path
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            too_long = f"a body of {headers.get('content-length')!r} bytes"
            self._refuse(request, 413, too_long, headers=headers, body=b"", path=path)
            return
        body = request.rfile.read(length)
        reason: str | None = f"POST to {path}, not {self._path}"
        if path.split("?", 1)[0] == self._path:
            reason = self.verify(headers, body)
        if reason is not None:
            self._refuse(request, 401, reason, headers=headers, body=body, path=path)
            return
        with self._lock:
            status, retry_after = self._failures.pop(0) if self._failures else (204, None)
            delivery = Delivery(headers[_ID], int(headers[_TIMESTAMP]), body, headers, path, status)
            self._attempts.append(delivery)
            if 200 <= status < 300:
                self._received.append(delivery)
                self._lock.notify_all()
        request.send_response(status)
        if retry_after is not None:
            request.send_header("Retry-After", f"{retry_after:g}")
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _refuse(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        reason: str,
        *,
        headers: dict[str, str],
        body: bytes,
        path: str,
    ) -> None:
        with self._lock:
            self._rejected.append(Rejection(reason, headers, body, path))
            self._lock.notify_all()
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.send_header("Connection", "close")
        request.end_headers()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<WebhookReceiver {where}: {len(self._received)} received>"
