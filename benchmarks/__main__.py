"""``python -m benchmarks [--quick]``: run every figure, print the table, write RESULTS.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from statemachine import PhaseSet, load_spec

from .dashboard import dashboard_figures
from .databases import PG_ENV, libpq_url, pg_schema, sqlite_database
from .deadlines import deadline_figures
from .delivery import delivery_figures
from .durable import commit_figures, progress_figures
from .harness import Figure, Settings
from .hosts import host_figures
from .machine import describe, load_average, pg_server_version
from .report import results_markdown, table
from .scale import scale_figures
from .spec_load import spec_figures
from .throughput import throughput_figures
from .triggers import hook_figures, trigger_figures

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTIONS = (
    "spec",
    "trigger",
    "hooks",
    "sqlite",
    "postgresql",
    "delivery",
    "hosts",
    "scale",
    "deadlines",
    "dashboard",
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="phasekit's benchmarks, each figure against a baseline of the same run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (about a minute): prints the table, never writes RESULTS.md",
    )
    parser.add_argument("--rounds", type=int, help="interleaved repeats per micro-benchmark")
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run ({', '.join(SECTIONS)}); implies no RESULTS.md",
    )
    parser.add_argument(
        "--output", type=Path, help="write the results here (a full run defaults to RESULTS.md)"
    )
    parser.add_argument(
        "--pg-url", default=os.environ.get(PG_ENV) or None, help=f"PostgreSQL URL (${PG_ENV})"
    )
    parser.add_argument(
        "--no-psm", action="store_true", help="skip python-statemachine (needs a virtualenv)"
    )
    return parser.parse_args(argv)


def _pg_reachable(url: str) -> str | None:
    """Why the server at ``url`` cannot be used, or None when it answers."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _skipped(section: str, label: str, why: str) -> Figure:
    return Figure(
        key=f"skipped.{label}",
        section=section,
        label=label,
        value=float("nan"),
        unit="",
        spread=(float("nan"), float("nan")),
        note=why,
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    settings = Settings(
        quick=args.quick,
        rounds=args.rounds or (5 if args.quick else 15),
        pg_url=libpq_url(args.pg_url) if args.pg_url else None,
        psm=not args.no_psm,
    )
    spec = load_spec("ingestion")
    machine = describe()
    started, load_start = time.perf_counter(), load_average()
    figures: list[Figure] = []

    def section(name: str, run: Callable[[], list[Figure]]) -> None:
        if name not in only:
            return
        t = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        found = run()
        figures.extend(found)
        print(f"   {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)

    section("spec", lambda: spec_figures(settings))
    section("trigger", lambda: trigger_figures(settings, spec))
    section("hooks", lambda: hook_figures(settings, spec))
    with tempfile.TemporaryDirectory(prefix="phasekit-bench-") as folder:

        def sqlite_figures() -> list[Figure]:
            with sqlite_database(Path(folder)) as db:
                return commit_figures(settings, spec, db) + progress_figures(settings, spec, db)

        section("sqlite", sqlite_figures)
    section("postgresql", lambda: _postgres(settings, spec, machine))
    section("delivery", lambda: _delivery(settings, spec, machine))
    section("hosts", lambda: host_figures(settings, spec, machine))
    section("scale", lambda: scale_figures(settings, spec))
    section("deadlines", lambda: _deadlines(settings, machine))
    section("dashboard", lambda: dashboard_figures(settings, machine))

    print(table(figures))
    seconds = time.perf_counter() - started
    output = args.output
    if output is None and not args.quick and not args.only:
        output = RESULTS
    if output is not None:
        command = "python -m benchmarks" + (" --quick" if args.quick else "")
        output.write_text(
            results_markdown(
                figures,
                machine,
                command=command,
                rounds=settings.rounds,
                seconds=seconds,
                load=(load_start, load_average()),
            ),
            encoding="utf-8",
        )
        print(f"\nwritten: {output}")
    else:
        print(f"\n{'quick run' if args.quick else 'partial run'}: RESULTS.md left as it was")
    print(f"{seconds:.0f} s in all", file=sys.stderr)
    return 0


def _postgres(settings: Settings, spec: PhaseSet, machine: dict[str, str]) -> list[Figure]:
    section = "3. Durable commits"
    if not settings.pg_url:
        return [_skipped(section, "PostgreSQL figures", f"skipped: ${PG_ENV} is not set")]
    why = _pg_reachable(settings.pg_url)
    if why is not None:
        return [_skipped(section, "PostgreSQL figures", f"skipped: server unreachable: {why}")]
    machine["PostgreSQL server"] = pg_server_version(settings.pg_url)
    with pg_schema(settings.pg_url) as db:
        return commit_figures(settings, spec, db) + throughput_figures(settings, db)


def _deadlines(settings: Settings, machine: dict[str, str]) -> list[Figure]:
    """The deadline figures: SQLite always, PostgreSQL when its server answers."""
    with (
        tempfile.TemporaryDirectory(prefix="phasekit-bench-") as folder,
        sqlite_database(Path(folder)) as db,
    ):
        figures = deadline_figures(settings, db)
    section = "9. Deadlines"
    if not settings.pg_url:
        return [
            *figures,
            _skipped(section, "PostgreSQL deadline figures", f"skipped: ${PG_ENV} is not set"),
        ]
    why = _pg_reachable(settings.pg_url)
    if why is not None:
        why = f"skipped: server unreachable: {why}"
        return [*figures, _skipped(section, "PostgreSQL deadline figures", why)]
    machine["PostgreSQL server"] = pg_server_version(settings.pg_url)
    with pg_schema(settings.pg_url) as db:
        return figures + deadline_figures(settings, db)


def _delivery(settings: Settings, spec: PhaseSet, machine: dict[str, str]) -> list[Figure]:
    """The delivery figures: SQLite always, PostgreSQL when its server answers."""
    if not settings.pg_url:
        return delivery_figures(settings, spec, f"skipped: ${PG_ENV} is not set")
    why = _pg_reachable(settings.pg_url)
    skipped = None if why is None else f"skipped: server unreachable: {why}"
    if why is None:
        machine["PostgreSQL server"] = pg_server_version(settings.pg_url)
    return delivery_figures(settings, spec, skipped)


if __name__ == "__main__":
    sys.exit(main())
