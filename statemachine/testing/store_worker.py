"""Compare-and-swap increments on a store, in a thread or in a process of its own.

``python -m statemachine.testing.store_worker`` reads one JSON line from stdin (the
``StoreOpener``, the job id and how many increments), opens the store, prints ``ready``,
waits for a line (so that every worker starts together), adds 1 to the counter of the job's
first phase that many times, and prints ``{"conflicts": N}``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime

from statemachine import ConcurrentUpdateError, JobNotFound, ProgressUpdated, Store

from .store_opener import StoreOpener

__all__ = ["MAX_CONFLICTS", "add_one", "main"]

#: Conflicts one increment may meet before the worker gives up: a store whose ``save``
#: always says "conflict" is broken, and must not hang the test.
MAX_CONFLICTS = 10_000


def add_one(store: Store, job_id: str) -> int:
    """Add 1 to ``items_processed`` of the job's first phase: load, change, save at the
    loaded version, and again on ``ConcurrentUpdateError``. Returns the conflicts met."""
    for conflicts in range(MAX_CONFLICTS):
        record = store.load(job_id)
        if record is None:
            raise JobNotFound(job_id)
        now = datetime.now(UTC)
        first, *rest = record.phases
        counted = dataclasses.replace(
            first, items_processed=first.items_processed + 1, updated_at=now
        )
        version = record.version + 1
        event = ProgressUpdated(
            job_id=job_id,
            version=version,
            at=now,
            phase=first.phase_name,
            items_processed=counted.items_processed,
            items_total=None,
            progress=0.0,
            job_progress=0.0,
        )
        updated = record.replace(version=version, updated_at=now, phases=(counted, *rest))
        try:
            store.save(updated, expected_version=record.version, events=[event])
        except ConcurrentUpdateError:
            continue
        return conflicts
    raise AssertionError(
        f"{type(store).__name__}.save raised ConcurrentUpdateError {MAX_CONFLICTS} times in a "
        f"row for job {job_id!r}: a save at the version just loaded must succeed sometimes"
    )


def main() -> int:
    """The worker process: see the module's docstring."""
    order = json.loads(sys.stdin.readline())
    opener = StoreOpener.from_json(order["opener"])
    sys.path[:0] = list(opener.pythonpath)
    store = opener.open()
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        conflicts = sum(add_one(store, order["job_id"]) for _ in range(order["increments"]))
        print(json.dumps({"conflicts": conflicts}), flush=True)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
