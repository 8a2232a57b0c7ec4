"""A notifier that publishes each phasekit event to NATS JetStream, deduplicated by event id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import typing
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

from statemachine import (
    DeliveryError,
    Event,
    InvalidArgument,
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    PermanentDeliveryError,
    PhaseChanged,
    PhaseKitError,
    ProgressUpdated,
    hookimpl,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.api import PubAck

__all__ = ["EVENT_TYPES", "MSG_ID_HEADER", "NatsNotifier", "register_notifiers"]

log = logging.getLogger("phasekit.nats")

#: Every event type, from the ``Event`` union: what ``events=`` may choose from.
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    str(cls.model_fields["type"].default) for cls in typing.get_args(typing.get_args(Event)[0])
)

#: The header JetStream deduplicates on, within the stream's ``duplicate_window``.
MSG_ID_HEADER: Final = "Nats-Msg-Id"

_SCHEMES = ("nats", "tls", "ws", "wss")
# A subject token, and a stream name: no whitespace or control character, no wildcard, no
# dot (a token separator); a stream name no path separator either (it names files).
_TOKEN = re.compile(r"[^\x00-\x20\x7f.*>{}]+")
_STREAM_NAME = re.compile(r"[^\x00-\x20\x7f.*>/\\]+")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# JetStream API error codes (nats-server's errors.json).
_STREAM_NAME_IN_USE = 10058
# How much longer than ``timeout`` a caller waits for the event loop before giving up on it;
# the publish itself always ends by its own deadline first.
_LOOP_SLACK = 1.0

_T = TypeVar("_T")


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    """The ``nats`` notifier, for the ``notifiers:`` section of a tracker config."""
    return {"nats": NatsNotifier}


# -- options -----------------------------------------------------------------------------------


def _check_events(events: str | Iterable[str] | None) -> frozenset[str] | None:
    """The event types to send (None: all), each one a known type."""
    if events is None:
        return None
    chosen = frozenset([events] if isinstance(events, str) else events)
    valid = f"valid types: {', '.join(sorted(EVENT_TYPES))}"
    if not chosen:
        raise InvalidArgument(f"nats events is empty; leave it out to send every type ({valid})")
    unknown = sorted(map(repr, chosen - EVENT_TYPES))
    if unknown:
        raise InvalidArgument(f"nats events: unknown event type(s) {', '.join(unknown)}; {valid}")
    return chosen


def _check_url(url: object) -> tuple[list[str], str, tuple[str, ...]]:
    """The servers of ``url`` (comma-separated), how they are shown, and their secrets."""
    # Messages never echo the URL: it may hold a password or a token.
    if not isinstance(url, str) or not url.strip():
        raise InvalidArgument(f"nats url must be a non-empty string, not {type(url).__name__}")
    servers, shown, secrets = [], [], set()
    for server in (part.strip() for part in url.split(",")):
        try:
            parts = urlsplit(server)
            port = parts.port
        except ValueError:
            raise InvalidArgument("nats url is not a valid URL (it is not shown)") from None
        if parts.scheme not in _SCHEMES:
            raise InvalidArgument(
                f"nats url must start with {', '.join(s + '://' for s in _SCHEMES)}, "
                f"not {parts.scheme + '://' if parts.scheme else 'nothing'!r}"
            )
        if not parts.hostname:
            raise InvalidArgument("nats url has no host")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        shown.append(f"{parts.scheme}://{host}:{port or 4222}")
        # A token is written where a user name goes: nats://TOKEN@host.
        secret = parts.password or parts.username
        if secret:
            secrets.update({secret, unquote(secret)})
        servers.append(server)
    return servers, ",".join(shown), tuple(sorted(secrets, key=len, reverse=True))


def _check_subjects(template: object) -> dict[str, str]:
    """The subject of each event type, from a template in which only ``{type}`` is replaced."""
    if not isinstance(template, str) or not template:
        raise InvalidArgument(f"nats subject must be a non-empty string, not {template!r}")
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - {"type"})
    if unknown:
        why = (
            "; a job id may hold characters a subject cannot ('.', '*', '>', spaces), "
            "so it is in each message's body and not in its subject"
            if "job_id" in unknown
            else ""
        )
        raise InvalidArgument(
            f"nats subject {template!r}: unknown placeholder(s) "
            f"{', '.join('{' + name + '}' for name in unknown)}; only {{type}} is replaced{why}"
        )
    subjects = {kind: template.replace("{type}", kind) for kind in sorted(EVENT_TYPES)}
    for subject in subjects.values():
        if not all(_TOKEN.fullmatch(token) for token in subject.split(".")):
            raise InvalidArgument(
                f"nats subject {template!r} is not a subject to publish to: its tokens are "
                "separated by single dots, and hold no space, control character, '*', '>' "
                "or brace (but the {type} placeholder)"
            )
    return subjects


def _check_stream(stream: object) -> str | None:
    """A JetStream stream name, or None."""
    if stream is None:
        return None
    if not isinstance(stream, str) or not _STREAM_NAME.fullmatch(stream):
        raise InvalidArgument(
            f"nats stream {stream!r} is not a stream name: a non-empty string without "
            "spaces, control characters, '.', '*', '>', '/' or '\\'"
        )
    return stream


def _check_timeout(timeout: object) -> float:
    """A finite number of seconds above zero."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgument(f"nats timeout must be a number > 0, not {timeout!r}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise InvalidArgument(f"nats timeout must be a finite number > 0, not {timeout!r}")
    return float(timeout)


def _require_nats() -> None:
    """Refuse to build the notifier, naming the extra to install, when nats-py is missing."""
    try:
        import nats  # noqa: F401, PLC0415 (only this notifier needs the driver)
    except ImportError:
        raise PhaseKitError(
            "the nats notifier needs the nats-py package, which is not installed: "
            "pip install 'phasekit[nats]'"
        ) from None


# -- the event loop and the connection -------------------------------------------------------


class _LoopClosed(Exception):
    """The notifier's event loop is closed: it was closed meanwhile."""


class _Loop:
    """A private asyncio event loop in a daemon thread, which synchronous callers submit to."""

    __slots__ = ("loop", "thread")

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Run ``coro`` on the loop; ``TimeoutError`` if it has not finished in ``timeout``."""
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise _LoopClosed from None
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the coroutine's own TimeoutError
                raise
            future.cancel()
            raise TimeoutError from None

    def stop(self, timeout: float) -> None:
        """Stop the loop, wait for its thread, cancel what is left on it, and close it."""
        loop = self.loop
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is self.thread:
            return  # a finalizer running on the loop itself: the thread ends once it returns
        self.thread.join(timeout)
        if self.thread.is_alive() or loop.is_closed():
            return
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=timeout))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _stop_soon(loop: asyncio.AbstractEventLoop) -> None:
    """Stop a loop whose notifier was collected without being closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(loop.stop)


class _Link:
    """The NATS connection and its JetStream context: made on first use, and after a failure.

    Lives on the notifier's event loop: every method runs there.
    """

    __slots__ = (
        "_client",
        "_closing",
        "_js",
        "_lock",
        "_servers",
        "_stream",
        "_stream_ready",
        "_stream_subjects",
        "last_error",
    )

    def __init__(self, servers: list[str], stream: str | None, subjects: Iterable[str]) -> None:
        self._servers = servers
        self._stream = stream
        self._stream_subjects = sorted(set(subjects))
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        #: Why the last connection attempt failed (nats-py reports only "no servers").
        self.last_error: Exception | None = None

    async def jetstream(self, timeout: float) -> JetStreamContext:
        """A connected JetStream context, the stream made first if it is missing."""
        from nats.aio.client import Client  # noqa: PLC0415

        async with self._lock:
            if self._client is None or not self._client.is_connected or self._js is None:
                self.drop()
                client = Client()
                self._client = client  # before connecting, so that a cut-short connect is closed
                await client.connect(
                    servers=self._servers,
                    name="phasekit",
                    # One connection per attempt: after a failure the next delivery connects
                    # again, instead of nats-py reconnecting and buffering in the background.
                    allow_reconnect=False,
                    max_reconnect_attempts=1,  # each server is tried twice, at once
                    reconnect_time_wait=0,
                    connect_timeout=max(
                        1, math.ceil(timeout)
                    ),  # the deadline of the attempt is shorter
                    error_cb=self._connection_error,
                )
                self._js = client.jetstream(timeout=timeout)
                self._stream_ready = False
            if self._stream is not None and not self._stream_ready:
                await self._ensure_stream(self._js, self._stream, self._stream_subjects)
                self._stream_ready = True
            return self._js

    @staticmethod
    async def _ensure_stream(js: JetStreamContext, name: str, subjects: list[str]) -> None:
        """Create the stream with the notifier's subjects, unless it exists."""
        from nats.js.errors import BadRequestError, NotFoundError  # noqa: PLC0415

        try:
            await js.stream_info(name)
        except NotFoundError:
            try:
                await js.add_stream(name=name, subjects=subjects)
                log.info("nats: created JetStream stream %r for %s", name, ", ".join(subjects))
            except BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:  # not just made by another process
                    raise

    async def _connection_error(self, exc: Exception) -> None:
        """nats-py's error callback: a failed connect or a lost connection."""
        # nats-py logs these at ERROR with a traceback by default; the DeliveryError says it.
        self.last_error = exc
        log.debug("nats: connection error: %s", type(exc).__name__)

    def forget_stream(self) -> None:
        """Look the stream up (and make it if missing) again before the next publish."""
        self._stream_ready = False

    def drop(self) -> None:
        """Forget the connection and close it in the background (a failure or a reset)."""
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            task = asyncio.get_running_loop().create_task(_close_quietly(client))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close the connection and wait for closes still under way."""
        self.drop()
        if self._closing:
            await asyncio.wait(set(self._closing))


async def _close_quietly(client: Client) -> None:
    """Close a connection, giving up after a second (a server that stopped reading)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await client.close()


# -- the notifier ------------------------------------------------------------------------------


class NatsNotifier:
    """Publishes each event to JetStream with ``Nats-Msg-Id`` = its ``event_id``; raises when
    it could not.

    One JetStream publish per event, synchronously: the hook waits for the server's
    acknowledgement, at most ``timeout`` seconds for everything (connecting included). A
    failure raises ``DeliveryError`` so the relay tries again; the server drops a publish whose
    id it has seen within the stream's ``duplicate_window``, so a retry of an event that did
    get through is stored once. No stream for the subject raises ``PermanentDeliveryError``.

    nats-py is asyncio: the notifier runs its own event loop in a background thread (started
    with the first delivery, stopped by ``close()``), so it can be called from any thread.
    """

    #: Delivered from the store's event log by the relay: the hooks raise when they failed.
    relayable = True

    __slots__ = (
        "__weakref__",
        "_closed",
        "_display",
        "_link",
        "_lock",
        "_loop",
        "_secrets",
        "_servers",
        "_subjects",
        "events",
        "stream",
        "subject",
        "timeout",
    )

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        subject: str = "phasekit.events.{type}",
        *,
        stream: str | None = None,
        timeout: float = 5.0,
        events: str | Iterable[str] | None = None,
    ) -> None:
        self._servers, self._display, self._secrets = _check_url(url)
        self._subjects = _check_subjects(subject)
        self.subject = subject
        self.stream = _check_stream(stream)
        self.timeout = _check_timeout(timeout)
        self.events = _check_events(events)
        _require_nats()
        self._lock = threading.Lock()
        self._loop: _Loop | None = None
        self._link: _Link | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """The servers, without user, password or token."""
        return self._display

    def subject_for(self, event_type: str) -> str:
        """The subject events of this type are published to."""
        return self._subjects[event_type]

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

    def deliver(self, event: Event) -> PubAck | None:
        """Publish the event and wait for its ack; None for a type ``events`` leaves out."""
        if self.events is not None and event.type not in self.events:
            return None
        loop, link = self._started()
        try:
            return loop.call(self._publish(link, event), self.timeout + _LOOP_SLACK)
        except TimeoutError:
            raise DeliveryError(
                self._failure(event, f"the event loop did not finish within {self.timeout:g}s")
            ) from None
        except _LoopClosed:
            raise DeliveryError(f"nats {self.url}: the notifier is closed") from None

    def _started(self) -> tuple[_Loop, _Link]:
        """The event loop and the connection, started on first use."""
        with self._lock:
            if self._closed:
                raise DeliveryError(f"nats {self.url}: the notifier is closed")
            if self._loop is None or self._link is None:
                self._link = _Link(self._servers, self.stream, self._subjects.values())
                self._loop = _Loop(f"phasekit-nats {self.url}")
                weakref.finalize(self, _stop_soon, self._loop.loop)
            return self._loop, self._link

    async def _publish(self, link: _Link, event: Event) -> PubAck:
        """One publish of ``event``, all of it within ``timeout``; raises ``DeliveryError``."""
        from nats.errors import Error, MaxPayloadError, NoServersError  # noqa: PLC0415
        from nats.js.errors import (  # noqa: PLC0415
            APIError,
            NoStreamResponseError,
            ServerError,
            ServiceUnavailableError,
        )

        subject = self._subjects[event.type]
        payload = event.model_dump_json().encode()
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    ack = await self._send(link, subject, payload, event.event_id)
                except NoStreamResponseError:
                    if self.stream is None:
                        raise
                    link.forget_stream()  # deleted since it was made: make it again
                    ack = await self._send(link, subject, payload, event.event_id)
        except NoStreamResponseError:
            where = (
                f"stream {self.stream!r} does not take subject {subject!r}; add the subject "
                "to it, or set another stream or subject"
                if self.stream
                else f"no JetStream stream takes subject {subject!r}; create one, or set "
                "the notifier's stream option to have it created"
            )
            raise PermanentDeliveryError(self._failure(event, where)) from None
        except (ServiceUnavailableError, ServerError) as exc:  # JetStream busy or electing
            raise DeliveryError(self._failure(event, self._reason(exc))) from None
        except APIError as exc:  # refused: another stream has the subject, limits, ...
            raise PermanentDeliveryError(self._failure(event, self._reason(exc))) from None
        except MaxPayloadError:
            raise PermanentDeliveryError(
                self._failure(event, f"{len(payload)} bytes is more than the server takes")
            ) from None
        except (TimeoutError, OSError, Error) as exc:  # refused, lost, no answer in time
            link.drop()
            reason = self._reason(exc)
            if isinstance(exc, NoServersError) and link.last_error is not None:
                reason += f" (last: {self._reason(link.last_error)})"
            raise DeliveryError(self._failure(event, reason)) from None
        if ack.duplicate:
            log.debug(
                "nats: %s %s was a duplicate; the server kept the first", event.type, event.event_id
            )
        return ack

    async def _send(self, link: _Link, subject: str, payload: bytes, event_id: str) -> PubAck:
        js = await link.jetstream(self.timeout)
        return await js.publish(
            subject,
            payload,
            timeout=self.timeout,
            stream=self.stream,
            headers={MSG_ID_HEADER: event_id},
        )

    def _reason(self, exc: BaseException) -> str:
        """What went wrong, without the URL's secrets even if the driver echoed them."""
        if isinstance(exc, TimeoutError) and not str(exc):
            return f"no answer within {self.timeout:g}s"
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return reason

    def _failure(self, event: Event, reason: str) -> str:
        return f"nats {self.url}: publish of {event.type} {event.event_id} failed: {reason}"

    def close(self) -> None:
        """Close the connection and stop the event loop; later deliveries raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, link = self._loop, self._link
        if loop is None or link is None:
            return
        with contextlib.suppress(Exception):  # the loop stops, and its sockets close, anyway
            loop.call(link.close(), self.timeout + _LOOP_SLACK)
        loop.stop(self.timeout)

    def __repr__(self) -> str:
        stream = f" stream={self.stream!r}" if self.stream else ""
        events = ",".join(sorted(self.events)) if self.events else "all"
        closed = " closed" if self._closed else ""
        return f"<NatsNotifier {self.url} subject={self.subject!r}{stream} events={events}{closed}>"
