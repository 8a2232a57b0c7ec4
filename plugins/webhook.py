"""A notifier that POSTs signed phasekit events to an HTTP endpoint from a background thread."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from statemachine import (
    Event,
    JobCreated,
    JobStatusChanged,
    PhaseChanged,
    ProgressUpdated,
    __version__,
    hookimpl,
)

from .webhook_attempt import MAX_ANSWER_BYTES, Answer, RedactingFilter, Watchdog, discard_body
from .webhook_options import (
    EVENT_TYPES,
    check_events,
    check_headers,
    check_number,
    check_secret,
    check_url,
    display_url,
    split_credentials,
)
from .webhook_signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    sign,
    verify_signature,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "EVENT_TYPES",
    "MAX_ANSWER_BYTES",
    "SIGNATURE_HEADER",
    "WebhookNotifier",
    "register_notifiers",
    "sign",
    "verify_signature",
]

log = logging.getLogger("phasekit.webhook")
_HTTPX_LOG = logging.getLogger("httpx")  # where httpx logs each request, URL included, at INFO

Outcome = Literal["delivered", "failed", "abandoned"]

# Under a flood of drops, one warning per interval (with the count) rather than one per event.
_DROP_WARNING_INTERVAL = 10.0

# Once close() has cut the attempt in flight, the worker stops within milliseconds.
_STOP_SLACK = 0.5


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    """The ``webhook`` notifier, for the ``notifiers:`` section of a tracker config."""
    return {"webhook": WebhookNotifier}


def _timestamp() -> str:
    """The current UTC time, ISO 8601 with microseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _retry_after(response: httpx.Response) -> float | None:
    """The delay a 429/503 answer asks for, when given in seconds."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


@dataclass(slots=True)
class _Delivery:
    """One event on its way to the endpoint, with the id it keeps across retries."""

    event: Event
    delivery_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    payload: dict[str, Any] | None = None


class WebhookNotifier:
    """POSTs each committed event, signed, to ``url`` from one background worker thread."""

    # Hooks only enqueue, so a slow or dead endpoint never delays a transition; the bounded
    # queue drops its oldest delivery rather than grow without limit or block the caller.

    def __init__(
        self,
        url: str,
        secret: str | bytes | None = None,
        *,
        events: str | Iterable[str] | None = None,
        timeout: float = 5.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        queue_size: int = 10_000,
        close_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Secrets in the URL. Its user and password are sent as a Basic Authorization header
        # (which is what HTTP does with them anyway) and kept out of the URL httpx handles, so
        # no httpx log line or exception message can hold them. The query string has to stay
        # in the URL, and httpx logs every request's URL at INFO on the "httpx" logger: a
        # filter on that logger, added here and removed when the client is closed, rewrites
        # exactly this notifier's URL in those records to its redacted form. A logger's
        # filters run before any handler sees a record, whatever handlers the application has.
        self._target, auth = split_credentials(check_url(url))
        self._key = check_secret(secret)
        self.events = check_events(events)
        self.timeout = check_number("timeout", timeout, minimum=0, inclusive=False)
        self.max_retries = int(check_number("max_retries", max_retries, minimum=0, integer=True))
        self.backoff = check_number("backoff", backoff, minimum=0)
        self.max_backoff = check_number("max_backoff", max_backoff, minimum=0)
        self.queue_size = int(check_number("queue_size", queue_size, minimum=1, integer=True))
        self.close_timeout = check_number("close_timeout", close_timeout, minimum=0)
        self._client = httpx.Client(
            auth=auth,
            timeout=self.timeout,  # per operation; Watchdog enforces it per attempt
            # One worker sends one request at a time: one pooled connection, which is the
            # connection Watchdog cuts.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers={
                **check_headers(headers),
                "Content-Type": "application/json",
                "User-Agent": f"phasekit-webhook/{__version__}",
            },
            follow_redirects=False,  # a redirect would re-send the signed body elsewhere
        )
        log_filter = RedactingFilter(self._target, self.url)
        _HTTPX_LOG.addFilter(log_filter)
        # Taken off by close(), or when a notifier that was never closed is collected.
        self._remove_log_filter = weakref.finalize(self, _HTTPX_LOG.removeFilter, log_filter)
        self._watchdog = Watchdog(f"phasekit-webhook-deadline {self.url}")
        self._queue: deque[_Delivery] = deque()
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight: _Delivery | None = None
        self._closing = False
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0, "retried": 0, "abandoned": 0}
        self._drops_unreported = 0
        self._last_drop_warning = -math.inf

    # -- counters ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint, without credentials or query string."""
        return display_url(self._target)

    @property
    def delivered(self) -> int:
        """Deliveries the endpoint accepted with a 2xx answer."""
        return self._counts["delivered"]

    @property
    def failed(self) -> int:
        """Deliveries given up on: a 4xx other than 429, or retries exhausted."""
        return self._counts["failed"]

    @property
    def dropped(self) -> int:
        """Deliveries never sent: the oldest pending one when the queue was full, or after close."""
        return self._counts["dropped"]

    @property
    def retried(self) -> int:
        """Attempts beyond the first of each delivery."""
        return self._counts["retried"]

    @property
    def abandoned(self) -> int:
        """Deliveries still pending when ``close()`` ran out of time."""
        return self._counts["abandoned"]

    @property
    def pending(self) -> int:
        """Deliveries queued or in flight."""
        with self._cond:
            return len(self._queue) + (self._in_flight is not None)

    def stats(self) -> dict[str, int]:
        """Every counter, and what is pending, in one consistent snapshot."""
        with self._cond:
            return {**self._counts, "pending": len(self._queue) + (self._in_flight is not None)}

    # -- hooks -------------------------------------------------------------------------------

    @hookimpl
    def job_created(self, event: JobCreated) -> None:
        self.notify(event)

    @hookimpl
    def phase_changed(self, event: PhaseChanged) -> None:
        self.notify(event)

    @hookimpl
    def progress_updated(self, event: ProgressUpdated) -> None:
        self.notify(event)

    @hookimpl
    def job_status_changed(self, event: JobStatusChanged) -> None:
        self.notify(event)

    # -- queue -------------------------------------------------------------------------------

    def notify(self, event: Event) -> None:
        """Queue ``event`` for delivery; never blocks and never raises for a full queue."""
        if self.events is not None and event.type not in self.events:
            return
        delivery = _Delivery(event)
        dropped: _Delivery | None = None
        with self._cond:
            if self._closing:
                self._counts["dropped"] += 1
                log.debug("webhook %s: closed; dropped %s event", self.url, event.type)
                return
            if len(self._queue) >= self.queue_size:
                dropped = self._queue.popleft()
                self._counts["dropped"] += 1
                self._drops_unreported += 1
            self._queue.append(delivery)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"phasekit-webhook {self.url}", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        if dropped is not None:
            self._warn_dropped(dropped)

    def _warn_dropped(self, dropped: _Delivery) -> None:
        """Warn of a drop, at most once per interval, with the count since the last warning."""
        now = time.monotonic()
        with self._cond:
            if now - self._last_drop_warning < _DROP_WARNING_INTERVAL:
                return
            self._last_drop_warning = now
            count, self._drops_unreported = self._drops_unreported, 0
        log.warning(
            "webhook %s: queue full (%d pending); dropped the oldest delivery %s "
            "(%s job=%s), %d dropped since the last warning",
            self.url,
            self.queue_size,
            dropped.delivery_id,
            dropped.event.type,
            dropped.event.job_id,
            count,
        )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending; False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and self._in_flight is None, timeout)

    def close(self) -> None:
        """Stop accepting events; send what is pending within ``close_timeout``, or abandon it."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is None:
            self._release()
            return
        thread.join(self.close_timeout)
        if thread.is_alive():
            self._abandon(thread)

    def _abandon(self, thread: threading.Thread) -> None:
        """Give up on what is pending: count it, cut the attempt in flight, stop the worker."""
        with self._cond:
            before = self._counts["abandoned"]
            queued = len(self._queue)
            self._queue.clear()
            self._counts["abandoned"] += queued
        self._abort.set()  # ends a wait between retries
        self._watchdog.stop()  # ends the attempt in flight
        # Normally the worker is gone within milliseconds; an attempt still opening its
        # connection ends by its own deadline, as the connect timeout is the attempt's.
        thread.join(self._watchdog.time_left() + _STOP_SLACK)
        with self._cond:
            if self._in_flight is not None:  # the worker is stuck (a DNS lookup): count it now
                self._in_flight = None
                self._counts["abandoned"] += 1
            abandoned = self._counts["abandoned"] - before
            self._cond.notify_all()
        log.warning(
            "webhook %s: close timed out after %gs; abandoned %d deliveries "
            "(%d queued, %d in flight), not delivered",
            self.url,
            self.close_timeout,
            abandoned,
            queued,
            abandoned - queued,
        )
        if thread.is_alive():
            log.warning(
                "webhook %s: the worker is still opening a connection; it stops without "
                "sending once that returns",
                self.url,
            )

    def _release(self) -> None:
        """Close the HTTP client, and stop rewriting httpx's log lines for it."""
        self._client.close()
        self._watchdog.forget()
        self._remove_log_filter()

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        """The worker: send deliveries in order until close() leaves nothing to send."""
        try:
            while (delivery := self._next_delivery()) is not None:
                try:
                    outcome = self._deliver(delivery)
                except Exception:  # a bug here must not kill the worker and strand the queue
                    log.exception("webhook %s: delivery %s failed", self.url, delivery.delivery_id)
                    outcome = "failed"
                self._settle(delivery, outcome)
        finally:
            self._release()

    def _next_delivery(self) -> _Delivery | None:
        """The next delivery, marked in flight; None once closing leaves nothing to send."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._queue) or self._closing)
            if not self._queue or self._abort.is_set():
                return None
            self._in_flight = self._queue.popleft()
            return self._in_flight

    def _settle(self, delivery: _Delivery, outcome: Outcome) -> None:
        """Count how ``delivery`` ended, unless close() has already counted it as abandoned."""
        with self._cond:
            if self._in_flight is delivery:
                self._in_flight = None
                self._counts[outcome] += 1
            self._cond.notify_all()

    def _deliver(self, delivery: _Delivery) -> Outcome:
        """Send ``delivery``, retrying as configured, and say how it ended."""
        event = delivery.event
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                with self._cond:
                    self._counts["retried"] += 1
            answer = self._send(*self._request(delivery, attempt))
            if answer.accepted:
                log.debug(
                    "webhook %s: delivery %s (%s job=%s) accepted with HTTP %d",
                    self.url,
                    delivery.delivery_id,
                    event.type,
                    event.job_id,
                    answer.status,
                )
                return "delivered"
            if answer.refused:
                log.warning(
                    "webhook %s: delivery %s (%s job=%s) answered HTTP %d; not retried",
                    self.url,
                    delivery.delivery_id,
                    event.type,
                    event.job_id,
                    answer.status,
                )
                return "failed"
            if self._abort.is_set():
                return "abandoned"
            if attempt == attempts:
                log.warning(
                    "webhook %s: delivery %s (%s job=%s) failed after %d attempts: %s",
                    self.url,
                    delivery.delivery_id,
                    event.type,
                    event.job_id,
                    attempts,
                    answer.reason,
                )
                return "failed"
            delay = self._delay(attempt, answer.retry_after)
            log.info(
                "webhook %s: delivery %s attempt %d/%d: %s; retrying in %.2fs",
                self.url,
                delivery.delivery_id,
                attempt,
                attempts,
                answer.reason,
                delay,
            )
            if self._abort.wait(delay):
                return "abandoned"
        raise AssertionError("unreachable")

    def _send(self, body: bytes, headers: dict[str, str]) -> Answer:
        """POST one attempt, all of it (connect, send, answer) within ``timeout`` seconds."""
        with self._watchdog.deadline(self.timeout):
            try:
                with self._client.stream(
                    "POST",
                    self._target,
                    content=body,
                    headers=headers,
                    extensions={"trace": self._watchdog.trace},
                ) as response:
                    discard_body(response)
                    return Answer(response.status_code, _retry_after(response))
            except httpx.TransportError as exc:  # refused, reset, timed out: worth retrying
                return Answer(None, error=self._failure(exc))

    def _failure(self, exc: httpx.TransportError) -> str:
        """Why an attempt got no answer, for the log."""
        if self._watchdog.stopped:
            return "cut short by close()"
        if self._watchdog.expired:
            return f"no answer within the {self.timeout:g}s timeout"
        return f"{type(exc).__name__}: {exc}"

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(max_backoff, backoff * 2**(attempt-1))]."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 62))
        delay = random.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def _request(self, delivery: _Delivery, attempt: int) -> tuple[bytes, dict[str, str]]:
        """The body and per-delivery headers of one attempt."""
        if delivery.payload is None:
            delivery.payload = delivery.event.model_dump(mode="json")
        # sent_at changes per attempt so receivers can refuse replays of old captures.
        envelope = {
            "delivery_id": delivery.delivery_id,
            "attempt": attempt,
            "sent_at": _timestamp(),
            "event": delivery.payload,
        }
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {EVENT_HEADER: delivery.event.type, DELIVERY_HEADER: delivery.delivery_id}
        if self._key is not None:
            headers[SIGNATURE_HEADER] = sign(self._key, body)
        return body, headers

    def __repr__(self) -> str:
        return (
            f"<WebhookNotifier {self.url!r} {'signed' if self._key else 'unsigned'} "
            f"events={','.join(sorted(self.events)) if self.events else 'all'} "
            f"{' '.join(f'{k}={v}' for k, v in self.stats().items())}>"
        )
