"""The SQL store's tables, as SQLAlchemy Core metadata a host can add to its migrations."""

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
from sqlalchemy.types import TypeDecorator

from statemachine import InvalidArgument, InvalidArgumentType

__all__ = ["SCHEMA_VERSION", "Tables", "UTCDateTime", "build_tables", "check_identifier"]

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
#: refuses, before writing anything, tables that record another one.
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Tables:
    """The store's tables and the ``MetaData`` that holds them."""

    metadata: MetaData
    jobs: Table
    phases: Table
    history: Table
    specs: Table
    schema_info: Table


def build_tables(prefix: str = "phasekit_", schema: str | None = None) -> Tables:
    """The store's tables, named ``<prefix>jobs`` and so on, in ``schema`` if given."""
    check_identifier(prefix, "table_prefix", allow_empty=True)
    if schema is not None:
        check_identifier(schema, "schema")
    metadata = MetaData(schema=schema)
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
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        comment="One row per job: its aggregate, version and metadata.",
    )
    # Listing reads "most recently updated first, then by id": the indexes are in that order.
    newest_first = (jobs.c.updated_at.desc(), jobs.c.job_id)
    Index(f"ix_{prefix}jobs_updated", *newest_first)
    Index(f"ix_{prefix}jobs_status_updated", jobs.c.status, *newest_first)
    Index(f"ix_{prefix}jobs_spec_updated", jobs.c.spec_name, *newest_first)

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
        Column("started_at", UTCDateTime, nullable=True),
        Column("completed_at", UTCDateTime, nullable=True),
        Column("updated_at", UTCDateTime, nullable=True),
        Column("error", Text, nullable=True),
        comment="One row per job and phase: the phase's status, counters and timestamps.",
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
        Column("at", UTCDateTime, nullable=False),
        Column("event", Text, nullable=False),
        comment="Append-only: a job's creation, then every status change, in commit order.",
    )
    Index(f"ix_{prefix}history_job", history.c.job_id, history.c.id)

    specs = Table(
        f"{prefix}specs",
        metadata,
        Column("fingerprint", String, primary_key=True),
        Column("name", String, nullable=False),
        Column("definition", JSON, nullable=False),
        Column("first_seen", UTCDateTime, nullable=False),
        comment="Every phase set the store has seen, by fingerprint.",
    )
    schema_info = Table(
        f"{prefix}schema",
        metadata,
        Column("name", String, primary_key=True),
        Column("version", Integer, nullable=False),
        comment="The version of these tables (one row, name 'phasekit').",
    )
    return Tables(
        metadata=metadata,
        jobs=jobs,
        phases=phases,
        history=history,
        specs=specs,
        schema_info=schema_info,
    )
