"""Alembic over the SQL store's tables, with the real tool: the ``env.py`` of docs/stores.md,
``alembic revision --autogenerate``, ``alembic upgrade head`` on the migration as written, a
tracker on the tables with ``create_tables=False``, and a second autogenerate with nothing to
change; on SQLite files and in a PostgreSQL schema of the test's own, dropped after it."""

from __future__ import annotations

import ast
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from statemachine.plugins.sql import SQLStore, store_url, tables_metadata
from statemachine.plugins.sql.schema import SCHEMA_VERSION

from statemachine import Tracker, parse_spec

from .conftest import postgres_url

pytest.importorskip("alembic")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
STORES_DOC = ROOT / "docs" / "stores.md"

SPEC = parse_spec(
    """\
phasekit: 1
name: timed
statuses:
  waiting: {initial: true}
  running: {active: true, heartbeat: 5m, on_timeout: fail}
  done: {terminal: true, success: true}
  failed: {terminal: true}
transitions:
  - {trigger: start, source: waiting, dest: running}
  - {trigger: finish, source: running, dest: done}
  - {trigger: fail, source: [waiting, running], dest: failed}
phases:
  - {name: fetch}
  - {name: store}
aggregate:
  status:
    - {any: [failed], then: failed}
    - {all: [done], then: done}
    - {any: [running, done], then: running}
    - {otherwise: waiting}
""",
    "timed.yaml",
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class Place:
    """Where the tables go: a database URL, and the store's options for it."""

    url: str
    table_prefix: str
    schema: str | None

    @property
    def sqlalchemy_url(self) -> str:
        return store_url(self.url).render_as_string(hide_password=False)

    def store(self, **options: object) -> SQLStore:
        return SQLStore(self.url, table_prefix=self.table_prefix, schema=self.schema, **options)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    """A SQLite file, or a PostgreSQL schema that does not exist yet (dropped after)."""
    if request.param == "sqlite":
        yield Place(f"sqlite:///{tmp_path / 'jobs.db'}", "app_", None)
        return
    url = postgres_url()
    schema = f"phasekit_alembic_{secrets.token_hex(5)}"
    try:
        yield Place(url, "app_", schema)
    finally:
        engine = create_engine(store_url(url))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def documented_env_py(place: Place) -> str:
    """The ``env.py`` of docs/stores.md, with the place's table prefix and schema."""
    blocks = re.findall(r"```python\n(# migrations/env\.py\n.*?)```", STORES_DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/stores.md shows one migrations/env.py"
    env_py = blocks[0]
    for name, value in (("TABLE_PREFIX", place.table_prefix), ("SCHEMA", place.schema)):
        env_py, found = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", env_py, flags=re.M)
        assert found == 1, name
    return env_py


class Project:
    """An Alembic project made by ``alembic init``, driven through the ``alembic`` command."""

    def __init__(self, root: Path, place: Place) -> None:
        root.mkdir()
        self.root = root
        self.alembic("init", "migrations")
        (root / "migrations" / "env.py").write_text(documented_env_py(place))
        ini = root / "alembic.ini"
        url = place.sqlalchemy_url.replace("%", "%%")  # configparser interpolation
        lines, found = re.subn(
            r"^sqlalchemy\.url = .*$", f"sqlalchemy.url = {url}", ini.read_text(), flags=re.M
        )
        assert found == 1
        ini.write_text(lines)

    def alembic(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout + result.stderr

    def autogenerate(self, rev_id: str) -> ast.FunctionDef:
        """``alembic revision --autogenerate``: the new migration's ``upgrade()``."""
        self.alembic("revision", "--autogenerate", "-m", rev_id, "--rev-id", rev_id)
        (path,) = (self.root / "migrations" / "versions").glob(f"{rev_id}_*.py")
        module = ast.parse(path.read_text())
        (upgrade,) = [
            node
            for node in module.body
            if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
        ]
        return upgrade


def statements(function: ast.FunctionDef) -> list[ast.stmt]:
    """The function's statements, its docstring left out."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body


def created_tables(upgrade: ast.FunctionDef) -> set[str]:
    return {
        call.args[0].value
        for call in ast.walk(upgrade)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "create_table"
        and isinstance(call.args[0], ast.Constant)
    }


def drive(store: SQLStore) -> None:
    """A tracker's work on the store: jobs, changes, the event log, a deadline swept."""
    now = [T0]
    with Tracker(SPEC, store, [], clock=lambda: now[0], load_entrypoints=False) as tracker:
        tracker.create_job("a", metadata={"k": "v"})
        tracker.create_job("b")
        tracker.fire("a", "fetch", "start", idempotency_key="a:start")
        tracker.fire("a", "fetch", "start", idempotency_key="a:start")  # a retry: nothing
        tracker.fire("b", "fetch", "start")
        now[0] = T0 + timedelta(minutes=3)
        tracker.report_progress("b", "fetch", 5, items_total=10)  # b's heartbeat
        tracker.fire("a", "store", "start")
        assert [e.event.type for e in store.read_events()][:3] == [
            "job_created",
            "job_created",
            "phase_changed",
        ]
        assert store.last_position() == len(store.read_events())
        now[0] = T0 + timedelta(minutes=6)
        swept = tracker.sweep()  # a's fetch went 6 minutes without a report
        assert [(e.job_id, e.phase, e.dest) for e in swept] == [("a", "fetch", "failed")]
        assert tracker.get_job("a").get_overall_status() == "failed"
        assert tracker.get_job("b").phases["fetch"].items_processed == 5
        assert [e.type for e in tracker.history("a")] == ["job_created"] + ["phase_changed"] * 3
        assert [j.job_id for j in tracker.list_jobs(phase_status={"fetch": "running"})] == ["b"]
        cursor = store.claim_cursor("hook", "relay", lease=30)
        assert cursor is not None and cursor.lease_until is not None
    with store.engine.connect() as conn:
        info = store.tables.schema_info
        assert conn.execute(select(info.c.name, info.c.version)).all() == [
            ("phasekit", SCHEMA_VERSION)
        ]


def sqlite_ddl(path: Path) -> dict[str, str]:
    """Every table's and index's DDL in a SQLite file, Alembic's own table left out."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'alembic%' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    return dict(rows)


def test_an_autogenerated_migration_runs_unedited_and_then_has_nothing_to_change(
    place: Place, tmp_path: Path
) -> None:
    project = Project(tmp_path / "project", place)
    first = project.autogenerate("first")
    expected = {t.name for t in tables_metadata(place.table_prefix, place.schema).sorted_tables}
    assert created_tables(first) == expected
    # Stock types only: the migration names nothing but Alembic's op and sqlalchemy as sa.
    assert {n.id for n in ast.walk(first) if isinstance(n, ast.Name)} == {"op", "sa"}

    project.alembic("upgrade", "head")  # the migration as autogenerated
    store = place.store(create_tables=False)
    drive(store)
    store.close()

    again = project.autogenerate("second")
    assert [type(s).__name__ for s in statements(again)] == ["Pass"]

    if place.schema is None:  # the same tables, index for index, as a store makes itself
        made = tmp_path / "made.db"
        itself = SQLStore(f"sqlite:///{made}", table_prefix=place.table_prefix)
        itself.load("nothing")
        itself.close()
        assert sqlite_ddl(made) == sqlite_ddl(Path(store_url(place.url).database or ""))


def test_tables_a_store_made_itself_leave_alembic_nothing_to_change(
    place: Place, tmp_path: Path
) -> None:
    store = place.store()  # create_tables=True: the store makes them (and the schema)
    store.load("nothing")
    store.close()
    project = Project(tmp_path / "project", place)
    adopt = project.autogenerate("adopt")
    assert [type(s).__name__ for s in statements(adopt)] == ["Pass"]
    project.alembic("stamp", "head")
    store = place.store(create_tables=False)
    drive(store)
    store.close()
