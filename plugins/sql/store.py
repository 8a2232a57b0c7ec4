"""SQLStore: jobs, phases, history and phase sets in SQLite or PostgreSQL."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData, bindparam, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateSchema

from statemachine import (
    ConcurrentUpdateError,
    HistoryEvent,
    InvalidArgument,
    InvalidArgumentType,
    JobCreated,
    JobExists,
    JobNotFound,
    JobRecord,
    PersistenceError,
    PhaseChanged,
    parse_event,
)

from .engine import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_STATEMENT_TIMEOUT,
    WRITE_OPTION,
    configure_sqlite,
    create_store_engine,
    display_url,
)
from .rows import JobQueries, event_params, job_params, phase_params, records_from_rows
from .schema import SCHEMA_VERSION, Tables, build_tables
from .statements import WriteStatements

#: The largest value of the databases' 64-bit integers, and so of a limit or an offset.
_MAX_INTEGER = 2**63 - 1

__all__ = ["SQLStore"]


#: Jobs per query of ``load_many`` (SQLite allows 32,766 parameters; PostgreSQL 65,535).
LOAD_MANY_CHUNK = 500
#: Last-committed records kept per store, to write only the phase rows a commit changed.
KNOWN_RECORDS = 4096
# Serialises table creation between processes on PostgreSQL (an advisory lock key).
_CREATE_LOCK_KEY = 0x7068617365


class SQLStore:
    """Jobs in SQLite or PostgreSQL, through SQLAlchemy Core.

    ``SQLStore("sqlite:///jobs.db")`` or ``SQLStore("postgresql://user@host/db")``, or
    ``SQLStore(engine=host_engine)``. Every ``save`` is one transaction: a compare-and-swap
    on the job's version, the changed phase rows and the history rows, all or nothing.
    Safe to share between threads, processes and (on PostgreSQL) machines.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        table_prefix: str = "phasekit_",
        schema: str | None = None,
        create_tables: bool = True,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        if (url is None) == (engine is None):
            raise InvalidArgumentType(
                "SQLStore needs either a database URL or an engine (not both)"
            )
        if engine is None:
            assert url is not None
            engine = create_store_engine(
                url,
                synchronous=synchronous,
                busy_timeout=busy_timeout,
                lock_timeout=lock_timeout,
                statement_timeout=statement_timeout,
                **(engine_options or {}),
            )
            self._owns_engine = True
        else:
            if engine_options:
                raise InvalidArgumentType("engine_options apply to a store opened from a URL")
            if engine.dialect.name == "sqlite":
                configure_sqlite(engine, synchronous=synchronous, busy_timeout=busy_timeout)
            self._owns_engine = False
        backend = engine.dialect.name
        if backend not in ("sqlite", "postgresql"):
            raise InvalidArgument(
                f"the SQL store works with SQLite and PostgreSQL, not {backend!r}"
            )
        if backend == "sqlite" and schema is not None:
            raise InvalidArgument("schema= applies to PostgreSQL; a SQLite store is one file")
        if backend == "sqlite" and engine.url.database in (None, "", ":memory:"):
            raise InvalidArgument(
                "a SQLite store needs a file (sqlite:///jobs.db): without one, every connection "
                "gets a database of its own and nothing is kept; use memory:// for a store in "
                "this process"
            )
        self.engine = engine
        self.tables: Tables = build_tables(table_prefix, schema)
        self.schema = schema
        self.create_tables = create_tables
        self._sqlite = backend == "sqlite"
        self._name = display_url(engine.url)
        self._dbapi = engine.dialect.loaded_dbapi
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._writes = WriteStatements(self.tables, engine.dialect)
        self._queries = JobQueries(self.tables)
        self._known: dict[str, JobRecord] = {}
        self._known_lock = threading.Lock()
        self._specs_seen: set[str] = set()
        self._ready_lock = threading.Lock()
        self._ready = False
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLStore:
        """The store factory registered for ``sqlite://`` and ``postgresql://`` URLs."""
        return cls(url, **options)

    @property
    def metadata(self) -> MetaData:
        """The store's tables, for a host's migrations (e.g. Alembic's ``target_metadata``)."""
        return self.tables.metadata

    # -- the Store protocol ------------------------------------------------------------------

    def create(self, record: JobRecord, events: Sequence[HistoryEvent]) -> None:
        """Insert the job, its phases and its creation events in one transaction."""
        self._prepare()
        w = self._writes
        doing = f"create job {record.job_id!r}"
        try:  # values are converted before the transaction, to hold the write lock briefly
            job = w.insert_job.args(job_params(record))
            phases = self._phase_rows(record)
            history = self._history_rows(events)
        except (ValueError, TypeError) as exc:
            raise self._failure(exc, doing) from exc
        try:
            with self._transaction() as cursor:
                try:
                    cursor.execute(w.insert_job.sql, job)
                except self._dbapi.IntegrityError:
                    raise JobExists(record.job_id) from None
                if phases:
                    cursor.executemany(w.insert_phase.sql, phases)
                self._append(cursor, history)
        except self._dbapi.Error as exc:
            raise self._failure(exc, doing) from exc
        self._remember(record)

    def save(
        self, record: JobRecord, *, expected_version: int, events: Sequence[HistoryEvent]
    ) -> None:
        """Replace the job if it is at ``expected_version``, and append ``events``; atomic."""
        self._prepare()
        w = self._writes
        job_id = record.job_id
        doing = f"save job {job_id!r}"
        try:  # values are converted before the transaction, to hold the write lock briefly
            job = job_params(record)
            job["b_job_id"] = job_id
            job["b_expected_version"] = expected_version
            cas = w.update_job.args(job)
            changed = self._changed_phases(record, expected_version)
            phases = self._phase_rows(record) if changed is None else w.update_phase.many(changed)
            history = self._history_rows(events)
        except (ValueError, TypeError) as exc:
            raise self._failure(exc, doing) from exc
        try:
            with self._transaction() as cursor:
                cursor.execute(w.update_job.sql, cas)
                if cursor.rowcount != 1:
                    cursor.execute(w.version_of.sql, w.version_of.args({"b_job_id": job_id}))
                    row = cursor.fetchone()
                    if row is None:
                        raise JobNotFound(job_id)
                    raise ConcurrentUpdateError(
                        job_id, expected_version=expected_version, actual_version=int(row[0])
                    )
                if changed is None:  # the stored phase rows are unknown here: rewrite them all
                    cursor.execute(w.delete_phases.sql, w.delete_phases.args({"b_job_id": job_id}))
                    if phases:
                        cursor.executemany(w.insert_phase.sql, phases)
                else:
                    _execute_rows(cursor, w.update_phase.sql, phases)
                self._append(cursor, history)
        except self._dbapi.Error as exc:
            self._forget(job_id)  # the commit may or may not have happened
            raise self._failure(exc, doing) from exc
        except BaseException:
            self._forget(job_id)
            raise
        self._remember(record)

    def load(self, job_id: str) -> JobRecord | None:
        """The job as stored now, or None."""
        records = self._read(self._queries.by_id(), {"job_id": job_id}, f"load job {job_id!r}")
        return records[0] if records else None

    def load_many(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """The stored jobs among ``job_ids``, by id (missing ids are left out)."""
        wanted = list(dict.fromkeys(job_ids))
        found: dict[str, JobRecord] = {}
        for start in range(0, len(wanted), LOAD_MANY_CHUNK):
            chunk = wanted[start : start + LOAD_MANY_CHUNK]
            for record in self._read(
                self._queries.by_ids(), {"job_ids": chunk}, f"load {len(chunk)} jobs"
            ):
                found[record.job_id] = record
        return {i: found[i] for i in wanted if i in found}

    def list(
        self,
        *,
        status: str | None = None,
        spec: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobRecord]:
        """Jobs, most recently updated first then by id, optionally of one status or spec."""
        for name, value in (("limit", limit), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentType(f"{name} must be an int, not {type(value).__name__}")
            if not 0 <= value <= _MAX_INTEGER:
                raise InvalidArgument(f"{name} must be from 0 to {_MAX_INTEGER:,}, not {value}")
        query = self._queries.page(status=status is not None, spec=spec is not None)
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        if spec is not None:
            params["spec"] = spec
        return self._read(query, params, "list jobs", remember=False)

    def history(self, job_id: str) -> builtins.list[HistoryEvent]:
        """The job's creation, then every status change, in commit order."""
        history = self.tables.history
        query = (
            select(history.c.event)
            .where(history.c.job_id == bindparam("job_id"))
            .order_by(history.c.id)
        )
        rows = self._fetch(query, {"job_id": job_id}, f"read the history of job {job_id!r}")
        events: builtins.list[HistoryEvent] = []
        for (data,) in rows:
            event = parse_event(data)
            if isinstance(event, JobCreated | PhaseChanged):
                events.append(event)
        return events

    def close(self) -> None:
        """Close the store; the engine is disposed unless the host passed it in."""
        with self._ready_lock:
            self._closed = True
            self._ready = False
        if self._owns_engine:
            self.engine.dispose()

    # -- SpecArchive -------------------------------------------------------------------------

    def remember_spec(self, name: str, fingerprint: str, definition: Mapping[str, Any]) -> None:
        """Keep ``definition`` under ``fingerprint``; the first one kept stays."""
        if fingerprint in self._specs_seen:
            return
        self._prepare()
        dialect_insert = sqlite.insert if self._sqlite else postgresql.insert
        statement = dialect_insert(self.tables.specs).on_conflict_do_nothing(
            index_elements=["fingerprint"]
        )
        row = {
            "fingerprint": fingerprint,
            "name": name,
            "definition": dict(definition),
            "first_seen": datetime.now(UTC),
        }
        try:
            with self._write_engine.begin() as conn:
                conn.execute(statement, row)
        except SQLAlchemyError as exc:
            raise self._failure(exc, f"keep phase set {name!r}") from exc
        self._specs_seen.add(fingerprint)

    def recall_spec(self, fingerprint: str) -> dict[str, Any] | None:
        """The phase-set definition kept under ``fingerprint``, or None."""
        specs = self.tables.specs
        query = select(specs.c.definition).where(specs.c.fingerprint == bindparam("fingerprint"))
        rows = self._fetch(query, {"fingerprint": fingerprint}, f"read phase set {fingerprint!r}")
        if not rows:
            return None
        definition: dict[str, Any] = dict(rows[0][0])
        return definition

    # -- internals ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Fail if closed; create missing tables on first use (unless told not to)."""
        if self._ready:
            return
        with self._ready_lock:
            if self._closed:
                raise PersistenceError(f"{self!r} is closed")
            if self._ready:
                return
            try:
                with self._write_engine.begin() as conn:
                    if not self._sqlite:
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK_KEY}
                        )
                    if self.create_tables:
                        if not self._sqlite and self.schema is not None:
                            conn.execute(CreateSchema(self.schema, if_not_exists=True))
                        self.metadata.create_all(conn)
                    self._check_schema(conn)
            except PersistenceError:
                raise
            except OperationalError as exc:  # the server or the file could not be reached
                raise self._failure(exc, "open the database") from exc
            except SQLAlchemyError as exc:
                doing = "create its tables" if self.create_tables else "read its schema version"
                raise self._failure(exc, doing) from exc
            self._ready = True

    def _check_schema(self, conn: Connection) -> None:
        """Refuse tables of another version, or of another shape, before anything is written.

        Tables without a recorded version (made by a host's migrations, or by an earlier
        phasekit) are checked column by column, then get the version recorded.
        """
        info = self.tables.schema_info
        if not inspect(conn).has_table(info.name, schema=self.schema):
            raise PersistenceError(
                f"{self._name}: the store's tables are missing: run the migrations that create "
                f"them ({info.name} is not there), or open the store with create_tables=True"
            )
        row = conn.execute(select(info.c.version).where(info.c.name == "phasekit")).first()
        if row is not None:
            if row[0] != SCHEMA_VERSION:
                raise PersistenceError(
                    f"{self._name}: the store's tables are of schema version {row[0]}, and this "
                    f"phasekit works with version {SCHEMA_VERSION}; migrate them, or give the "
                    "store another table_prefix"
                )
            return
        problems = _shape_problems(conn, self.tables, self.schema)
        if problems:
            raise PersistenceError(
                f"{self._name}: the store's tables are not the ones it makes: "
                f"{'; '.join(problems)}; fix them, or give the store another table_prefix"
            )
        conn.execute(info.insert().values(name="phasekit", version=SCHEMA_VERSION))

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A write transaction on a pooled driver connection, yielding its cursor."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if self._sqlite:  # take the write lock now: no deadlocking lock upgrade later
                cursor.execute("BEGIN IMMEDIATE")
            yield cursor
            raw.commit()
        except BaseException as exc:
            with suppress(self._dbapi.Error):
                raw.rollback()
            if isinstance(exc, self._dbapi.Error) and self.engine.dialect.is_disconnect(
                exc, raw, None
            ):
                raw.invalidate(exc)
            raise
        finally:
            raw.close()

    def _phase_rows(self, record: JobRecord) -> builtins.list[Any]:
        job_id = record.job_id
        return self._writes.insert_phase.many(
            [phase_params(job_id, i, p) for i, p in enumerate(record.phases)]
        )

    def _history_rows(self, events: Sequence[HistoryEvent]) -> builtins.list[Any]:
        return self._writes.insert_history.many([event_params(e) for e in events])

    def _append(self, cursor: Any, history: builtins.list[Any]) -> None:
        _execute_rows(cursor, self._writes.insert_history.sql, history)

    def _changed_phases(
        self, record: JobRecord, expected_version: int
    ) -> builtins.list[dict[str, Any]] | None:
        """The phase rows to update, diffing against the stored record when this store knows it.

        None when it does not (or the phases were added, removed or reordered): then every
        phase row is rewritten. The record a store last committed or loaded at a version is
        the stored one at that version, since versions only grow and each is written once.
        """
        with self._known_lock:
            base = self._known.get(record.job_id)
        if base is None or base.version != expected_version:
            return None
        if len(base.phases) != len(record.phases):
            return None
        changed = []
        for position, (old, new) in enumerate(zip(base.phases, record.phases, strict=True)):
            if old.phase_name != new.phase_name:
                return None
            if old is not new and old != new:
                changed.append(phase_params(record.job_id, position, new))
        return changed

    def _remember(self, record: JobRecord) -> None:
        with self._known_lock:
            known = self._known
            known.pop(record.job_id, None)
            known[record.job_id] = record
            if len(known) > KNOWN_RECORDS:
                del known[next(iter(known))]

    def _forget(self, job_id: str) -> None:
        with self._known_lock:
            self._known.pop(job_id, None)

    def _fetch(self, query: Any, params: Mapping[str, Any], doing: str) -> builtins.list[Any]:
        self._prepare()
        try:
            with self.engine.connect() as conn:
                return builtins.list(conn.execute(query, params).all())
        except SQLAlchemyError as exc:
            raise self._failure(exc, doing) from exc

    def _read(
        self, query: Any, params: Mapping[str, Any], doing: str, *, remember: bool = True
    ) -> builtins.list[JobRecord]:
        records = records_from_rows(self._fetch(query, params, doing))
        if remember:
            for record in records:
                self._remember(record)
        return records

    def _failure(self, exc: BaseException, doing: str) -> PersistenceError:
        """A one-line ``PersistenceError`` saying what failed, where, and why."""
        cause = getattr(exc, "orig", None) or exc
        lines = str(cause).strip().splitlines()
        detail = lines[0] if lines else type(cause).__name__
        message = f"{self._name}: could not {doing}: {type(cause).__name__}: {detail}"
        missing = "no such table" in detail or getattr(cause, "sqlstate", None) == "42P01"
        if missing and not self.create_tables:
            message += (
                "; the store's tables are missing: run the migrations that create them, "
                "or open the store with create_tables=True"
            )
        return PersistenceError(message)

    def __repr__(self) -> str:
        return f"<SQLStore {self._name} tables={self.tables.jobs.name}>"


def _execute_rows(cursor: Any, sql: str, rows: builtins.list[Any]) -> None:
    """Run ``sql`` for each row; a single row with ``execute``.

    psycopg's ``executemany`` enters pipeline mode: for one row, it waits on the server twice
    more than ``execute`` does (a commit of one transition waited 7 times instead of 5).
    """
    if len(rows) == 1:
        cursor.execute(sql, rows[0])
    elif rows:
        cursor.executemany(sql, rows)


def _shape_problems(conn: Connection, tables: Tables, schema: str | None) -> builtins.list[str]:
    """How the tables in the database differ from the store's: missing columns, keys."""
    inspector = inspect(conn)
    problems: builtins.list[str] = []
    for table in (tables.jobs, tables.phases, tables.history, tables.specs):
        if not inspector.has_table(table.name, schema=schema):
            problems.append(f"{table.name} is missing")
            continue
        found = {c["name"] for c in inspector.get_columns(table.name, schema=schema)}
        missing = [c.name for c in table.columns if c.name not in found]
        if missing:
            problems.append(f"{table.name} has no column {', '.join(missing)}")
        wanted = [c.name for c in table.primary_key.columns]
        key = inspector.get_pk_constraint(table.name, schema=schema).get("constrained_columns")
        if sorted(key or []) != sorted(wanted):
            problems.append(f"{table.name}'s primary key is not ({', '.join(wanted)})")
    return problems
