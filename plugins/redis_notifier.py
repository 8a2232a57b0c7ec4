"""A notifier that appends each phasekit event to a Redis stream with ``XADD``."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final
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
    import redis
    from redis.typing import EncodableT, FieldT

__all__ = ["EVENT_TYPES", "RedisNotifier", "register_notifiers"]

#: Every event type, from the ``Event`` union: what ``events=`` may choose from.
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    str(cls.model_fields["type"].default) for cls in typing.get_args(typing.get_args(Event)[0])
)

_SCHEMES = ("redis", "rediss", "unix")


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    """The ``redis`` notifier, for the ``notifiers:`` section of a tracker config."""
    return {"redis": RedisNotifier}


def _check_events(events: str | Iterable[str] | None) -> frozenset[str] | None:
    """The event types to send (None: all), each one a known type."""
    if events is None:
        return None
    chosen = frozenset([events] if isinstance(events, str) else events)
    valid = f"valid types: {', '.join(sorted(EVENT_TYPES))}"
    if not chosen:
        raise InvalidArgument(f"redis events is empty; leave it out to send every type ({valid})")
    unknown = sorted(map(repr, chosen - EVENT_TYPES))
    if unknown:
        raise InvalidArgument(f"redis events: unknown event type(s) {', '.join(unknown)}; {valid}")
    return chosen


def _check_url(url: object) -> tuple[str, str]:
    """The URL as given, and how it is shown: without user, password or query string."""
    # Messages never echo the URL: it may hold a password.
    if not isinstance(url, str):
        raise InvalidArgument(f"redis url must be a string, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidArgument("redis url is not a valid URL (it is not shown)") from None
    if parts.scheme not in _SCHEMES:
        raise InvalidArgument(
            f"redis url must start with redis://, rediss:// or unix://, "
            f"not {parts.scheme + '://' if parts.scheme else 'nothing'!r}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise InvalidArgument("redis url unix:// names no socket path")
        where = parts.path
    else:
        if not parts.hostname:
            raise InvalidArgument("redis url has no host")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        where = f"{host}:{port or 6379}{parts.path}"
    return url, f"{parts.scheme}://{where}{'?…' if parts.query else ''}"


def _check_positive(name: str, value: object, *, integer: bool = False) -> float:
    """A finite number above zero (an int when ``integer``)."""
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise InvalidArgument(
            f"redis {name} must be {'an integer' if integer else 'a number'} > 0, not {value!r}"
        )
    if value <= 0:
        raise InvalidArgument(f"redis {name} must be > 0, not {value!r}")
    return float(value)


def _secrets(url: str) -> tuple[str, ...]:
    """The password of ``url`` as written and decoded, to scrub from driver messages."""
    parts = urlsplit(url)
    found = {parts.password or ""}
    found.add(unquote(parts.password or ""))
    for key, _, value in (item.partition("=") for item in parts.query.split("&")):
        if key == "password":
            found.update({value, unquote(value)})
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def _client(url: str, timeout: float) -> redis.Redis:
    """A redis-py client on its own connection pool, which makes one attempt per command."""
    try:
        import redis  # noqa: PLC0415 (only this notifier needs the driver)
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415
    except ImportError:
        raise PhaseKitError(
            "the redis notifier needs the redis package, which is not installed: "
            "pip install 'phasekit[redis]'"
        ) from None
    try:
        pool = redis.ConnectionPool.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One attempt: the relay retries, with backoff, and knows when to give up.
            retry=Retry(NoBackoff(), 0),
            client_name="phasekit",
        )
    except (ValueError, TypeError):  # a query-string option redis-py cannot cast
        raise InvalidArgument(
            "redis url has an option redis-py does not accept (the URL is not shown)"
        ) from None
    return redis.Redis.from_pool(pool)


class RedisNotifier:
    """Appends each event to one Redis stream (``XADD``); raises when it could not.

    One ``XADD`` per event, synchronously, with the fields ``event_id``, ``type``,
    ``job_id``, ``version`` and ``event`` (the event's JSON). A failure raises
    ``DeliveryError`` so the relay tries again; a key that is not a stream raises
    ``PermanentDeliveryError``. Thread-safe: the client keeps a pool of connections.
    """

    #: Delivered from the store's event log by the relay: the hooks raise when they failed.
    relayable = True

    __slots__ = (
        "_client",
        "_closed",
        "_display",
        "_secrets",
        "events",
        "maxlen",
        "stream",
        "timeout",
    )

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        stream: str = "phasekit",
        *,
        maxlen: int | None = None,
        timeout: float = 5.0,
        events: str | Iterable[str] | None = None,
    ) -> None:
        url, self._display = _check_url(url)
        self._secrets = _secrets(url)
        if not isinstance(stream, str) or not stream:
            raise InvalidArgument(f"redis stream must be a non-empty string, not {stream!r}")
        self.stream = stream
        self.maxlen = (
            None if maxlen is None else int(_check_positive("maxlen", maxlen, integer=True))
        )
        self.timeout = _check_positive("timeout", timeout)
        self.events = _check_events(events)
        self._client = _client(url, self.timeout)
        self._closed = False

    @property
    def url(self) -> str:
        """The server, without user, password or query string."""
        return self._display

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

    def deliver(self, event: Event) -> str | None:
        """``XADD`` the event; the entry's id, or None for a type ``events`` leaves out."""
        if self.events is not None and event.type not in self.events:
            return None
        if self._closed:
            raise DeliveryError(f"redis {self.url}: the notifier is closed")
        from redis.exceptions import RedisError, ResponseError  # noqa: PLC0415

        fields: dict[FieldT, EncodableT] = {
            "event_id": event.event_id,
            "type": event.type,
            "job_id": event.job_id,
            "version": event.version,
            "event": event.model_dump_json(),
        }
        try:
            entry = self._client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
        except ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                raise PermanentDeliveryError(
                    f"redis {self.url}: key {self.stream!r} holds something other than a "
                    "stream; delete or rename it, or set another stream"
                ) from None
            raise DeliveryError(self._failure(event, exc)) from None
        except RedisError as exc:  # connection refused or lost, a timeout, a loading server
            raise DeliveryError(self._failure(event, exc)) from None
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def _failure(self, event: Event, exc: Exception) -> str:
        """Why an ``XADD`` failed, without the URL's password even if the driver echoed it."""
        reason = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return (
            f"redis {self.url}: XADD {event.type} {event.event_id} to {self.stream!r} "
            f"failed: {reason}"
        )

    def close(self) -> None:
        """Close every connection; later deliveries raise ``DeliveryError``."""
        self._closed = True
        self._client.close()

    def __repr__(self) -> str:
        maxlen = "" if self.maxlen is None else f" maxlen=~{self.maxlen}"
        events = ",".join(sorted(self.events)) if self.events else "all"
        closed = " closed" if self._closed else ""
        return f"<RedisNotifier {self.url} stream={self.stream!r}{maxlen} events={events}{closed}>"
