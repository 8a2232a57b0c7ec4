"""Prometheus metrics of phasekit: phase durations, jobs by status, commit latency, relay lag.

Labels are bounded by the phase sets, never by the jobs: ``spec``, ``phase``, ``status``,
``outcome`` and ``notifier``; a job id is never a label. The metrics live on a
``prometheus_client.CollectorRegistry`` (the global ``REGISTRY`` unless one is given) and are
exposed by prometheus_client itself (``generate_latest``, ``start_http_server``, or the
``port`` option).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from statemachine import (
    EventLog,
    InvalidArgument,
    InvalidArgumentType,
    JobCreated,
    JobDeleted,
    JobStatusChanged,
    PhaseChanged,
    PhaseKitError,
    PhaseSet,
    Relay,
    RelayLedger,
    Store,
    TransitionRequest,
    hookimpl,
)

from .job_lookup import JobLookup, Remembered, SeenEvents, open_store_option

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

__all__ = [
    "COMMIT_BUCKETS",
    "DURATION_BUCKETS",
    "PrometheusMetrics",
    "register_notifiers",
]

log = logging.getLogger("phasekit.plugins")

#: Buckets of ``phase_duration_seconds``: phases of long-running jobs, from a second to a day.
DURATION_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400,
)  # fmt: skip
#: Buckets of ``commit_duration_seconds``: one store transaction, from half a millisecond.
COMMIT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
)  # fmt: skip
#: Transitions whose commit is being timed, at most: a commit that failed leaves its mark
#: behind until a newer one pushes it out.
_TIMED = 1024


@hookimpl
def register_notifiers() -> Mapping[str, Callable[..., object]]:
    """The ``prometheus`` notifier, for the ``notifiers:`` section of a tracker config."""
    return {"prometheus": PrometheusMetrics}


def _require_prometheus_client() -> None:
    """Refuse to build the plugin, naming the extra to install, when prometheus_client is
    missing."""
    try:
        import prometheus_client  # noqa: F401, PLC0415 (only this plugin needs it)
    except ImportError:
        raise PhaseKitError(
            "the prometheus plugin needs the prometheus_client package, which is not "
            "installed: pip install 'phasekit[prometheus]'"
        ) from None


def _check_port(port: object) -> int | None:
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int):
        raise InvalidArgumentType(f"prometheus port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise InvalidArgument(f"prometheus port must be 0 to 65535, not {port}")
    return port


def _check_buckets(buckets: object) -> tuple[float, ...]:
    if isinstance(buckets, str) or not isinstance(buckets, Sequence):
        raise InvalidArgumentType("prometheus buckets must be a list of numbers of seconds")
    values: list[float] = []
    for value in buckets:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidArgument(f"prometheus buckets: {value!r} is not a number of seconds")
        values.append(float(value))
    if not values or values != sorted(set(values)) or values[0] <= 0:
        raise InvalidArgument("prometheus buckets must be positive numbers in increasing order")
    return tuple(values)


class PrometheusMetrics:
    """Records phasekit's metrics on a Prometheus registry, from the notification hooks.

    ``store`` is the store the events come from (``tracker.store``, or its URL): a finished
    phase's duration starts at its stored ``started_at``, wherever it was started. Give the
    plugin to a tracker (``Tracker(plugins=[...])`` or ``tracker.plugins.register(...)``) to
    observe this process's commits, commit latency included; named under ``notifiers:`` the
    relay delivers it, at least once, and an event delivered again is observed once.

    The metrics, with ``namespace`` (``phasekit``) as their prefix:

    - ``phase_duration_seconds{spec, phase, outcome}``: histogram of ``completed_at -
      started_at`` of each phase entering a terminal status; ``outcome`` is ``success`` or
      ``failure`` by that status's ``success`` flag. A phase that never started is not in it.
    - ``phase_changes_total{spec, phase, status}``: committed status changes, by destination.
    - ``jobs{spec, status}``: jobs by overall status, counted from the creations, status changes
      and deletions this plugin saw (see docs/observability.md: add it up over processes).
    - ``commit_duration_seconds{spec}``: histogram of a transition's commit, from the veto check
      to the notification (in-process only: the relay delivers no ``before_transition``).
    - ``relay_lag_events{notifier}``, ``relay_lag_seconds{notifier}``,
      ``relay_dead_letters{notifier}``: read from the store's relay ledger at each scrape,
      when the store keeps an event log.
    """

    __slots__ = (
        "_collectors",
        "_commit",
        "_initial",
        "_jobs",
        "_lookup",
        "_phase_changes",
        "_phase_duration",
        "_registry",
        "_seen",
        "_server",
        "_statuses",
        "_timed",
    )

    #: The relay can deliver these hooks from a store's event log (they raise only when the
    #: store cannot be read, so the relay tries again).
    relayable: ClassVar[bool] = True

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        specs: Iterable[PhaseSet | str] = (),
        registry: CollectorRegistry | None = None,
        namespace: str = "phasekit",
        buckets: Sequence[float] = DURATION_BUCKETS,
        port: int | None = None,
        addr: str = "127.0.0.1",
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        _require_prometheus_client()
        from prometheus_client import (  # noqa: PLC0415
            REGISTRY,
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            start_http_server,
        )

        if registry is not None and not isinstance(registry, CollectorRegistry):
            kind = type(registry).__name__
            raise InvalidArgumentType(
                f"prometheus registry must be a CollectorRegistry, not {kind}"
            )
        if not isinstance(namespace, str):
            raise InvalidArgumentType("prometheus namespace must be a string")
        duration_buckets = _check_buckets(buckets)
        listen = _check_port(port)
        opened, owned = open_store_option("prometheus", store, store_options)
        try:
            self._lookup = JobLookup(opened, specs, owns_store=owned)
            self._registry: CollectorRegistry = registry or REGISTRY
            self._seen = SeenEvents()
            self._statuses: Remembered[str, tuple[str, str]] = Remembered()
            self._timed: Remembered[tuple[str, str, str], float] = Remembered(_TIMED)
            self._initial: dict[str, str] = {}
            self._phase_duration: Histogram = Histogram(
                "phase_duration_seconds",
                "How long phases ran: from started_at to entering a terminal status.",
                ["spec", "phase", "outcome"],
                namespace=namespace,
                buckets=duration_buckets,
                registry=None,
            )
            self._phase_changes: Counter = Counter(
                "phase_changes",
                "Committed phase status changes, by destination status.",
                ["spec", "phase", "status"],
                namespace=namespace,
                registry=None,
            )
            self._jobs: Gauge = Gauge(
                "jobs",
                "Jobs by overall status, from the changes this process saw.",
                ["spec", "status"],
                namespace=namespace,
                registry=None,
            )
            self._commit: Histogram = Histogram(
                "commit_duration_seconds",
                "How long a transition's commit took, from the veto check to the notification.",
                ["spec"],
                namespace=namespace,
                buckets=COMMIT_BUCKETS,
                registry=None,
            )
            collectors: list[Collector] = [
                self._phase_duration,
                self._phase_changes,
                self._jobs,
                self._commit,
            ]
            if isinstance(opened, EventLog) and isinstance(opened, RelayLedger):
                collectors.append(_RelayLag(opened, namespace))
            self._collectors = _register(self._registry, collectors)
            self._server: WSGIServer | None = None
            if listen is not None:
                self._server, _ = start_http_server(listen, addr, self._registry)
        except BaseException:
            self.close()
            raise

    @property
    def registry(self) -> CollectorRegistry:
        """The registry the metrics are on."""
        return self._registry

    @property
    def port(self) -> int | None:
        """The port the metrics are served on (``port`` option; 0 picks a free one)."""
        return None if self._server is None else int(self._server.server_port)

    # -- hooks -------------------------------------------------------------------------------

    @hookimpl(trylast=True)
    def before_transition(self, event: TransitionRequest) -> None:
        """Start timing the commit (the last veto check, right before the save); never vetoes."""
        # A veto hook that raises rejects the transition: this one has nothing that can fail.
        self._timed.put((event.job_id, event.phase, event.dest), time.perf_counter())

    @hookimpl
    def job_created(self, event: JobCreated) -> None:
        if event.event_id in self._seen:
            return
        spec = self._lookup.phase_set(event.spec, event.job_id)
        if spec is not None:
            status = self._initial_status(spec, event.job_id)
            self._lookup.remember(event.job_id, event.spec)
            self._jobs.labels(event.spec, status).inc()
            self._statuses.put(event.job_id, (event.spec, status))
        self._seen.add(event.event_id)

    @hookimpl(tryfirst=True)
    def phase_changed(self, event: PhaseChanged) -> None:
        notified = time.perf_counter()
        if event.event_id in self._seen:
            return
        spec = self._lookup.spec_name(event.job_id)
        finished = None if spec is None else self._lookup.finished_phase(event)
        started = self._timed.pop((event.job_id, event.phase, event.dest))
        if spec is not None:
            self._phase_changes.labels(spec, event.phase, event.dest).inc()
            if started is not None:
                self._commit.labels(spec).observe(notified - started)
        if finished is not None and finished.started_at is not None:
            ran = (finished.completed_at - finished.started_at).total_seconds()
            self._phase_duration.labels(finished.spec, finished.phase, finished.outcome).observe(
                max(0.0, ran)
            )
        self._seen.add(event.event_id)

    @hookimpl
    def job_status_changed(self, event: JobStatusChanged) -> None:
        if event.event_id in self._seen:
            return
        spec = self._lookup.spec_name(event.job_id)
        if spec is not None:
            self._jobs.labels(spec, event.old_status).dec()
            self._jobs.labels(spec, event.new_status).inc()
            self._statuses.put(event.job_id, (spec, event.new_status))
        self._seen.add(event.event_id)

    @hookimpl
    def job_deleted(self, event: JobDeleted) -> None:
        if event.event_id in self._seen:
            return
        # The event does not say the job's last status: the one this plugin saw it enter does.
        last = self._statuses.pop(event.job_id)
        if last is not None:
            self._jobs.labels(*last).dec()
        self._lookup.forget(event.job_id)
        self._seen.add(event.event_id)

    def _initial_status(self, spec: PhaseSet, job_id: str) -> str:
        """The overall status of a new job of ``spec`` (every phase in the initial status)."""
        status = self._initial.get(spec.fingerprint)
        if status is None:
            status = spec.initial_record(job_id).status
            self._initial[spec.fingerprint] = status
        return status

    # -- lifetime ----------------------------------------------------------------------------

    def unregister(self) -> None:
        """Take the metrics off the registry (another plugin may then put its own there)."""
        collectors = getattr(self, "_collectors", ())
        self._collectors = []
        for collector in collectors:
            self._registry.unregister(collector)

    def close(self) -> None:
        """Stop serving (``port``) and close a store opened from a URL; metrics stay readable."""
        server = getattr(self, "_server", None)
        self._server = None
        if server is not None:
            server.shutdown()
            server.server_close()
        lookup = getattr(self, "_lookup", None)
        if lookup is not None:
            lookup.close()

    def __repr__(self) -> str:
        port = "" if self._server is None else f" port={self.port}"
        return f"<PrometheusMetrics store={type(self._lookup.store).__name__}{port}>"


def _register(registry: CollectorRegistry, collectors: list[Collector]) -> list[Collector]:
    """Put every collector on ``registry``, or none: a name taken there is an error."""
    done: list[Collector] = []
    try:
        for collector in collectors:
            registry.register(collector)
            done.append(collector)
    except ValueError as exc:  # prometheus_client's DuplicateTimeseries
        for collector in done:
            registry.unregister(collector)
        raise InvalidArgument(
            f"prometheus: the registry already has these metrics ({exc}); use one "
            "PrometheusMetrics per registry (share it between the trackers of one store), or "
            "give another registry= or namespace="
        ) from None
    return done


class _RelayLag:
    """Each notifier's delivery, read from the store's relay ledger when the registry is read."""

    __slots__ = ("_log", "_namespace", "_relay")

    def __init__(self, store: Store, namespace: str) -> None:
        # A relay that never starts: only its status() is used, which reads the cursors and
        # dead letters every relay shares through the store.
        self._relay = Relay(store, {})
        self._log: EventLog = self._relay.log
        self._namespace = namespace

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        from prometheus_client.metrics_core import GaugeMetricFamily  # noqa: PLC0415

        prefix = f"{self._namespace}_" if self._namespace else ""
        return (
            GaugeMetricFamily(
                f"{prefix}relay_lag_events",
                "Events committed that the notifier has yet to get.",
                labels=["notifier"],
            ),
            GaugeMetricFamily(
                f"{prefix}relay_lag_seconds",
                "Age of the oldest event the notifier has yet to get (0: it has them all).",
                labels=["notifier"],
            ),
            GaugeMetricFamily(
                f"{prefix}relay_dead_letters",
                "Events the notifier gave up on, kept for `phasekit relay --retry-dead`.",
                labels=["notifier"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        if getattr(self._relay.store, "closed", False):
            return  # the plugin or its tracker closed the store: nothing more to read
        events, seconds, dead = self._families()
        try:
            now = datetime.now(UTC)
            for status in self._relay.status():
                oldest = self._log.read_events(status.position, limit=1) if status.lag else []
                age = (now - oldest[0].event.at).total_seconds() if oldest else 0.0
                events.add_metric([status.notifier], status.lag)
                seconds.add_metric([status.notifier], max(0.0, age))
                dead.add_metric([status.notifier], status.dead_letters)
        except Exception:  # a scrape must not fail for the rest of the metrics
            log.exception("phasekit: the relay's status could not be read for Prometheus")
            return
        yield from (events, seconds, dead)
