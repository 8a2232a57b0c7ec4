"""``StoreConformance``: the tests every ``Store`` must pass, for a store's author to run.

Subclass it in a test module, say how to open the store, and pytest runs every duty of the
store contract (``docs/writing-plugins.md``) against it::

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_opener(self, tmp_path):
            return StoreOpener("my_store:MyStore", str(tmp_path / "jobs.db"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from statemachine import Store

from .concurrency_duties import ConcurrencyDuties
from .duties import CONFORMANCE_PROPERTY, fail
from .log_duties import LogDuties
from .record_duties import RecordDuties
from .store_opener import StoreOpener

__all__ = ["CONFORMANCE_PROPERTY", "StoreConformance"]


# pytest collects a base class's tests before a subclass's: the tests run records first.
class StoreConformance(ConcurrencyDuties, LogDuties, RecordDuties):
    """The duties of a ``statemachine.Store``, as tests; subclass it as ``TestYourStore``.

    Override ``store_opener`` (how any process opens a fresh, empty store for the test:
    the same data on every ``open()``), or ``make_store`` (a callable doing that in this
    process only; an in-memory store returns its one instance each time). Then:

    - ``multiprocess = False`` declares the store safe within one process only: the
      cross-process test is then skipped, and the reason printed at the end of the run.
      Otherwise that test runs and fails, saying why, when updates are lost or when there is
      no ``store_opener`` for other processes to open the store with.
    - ``threads``, ``processes`` and ``increments`` size the concurrency tests.

    Optional parts of the contract (``list``'s ``spec`` and ``phase_status`` filters,
    idempotency keys, ``delete``, ``EventLog``, ``SpecArchive``) are tested when the store has
    them, and reported as skipped, with the reason, when it has not.
    """

    # -- what the store's author overrides -----------------------------------------------

    @pytest.fixture
    def store_opener(self) -> StoreOpener | None:
        """How any process opens the test's store; None: this process only (``make_store``)."""
        return None

    @pytest.fixture
    def make_store(self, store_opener: StoreOpener | None) -> Callable[[], Store]:
        """Opens the test's store again, on the same jobs, each time it is called."""
        if store_opener is None:
            fail(
                f"{type(self).__name__} does not say how to open the store: override the "
                "store_opener fixture (returning a StoreOpener) or make_store (a callable)"
            )
        assert store_opener is not None
        return store_opener.open

    # -- fixtures of the suite -----------------------------------------------------------

    @pytest.fixture
    def store(self, make_store: Callable[[], Store]) -> Iterator[Store]:
        """The store under test, closed afterwards."""
        opened = make_store()
        try:
            yield opened
        finally:
            opened.close()

    @pytest.fixture
    def reopen(
        self, make_store: Callable[[], Store], store: Store
    ) -> Iterator[Callable[[], Store]]:
        """Opens the store once more (another connection, as another worker would have)."""
        opened: list[Store] = []

        def again() -> Store:
            another = make_store()
            if another is not store:
                opened.append(another)
            return another

        try:
            yield again
        finally:
            for another in opened:
                another.close()
