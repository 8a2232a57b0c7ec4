"""SQLStore: jobs, phases, history and phase sets in SQLite or PostgreSQL."""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NoReturn

from sqlalchemy import (
    MetaData,
    bindparam,
    delete,
    func,
    inspect,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateSchema

from statemachine import (
    HISTORY_TYPES,
    ConcurrentUpdateError,
    DeadLetter,
    DuePhase,
    Event,
    HistoryEvent,
    InvalidArgument,
    InvalidArgumentType,
    JobExists,
    JobNotFound,
    JobRecord,
    LoggedEvent,
    PersistenceError,
    PhaseRecord,
    RelayCursor,
    list_cursor,
    parse_duration,
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
from .rows import (
    JobQueries,
    event_params,
    job_params,
    log_params,
    phase_params,
    records_from_rows,
)
from .schema import SCHEMA_VERSION, Tables, build_tables, store_tables
from .statements import WriteStatements

#: The largest value of the databases' 64-bit integers, and so of a limit or an offset.
_MAX_INTEGER = 2**63 - 1

__all__ = ["SQLStore"]

log = logging.getLogger("phasekit")


#: Jobs per query of ``load_many`` (SQLite allows 32,766 parameters; PostgreSQL 65,535).
LOAD_MANY_CHUNK = 500
#: Last-committed records kept per store, to write only the phase rows a commit changed.
KNOWN_RECORDS = 4096
# Serialises table creation between processes on PostgreSQL (an advisory lock key).
_CREATE_LOCK_KEY = 0x7068617365
#: How often a store with ``event_retention`` prunes its event log, at most (seconds).
PRUNE_EVERY = 60.0
#: Events a reader numbers in one step on PostgreSQL (see the events table).
NUMBER_BATCH = 10_000
#: How long a reader waiting for events without a LISTEN sleeps between looks: from
#: ``FIRST_POLL``, doubling up to ``SQLITE_POLL`` (seconds).
FIRST_POLL = 0.01
SQLITE_POLL = 0.25


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
        notify: bool = True,
        event_retention: float | str | timedelta | None = None,
        asyncio: bool = False,
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
                asyncio=asyncio,
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
        #: The tables the store reads and writes through (timestamps typed ``UTCDateTime``).
        self.tables: Tables = store_tables(table_prefix, schema)
        # The same tables with stock types only: what the store creates, and hosts migrate.
        self._metadata = build_tables(table_prefix, schema).metadata
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
        #: Whether the engine runs an async driver: the store is then called inside
        #: SQLAlchemy's ``greenlet_spawn`` (``AsyncTracker`` does), never from a plain thread.
        self.asyncio = engine.dialect.is_async
        if not isinstance(notify, bool):
            raise InvalidArgumentType(f"notify must be true or false, not {notify!r}")
        #: The PostgreSQL channel a commit sends a NOTIFY on (a wake-up hint for readers of
        #: the log), or None.
        self.channel = _channel(table_prefix, schema) if notify and not self._sqlite else None
        #: How long the event log keeps events every relay cursor has passed (None: for
        #: good). Past it, a commit prunes the log, at most once per ``PRUNE_EVERY`` seconds.
        self.event_retention = (
            None if event_retention is None else parse_duration(event_retention, "event_retention")
        )
        self._pruned_at = time.monotonic()
        # The cursor of the running locked() block: per thread, and per greenlet (asyncio
        # tasks of an AsyncTracker share a thread, not a context).
        self._locking: ContextVar[Any] = ContextVar(f"phasekit_locked_{id(self)}", default=None)
        self._committed = threading.Condition()  # this process's own commits wake its readers
        self._commit_count = 0
        self._interrupts = 0
        self._poll = FIRST_POLL
        events = self.tables.events
        # Where an event's position is. SQLite commits one transaction at a time, so the
        # order of insertion is the order of commit: the position is the row's id (the
        # position column is used on PostgreSQL only; on SQLite it, and its indexes, stay empty).
        self._position = events.c.id if self._sqlite else events.c.position
        self._listener: _Listener | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLStore:
        """The store factory registered for ``sqlite://`` and ``postgresql://`` URLs."""
        return cls(url, **options)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (the store is unusable then)."""
        return self._closed

    @property
    def metadata(self) -> MetaData:
        """The store's tables, for a host's migrations (e.g. Alembic's ``target_metadata``):
        ``build_tables(table_prefix, schema).metadata``, stock SQLAlchemy types only."""
        return self._metadata

    # -- the Store protocol ------------------------------------------------------------------

    def create(self, record: JobRecord, events: Sequence[Event]) -> None:
        """Insert the job, its phases and its creation events in one transaction."""
        self._prepare()
        w = self._writes
        doing = f"create job {record.job_id!r}"
        try:  # values are converted before the transaction, to hold the write lock briefly
            job = w.insert_job.args(job_params(record))
            phases = self._phase_rows(record)
            rows = self._event_rows(events)
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
                self._append(cursor, rows)
        except self._dbapi.Error as exc:
            raise self._failure(exc, doing) from exc
        self._remember(record)
        self._wake(rows)

    def save(
        self,
        record: JobRecord,
        *,
        expected_version: int,
        events: Sequence[Event],
        idempotency_key: str | None = None,
    ) -> None:
        """Replace the job if it is at ``expected_version``, and append ``events``; atomic.

        ``idempotency_key`` is kept with the change's history row (unique per job).
        """
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
            rows = self._event_rows(events, idempotency_key)
        except (ValueError, TypeError) as exc:
            raise self._failure(exc, doing) from exc
        try:
            with self._transaction() as cursor:
                cursor.execute(w.update_job.sql, cas)
                if cursor.rowcount != 1:
                    self._refuse_version(cursor, job_id, expected_version)
                with self._pipeline(cursor):  # the rest needs no answer: one round trip
                    if changed is None:  # the stored phase rows are unknown: rewrite them all
                        cursor.execute(
                            w.delete_phases.sql, w.delete_phases.args({"b_job_id": job_id})
                        )
                        if phases:
                            cursor.executemany(w.insert_phase.sql, phases)
                    else:
                        _execute_rows(cursor, w.update_phase.sql, phases)
                    self._append(cursor, rows)
        except self._dbapi.Error as exc:
            self._forget(job_id)  # the commit may or may not have happened
            raise self._failure(exc, doing) from exc
        except BaseException:
            self._forget(job_id)
            raise
        self._remember(record)
        self._wake(rows)

    def _refuse_version(self, cursor: Any, job_id: str, expected_version: int) -> NoReturn:
        """Why a compare-and-swap on ``job_id`` matched no row: gone, or another version."""
        w = self._writes
        cursor.execute(w.version_of.sql, w.version_of.args({"b_job_id": job_id}))
        row = cursor.fetchone()
        if row is None:
            raise JobNotFound(job_id)
        raise ConcurrentUpdateError(
            job_id, expected_version=expected_version, actual_version=int(row[0])
        )

    @contextmanager
    def locked(self, job_id: str) -> Iterator[None]:
        """Keep other writers off job ``job_id`` until the block ends.

        The block runs in one write transaction that holds the job's row lock (PostgreSQL:
        ``SELECT ... FOR UPDATE``; SQLite: the database's write lock): a ``save`` of this
        thread inside it commits with the block, and no other writer can change the job
        meanwhile, so its compare-and-swap cannot lose. A by-id call that lost one retries
        this way. Other writers wait (``busy_timeout``, ``lock_timeout``) while it is held.
        """
        self._prepare()
        if self._locking.get() is not None:
            yield  # already inside a locked block
            return
        w = self._writes
        try:
            with self._transaction() as cursor:
                if not self._sqlite:
                    cursor.execute(w.lock_job.sql, w.lock_job.args({"b_job_id": job_id}))
                token = self._locking.set(cursor)
                try:
                    yield
                finally:
                    self._locking.reset(token)
        except self._dbapi.Error as exc:
            self._forget(job_id)
            raise self._failure(exc, f"commit the locked change of job {job_id!r}") from exc
        except BaseException:
            self._forget(job_id)
            raise
        with self._committed:  # wake readers now that it is committed
            self._commit_count += 1
            self._committed.notify_all()

    def delete(self, job_id: str, *, expected_version: int, events: Sequence[Event]) -> None:
        """Delete the job at ``expected_version`` (its phases and history with it) and log
        ``events`` (its ``JobDeleted``); atomic, like ``save``."""
        self._prepare()
        w = self._writes
        doing = f"delete job {job_id!r}"
        try:
            # Logged only: the job's history goes with it, and a history row of a deleted
            # job would break the history table's foreign key.
            rows: tuple[builtins.list[Any], builtins.list[Any]] = ([], self._event_rows(events)[1])
        except (ValueError, TypeError) as exc:
            raise self._failure(exc, doing) from exc
        try:
            with self._transaction() as cursor:
                cursor.execute(
                    w.delete_job.sql,
                    w.delete_job.args({"b_job_id": job_id, "b_expected_version": expected_version}),
                )
                if cursor.rowcount != 1:
                    self._refuse_version(cursor, job_id, expected_version)
                # Phases and history go with the job (ON DELETE CASCADE).
                self._append(cursor, rows)
        except self._dbapi.Error as exc:
            raise self._failure(exc, doing) from exc
        finally:
            self._forget(job_id)
        self._wake(rows)

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
        phase_status: Mapping[str, str] | None = None,
        limit: int = 100,
        offset: int = 0,
        after: tuple[datetime, str] | None = None,
    ) -> builtins.list[JobRecord]:
        """Jobs, most recently updated first then by id, optionally of one status or spec,
        and with every phase of ``phase_status`` (a name → status mapping) in that status.

        ``after`` is the ``(updated_at, job_id)`` of the last job of the previous page: the
        page starts after it, at the cost of the first page however deep it is (``offset``
        counts the jobs it skips, and is added to ``after``).
        """
        for name, value in (("limit", limit), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentType(f"{name} must be an int, not {type(value).__name__}")
            if not 0 <= value <= _MAX_INTEGER:
                raise InvalidArgument(f"{name} must be from 0 to {_MAX_INTEGER:,}, not {value}")
        pairs = builtins.list((phase_status or {}).items())
        query = self._queries.page(
            status=status is not None,
            spec=spec is not None,
            phase_statuses=len(pairs),
            after=after is not None,
        )
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if after is not None:
            params["after_at"], params["after_id"] = list_cursor(after)
        for i, (phase, wanted) in enumerate(pairs):
            params[f"phase_{i}"] = phase
            params[f"phase_status_{i}"] = wanted
        if status is not None:
            params["status"] = status
        if spec is not None:
            params["spec"] = spec
        return self._read(query, params, "list jobs", remember=False)

    def count_jobs(self) -> dict[tuple[str, str], int]:
        """The number of stored jobs of each ``(phase set name, overall status)``."""
        rows = self._fetch(self._queries.counts(), {}, "count jobs")
        return {(str(spec), str(status)): int(n) for spec, status, n in rows}

    def seen_idempotency_key(self, job_id: str, key: str) -> bool:
        """Whether a change of job ``job_id`` was committed with ``key``."""
        history = self.tables.history
        query = (
            select(history.c.id)
            .where(
                history.c.job_id == bindparam("job_id"),
                history.c.idempotency_key == bindparam("key"),
            )
            .limit(1)
        )
        rows = self._fetch(
            query, {"job_id": job_id, "key": key}, f"look up a key of job {job_id!r}"
        )
        return bool(rows)

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
            if isinstance(event, HISTORY_TYPES):
                events.append(event)
        return events

    def close(self) -> None:
        """Close the store; the engine is disposed unless the host passed it in."""
        with self._ready_lock:
            self._closed = True
            self._ready = False
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        with self._committed:
            self._committed.notify_all()
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

    # -- DeadlineIndex -----------------------------------------------------------------------

    def claim_due(
        self, now: datetime, *, spec: str, limit: int = 100, lease: float = 60.0
    ) -> builtins.list[DuePhase]:
        """Up to ``limit`` phases of phase set ``spec`` past their deadline, earliest first,
        each claimed for ``lease`` seconds by moving its stored deadline to then.

        One write transaction: on PostgreSQL the due rows are locked ``FOR UPDATE SKIP
        LOCKED``, so sweeps running at once take different phases; SQLite runs one write
        transaction at a time, which splits them as well.
        """
        phases, jobs = self.tables.phases, self.tables.jobs
        # Phases alone in FROM, the job's phase set an EXISTS on its primary key: the plan
        # has to start from the deadline index, and costs what the due phases cost. (A join
        # lets SQLite, without statistics, start from the jobs of the phase set instead:
        # every job read on every claim.)
        of_spec = (
            select(jobs.c.job_id)
            .where(jobs.c.job_id == phases.c.job_id, jobs.c.spec_name == bindparam("spec"))
            .exists()
        )
        query = (
            select(phases.c.job_id, phases.c.phase_name, phases.c.status, phases.c.deadline)
            .where(phases.c.deadline <= bindparam("now"), of_spec)
            .order_by(phases.c.deadline)
            .limit(bindparam("limit"))
        )
        if not self._sqlite:
            query = query.with_for_update(skip_locked=True, of=phases)
        claim = (
            update(phases)
            .where(
                phases.c.job_id == bindparam("b_job_id"),
                phases.c.phase_name == bindparam("b_phase_name"),
            )
            .values(deadline=bindparam("until"))
        )
        until = now + timedelta(seconds=lease)
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                rows = conn.execute(query, {"now": now, "spec": spec, "limit": limit}).all()
                if rows:
                    conn.execute(
                        claim,
                        [
                            {"b_job_id": r.job_id, "b_phase_name": r.phase_name, "until": until}
                            for r in rows
                        ],
                    )
        except SQLAlchemyError as exc:
            raise self._failure(exc, "claim the phases past their deadline") from exc
        for row in rows:
            self._forget(row.job_id)  # its stored phase rows changed under the known record
        return [DuePhase(r.job_id, r.phase_name, r.status, r.deadline, until) for r in rows]

    def release_due(self, phase: DuePhase, deadline: datetime | None) -> None:
        """Give a claimed phase its ``deadline`` back, unless it changed since the claim."""
        phases = self.tables.phases
        statement = (
            update(phases)
            .where(
                phases.c.job_id == phase.job_id,
                phases.c.phase_name == phase.phase_name,
                phases.c.deadline == phase.claimed_until,
            )
            .values(deadline=deadline)
        )
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            raise self._failure(exc, f"release a deadline of job {phase.job_id!r}") from exc
        self._forget(phase.job_id)

    def undated_phases(
        self,
        *,
        spec: str,
        fingerprint: str,
        statuses: Sequence[str],
        after: tuple[str, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[tuple[str, datetime, PhaseRecord]]:
        """Phases in ``statuses`` of ``spec``'s jobs with no stored deadline, or kept under
        another fingerprint, by job id and phase name after ``after``."""
        phases, jobs = self.tables.phases, self.tables.jobs
        columns = [phases.c[name] for name in PhaseRecord.__dataclass_fields__]
        query = (
            select(phases.c.job_id, jobs.c.created_at, *columns)
            .join(jobs, jobs.c.job_id == phases.c.job_id)
            .where(
                jobs.c.spec_name == spec,
                phases.c.status.in_(builtins.list(statuses)),
                or_(phases.c.deadline.is_(None), jobs.c.spec_fingerprint != fingerprint),
            )
            .order_by(phases.c.job_id, phases.c.phase_name)
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(phases.c.job_id, phases.c.phase_name) > tuple_(*after))
        rows = self._fetch(query, {}, f"read the deadlines of phase set {spec!r}")
        return [(row[0], row[1], PhaseRecord(*tuple(row)[2:])) for row in rows]

    def set_deadline(
        self, job_id: str, phase_name: str, status: str, deadline: datetime | None
    ) -> None:
        """Store ``deadline`` for the phase if it is still in ``status`` (same version)."""
        phases = self.tables.phases
        statement = (
            update(phases)
            .where(
                phases.c.job_id == job_id,
                phases.c.phase_name == phase_name,
                phases.c.status == status,
            )
            .values(deadline=deadline)
        )
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            raise self._failure(exc, f"store a deadline of job {job_id!r}") from exc
        self._forget(job_id)

    # -- EventLog ----------------------------------------------------------------------------

    def read_events(self, after: int = 0, *, limit: int = 1000) -> builtins.list[LoggedEvent]:
        """Up to ``limit`` events at positions above ``after``, in commit order."""
        for name, value in (("after", after), ("limit", limit)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentType(f"{name} must be an int, not {type(value).__name__}")
        if limit < 1 or limit > _MAX_INTEGER:
            raise InvalidArgument(f"limit must be from 1 to {_MAX_INTEGER:,}, not {limit}")
        self._number()
        events, position = self.tables.events, self._position
        query = (
            select(position, events.c.event)
            .where(position > bindparam("after"))
            .order_by(position)
            .limit(bindparam("limit"))
        )
        rows = self._fetch(query, {"after": after, "limit": limit}, "read the event log")
        return [LoggedEvent(int(position), parse_event(data)) for position, data in rows]

    def last_position(self) -> int:
        """The highest position a reader can see now (0 for an empty log)."""
        self._number()
        if self._sqlite:
            # AUTOINCREMENT keeps the last id given, even once the log is pruned.
            query: Any = text("SELECT seq FROM sqlite_sequence WHERE name = :name")
            rows = self._fetch(query, {"name": self.tables.events.name}, "read the event log")
        else:
            seq = self.tables.event_sequence
            query = select(seq.c.position).where(seq.c.name == "events")
            rows = self._fetch(query, {}, "read the event log")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def prune_events(self, *, before: datetime) -> int:
        """Remove events committed before ``before`` that every relay cursor has passed."""
        if not isinstance(before, datetime) or before.tzinfo is None:
            raise InvalidArgumentType("before must be a timezone-aware datetime")
        events, cursors = self.tables.events, self.tables.relay_cursors
        passed = select(func.min(cursors.c.position)).scalar_subquery()
        position = self._position
        statement = delete(events).where(
            position.is_not(None),
            events.c.at < before,
            (position <= passed)
            | (select(func.count()).select_from(cursors).scalar_subquery() == 0),
        )
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                return int(conn.execute(statement).rowcount or 0)
        except SQLAlchemyError as exc:
            raise self._failure(exc, "prune the event log") from exc

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an event above ``after``; whether one came.

        A hint for readers: on PostgreSQL a LISTEN on the store's channel wakes it, on SQLite
        this process's own commits do; otherwise it looks again after 10 ms, 20 ms, ... up
        to every ``SQLITE_POLL``.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        listener = self._listen()
        interrupts = self._interrupts
        while True:
            signals = (listener.generation if listener else 0, self._commit_count)
            if self.last_position() > after:
                self._poll = FIRST_POLL  # activity: look again soon next time
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._closed or self._interrupts != interrupts:
                return False
            if listener is not None:
                listener.wait_past(signals[0], left)
            else:
                # The backoff goes on from one wait to the next while nothing comes, so an
                # idle reader looks every SQLITE_POLL seconds, not from 10 ms again each time.
                step = min(left, self._poll)
                self._poll = min(self._poll * 2, SQLITE_POLL)
                with self._committed:
                    self._committed.wait_for(partial(self._committed_since, signals[1]), step)

    def wake_waiters(self) -> None:
        """End every ``wait_for_events`` in progress (a relay that stops calls it)."""
        with self._committed:
            self._interrupts += 1
            self._commit_count += 1  # what waiters watch: they wake, and see the interrupt
            self._committed.notify_all()
        listener = self._listener
        if listener is not None:
            listener.interrupt()

    def _committed_since(self, count: int) -> bool:
        return self._commit_count != count

    def _listen(self) -> _Listener | None:
        if self.channel is None or self.asyncio:
            return None
        with self._ready_lock:
            if self._listener is None and not self._closed:
                self._listener = _Listener(self.engine, self.channel)
            return self._listener

    def _number(self) -> None:
        """Give positions to committed events without one (PostgreSQL), in insertion order.

        One reader at a time numbers (it locks the event_sequence row), in a statement that
        starts once it holds the lock, so it sees every row the one before it numbered.
        """
        self._prepare()
        if self._sqlite:
            return
        events, seq = self.tables.events, self.tables.event_sequence
        waiting = select(events.c.id).where(events.c.position.is_(None)).limit(1)
        try:
            with self.engine.connect() as conn:
                if conn.execute(waiting).first() is None:
                    return
            with self._write_engine.begin() as conn:
                base = conn.execute(
                    select(seq.c.position).where(seq.c.name == "events").with_for_update()
                ).scalar_one()
                todo = (
                    select(
                        events.c.id,
                        func.row_number().over(order_by=events.c.id).label("n"),
                    )
                    .where(events.c.position.is_(None))
                    .order_by(events.c.id)
                    .limit(NUMBER_BATCH)
                    .subquery()
                )
                numbered = (
                    conn.execute(
                        update(events)
                        .where(events.c.id == todo.c.id, events.c.position.is_(None))
                        .values(position=base + todo.c.n)
                        .returning(events.c.position)
                    )
                    .scalars()
                    .all()
                )
                if numbered:
                    conn.execute(
                        update(seq).where(seq.c.name == "events").values(position=max(numbered))
                    )
        except SQLAlchemyError as exc:
            raise self._failure(exc, "number the event log") from exc

    # -- RelayLedger -------------------------------------------------------------------------

    def claim_cursor(self, notifier: str, owner: str, *, lease: float) -> RelayCursor | None:
        """Take or renew ``notifier``'s lease for ``owner``; None when another holds it."""
        cursors = self.tables.relay_cursors
        now = datetime.now(UTC)
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(cursors)
        fresh = {
            "notifier": notifier,
            "position": 0,
            "attempts": 0,
            "owner": None,
            "lease_until": None,
            "updated_at": now,
        }
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                conn.execute(insert.on_conflict_do_nothing(index_elements=["notifier"]), fresh)
                query = select(cursors).where(cursors.c.notifier == notifier)
                if not self._sqlite:
                    query = query.with_for_update()
                row = conn.execute(query).one()
                held = row.owner not in (None, owner)
                if held and row.lease_until is not None and row.lease_until > now:
                    return None
                until = now + timedelta(seconds=lease)
                conn.execute(
                    update(cursors)
                    .where(cursors.c.notifier == notifier)
                    .values(owner=owner, lease_until=until)
                )
        except SQLAlchemyError as exc:
            raise self._failure(exc, f"claim the relay cursor of {notifier!r}") from exc
        return _cursor(row, owner=owner, lease_until=until)

    def save_cursor(
        self,
        cursor: RelayCursor,
        owner: str,
        *,
        lease: float,
        dead_letter: DeadLetter | None = None,
    ) -> bool:
        """Store ``cursor`` and renew the lease if ``owner`` holds it, with ``dead_letter``."""
        cursors, dead = self.tables.relay_cursors, self.tables.dead_letters
        now = datetime.now(UTC)
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                saved = conn.execute(
                    update(cursors)
                    .where(cursors.c.notifier == cursor.notifier, cursors.c.owner == owner)
                    .values(
                        position=cursor.position,
                        attempts=cursor.attempts,
                        retry_at=cursor.retry_at,
                        disabled=cursor.disabled,
                        last_error=cursor.last_error,
                        lease_until=now + timedelta(seconds=lease),
                        updated_at=now,
                    )
                )
                if saved.rowcount != 1:
                    return False
                if dead_letter is not None:
                    insert = (sqlite.insert if self._sqlite else postgresql.insert)(dead)
                    conn.execute(
                        insert.on_conflict_do_nothing(index_elements=["notifier", "position"]),
                        {
                            "notifier": dead_letter.notifier,
                            "position": dead_letter.position,
                            "event_id": dead_letter.event.event_id,
                            "event": dead_letter.event.model_dump_json(),
                            "reason": dead_letter.reason,
                            "attempts": dead_letter.attempts,
                            "at": dead_letter.at,
                        },
                    )
        except SQLAlchemyError as exc:
            raise self._failure(exc, f"save the relay cursor of {cursor.notifier!r}") from exc
        return True

    def release_cursor(self, notifier: str, owner: str) -> None:
        """Give up ``owner``'s lease on ``notifier``."""
        cursors = self.tables.relay_cursors
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                conn.execute(
                    update(cursors)
                    .where(cursors.c.notifier == notifier, cursors.c.owner == owner)
                    .values(owner=None, lease_until=None)
                )
        except SQLAlchemyError as exc:
            raise self._failure(exc, f"release the relay cursor of {notifier!r}") from exc

    def relay_cursors(self) -> builtins.list[RelayCursor]:
        """Every notifier's cursor, by name."""
        cursors = self.tables.relay_cursors
        rows = self._fetch(
            select(cursors).order_by(cursors.c.notifier), {}, "read the relay cursors"
        )
        return [_cursor(row) for row in rows]

    def dead_letters(
        self, notifier: str | None = None, *, limit: int = 1000
    ) -> builtins.list[DeadLetter]:
        """Dead letters, oldest position first, of one notifier or of all."""
        dead = self.tables.dead_letters
        query = select(dead).order_by(dead.c.position, dead.c.notifier).limit(limit)
        if notifier is not None:
            query = query.where(dead.c.notifier == notifier)
        rows = self._fetch(query, {}, "read the dead letters")
        return [
            DeadLetter(
                notifier=row.notifier,
                position=int(row.position),
                event=parse_event(row.event),
                reason=row.reason,
                attempts=int(row.attempts),
                at=row.at,
            )
            for row in rows
        ]

    def remove_dead_letter(self, notifier: str, position: int) -> None:
        """Forget one dead letter."""
        dead = self.tables.dead_letters
        self._prepare()
        try:
            with self._write_engine.begin() as conn:
                conn.execute(
                    delete(dead).where(dead.c.notifier == notifier, dead.c.position == position)
                )
        except SQLAlchemyError as exc:
            raise self._failure(exc, f"remove a dead letter of {notifier!r}") from exc

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
                        # Indexes added since the tables were made (create_all makes a table's
                        # indexes only with the table).
                        for index in self.tables.jobs.indexes:
                            index.create(conn, checkfirst=True)
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
            if row[0] in (1, 2) and self.create_tables:
                # create_all has just added version 2's tables; the columns are added here.
                self._upgrade_columns(conn)
                conn.execute(
                    info.update().where(info.c.name == "phasekit").values(version=SCHEMA_VERSION)
                )
                log.info("phasekit: %s upgraded to schema version %d", self._name, SCHEMA_VERSION)
            elif row[0] in (1, 2):
                added = ", ".join(t.name for t in self.tables.added_in_version_2)
                raise PersistenceError(
                    f"{self._name}: the store's tables are of schema version {row[0]}, and this "
                    f"phasekit works with version {SCHEMA_VERSION}: add "
                    + (f"the tables {added}, " if row[0] == 1 else "")
                    + "the history's idempotency_key column, the phases' entered_at and deadline "
                    f"columns and their indexes (tables_metadata() has them) and record version "
                    f"{SCHEMA_VERSION}, or open the store once with create_tables=True to "
                    "upgrade them"
                )
            elif row[0] != SCHEMA_VERSION:
                raise PersistenceError(
                    f"{self._name}: the store's tables are of schema version {row[0]}, and this "
                    f"phasekit works with version {SCHEMA_VERSION}; migrate them, or give the "
                    "store another table_prefix"
                )
            self._start_sequence(conn)
            return
        problems = _shape_problems(conn, self.tables, self.schema)
        if problems:
            raise PersistenceError(
                f"{self._name}: the store's tables are not the ones it makes: "
                f"{'; '.join(problems)}; fix them, or give the store another table_prefix"
            )
        conn.execute(info.insert().values(name="phasekit", version=SCHEMA_VERSION))
        self._start_sequence(conn)

    def _upgrade_columns(self, conn: Connection) -> None:
        """Add the columns later versions added to older tables, with their indexes:
        the history's idempotency_key (version 2), the phases' entered_at and deadline (3).

        Rows written before keep NULL there: a phase's deadline is then computed from its
        timestamps when the phase set is next swept (``Tracker.sweep``).
        """
        for table, added in (
            (self.tables.history, ("idempotency_key",)),
            (self.tables.phases, ("entered_at", "deadline")),
        ):
            found = {c["name"] for c in inspect(conn).get_columns(table.name, schema=self.schema)}
            missing = [name for name in added if name not in found]
            if not missing:
                continue
            name = conn.dialect.identifier_preparer.format_table(table)
            for column in missing:
                kind = table.c[column].type.compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {column} {kind}"))
            for index in table.indexes:
                if any(c.name in missing for c in index.columns):
                    index.create(conn)

    def _start_sequence(self, conn: Connection) -> None:
        """Make sure the event_sequence row a PostgreSQL reader locks to number events exists."""
        if self._sqlite:
            return
        seq = self.tables.event_sequence
        conn.execute(
            postgresql.insert(seq)
            .values(name="events", position=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A write transaction on a pooled driver connection, yielding its cursor.

        Inside ``locked()``, the locked transaction's cursor: the write commits with it.
        """
        held = self._locking.get()
        if held is not None:
            yield held
            return
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

    def _event_rows(
        self, events: Sequence[Event], idempotency_key: str | None = None
    ) -> tuple[builtins.list[Any], builtins.list[Any]]:
        """The history rows and the event log rows of a commit's ``events``; the key goes
        with the commit's first history row."""
        w = self._writes
        history, logged = [], []
        key = idempotency_key
        for event in events:
            data = event.model_dump_json()
            if isinstance(event, HISTORY_TYPES):
                history.append(w.insert_history.args(event_params(event, data, key)))
                key = None
            logged.append(w.insert_event.args(log_params(event, data)))
        return history, logged

    def _append(self, cursor: Any, rows: tuple[builtins.list[Any], builtins.list[Any]]) -> None:
        history, logged = rows
        _execute_rows(cursor, self._writes.insert_history.sql, history)
        if not logged:
            return
        _execute_rows(cursor, self._writes.insert_event.sql, logged)
        if self.channel is not None:
            cursor.execute(f"NOTIFY {self.channel}")

    def _pipeline(self, cursor: Any) -> AbstractContextManager[Any]:
        """psycopg's pipeline mode on PostgreSQL: the statements inside are sent together and
        answered once (errors still raise, at the end of the block); nothing on SQLite."""
        if self._sqlite or self.asyncio:
            return nullcontext()
        pipeline: AbstractContextManager[Any] = cursor.connection.pipeline()
        return pipeline

    def _wake(self, rows: tuple[builtins.list[Any], builtins.list[Any]]) -> None:
        """Wake this process's readers waiting for events after a commit that logged some."""
        if rows[1]:
            with self._committed:
                self._commit_count += 1
                self._committed.notify_all()
            if self.event_retention is not None:
                self._prune_when_due()

    def _prune_when_due(self) -> None:
        """Apply ``event_retention``, once every ``PRUNE_EVERY`` seconds at most."""
        assert self.event_retention is not None
        now = time.monotonic()
        with self._committed:
            if now - self._pruned_at < PRUNE_EVERY:
                return
            self._pruned_at = now
        try:
            removed = self.prune_events(before=datetime.now(UTC) - self.event_retention)
        except PersistenceError as exc:  # the commit stands; the next one tries again
            log.warning("phasekit: could not prune the event log: %s", exc)
            return
        if removed:
            log.info("phasekit: pruned %d event(s) from %s", removed, self._name)

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
    for table in (
        tables.jobs,
        tables.phases,
        tables.history,
        tables.specs,
        *tables.added_in_version_2,
    ):
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


def _cursor(row: Any, **changes: Any) -> RelayCursor:
    values = {
        "notifier": row.notifier,
        "position": int(row.position),
        "attempts": int(row.attempts),
        "retry_at": row.retry_at,
        "disabled": row.disabled,
        "last_error": row.last_error,
        "owner": row.owner,
        "lease_until": row.lease_until,
    }
    values.update(changes)
    return RelayCursor(**values)


def _channel(prefix: str, schema: str | None) -> str:
    """The NOTIFY channel of a store's tables: a plain identifier of at most 63 bytes."""
    name = f"{schema}_{prefix}events" if schema else f"{prefix}events"
    return name.lower()[:63]


class _Listener:
    """A thread that LISTENs on a PostgreSQL channel and counts the notifications.

    A wake-up hint only: a notification may be missed (the connection dropped, the thread
    was reconnecting); readers look at the log itself before and after waiting.
    """

    def __init__(self, engine: Any, channel: str) -> None:
        self._engine = engine
        self._channel = channel
        self._cond = threading.Condition()
        self.generation = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"phasekit-listen {channel}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self._engine.raw_connection()
                try:
                    conn = raw.driver_connection
                    raw.detach()  # a connection of its own, never returned to the pool
                    conn.autocommit = True
                    conn.execute(f"LISTEN {self._channel}")
                    self._bump()  # anything committed while not listening is looked for
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._bump()
                finally:
                    with suppress(Exception):
                        raw.close()
            except Exception as exc:  # the server went away: listen again shortly
                log.debug("phasekit: LISTEN %s failed: %s", self._channel, exc)
                self._stop.wait(1.0)

    def _bump(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait_past(self, generation: int, timeout: float) -> None:
        """Wait until a notification after ``generation`` came, or ``timeout`` passed."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != generation, timeout)

    def interrupt(self) -> None:
        """Wake every waiter now (they find out why themselves)."""
        self._bump()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
