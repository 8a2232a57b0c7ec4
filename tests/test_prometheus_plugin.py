"""The prometheus plugin: phase durations, jobs by status, commit latency and relay lag.

Every test drives a real Tracker (memory and SQLite stores) and reads the metrics the way
Prometheus does: ``generate_latest`` parsed by prometheus_client's own parser.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from statemachine.plugins import prometheus_metrics, sql
from statemachine.plugins.logging_notifier import LoggingNotifier
from statemachine.plugins.prometheus_metrics import PrometheusMetrics
from statemachine.plugins.sql import register_stores

from statemachine import (
    ConfigError,
    MemoryStore,
    PermanentDeliveryError,
    PhaseChanged,
    PhaseKitError,
    Relay,
    Store,
    Tracker,
    open_store,
    parse_spec,
)

#: The plugins of a tracker in these tests: the SQL stores, without other installed plugins.
PLUGINS = [sql]

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

#: A phase set with a terminal status that is not a success, besides ``failed``.
REVIEW = """\
phasekit: 1
name: review
statuses:
  todo: {initial: true}
  doing: {active: true}
  approved: {terminal: true, success: true}
  rejected: {terminal: true}
transitions:
  - {trigger: begin, source: todo, dest: doing}
  - {trigger: approve, source: doing, dest: approved}
  - {trigger: reject, source: [todo, doing], dest: rejected}
phases:
  - {name: read}
  - {name: sign}
aggregate:
  status:
    - {any: [rejected], then: rejected}
    - {all: [approved], then: approved}
    - {any: [doing, approved], then: doing}
    - {otherwise: todo}
"""


class Clock:
    """A tracker clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        opened: Store = MemoryStore()
    else:
        opened = open_store(f"sqlite:///{tmp_path / 'jobs.db'}", register_stores())
    yield opened
    opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def samples(registry: CollectorRegistry, name: str) -> list[Sample]:
    """Every sample called ``name``, as Prometheus would read them from the exposition."""
    return [
        sample
        for family in text_string_to_metric_families(exposition(registry))
        for sample in family.samples
        if sample.name == name
    ]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels`` (plus ``le`` if given)."""
    for sample in samples(registry, name):
        if sample.labels == labels:
            return float(sample.value)
    return None


def run_jobs(tracker: Tracker, clock: Clock) -> None:
    """Three jobs: one completes, one fails in extraction, one is left running."""
    done = tracker.create_job("job-done-1")
    for phase, seconds in (("discovery", 10), ("extraction", 90), ("transformation", 400)):
        done.phases[phase].start()
        clock.advance(seconds)
        done.phases[phase].complete()
    failing = tracker.create_job("job-failing-2")
    failing.phases["discovery"].start()
    clock.advance(20)
    failing.phases["discovery"].complete()
    failing.phases["extraction"].start()
    clock.advance(30)
    failing.phases["extraction"].fail("disk full")
    tracker.create_job("job-running-3").phases["discovery"].start()


def tracked(store: Store, metrics: PrometheusMetrics, clock: Clock) -> Tracker:
    return Tracker("ingestion", store=store, plugins=[metrics], load_entrypoints=False, clock=clock)


# -- phase durations ---------------------------------------------------------------------------


def test_phase_durations_are_histograms_by_spec_phase_and_outcome(
    store: Store, registry: CollectorRegistry
) -> None:
    clock = Clock()
    with tracked(store, PrometheusMetrics(store, registry=registry), clock) as tracker:
        run_jobs(tracker, clock)
    name = "phasekit_phase_duration_seconds"
    success = {"spec": "ingestion", "outcome": "success"}
    assert value(registry, f"{name}_count", phase="discovery", **success) == 2
    assert value(registry, f"{name}_sum", phase="discovery", **success) == 30
    assert value(registry, f"{name}_sum", phase="extraction", **success) == 90
    assert value(registry, f"{name}_sum", phase="transformation", **success) == 400
    failure = {"spec": "ingestion", "phase": "extraction", "outcome": "failure"}
    assert value(registry, f"{name}_count", **failure) == 1
    assert value(registry, f"{name}_sum", **failure) == 30
    # Buckets are cumulative: the 30 s failure is in le=30 and above, not in le=15.
    assert value(registry, f"{name}_bucket", le="15.0", **failure) == 0
    assert value(registry, f"{name}_bucket", le="30.0", **failure) == 1
    assert value(registry, f"{name}_bucket", le="+Inf", **failure) == 1
    # A phase still running is in no histogram.
    assert value(registry, f"{name}_count", phase="loading", **success) is None


def test_outcome_comes_from_the_terminal_status_success_flag(registry: CollectorRegistry) -> None:
    store = MemoryStore()
    clock = Clock()
    metrics = PrometheusMetrics(store, registry=registry)
    with Tracker(
        parse_spec(REVIEW), store=store, plugins=[metrics], load_entrypoints=False, clock=clock
    ) as tracker:
        for job_id, last in (("a", "approve"), ("b", "reject")):
            job = tracker.create_job(job_id)
            job.phases["read"].begin()
            clock.advance(5)
            job.phases["read"].trigger(last)
        tracker.create_job("c").phases["read"].reject()  # rejected before it ever began
    name = "phasekit_phase_duration_seconds_count"
    assert value(registry, name, spec="review", phase="read", outcome="success") == 1
    assert value(registry, name, spec="review", phase="read", outcome="failure") == 1
    changes = "phasekit_phase_changes_total"
    assert value(registry, changes, spec="review", phase="read", status="rejected") == 2


def test_a_phase_started_by_another_tracker_is_measured_from_its_stored_start(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    clock = Clock()
    with Tracker("ingestion", url, PLUGINS, load_entrypoints=False, clock=clock) as elsewhere:
        elsewhere.create_job("j").phases["discovery"].start()  # this plugin sees none of it
    clock.advance(75)
    metrics = PrometheusMetrics(url, registry=registry)  # opens its own store from the URL
    with Tracker("ingestion", url, [*PLUGINS, metrics], load_entrypoints=False, clock=clock) as t:
        t.fire("j", "discovery", "complete")
    labels = {"spec": "ingestion", "phase": "discovery", "outcome": "success"}
    assert value(registry, "phasekit_phase_duration_seconds_sum", **labels) == 75
    metrics.close()


# -- labels ------------------------------------------------------------------------------------


def test_no_job_id_is_ever_a_label(store: Store, registry: CollectorRegistry) -> None:
    clock = Clock()
    with tracked(store, PrometheusMetrics(store, registry=registry), clock) as tracker:
        run_jobs(tracker, clock)
        tracker.delete_job("job-running-3")
    text = exposition(registry)
    assert "job-" not in text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names |= set(sample.labels)
    assert names <= {"spec", "phase", "status", "outcome", "notifier", "le"}


# -- jobs by status ----------------------------------------------------------------------------


def test_jobs_are_counted_by_spec_and_overall_status(
    store: Store, registry: CollectorRegistry
) -> None:
    clock = Clock()
    with tracked(store, PrometheusMetrics(store, registry=registry), clock) as tracker:
        run_jobs(tracker, clock)
        tracker.create_job("job-waiting-4")
        assert value(registry, "phasekit_jobs", spec="ingestion", status="running") == 2
        assert value(registry, "phasekit_jobs", spec="ingestion", status="failed") == 1
        assert value(registry, "phasekit_jobs", spec="ingestion", status="not_started") == 1
        tracker.delete_job("job-running-3")
        tracker.delete_job("job-waiting-4")
    assert value(registry, "phasekit_jobs", spec="ingestion", status="running") == 1
    assert value(registry, "phasekit_jobs", spec="ingestion", status="not_started") == 0


# -- commit latency ----------------------------------------------------------------------------


def test_each_transition_commit_is_timed_in_process(
    store: Store, registry: CollectorRegistry
) -> None:
    clock = Clock()
    with tracked(store, PrometheusMetrics(store, registry=registry), clock) as tracker:
        run_jobs(tracker, clock)
    count = value(registry, "phasekit_commit_duration_seconds_count", spec="ingestion")
    assert count == 11  # every start, complete and fail above
    total = value(registry, "phasekit_commit_duration_seconds_sum", spec="ingestion")
    assert total is not None
    assert 0 < total < 11  # real seconds, not the tracker's clock


def test_a_vetoed_transition_is_not_timed(registry: CollectorRegistry) -> None:
    from statemachine import Veto, hookimpl  # noqa: PLC0415

    class NoLoading:
        @hookimpl
        def before_transition(self, event: Any) -> Veto | None:
            return Veto("frozen") if event.phase == "discovery" else None

    store = MemoryStore()
    metrics = PrometheusMetrics(store, registry=registry)
    with Tracker("ingestion", store=store, plugins=[NoLoading(), metrics]) as tracker:
        job = tracker.create_job("j")
        with pytest.raises(PhaseKitError):
            job.phases["discovery"].start()
        job.phases["extraction"].start()
    assert value(registry, "phasekit_commit_duration_seconds_count", spec="ingestion") == 1


# -- relay lag ---------------------------------------------------------------------------------


class Refusing:
    """A relayed notifier whose receiver refuses every event for good."""

    relayable = True

    def phase_changed(self, event: PhaseChanged) -> None:
        raise PermanentDeliveryError("refused")


def test_relay_lag_is_read_from_the_store_for_each_notifier(
    store: Store, registry: CollectorRegistry
) -> None:
    hour_ago = Clock(datetime.now(UTC) - timedelta(hours=1))
    PrometheusMetrics(store, registry=registry)
    with Tracker("ingestion", store=store, load_entrypoints=False, clock=hour_ago) as tracker:
        tracker.create_job("j1").phases["discovery"].start()
        relay = Relay(store, {"logging": LoggingNotifier(), "refusing": Refusing()})
        relay.run_once()
        assert value(registry, "phasekit_relay_lag_events", notifier="logging") == 0
        assert value(registry, "phasekit_relay_lag_seconds", notifier="logging") == 0
        assert value(registry, "phasekit_relay_dead_letters", notifier="refusing") == 1
        tracker.create_job("j2").phases["discovery"].start()  # 3 events the relay has not read
        assert value(registry, "phasekit_relay_lag_events", notifier="logging") == 3
        lag = value(registry, "phasekit_relay_lag_seconds", notifier="logging")
        assert lag is not None
        assert 3600 <= lag < 3700
        relay.run_once()
        relay.stop()
        assert value(registry, "phasekit_relay_lag_events", notifier="logging") == 0


# -- relayed delivery --------------------------------------------------------------------------


def test_relayed_the_plugin_observes_every_event_once(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    clock = Clock()
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    metrics = PrometheusMetrics(url, registry=registry)
    with Tracker(
        "ingestion",
        store=url,
        plugins=PLUGINS,
        notifiers={"prometheus": metrics},
        load_entrypoints=False,
        clock=clock,
    ) as tracker:
        run_jobs(tracker, clock)
    # tracker.close() let the relay deliver everything; deliver it all again, as a relay
    # that lost its cursor would.
    again = Relay(open_store(url, register_stores()), {"prometheus": metrics})
    for logged in again.log.read_events(0):
        getattr(metrics, logged.event.type, lambda event: None)(event=logged.event)
    again.store.close()
    labels = {"spec": "ingestion", "phase": "discovery", "outcome": "success"}
    assert value(registry, "phasekit_phase_duration_seconds_count", **labels) == 2
    assert value(registry, "phasekit_jobs", spec="ingestion", status="running") == 2
    assert value(registry, "phasekit_jobs", spec="ingestion", status="failed") == 1
    # The relay calls no before_transition: commits are timed only in-process.
    assert value(registry, "phasekit_commit_duration_seconds_count", spec="ingestion") is None
    metrics.close()


def test_a_tracker_config_builds_it_by_name(tmp_path: Path, registry: CollectorRegistry) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    config = {
        "spec": "ingestion",
        "store": url,
        "notifiers": {"prometheus": {"store": url, "registry": registry, "buckets": [60, 3600]}},
    }
    plugins = [*PLUGINS, prometheus_metrics]
    with Tracker.from_config(config, plugins=plugins, load_entrypoints=False) as t:
        job = t.create_job("j")
        job.phases["discovery"].start()
        job.phases["discovery"].complete()
    labels = {"spec": "ingestion", "phase": "discovery", "outcome": "success"}
    assert value(registry, "phasekit_phase_duration_seconds_count", **labels) == 1
    assert value(registry, "phasekit_phase_duration_seconds_bucket", le="60.0", **labels) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give it the tracker's store"),
        ({"store": "memory://"}, "pass the store object"),
        ({"store": "redis://localhost"}, "a URL names a SQL store (postgresql, sqlite), not redis"),
        ({"store": "sqlite:///x.db", "port": "9464"}, "port must be an int"),
        ({"store": "sqlite:///x.db", "port": 70000}, "port must be 0 to 65535"),
        ({"store": "sqlite:///x.db", "buckets": [60, 30]}, "increasing order"),
        ({"store": "sqlite:///x.db", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_option_in_a_config_names_the_notifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    config = {"spec": "ingestion", "notifiers": {"prometheus": options}}
    with pytest.raises(ConfigError, match="notifier 'prometheus'") as caught:
        Tracker.from_config(config, plugins=[prometheus_metrics], load_entrypoints=False)
    assert message in str(caught.value)


def test_two_plugins_on_one_registry_is_an_error_that_says_what_to_do(
    registry: CollectorRegistry,
) -> None:
    store = MemoryStore()
    PrometheusMetrics(store, registry=registry)
    with pytest.raises(ValueError, match="one PrometheusMetrics per registry"):
        PrometheusMetrics(store, registry=registry)
    PrometheusMetrics(store, registry=registry, namespace="other")  # another prefix is fine


def test_unregister_frees_the_registry(registry: CollectorRegistry) -> None:
    store = MemoryStore()
    PrometheusMetrics(store, registry=registry).unregister()
    assert exposition(registry) == ""
    PrometheusMetrics(store, registry=registry)


def test_the_port_option_serves_the_registry_over_http(registry: CollectorRegistry) -> None:
    store = MemoryStore()
    metrics = PrometheusMetrics(store, registry=registry, port=0)
    with Tracker("ingestion", store=store, plugins=[metrics], load_entrypoints=False) as t:
        t.create_job("job-1")
        port = metrics.port
        assert port
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    samples = {
        sample.name: sample.labels
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert samples["phasekit_jobs"] == {"spec": "ingestion", "status": "not_started"}
    # Closing the tracker closed the plugin, and its server with it.
    assert metrics.port is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


# -- packaging ---------------------------------------------------------------------------------


def test_the_plugin_is_the_prometheus_entry_point_and_extra() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    entry = project["entry-points"]["phasekit"]["prometheus"]
    assert entry == "statemachine.plugins.prometheus_metrics"
    assert project["optional-dependencies"]["prometheus"] == ["prometheus_client>=0.20"]
    assert prometheus_metrics.register_notifiers() == {"prometheus": PrometheusMetrics}
    assert PrometheusMetrics.relayable is True


MISSING_CLIENT = """\
import sys
sys.modules["prometheus_client"] = None  # as if prometheus_client were not installed
from statemachine import PhaseKitError, Tracker
from statemachine.plugins import prometheus_metrics, sql
with Tracker("ingestion", plugins=[prometheus_metrics], load_entrypoints=False) as tracker:
    tracker.create_job("j")
try:
    prometheus_metrics.PrometheusMetrics(tracker.store)
except PhaseKitError as exc:
    print(exc)
"""


def test_without_prometheus_client_only_building_the_plugin_fails_naming_the_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MISSING_CLIENT], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pip install 'phasekit[prometheus]'" in result.stdout


# -- the documentation -------------------------------------------------------------------------

DOC = ROOT / "docs" / "observability.md"


def doc_section(title: str) -> str:
    return DOC.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_documented_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", doc_section("Prometheus"), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})


def test_the_documented_config_builds_the_plugin(tmp_path: Path) -> None:
    config = re.findall(r"```yaml\n(.*?)```", doc_section("Prometheus"), re.S)[0]
    (tmp_path / "phasekit.yaml").write_text(config.replace("port: 9464", "port: 0"))
    # The plugin is given explicitly, as its entry point is only there once phasekit is
    # installed again: the entry point of an older install is left out.
    env = {**os.environ, "PHASEKIT_DISABLE_PLUGINS": "prometheus"}
    script = (
        "from statemachine import Tracker\n"
        "from statemachine.plugins import prometheus_metrics\n"
        "with Tracker.from_config('phasekit.yaml', plugins=[prometheus_metrics]) as tracker:\n"
        "    metrics = tracker.relay.notifiers['prometheus']\n"
        "    tracker.create_job('j').phases['discovery'].start()\n"
        "    print(metrics.port)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0


def test_the_documented_metrics_are_the_exposed_ones(registry: CollectorRegistry) -> None:
    PrometheusMetrics(MemoryStore(), registry=registry)
    exposed = {f.name for f in text_string_to_metric_families(exposition(registry))}
    documented = set(re.findall(r"^\| `(phasekit_\w+)`", doc_section("Prometheus"), re.M))
    assert {name.removesuffix("_total") for name in documented} == exposed
