"""Shared fixtures: bundled phase sets, trackers on the memory store, and SQL stores."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from statemachine.plugins.sql import SQLStore, store_url

import statemachine
from statemachine import PhaseSet, Tracker, hookimpl


@pytest.fixture(scope="session")
def ingestion() -> PhaseSet:
    return statemachine.load_spec("ingestion")


class Recorder:
    """A plugin that records every notification it receives, in order."""

    def __init__(self) -> None:
        self.events: list[statemachine.Event] = []

    @hookimpl
    def job_created(self, event: statemachine.JobCreated) -> None:
        self.events.append(event)

    @hookimpl
    def phase_changed(self, event: statemachine.PhaseChanged) -> None:
        self.events.append(event)

    @hookimpl
    def progress_updated(self, event: statemachine.ProgressUpdated) -> None:
        self.events.append(event)

    @hookimpl
    def job_status_changed(self, event: statemachine.JobStatusChanged) -> None:
        self.events.append(event)

    @hookimpl
    def job_deleted(self, event: statemachine.JobDeleted) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def take(self) -> list[statemachine.Event]:
        """The events recorded since the last call."""
        events, self.events = self.events, []
        return events


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tracker(ingestion: PhaseSet, recorder: Recorder) -> Iterator[Tracker]:
    with Tracker(ingestion, plugins=[recorder], load_entrypoints=False) as t:
        yield t


# -- SQL stores: a SQLite file per test; PostgreSQL when a server answers -----------------------

PG_URL_ENV = "PHASEKIT_PG_URL"
#: Where the tests look for PostgreSQL when PHASEKIT_PG_URL is not set: the default address
#: (PHASEKIT_PG_HOST and PHASEKIT_PG_PORT change it, as for .ci/pg.sh), database ``test``, as
#: the users a local trust setup has.
PG_HOST = os.environ.get("PHASEKIT_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("PHASEKIT_PG_PORT", "5432")
PG_DEFAULT_URLS = tuple(
    f"postgresql://{user}@{PG_HOST}:{PG_PORT}/test" for user in ("postgres", "root")
)
PG_HOW_TO = (
    f"no server answered on {PG_HOST}:{PG_PORT} (database test); set {PG_URL_ENV}="
    "postgresql://user@host:port/db to run them"
)


def running_in_ci() -> bool:
    """Whether this is a CI run, where a skipped PostgreSQL test is a failure."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@functools.cache
def _find_postgres() -> tuple[str | None, str]:
    """The server of this run, and how it was found (once per run)."""
    url = os.environ.get(PG_URL_ENV, "").strip()
    if url:
        return url, f"from {PG_URL_ENV}"
    for candidate in PG_DEFAULT_URLS:
        try:
            import psycopg  # noqa: PLC0415 (only PostgreSQL tests need it)

            psycopg.connect(candidate, connect_timeout=2).close()
        except Exception:  # no server, no such user or database: try the next one
            continue
        return candidate, "found on the default address"
    return None, PG_HOW_TO


def postgres_url() -> str:
    """The PostgreSQL server of the tests; skips the test without one (fails it in CI)."""
    url, how = _find_postgres()
    if url:
        return url
    if running_in_ci():
        pytest.fail(f"PostgreSQL tests must run in CI: {how}", pytrace=False)
    pytest.skip(f"PostgreSQL tests need a server: {how}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say once which PostgreSQL server the run used, or why its tests were skipped."""
    if not _find_postgres.cache_info().currsize:
        return  # no PostgreSQL test was collected
    url, how = _find_postgres()
    if url:
        shown = store_url(url).render_as_string(hide_password=True)
        terminalreporter.write_line(f"PostgreSQL tests ran on {shown} ({how})")
    elif running_in_ci():
        terminalreporter.write_line(f"PostgreSQL tests failed, as CI requires them: {how}")
    else:
        terminalreporter.write_line(f"PostgreSQL tests skipped: {how}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") is not None:
        postgres_url()


@dataclass(frozen=True)
class StoreTarget:
    """Where a test's SQL store lives: a URL and the store options that go with it."""

    backend: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self, **overrides: Any) -> SQLStore:
        return SQLStore(self.url, **{**self.options, **overrides})


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[tuple[str, str]]:
    """A PostgreSQL schema of this test run, dropped at its end: (URL, schema)."""
    url = postgres_url()
    schema = f"phasekit_test_{secrets.token_hex(5)}"
    engine = create_engine(store_url(url))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        # Table by table, a few per transaction: one DROP SCHEMA ... CASCADE over the
        # thousands of tables a run makes takes a lock per object in one transaction, more
        # than the server's lock table holds (max_locks_per_transaction).
        with engine.connect() as conn:
            tables = (
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                    {"schema": schema},
                )
                .scalars()
                .all()
            )
        for start in range(0, len(tables), 20):
            with engine.begin() as conn:
                for table in tables[start : start + 20]:
                    conn.execute(text(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE'))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


_table_prefixes = itertools.count(1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """A fresh, empty place for a SQL store, on each backend."""
    if request.param == "sqlite":
        return StoreTarget("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
    url, schema = request.getfixturevalue("pg_schema")
    prefix = f"t{next(_table_prefixes)}_"
    return StoreTarget("postgresql", url, {"schema": schema, "table_prefix": prefix})


@pytest.fixture
def sql_store(store_target: StoreTarget) -> Iterator[SQLStore]:
    """A SQL store on ``store_target``, closed after the test."""
    store = store_target.open()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def pg_target(pg_schema: tuple[str, str]) -> StoreTarget:
    """A fresh place for a PostgreSQL store: the run's schema, a table prefix of its own."""
    url, schema = pg_schema
    prefix = f"t{next(_table_prefixes)}_"
    return StoreTarget("postgresql", url, {"schema": schema, "table_prefix": prefix})


def target_for(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget | None:
    """The store place a ``memory``/``sqlite``/``postgresql`` parametrised fixture asks for:
    None for memory, a SQLite file in ``tmp_path``, or a PostgreSQL prefix of its own."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return StoreTarget("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
    target: StoreTarget = request.getfixturevalue("pg_target")
    return target


@contextlib.contextmanager
def row_locked(store: SQLStore, url: str, job_id: str) -> Iterator[None]:
    """Another PostgreSQL session holds the lock on ``job_id``'s row until the block ends."""
    jobs = store.tables.jobs
    holder = psycopg.connect(url)
    try:
        holder.execute(
            f'SELECT 1 FROM "{jobs.schema}"."{jobs.name}" WHERE job_id = %s FOR UPDATE', (job_id,)
        )
        yield
    finally:
        holder.rollback()
        holder.close()


# -- Brokers: Redis and NATS JetStream when a server answers ----------------------------------

REDIS_URL_ENV = "PHASEKIT_REDIS_URL"
NATS_URL_ENV = "PHASEKIT_NATS_URL"
REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"
NATS_DEFAULT_URL = "nats://127.0.0.1:4222"


def shown_url(url: str) -> str:
    """A broker URL without its user, password or token, for messages."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}"


@functools.cache
def _find_redis() -> tuple[str | None, str]:
    """The Redis server of this run, and how it was found (once per run)."""
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    how = f"from {REDIS_URL_ENV}" if url else "found on the default address"
    url = url or REDIS_DEFAULT_URL
    try:
        import redis  # noqa: PLC0415 (only the Redis tests need it)

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # no driver, no server, a wrong password
        return None, (
            f"no Redis answered on {shown_url(url)} ({type(exc).__name__}); "
            f"set {REDIS_URL_ENV}=redis://host:port/db to run them"
        )
    return url, how


@functools.cache
def _find_nats() -> tuple[str | None, str]:
    """The NATS server (with JetStream) of this run, and how it was found (once per run)."""
    url = os.environ.get(NATS_URL_ENV, "").strip()
    how = f"from {NATS_URL_ENV}" if url else "found on the default address"
    url = url or NATS_DEFAULT_URL

    async def quiet(exc: Exception) -> None:
        """nats-py would log a refused connection as an error, with a traceback."""

    async def probe() -> None:
        import nats  # noqa: PLC0415 (only the NATS tests need it)

        client = await nats.connect(
            url,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            error_cb=quiet,
        )
        try:
            await client.jetstream(timeout=2).account_info()
        finally:
            await client.close()

    try:
        import asyncio  # noqa: PLC0415

        asyncio.run(asyncio.wait_for(probe(), 5))
    except Exception as exc:  # no driver, no server, JetStream not enabled
        return None, (
            f"no NATS server with JetStream answered on {shown_url(url)} "
            f"({type(exc).__name__}); set {NATS_URL_ENV}=nats://host:port to run them"
        )
    return url, how


_BROKERS = {"Redis": _find_redis, "NATS": _find_nats}


def _broker_url(name: str) -> str:
    url, how = _BROKERS[name]()
    if url:
        return url
    if running_in_ci():
        pytest.fail(f"{name} tests must run in CI: {how}", pytrace=False)
    pytest.skip(f"{name} tests need a server: {how}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server of the tests; skips the test without one (fails it in CI)."""
    return _broker_url("Redis")


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The NATS server (JetStream on) of the tests; skips without one (fails it in CI)."""
    return _broker_url("NATS")


class _BrokerSummary:
    """Says once which Redis and NATS servers the run used, or why their tests were skipped."""

    @staticmethod
    def pytest_terminal_summary(terminalreporter: Any) -> None:
        for name, find in _BROKERS.items():
            if not find.cache_info().currsize:
                continue  # none of its tests ran
            url, how = find()
            if url:
                terminalreporter.write_line(f"{name} tests ran on {shown_url(url)} ({how})")
            elif running_in_ci():
                terminalreporter.write_line(f"{name} tests failed, as CI requires them: {how}")
            else:
                terminalreporter.write_line(f"{name} tests skipped: {how}")


def pytest_configure(config: pytest.Config) -> None:
    # A plugin object of its own, so the PostgreSQL summary above keeps its hook.
    config.pluginmanager.register(_BrokerSummary(), "phasekit-broker-summary")


@pytest.fixture
def broker_events() -> list[statemachine.Event]:
    """One event of each type, of a job whose id no NATS subject could hold."""
    job = "job 7.*>ü"
    return [
        statemachine.JobCreated(
            job_id=job,
            version=1,
            spec="ingestion",
            phases=["discovery", "loading"],
            initial_status="not_started",
            metadata={"source": "s3://bucket/key", "tags": ["a", "ü"]},
        ),
        statemachine.PhaseChanged(
            job_id=job,
            version=2,
            phase="discovery",
            trigger="start",
            source="not_started",
            dest="running",
        ),
        statemachine.ProgressUpdated(
            job_id=job,
            version=3,
            phase="discovery",
            items_processed=5,
            items_total=None,
            progress=2.5,
            job_progress=0.6,
        ),
        statemachine.JobStatusChanged(
            job_id=job,
            version=3,
            old_status="not_started",
            new_status="running",
            old_current_phase=None,
            new_current_phase="discovery",
            progress=0.6,
        ),
        statemachine.JobDeleted(job_id=job, version=4),
    ]


@pytest.fixture
def refused_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers on them."""
    import socket  # noqa: PLC0415

    with socket.create_server(("127.0.0.1", 0), backlog=16) as sock:
        yield int(sock.getsockname()[1])
