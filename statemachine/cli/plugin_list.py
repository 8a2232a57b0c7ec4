"""``phasekit plugins``: every plugin a tracker would load, with its hooks and load errors."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.table import Table
from rich.text import Text

from ..errors import PhaseKitError
from ..hooks import PluginManager
from ..store import EventLog, RelayLedger
from .app import cli, quiet_stderr_logging
from .output import console, echo_json, one_line
from .stores import command_plugins

__all__ = ["plugins"]


def _store_note(factory: object) -> str:
    """``(event log)`` for a store class that keeps one, so the relay can deliver from it."""
    owner = getattr(factory, "__self__", None)  # a classmethod like SQLStore.from_url
    if isinstance(owner, type) and issubclass(owner, EventLog) and issubclass(owner, RelayLedger):
        return " (event log)"
    return " (no event log: notifiers in-process only)"


def _notifier_note(factory: object) -> str:
    """``(relayed)`` for a notifier that raises when a delivery fails, as the relay needs."""
    if getattr(factory, "relayable", False):
        return " (relayed)"
    return " (in-process only)"


def _no_note(factory: object) -> str:
    return ""


def _registries(manager: PluginManager) -> list[tuple[str, str]]:
    """What the plugins register, by kind; a failing registry says so instead of stopping."""
    rows: list[tuple[str, str]] = []
    notes: dict[str, Callable[[object], str]] = {
        "store schemes": _store_note,
        "notifiers": _notifier_note,
    }
    for kind, collect in (
        ("store schemes", manager.stores),
        ("notifiers", manager.notifiers),
        ("guards", manager.guards),
        ("actions", manager.actions),
    ):
        try:
            found: dict[str, object] = dict(collect())
            note = notes.get(kind, _no_note)
            names = ", ".join(f"{name}{note(found[name])}" for name in sorted(found)) or "-"
        except PhaseKitError as exc:
            names = f"error: {one_line(str(exc))}"
        rows.append((kind, names))
    return rows


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(as_json: bool) -> None:
    """List plugins: name, version, distribution, hooks, and why a broken one did not load."""
    # Load errors are part of the listing, not warnings on the side.
    with quiet_stderr_logging():
        manager = command_plugins()
        infos = manager.plugin_info()
        registries = _registries(manager)
    if as_json:
        echo_json([info.to_dict() for info in infos])
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("plugin", "version", "distribution", "source", "hooks", "status"):
        table.add_column(column)
    for info in infos:
        status = (
            Text(f"failed: {one_line(info.error)}", style="red")
            if info.error
            else Text("ok", "green")
        )
        table.add_row(
            Text(info.name, style="bold"),
            info.version or "-",
            info.distribution or "-",
            info.source,
            Text(", ".join(info.hooks) or "-"),
            status,
        )
    out = console()
    out.print(table)
    out.print()
    for kind, names in registries:
        out.print(Text.assemble((f"{kind}: ", "bold"), names), soft_wrap=True)
