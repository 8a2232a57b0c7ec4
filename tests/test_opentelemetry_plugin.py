"""The opentelemetry plugin: a span per finished phase, from its stored start, in its job's trace.

Spans are read from the OpenTelemetry SDK's in-memory exporter, on a TracerProvider of the
test's own; trackers are real, on the memory store and on SQLite files, and one phase is
started by another process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from statemachine.plugins import opentelemetry_tracing, sql
from statemachine.plugins.opentelemetry_tracing import OpenTelemetryTracing, with_trace_context
from statemachine.plugins.sql import register_stores

from statemachine import (
    MemoryStore,
    PersistenceError,
    PhaseChanged,
    PhaseKitError,
    Relay,
    Store,
    Tracker,
    open_store,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
#: The plugins of a tracker in these tests: the SQL stores, without other installed plugins.
PLUGINS = [sql]


class Clock:
    """A tracker clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def ns(at: datetime) -> int:
    return round(at.timestamp() * 1_000_000) * 1000


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        opened: Store = MemoryStore()
    else:
        opened = open_store(f"sqlite:///{tmp_path / 'jobs.db'}", register_stores())
    yield opened
    opened.close()


def spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    """The finished spans by name (each name once)."""
    found = exporter.get_finished_spans()
    by_name = {span.name: span for span in found}
    assert len(by_name) == len(found), [span.name for span in found]
    return by_name


def tracked(store: Store, tracing: OpenTelemetryTracing, clock: Clock) -> Tracker:
    return Tracker("ingestion", store=store, plugins=[tracing], load_entrypoints=False, clock=clock)


# -- the span of a phase -----------------------------------------------------------------------


def test_a_finished_phase_is_one_span_from_its_started_at_to_its_completed_at(
    store: Store, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = Clock()
    with tracked(store, OpenTelemetryTracing(store, tracer_provider=provider), clock) as tracker:
        job = tracker.create_job("job-1", metadata={"traceparent": TRACEPARENT})
        job.phases["discovery"].start()
        clock.advance(30)
        job.phases["discovery"].pause()  # not a terminal status: no span yet
        clock.advance(60)
        job.phases["discovery"].resume()
        assert exporter.get_finished_spans() == ()
        job.phases["discovery"].update_progress(50, 200)
        clock.advance(10)
        job.phases["discovery"].complete()
        stored = tracker.get_job("job-1").phases["discovery"]
    span = spans(exporter)["ingestion/discovery"]
    assert stored.started_at == T0
    assert stored.completed_at == T0 + timedelta(seconds=100)
    assert (span.start_time, span.end_time) == (ns(T0), ns(T0 + timedelta(seconds=100)))
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "phasekit.spec": "ingestion",
        "phasekit.phase": "discovery",
        "phasekit.status": "completed",
        "phasekit.outcome": "success",
        "phasekit.job_id": "job-1",
        "phasekit.trigger": "complete",
        "phasekit.items_processed": 50,
        "phasekit.items_total": 200,
    }


def test_a_failed_phase_has_status_error_with_its_error(
    store: Store, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = Clock()
    with tracked(store, OpenTelemetryTracing(store, tracer_provider=provider), clock) as tracker:
        job = tracker.create_job("job-1")
        job.phases["extraction"].start()
        clock.advance(5)
        job.phases["extraction"].fail("disk full")
        job.phases["loading"].fail()  # failed before it started, without an error message
    found = spans(exporter)
    failed = found["ingestion/extraction"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "disk full"
    assert failed.attributes is not None
    assert failed.attributes["phasekit.outcome"] == "failure"
    assert failed.end_time == ns(T0 + timedelta(seconds=5))
    never = found["ingestion/loading"]
    assert never.status.description == "phase ended in status failed"
    assert never.start_time == never.end_time
    assert never.attributes is not None
    assert never.attributes["phasekit.never_started"] is True


# -- the parent --------------------------------------------------------------------------------


def test_the_span_joins_the_trace_whose_context_the_job_keeps(
    store: Store, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")
    tracing = OpenTelemetryTracing(store, tracer_provider=provider)
    with Tracker("ingestion", store=store, plugins=[tracing], load_entrypoints=False) as tracker:
        with tracer.start_as_current_span("POST /jobs") as request:
            job = tracker.create_job("job-1", metadata=with_trace_context({"source": "s3://in"}))
        with tracer.start_as_current_span("unrelated work"):
            job.phases["discovery"].start()
            job.phases["discovery"].complete()
    span = spans(exporter)["ingestion/discovery"]
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context is not None
    assert span.context.trace_id == request.get_span_context().trace_id


@pytest.mark.parametrize("metadata", [{}, {"traceparent": "00-not-a-trace-01"}])
def test_without_a_valid_trace_context_each_phase_starts_its_own_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter, metadata: dict[str, Any]
) -> None:
    store = MemoryStore()
    tracer = provider.get_tracer("test")
    tracing = OpenTelemetryTracing(store, tracer_provider=provider)
    with Tracker("ingestion", store=store, plugins=[tracing], load_entrypoints=False) as tracker:
        job = tracker.create_job("job-1", metadata=metadata)
        with tracer.start_as_current_span("a span that is current when the phase ends"):
            for phase in ("discovery", "extraction"):
                job.phases[phase].start()
                job.phases[phase].complete()
    found = spans(exporter)
    first, second = found["ingestion/discovery"], found["ingestion/extraction"]
    assert first.parent is None
    assert second.parent is None
    assert first.context is not None
    assert second.context is not None
    assert first.context.trace_id != second.context.trace_id


WORKER = """\
import sys
from statemachine import Tracker
from statemachine.plugins import sql
url, traceparent = sys.argv[1], sys.argv[2]
with Tracker("ingestion", store=url, plugins=[sql], load_entrypoints=False) as tracker:
    tracker.create_job("job-x", metadata={"traceparent": traceparent})
    tracker.fire("job-x", "extraction", "start")
"""


def test_a_phase_started_in_another_process_is_one_span_in_its_trace(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    subprocess.run(
        [sys.executable, "-c", WORKER, url, TRACEPARENT], check=True, timeout=60, cwd=tmp_path
    )
    here = time.time_ns()
    tracing = OpenTelemetryTracing(url, tracer_provider=provider)  # its own connection
    with Tracker("ingestion", store=url, plugins=[*PLUGINS, tracing], load_entrypoints=False) as t:
        t.fire("job-x", "extraction", "complete")
        stored = t.get_job("job-x").phases["extraction"]
    span = spans(exporter)["ingestion/extraction"]
    assert stored.started_at is not None
    assert stored.completed_at is not None
    assert span.start_time == ns(stored.started_at) < here  # the other process's start
    assert span.end_time == ns(stored.completed_at)
    assert span.parent is not None
    assert span.parent.is_remote
    assert span.parent.span_id == PARENT_ID
    assert span.context is not None
    assert span.context.trace_id == TRACE_ID


# -- relayed delivery --------------------------------------------------------------------------


def test_relayed_each_phase_gets_one_span_even_when_an_event_comes_twice(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    tracing = OpenTelemetryTracing(url, tracer_provider=provider)
    with Tracker(
        "ingestion",
        store=url,
        plugins=PLUGINS,
        notifiers={"opentelemetry": tracing},
        load_entrypoints=False,
    ) as tracker:
        job = tracker.create_job("job-1", metadata={"traceparent": TRACEPARENT})
        job.phases["discovery"].start()
        job.phases["discovery"].complete()
        job.phases["extraction"].start()
        job.phases["extraction"].fail("disk full")
    # tracker.close() let the relay deliver everything; now deliver it all again, as a relay
    # that lost its cursor would.
    again = open_store(url, register_stores())
    relay = Relay(again, {"opentelemetry": tracing})
    for logged in relay.log.read_events(0):
        getattr(tracing, logged.event.type, lambda event: None)(event=logged.event)
    again.close()
    found = spans(exporter)
    assert set(found) == {"ingestion/discovery", "ingestion/extraction"}
    assert found["ingestion/extraction"].status.status_code is StatusCode.ERROR


def test_a_job_deleted_before_the_relay_got_to_it_gets_no_span_and_no_retry(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    store = MemoryStore()
    tracing = OpenTelemetryTracing(store, tracer_provider=provider)
    with Tracker(
        "ingestion",
        store=store,
        notifiers={"opentelemetry": tracing},
        relay="external",
        load_entrypoints=False,
    ) as tracker:
        job = tracker.create_job("job-1")
        job.phases["discovery"].start()
        job.phases["discovery"].complete()
        tracker.delete_job("job-1")
        relay = Relay(store, {"opentelemetry": tracing})
        relay.run_once()
        relay.stop()
    assert relay.counts()["opentelemetry"]["failures"] == 0
    assert exporter.get_finished_spans() == ()


def test_a_store_that_cannot_be_read_raises_so_the_relay_tries_again(
    tmp_path: Path, provider: TracerProvider
) -> None:
    tracing = OpenTelemetryTracing(f"sqlite:///{tmp_path / 'jobs.db'}", tracer_provider=provider)
    tracing.close()  # closes the store it opened
    event = PhaseChanged(
        job_id="job-1", version=3, phase="discovery", trigger="complete", source="running",
        dest="completed",
    )  # fmt: skip
    with pytest.raises(PersistenceError):
        tracing.phase_changed(event=event)


def test_a_tracker_config_builds_it_by_name(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    config = {
        "spec": "ingestion",
        "store": url,
        "notifiers": {"opentelemetry": {"store": url, "tracer_provider": provider}},
    }
    plugins = [*PLUGINS, opentelemetry_tracing]
    with Tracker.from_config(config, plugins=plugins, load_entrypoints=False) as tracker:
        job = tracker.create_job("job-1")
        job.phases["discovery"].start()
        job.phases["discovery"].complete()
    assert set(spans(exporter)) == {"ingestion/discovery"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give it the tracker's store"),
        ({"store": "memory://"}, "pass the store object"),
        ({"store": 42}, "must be a Store or a store URL"),
        ({"store": "sqlite:///x.db", "tracer_provider": "global"}, "must be a TracerProvider"),
        ({"store": "sqlite:///x.db", "propagator": "w3c"}, "must be a TextMapPropagator"),
    ],
)
def test_a_bad_option_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PhaseKitError, match="opentelemetry") as caught:
        OpenTelemetryTracing(**options)
    assert message in str(caught.value)


# -- the trace context in metadata -------------------------------------------------------------


def test_with_trace_context_adds_the_current_span_to_a_copy_of_the_metadata(
    provider: TracerProvider,
) -> None:
    given = {"source": "s3://in"}
    assert with_trace_context(given) == given  # no current span: nothing to add
    with provider.get_tracer("test").start_as_current_span("request") as span:
        metadata = with_trace_context(given)
    context = span.get_span_context()
    assert metadata == {
        "source": "s3://in",
        "traceparent": (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
        ),
    }
    assert given == {"source": "s3://in"}


# -- packaging ---------------------------------------------------------------------------------


def test_the_plugin_is_the_opentelemetry_entry_point_and_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entry = project["entry-points"]["phasekit"]["opentelemetry"]
    assert entry == "statemachine.plugins.opentelemetry_tracing"
    assert project["optional-dependencies"]["opentelemetry"] == ["opentelemetry-api>=1.24"]
    assert opentelemetry_tracing.register_notifiers() == {"opentelemetry": OpenTelemetryTracing}
    assert OpenTelemetryTracing.relayable is True


MISSING_API = """\
import sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
from statemachine import PhaseKitError, Tracker
from statemachine.plugins import opentelemetry_tracing
with Tracker("ingestion", plugins=[opentelemetry_tracing], load_entrypoints=False) as tracker:
    tracker.create_job("j")
for build in (lambda: opentelemetry_tracing.OpenTelemetryTracing(tracker.store),
              opentelemetry_tracing.with_trace_context):
    try:
        build()
    except PhaseKitError as exc:
        print(exc)
"""


def test_without_the_api_only_using_the_plugin_fails_naming_the_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MISSING_API], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("pip install 'phasekit[opentelemetry]'") == 2


# -- the documentation -------------------------------------------------------------------------

DOC = ROOT / "docs" / "observability.md"


def doc_section(title: str) -> str:
    return DOC.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", doc_section("OpenTelemetry"), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})


def test_the_documented_config_builds_the_plugin(tmp_path: Path) -> None:
    config = re.findall(r"```yaml\n(.*?)```", doc_section("OpenTelemetry"), re.S)[0]
    (tmp_path / "phasekit.yaml").write_text(config)
    # The plugin is given explicitly, as its entry point is only there once phasekit is
    # installed again: the entry point of an older install is left out.
    env = {**os.environ, "PHASEKIT_DISABLE_PLUGINS": "opentelemetry"}
    script = (
        "from statemachine import Tracker\n"
        "from statemachine.plugins import opentelemetry_tracing\n"
        "with Tracker.from_config('phasekit.yaml', plugins=[opentelemetry_tracing]) as tracker:\n"
        "    print(tracker.relay.notifiers['opentelemetry'])\n"
        "    job = tracker.create_job('j')\n"
        "    job.phases['discovery'].start()\n"
        "    job.phases['discovery'].complete()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "<OpenTelemetryTracing store=SQLStore>" in result.stdout
