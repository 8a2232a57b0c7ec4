"""Every diagram draws in the real renderers, every status name in it as text: Mermaid in
mermaid-cli (``mmdc``, in Debian's chromium), Graphviz in ``dot``, and the dashboard's own
Mermaid with ``diagram.js`` finding each status's node. Skipped where a tool is missing,
failed under ``CI=true`` (``.ci/run`` installs them)."""

from __future__ import annotations

import gzip
import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import statemachine
from statemachine import JobState, PhaseSet
from statemachine.runtime import to_dot, to_mermaid
from statemachine.runtime.diagram import overview_dot, overview_mermaid
from statemachine.spec import bundled_names, expand_sources

from .conftest import running_in_ci
from .test_diagram import KEYWORDS, TRAPS, keywords_job, traps_job

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: mermaid-cli's ``mmdc``: this variable, else on PATH, else where ``.ci/run`` installs it.
MMDC_ENV = "MMDC"
MMDC_PREFIX = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phasekit" / "mmdc"
STATIC = Path(statemachine.__file__).parent / "web" / "static"


def _require(tool: str, found: str | None, install: str) -> str:
    if found:
        return found
    if running_in_ci():
        pytest.fail(f"the diagram render tests need {tool} in CI: {install}", pytrace=False)
    pytest.skip(f"the diagram render tests need {tool}: {install}")


def _mmdc() -> str:
    candidates = [os.environ.get(MMDC_ENV, ""), shutil.which("mmdc") or ""]
    candidates.append(str(MMDC_PREFIX / "node_modules" / ".bin" / "mmdc"))
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if found and not Path(CHROMIUM).exists():
        found = None
    return _require(
        "mermaid-cli and chromium",
        found,
        f"PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix {MMDC_PREFIX} @mermaid-js/mermaid-cli"
        f" (or set {MMDC_ENV}), apt-get install -y chromium",
    )


# -- what is drawn ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagram:
    """A diagram's source, the names it must show as text, and the classes its states get."""

    name: str
    source: str
    names: tuple[str, ...]
    #: Mermaid: state id -> the class ``to_mermaid`` gives it; dot: node -> its fill.
    marked: dict[str, str] = field(default_factory=dict)


def _walk(spec: PhaseSet, job: JobState, phase: str, goal: str) -> None:
    """Move ``phase`` along unguarded transitions to the nearest status of kind ``goal``
    (``success``, ``failure``, ``active``)."""

    def reached(status: str) -> bool:
        flags = spec.status_def(status)
        if goal == "active":
            return not flags.terminal and status != spec.initial_status
        return flags.terminal and flags.success == (goal == "success")

    paths: dict[str, list[str]] = {spec.initial_status: []}
    queue = [spec.initial_status]
    while queue:
        status = queue.pop(0)
        if reached(status):
            for trigger in paths[status]:
                job.phases[phase].trigger(trigger)
            return
        for transition in spec.definition.transitions:
            if transition.conditions or transition.unless:
                continue
            if (
                status in expand_sources(transition.sources, spec.statuses)
                and transition.dest not in paths
            ):
                paths[transition.dest] = [*paths[status], transition.trigger]
                queue.append(transition.dest)


def _bundled_job(spec: PhaseSet) -> JobState:
    """A job of a bundled phase set: a phase done, one working, the rest not started."""
    job = spec.new_job(f"{spec.name} job")
    first, second, *_ = spec.phase_names
    _walk(spec, job, first, "success")
    _walk(spec, job, second, "active")
    return job


def _specs() -> Iterator[tuple[PhaseSet, JobState]]:
    for name in bundled_names():
        spec = statemachine.load_spec(name)
        yield spec, _bundled_job(spec)
    keywords = statemachine.parse_spec(KEYWORDS)
    yield keywords, keywords_job(keywords)
    traps = statemachine.parse_spec(TRAPS)
    yield traps, traps_job(traps)


def _ids(source: str) -> dict[str, str]:
    """Each status's (or phase's) state id, as the source declares it: ``state "name" as id``,
    ``state "name<br/>⏱ 2h" as id``."""
    found = (
        re.fullmatch(r'\s*state "([\w-]+)(?:<br/>[^"]*)?" as (\w+)', line)
        for line in source.splitlines()
    )
    return {m[1]: m[2] for m in found if m}


#: The classes to_mermaid gives the statuses a job's phases are in, by kind; dot's fills.
CLASSES = {"success": "occupied_success", "failure": "occupied_failure", "open": "occupied"}
FILLS = {"success": "#b6d7a8", "failure": "#ea9999", "open": "#ffd966"}


def _kind(spec: PhaseSet, status: str) -> str:
    flags = spec.status_def(status)
    return ("success" if flags.success else "failure") if flags.terminal else "open"


def _mermaid_diagrams() -> list[Diagram]:
    """Each phase set's diagram and overview, with a job: mermaid-cli takes a second for each,
    and the lines of those without a job are among these (``test_a_mermaid_diagram_without_a_
    job_is_lines_of_the_one_with_a_job``), so they are not drawn again."""
    diagrams = []
    for spec, job in _specs():
        source = to_mermaid(spec, job)
        ids = _ids(source)
        marked = {ids[p.status]: CLASSES[_kind(spec, p.status)] for p in job.phases.values()}
        diagrams.append(Diagram(f"{spec.name}+job", source, spec.statuses, marked))
        ids = _ids(overview := overview_mermaid(spec, job))
        marked = {
            ids[p.phase_name]: CLASSES[_kind(spec, p.status)]
            for p in job.phases.values()
            if p.status != spec.initial_status
        }
        diagrams.append(Diagram(f"{spec.name}-overview+job", overview, spec.phase_names, marked))
    return diagrams


def _dot_diagrams() -> list[Diagram]:
    diagrams = []
    for spec, job in _specs():
        diagrams.append(Diagram(spec.name, to_dot(spec), spec.statuses))
        marked = {p.status: FILLS[_kind(spec, p.status)] for p in job.phases.values()}
        diagrams.append(Diagram(f"{spec.name}+job", to_dot(spec, job), spec.statuses, marked))
        diagrams.append(Diagram(f"{spec.name}-overview", overview_dot(spec), spec.phase_names))
        diagrams.append(
            Diagram(f"{spec.name}-overview+job", overview_dot(spec, job), spec.phase_names)
        )
    return diagrams


MERMAID = _mermaid_diagrams()
DOT = _dot_diagrams()


def _texts(svg: str) -> set[str]:
    """The text of the SVG: each run of characters between tags, stripped."""
    return {html.unescape(t).strip() for t in re.findall(r">([^<>]+)<", svg)}


# -- Mermaid, in mermaid-cli -----------------------------------------------------------------


@pytest.mark.parametrize("draw", [to_mermaid, overview_mermaid])
def test_a_mermaid_diagram_without_a_job_is_lines_of_the_one_with_a_job(draw: Any) -> None:
    # So drawing those with a job draws these too: no line of theirs is missing.
    for spec, job in _specs():
        alone, with_job = draw(spec).splitlines(), iter(draw(spec, job).splitlines())
        assert all(line in with_job for line in alone), spec.name


def _render(mmdc: str, sources: list[str], directory: Path) -> tuple[list[str | None], str]:
    """The SVG of each source (None where mmdc made none), and what mmdc said: all in one
    call (one browser), each chart of a Markdown file to ``out-<n>.svg``."""
    directory.mkdir()
    puppeteer = directory / "puppeteer.json"
    puppeteer.write_text(json.dumps({"executablePath": CHROMIUM, "args": ["--no-sandbox"]}))
    document = directory / "in.md"
    document.write_text("".join(f"```mermaid\n{s}```\n\n" for s in sources))
    run = subprocess.run(
        [
            mmdc,
            "-q",
            "-j",
            "2",
            "-i",
            str(document),
            "-o",
            str(directory / "out.svg"),
            "-p",
            str(puppeteer),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    svgs = []
    for number in range(1, len(sources) + 1):
        out = directory / f"out-{number}.svg"
        svgs.append(out.read_text() if run.returncode == 0 and out.exists() else None)
    return svgs, f"exit {run.returncode}: {run.stderr[-2000:]}"


@pytest.fixture(scope="module")
def mermaid_svgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every Mermaid diagram drawn by mermaid-cli: one call for all, and when that fails one
    call per diagram, to say which (a failed diagram is missing from the answer)."""
    mmdc = _mmdc()
    root = tmp_path_factory.mktemp("mmdc")
    svgs, said = _render(mmdc, [d.source for d in MERMAID], root / "all")
    drawn = {d.name: svg for d, svg in zip(MERMAID, svgs, strict=True) if svg is not None}
    if len(drawn) < len(MERMAID):
        for index, diagram in enumerate(MERMAID):
            [svg], said_here = _render(mmdc, [diagram.source], root / f"one-{index}")
            if svg is None:
                said += f"\n{diagram.name}: {said_here}"
            else:
                drawn[diagram.name] = svg
    drawn["__said__"] = said
    return drawn


@pytest.mark.parametrize("diagram", MERMAID, ids=[d.name for d in MERMAID])
def test_mermaid_cli_draws_the_diagram_with_every_name(
    diagram: Diagram, mermaid_svgs: dict[str, str]
) -> None:
    svg = mermaid_svgs.get(diagram.name)
    assert svg is not None, f"mmdc drew no {diagram.name}: {mermaid_svgs['__said__']}"
    texts = _texts(svg)
    missing = [name for name in diagram.names if name not in texts]
    assert not missing, f"{missing} not drawn as text in {diagram.name}"
    nodes = {
        state: classes
        for classes, state in re.findall(
            r'<g class="node([^"]*)" id="[\w-]*?-state-(\w+)-\d+"', svg
        )
    }
    for state, css in diagram.marked.items():
        assert css in nodes.get(state, "").split(), f"{state} is not {css}: {nodes.get(state)}"
    if "+job" in diagram.name:
        assert any(text.startswith("job ") for text in texts), "the job's note is not drawn"


# -- Graphviz ----------------------------------------------------------------------------------


@pytest.mark.parametrize("diagram", DOT, ids=[d.name for d in DOT])
def test_dot_draws_the_diagram_with_every_name(diagram: Diagram) -> None:
    dot = _require("Graphviz dot", shutil.which("dot"), "apt-get install -y graphviz")
    run = subprocess.run(
        [dot, "-Tsvg"], input=diagram.source, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert not run.stderr, run.stderr
    texts = _texts(run.stdout)
    missing = [name for name in diagram.names if name not in texts]
    assert not missing, f"{missing} not drawn as text in {diagram.name}"
    nodes = {
        html.unescape(title): body
        for title, body in re.findall(
            r'<g id="node\d+" class="node">\s*<title>([^<]*)</title>(.*?)</g>', run.stdout, re.S
        )
    }
    for status, fill in diagram.marked.items():
        assert f'fill="{fill}"' in nodes[status], f"{status} is not filled {fill}"


# -- the dashboard's Mermaid and diagram.js --------------------------------------------------


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """A page of Debian's chromium (through Playwright) with the dashboard's Mermaid loaded."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        _require("playwright", None, "pip install -e '.[dev]'")
        raise
    _require("chromium", CHROMIUM if Path(CHROMIUM).exists() else None, "apt-get install chromium")
    mermaid = gzip.decompress(next((STATIC / "vendor").glob("mermaid-*.min.js.gz")).read_bytes())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_content("<html><body></body></html>")
            page.add_script_tag(content=mermaid.decode())
            yield page
        finally:
            browser.close()


DRAWN = """() => Array.from(
    document.querySelectorAll('#diagram-drawing svg g.node[data-status]'),
    g => [g.dataset.status, Array.from(g.classList), g.textContent])"""


@pytest.mark.parametrize(
    "diagram", [d for d in MERMAID if "overview" not in d.name], ids=lambda d: d.name
)
def test_the_dashboard_draws_the_diagram_and_finds_every_status(
    page: Any, diagram: Diagram
) -> None:
    # The job page's markup around the source (pages._diagram), then diagram.js as it runs there.
    page.evaluate(
        """source => { document.body.innerHTML =
            "<section id='diagram'><h2>Phase diagram</h2><details id='mermaid-source' open>"
            + "<pre id='mermaid' data-statuses=''></pre></details></section>";
          document.getElementById('mermaid').textContent = source; }""",
        diagram.source,
    )
    page.add_script_tag(path=str(STATIC / "diagram.js"))
    page.wait_for_selector("#diagram-drawing svg", timeout=10000)
    drawn = {status: (set(classes), text) for status, classes, text in page.evaluate(DRAWN)}
    assert set(drawn) == set(diagram.names)
    assert all(text.startswith(status) for status, (_, text) in drawn.items()), drawn
    ids = _ids(diagram.source)
    for status, id_ in ids.items():
        if id_ in diagram.marked:
            assert diagram.marked[id_] in drawn[status][0], (status, drawn[status])
