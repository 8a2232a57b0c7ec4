"""Commands on phase-set files: ``validate``, ``graph`` and ``schema``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.text import Text

from ..errors import SpecError, SpecIssue
from ..runtime import PhaseSet, check_spec, load_spec, parse_spec, to_dot, to_mermaid
from ..runtime.diagram import overview_dot, overview_mermaid
from ..spec import MAX_DOCUMENT_BYTES, PhaseSetDef
from .app import EXIT_ERROR, cli
from .output import console
from .stores import StoreSession, store_options

__all__ = ["SCHEMA_ID", "graph", "schema", "schema_json", "validate"]

#: The JSON Schema dialect pydantic generates.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: The schema's ``$id``: where the repository (``[project.urls]``) serves the shipped file, and
#: what the bundled phase sets' ``# yaml-language-server: $schema=`` modelines point at.
SCHEMA_ID = "https://raw.githubusercontent.com/phasekit/phasekit/main/config/phasekit.schema.json"
STDIN = "-"


def schema_json() -> str:
    """The JSON Schema of the phase-set format, as shipped in ``config/phasekit.schema.json``."""
    schema = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "$comment": (
            "phasekit validate also checks the cross-reference rules JSON Schema cannot "
            "express: docs/format.md, 'What the schema cannot check'."
        ),
        **PhaseSetDef.model_json_schema(),
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _load(file: str) -> PhaseSet:
    """A phase set from a path, a bundled name, or ``-`` for standard input."""
    if file == STDIN:
        return parse_spec(sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1), filename="<stdin>")
    return load_spec(file)


def _issues_of(file: str, strict: bool) -> list[SpecIssue]:
    """Every error of ``file``, else its warnings (errors too with ``strict``)."""
    try:
        spec = _load(file)
    except SpecError as exc:
        return exc.issues
    try:
        return check_spec(spec, strict=strict)
    except SpecError as exc:
        return exc.issues


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: FILE:LINE:COL: code: message lines; json: a list of issue objects.",
)
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...], strict: bool, output_format: str) -> None:
    """Check phase-set files (or bundled names, or - for stdin); exit 1 on any error."""
    issues = [issue for file in files for issue in _issues_of(file, strict)]
    errors = sum(issue.severity == "error" for issue in issues)
    warnings = len(issues) - errors
    if output_format == "json":
        click.echo(json.dumps([issue.to_dict() for issue in issues], indent=2, ensure_ascii=False))
    else:
        out = console()
        for issue in issues:
            style = "red" if issue.severity == "error" else "yellow"
            location, _, rest = issue.format().partition(f": {issue.code}: ")
            out.print(
                Text.assemble((location, "bold"), ": ", (issue.code, style), ": ", rest),
                soft_wrap=True,
            )
        checked = _plural(len(files), "file")
        if issues:
            summary = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')} in {checked}"
            out.print(Text(summary, style="red" if errors else "yellow"), soft_wrap=True)
        else:
            out.print(Text(f"{checked} valid", style="green"), soft_wrap=True)
    if errors:
        ctx.exit(EXIT_ERROR)


@cli.command()
@click.argument("file", required=False, metavar="[FILE]")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="mermaid: stateDiagram-v2 (renders on GitHub); dot: Graphviz.",
)
@click.option(
    "--overview",
    is_flag=True,
    help="Draw the whole job instead: its phases in order with their weights, and the "
    "aggregation rules (with --job, each phase's status and the rule that fires).",
)
@click.option("--job", "job_id", metavar="ID", help="Highlight the statuses of a stored job.")
@store_options
def graph(
    *,
    file: str | None,
    output_format: str,
    overview: bool,
    job_id: str | None,
    store_url: str,
    config_path: Path | None,
) -> None:
    """Draw a phase set's statuses and transitions, or with --overview its phases and
    aggregation rules (FILE may be a bundled name)."""
    if file is None and job_id is None:
        raise click.UsageError("give a phase-set FILE, or --job ID to draw a stored job")
    if overview:
        render = overview_dot if output_format == "dot" else overview_mermaid
    else:
        render = to_dot if output_format == "dot" else to_mermaid
    if job_id is None:
        assert file is not None
        click.echo(render(_load(file)), nl=False)
        return
    with StoreSession(store_url, config_path, read_only=True) as session:
        record = session.record(job_id)
        spec = _load(file) if file is not None else session.spec_for_job(record)
    # restore() checks that the phase set can represent the job (SpecMismatch otherwise).
    click.echo(render(spec, spec.restore(record)), nl=False)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the phase-set format (for editors and CI)."""
    click.echo(schema_json(), nl=False)
