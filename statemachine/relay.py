"""The relay: delivers a store's event log to notifiers, at least once, in commit order.

Each notifier is a *lane*: its own cursor (the last position it has had), its own lease and
its own thread, so a slow or dead endpoint holds back no other notifier. A lane reads the
log after its cursor, calls the notifier's hook for each event (``phase_changed(event)``
and so on), and moves its cursor once the hook returned. A hook that raises is retried with
exponential backoff (at least as long as a ``DeliveryError.retry_after`` asks); after the
last attempt, or at once for a ``PermanentDeliveryError``, the event becomes a dead letter
and the lane goes on. ``EndpointGone`` disables the lane until ``retry_dead()``.

Cursors, leases and dead letters live in the store (``RelayLedger``), so any number of
relays, in any number of processes, share the work: a lease makes one of them deliver a
notifier at a time, and the lease of a relay that died expires after ``lease`` seconds.
A relay killed between a delivery and the save of its cursor delivers that event again:
at least once, never lost. Receivers deduplicate by ``event_id``.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import (
    EndpointGone,
    InvalidArgument,
    InvalidArgumentType,
    PermanentDeliveryError,
    PhaseKitError,
)
from .hooks import PluginManager
from .store import (
    DeadLetter,
    Event,
    EventLog,
    LoggedEvent,
    MemoryStore,
    RelayCursor,
    RelayLedger,
    Store,
    open_store,
)
from .tracker_config import build_notifiers, close_notifiers, read_config

__all__ = ["NotifierStatus", "Relay", "RelayOptions", "deliver"]

log = logging.getLogger("phasekit.relay")


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """How a relay retries, leases and waits (``relay_options:`` in a config)."""

    #: Attempts at one event before it becomes a dead letter.
    max_attempts: int = 8
    #: The first wait after a failure, seconds; each further failure doubles it (with jitter).
    backoff: float = 1.0
    #: The longest wait between two attempts, seconds.
    max_backoff: float = 300.0
    #: How long a lease lasts from its last renewal, seconds.
    lease: float = 30.0
    #: Events read from the log at a time.
    batch_size: int = 100
    #: The cursor is saved at least this often while a lane delivers, seconds (and after
    #: every batch): what a relay killed mid-batch delivers again is at most this much.
    save_every: float = 0.2
    #: The longest an idle lane waits before looking at the log again, seconds. Stores wake
    #: it sooner: PostgreSQL's LISTEN, this process's own commits, SQLite's polling.
    idle_wait: float = 5.0
    #: How long ``stop()`` and ``Tracker.close()`` keep delivering what is committed, seconds.
    drain_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_attempts", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentType(f"relay option {name} must be an int, not {value!r}")
            if value < 1:
                raise InvalidArgument(f"relay option {name} must be at least 1, not {value}")
        for name in ("backoff", "max_backoff", "lease", "save_every", "idle_wait", "drain_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgumentType(f"relay option {name} must be a number, not {value!r}")
            if value < 0 or (name == "lease" and value <= 0):
                raise InvalidArgument(f"relay option {name} must be positive, not {value}")

    @classmethod
    def of(cls, options: Mapping[str, Any] | RelayOptions | None) -> RelayOptions:
        """Options from a mapping (unknown names are an error naming the valid ones)."""
        if options is None:
            return cls()
        if isinstance(options, RelayOptions):
            return options
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidArgument(
                f"unknown relay option {', '.join(unknown)}; relay options: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**dict(options))


@dataclass(frozen=True, slots=True)
class NotifierStatus:
    """Where one notifier's delivery stands (``relay.status()``, ``phasekit relay --status``)."""

    notifier: str
    position: int
    #: Events committed after ``position``: what the notifier has yet to get.
    lag: int
    dead_letters: int
    attempts: int = 0
    retry_at: datetime | None = None
    disabled: str | None = None
    last_error: str | None = None
    owner: str | None = None
    lease_until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "notifier": self.notifier,
            "position": self.position,
            "lag": self.lag,
            "dead_letters": self.dead_letters,
            "attempts": self.attempts,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "disabled": self.disabled,
            "last_error": self.last_error,
            "owner": self.owner,
            "lease_until": self.lease_until.isoformat() if self.lease_until else None,
        }


def deliver(notifier: object, event: Event) -> bool:
    """Call ``notifier``'s hook for ``event``; False when it has none (nothing to deliver)."""
    hook = getattr(notifier, event.type, None)
    if not callable(hook):
        return False
    hook(event=event)
    return True


def _stop_at_exit(ref: weakref.ReferenceType[Relay]) -> None:
    """Stop a relay still running when the interpreter exits, delivering what it can."""
    relay = ref()
    if relay is None or relay._stopping.is_set():
        return
    try:
        left = relay.stop()
    except Exception:
        log.exception("phasekit relay: stopping at exit")
        return
    if left:
        log.warning(
            "phasekit relay: %d committed event(s) were not delivered to every notifier "
            "before the process exited%s",
            left,
            "; a memory store's log goes with the process"
            if isinstance(relay.store, MemoryStore)
            else "; they wait in the event log for the next relay",
        )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(slots=True)
class _Counts:
    delivered: int = 0
    failures: int = 0
    dead_lettered: int = 0


@dataclass(slots=True)
class _Pump:
    """What one pass of a lane did, and how long it may rest."""

    delivered: int = 0
    more: bool = False  # a full batch: look again at once
    rest: float | None = None  # seconds until there is something to do (None: wait for events)


class _Lane:
    """One notifier's delivery: a cursor in the store, a lease, and (when run) a thread."""

    def __init__(self, relay: Relay, name: str, notifier: object) -> None:
        self.relay = relay
        self.name = name
        self.notifier = notifier
        self.counts = _Counts()
        self._cursor: RelayCursor | None = None
        self._thread: threading.Thread | None = None
        # One delivery at a time per notifier in this relay too: a pass of the lane's thread
        # and a retry_dead() called meanwhile (say, on a tracker's running relay) take turns.
        self._busy = threading.Lock()

    # -- one pass ----------------------------------------------------------------------------

    def pump(self, *, until: int | None = None) -> _Pump:
        with self._busy:
            return self._pump(until)

    def _pump(self, until: int | None) -> _Pump:
        relay, options = self.relay, self.relay.options
        cursor = relay.ledger.claim_cursor(self.name, relay.owner, lease=options.lease)
        self._cursor = cursor
        if cursor is None:  # another relay holds the lease
            return _Pump(rest=options.lease / 3)
        if cursor.disabled:
            return _Pump(rest=options.lease / 3)
        now = datetime.now(UTC)
        if cursor.retry_at is not None and cursor.retry_at > now:
            return _Pump(rest=min((cursor.retry_at - now).total_seconds(), options.lease / 3))
        batch = relay.log.read_events(cursor.position, limit=options.batch_size)
        if until is not None:
            batch = [e for e in batch if e.position <= until]
        if not batch:
            return _Pump()
        result = _Pump(more=len(batch) == options.batch_size)
        saved_at = time.monotonic()
        for logged in batch:
            try:
                deliver(self.notifier, logged.event)
            except Exception as exc:
                cursor = self._failed(cursor, logged, exc)
                result.more = cursor.retry_at is None  # a dead letter: go on with the next
                if cursor.retry_at is not None:
                    result.rest = max(0.0, (cursor.retry_at - datetime.now(UTC)).total_seconds())
                if cursor.disabled:
                    result.more, result.rest = False, options.lease / 3
                break
            self.counts.delivered += 1
            result.delivered += 1
            cursor = replace(
                cursor, position=logged.position, attempts=0, retry_at=None, last_error=None
            )
            if time.monotonic() - saved_at >= options.save_every:
                if not self._save(cursor):
                    return result
                saved_at = time.monotonic()
        else:
            self._save(cursor)
        return result

    def _failed(self, cursor: RelayCursor, logged: LoggedEvent, exc: Exception) -> RelayCursor:
        """Record a failed attempt: a retry later, or a dead letter (and the lane moves on)."""
        options = self.relay.options
        attempts = cursor.attempts + 1
        reason = _reason(exc)
        self.counts.failures += 1
        now = datetime.now(UTC)
        permanent = isinstance(exc, PermanentDeliveryError)
        if not permanent and attempts < options.max_attempts:
            wait = min(options.max_backoff, options.backoff * 2 ** (attempts - 1))
            wait = random.uniform(wait / 2, wait)  # jitter: relays do not retry in step
            asked = getattr(exc, "retry_after", None)
            if isinstance(asked, int | float) and asked > wait:
                wait = float(asked)
            log_ = log.warning if attempts == 1 else log.info
            log_(
                "phasekit relay: %s could not deliver event %d (%s), attempt %d of %d: %s; "
                "retrying in %.1f s",
                self.name,
                logged.position,
                logged.event.type,
                attempts,
                options.max_attempts,
                reason,
                wait,
            )
            if not isinstance(exc, PhaseKitError):  # not a delivery failure: a bug
                log.debug("phasekit relay: %s raised", self.name, exc_info=exc)
            failed = replace(
                cursor,
                attempts=attempts,
                retry_at=now + timedelta(seconds=wait),
                last_error=reason,
            )
            self._save(failed)
            return failed
        disabled = reason if isinstance(exc, EndpointGone) else None
        letter = DeadLetter(
            notifier=self.name,
            position=logged.position,
            event=logged.event,
            reason=reason,
            attempts=attempts,
            at=now,
        )
        if disabled:
            log.warning(
                "phasekit relay: %s is gone (%s): event %d is a dead letter and the notifier "
                "is disabled until `phasekit relay --retry-dead`",
                self.name,
                reason,
                logged.position,
            )
        else:
            log.error(
                "phasekit relay: %s gave up on event %d (%s) after %d attempt(s): %s; it is a "
                "dead letter (`phasekit relay --status`, `--retry-dead`)",
                self.name,
                logged.position,
                logged.event.type,
                attempts,
                reason,
            )
        self.counts.dead_lettered += 1
        moved = replace(
            cursor,
            position=logged.position,
            attempts=0,
            retry_at=None,
            disabled=disabled,
            last_error=reason,
        )
        self._save(moved, dead_letter=letter)
        return moved

    def _save(self, cursor: RelayCursor, dead_letter: DeadLetter | None = None) -> bool:
        relay = self.relay
        saved = relay.ledger.save_cursor(
            cursor, relay.owner, lease=relay.options.lease, dead_letter=dead_letter
        )
        if not saved:
            log.warning(
                "phasekit relay: lost the lease on %s to another relay; events delivered since "
                "the last saved position may be delivered again",
                self.name,
            )
            self._cursor = None
        else:
            self._cursor = cursor
        return saved

    # -- dead letters ------------------------------------------------------------------------

    def retry_dead(self) -> tuple[int, int]:
        """Deliver this notifier's dead letters again, oldest first, and enable it."""
        with self._busy:
            return self._retry_dead()

    def _retry_dead(self) -> tuple[int, int]:
        relay = self.relay
        cursor = relay.ledger.claim_cursor(self.name, relay.owner, lease=relay.options.lease)
        if cursor is None:
            raise PhaseKitError(
                f"notifier {self.name!r} is leased by relay {self._holder()}; retry its dead "
                "letters there, or once its lease expires"
            )
        delivered = failed = 0
        try:
            if cursor.disabled:
                cursor = replace(cursor, disabled=None, attempts=0, retry_at=None)
                relay.ledger.save_cursor(cursor, relay.owner, lease=relay.options.lease)
            for letter in relay.ledger.dead_letters(self.name, limit=1_000_000):
                try:
                    deliver(self.notifier, letter.event)
                except Exception as exc:
                    failed += 1
                    log.warning(
                        "phasekit relay: %s still cannot deliver dead letter %d: %s",
                        self.name,
                        letter.position,
                        _reason(exc),
                    )
                    if isinstance(exc, EndpointGone):
                        break
                    continue
                relay.ledger.remove_dead_letter(self.name, letter.position)
                delivered += 1
        finally:
            if self._thread is None or not self._thread.is_alive():  # else the lane goes on
                relay.ledger.release_cursor(self.name, relay.owner)
        return delivered, failed

    def _holder(self) -> str:
        for cursor in self.relay.ledger.relay_cursors():
            if cursor.notifier == self.name:
                return repr(cursor.owner)
        return "another relay"

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"phasekit-relay {self.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        relay = self.relay
        stopping = relay._stopping
        renew = relay.options.lease / 3  # how often an idle lane renews its lease
        woken, renew_at = True, 0.0
        while not stopping.is_set():
            try:
                woken, renew_at = self._step(woken, renew_at, renew)
            except Exception:
                if getattr(relay.store, "closed", False):
                    return  # the store was closed under the relay: nothing more to do
                log.exception("phasekit relay: %s failed; trying again shortly", self.name)
                stopping.wait(1.0)
                woken = True
        self._drain()
        self.relay.ledger.release_cursor(self.name, relay.owner)

    def _step(self, woken: bool, renew_at: float, renew: float) -> tuple[bool, float]:
        """One turn of the lane's thread: deliver what there is, or wait for it."""
        relay = self.relay
        stopping = relay._stopping
        # An idle lane only waits for events: it claims (renews its lease) and reads the
        # log when one came, or when the lease is due for renewal.
        if woken or time.monotonic() >= renew_at:
            done = self.pump()
            renew_at = time.monotonic() + renew
        else:
            done = _Pump()
        if done.more:
            return True, renew_at
        idle = min(relay.options.idle_wait, renew)
        if done.rest is not None:
            stopping.wait(min(done.rest, idle) if done.rest > 0 else 0.01)
            return True, renew_at
        if done.delivered == 0:
            position = self._cursor.position if self._cursor else 0
            left = max(0.0, renew_at - time.monotonic())
            return relay._wait_for_events(position, min(relay.options.idle_wait, left)), renew_at
        return True, renew_at

    def _drain(self) -> None:
        """Deliver what was committed before ``stop()``, within the relay's drain deadline."""
        relay = self.relay
        deadline = relay._drain_until
        if deadline is None:
            return
        target = relay._drain_target
        while time.monotonic() < deadline:
            cursor = self._cursor
            if cursor is not None and cursor.position >= target:
                return
            try:
                done = self.pump(until=target)
            except Exception:
                log.exception("phasekit relay: %s failed while draining", self.name)
                return
            if done.delivered == 0 and not done.more:
                cursor = self._cursor
                if cursor is None or cursor.disabled:
                    return  # leased by another relay, or disabled: nothing to wait for
                if done.rest is None or done.rest > deadline - time.monotonic():
                    return
                time.sleep(done.rest)

    def join(self, timeout: float | None) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


class Relay:
    """Delivers the event log of ``store`` to ``notifiers`` (by name), at least once.

    ``run_once()`` delivers what is committed now and returns; ``run()`` keeps delivering
    until ``stop()``; ``start()`` does that in background threads (one per notifier).
    """

    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, object],
        *,
        options: Mapping[str, Any] | RelayOptions | None = None,
        owner: str | None = None,
        owns_store: bool = False,
    ) -> None:
        if not isinstance(store, EventLog) or not isinstance(store, RelayLedger):
            raise PhaseKitError(
                f"store {type(store).__name__} keeps no event log (EventLog and RelayLedger): "
                "a relay cannot deliver from it"
            )
        self.store = store
        self.log: EventLog = store
        self.ledger: RelayLedger = store
        self.options = RelayOptions.of(options)
        #: This relay's name in the leases it holds: host, process and a random part.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._owns_store = owns_store
        self._lanes = {name: _Lane(self, name, n) for name, n in notifiers.items()}
        self._stopping = threading.Event()
        self._started = False
        self._drain_until: float | None = None
        self._drain_target = 0
        self._closed = False

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        plugins: Iterable[object] = (),
        load_entrypoints: bool = True,
    ) -> Relay:
        """The relay of a tracker config: its store, its ``notifiers:`` and ``relay_options:``."""
        config, _ = read_config(source)
        manager = PluginManager(plugins, load_entrypoints=load_entrypoints)
        store = open_store(config.store, manager.stores(), **config.store_options)
        try:
            notifiers = build_notifiers(manager, config.notifiers)
            return cls(store, notifiers, options=config.relay_options, owns_store=True)
        except BaseException:
            store.close()
            raise

    @property
    def notifiers(self) -> dict[str, object]:
        return {name: lane.notifier for name, lane in self._lanes.items()}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per notifier, what this relay delivered, how many attempts failed, dead letters."""
        return {
            name: {
                "delivered": lane.counts.delivered,
                "failures": lane.counts.failures,
                "dead_lettered": lane.counts.dead_lettered,
            }
            for name, lane in self._lanes.items()
        }

    def run_once(self) -> int:
        """Deliver every event committed so far to every notifier that can take it now.

        A notifier whose delivery fails stops at that event (its attempt counted, retried
        by a later run once its backoff passed); one leased by another relay is left to it.
        Returns the number of events delivered.
        """
        target = self.log.last_position()
        delivered = 0
        for lane in self._lanes.values():
            while True:
                done = lane.pump(until=target)
                delivered += done.delivered
                if not done.more and (done.delivered == 0 or done.rest is not None):
                    break
                cursor = lane._cursor
                if cursor is None or cursor.position >= target:
                    break
        return delivered

    def start(self) -> None:
        """Deliver in background threads, one per notifier, until ``stop()``."""
        if self._started:
            return
        self._started = True
        for lane in self._lanes.values():
            lane.start()
        # The lanes' threads keep a started relay alive, even once the program has let go
        # of it (or of the tracker that started it): at exit, it still delivers what is
        # committed, within the drain timeout, and counts what it could not.
        atexit.register(_stop_at_exit, weakref.ref(self))

    def run(self) -> None:
        """Deliver until ``stop()`` is called (from another thread or a signal handler)."""
        self.start()
        while not self._stopping.wait(0.5):
            pass
        self._join(self.options.drain_timeout + self.options.lease)

    def stop(self, *, drain: float | None = None) -> int:
        """Stop delivering; first deliver, for up to ``drain`` seconds, what is committed.

        Returns how many committed events some notifier has not had yet (they stay in the
        log of a durable store for the next relay).
        """
        timeout = self.options.drain_timeout if drain is None else drain
        if getattr(self.store, "closed", False):  # closed under the relay: nothing to drain
            self._stopping.set()
            self._join(1.0)
            return 0
        if self._started and not self._stopping.is_set():
            self._drain_target = self.log.last_position()
            self._drain_until = time.monotonic() + timeout
            self._stopping.set()
            self._wake_waiters()
            self._join(timeout + 2.0)
        self._stopping.set()
        if not self._started:  # run_once() or retry_dead() held leases: let others have them
            for name in self._lanes:
                self.ledger.release_cursor(name, self.owner)
        return self.undelivered()

    def _join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            # A lane that began a wait just as stop() woke the waiters is woken again.
            while not lane.join(min(0.1, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
                self._wake_waiters()

    def undelivered(self) -> int:
        """Committed events that some notifier of this relay has not had (the largest lag)."""
        return max((s.lag for s in self.status()), default=0)

    def close(self) -> None:
        """Stop (with the drain timeout), close the notifiers, and the store if it opened it."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        close_notifiers(self.notifiers)
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> list[NotifierStatus]:
        """Every notifier's position, lag and dead letters, as the store has them now."""
        last = self.log.last_position()
        cursors = {c.notifier: c for c in self.ledger.relay_cursors()}
        dead: dict[str, int] = {}
        for letter in self.ledger.dead_letters(limit=1_000_000):
            dead[letter.notifier] = dead.get(letter.notifier, 0) + 1
        names = sorted(set(self._lanes) | set(cursors))
        found = []
        for name in names:
            cursor = cursors.get(name) or RelayCursor(name)
            found.append(
                NotifierStatus(
                    notifier=name,
                    position=cursor.position,
                    lag=max(0, last - cursor.position),
                    dead_letters=dead.get(name, 0),
                    attempts=cursor.attempts,
                    retry_at=cursor.retry_at,
                    disabled=cursor.disabled,
                    last_error=cursor.last_error,
                    owner=cursor.owner,
                    lease_until=cursor.lease_until,
                )
            )
        return found

    def retry_dead(self, notifier: str | None = None) -> dict[str, tuple[int, int]]:
        """Deliver dead letters again (of one notifier, or all) and enable disabled ones.

        Returns, per notifier, how many were delivered and how many are still dead.
        """
        if notifier is not None and notifier not in self._lanes:
            raise InvalidArgument(
                f"no notifier {notifier!r} in this relay; notifiers: {', '.join(self._lanes)}"
            )
        names = [notifier] if notifier is not None else list(self._lanes)
        return {name: self._lanes[name].retry_dead() for name in names}

    def _wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` for an event after ``after``; whether one (may have) come.

        ``stop()`` ends the wait early through the store's ``wake_waiters``; a store without
        one is waited on in short steps, so that a stop is noticed soon.
        """
        wait: Callable[[int, float], bool] | None = getattr(self.log, "wait_for_events", None)
        if wait is None:
            self._stopping.wait(timeout)
            return True
        if not callable(getattr(self.log, "wake_waiters", None)):
            timeout = min(timeout, 0.5)
        if self._stopping.is_set():
            return True
        return bool(wait(after, timeout))

    def _wake_waiters(self) -> None:
        wake = getattr(self.log, "wake_waiters", None)
        if callable(wake):
            wake()

    def __repr__(self) -> str:
        return (
            f"<Relay {', '.join(self._lanes) or 'no notifiers'} store={type(self.store).__name__}>"
        )
