"""The layout keeps its promises: layers, the public API, private names, the contributor map."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import statemachine

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "statemachine"
PLUGINS = ROOT / "plugins"

#: The public API. A name added to ``statemachine.__all__`` is a promise: add it here on purpose.
PUBLIC_API = [
    "Action",
    "AsyncTracker",
    "ConcurrentUpdateError",
    "ConfigError",
    "DeadLetter",
    "DeadlineIndex",
    "DuePhase",
    "DeliveryError",
    "EndpointGone",
    "Event",
    "EventLog",
    "Guard",
    "HISTORY_TYPES",
    "HistoryEvent",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidTransition",
    "JobCounter",
    "JobCreated",
    "JobDeleted",
    "JobExists",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "JobStateSchema",
    "JobStatusChanged",
    "LoggedEvent",
    "MemoryStore",
    "NotifierStatus",
    "PermanentDeliveryError",
    "PersistenceError",
    "PhaseChanged",
    "PhaseKitError",
    "PhaseRecord",
    "PhaseSet",
    "PhaseState",
    "PhaseStateSchema",
    "PhaseStatus",
    "PluginInfo",
    "ProgressUpdated",
    "Relay",
    "RelayCursor",
    "RelayLedger",
    "RelayOptions",
    "SpecArchive",
    "SpecError",
    "SpecIssue",
    "SpecMismatch",
    "StatusExplanation",
    "Store",
    "StoreFactory",
    "Tracker",
    "TransitionContext",
    "TransitionRejected",
    "TransitionRequest",
    "UnknownPhase",
    "Veto",
    "__version__",
    "check_spec",
    "hookimpl",
    "list_cursor",
    "list_order",
    "load_spec",
    "open_store",
    "parse_duration",
    "parse_event",
    "parse_spec",
    "spec_from_dict",
]


def _modules(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        yield from sorted(folder.rglob("*.py"))


def test_the_public_api_is_pinned() -> None:
    assert sorted(statemachine.__all__) == sorted(PUBLIC_API)
    for name in statemachine.__all__:
        assert hasattr(statemachine, name), name


def test_every_layer_imports_only_the_layers_below_it() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = str(lint_imports) if lint_imports.exists() else shutil.which("lint-imports")
    assert command, "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_bundled_plugins_import_only_the_public_api() -> None:
    public = set(statemachine.__all__)
    for path in _modules(PLUGINS):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("statemachine."), (path, alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "statemachine":
                    names = {alias.name for alias in node.names}
                    assert names <= public, (path, sorted(names - public))
                else:
                    assert not node.module.startswith("statemachine"), (path, node.module)


def _private_names_defined(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, attributes, slots, variables."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_reads_another_modules_private_names() -> None:
    found: list[str] = []
    for path in _modules(PACKAGE, PLUGINS):
        tree = ast.parse(path.read_text(), str(path))
        own = _private_names_defined(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                if node.attr.startswith("__") or node.attr in own:
                    continue
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} reads .{node.attr}")
    assert not found, "\n".join(found)


def test_the_architecture_map_names_only_paths_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:statemachine|plugins|config|tests|docs)/[\w./-]*)`", text))
    assert len(paths) > 30  # the code map is there
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def test_the_architecture_map_names_every_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    for path in _modules(PACKAGE, PLUGINS):
        relative = path.relative_to(ROOT)
        if path.name in {"__init__.py", "__main__.py"} or relative.parts[:2] == (
            "statemachine",
            "cli",
        ):
            continue  # a package is named by its folder; the CLI by its folder
        assert f"`{relative}`" in text, f"docs/architecture.md does not name {relative}"
