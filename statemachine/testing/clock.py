"""``Clock``: a time that moves only when a test moves it, for ``Tracker(clock=...)``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Final, final

from statemachine import InvalidArgument, InvalidArgumentType, parse_duration

__all__ = ["DEFAULT_START", "Clock"]

#: Where a ``Clock`` starts unless told otherwise: a fixed instant, so runs are repeatable.
DEFAULT_START: Final = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


def _aware(value: object, what: str) -> datetime:
    """``value`` as a timezone-aware UTC datetime; a naive one is refused."""
    if not isinstance(value, datetime):
        raise InvalidArgumentType(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(f"{what} {value.isoformat()} has no time zone; use UTC")
    return value.astimezone(UTC)


@final
class Clock:
    """What "now" is for a tracker in a test: call it (or read ``now``); ``advance`` moves it.

    ``Tracker(spec, clock=clock)`` reads it for every timestamp, progress interval and
    deadline, so a test moves time instead of sleeping. Safe to share between threads.
    """

    __slots__ = ("_lock", "_now")

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._lock = threading.Lock()
        self._now = _aware(start, "the clock's start")

    def __call__(self) -> datetime:
        """The current time (timezone-aware UTC)."""
        return self._now

    @property
    def now(self) -> datetime:
        """The current time (timezone-aware UTC)."""
        return self._now

    def advance(self, by: timedelta | str | float | None = None, /, **parts: float) -> datetime:
        """Move forward by ``by`` (a ``timedelta``, seconds, or ``"5m"``, ``"1h30m"``) or by
        ``timedelta(**parts)`` (``advance(minutes=5)``); returns the new time."""
        if (by is None) == (not parts):
            raise InvalidArgumentType(
                "advance() takes one duration: advance('5m'), advance(timedelta(minutes=5)), "
                "advance(300) or advance(minutes=5)"
            )
        step = parse_duration(timedelta(**parts) if by is None else by, "the clock's step")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to ``when`` (timezone-aware; earlier than now too); returns it in UTC."""
        moved = _aware(when, "the clock's time")
        with self._lock:
            self._now = moved
        return moved

    def __repr__(self) -> str:
        return f"<Clock {self._now.isoformat()}>"
