"""``phasekit plugins``: every plugin a tracker would load, with its hooks and load errors."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from ..errors import PhaseKitError
from ..hooks import PluginManager
from .app import cli, quiet_stderr_logging
from .output import console, echo_json, one_line
from .stores import command_plugins

__all__ = ["plugins"]


def _registries(manager: PluginManager) -> list[tuple[str, str]]:
    """What the plugins register, by kind; a failing registry says so instead of stopping."""
    rows: list[tuple[str, str]] = []
    for kind, collect in (
        ("store schemes", manager.stores),
        ("notifiers", manager.notifiers),
        ("guards", manager.guards),
        ("actions", manager.actions),
    ):
        try:
            names = ", ".join(sorted(collect())) or "-"
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
