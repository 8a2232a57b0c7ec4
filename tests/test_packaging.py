"""A non-editable install into a fresh virtualenv works from any folder, plugins included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
#: What a source distribution of phasekit is made of (tests, caches and builds left out).
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".venv",
    "tests", "*.db", "*.db-*", "*.log",
)  # fmt: skip

GOOD_PLUGIN = '''\
"""A third-party plugin: a guard, found through its entry point."""

from statemachine import hookimpl


@hookimpl
def register_guards():
    return {"always": lambda ctx: True}
'''
BROKEN_PLUGIN = 'raise RuntimeError("boom: this plugin is broken on purpose")\n'
CUSTOM_SPEC = """\
phasekit: 1
name: two-step
statuses:
  todo: {initial: true}
  doing: {active: true}
  done: {terminal: true, success: true}
transitions:
  - {trigger: start, source: todo, dest: doing}
  - {trigger: finish, source: doing, dest: done}
phases:
  - {name: first}
  - {name: second}
aggregate:
  status:
    - {all: [done], then: done}
    - {any: [doing, done], then: doing}
    - {otherwise: todo}
"""


def _plugin_project(root: Path, distribution: str, entry: str, module: str, code: str) -> Path:
    """A tiny installable project declaring one ``phasekit`` entry point."""
    root.mkdir()
    (root / "pyproject.toml").write_text(
        f"""\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{distribution}"
version = "1.2.3"

[project.entry-points.phasekit]
{entry} = "{module}"

[tool.setuptools]
py-modules = ["{module}"]
"""
    )
    (root / f"{module}.py").write_text(code)
    return root


def _clean_env(venv: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} and not k.startswith("PHASEKIT_")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


class Installed:
    """phasekit installed (not editable) in a fresh virtualenv, with two plugin packages."""

    def __init__(self, venv: Path, wheel: Path, elsewhere: Path) -> None:
        self.venv = venv
        self.wheel = wheel
        self.elsewhere = elsewhere
        self.env = _clean_env(venv)

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args),
            cwd=self.elsewhere,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def phasekit(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "phasekit"), *args, ok=ok)

    def python(self, code: str) -> str:
        return self.run(str(self.venv / "bin" / "python"), "-c", code).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "phasekit-src"
    shutil.copytree(REPO, source, ignore=SOURCE_IGNORE)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = _clean_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    wheels = root / "wheels"
    # Build the wheel first so its contents can be checked, then install it (and the two
    # plugin projects) as a user would; pip's cache keeps repeated runs quick.
    subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(source)],
        check=True, env=env, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("phasekit-*.whl")
    good = _plugin_project(
        root / "good", "phasekit-good-plugin", "good", "phasekit_good_plugin", GOOD_PLUGIN
    )
    broken = _plugin_project(
        root / "broken", "phasekit-broken-plugin", "broken", "phasekit_broken_plugin", BROKEN_PLUGIN
    )
    subprocess.run(
        [*pip, "install", "--quiet", str(wheel), str(good), str(broken)],
        check=True, env=env, timeout=600,
    )  # fmt: skip
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    yield Installed(venv, wheel, elsewhere)


def test_the_wheel_ships_the_bundled_phase_sets_schema_and_type_marker(
    installed: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for name in (
        "statemachine/config/ingestion.yaml",
        "statemachine/config/ml-training.yaml",
        "statemachine/config/deployment.yaml",
        "statemachine/config/phasekit.schema.json",
        "statemachine/py.typed",
        "statemachine/cli/__init__.py",
        "statemachine/plugins/py.typed",
        "statemachine/plugins/logging_notifier.py",
        "statemachine/plugins/webhook.py",
        "statemachine/plugins/sql/__init__.py",
    ):
        assert name in names


def test_the_wheel_installs_one_top_level_package(installed: Installed) -> None:
    # A top-level ``plugins`` (or ``config``) would be shadowed by a host's folder of that name.
    tops = {n.split("/", 1)[0] for n in zipfile.ZipFile(installed.wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"statemachine"}


def test_the_installed_package_is_used_not_the_checkout(installed: Installed) -> None:
    where = installed.python(
        "import statemachine, statemachine.plugins, statemachine.config\n"
        "for m in (statemachine, statemachine.plugins, statemachine.config):\n"
        "    print(m.__file__)\n"
    )
    assert all(Path(line).is_relative_to(installed.venv) for line in where.split())


HOST_APP = """\
import json, logging, sys

import plugins  # the host application's own package, beside this script

from statemachine import Tracker

assert plugins.HOST_OWNED, "the host's plugins package is the one imported"
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
config = {
    "spec": "ingestion",
    "store": "sqlite:///host.db",
    "notifiers": {
        "logging": {"level": "INFO"},
        "webhook": {"url": "http://127.0.0.1:9/hooks", "unsigned": True, "timeout": 1},
    },
    "relay_options": {"drain_timeout": 1},
}
with Tracker.from_config(config) as tracker:
    job = tracker.create_job("host-1")
    job.phases["discovery"].start()
    names = sorted(info.name for info in tracker.plugin_info())
    names += sorted(f"relayed:{name}" for name in tracker.relay.notifiers)
with Tracker("ingestion", store="sqlite:///host.db") as again:
    status = again.get_job("host-1").phases["discovery"].status
print(json.dumps({"plugins": names, "status": status}))
"""


def test_a_host_application_with_its_own_plugins_package_keeps_the_bundled_backends(
    installed: Installed,
) -> None:
    host = installed.elsewhere / "host-app"
    (host / "plugins").mkdir(parents=True)
    (host / "plugins" / "__init__.py").write_text("HOST_OWNED = True\n")
    (host / "app.py").write_text(HOST_APP)
    result = subprocess.run(
        [str(installed.venv / "bin" / "python"), "app.py"],
        cwd=host, env=installed.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "running"  # the SQLite store kept it
    assert {"relayed:logging", "relayed:webhook", "sql"} <= set(out["plugins"])
    assert "job=host-1 v=2 phase_changed phase=discovery start" in result.stderr  # logging


def test_a_postgresql_store_without_psycopg_names_the_extra(installed: Installed) -> None:
    # The wheel was installed without extras, so psycopg is not there.
    assert "no psycopg" in installed.python(
        "import importlib.util\n"
        "print('no psycopg' if importlib.util.find_spec('psycopg') is None else 'psycopg')"
    )
    result = installed.phasekit(
        "jobs", "list", "--store", "postgresql://someone@127.0.0.1:5432/test", ok=False
    )
    assert result.returncode == 1
    assert "pip install 'phasekit[postgresql]'" in result.stderr


def test_bundled_phase_sets_load_by_name(installed: Installed) -> None:
    out = installed.python(
        "import statemachine\n"
        "for name in ('ingestion', 'ml-training', 'deployment'):\n"
        "    print(statemachine.load_spec(name).name)\n"
    )
    assert out.split() == ["ingestion", "ml-training", "deployment"]


def test_validate_works_from_another_folder(installed: Installed) -> None:
    (installed.elsewhere / "two-step.yaml").write_text(CUSTOM_SPEC)
    assert installed.phasekit("validate", "ingestion", "two-step.yaml").stdout.strip() == (
        "2 files valid"
    )


def test_schema_is_the_shipped_schema(installed: Installed) -> None:
    printed = json.loads(installed.phasekit("schema").stdout)
    shipped = json.loads((REPO / "config" / "phasekit.schema.json").read_text(encoding="utf-8"))
    assert printed == shipped


def test_the_module_entry_point_runs(installed: Installed) -> None:
    out = installed.run(str(installed.venv / "bin" / "python"), "-m", "statemachine", "--help")
    assert "Usage: python -m statemachine" in out.stdout or "Usage: phasekit" in out.stdout


def test_the_bundled_sqlite_store_works(installed: Installed) -> None:
    created = installed.phasekit(
        "jobs", "create", "--spec", "ingestion", "--id", "p1", "--store", "sqlite:///x.db", "--json"
    )
    assert json.loads(created.stdout)["job_id"] == "p1"
    assert (installed.elsewhere / "x.db").exists()
    listed = installed.phasekit("jobs", "list", "--store", "sqlite:///x.db", "--json")
    assert [job["job_id"] for job in json.loads(listed.stdout)] == ["p1"]


def test_entry_point_plugins_are_listed_and_a_broken_one_is_not_fatal(
    installed: Installed,
) -> None:
    result = installed.phasekit("plugins", "--json")
    plugins: dict[str, dict[str, Any]] = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["good"]["distribution"] == "phasekit-good-plugin"
    assert plugins["good"]["version"] == "1.2.3"
    assert plugins["good"]["hooks"] == ["register_guards"]
    assert plugins["good"]["error"] is None
    assert plugins["broken"]["error"] == "RuntimeError: boom: this plugin is broken on purpose"
    for bundled in ("logging", "webhook", "sql"):
        assert plugins[bundled]["error"] is None
    # Every other command still works, and says once, on one line, what did not load.
    created = installed.phasekit(
        "jobs", "create", "--spec", "ingestion", "--store", "sqlite:///y.db"
    )
    assert created.stdout.startswith("created job ingestion-")
    assert created.stderr.splitlines() == [
        "warning: phasekit plugin 'broken' could not be loaded: "
        "RuntimeError: boom: this plugin is broken on purpose"
    ]


EDITABLE_CHECK = """\
import json
import importlib.metadata

import statemachine, statemachine.config, statemachine.plugins, statemachine.plugins.sql
from statemachine import load_spec

print(json.dumps({
    "config": statemachine.config.__file__,
    "plugins": statemachine.plugins.__file__,
    "spec": load_spec("ingestion").filename,
    "entry_points": sorted(e.value for e in importlib.metadata.entry_points(group="phasekit")),
}))
"""


def test_an_editable_install_imports_the_bundled_plugins_and_phase_sets(
    tmp_path: Path,
) -> None:
    source = tmp_path / "phasekit-src"
    shutil.copytree(REPO, source, ignore=SOURCE_IGNORE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = _clean_env(venv)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", str(source)],
        check=True, env=env, timeout=600,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", EDITABLE_CHECK],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    # Both come from the checkout's own folders, through the package the install maps.
    assert found["config"] == str(source / "config" / "__init__.py")
    assert found["plugins"] == str(source / "plugins" / "__init__.py")
    assert found["spec"] == str(source / "config" / "ingestion.yaml")
    assert found["entry_points"] == [
        "statemachine.plugins.logging_notifier",
        "statemachine.plugins.nats_notifier",
        "statemachine.plugins.opentelemetry_tracing",
        "statemachine.plugins.prometheus_metrics",
        "statemachine.plugins.redis_notifier",
        "statemachine.plugins.sql",
        "statemachine.plugins.webhook",
    ]
