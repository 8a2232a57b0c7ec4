"""Engines for the SQL store: URLs, and the SQLite connection settings the store relies on."""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from statemachine import InvalidArgument, InvalidArgumentType, PhaseKitError

__all__ = [
    "BACKENDS",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "DRIVERS",
    "SYNCHRONOUS_MODES",
    "WRITE_OPTION",
    "configure_sqlite",
    "create_store_engine",
    "display_url",
    "store_url",
]

#: Database backends the store supports, by SQLAlchemy backend name.
BACKENDS = ("sqlite", "postgresql")
#: The one driver of each backend the store is written and tested for.
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
#: Values of SQLite's ``synchronous`` setting the store accepts.
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
#: How long a PostgreSQL connection of the store waits for a lock, and runs one statement
#: (seconds): a row another session holds fails the commit instead of blocking it forever.
DEFAULT_LOCK_TIMEOUT = 10.0
DEFAULT_STATEMENT_TIMEOUT = 60.0
#: Execution option marking a Core transaction that writes (``BEGIN IMMEDIATE`` on SQLite).
WRITE_OPTION = "phasekit_write"

_CONFIGURED = "phasekit_sqlite_configured"
_sqlite_settings: weakref.WeakKeyDictionary[Engine, tuple[str, float]] = weakref.WeakKeyDictionary()


def store_url(url: str | URL) -> URL:
    """``url`` parsed, with ``postgresql://`` (and ``postgres://``) sent to psycopg 3."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # their messages may quote the URL, password and all
        raise InvalidArgument(
            "the store URL is not a database URL; write sqlite:///path.db or "
            "postgresql://user@host:port/db"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in BACKENDS:
        raise InvalidArgument(
            f"the SQL store works with {' and '.join(BACKENDS)}, not "
            f"{parsed.get_backend_name()!r} ({display_url(parsed)})"
        )
    driver = parsed.get_driver_name()
    if driver != DRIVERS[parsed.get_backend_name()]:
        raise InvalidArgument(
            f"the SQL store drives {parsed.get_backend_name()} with "
            f"{DRIVERS[parsed.get_backend_name()]}, not {driver!r}: write "
            f"{parsed.get_backend_name()}://… ({display_url(parsed)})"
        )
    return parsed


def check_synchronous(synchronous: str) -> str:
    """``synchronous`` upper-cased, if SQLite knows it."""
    mode = str(synchronous).upper()
    if mode not in SYNCHRONOUS_MODES:
        raise InvalidArgument(
            f"synchronous={synchronous!r} is not a SQLite synchronous mode; "
            f"use one of {', '.join(SYNCHRONOUS_MODES)}"
        )
    return mode


def check_busy_timeout(busy_timeout: float) -> float:
    """``busy_timeout`` (seconds) if it is a non-negative number."""
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
        raise InvalidArgumentType(f"busy_timeout must be a number of seconds, not {busy_timeout!r}")
    if busy_timeout < 0:
        raise InvalidArgument(f"busy_timeout must be at least 0 seconds, not {busy_timeout}")
    return float(busy_timeout)


def display_url(url: URL) -> str:
    """``url`` as messages and ``repr`` show it: no password, no query string (it may hold one)."""
    return url.set(query={}).render_as_string(hide_password=True)


def create_store_engine(
    url: str | URL,
    *,
    synchronous: str = "NORMAL",
    busy_timeout: float = 30.0,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
    asyncio: bool = False,
    **engine_options: Any,
) -> Engine:
    """An engine for ``url`` set up as the store needs it; ``engine_options`` go to SQLAlchemy.

    With ``asyncio=True`` it is the ``sync_engine`` of an asyncio engine on the async driver
    (aiosqlite, psycopg's async connection): the store's code runs unchanged on it inside
    SQLAlchemy's ``greenlet_spawn``, as an ``AsyncSession`` runs a ``Session``.

    On PostgreSQL every connection waits at most ``lock_timeout`` seconds for a row lock and
    runs a statement for at most ``statement_timeout`` seconds (0 turns either off), and a
    pooled connection is checked before use, so one the server dropped costs no caller an
    error. A host that shares one engine between its own tables and the store's can create
    it here.
    """
    parsed = store_url(url)
    if parsed.get_backend_name() == "postgresql":
        _require_psycopg()
        options = (
            f"-c lock_timeout={_milliseconds('lock_timeout', lock_timeout)} "
            f"-c statement_timeout={_milliseconds('statement_timeout', statement_timeout)}"
        )
        connect_args = dict(engine_options.pop("connect_args", {}))
        connect_args["options"] = f"{connect_args.get('options', '')} {options}".strip()
        engine_options = {"pool_pre_ping": True, **engine_options, "connect_args": connect_args}
    if asyncio:
        engine = _async_engine(parsed, engine_options)
    else:
        engine = create_engine(parsed, **engine_options)
    if parsed.get_backend_name() == "sqlite":
        configure_sqlite(engine, synchronous=synchronous, busy_timeout=busy_timeout)
    return engine


#: The async driver of each backend, for ``asyncio=True``.
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg_async"}


def _async_engine(parsed: URL, engine_options: dict[str, Any]) -> Engine:
    backend = parsed.get_backend_name()
    for module in ("greenlet", *(["aiosqlite"] if backend == "sqlite" else [])):
        try:
            __import__(module)
        except ImportError:
            raise PhaseKitError(
                f"an asyncio store on {backend} needs {module}, which is not installed: "
                "pip install 'phasekit[async]'"
            ) from None
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 (asyncio only)

    driver = parsed.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}")
    return create_async_engine(driver, **engine_options).sync_engine


def _milliseconds(name: str, seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise InvalidArgument(f"{name} must be a number of seconds, at least 0, not {seconds!r}")
    return round(seconds * 1000)


def configure_sqlite(
    engine: Engine, *, synchronous: str = "NORMAL", busy_timeout: float = 30.0
) -> None:
    """Make ``engine``'s SQLite connections safe to share between processes.

    Every connection gets WAL mode, the ``synchronous`` level, a busy timeout and foreign
    keys, and SQLAlchemy (not the sqlite3 module) emits ``BEGIN``: a plain ``BEGIN`` for
    reads, ``BEGIN IMMEDIATE`` for transactions carrying the ``WRITE_OPTION`` execution
    option, so two writers queue on the busy timeout instead of failing on a lock upgrade.
    Idempotent for the same settings.
    """
    settings = (check_synchronous(synchronous), check_busy_timeout(busy_timeout))
    known = _sqlite_settings.get(engine)
    if known is not None:
        if known != settings:
            raise InvalidArgument(
                f"this engine's SQLite connections are already set up with "
                f"synchronous={known[0]}, busy_timeout={known[1]}; cannot change them to "
                f"synchronous={settings[0]}, busy_timeout={settings[1]}"
            )
        return
    mode, timeout = settings
    pragmas = (
        f"PRAGMA busy_timeout = {round(timeout * 1000)}",
        "PRAGMA journal_mode = WAL",
        f"PRAGMA synchronous = {mode}",
        "PRAGMA foreign_keys = ON",
    )

    # On checkout rather than on connect, so that connections a host's engine opened
    # before the store was created are set up too.
    def set_up(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        if record.info.get(_CONFIGURED):
            return
        dbapi_connection.isolation_level = None  # the sqlite3 module no longer emits BEGIN
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()
        record.info[_CONFIGURED] = True

    def begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        if conn.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")

    event.listen(engine, "checkout", set_up)
    event.listen(engine, "begin", begin)
    _sqlite_settings[engine] = settings


def _require_psycopg() -> None:
    """Refuse a PostgreSQL store, naming the extra to install, when psycopg is missing."""
    try:
        import psycopg  # noqa: F401, PLC0415 (only PostgreSQL stores need it)
    except ImportError:
        raise PhaseKitError(
            "postgresql:// stores need the psycopg driver, which is not installed: "
            "pip install 'phasekit[postgresql]'"
        ) from None
