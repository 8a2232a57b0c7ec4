"""The store conformance suite's tests of compare-and-swap across threads and processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from statemachine import EventLog, JobExists, ProgressUpdated, Store

from .duties import Duties, fail, read_log
from .records import created_events, new_record
from .store_opener import StoreOpener
from .store_worker import add_one

__all__ = ["ConcurrencyDuties"]


class ConcurrencyDuties(Duties):
    """Tests of writers racing on one job: none of their updates may be lost."""

    # -- compare-and-swap under concurrency ----------------------------------------------

    def test_creates_of_one_id_at_once_have_exactly_one_winner(self, store: Store) -> None:
        """Threads creating one id at once: one succeeds, every other gets ``JobExists``."""
        barrier = threading.Barrier(self.threads)
        outcomes: list[str] = []

        def create(n: int) -> None:
            record = new_record("contested", metadata={"by": n})
            barrier.wait()
            try:
                store.create(record, created_events(record))
                outcomes.append(f"won {n}")
            except JobExists:
                outcomes.append("JobExists")
            except BaseException as exc:
                outcomes.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=create, args=(n,)) for n in range(self.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [o for o in outcomes if o.startswith("won")]
        assert len(winners) == 1 and outcomes.count("JobExists") == self.threads - 1, outcomes
        stored = store.load("contested")
        assert stored is not None and f"won {stored.metadata['by']}" == winners[0]
        assert len(store.history("contested")) == 1

    def _check_counter(self, store: Store, who: str, start: int) -> None:
        """The counter job after ``who`` added ``increments`` each: nothing lost, and the
        event log (if any) holding every increment in version order."""
        __tracebackhide__ = True
        total = self.increments * (self.threads if who == "threads" else self.processes)
        record = store.load("counter")
        assert record is not None
        count = record.phases[0].items_processed
        name = type(store).__name__
        if count != total or record.version != 1 + total:
            writers = self.threads if who == "threads" else self.processes
            advice = (
                f" If {name} keeps jobs for one process only, declare `multiprocess = False` on "
                f"{type(self).__name__}."
                if who == "processes"
                else ""
            )
            fail(
                f"{writers} {who} each added 1 to a counter {self.increments} times (load, then "
                f"save(expected_version=loaded)): the stored job counts {count} of {total} at "
                f"version {record.version} (want {1 + total}), so {total - count} updates were "
                f"lost. {name}.save must compare expected_version with the version stored now "
                "(not one it read earlier) and write within the same lock or transaction, so "
                f"that of two saves at one version exactly one succeeds.{advice}"
            )
        if isinstance(store, EventLog):
            counted = [
                e.event
                for e in read_log(store, start)
                if isinstance(e.event, ProgressUpdated) and e.event.job_id == "counter"
            ]
            versions = [e.version for e in counted]
            assert versions == list(range(2, total + 2)), (
                "the event log must hold one event per committed save, in commit order: "
                f"the counter's versions in position order are {versions[:20]}..."
            )

    def test_compare_and_swap_across_threads_loses_no_update(self, store: Store) -> None:
        """Threads sharing the store each add to one counter; no increment is lost."""
        record = new_record("counter")
        store.create(record, created_events(record))
        start = store.last_position() if isinstance(store, EventLog) else 0
        barrier = threading.Barrier(self.threads)
        failures: list[BaseException] = []

        def work() -> None:
            try:
                barrier.wait()
                for _ in range(self.increments):
                    add_one(store, "counter")
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(self.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            fail(f"a thread failed: {type(failures[0]).__name__}: {failures[0]}")
        self._check_counter(store, "threads", start)

    def test_compare_and_swap_across_processes_loses_no_update(
        self,
        store: Store,
        store_opener: StoreOpener | None,
        reopen: Callable[[], Store],
        request: pytest.FixtureRequest,
    ) -> None:
        """Processes (``sys.executable``, opening the store with ``store_opener``) each add to
        one counter; no increment is lost."""
        name, cls = type(store).__name__, type(self).__name__
        if not self.multiprocess:
            self.not_applicable(
                request,
                f"{cls}.multiprocess is False: {name} is declared safe within one process only, "
                "so compare-and-swap across processes was not tested (a store several "
                "processes share must pass it)",
            )
        if store_opener is None:
            fail(
                f"{cls} cannot start other processes on {name}: override the store_opener "
                "fixture to return a StoreOpener (how another process opens the same store), "
                f"or declare `multiprocess = False` on {cls} if {name} keeps jobs for one "
                "process only"
            )
        assert store_opener is not None
        record = new_record("counter")
        store.create(record, created_events(record))
        start = store.last_position() if isinstance(store, EventLog) else 0
        workers = [self._start_worker(store_opener) for _ in range(self.processes)]
        try:
            for worker in workers:
                self._expect_line(worker, "ready")
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            for worker in workers:
                out, err = worker.communicate(timeout=300)
                if worker.returncode != 0:
                    fail(f"a worker process failed (exit {worker.returncode}):\n{err}")
                json.loads(out)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.communicate()
        self._check_counter(reopen(), "processes", start)

    def _start_worker(self, opener: StoreOpener) -> subprocess.Popen[str]:
        """A ``store_worker`` process, told what to do, waiting for ``go``."""
        path = [*opener.pythonpath, *(p for p in sys.path if p and os.path.isdir(p))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}
        worker = subprocess.Popen(
            [sys.executable, "-m", "statemachine.testing.store_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert worker.stdin is not None
        order = {"opener": opener.to_json(), "job_id": "counter", "increments": self.increments}
        worker.stdin.write(json.dumps(order) + "\n")
        worker.stdin.flush()
        return worker

    @staticmethod
    def _expect_line(worker: subprocess.Popen[str], line: str) -> None:
        __tracebackhide__ = True
        assert worker.stdout is not None
        got = worker.stdout.readline().strip()
        if got != line:
            worker.kill()
            _, err = worker.communicate()
            fail(f"a worker process did not start (it said {got!r}):\n{err}")
