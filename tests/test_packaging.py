"""The distributions: an sdist whose tests pass unpacked, a wheel that installs into a fresh
virtualenv and works from any folder (plugins included), both clean for the package index."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
#: A checkout as a fresh clone has it (caches, builds and databases left out).
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.py[cod]", ".*_cache", ".hypothesis",
    ".venv", ".venv-*", "*.db", "*.db-*", "*.log",
)  # fmt: skip
#: What the sdist holds beside the packages: what the test suite reads (MANIFEST.in).
SDIST_FOLDERS = ("docs", "examples", "tests", "benchmarks", ".ci")
#: The tests run from the unpacked sdist, and what they import beyond phasekit's extras.
SDIST_TESTS = ("tests/test_docs.py", "tests/test_examples.py")
SDIST_TEST_EXTRAS = "postgresql,async"
SDIST_TEST_REQUIREMENTS = ("pytest", "hypothesis", "fastapi", "schemathesis")
#: Left out there: a property-based run of the API (18 s), which the checkout runs.
SDIST_SLOW_TEST = "tests/test_examples.py::test_the_service_answers_as_its_openapi_document_says"

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


@dataclass(frozen=True)
class Distributions:
    """The sdist and wheel ``python -m build`` makes of a copy of the checkout."""

    source: Path
    sdist: Path
    wheel: Path

    def sdist_names(self) -> set[str]:
        """The sdist's files, relative to its top folder."""
        with tarfile.open(self.sdist) as archive:
            return {
                name.split("/", 1)[1]
                for name in archive.getnames()
                if "/" in name and archive.getmember(name).isfile()
            }


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    # As a release is made: the sdist first, then the wheel built from the unpacked sdist
    # (so a file the sdist misses breaks the wheel too).
    pytest.importorskip("build", reason="python -m build needs the dev extra's build")
    root = tmp_path_factory.mktemp("dist")
    source = root / "phasekit-src"
    shutil.copytree(REPO, source, ignore=SOURCE_IGNORE)
    out = root / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = out.glob("phasekit-*.tar.gz")
    (wheel,) = out.glob("phasekit-*.whl")
    return Distributions(source, sdist, wheel)


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
def installed(
    tmp_path_factory: pytest.TempPathFactory, distributions: Distributions
) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("packaging")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = _clean_env(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    # The built wheel (its contents are checked below), installed with the two plugin
    # projects as a user would; pip's cache keeps repeated runs quick.
    wheel = distributions.wheel
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


# -- the sdist, the package index --------------------------------------------------------------


def _files_under(root: Path, folder: str) -> set[str]:
    return {
        path.relative_to(root).as_posix() for path in (root / folder).rglob("*") if path.is_file()
    }


def test_the_sdist_holds_the_docs_examples_and_everything_the_tests_read(
    distributions: Distributions,
) -> None:
    names = distributions.sdist_names()
    for folder in SDIST_FOLDERS:
        wanted = _files_under(distributions.source, folder)
        assert wanted, folder
        assert wanted <= names, sorted(wanted - names)
    for name in (
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "docs/dashboard.png",
        "tests/conftest.py",
    ):
        assert name in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".db"))]


def test_the_tests_pass_from_the_unpacked_sdist(
    distributions: Distributions, tmp_path: Path
) -> None:
    with tarfile.open(distributions.sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            archive.extractall(tmp_path, filter="data")
        else:  # pragma: no cover
            archive.extractall(tmp_path)  # our own sdist
    (unpacked,) = tmp_path.glob("phasekit-*")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = _clean_env(venv)
    python = str(venv / "bin" / "python")
    # The wheel built from this sdist (pip would build the same from it, more slowly).
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-compile",
         f"phasekit[{SDIST_TEST_EXTRAS}] @ {distributions.wheel.as_uri()}",
         *SDIST_TEST_REQUIREMENTS],
        check=True, env=env, timeout=900,
    )  # fmt: skip
    # -P and --import-mode=append: the tests import the installed sdist, not the unpacked
    # sources beside them (which the docs' tests read as files).
    where = subprocess.run(
        [python, "-P", "-c", "import statemachine.plugins.sql; print(statemachine.__file__)"],
        cwd=unpacked, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv)
    result = subprocess.run(
        [python, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=append",
         *SDIST_TESTS, "--deselect", SDIST_SLOW_TEST],
        cwd=unpacked, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary


def test_the_distributions_pass_twine_check_and_check_wheel_contents(
    distributions: Distributions,
) -> None:
    for module in ("twine", "check_wheel_contents"):
        pytest.importorskip(module, reason=f"{module} comes with the dev extra")
    for command in (
        ["twine", "check", "--strict", str(distributions.sdist), str(distributions.wheel)],
        ["check_wheel_contents", str(distributions.wheel)],
    ):
        result = subprocess.run(
            [sys.executable, "-m", *command],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project


def test_the_wheel_names_the_project_urls_all_on_the_repository(
    distributions: Distributions,
) -> None:
    urls: dict[str, str] = _project()["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Repository", "Issues", "Changelog"}
    assert all(url.startswith(urls["Repository"]) for url in urls.values())
    with zipfile.ZipFile(distributions.wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        lines = wheel.read(metadata).decode().splitlines()
    assert {line for line in lines if line.startswith("Project-URL: ")} == {
        f"Project-URL: {label}, {url}" for label, url in urls.items()
    }


def _readme_links() -> list[tuple[bool, str]]:
    """Every link of the README, outside code: (whether it is an image, its target)."""
    text = (REPO / "README.md").read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # code blocks
    text = re.sub(r"`[^`\n]*`", "code", text)  # code spans
    links = [
        (bang == "!", target) for bang, target in re.findall(r"(!?)\[[^\]]*\]\(([^)\s]+)", text)
    ]
    links += [(False, t) for t in re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", text, re.M)]
    links += [
        (tag == "img", t) for tag, t in re.findall(r"<(\w+)[^>]*?(?:src|href)=\"([^\"]+)\"", text)
    ]
    return links


def test_the_readme_links_are_absolute_so_they_work_on_the_package_index() -> None:
    # The package index renders README.md alone: a link relative to the repository is dead
    # there. Links into the repository go to its main branch, and to a file it has.
    repository = _project()["urls"]["Repository"]
    links = _readme_links()
    assert len(links) > 10
    for image, target in links:
        if target.startswith("#"):
            continue
        assert re.match(r"https?://", target), f"{target}: relative, dead on the package index"
        if not target.startswith(f"{repository}/"):
            continue
        where = re.fullmatch(rf"{re.escape(repository)}/(blob|tree|raw)/main/(.+)", target)
        assert where, f"{target}: not a file or folder of {repository}'s main branch"
        kind, path = where.groups()
        assert (kind == "raw") == image, f"{target}: images are raw files, links blob or tree"
        found = REPO / path.split("#", 1)[0]
        assert found.is_dir() if kind == "tree" else found.is_file(), f"{target}: no {path}"
