"""An idle relay's CPU time, in a process that runs nothing else; printed as JSON.

Run as ``python -m benchmarks.delivery_idle MODE URL PREFIX SCHEMA SECONDS RECEIVER SECRET``.
The process opens the SQL store at ``URL`` (tables ``PREFIX…``, in ``SCHEMA`` on PostgreSQL,
``-`` for none) and builds a webhook notifier for ``RECEIVER``. With MODE ``relay`` it starts
``Relay(store, {"webhook": notifier})`` in its background threads; with MODE ``sleep`` it
starts nothing (the baseline: the same process, sleeping). After a second of warm-up, it
sleeps ``SECONDS`` and prints the CPU time of the whole process over them
(``time.process_time()``: every thread, user and system) with the wall time.
"""

from __future__ import annotations

import json
import sys
import time

from statemachine.plugins.sql import SQLStore
from statemachine.plugins.webhook import WebhookNotifier

from statemachine.relay import Relay

__all__ = ["WARM_UP", "main"]

#: Seconds between starting the relay and starting the clock (its first look, the LISTEN).
WARM_UP = 1.0


def main(argv: list[str] | None = None) -> int:
    mode, url, prefix, schema, seconds, receiver, secret = sys.argv[1:] if argv is None else argv
    store = SQLStore(url, schema=None if schema == "-" else schema, table_prefix=prefix)
    notifier = WebhookNotifier(receiver, secret=secret)
    relay = Relay(store, {"webhook": notifier})
    if mode == "relay":
        relay.start()
    elif mode != "sleep":
        raise SystemExit(f"unknown mode {mode!r}: relay or sleep")
    try:
        time.sleep(WARM_UP)
        cpu, wall = time.process_time(), time.monotonic()
        time.sleep(float(seconds))
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        relay.stop(drain=0)
        notifier.close()
        store.close()
    print(json.dumps({"cpu": cpu, "wall": wall, "delivered": relay.counts()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
