"""Measures python-statemachine 3.x, run by the interpreter of its own virtualenv.

python-statemachine's import package is also named ``statemachine``: it must never share an
environment with phasekit, so this script imports nothing of phasekit. It reads the phase
set (statuses, transitions) as JSON on stdin, measures, and prints JSON on stdout.

- ``trigger ROUNDS PAIRS``: the cost of one trigger on one machine (``sm.send(name)``)
  and of the raw ``transitions`` flyweight trigger, interleaved round by round.
- ``scale JOBS PHASES``: memory (tracemalloc) and creation rate of one machine per phase.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc
from importlib.metadata import version
from typing import Any

from transitions import Machine

from statemachine import State, StateMachine  # type: ignore[attr-defined]


def phase_machine_class(definition: dict[str, Any]) -> type[StateMachine]:
    """The phase set as a python-statemachine class: one State per status, one event per trigger."""
    namespace: dict[str, Any] = {}
    states = {
        name: State(name, value=name, initial=flags["initial"], final=flags["terminal"])
        for name, flags in definition["statuses"].items()
    }
    namespace.update(states)
    events: dict[str, Any] = {}
    for t in definition["transitions"]:
        for source in t["source"]:
            step = states[source].to(states[t["dest"]])
            events[t["trigger"]] = (
                step if t["trigger"] not in events else events[t["trigger"]] | step
            )
    namespace.update(events)
    return type("Phase", (StateMachine,), namespace)


class Unregistered:
    def __init__(self, state: str) -> None:
        self.state = state


def timed(run: Any, n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run(n)
        return (time.perf_counter() - start) / (2 * n)
    finally:
        gc.enable()


def trigger(definition: dict[str, Any], rounds: int, pairs: int) -> dict[str, Any]:
    phase_cls = phase_machine_class(definition)
    sm = phase_cls()
    sm.send("start")
    machine = Machine(
        model=None,
        states=list(definition["statuses"]),
        transitions=[
            {"trigger": t["trigger"], "source": t["source"], "dest": t["dest"]}
            for t in definition["transitions"]
        ],
        initial=next(n for n, f in definition["statuses"].items() if f["initial"]),
        auto_transitions=False,
    )
    obj = Unregistered("running")
    pause, resume = machine.events["pause"].trigger, machine.events["resume"].trigger

    def run_psm(n: int) -> None:
        send = sm.send
        for _ in range(n):
            send("pause")
            send("resume")

    def run_raw(n: int) -> None:
        for _ in range(n):
            pause(obj)
            resume(obj)

    samples: dict[str, list[float]] = {"psm": [], "raw": []}
    for r in range(rounds):
        order = [("psm", run_psm), ("raw", run_raw)]
        for name, run in order if r % 2 == 0 else order[::-1]:
            samples[name].append(timed(run, pairs))
    return samples


def scale(definition: dict[str, Any], jobs: int, phases: int) -> dict[str, Any]:
    phase_cls = phase_machine_class(definition)
    phase_cls()  # warm up: class-level caches are not per job
    result: dict[str, Any] = {}
    for traced in (False, True):
        gc.collect()
        if traced:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        made = [[phase_cls() for _ in range(phases)] for _ in range(jobs)]
        elapsed = time.perf_counter() - start
        if traced:
            result["bytes_per_job"] = (tracemalloc.get_traced_memory()[0] - before) / jobs
            tracemalloc.stop()
        else:
            result["jobs_per_s"] = jobs / elapsed
        del made
    return result


def main(argv: list[str]) -> int:
    definition = json.load(sys.stdin)
    command, *args = argv
    if command == "trigger":
        out = trigger(definition, int(args[0]), int(args[1]))
    elif command == "scale":
        out = scale(definition, int(args[0]), int(args[1]))
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    out["versions"] = {
        "python-statemachine": version("python-statemachine"),
        "transitions": version("transitions"),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
