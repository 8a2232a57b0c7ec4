"""The ``webhook`` notifier: each event POSTed once per call as a Standard Webhooks v1 message."""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar, Final

import httpx

from statemachine import (
    DeliveryError,
    EndpointGone,
    Event,
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    PermanentDeliveryError,
    PhaseChanged,
    ProgressUpdated,
    __version__,
    hookimpl,
)

from .webhook_attempt import (
    MAX_ANSWER_BYTES,
    Answer,
    RedactingFilter,
    Watchdog,
    discard_body,
    parse_retry_after,
    resolved_blocked_address,
)
from .webhook_options import (
    EVENT_TYPES,
    blocked_address,
    check_events,
    check_flag,
    check_headers,
    check_host,
    check_number,
    check_secrets,
    check_url,
    display_url,
    host_address,
    split_credentials,
)
from .webhook_signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    message_body,
    sign,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "EVENT_TYPES",
    "ID_HEADER",
    "MAX_ANSWER_BYTES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookNotifier",
    "register_notifiers",
    "sign",
]

log = logging.getLogger("phasekit.webhook")
_HTTPX_LOG = logging.getLogger("httpx")  # where httpx logs each request, URL included, at INFO

#: Seconds one attempt may take in all; Standard Webhooks recommends 15 to 30.
DEFAULT_TIMEOUT: Final = 15.0

# Once close() has cut the attempt in flight, that attempt ends within milliseconds.
_CLOSE_SLACK = 0.5

# A webhook-id is sent as a header value: visible ASCII, no spaces (event ids are hex).
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,256}")


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    """The ``webhook`` notifier, for the ``notifiers:`` section of a tracker config."""
    return {"webhook": WebhookNotifier}


class WebhookNotifier:
    """POSTs each event it is given to ``url``, signed, in one attempt; raises if it failed."""

    # Retries, backoff and dead letters are the relay's: it calls a hook per event of the
    # store's event log and, when the hook raises, tries again later (DeliveryError, with
    # the receiver's Retry-After) or dead-letters the event (PermanentDeliveryError, and
    # EndpointGone, which also disables this notifier). So a hook sends once and says how it
    # went. Given to Tracker(plugins=...) instead, the hooks run in the committing thread
    # after the commit, and a failure is only logged: at most once.

    #: The relay can deliver this notifier's events from a store's event log.
    relayable: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        secret: str | Sequence[str] | None = None,
        *,
        unsigned: bool = False,
        events: str | Iterable[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        allow_link_local: bool = False,
    ) -> None:
        # Secrets in the URL. Its user and password are sent as a Basic Authorization header
        # (which is what HTTP does with them anyway) and kept out of the URL httpx handles, so
        # no httpx log line or exception message can hold them. The query string has to stay
        # in the URL, and httpx logs every request's URL at INFO on the "httpx" logger: a
        # filter on that logger, added here and removed when the client is closed, rewrites
        # exactly this notifier's URL in those records to its redacted form. A logger's
        # filters run before any handler sees a record, whatever handlers the application has.
        self._target, auth = split_credentials(check_url(url))
        self.allow_link_local = check_flag("allow_link_local", allow_link_local)
        check_host(self._target, allow_link_local=self.allow_link_local)
        self._keys = check_secrets(secret, unsigned=check_flag("unsigned", unsigned))
        self.events = check_events(events)
        self.timeout = check_number("timeout", timeout, minimum=0, inclusive=False)
        sent_headers = httpx.Headers({"User-Agent": f"phasekit-webhook/{__version__}"})
        sent_headers.update(check_headers(headers))
        sent_headers["Content-Type"] = "application/json"
        self._client = httpx.Client(
            auth=auth,
            timeout=self.timeout,  # per operation; Watchdog enforces it per attempt
            # One attempt at a time (self._lock): one pooled connection, which is the
            # connection Watchdog cuts.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers=sent_headers,
            follow_redirects=False,  # a redirect would re-send the signed body elsewhere
        )
        log_filter = RedactingFilter(self._target, self.url)
        _HTTPX_LOG.addFilter(log_filter)
        # Taken off by close(), or when a notifier that was never closed is collected.
        self._remove_log_filter = weakref.finalize(self, _HTTPX_LOG.removeFilter, log_filter)
        self._watchdog = Watchdog(
            f"phasekit-webhook-deadline {self.url}",
            blocked=None if self.allow_link_local else blocked_address,
        )
        self._lock = threading.Lock()  # held for the whole of an attempt
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        """The endpoint, without credentials or query string."""
        return display_url(self._target)

    @property
    def signed(self) -> bool:
        """Whether deliveries carry a ``webhook-signature`` (False only with ``unsigned``)."""
        return bool(self._keys)

    # -- hooks -------------------------------------------------------------------------------

    @hookimpl
    def job_created(self, event: JobCreated) -> None:
        self.deliver(event)

    @hookimpl
    def phase_changed(self, event: PhaseChanged) -> None:
        self.deliver(event)

    @hookimpl
    def progress_updated(self, event: ProgressUpdated) -> None:
        self.deliver(event)

    @hookimpl
    def job_status_changed(self, event: JobStatusChanged) -> None:
        self.deliver(event)

    @hookimpl
    def job_deleted(self, event: JobDeleted) -> None:
        self.deliver(event)

    # -- delivery ----------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        """POST ``event`` once; return once the endpoint answered 2xx, else raise.

        Raises ``DeliveryError`` (try again later, after ``retry_after`` if the endpoint
        gave one), ``PermanentDeliveryError`` (sending it again will not help) or
        ``EndpointGone`` (HTTP 410). An event of a type not in ``events`` is skipped.
        """
        if self.events is not None and event.type not in self.events:
            return
        where = f"webhook {self.url}: {event.type} {event.event_id}"
        if not _MESSAGE_ID.fullmatch(event.event_id):
            raise PermanentDeliveryError(f"{where}: the event id is not a valid webhook-id")
        body = message_body(event.type, event.model_dump(mode="json"))
        with self._lock:
            if self._closed.is_set():
                raise DeliveryError(f"{where}: the notifier is closed; not sent")
            answer = self._attempt(event.event_id, body)
        self._settle(where, answer)

    def _attempt(self, message_id: str, body: bytes) -> Answer:
        """One POST of ``body``, all of it (connect, send, answer) within ``timeout`` seconds."""
        # The timestamp is the attempt's: a receiver refuses a capture replayed much later.
        timestamp = int(time.time())
        headers = {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp)}
        if self._keys:
            headers[SIGNATURE_HEADER] = sign(self._keys, message_id, timestamp, body)
        with self._watchdog.deadline(self.timeout):
            refused = self._resolves_to_blocked_address()
            if refused is not None:
                return Answer(None, error=f"{self._target.host} resolves to it", blocked=refused)
            try:
                with self._client.stream(
                    "POST",
                    self._target,
                    content=body,
                    headers=headers,
                    extensions={"trace": self._watchdog.trace},
                ) as response:
                    discard_body(response)
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    return Answer(response.status_code, retry_after)
            except httpx.TransportError as exc:  # refused, reset, timed out, cut
                if self._watchdog.refused is not None:
                    return Answer(None, error="connected to it", blocked=self._watchdog.refused)
                return Answer(None, error=self._failure(exc))

    def _resolves_to_blocked_address(self) -> str | None:
        """A link-local address the URL's host name resolves to now, unless allowed."""
        # Literal addresses were checked when the notifier was built; the address a
        # connection reaches is checked again as it connects (Watchdog), so this check
        # matters most behind a proxy, which resolves the name itself.
        host = self._target.host
        if self.allow_link_local or host_address(host) is not None:
            return None
        port = self._target.port or (443 if self._target.scheme == "https" else 80)
        return resolved_blocked_address(host, port, blocked_address)

    def _failure(self, exc: httpx.TransportError) -> str:
        """Why an attempt got no answer: for the error, with nothing of the URL but its host."""
        if self._watchdog.stopped:
            return "cut short by close()"
        if self._watchdog.expired:
            return f"no answer within the {self.timeout:g}s deadline"
        text = str(exc)
        for secret in {str(self._target), self._target.query.decode("ascii", "replace")} - {""}:
            text = text.replace(secret, "…")
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def _settle(self, where: str, answer: Answer) -> None:
        """Return for a 2xx answer; otherwise raise the error that tells the relay what to do."""
        if answer.accepted:
            log.debug("%s: delivered (HTTP %d)", where, answer.status)
            return
        if answer.gone:
            log.warning("%s: HTTP 410 Gone; the endpoint is gone, this notifier stops", where)
            raise EndpointGone(f"{where}: HTTP 410 Gone")
        if answer.blocked is not None:
            message = (
                f"{where}: not sent to {answer.blocked} ({answer.error}), a link-local "
                "address where cloud metadata services answer; set allow_link_local: true "
                "if the endpoint is really there"
            )
            log.warning("%s", message)
            raise PermanentDeliveryError(message)
        if answer.refused:
            note = " (redirects are not followed)" if answer.status and answer.status < 400 else ""
            log.debug("%s: refused with HTTP %s%s", where, answer.status, note)
            raise PermanentDeliveryError(f"{where}: {answer.reason}{note}")
        wait = "" if answer.retry_after is None else f" (Retry-After: {answer.retry_after:g}s)"
        log.debug("%s: not delivered: %s%s", where, answer.reason, wait)
        raise DeliveryError(f"{where}: {answer.reason}{wait}", retry_after=answer.retry_after)

    def close(self) -> None:
        """Close the HTTP client, cutting an attempt in flight; later events raise."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._watchdog.stop()  # ends the attempt in flight, if any
        # Once cut, an attempt ends within milliseconds; one still opening its connection
        # ends by its own deadline, as the connect timeout is the attempt's.
        idle = self._lock.acquire(timeout=self.timeout + _CLOSE_SLACK)
        try:
            self._client.close()
            self._watchdog.forget()
            self._remove_log_filter()
        finally:
            if idle:
                self._lock.release()

    def __repr__(self) -> str:
        keys = len(self._keys)
        signing = f"signed ({keys} secret{'s' if keys > 1 else ''})" if keys else "unsigned"
        events = ",".join(sorted(self.events)) if self.events else "all"
        return f"<WebhookNotifier {self.url!r} {signing} events={events} timeout={self.timeout:g}s>"
