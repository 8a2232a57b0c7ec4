"""``phasekit sweep``: fire ``on_timeout`` on the phases past their deadline, once or on a timer."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from ..errors import PhaseKitError
from ..limits import parse_duration
from ..store import MemoryStore, PhaseChanged
from ..tracker import Tracker
from .app import cli
from .output import console, echo_json, shorten, stop_on_signal, timestamp

__all__ = ["sweep"]


def _print_change(event: PhaseChanged) -> None:
    line = Text.assemble(
        timestamp(event.at),
        "  ",
        (shorten(event.job_id, 40), "bold"),
        f" {event.phase} {event.trigger}: {event.source} → {event.dest}  ",
        (shorten(event.error or "", 80), "yellow"),
    )
    console().print(line, soft_wrap=True, highlight=False)


def _report(fired: list[PhaseChanged], as_json: bool) -> None:
    if as_json:
        echo_json({"fired": len(fired), "changes": [e.model_dump(mode="json") for e in fired]})
        return
    for event in fired:
        _print_change(event)
    click.echo(f"fired {len(fired)} phase(s) past their deadline")


@cli.command("sweep")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Tracker config: its phase set, store and notifiers.",
)
@click.option(
    "--every",
    metavar="DURATION",
    help="Sweep again every DURATION (10s, 1m) until Ctrl-C, instead of once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def sweep(*, config_path: Path, every: str | None, as_json: bool) -> None:
    """Fire the on_timeout trigger of every phase past its deadline.

    Each change goes through the commit like any other (guards, plugins, the version check: a
    worker that finished the phase first wins) and reaches the config's notifiers. Any number
    of sweeps may run against one store at once: they split the due phases between them.

    With --json, one object per sweep: {"fired": N, "changes": [PhaseChanged, ...]}.
    """
    interval = parse_duration(every, "--every").total_seconds() if every is not None else None
    with Tracker.from_config(config_path) as tracker:
        if isinstance(tracker.store, MemoryStore):
            raise PhaseKitError(
                f"{config_path}: its store is memory://, which lives inside one process; a "
                "sweep process cannot see its jobs (give the config a sqlite:/// or "
                "postgresql:// store, or set sweep_every: in the config of the process that "
                "tracks them)"
            )
        if tracker.sweeper is not None:
            tracker.sweeper.stop()  # this command is the config's sweeper
            tracker.sweeper = None
        if not tracker.spec.deadlines:
            click.echo(
                f"phase set {tracker.spec.name!r} declares no deadline (timeout or heartbeat)",
                err=True,
            )
        _report(tracker.sweep(), as_json)
        if interval is not None:
            _sweep_until_signalled(tracker, interval, as_json)


def _sweep_until_signalled(tracker: Tracker, interval: float, as_json: bool) -> None:
    """Sweep every ``interval`` seconds until SIGINT or SIGTERM; a failed sweep is reported
    and the next one runs on time (its claims expire, nothing is lost)."""
    with stop_on_signal() as stop:
        click.echo(f"sweeping every {interval:g}s; Ctrl-C stops", err=True)
        while not stop.wait(interval):
            try:
                fired = tracker.sweep()
            except PhaseKitError as exc:
                click.echo(f"the sweep failed: {exc}; the next runs in {interval:g}s", err=True)
                continue
            if fired or as_json:
                _report(fired, as_json)
