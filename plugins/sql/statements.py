"""The store's write statements: Core statements compiled once, run on the driver's cursor.

A commit is a handful of small statements; going through a SQLAlchemy ``Connection`` for each
would cost more than the database work itself. The statements are built with Core (so the
SQL and the bind types come from the dialect) and compiled once; values are converted by the
columns' own bind processors, exactly as SQLAlchemy would convert them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from .schema import Tables

__all__ = ["Prepared", "WriteStatements"]

Params = Mapping[str, Any]


class Prepared:
    """One statement compiled for one dialect; ``args(params)`` gives the driver's parameters."""

    __slots__ = ("_binds", "_positional", "sql")

    def __init__(
        self,
        statement: ClauseElement,
        dialect: Dialect,
        column_keys: Sequence[str] | None = None,
    ) -> None:
        compiled = cast(
            SQLCompiler,
            statement.compile(
                dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
            ),
        )
        self.sql: str = compiled.string
        processors: dict[str, Callable[[Any], Any] | None] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self._positional = bool(dialect.positional)
        names: Sequence[str] = (
            (compiled.positiontup or ()) if self._positional else list(processors)
        )
        escaped: dict[str, str] = dict(compiled.escaped_bind_names or {})
        self._binds: tuple[tuple[str, str, Callable[[Any], Any] | None], ...] = tuple(
            (name, escaped.get(name, name), processors[name]) for name in names
        )

    def args(self, params: Params) -> tuple[Any, ...] | dict[str, Any]:
        """``params`` (by bind name) converted and laid out as the driver's paramstyle wants."""
        if self._positional:
            return tuple(
                params[name] if process is None else process(params[name])
                for name, _, process in self._binds
            )
        return {
            key: params[name] if process is None else process(params[name])
            for name, key, process in self._binds
        }

    def many(self, rows: Sequence[Params]) -> list[tuple[Any, ...] | dict[str, Any]]:
        """``args`` of each row, for ``executemany``."""
        return [self.args(row) for row in rows]


JOB_COLUMNS = (
    "spec_name",
    "spec_fingerprint",
    "status",
    "current_phase",
    "progress",
    "version",
    "metadata",
    "created_at",
    "updated_at",
)
PHASE_COLUMNS = (
    "position",
    "status",
    "progress",
    "items_processed",
    "items_total",
    "started_at",
    "completed_at",
    "updated_at",
    "error",
    "entered_at",
    "deadline",
)
EVENT_COLUMNS = ("event_id", "job_id", "event_type", "version", "at", "event")
HISTORY_COLUMNS = (
    "job_id",
    "version",
    "event_type",
    "phase",
    "trigger",
    "source",
    "dest",
    "error",
    "at",
    "event",
    "idempotency_key",
)


class WriteStatements:
    """Every statement of ``create`` and ``save``, compiled for one dialect."""

    __slots__ = (
        "delete_job",
        "delete_phases",
        "insert_event",
        "insert_history",
        "insert_job",
        "insert_phase",
        "lock_job",
        "update_job",
        "update_phase",
        "version_of",
    )

    def __init__(self, tables: Tables, dialect: Dialect) -> None:
        jobs, phases, history, events = tables.jobs, tables.phases, tables.history, tables.events
        self.insert_job = Prepared(insert(jobs), dialect, ("job_id", *JOB_COLUMNS))
        self.insert_phase = Prepared(
            insert(phases), dialect, ("job_id", "phase_name", *PHASE_COLUMNS)
        )
        # inline: no RETURNING of the generated id, which nobody reads.
        self.insert_history = Prepared(insert(history).inline(), dialect, HISTORY_COLUMNS)
        self.insert_event = Prepared(insert(events).inline(), dialect, EVENT_COLUMNS)
        self.delete_job = Prepared(
            delete(jobs).where(
                jobs.c.job_id == bindparam("b_job_id"),
                jobs.c.version == bindparam("b_expected_version"),
            ),
            dialect,
        )
        # The compare-and-swap: it matches no row unless the stored version is the expected one.
        self.update_job = Prepared(
            update(jobs).where(
                jobs.c.job_id == bindparam("b_job_id"),
                jobs.c.version == bindparam("b_expected_version"),
            ),
            dialect,
            JOB_COLUMNS,
        )
        self.update_phase = Prepared(
            update(phases).where(
                phases.c.job_id == bindparam("b_job_id"),
                phases.c.phase_name == bindparam("b_phase_name"),
            ),
            dialect,
            PHASE_COLUMNS,
        )
        self.delete_phases = Prepared(
            delete(phases).where(phases.c.job_id == bindparam("b_job_id")), dialect
        )
        self.version_of = Prepared(
            select(jobs.c.version).where(jobs.c.job_id == bindparam("b_job_id")), dialect
        )
        self.lock_job = Prepared(
            select(jobs.c.version).where(jobs.c.job_id == bindparam("b_job_id")).with_for_update(),
            dialect,
        )
