"""A notifier plugin for the relay tests' subprocesses: one JSON line per delivered event.

Found through an entry point (``relayfile = tests.relay_plugin``) that the tests write into a
``*.dist-info`` folder on ``PYTHONPATH``, so ``phasekit relay --config FILE`` builds it from a
config's ``notifiers: {relayfile: {path: …}}`` like any installed notifier.

``refuse``: while that file exists, every event is refused for good
(``PermanentDeliveryError``: a dead letter at once). ``down``: while that file exists, every
attempt fails for now (``DeliveryError``: retried).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from statemachine import DeliveryError, Event, PermanentDeliveryError, hookimpl

__all__ = ["FileNotifier", "register_notifiers"]


class FileNotifier:
    """Appends ``{"id", "job", "version", "type", "pid", "at"}`` per event to ``path``."""

    relayable = True

    def __init__(
        self,
        path: str,
        *,
        refuse: str | None = None,
        down: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.refuse = Path(refuse) if refuse else None
        self.down = Path(down) if down else None
        self.delay = float(delay)
        self._lock = threading.Lock()

    def deliver(self, event: Event) -> None:
        if self.refuse is not None and self.refuse.exists():
            raise PermanentDeliveryError(f"relayfile refuses {event.event_id}")
        if self.down is not None and self.down.exists():
            raise DeliveryError(f"relayfile is down for {event.event_id}")
        if self.delay:
            time.sleep(self.delay)
        line = json.dumps(
            {
                "id": event.event_id,
                "job": event.job_id,
                "version": event.version,
                "type": event.type,
                "pid": os.getpid(),
                "at": time.time(),
            }
        )
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    @hookimpl
    def job_created(self, event: Event) -> None:
        self.deliver(event)

    @hookimpl
    def phase_changed(self, event: Event) -> None:
        self.deliver(event)

    @hookimpl
    def progress_updated(self, event: Event) -> None:
        self.deliver(event)

    @hookimpl
    def job_status_changed(self, event: Event) -> None:
        self.deliver(event)

    @hookimpl
    def job_deleted(self, event: Event) -> None:
        self.deliver(event)


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    return {"relayfile": FileNotifier}


def read_lines(path: Path) -> list[dict[str, object]]:
    """The complete lines a ``FileNotifier`` wrote (a line cut short by a kill is left out)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            found.append(json.loads(line))
    return found
