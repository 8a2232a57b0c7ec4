"""The dashboard's HTML: the jobs list and a job's page, every stored value escaped."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote, urlencode

from ..limits import format_duration
from ..runtime import PhaseSet, to_mermaid
from ..spec import expand_sources
from ..store import HistoryEvent, JobDeleted, JobRecord, PhaseChanged, PhaseRecord

__all__ = ["MERMAID_BUNDLE", "MERMAID_VERSION", "document", "job_main", "jobs_main", "weighted_bar"]

#: The Mermaid release vendored in ``static/vendor/`` (its README says where it came from).
MERMAID_VERSION = "12.3.0"
#: Its bundle, under ``/static/``: the version is in the name, so the file can be cached for good.
MERMAID_BUNDLE = f"vendor/mermaid-{MERMAID_VERSION}.min.js"


def _e(value: object) -> str:
    """Text for HTML content or a quoted attribute."""
    return escape(str(value), quote=True)


def job_href(base: str, job_id: str) -> str:
    """The page of a job: its id percent-encoded as one path segment."""
    return f"{base}/jobs/{quote(job_id, safe='')}"


def _when(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _time(at: datetime | None) -> str:
    if at is None:
        return "<span class='dim'>-</span>"
    return f"<time datetime='{_e(at.isoformat())}'>{_e(_when(at))}</time>"


def _deadline(deadline: datetime | None, now: datetime) -> str:
    """A deadline and the time left until it (``in 1h29m``), or how long it is past."""
    if deadline is None:
        return "<span class='dim'>-</span>"
    left = round((deadline - now).total_seconds())
    if left > 0:
        told, kind = f"in {format_duration(left)}", "deadline"
    else:
        told, kind = f"overdue by {format_duration(-left)}", "deadline overdue"
    return (
        f"<span class='{kind}' data-deadline='{_e(deadline.isoformat())}'>"
        f"{_time(deadline)} <span class='left'>{_e(told)}</span></span>"
    )


def _next_deadline(record: JobRecord) -> datetime | None:
    return min((p.deadline for p in record.phases if p.deadline is not None), default=None)


def _duration(phase: PhaseRecord) -> str:
    if phase.started_at is None:
        return "-"
    end = phase.completed_at or datetime.now(UTC)
    seconds = max(0.0, (end - phase.started_at).total_seconds())
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}min" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def _status(status: str | None) -> str:
    shown = status or "-"
    return f"<span class='status' data-status='{_e(shown)}'>{_e(shown)}</span>"


def weighted_bar(record: JobRecord, spec: PhaseSet | None) -> str:
    """The job's progress as one bar: a segment per phase, as wide as its weight, filled to
    the phase's progress (equal segments when the phase set is not known)."""
    weights = [
        spec.weight(p.phase_name) if spec is not None and p.phase_name in spec.phase_names else 1.0
        for p in record.phases
    ]
    total = sum(weights) or 1.0
    segments = "".join(
        f"<span class='seg' data-status='{_e(p.status)}' style='width:{100 * w / total:.3f}%' "
        f"title='{_e(p.phase_name)}: {p.progress:.1f}% (weight {w:g})'>"
        f"<span class='fill' style='width:{p.progress:.3f}%'></span></span>"
        for p, w in zip(record.phases, weights, strict=True)
    )
    return (
        f"<span class='bar' role='progressbar' aria-valuemin='0' aria-valuemax='100' "
        f"aria-valuenow='{record.progress:.1f}' data-progress='{record.progress:.1f}'>"
        f"{segments}</span>"
    )


def _phase_bar(phase: PhaseRecord) -> str:
    return (
        f"<span class='bar' role='progressbar' aria-valuenow='{phase.progress:.1f}' "
        f"data-progress='{phase.progress:.1f}'><span class='seg' data-status='{_e(phase.status)}' "
        f"style='width:100%'><span class='fill' style='width:{phase.progress:.3f}%'></span>"
        "</span></span>"
    )


def document(
    title: str, body: str, *, base: str, job_id: str | None = None, diagram: bool = False
) -> str:
    """A whole page around ``body`` (a ``<main>``), with the live-update script; with
    ``diagram``, Mermaid and the script that draws the job's phase diagram with it."""
    job = f" data-job-id='{_e(job_id)}'" if job_id is not None else ""
    # Deferred scripts run in order: Mermaid, then the drawing, then the live updates (which
    # hand each redrawn fragment to the drawing). Only job pages pay for Mermaid's 5 MB.
    scripts = [MERMAID_BUNDLE, "diagram.js"] if diagram else []
    tags = "".join(
        f"<script src='{_e(base)}/static/{name}' defer></script>"
        for name in [*scripts, "dashboard.js"]
    )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)} · phasekit</title>"
        f"<link rel='stylesheet' href='{_e(base)}/static/dashboard.css'>"
        f"</head><body data-base='{_e(base)}'{job}>"
        f"<header><a href='{_e(base)}/'>phasekit</a> <span id='live' class='dim'>"
        "connecting…</span></header>"
        f"<main id='main'>{body}</main>{tags}</body></html>\n"
    )


def _options(name: str, values: Iterable[str], chosen: str | None, label: str) -> str:
    items = [f"<option value=''>{_e(label)}</option>"]
    for value in sorted(set(values) | ({chosen} if chosen else set())):
        selected = " selected" if value == chosen else ""
        items.append(f"<option value='{_e(value)}'{selected}>{_e(value)}</option>")
    return f"<select name='{name}' id='filter-{name}'>{''.join(items)}</select>"


def jobs_main(
    records: Sequence[JobRecord],
    phase_sets: dict[str, PhaseSet | None],
    *,
    base: str,
    status: str | None,
    spec: str | None,
    counts: Mapping[str, int],
    counted_all: bool,
    spec_names: Iterable[str],
    limit: int,
    offset: int,
    after: tuple[datetime, str] | None = None,
    keyset: bool = False,
) -> str:
    """The jobs list: filters, counts per status, and a row per job with its weighted bar.

    ``counts`` are the jobs per status (of every job, or of the most recent ones when not
    ``counted_all``); with ``keyset``, the next page starts after this page's last job."""
    statuses = set(counts) | {
        s for ps in phase_sets.values() if ps is not None for s in ps.statuses
    }
    form = (
        f"<form method='get' action='{_e(base)}/' class='filters'>"
        f"{_options('status', statuses, status, 'any status')}"
        f"{_options('spec', spec_names, spec, 'any phase set')}"
        "<button type='submit'>filter</button></form>"
    )
    scope = "" if counted_all else f" (of the {sum(counts.values()):,} most recent)"
    chips = "".join(
        f"<a class='count' href='{_e(base)}/?{_e(urlencode(_query(name, spec)))}' "
        f"data-status='{_e(name)}'>{_e(name)} <b>{n:,}</b></a>"
        for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    summary = f"<p id='counts'>{chips or 'no jobs'}<span class='dim'>{_e(scope)}</span></p>"
    rows = []
    now = datetime.now(UTC)
    for r in records:
        rows.append(
            f"<tr class='job' data-job-id='{_e(r.job_id)}' data-status='{_e(r.status)}'>"
            f"<td><a href='{_e(job_href(base, r.job_id))}'>{_e(r.job_id)}</a></td>"
            f"<td>{_e(r.spec_name)}</td><td>{_status(r.status)}</td>"
            f"<td>{_e(r.current_phase or '-')}</td>"
            f"<td class='wide'>{weighted_bar(r, phase_sets.get(r.spec_fingerprint))}</td>"
            f"<td class='num'>{r.progress:.1f}%</td><td>{_time(r.updated_at)}</td>"
            f"<td>{_deadline(_next_deadline(r), now)}</td></tr>"
        )
    table = (
        "<table id='jobs'><thead><tr><th>job</th><th>phase set</th><th>status</th>"
        "<th>current phase</th><th>progress (weighted by phase)</th><th></th><th>updated</th>"
        f"<th>next deadline</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p id='jobs' class='dim'>no jobs match</p>"
    )
    pages = []
    if after is not None:
        first = {**_query(status, spec), "limit": str(limit)}
        pages.append(f"<a href='{_e(base)}/?{_e(urlencode(first))}' rel='first'>newest</a>")
    elif offset > 0:
        back = {**_query(status, spec), "offset": str(max(0, offset - limit)), "limit": str(limit)}
        pages.append(f"<a href='{_e(base)}/?{_e(urlencode(back))}' rel='prev'>newer</a>")
    if len(records) == limit:
        last = records[-1]
        more = {**_query(status, spec), "limit": str(limit)}
        if keyset:  # the index is entered at the last job shown, however deep the page
            more |= {"after": last.updated_at.isoformat(), "after_id": last.job_id}
        else:
            more["offset"] = str(offset + limit)
        pages.append(f"<a href='{_e(base)}/?{_e(urlencode(more))}' rel='next'>older</a>")
    return f"<h1>Jobs</h1>{form}{summary}{table}<p class='pages'>{' '.join(pages)}</p>"


def _query(status: str | None, spec: str | None) -> dict[str, str]:
    return {k: v for k, v in (("status", status), ("spec", spec)) if v}


def _history_item(event: HistoryEvent) -> str:
    at = _time(event.at)
    if isinstance(event, PhaseChanged):
        error = f" <span class='error'>{_e(event.error)}</span>" if event.error else ""
        what = (
            f"<b>{_e(event.phase)}</b> {_e(event.trigger)}: {_status(event.source)} → "
            f"{_status(event.dest)}{error}"
        )
    elif isinstance(event, JobDeleted):
        what = "deleted"
    else:
        what = f"created: {len(event.phases)} phases in {_status(event.initial_status)}"
    version = f"<span class='dim'>v{event.version}</span>"
    return f"<li data-version='{event.version}'>{at} {version} {what}</li>"


def _diagram(spec: PhaseSet, record: JobRecord) -> str:
    """The phase set's statuses, those the job's phases are in marked, and its Mermaid source
    (``diagram.js`` draws it in the browser; without JavaScript the source stays open)."""
    occupied: dict[str, list[str]] = {}
    for p in record.phases:
        occupied.setdefault(p.status, []).append(p.phase_name)
    chips = []
    for name in spec.statuses:
        flags = spec.status_def(name)
        kind = "terminal" if flags.terminal else "open"
        phases = occupied.get(name)
        held = f" data-phases='{_e(', '.join(phases))}'" if phases else ""
        label = f"{_e(name)}" + (f" <small>({_e(', '.join(phases))})</small>" if phases else "")
        chips.append(
            f"<li class='state{' occupied' if phases else ''}' data-status='{_e(name)}' "
            f"data-kind='{kind}'{held}>{label}</li>"
        )
    # What the drawing highlights: the script redraws at once when it changes, and only now
    # and then for the rest of the source (the progress in the job's note).
    statuses = " ".join(p.status for p in record.phases)
    edges = "".join(
        f"<li>{_e(src)} → {_e(t.dest)} <span class='dim'>{_e(t.trigger)}</span></li>"
        for t in spec.definition.transitions
        for src in expand_sources(t.sources, spec.statuses)
    )
    return (
        f"<section id='diagram'><h2>Phase diagram</h2><ol class='states'>{''.join(chips)}</ol>"
        f"<details><summary>transitions</summary><ul class='edges'>{edges}</ul></details>"
        "<details id='mermaid-source' open><summary>Mermaid source</summary>"
        f"<pre id='mermaid' data-statuses='{_e(statuses)}'>{_e(to_mermaid(spec, record))}</pre>"
        "</details></section>"
    )


def job_main(
    record: JobRecord, spec: PhaseSet | None, history: Sequence[HistoryEvent], *, base: str
) -> str:
    """One job: its aggregate, a bar per phase, errors, the rule behind its status, the
    diagram and the history as a timeline."""
    head = (
        f"<h1 id='job-id'>{_e(record.job_id)}</h1>"
        f"<dl class='head'><dt>phase set</dt><dd>{_e(record.spec_name)}</dd>"
        f"<dt>status</dt><dd id='job-status' data-status='{_e(record.status)}'>"
        f"{_status(record.status)}</dd>"
        f"<dt>current phase</dt><dd id='job-current'>{_e(record.current_phase or '-')}</dd>"
        f"<dt>progress</dt><dd id='job-progress' data-progress='{record.progress:.1f}'>"
        f"{weighted_bar(record, spec)} {record.progress:.1f}%</dd>"
        f"<dt>version</dt><dd id='job-version'>{record.version}</dd>"
        f"<dt>created</dt><dd>{_time(record.created_at)}</dd>"
        f"<dt>updated</dt><dd>{_time(record.updated_at)}</dd></dl>"
    )
    if spec is not None:
        explanation = str(spec.aggregator.explain([p.status for p in record.phases]))
        head += f"<p id='explain'>{_e(explanation)}</p>"
    else:
        head += (
            f"<p id='explain' class='dim'>phase set {_e(record.spec_name)!s} is neither kept by "
            "the store nor bundled: weights, rules and diagram are not shown</p>"
        )
    if record.metadata:
        text = json.dumps(dict(record.metadata), indent=2, ensure_ascii=False, default=str)
        head += (
            "<details open><summary>metadata</summary>"
            f"<pre id='metadata'>{_e(text)}</pre></details>"
        )
    rows = []
    now = datetime.now(UTC)
    for p in record.phases:
        weight = spec.weight(p.phase_name) if spec and p.phase_name in spec.phase_names else None
        total = "?" if p.items_total is None else f"{p.items_total:,}"
        allowed = ", ".join(spec.allowed_triggers(p.status)) if spec else ""
        error = f"<span class='error'>{_e(p.error)}</span>" if p.error else ""
        shown_weight = "-" if weight is None else f"{weight:g}"
        rows.append(
            f"<tr class='phase' data-phase='{_e(p.phase_name)}' data-status='{_e(p.status)}'>"
            f"<td>{_e(p.phase_name)}</td><td class='num'>{shown_weight}</td>"
            f"<td class='wide'>{_phase_bar(p)}</td><td class='num'>{p.progress:.1f}%</td>"
            f"<td>{_status(p.status)}</td><td class='num'>{p.items_processed:,}/{total}</td>"
            f"<td>{_time(p.started_at)}</td><td>{_time(p.completed_at)}</td>"
            f"<td class='num'>{_duration(p)}</td><td>{_deadline(p.deadline, now)}</td>"
            f"<td>{error}</td>"
            f"<td class='dim'>{_e(allowed)}</td></tr>"
        )
    phases = (
        "<h2>Phases</h2><table id='phases'><thead><tr><th>phase</th><th>weight</th>"
        "<th>progress</th><th></th><th>status</th><th>items</th><th>started</th>"
        "<th>finished</th><th>time</th><th>deadline</th><th>error</th><th>next</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    failed = [p for p in record.phases if p.error]
    errors = ""
    if failed:
        items = "".join(
            f"<li><b>{_e(p.phase_name)}</b> ({_e(p.status)}): <span class='error'>"
            f"{_e(p.error)}</span></li>"
            for p in failed
        )
        errors = f"<section id='errors'><h2>Errors</h2><ul>{items}</ul></section>"
    diagram = _diagram(spec, record) if spec is not None else ""
    timeline = "".join(_history_item(e) for e in history)
    return (
        f"{head}{phases}{errors}{diagram}"
        f"<section><h2>History</h2><ol id='history' class='timeline'>{timeline}</ol></section>"
    )
