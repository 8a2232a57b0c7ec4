"""Scratch databases for the durable figures: a SQLite file, or a PostgreSQL schema, and back.

Every benchmark database is made here and removed afterwards: SQLite files live in a
temporary folder; PostgreSQL tables live in a schema of their own (``phasekit_bench_…``),
dropped with everything in it at the end.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from statemachine.plugins.sql import SQLStore, build_tables, store_url

from statemachine import PhaseSet, Tracker

from .handwritten import HandWrittenJob

__all__ = [
    "PG_ENV",
    "Database",
    "StoreTables",
    "libpq_url",
    "pg_schema",
    "pg_unusable",
    "sqlite_database",
]

#: Where the PostgreSQL server's URL comes from when --pg-url is not given.
PG_ENV = "PHASEKIT_PG_URL"
STORE_PREFIX = "store_"
HAND_PREFIX = "hand_"


def libpq_url(url: str) -> str:
    """``url`` as libpq (psycopg's ``connect``) reads it: ``postgresql+psycopg://`` is the
    SQLAlchemy spelling of ``postgresql://``, which the store also takes."""
    for spelling in ("postgresql+psycopg://", "postgres+psycopg://"):
        if url.startswith(spelling):
            return "postgresql://" + url.removeprefix(spelling)
    return url


@dataclass(frozen=True, slots=True)
class Database:
    """Where the store's tables and the hand-written ones live (same DDL, two prefixes)."""

    backend: str  # "sqlite" or "postgresql"
    store_url: str
    schema: str | None
    hand_target: str  # a SQLite file, or the PostgreSQL URL

    def tracker(self, spec: PhaseSet, **options: Any) -> Tracker:
        """A Tracker on the SQL store in this database, no plugins."""
        store = SQLStore(self.store_url, schema=self.schema, table_prefix=STORE_PREFIX)
        return Tracker(spec, store=store, load_entrypoints=False, **options)

    def connect(self) -> Any:
        """A driver connection for the hand-written job, set up as the store sets up its own."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.hand_target, isolation_level=None)
            for pragma in (
                "PRAGMA busy_timeout = 30000",
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                "PRAGMA foreign_keys = ON",
            ):
                conn.execute(pragma)
            return conn
        return psycopg.connect(self.hand_target)

    def hand_job(self, conn: Any, spec: PhaseSet, job_id: str) -> HandWrittenJob:
        """A new hand-written job (created in the database) on ``conn``."""
        prefix = HAND_PREFIX if self.schema is None else f'"{self.schema}".{HAND_PREFIX}'
        job = HandWrittenJob(conn, self.backend, prefix, job_id, spec.fingerprint)
        job.create()
        return job


def _create_hand_tables(url: str, schema: str | None) -> None:
    engine = create_engine(store_url(url))
    try:
        with engine.begin() as conn:
            build_tables(HAND_PREFIX, schema).metadata.create_all(conn)
    finally:
        engine.dispose()


@contextmanager
def sqlite_database(folder: Path) -> Iterator[Database]:
    """Two SQLite files in ``folder``: the store's and the hand-written job's."""
    store_file = folder / "store.db"
    hand_file = folder / "hand.db"
    db = Database("sqlite", f"sqlite:///{store_file}", None, str(hand_file))
    _create_hand_tables(f"sqlite:///{hand_file}", None)
    try:
        yield db
    finally:
        for path in folder.glob("*.db*"):
            path.unlink(missing_ok=True)


@contextmanager
def pg_schema(url: str) -> Iterator[Database]:
    """A schema of its own on the PostgreSQL server at ``url``, dropped afterwards."""
    schema = f"phasekit_bench_{secrets.token_hex(4)}"
    engine = create_engine(store_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        _create_hand_tables(url, schema)
        yield Database("postgresql", url, schema, url)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def pg_unusable(url: str | None) -> str | None:
    """Why the PostgreSQL figures are skipped, or None when the server answers."""
    if not url:
        return f"skipped: ${PG_ENV} is not set"
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"skipped: server unreachable: {why}"
    return None


class StoreTables:
    """The store's table names (schema-qualified) and columns, as a driver's SQL names them."""

    def __init__(self, db: Database) -> None:
        tables = build_tables(STORE_PREFIX, db.schema)
        self.job_columns = [c.name for c in tables.jobs.columns]
        self.phase_columns = [c.name for c in tables.phases.columns]
        where = "" if db.schema is None else f'"{db.schema}".'
        self.jobs = f"{where}{STORE_PREFIX}jobs"
        self.phases = f"{where}{STORE_PREFIX}phases"
        self.history = f"{where}{STORE_PREFIX}history"
        self.events = f"{where}{STORE_PREFIX}events"
