"""Durable commits (figure 3) and progress updates (figure 5) against hand-written SQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from statemachine import PhaseSet, Tracker

from .databases import Database
from .harness import Case, Figure, Settings, Target, batch, interleaved, pause_resume
from .profiles import profile_if_missed

__all__ = ["commit_figures", "progress_figures"]

DURABLE = "3. Durable commits"
PROGRESS = "5. Progress updates"
US = 1e6
_ids = itertools.count()


def _store(tracker: Tracker) -> Callable[[], Callable[[int], None]]:
    """Transitions through ``tracker``: a new job per batch, its first phase paused and resumed."""

    def prepare() -> Callable[[int], None]:
        phase = tracker.create_job(f"bench-{next(_ids)}").phases["discovery"]
        phase.trigger("start")

        return pause_resume(phase)

    return prepare


def _hand(db: Database, conn: Any, spec: PhaseSet) -> Callable[[], Callable[[int], None]]:
    def prepare() -> Callable[[int], None]:
        job = db.hand_job(conn, spec, f"hand-{next(_ids)}")
        job.fire(0, "start")

        def run(n: int) -> None:
            fire = job.fire
            for _ in range(n):
                fire(0, "pause")
                fire(0, "resume")

        return run

    return prepare


def commit_figures(settings: Settings, spec: PhaseSet, db: Database) -> list[Figure]:
    """A transition committed by the SQL store (through a Tracker) against the same by hand."""
    name = "SQLite" if db.backend == "sqlite" else "PostgreSQL"
    driver = "sqlite3" if db.backend == "sqlite" else "psycopg"
    pairs = settings.n(200 if db.backend == "sqlite" else 100, least=20)
    tracker = db.tracker(spec)
    conn = db.connect()
    try:
        store, hand = _store(tracker), _hand(db, conn, spec)
        cases: dict[str, Case] = {"store": batch(store, pairs, 2), "hand": batch(hand, pairs, 2)}
        samples = interleaved(cases, settings.rounds)
        figure = Figure.compare(
            f"durable.{db.backend}",
            DURABLE,
            f"{name} store: one transition committed (Tracker, `phase.pause()`)",
            samples["store"],
            samples["hand"],
            unit="µs/commit",
            factor=US,
            baseline_label=f"hand-written {driver}, same statements and values",
            target=Target(f"≤ 2x hand-written {driver}", "ratio", 2.0),
            note=(
                "WAL, synchronous=NORMAL on both"
                if db.backend == "sqlite"
                else "one connection each, server on this machine"
            ),
        )
        # Profiled now, while the database is still there.
        profiled = store()
        profile_if_missed(
            settings, figure, lambda: profiled(pairs * 5), pairs * 10, f"{name} store commits"
        )
        return [figure]
    finally:
        conn.close()
        tracker.close()


def progress_figures(settings: Settings, spec: PhaseSet, db: Database) -> list[Figure]:
    """``update_progress`` on SQLite, each report committed or coalesced, against by hand."""
    n = settings.n(200, least=20)
    every = db.tracker(spec)
    coalescing = db.tracker(spec, progress_interval=1.0)
    conn = db.connect()

    def tracked(tracker: Tracker) -> Callable[[], Callable[[int], None]]:
        def prepare() -> Callable[[int], None]:
            phase = tracker.create_job(f"bench-{next(_ids)}").phases["discovery"]
            phase.trigger("start")

            def run(count: int) -> None:
                update = phase.update_progress
                for i in range(count):
                    update(i, 1_000_000)

            return run

        return prepare

    def hand() -> Callable[[int], None]:
        job = db.hand_job(conn, spec, f"hand-{next(_ids)}")
        job.fire(0, "start")

        def run(count: int) -> None:
            progress = job.progress
            for i in range(count):
                progress(0, i, 1_000_000)

        return run

    try:
        cases: dict[str, Case] = {
            "every": batch(tracked(every), n, 1),
            "coalesced": batch(tracked(coalescing), n * 20, 1),
            "hand": batch(hand, n, 1),
        }
        samples = interleaved(cases, settings.rounds)
    finally:
        conn.close()
        every.close()
        coalescing.close()
    rates = {k: [1.0 / s for s in v] for k, v in samples.items()}
    return [
        Figure.compare(
            "progress.every",
            PROGRESS,
            "SQLite store: `update_progress`, every report committed",
            rates["every"],
            rates["hand"],
            unit="updates/s",
            baseline_label="hand-written sqlite3 (job row CAS + phase row)",
        ),
        Figure.compare(
            "progress.coalesced",
            PROGRESS,
            "SQLite store: `update_progress`, coalesced (`progress_interval=1.0`)",
            rates["coalesced"],
            rates["every"],
            unit="updates/s",
            baseline_label="the same store, every report committed",
            note="at most one commit per job per second; the rest update memory only",
        ),
    ]
