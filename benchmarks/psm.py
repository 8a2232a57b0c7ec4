"""python-statemachine 3.x, measured in a virtualenv of its own (it would clobber phasekit)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from statemachine import PhaseSet

__all__ = ["PSM_REQUIREMENT", "PsmUnavailable", "definition_json", "ensure_venv", "probe"]

PSM_REQUIREMENT = "python-statemachine>=3,<4"
VENV = Path(__file__).resolve().parent / ".venv-psm"
PROBE = Path(__file__).resolve().parent / "psm_probe.py"


class PsmUnavailable(Exception):
    """The virtualenv could not be made (no network, no venv module): the baseline is skipped."""


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _has_versions(python: Path, transitions: str) -> bool:
    check = (
        "from importlib.metadata import version as v; "
        "print(v('python-statemachine'), v('transitions'))"
    )
    try:
        out = subprocess.run(
            [str(python), "-c", check], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return False
    return len(out) == 2 and out[0].startswith("3.") and out[1] == transitions


def ensure_venv(venv: Path = VENV) -> Path:
    """The interpreter of a virtualenv with python-statemachine 3.x and our transitions version.

    Made once and kept (it is gitignored); remade when its versions are not the wanted ones.
    """
    transitions = version("transitions")
    python = _python(venv)
    if python.exists() and _has_versions(python, transitions):
        return python
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            capture_output=True,
            timeout=300,
            check=True,
        )
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                PSM_REQUIREMENT,
                f"transitions=={transitions}",
            ],
            capture_output=True,
            timeout=600,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise PsmUnavailable(detail[-1] if detail else str(exc)) from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise PsmUnavailable(str(exc)) from None
    if not _has_versions(python, transitions):
        raise PsmUnavailable("the virtualenv does not have the wanted versions")
    return python


def definition_json(spec: PhaseSet) -> str:
    """The phase set's statuses and transitions, as the probe reads them."""
    definition = spec.definition
    statuses = list(definition.statuses)
    return json.dumps(
        {
            "statuses": {
                name: {"initial": flags.initial, "terminal": flags.terminal}
                for name, flags in definition.statuses.items()
            },
            "transitions": [
                {
                    "trigger": t.trigger,
                    "source": statuses if t.sources == ("*",) else list(t.sources),
                    "dest": t.dest,
                }
                for t in definition.transitions
            ],
        }
    )


def probe(python: Path, spec: PhaseSet, *args: str | int, timeout: float = 600) -> dict[str, Any]:
    """Run ``psm_probe.py ARGS`` in the virtualenv; its JSON answer."""
    try:
        done = subprocess.run(
            [str(python), "-I", str(PROBE), *map(str, args)],
            input=definition_json(spec),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.strip().splitlines()
        raise PsmUnavailable(detail[-1] if detail else str(exc)) from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise PsmUnavailable(str(exc)) from None
    result: dict[str, Any] = json.loads(done.stdout)
    return result
