"""A notifier that writes one structured log line per phasekit event."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from statemachine import (
    Event,
    InvalidArgument,
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    PhaseChanged,
    ProgressUpdated,
    hookimpl,
)

__all__ = ["LoggingNotifier", "format_event", "parse_level", "register_notifiers"]

_LEVEL_NAMES = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    """The ``logging`` notifier, for the ``notifiers:`` section of a tracker config."""
    return {"logging": LoggingNotifier}


def parse_level(level: int | str) -> int:
    """A logging level from a name (``"info"``, ``"WARNING"``) or a non-negative int."""
    # bool is an int subclass, but ``level: true`` in a config is a mistake, not level 1.
    if isinstance(level, int) and not isinstance(level, bool):
        if level >= 0:
            return level
    elif isinstance(level, str):
        name = level.strip().upper()
        if name.isdecimal():
            return int(name)
        value = logging.getLevelNamesMapping().get(name)
        if value is not None:
            return value
    raise InvalidArgument(
        f"level {level!r} is not a logging level; use one of {', '.join(_LEVEL_NAMES)} "
        "or a non-negative integer"
    )


def _value(value: object) -> str:
    """A logfmt-style value: bare when it is one plain word, JSON-quoted otherwise."""
    text = "None" if value is None else str(value)
    # Quoting spaces and control characters keeps one event per line; no id can fake a field.
    if not text or any(c.isspace() or not c.isprintable() or c in '"=\\' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _change(old: object, new: object) -> str:
    """``old->new``, or just the value when it did not change."""
    return _value(new) if old == new else f"{_value(old)}->{_value(new)}"


def format_event(event: Event) -> str:
    """The one-line summary of an event: ``job=j1 v=3 phase_changed phase=… start a->b``."""
    head = f"job={_value(event.job_id)} v={event.version} {event.type}"
    if isinstance(event, PhaseChanged):
        line = (
            f"{head} phase={_value(event.phase)} {_value(event.trigger)} "
            f"{_value(event.source)}->{_value(event.dest)}"
        )
        return line if event.error is None else f"{line} error={_value(event.error)}"
    if isinstance(event, ProgressUpdated):
        total = "?" if event.items_total is None else str(event.items_total)
        return (
            f"{head} phase={_value(event.phase)} items={event.items_processed}/{total} "
            f"progress={event.progress:.1f} job_progress={event.job_progress:.1f}"
        )
    if isinstance(event, JobStatusChanged):
        status = _change(event.old_status, event.new_status)
        current = _change(event.old_current_phase, event.new_current_phase)
        return f"{head} status={status} current_phase={current} progress={event.progress:.1f}"
    if isinstance(event, JobCreated):
        return f"{head} spec={_value(event.spec)} phases={_value(','.join(event.phases))}"
    return head


class LoggingNotifier:
    """Logs each committed event as one line; ``extra={"event": {...}}`` holds its fields."""

    __slots__ = ("_level", "_logger")

    #: Relayed like any notifier: the relay hands it each committed event once, in order.
    #: (Logging itself never raises; a failing handler is reported by ``logging``.)
    relayable = True

    def __init__(self, level: int | str = "INFO", logger: str = "phasekit.events") -> None:
        self._level = parse_level(level)
        self._logger = logging.getLogger(logger)

    @property
    def level(self) -> int:
        """The level every line is logged at."""
        return self._level

    @property
    def logger(self) -> logging.Logger:
        """The logger the lines go to."""
        return self._logger

    def log_event(self, event: Event) -> None:
        """Log one event (nothing is formatted when the level is disabled)."""
        if not self._logger.isEnabledFor(self._level):
            return
        self._logger.log(
            self._level,
            format_event(event),
            extra={"event": event.model_dump(mode="json")},
        )

    @hookimpl
    def job_created(self, event: JobCreated) -> None:
        self.log_event(event)

    @hookimpl
    def phase_changed(self, event: PhaseChanged) -> None:
        self.log_event(event)

    @hookimpl
    def progress_updated(self, event: ProgressUpdated) -> None:
        self.log_event(event)

    @hookimpl
    def job_status_changed(self, event: JobStatusChanged) -> None:
        self.log_event(event)

    @hookimpl
    def job_deleted(self, event: JobDeleted) -> None:
        self.log_event(event)

    def __repr__(self) -> str:
        return (
            f"<LoggingNotifier logger={self._logger.name!r} "
            f"level={logging.getLevelName(self._level)}>"
        )
