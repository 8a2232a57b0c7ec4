"""The drivers under figure 8's AsyncTracker commit: one call on the async driver against the
same call on the sync one, and how many calls on aiosqlite a fire by id makes.

What an AsyncTracker adds to a Tracker's commit is mostly per driver call: on aiosqlite every
call (a cursor, an execute, a fetch, a commit, the pool's rollback) is a round trip to the
connection's own thread; on psycopg's async connection every round trip to the server is
awaited on the event loop. These cases show that cost beside the commit figure.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

import psycopg

from .databases import Database
from .harness import Case

__all__ = ["AiosqliteCalls", "driver_cases"]

QUERY = "SELECT 1"


async def _timed_calls(call: Callable[[], Awaitable[Any]], n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            await call()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / n


def _sync_case(call: Callable[[], Any], n: int) -> Case:
    def case() -> float:
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(n):
                call()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        return elapsed / n

    return case


def driver_cases(db: Database, runner: asyncio.Runner, n: int, stack: ExitStack) -> dict[str, Case]:
    """``SELECT 1`` on the async driver (in ``runner``'s loop) and on the sync one; the
    connections are closed with ``stack`` (before ``runner`` is)."""
    aconn: Any
    conn: Any
    if db.backend == "sqlite":
        import aiosqlite  # noqa: PLC0415 - the async extra, needed only here

        aconn = runner.run(aiosqlite.connect(db.hand_target).__aenter__())
        conn = sqlite3.connect(db.hand_target, isolation_level=None)
    else:
        aconn = runner.run(psycopg.AsyncConnection.connect(db.hand_target, autocommit=True))
        conn = psycopg.connect(db.hand_target, autocommit=True)
    stack.callback(conn.close)
    stack.callback(lambda: runner.run(aconn.close()))

    def async_call() -> Awaitable[Any]:
        return aconn.execute(QUERY)  # type: ignore[no-any-return]

    return {
        "driver async": lambda: runner.run(_timed_calls(async_call, n)),
        "driver sync": _sync_case(lambda: conn.execute(QUERY), n),
    }


class AiosqliteCalls:
    """While entered, counts the calls queued to aiosqlite's connection threads (by wrapping
    aiosqlite's queueing method, restored on exit); ``calls`` stays None when this aiosqlite
    has no such method."""

    def __init__(self) -> None:
        self.calls: int | None = None
        self._original: Any = None

    def __enter__(self) -> AiosqliteCalls:
        from aiosqlite.core import Connection  # noqa: PLC0415

        original = getattr(Connection, "_execute", None)
        if original is None:
            return self
        self._original = original
        self.calls = 0

        async def counted(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            assert self.calls is not None
            self.calls += 1
            return await original(conn, fn, *args, **kwargs)

        Connection._execute = counted
        return self

    def __exit__(self, *exc: object) -> None:
        if self._original is not None:
            from aiosqlite.core import Connection  # noqa: PLC0415

            Connection._execute = self._original
