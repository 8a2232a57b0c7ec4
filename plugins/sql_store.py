"""phasekit's SQL stores: ``sqlite:///path.db`` and ``postgresql://user@host:port/db``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from statemachine import Store, hookimpl

from .sql import SQLStore, build_tables, create_store_engine

__all__ = ["SQLStore", "build_tables", "create_store_engine", "register_stores"]


@hookimpl
def register_stores() -> Mapping[str, Callable[..., Store]]:
    """The SQL store for ``sqlite://`` and ``postgresql://`` URLs."""
    return {"sqlite": SQLStore.from_url, "postgresql": SQLStore.from_url}
