"""Profiles of missed targets: the top cProfile entries, kept with the figure they explain."""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import site
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from .harness import Figure, Settings

__all__ = ["TOP", "profile_if_missed", "profile_text", "shorten_paths"]

#: Entries shown per profile, by own time and by cumulative time.
TOP = 20
_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def _prefixes() -> list[tuple[str, str]]:
    """Long path prefixes and their short names, so profile lines fit a page."""
    found: list[tuple[str, str]] = [(_ROOT, "")]
    for path in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}:
        found.append((path.rstrip("/") + "/", ""))
    found.append((sysconfig.get_paths()["stdlib"].rstrip("/") + "/", "<stdlib>/"))
    return sorted(found, key=lambda p: -len(p[0]))


def shorten_paths(text: str) -> str:
    """``text`` with the long prefixes of file paths cut."""
    for prefix, short in _prefixes():
        text = text.replace(prefix, short)
    return text


def profile_text(run: Callable[[], object], calls: int, what: str) -> str:
    """cProfile of ``run()``: top entries by own time and cumulative time, per ``calls``."""
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    parts = [f"cProfile of {calls:,} {what} (cProfile's own overhead inflates small functions)"]
    for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(key).print_stats(TOP)
        body = out.getvalue()
        # Keep the table only: drop pstats' preamble up to the column header.
        start = body.find("   ncalls")
        table = body[start:] if start >= 0 else body
        table = re.sub(r"\n\s*\n", "\n", table).rstrip()
        parts.append(f"-- top {TOP} by {title} --\n{shorten_paths(table)}")
    return "\n".join(parts)


def profile_if_missed(
    settings: Settings, figure: Figure, run: Callable[[], object], calls: int, what: str
) -> None:
    """Attach the profile of ``run`` to ``figure`` when it misses its target (full runs only)."""
    if settings.quick or figure.met is not False:
        return
    try:
        figure.profile = profile_text(run, calls, what)
    except Exception as exc:  # a profile is evidence, never a reason to fail the run
        print(f"profile of {figure.key} failed: {exc}", file=sys.stderr)
