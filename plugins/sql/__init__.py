"""The SQL store plugin: jobs in SQLite or PostgreSQL, through SQLAlchemy Core.

Registered through the ``phasekit`` entry point ``sql`` for ``sqlite://`` and
``postgresql://`` URLs; PostgreSQL needs the ``postgresql`` extra (psycopg).
"""

from __future__ import annotations

from collections.abc import Mapping

from statemachine import StoreFactory, hookimpl

from .engine import configure_sqlite, create_store_engine, store_url
from .schema import Tables, UTCDateTime, build_tables, tables_metadata
from .store import SQLStore

__all__ = [
    "SQLStore",
    "Tables",
    "UTCDateTime",
    "build_tables",
    "configure_sqlite",
    "create_store_engine",
    "register_stores",
    "store_url",
    "tables_metadata",
]


@hookimpl
def register_stores() -> Mapping[str, StoreFactory]:
    """The SQL store for ``sqlite://`` and ``postgresql://`` URLs."""
    return {"sqlite": SQLStore.from_url, "postgresql": SQLStore.from_url}
