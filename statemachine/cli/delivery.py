"""``phasekit events`` (the event log) and ``phasekit relay`` (delivering it to notifiers)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from ..errors import InvalidArgument, PhaseKitError
from ..limits import parse_duration
from ..relay import NotifierStatus, Relay
from ..store import (
    Event,
    EventLog,
    JobCreated,
    JobStatusChanged,
    LoggedEvent,
    MemoryStore,
    PhaseChanged,
    ProgressUpdated,
    Store,
)
from .app import cli
from .output import console, echo_json, shorten, stop_on_signal, timestamp
from .stores import StoreSession, store_options

__all__ = ["events", "parse_before", "relay"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def parse_before(text: str, *, now: datetime | None = None) -> datetime:
    """A cut-off time: a duration back from now (``90s``, ``30m``, ``12h``, ``7d``, ``1d12h``)
    or an ISO 8601 timestamp (UTC when it has no offset)."""
    value = text.strip()
    if value and value[0].isdigit() and value[-1].lower() in "smhdw":
        return (now or datetime.now(UTC)) - parse_duration(value, "--before")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"--before {shorten(value)!r} is neither a duration (90s, 30m, 12h, 7d, 2w) nor an "
            "ISO 8601 time (2026-01-31T12:00:00Z)"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _event_log(store: Store) -> EventLog:
    if not isinstance(store, EventLog):
        raise PhaseKitError(f"store {type(store).__name__} keeps no event log")
    return store


def _summary(event: Event) -> str:
    """What an event says, in a few words."""
    if isinstance(event, PhaseChanged):
        text = f"{event.phase} {event.trigger}: {event.source} → {event.dest}"
        return f"{text} ({shorten(event.error, 60)})" if event.error else text
    if isinstance(event, ProgressUpdated):
        total = event.items_total if event.items_total is not None else "?"
        return f"{event.phase} {event.items_processed}/{total}, job {event.job_progress:.1f}%"
    if isinstance(event, JobStatusChanged):
        return (
            f"{event.old_status} → {event.new_status}, "
            f"current phase {event.new_current_phase or '-'}"
        )
    if isinstance(event, JobCreated):
        return f"{event.spec}, {len(event.phases)} phases"
    return ""


def _print_event(logged: LoggedEvent, as_json: bool) -> None:
    event = logged.event
    if as_json:
        click.echo(
            json.dumps({"position": logged.position, "event": event.model_dump(mode="json")})
        )
        return
    line = Text.assemble(
        (f"{logged.position:>8}", "bold"),
        "  ",
        timestamp(event.at),
        "  ",
        (f"{event.type:<18}", "cyan"),
        f" {shorten(event.job_id, 40)} v{event.version}  ",
        _summary(event),
    )
    console().print(line, soft_wrap=True, highlight=False)


@cli.group("events", invoke_without_command=True)
@click.option(
    "--after",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    metavar="N",
    help="Print events after position N.",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they are committed.")
@store_options
@_json_option
@click.pass_context
def events(
    ctx: click.Context,
    *,
    after: int,
    follow: bool,
    store_url: str,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Print the event log (every committed event, with its position), oldest first.

    With --json, one JSON object per line: {"position": N, "event": {...}}.
    """
    if ctx.invoked_subcommand is not None:
        return
    with StoreSession(store_url, config_path, read_only=True) as session:
        log = _event_log(session.store)
        wait = getattr(log, "wait_for_events", None)
        position = after
        while True:
            batch = log.read_events(position, limit=1000)
            for logged in batch:
                _print_event(logged, as_json)
                position = logged.position
            if batch:
                continue
            if not follow:
                return
            if callable(wait):
                wait(position, 1.0)
            else:
                threading.Event().wait(0.5)


@events.command("prune")
@click.option(
    "--before",
    required=True,
    metavar="WHEN",
    help="Remove events older than this: a duration back from now (7d, 12h) or an ISO time.",
)
@store_options
@_json_option
def prune(before: str, store_url: str, config_path: Path | None, as_json: bool) -> None:
    """Remove old events every notifier has had (those a notifier still lacks are kept)."""
    cutoff = parse_before(before)
    with StoreSession(store_url, config_path, read_only=True) as session:
        removed = _event_log(session.store).prune_events(before=cutoff)
    if as_json:
        echo_json({"removed": removed, "before": cutoff.isoformat()})
    else:
        click.echo(f"removed {removed} event(s) committed before {timestamp(cutoff)}")


def _status_table(statuses: list[NotifierStatus]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("notifier", "position", "lag", "dead", "state", "last error", "lease"):
        table.add_column(column, no_wrap=column in ("notifier", "position", "lag", "dead"))
    for s in statuses:
        if s.disabled:
            state = Text("disabled", style="red")
        elif s.retry_at is not None and s.attempts:
            state = Text(f"retrying ({s.attempts} failed), next {timestamp(s.retry_at)}", "yellow")
        elif s.lag:
            state = Text("behind", style="yellow")
        else:
            state = Text("up to date", style="green")
        lease = ""
        if s.owner and s.lease_until and s.lease_until > datetime.now(UTC):
            lease = f"{s.owner} until {timestamp(s.lease_until)}"
        table.add_row(
            s.notifier,
            str(s.position),
            str(s.lag),
            Text(str(s.dead_letters), style="red" if s.dead_letters else ""),
            state,
            shorten(s.last_error or "", 80),
            lease,
        )
    return table


@cli.command("relay")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Tracker config: its store and its notifiers.",
)
@click.option("--once", is_flag=True, help="Deliver everything committed so far, then exit.")
@click.option(
    "--status", "show_status", is_flag=True, help="Show each notifier's position and lag."
)
@click.option(
    "--retry-dead", is_flag=True, help="Deliver the dead letters again; enable notifiers."
)
@click.option("--notifier", metavar="NAME", help="With --retry-dead: only this notifier.")
@_json_option
def relay(
    *,
    config_path: Path,
    once: bool,
    show_status: bool,
    retry_dead: bool,
    notifier: str | None,
    as_json: bool,
) -> None:
    """Deliver the store's event log to the config's notifiers, at least once, in order.

    Any number of relays may run against one store: each notifier is delivered by one of
    them at a time (a lease), and a relay that dies loses its lease within 30 s.
    """
    if sum((once, show_status, retry_dead)) > 1:
        raise click.UsageError("give one of --once, --status and --retry-dead")
    if notifier is not None and not retry_dead:
        raise click.UsageError("--notifier goes with --retry-dead")
    with Relay.from_config(config_path) as running:
        if isinstance(running.store, MemoryStore):
            raise PhaseKitError(
                f"{config_path}: its store is memory://, which lives inside one process; a "
                "relay process cannot read it (give the config a sqlite:/// or postgresql:// "
                "store, or let the tracker's own relay thread deliver)"
            )
        if show_status:
            statuses = running.status()
            if as_json:
                echo_json([s.to_dict() for s in statuses])
            else:
                console().print(_status_table(statuses))
            return
        if retry_dead:
            results = running.retry_dead(notifier)
            if as_json:
                echo_json({n: {"delivered": d, "dead": f} for n, (d, f) in results.items()})
            else:
                for name, (delivered, failed) in results.items():
                    click.echo(f"{name}: {delivered} dead letter(s) delivered, {failed} still dead")
            return
        if once:
            delivered = running.run_once()
            if as_json:
                echo_json({"delivered": delivered, "undelivered": running.undelivered()})
            else:
                click.echo(f"delivered {delivered} event(s); {running.undelivered()} wait")
            return
        _run_until_signalled(running)


def _run_until_signalled(running: Relay) -> None:
    """Relay until SIGINT or SIGTERM; then deliver what is committed (drain) and stop."""
    with stop_on_signal() as stop:
        names = ", ".join(running.notifiers) or "no notifiers"
        click.echo(f"relaying to {names} (relay {running.owner}); Ctrl-C stops", err=True)
        running.start()
        while not stop.wait(0.5):
            pass
        left = running.stop()
        if left:
            click.echo(f"stopped; {left} event(s) wait for the next relay", err=True)
