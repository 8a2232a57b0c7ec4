"""The SQL store's tables, as SQLAlchemy Core metadata a host can add to its migrations.

``build_tables`` gives them with stock SQLAlchemy types only, so that a migration tool
(``alembic revision --autogenerate``) writes a migration that runs as written. A store reads
and writes the same tables through ``store_tables``, whose timestamp columns are typed
``UTCDateTime``: the same DDL, converting values to and from UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from statemachine import InvalidArgument, InvalidArgumentType

__all__ = [
    "NAMING_CONVENTION",
    "SCHEMA_VERSION",
    "Tables",
    "UTCDateTime",
    "build_tables",
    "check_identifier",
    "store_tables",
    "tables_metadata",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_identifier(value: str, what: str, *, allow_empty: bool = False) -> str:
    """``value`` if it is a plain SQL identifier (letters, digits, underscores)."""
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{what} must be a string, not {type(value).__name__}")
    if (allow_empty and value == "") or _IDENTIFIER.match(value):
        return value
    raise InvalidArgument(
        f"{what} {value!r} is not a plain SQL identifier; use letters, digits and underscores, "
        "not starting with a digit"
    )


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp, exact to the microsecond on every backend.

    PostgreSQL keeps ``timestamptz``. SQLite has no time zones: the value is stored as UTC
    text and comes back with ``tzinfo=UTC``. A naive datetime is refused, never guessed.

    Its DDL is its ``impl``'s, ``DateTime(timezone=True)``: the column type of the tables
    ``build_tables`` gives, which migrations create. The store's own ``Tables``
    (``store_tables``) use this type to read and write those columns.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # Every commit writes several timestamps: format them directly, in the text form
        # SQLAlchemy's SQLite DATETIME uses (and parses back), rather than in two steps.
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            v = _as_utc(value)
            return _SQLITE_FORMAT % (
                v.year,
                v.month,
                v.day,
                v.hour,
                v.minute,
                v.second,
                v.microsecond,
            )

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - a column edited by hand
            raise ValueError(f"expected a timestamp, found {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_SQLITE_FORMAT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone; use UTC")
    return value.astimezone(UTC)


#: The version of the store's tables. A store records it in its ``<prefix>schema`` table and
#: refuses, before writing anything, tables that record another one. Version 2 added the
#: event log, the relay's cursors and the dead letters, and the history's idempotency_key
#: column; version 3 the phases' entered_at and deadline columns and the deadline index. A
#: store that may create tables upgrades older tables by adding those.
SCHEMA_VERSION = 3

#: Constraint names, so that a host's migrations name them the same on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


@dataclass(frozen=True, slots=True)
class Tables:
    """The store's tables and the ``MetaData`` that holds them."""

    metadata: MetaData
    jobs: Table
    phases: Table
    history: Table
    specs: Table
    schema_info: Table
    events: Table
    event_sequence: Table
    relay_cursors: Table
    dead_letters: Table

    @property
    def added_in_version_2(self) -> tuple[Table, ...]:
        """The tables version 2 added (an upgrade from version 1 creates them)."""
        return (self.events, self.event_sequence, self.relay_cursors, self.dead_letters)


def build_tables(prefix: str = "phasekit_", schema: str | None = None) -> Tables:
    """The store's tables, named ``<prefix>jobs`` and so on, in ``schema`` if given.

    Stock SQLAlchemy types only (timestamps are ``DateTime(timezone=True)``): what a host's
    migrations create, e.g. Alembic's ``target_metadata = build_tables(prefix, schema).metadata``.
    Read through them, a SQLite timestamp comes back naive (its UTC text, parsed); the store
    reads through ``store_tables``, which gives every timestamp back in UTC.
    """
    return _tables(prefix, schema, DateTime(timezone=True))


def store_tables(prefix: str = "phasekit_", schema: str | None = None) -> Tables:
    """The tables of ``build_tables`` as the store reads and writes them: the same names,
    columns and DDL, with the timestamp columns typed ``UTCDateTime`` (aware UTC values in
    and out, on every backend)."""
    return _tables(prefix, schema, UTCDateTime())


def _tables(prefix: str, schema: str | None, timestamp: TypeEngine[datetime]) -> Tables:
    check_identifier(prefix, "table_prefix", allow_empty=True)
    if schema is not None:
        check_identifier(schema, "schema")
    metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    jobs_name = f"{prefix}jobs"
    jobs_ref = f"{schema}.{jobs_name}" if schema else jobs_name

    jobs = Table(
        jobs_name,
        metadata,
        Column("job_id", String, primary_key=True),
        Column("spec_name", String, nullable=False),
        Column("spec_fingerprint", String, nullable=False),
        Column("status", String, nullable=False),
        Column("current_phase", String, nullable=True),
        Column("progress", Double, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("metadata", JSON, nullable=False),
        Column("created_at", timestamp, nullable=False),
        Column("updated_at", timestamp, nullable=False),
        comment="One row per job: its aggregate, version and metadata.",
    )
    # Listing reads "most recently updated first, then by id": the indexes are in that order.
    newest_first = (jobs.c.updated_at.desc(), jobs.c.job_id)
    Index(f"ix_{prefix}jobs_updated", *newest_first)
    Index(f"ix_{prefix}jobs_status_updated", jobs.c.status, *newest_first)
    Index(f"ix_{prefix}jobs_spec_updated", jobs.c.spec_name, *newest_first)
    # Counting jobs per phase set and status (count_jobs) reads this index alone.
    Index(f"ix_{prefix}jobs_spec_status", jobs.c.spec_name, jobs.c.status)

    phases = Table(
        f"{prefix}phases",
        metadata,
        Column(
            "job_id",
            String,
            ForeignKey(f"{jobs_ref}.job_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("phase_name", String, primary_key=True),
        Column("position", Integer, nullable=False),
        Column("status", String, nullable=False),
        Column("progress", Double, nullable=False),
        Column("items_processed", BigInteger, nullable=False),
        Column("items_total", BigInteger, nullable=True),
        Column("started_at", timestamp, nullable=True),
        Column("completed_at", timestamp, nullable=True),
        Column("updated_at", timestamp, nullable=True),
        Column("error", Text, nullable=True),
        Column("entered_at", timestamp, nullable=True),
        # The phase's next deadline (its status's timeout or heartbeat); NULL only where its
        # status has none. Every commit writes it, so the sweep reads due phases from an index.
        Column("deadline", timestamp, nullable=True),
        comment="One row per job and phase: the phase's status, counters and timestamps.",
    )
    # "Jobs whose extraction is not_started": a worker finding work, without a scan.
    Index(f"ix_{prefix}phases_status", phases.c.phase_name, phases.c.status, phases.c.job_id)
    # "Phases past their deadline", earliest first: the sweep's read, as long as what is due.
    Index(
        f"ix_{prefix}phases_deadline",
        phases.c.deadline,
        postgresql_where=phases.c.deadline.is_not(None),
        sqlite_where=phases.c.deadline.is_not(None),
    )

    history = Table(
        f"{prefix}history",
        metadata,
        # INTEGER PRIMARY KEY is SQLite's rowid: autoincrementing and free.
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column(
            "job_id",
            String,
            ForeignKey(f"{jobs_ref}.job_id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("version", BigInteger, nullable=False),
        Column("event_type", String, nullable=False),
        Column("phase", String, nullable=True),
        Column("trigger", String, nullable=True),
        Column("source", String, nullable=True),
        Column("dest", String, nullable=True),
        Column("error", Text, nullable=True),
        Column("at", timestamp, nullable=False),
        Column("event", Text, nullable=False),
        # The caller's key for the change (a retried request commits it only once).
        Column("idempotency_key", String, nullable=True),
        comment="Append-only: a job's creation, then every status change, in commit order.",
    )
    Index(f"ix_{prefix}history_job", history.c.job_id, history.c.id)
    Index(
        f"ix_{prefix}history_idempotency",
        history.c.job_id,
        history.c.idempotency_key,
        unique=True,
        postgresql_where=history.c.idempotency_key.is_not(None),
        sqlite_where=history.c.idempotency_key.is_not(None),
    )

    specs = Table(
        f"{prefix}specs",
        metadata,
        Column("fingerprint", String, primary_key=True),
        Column("name", String, nullable=False),
        Column("definition", JSON, nullable=False),
        Column("first_seen", timestamp, nullable=False),
        comment="Every phase set the store has seen, by fingerprint.",
    )
    schema_info = Table(
        f"{prefix}schema",
        metadata,
        Column("name", String, primary_key=True),
        Column("version", Integer, nullable=False),
        comment="The version of these tables (one row, name 'phasekit').",
    )
    events = Table(
        f"{prefix}events",
        metadata,
        # The order of insertion; never reused, even once the log is pruned (AUTOINCREMENT).
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        # The order of commit, on PostgreSQL: transactions commit in another order than they
        # insert, so a reader numbers the committed rows that have none yet, one reader at a
        # time (the event_sequence row is the lock), and a position, once seen, has no
        # smaller one appearing after it. SQLite commits one transaction at a time: there
        # the id is the position, and this column stays empty.
        Column("position", BigInteger, nullable=True),
        Column("event_id", String, nullable=False),
        Column("job_id", String, nullable=False),
        Column("event_type", String, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("at", timestamp, nullable=False),
        Column("event", Text, nullable=False),
        comment="The event log: every committed event, in commit order (position).",
        sqlite_autoincrement=True,
    )
    # Both serve PostgreSQL's numbering. On SQLite they are partial on the rows with a
    # position, of which there are none there: they exist (a migration tool makes every
    # index of the metadata, on any database) and cost a commit nothing.
    numbered = events.c.position.is_not(None)
    Index(f"ix_{prefix}events_position", events.c.position, unique=True, sqlite_where=numbered)
    Index(
        f"ix_{prefix}events_unnumbered",
        events.c.id,
        postgresql_where=events.c.position.is_(None),
        sqlite_where=numbered,
    )
    event_sequence = Table(
        f"{prefix}event_sequence",
        metadata,
        Column("name", String, primary_key=True),
        Column("position", BigInteger, nullable=False),
        comment="The last position given to an event (one row, name 'events').",
    )
    relay_cursors = Table(
        f"{prefix}relay_cursors",
        metadata,
        Column("notifier", String, primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("retry_at", timestamp, nullable=True),
        Column("disabled", Text, nullable=True),
        Column("last_error", Text, nullable=True),
        Column("owner", String, nullable=True),
        Column("lease_until", timestamp, nullable=True),
        Column("updated_at", timestamp, nullable=False),
        comment="Per notifier: the last position delivered, retries, and the relay's lease.",
    )
    dead_letters = Table(
        f"{prefix}dead_letters",
        metadata,
        Column("notifier", String, primary_key=True),
        Column("position", BigInteger, primary_key=True),
        Column("event_id", String, nullable=False),
        Column("event", Text, nullable=False),
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("at", timestamp, nullable=False),
        comment="Events a notifier could not deliver, kept until delivered again.",
    )
    return Tables(
        metadata=metadata,
        jobs=jobs,
        phases=phases,
        history=history,
        specs=specs,
        schema_info=schema_info,
        events=events,
        event_sequence=event_sequence,
        relay_cursors=relay_cursors,
        dead_letters=dead_letters,
    )


def tables_metadata(table_prefix: str = "phasekit_", schema: str | None = None) -> MetaData:
    """The SQL store's tables as SQLAlchemy ``MetaData``, for a host's own migrations.

    ``build_tables(table_prefix, schema).metadata``: stock SQLAlchemy types only, so
    ``alembic revision --autogenerate`` against it gives a migration that runs as written
    and creates exactly the tables ``SQLStore(..., table_prefix=..., schema=...)`` uses;
    open the store with ``create_tables=False`` then. The ``<prefix>schema`` table is part
    of it: a store checks the version recorded there when it opens, and records it in
    tables without one (as a migration leaves them).
    """
    return build_tables(table_prefix, schema).metadata
