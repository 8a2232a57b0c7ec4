"""The SQL store: jobs in SQLite or PostgreSQL, through SQLAlchemy Core."""

from __future__ import annotations

from .engine import configure_sqlite, create_store_engine, store_url
from .schema import Tables, UTCDateTime, build_tables
from .store import SQLStore

__all__ = [
    "SQLStore",
    "Tables",
    "UTCDateTime",
    "build_tables",
    "configure_sqlite",
    "create_store_engine",
    "store_url",
]
