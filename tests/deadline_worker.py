"""A sweeper in another process, as ``tests/test_deadlines.py`` needs several at once.

Run as ``python tests/deadline_worker.py SPEC_PATH URL OPTIONS_JSON NOW`` (OPTIONS_JSON: the
SQL store's options, e.g. its schema and table prefix; NOW: the ISO time the tracker's clock
stands at). It builds a ``Tracker`` on the store with that fixed clock, prints ``ready``,
waits for a line on stdin, runs one ``sweep()`` and prints, as its last line, JSON:
``{"fired": [[job_id, phase, trigger, error], ...], "seconds": S}``, or
``{"error": "...", "type": "..."}`` when the sweep raised.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from statemachine.plugins.sql import SQLStore

from statemachine import Tracker, load_spec


def main(argv: list[str]) -> int:
    spec_path, url, raw_options, raw_now = argv
    spec = load_spec(spec_path)
    now = datetime.fromisoformat(raw_now)
    store = SQLStore(url, **json.loads(raw_options))
    with Tracker(spec, store, clock=lambda: now, load_entrypoints=False) as tracker:
        store.load("no-such-job")  # connected, the tables checked
        print("ready", flush=True)
        sys.stdin.readline()
        began = time.perf_counter()
        try:
            fired = tracker.sweep()
        except Exception as exc:  # reported on stdout, for the test to see
            print(json.dumps({"type": type(exc).__name__, "error": str(exc)}), flush=True)
            return 0
        seconds = time.perf_counter() - began
        print(
            json.dumps(
                {
                    "fired": [[e.job_id, e.phase, e.trigger, e.error] for e in fired],
                    "seconds": round(seconds, 3),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
