"""The redis notifier: one XADD per event on a real Redis server, raising when it failed."""

from __future__ import annotations

import inspect
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import statemachine.plugins.redis_notifier as redis_plugin
from statemachine.plugins.redis_notifier import RedisNotifier

from statemachine import (
    ConfigError,
    DeliveryError,
    Event,
    PermanentDeliveryError,
    PhaseChanged,
    Tracker,
    load_spec,
    parse_event,
)

from .conftest import Recorder

ROOT = Path(__file__).resolve().parent.parent

Entry = tuple[str, dict[str, str]]
Reader = Callable[[], list[Entry]]


@pytest.fixture
def stream(redis_url: str) -> Iterator[str]:
    """A stream key of this test alone, deleted afterwards."""
    name = f"phasekit-test-{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(name)
    finally:
        client.close()


@pytest.fixture
def entries(redis_url: str, stream: str) -> Iterator[Reader]:
    """Reads the test's stream back: every entry, oldest first, as strings."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    def read() -> list[Entry]:
        return list(client.xrange(stream))

    yield read
    client.close()


@pytest.fixture
def notifier(redis_url: str, stream: str) -> Iterator[RedisNotifier]:
    n = RedisNotifier(redis_url, stream, timeout=2)
    yield n
    n.close()


def _event(version: int = 1, job_id: str = "job-1") -> PhaseChanged:
    return PhaseChanged(
        job_id=job_id, version=version, phase="p", trigger="start", source="a", dest="b"
    )


def _deliver(notifier: RedisNotifier, event: Event) -> None:
    """Call the event's hook, as the relay does: by its type, with a keyword."""
    getattr(notifier, event.type)(event=event)


# -- what is sent ----------------------------------------------------------------------------


def test_every_event_is_one_entry_with_its_fields_and_json(
    notifier: RedisNotifier, broker_events: list[Event], entries: Reader
) -> None:
    for event in broker_events:
        _deliver(notifier, event)
    found = entries()
    assert len(found) == len(broker_events)
    for (_, fields), event in zip(found, broker_events, strict=True):
        assert fields == {
            "event_id": event.event_id,
            "type": event.type,
            "job_id": event.job_id,
            "version": str(event.version),
            "event": event.model_dump_json(),
        }
        assert parse_event(fields["event"]) == event


def test_deliver_returns_the_entry_id(notifier: RedisNotifier, entries: Reader) -> None:
    entry_id = notifier.deliver(_event())
    assert [entry for entry, _ in entries()] == [entry_id]


def test_maxlen_trims_the_stream_approximately(redis_url: str, stream: str) -> None:
    notifier = RedisNotifier(redis_url, stream, maxlen=10)
    try:
        for version in range(1, 1001):
            notifier.deliver(_event(version))
    finally:
        notifier.close()
    client = redis.Redis.from_url(redis_url)
    try:
        length = client.xlen(stream)
    finally:
        client.close()
    # MAXLEN ~ trims whole nodes of the stream (100 entries each by default), never below 10.
    assert 10 <= length <= 200


def test_events_option_sends_only_the_chosen_types(
    redis_url: str, stream: str, broker_events: list[Event], entries: Reader
) -> None:
    notifier = RedisNotifier(redis_url, stream, events=["phase_changed", "job_deleted"])
    try:
        for event in broker_events:
            _deliver(notifier, event)
    finally:
        notifier.close()
    assert [fields["type"] for _, fields in entries()] == ["phase_changed", "job_deleted"]


def test_deliveries_from_many_threads_all_arrive(notifier: RedisNotifier, entries: Reader) -> None:
    def send(thread: int) -> None:
        for version in range(1, 51):
            notifier.deliver(_event(version, job_id=f"job-{thread}"))

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = [(fields["job_id"], int(fields["version"])) for _, fields in entries()]
    assert sorted(found) == sorted((f"job-{t}", v) for t in range(8) for v in range(1, 51))


# -- failures --------------------------------------------------------------------------------


def test_a_server_that_is_down_raises_delivery_error_at_once(refused_port: int) -> None:
    notifier = RedisNotifier(f"redis://127.0.0.1:{refused_port}/0", timeout=5)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"ConnectionError") as caught:
        notifier.phase_changed(event=_event())
    assert time.monotonic() - started < 2
    assert not isinstance(caught.value, PermanentDeliveryError)  # the relay retries it
    notifier.close()


def test_a_server_that_never_answers_raises_delivery_error_within_the_timeout(
    silent_port: int,
) -> None:
    notifier = RedisNotifier(f"redis://127.0.0.1:{silent_port}/0", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"TimeoutError"):
        notifier.phase_changed(event=_event())
    # One attempt: redis-py's own retries are off, as the relay retries.
    assert time.monotonic() - started < 1.5
    notifier.close()


def test_a_key_that_is_not_a_stream_is_a_permanent_delivery_error(
    redis_url: str, stream: str, notifier: RedisNotifier
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(stream, "not a stream")
    finally:
        client.close()
    with pytest.raises(PermanentDeliveryError, match=r"holds something other than a stream"):
        notifier.phase_changed(event=_event())


def test_the_password_is_in_no_repr_error_or_log_line(
    refused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://:s3cret@127.0.0.1:{refused_port}/0"
    notifier = RedisNotifier(url)
    with pytest.raises(DeliveryError) as caught:
        notifier.phase_changed(event=_event())
    notifier.close()
    assert notifier.url == f"redis://127.0.0.1:{refused_port}/0"
    shown = [repr(notifier), str(caught.value), repr(caught.value), caplog.text]
    assert not [text for text in shown if "s3cret" in text]


def test_an_invalid_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match=r"redis url is not a valid URL") as caught:
        RedisNotifier("redis://:s3cret@127.0.0.1:port/0")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": 6379}, r"redis url must be a string"),
        ({"url": "http://127.0.0.1:6379"}, r"redis url must start with redis://"),
        ({"url": "redis://:s3cret@/0"}, r"redis url has no host"),
        ({"stream": ""}, r"redis stream must be a non-empty string"),
        ({"maxlen": 0}, r"redis maxlen must be > 0"),
        ({"maxlen": 1.5}, r"redis maxlen must be an integer"),
        ({"timeout": 0}, r"redis timeout must be > 0"),
        ({"timeout": True}, r"redis timeout must be a number"),
        ({"events": ["phase_change"]}, r"redis events: unknown event type\(s\) 'phase_change'"),
        ({"events": []}, r"redis events is empty"),
    ],
)
def test_an_invalid_option_is_a_value_error_naming_it(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        RedisNotifier(**options)  # type: ignore[arg-type]
    assert "s3cret" not in str(caught.value)


def test_after_close_a_delivery_raises_delivery_error(notifier: RedisNotifier) -> None:
    notifier.close()
    with pytest.raises(DeliveryError, match=r"closed"):
        notifier.phase_changed(event=_event())


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
def test_deliveries_resume_once_a_restarted_server_answers(
    refused_port: int, tmp_path: Path
) -> None:
    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            ["redis-server", "--port", str(refused_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        probe = redis.Redis(port=refused_port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        probe.close()
        return server

    notifier = RedisNotifier(f"redis://127.0.0.1:{refused_port}/0", timeout=1)
    server = start()
    try:
        notifier.deliver(_event(1))
        server.terminate()
        server.wait(10)
        with pytest.raises(DeliveryError):
            notifier.deliver(_event(2))
        server = start()
        notifier.deliver(_event(3))  # a new connection, without a failed first attempt
    finally:
        notifier.close()
        server.terminate()
        server.wait(10)


# -- in a tracker, and as a plugin ------------------------------------------------------------


def test_a_tracker_sends_every_event_of_a_job(
    notifier: RedisNotifier, entries: Reader, recorder: Recorder
) -> None:
    plugins = [recorder, notifier]
    with Tracker(load_spec("ingestion"), plugins=plugins, load_entrypoints=False) as tracker:
        job = tracker.create_job("job-42")
        job.phases["discovery"].start()
        job.phases["discovery"].update_progress(items_processed=5, items_total=10)
        job.phases["discovery"].complete()
        job.phases["extraction"].start()
        job.phases["extraction"].fail("disk full")
    found = [parse_event(fields["event"]) for _, fields in entries()]
    assert found == recorder.events
    assert {"job_created", "phase_changed", "progress_updated", "job_status_changed"} == {
        e.type for e in found
    }
    assert notifier.url in repr(notifier)  # closed with the tracker
    assert "closed" in repr(notifier)


def test_a_config_names_the_redis_notifier_and_every_event_arrives(
    redis_url: str, stream: str, entries: Reader
) -> None:
    config = {"spec": "ingestion", "notifiers": {"redis": {"url": redis_url, "stream": stream}}}
    with Tracker.from_config(config) as tracker:
        job = tracker.create_job("job-7")
        job.phases["discovery"].start()
        version = job.version
    # Delivered in the committing thread, or by the relay from the event log: wait for it.
    deadline = time.monotonic() + 10
    while len(entries()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    found = [parse_event(fields["event"]) for _, fields in entries()]
    assert [e.type for e in found] == ["job_created", "phase_changed", "job_status_changed"]
    assert found[-1].version == version


def test_a_bad_option_in_a_config_names_the_notifier_and_the_option() -> None:
    config = {"spec": "ingestion", "notifiers": {"redis": {"maxlen": 0}}}
    with pytest.raises(ConfigError, match=r"notifier 'redis': redis maxlen must be > 0"):
        Tracker.from_config(config)


def test_the_plugin_registers_the_redis_notifier_under_its_entry_point() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["phasekit"]["redis"]
    assert entry == "statemachine.plugins.redis_notifier"
    assert redis_plugin.register_notifiers() == {"redis": RedisNotifier}
    assert RedisNotifier.relayable is True


MISSING_DRIVER = """\
import sys
sys.modules["redis"] = None  # as if the redis package were not installed
from statemachine import PhaseKitError
from statemachine.plugins import redis_notifier
assert redis_notifier.register_notifiers() == {"redis": redis_notifier.RedisNotifier}
try:
    redis_notifier.RedisNotifier()
except PhaseKitError as exc:
    print(exc)
"""


def test_without_the_redis_package_the_notifier_names_the_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MISSING_DRIVER], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pip install 'phasekit[redis]'" in result.stdout


# -- without a server, and in CI --------------------------------------------------------------


def run_pytest_without_redis(port: int, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PHASEKIT_REDIS_URL"] = f"redis://:s3cret@127.0.0.1:{port}/0"  # nobody answers
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_redis_notifier.py", "-k",
         "test_deliver_returns_the_entry_id", "-p", "no:cacheprovider", "-q", "-rs"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_without_a_server_redis_tests_are_skipped_saying_how_to_enable_them(
    refused_port: int,
) -> None:
    result = run_pytest_without_redis(refused_port, ci=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "set PHASEKIT_REDIS_URL=redis://host:port/db" in result.stdout
    assert f"Redis tests skipped: no Redis answered on redis://127.0.0.1:{refused_port}/0" in (
        result.stdout
    )
    assert "s3cret" not in result.stdout


def test_in_ci_a_redis_test_without_a_server_fails_the_run(refused_port: int) -> None:
    result = run_pytest_without_redis(refused_port, ci=True)
    assert result.returncode == 1, result.stdout
    assert "Redis tests must run in CI: no Redis answered on" in result.stdout
    assert "Redis tests failed, as CI requires them" in result.stdout
    assert "skipped" not in result.stdout


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
def test_services_sh_starts_a_redis_when_none_answers_and_stops_it_at_exit(
    refused_port: int, nats_url: str
) -> None:
    result = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{ROOT / ".ci" / "services.sh"}"; '
         'echo "url=$PHASEKIT_REDIS_URL"'],
        check=False, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CI": "true", "PHASEKIT_NATS_URL": nats_url,
             "PHASEKIT_REDIS_URL": f"redis://:s3cret@127.0.0.1:{refused_port}/0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "started for this run" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    url = result.stdout.split("url=")[1].strip()
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):  # stopped when the shell exited
        client.ping()
    client.close()


# -- docs/notifiers.md -----------------------------------------------------------------------

NOTIFIERS_DOC = ROOT / "docs" / "notifiers.md"


def _redis_section() -> str:
    return NOTIFIERS_DOC.read_text().split("\n## redis\n", 1)[1].split("\n## ", 1)[0]


def test_the_documented_options_are_the_notifiers_options() -> None:
    table = _redis_section().split("| option |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert documented == list(inspect.signature(RedisNotifier).parameters)


def test_the_documented_consumer_handles_each_event_once_and_acknowledges_it(
    redis_url: str,
    stream: str,
    notifier: RedisNotifier,
    broker_events: list[Event],
    capsys: pytest.CaptureFixture[str],
) -> None:
    section = _redis_section().split("### Consuming", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    namespace: dict[str, object] = {"__name__": "consumer"}
    exec(compile(found[1], str(NOTIFIERS_DOC), "exec"), namespace)
    consume = namespace["consume"]
    assert callable(consume)
    for event in broker_events:
        _deliver(notifier, event)
    _deliver(notifier, broker_events[1])  # the relay sent it again: a second entry
    group = f"group-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        capsys.readouterr()
        assert consume(client, stream, group, block_ms=100) == len(broker_events) + 1
        handled = capsys.readouterr().out.splitlines()
        assert handled == [f"{e.type} {e.job_id} {e.version}" for e in broker_events]
        assert client.xpending(stream, group)["pending"] == 0
        assert consume(client, stream, group, block_ms=100) == 0
    finally:
        client.delete(*client.keys(f"phasekit:seen:{group}:*"))
        client.close()
