"""PostgreSQL for the tests: skipped with a how-to locally, required in CI; .ci/pg.sh."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from .conftest import PG_URL_ENV, postgres_url

REPO = Path(__file__).resolve().parents[1]
PG_SH = REPO / ".ci" / "pg.sh"
ONE_POSTGRES_TEST = "test_every_field_round_trips_exactly and postgresql"


def _silent_port() -> int:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_pytest_without_postgres(*, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (PG_URL_ENV, "CI")}
    env["PHASEKIT_PG_PORT"] = str(_silent_port())  # the default address: nobody answers
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_sql_store.py",
            "-k",
            ONE_POSTGRES_TEST,
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
        ],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_a_server_postgresql_tests_are_skipped_saying_how_to_enable_them() -> None:
    result = run_pytest_without_postgres(ci=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "set PHASEKIT_PG_URL=postgresql://user@host:port/db" in result.stdout
    assert "PostgreSQL tests skipped: no server answered on 127.0.0.1:" in result.stdout


@pytest.mark.postgres
def test_a_server_on_the_default_address_runs_the_postgresql_tests() -> None:
    server = make_url(postgres_url())
    if server.database != "test" or server.username not in ("postgres", "root"):
        pytest.skip("the run's server is not on a default URL the tests look for")
    env = {k: v for k, v in os.environ.items() if k not in (PG_URL_ENV, "CI")}
    env["PHASEKIT_PG_HOST"] = server.host or "127.0.0.1"
    env["PHASEKIT_PG_PORT"] = str(server.port or 5432)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_sql_store.py", "-k", ONE_POSTGRES_TEST,
         "-p", "no:cacheprovider", "-q"],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "1 passed" in result.stdout
    assert "PostgreSQL tests ran on postgresql+psycopg://" in result.stdout


def test_in_ci_a_postgresql_test_without_a_server_fails_the_run() -> None:
    result = run_pytest_without_postgres(ci=True)
    assert result.returncode == 1, result.stdout
    assert "PostgreSQL tests must run in CI: no server answered on" in result.stdout
    assert "skipped" not in result.stdout


def source_pg_sh(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash after sourcing .ci/pg.sh under ``set -euo pipefail``."""
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{PG_SH}"; {script}'],
        check=False,
        env={**{k: v for k, v in os.environ.items() if k != PG_URL_ENV}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.postgres
def test_pg_sh_uses_a_server_that_answers() -> None:
    server = make_url(postgres_url())
    result = source_pg_sh(
        'echo "$PHASEKIT_PG_URL"; echo "${phasekit_pg_dir:-none}"',
        PHASEKIT_PG_HOST=server.host or "127.0.0.1",
        PHASEKIT_PG_PORT=str(server.port or 5432),
    )
    assert result.returncode == 0, result.stderr
    url, own_dir = result.stdout.split()
    assert make_url(url).port == (server.port or 5432)
    assert make_url(url).database == "test"
    assert own_dir == "none"


HAS_SERVER_BINARIES = shutil.which("psql") is not None and (
    shutil.which("initdb") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
)


@pytest.mark.skipif(not HAS_SERVER_BINARIES, reason="needs PostgreSQL's psql and initdb")
def test_pg_sh_starts_a_throwaway_server_when_none_answers_and_stops_it_at_exit() -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        silent_port = s.getsockname()[1]
    result = source_pg_sh(
        'echo "$PHASEKIT_PG_URL" "$phasekit_pg_dir"; '
        'psql "$PHASEKIT_PG_URL" -qAtc "select current_database()"',
        PHASEKIT_PG_PORT=str(silent_port),
    )
    assert result.returncode == 0, result.stderr
    first, database = result.stdout.splitlines()
    url, own_dir = first.split()
    assert database == "test"
    port = make_url(url).port
    assert port is not None
    assert port != silent_port
    assert not port_is_open(port)  # stopped at exit
    assert not Path(own_dir).exists()  # and removed
