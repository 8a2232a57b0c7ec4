"""The SQL store on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import itertools
import secrets
import socket
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, select
from statemachine.plugins.sql import SQLStore, store_url
from statemachine.plugins.sql.schema import SCHEMA_VERSION

from statemachine import (
    ConcurrentUpdateError,
    JobCreated,
    JobExists,
    JobNotFound,
    JobRecord,
    MemoryStore,
    PersistenceError,
    PhaseChanged,
    PhaseRecord,
    PhaseSet,
    SpecMismatch,
    Tracker,
    parse_spec,
)

from .conftest import Recorder, StoreTarget, row_locked

T0 = datetime(2024, 5, 17, 9, 30, 0, 123456, tzinfo=UTC)


def a_record(job_id: str = "job-1", *, version: int = 1, at: datetime = T0) -> JobRecord:
    """A job record with every field set to something a lossy store would get wrong."""
    return JobRecord(
        job_id=job_id,
        spec_name="ingestion",
        spec_fingerprint="0123456789abcdef",
        status="failed",
        current_phase="extraction",
        progress=37.123456789012345,
        version=version,
        created_at=at - timedelta(hours=1, microseconds=1),
        updated_at=at,
        phases=(
            PhaseRecord(
                "discovery", "completed", 100.0, 2**40, 2**40, at - timedelta(minutes=5), at, at
            ),
            PhaseRecord(
                "extraction",
                "failed",
                99.0,
                123,
                None,
                at - timedelta(seconds=3, microseconds=999_999),
                at + timedelta(microseconds=1),
                at + timedelta(microseconds=1),
                "disk full: /var/lib/ünïcødé ✗\nsecond line",
            ),
            PhaseRecord("transformation", "not_started", 0.0, 0, None, None, None, at, None),
        ),
        metadata={"source": "s3://bucket/key", "nested": {"list": [1, 2.5, None, True]}, "é": "✓"},
    )


def created(record: JobRecord) -> JobCreated:
    return JobCreated(
        job_id=record.job_id,
        version=record.version,
        at=record.created_at,
        spec=record.spec_name,
        phases=[p.phase_name for p in record.phases],
        initial_status="not_started",
        metadata=dict(record.metadata),
    )


def changed(record: JobRecord, phase: str, source: str, dest: str) -> PhaseChanged:
    return PhaseChanged(
        job_id=record.job_id,
        version=record.version,
        at=record.updated_at,
        phase=phase,
        trigger="go",
        source=source,
        dest=dest,
    )


def next_version(record: JobRecord, **phase_changes: Any) -> JobRecord:
    """``record`` one version later, the phase ``extraction`` changed by ``phase_changes``."""
    at = record.updated_at + timedelta(seconds=1)
    phases = tuple(
        replace(p, updated_at=at, **phase_changes) if p.phase_name == "extraction" else p
        for p in record.phases
    )
    return record.replace(version=record.version + 1, updated_at=at, phases=phases)


# -- opening a store -------------------------------------------------------------------------


def test_store_urls_open_through_the_registered_entry_point(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    with Tracker(ingestion, store=store_target.url, store_options=store_target.options) as t:
        assert isinstance(t.store, SQLStore)
        t.create_job("j1")
        assert t.get_job("j1").version == 1


def test_plain_postgresql_url_is_driven_by_psycopg_3() -> None:
    url = store_url("postgresql://user:secret@db.example:5433/jobs")
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == ("db.example", 5433, "jobs")


def test_a_url_of_another_database_is_refused_naming_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="works with sqlite and postgresql, not 'mysql'"):
        SQLStore("mysql://user@host/db")


def test_table_prefix_must_be_a_plain_identifier(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="table_prefix 'jobs; drop' is not a plain SQL"):
        SQLStore(f"sqlite:///{tmp_path}/x.db", table_prefix="jobs; drop")


def test_synchronous_must_be_a_sqlite_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OFF, NORMAL, FULL, EXTRA"):
        SQLStore(f"sqlite:///{tmp_path}/x.db", synchronous="SOMETIMES")


def test_sqlite_runs_in_wal_mode_with_synchronous_normal_and_a_busy_timeout(
    tmp_path: Path,
) -> None:
    store = SQLStore(f"sqlite:///{tmp_path}/x.db")
    with store.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    store.close()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 30000,
        "foreign_keys": 1,
    }


def test_sqlite_synchronous_full_and_busy_timeout_are_options(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite:///{tmp_path}/x.db", synchronous="full", busy_timeout=2.5)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    store.close()


def test_tables_indexes_and_prefix_are_in_the_store_metadata(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite:///{tmp_path}/x.db", table_prefix="pk_")
    assert sorted(store.metadata.tables) == [
        "pk_dead_letters",
        "pk_event_sequence",
        "pk_events",
        "pk_history",
        "pk_jobs",
        "pk_phases",
        "pk_relay_cursors",
        "pk_schema",
        "pk_specs",
    ]
    store.create(a_record(), [])
    names = inspect(store.engine).get_table_names()
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("pk_jobs")}
    store.close()
    assert sorted(names) == sorted(store.metadata.tables)
    assert indexes == {
        "ix_pk_jobs_updated",
        "ix_pk_jobs_status_updated",
        "ix_pk_jobs_spec_updated",
        "ix_pk_jobs_spec_status",
    }


def test_without_create_tables_missing_tables_are_a_persistence_error_saying_so(
    store_target: StoreTarget,
) -> None:
    store = store_target.open(create_tables=False)
    with pytest.raises(PersistenceError, match="tables are missing: run the migrations"):
        store.load("job-1")
    store.close()


def test_without_create_tables_the_store_uses_tables_the_host_created(
    store_target: StoreTarget,
) -> None:
    host = store_target.open()  # stands for the host's migration: it creates the tables
    host.load("nothing")
    host.close()
    store = store_target.open(create_tables=False)
    store.create(a_record(), [])
    assert store.load("job-1") == a_record()
    store.close()


def test_a_host_engine_is_used_and_left_open_on_close(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/host.db")
    store = SQLStore(engine=engine)
    store.create(a_record(), [])
    store.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM phasekit_jobs").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_tables_go_in_the_schema_option(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    store = SQLStore(url, schema=schema, table_prefix="in_schema_")
    store.create(a_record(), [])
    tables = inspect(store.engine).get_table_names(schema=schema)
    store.close()
    assert {"in_schema_jobs", "in_schema_phases", "in_schema_history"} <= set(tables)


def test_a_database_that_cannot_be_opened_is_a_persistence_error(tmp_path: Path) -> None:
    store = SQLStore(f"sqlite:///{tmp_path}/no/such/dir/jobs.db")
    with pytest.raises(PersistenceError, match=r"jobs\.db: could not open the database"):
        store.load("job-1")


def test_a_closed_store_refuses_to_work(sql_store: SQLStore) -> None:
    sql_store.close()
    with pytest.raises(PersistenceError, match="closed"):
        sql_store.load("job-1")


# -- create, load, save ----------------------------------------------------------------------


def test_every_field_round_trips_exactly(sql_store: SQLStore) -> None:
    record = a_record()
    sql_store.create(record, [created(record)])
    loaded = sql_store.load("job-1")
    assert loaded == record
    assert loaded is not None
    assert all(
        ts is None or ts.tzinfo is UTC
        for p in loaded.phases
        for ts in (p.started_at, p.completed_at, p.updated_at)
    )
    assert loaded.created_at.tzinfo is UTC


# Text PostgreSQL can hold (no NUL), timestamps in any zone, counters as large as BIGINT.
_texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=_zones
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_phases = st.builds(
    PhaseRecord,
    phase_name=_texts.filter(bool),
    status=_texts.filter(bool),
    progress=st.floats(0, 100),
    items_processed=st.integers(0, 2**63 - 1),
    items_total=st.none() | st.integers(0, 2**63 - 1),
    started_at=st.none() | _times,
    completed_at=st.none() | _times,
    updated_at=st.none() | _times,
    error=st.none() | _texts,
)
_records = st.builds(
    JobRecord,
    job_id=st.just("job"),
    spec_name=_texts,
    spec_fingerprint=_texts,
    status=_texts,
    current_phase=st.none() | _texts,
    progress=st.floats(0, 100),
    version=st.integers(1, 2**63 - 1),
    created_at=_times,
    updated_at=_times,
    phases=st.lists(_phases, min_size=1, max_size=4, unique_by=lambda p: p.phase_name).map(tuple),
    metadata=st.dictionaries(_texts, _json, max_size=4),
)
_job_numbers = itertools.count()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=_records)
def test_any_record_round_trips_as_the_same_instants_and_values(
    sql_store: SQLStore, record: JobRecord
) -> None:
    record = record.replace(job_id=f"job-{next(_job_numbers)}")
    sql_store.create(record, [])
    assert sql_store.load(record.job_id) == record


def test_a_store_opened_afresh_loads_the_same_record(store_target: StoreTarget) -> None:
    record = a_record()
    first = store_target.open()
    first.create(record, [created(record)])
    first.close()
    second = store_target.open()
    assert second.load("job-1") == record
    second.close()


def test_timestamps_in_other_zones_come_back_as_the_same_instant_in_utc(
    sql_store: SQLStore,
) -> None:
    paris = timezone(timedelta(hours=2))
    record = a_record(at=datetime(2024, 5, 17, 11, 30, 0, 654321, tzinfo=paris))
    sql_store.create(record, [])
    loaded = sql_store.load("job-1")
    assert loaded is not None
    assert loaded.updated_at == datetime(2024, 5, 17, 9, 30, 0, 654321, tzinfo=UTC)
    assert loaded.updated_at.utcoffset() == timedelta(0)


def test_a_naive_timestamp_is_refused(sql_store: SQLStore) -> None:
    record = a_record().replace(updated_at=datetime(2024, 1, 1, 12, 0))
    with pytest.raises(PersistenceError, match="no time zone"):
        sql_store.create(record, [])
    assert sql_store.load("job-1") is None


def test_loading_an_unknown_job_gives_none(sql_store: SQLStore) -> None:
    assert sql_store.load("nobody") is None


def test_creating_a_job_twice_raises_job_exists_and_keeps_the_first(sql_store: SQLStore) -> None:
    sql_store.create(a_record(), [created(a_record())])
    other = a_record().replace(status="completed", metadata={"second": True})
    with pytest.raises(JobExists, match="'job-1' already exists"):
        sql_store.create(other, [created(other)])
    assert sql_store.load("job-1") == a_record()
    assert len(sql_store.history("job-1")) == 1


def test_save_replaces_the_job_and_appends_its_events(sql_store: SQLStore) -> None:
    first = a_record()
    creation = created(first)
    sql_store.create(first, [creation])
    second = next_version(first, status="running", error=None, items_processed=124)
    event = changed(second, "extraction", "failed", "running")
    sql_store.save(second, expected_version=1, events=[event])
    assert sql_store.load("job-1") == second
    assert sql_store.history("job-1") == [creation, event]


def test_save_at_a_stale_version_raises_concurrent_update_and_writes_nothing(
    sql_store: SQLStore,
) -> None:
    first = a_record()
    creation = created(first)
    sql_store.create(first, [creation])
    second = next_version(first, items_processed=1)
    sql_store.save(second, expected_version=1, events=[])
    stale = next_version(first, status="running")
    with pytest.raises(ConcurrentUpdateError) as caught:
        sql_store.save(stale, expected_version=1, events=[changed(stale, "extraction", "x", "y")])
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert sql_store.load("job-1") == second
    assert sql_store.history("job-1") == [creation]


def test_saving_a_job_that_is_not_stored_raises_job_not_found(sql_store: SQLStore) -> None:
    with pytest.raises(JobNotFound, match="no job 'job-1'"):
        sql_store.save(a_record(version=2), expected_version=1, events=[])


def test_a_save_that_fails_midway_writes_nothing(sql_store: SQLStore) -> None:
    first = a_record()
    sql_store.create(first, [created(first)])
    second = next_version(first, status="running")
    orphan = changed(second, "extraction", "failed", "running").model_copy(
        update={"job_id": "no-such-job"}
    )
    with pytest.raises(PersistenceError, match="could not save job 'job-1'"):
        sql_store.save(second, expected_version=1, events=[orphan])  # breaks a foreign key
    assert sql_store.load("job-1") == first
    sql_store.save(second, expected_version=1, events=[])  # and the next save goes through
    assert sql_store.load("job-1") == second


def test_two_stores_on_one_database_see_each_others_commits(store_target: StoreTarget) -> None:
    a, b = store_target.open(), store_target.open()
    first = a_record()
    a.create(first, [])
    assert b.load("job-1") == first
    second = next_version(first, items_processed=5)
    a.save(second, expected_version=1, events=[])
    with pytest.raises(ConcurrentUpdateError):
        b.save(next_version(first, items_processed=6), expected_version=1, events=[])
    reloaded = b.load("job-1")
    assert reloaded == second
    third = next_version(second, status="running", error=None)
    b.save(third, expected_version=2, events=[])
    assert a.load("job-1") == third
    a.close()
    b.close()


def test_a_store_that_never_saw_the_job_saves_every_phase(store_target: StoreTarget) -> None:
    a, b = store_target.open(), store_target.open()
    first = a_record()
    a.create(first, [])
    at = first.updated_at + timedelta(seconds=1)
    second = first.replace(
        version=2,
        updated_at=at,
        phases=tuple(replace(p, updated_at=at, items_processed=7) for p in first.phases),
    )
    b.save(second, expected_version=1, events=[])
    assert a.load("job-1") == second
    a.close()
    b.close()


def test_saving_a_record_with_an_added_phase_stores_it_in_order(sql_store: SQLStore) -> None:
    first = a_record()
    sql_store.create(first, [])
    sql_store.load("job-1")
    added = PhaseRecord("publishing", "not_started", updated_at=T0)
    second = first.replace(version=2, phases=(*first.phases, added))
    sql_store.save(second, expected_version=1, events=[])
    loaded = sql_store.load("job-1")
    assert loaded is not None
    assert [p.phase_name for p in loaded.phases] == [
        "discovery",
        "extraction",
        "transformation",
        "publishing",
    ]


# -- queries ---------------------------------------------------------------------------------


def listing_fixture() -> list[JobRecord]:
    """Jobs with ties in update time, two statuses and two phase sets."""
    records = []
    for i in range(7):
        record = a_record(f"job-{i}", at=T0 + timedelta(seconds=i // 2))
        if i % 3 == 0:
            record = record.replace(status="running")
        if i == 5:
            record = record.replace(spec_name="other")
        records.append(record)
    return records


def test_list_is_most_recently_updated_first_then_by_id_like_the_memory_store(
    sql_store: SQLStore,
) -> None:
    memory = MemoryStore()
    for record in listing_fixture():
        sql_store.create(record, [])
        memory.create(record, [])
    listed = [r.job_id for r in sql_store.list()]
    assert listed == ["job-6", "job-4", "job-5", "job-2", "job-3", "job-0", "job-1"]
    assert sql_store.list() == memory.list()


@pytest.mark.parametrize(
    "query",
    [
        {"status": "running"},
        {"status": "failed", "limit": 2},
        {"spec": "other"},
        {"spec": "ingestion", "status": "running"},
        {"limit": 3, "offset": 2},
        {"offset": 6},
        {"offset": 50},
        {"limit": 0},
    ],
)
def test_list_filters_and_pages_like_the_memory_store(
    sql_store: SQLStore, query: dict[str, Any]
) -> None:
    memory = MemoryStore()
    for record in listing_fixture():
        sql_store.create(record, [])
        memory.create(record, [])
    assert sql_store.list(**query) == memory.list(**query)


def test_load_many_returns_the_stored_jobs_by_id_in_one_go(sql_store: SQLStore) -> None:
    records = [a_record(f"job-{i}") for i in range(1203)]
    for record in records:
        sql_store.create(record, [])
    wanted = [f"job-{i}" for i in range(0, 1300, 2)]
    found = sql_store.load_many(wanted)
    assert list(found) == [i for i in wanted if int(i.split("-")[1]) < 1203]
    assert found["job-1202"] == records[1202]


def test_history_of_an_unknown_job_is_empty(sql_store: SQLStore) -> None:
    assert sql_store.history("nobody") == []


def test_history_rows_carry_the_transition_as_columns(sql_store: SQLStore) -> None:
    first = a_record()
    sql_store.create(first, [created(first)])
    second = next_version(first, status="running")
    sql_store.save(second, expected_version=1, events=[changed(second, "extraction", "a", "b")])
    history = sql_store.tables.history
    with sql_store.engine.connect() as conn:
        rows = conn.execute(
            history.select()
            .order_by(history.c.id)
            .with_only_columns(
                history.c.version,
                history.c.event_type,
                history.c.phase,
                history.c.trigger,
                history.c.source,
                history.c.dest,
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, "job_created", None, None, None, None),
        (2, "phase_changed", "extraction", "go", "a", "b"),
    ]


def test_remember_spec_keeps_the_first_definition_under_its_fingerprint(
    sql_store: SQLStore,
) -> None:
    sql_store.remember_spec("mini", "f1", {"name": "mini", "phases": [{"name": "a"}]})
    sql_store.remember_spec("mini", "f1", {"name": "changed"})
    assert sql_store.recall_spec("f1") == {"name": "mini", "phases": [{"name": "a"}]}
    assert sql_store.recall_spec("unknown") is None


def test_a_tracker_keeps_its_phase_set_in_the_store(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    Tracker(ingestion, store=store_target.open(), load_entrypoints=False).close()
    store = store_target.open()
    kept = store.recall_spec(ingestion.fingerprint)
    store.close()
    assert kept == ingestion.definition.model_dump(mode="json", exclude_defaults=True)


# -- through a Tracker -----------------------------------------------------------------------


def test_history_lists_creation_then_every_status_change_in_order(
    ingestion: PhaseSet, sql_store: SQLStore, recorder: Recorder
) -> None:
    with Tracker(ingestion, store=sql_store, plugins=[recorder], load_entrypoints=False) as t:
        job = t.create_job("job-1", metadata={"source": "s3://b"})
        job.phases["discovery"].start()
        job.phases["discovery"].update_progress(items_processed=3, items_total=4)
        job.phases["discovery"].complete()
        job.phases["extraction"].start()
        job.phases["extraction"].pause()
        job.phases["extraction"].resume()
        job.phases["extraction"].fail("disk full")
        history = t.history("job-1")
    announced = [e for e in recorder.events if isinstance(e, JobCreated | PhaseChanged)]
    assert history == announced
    assert [(getattr(e, "trigger", "create"), e.version) for e in history] == [
        ("create", 1),
        ("start", 2),
        ("complete", 4),
        ("start", 5),
        ("pause", 6),
        ("resume", 7),
        ("fail", 8),
    ]


def test_progress_updates_overwrite_counters_and_stay_out_of_history(
    ingestion: PhaseSet, sql_store: SQLStore
) -> None:
    with Tracker(ingestion, store=sql_store, load_entrypoints=False) as t:
        job = t.create_job("job-1")
        job.phases["loading"].start()
        for n in range(1, 6):
            job.phases["loading"].update_progress(items_processed=n * 10, items_total=50)
        stored = t.get_job("job-1").phases["loading"]
        assert (stored.items_processed, stored.items_total, stored.progress) == (50, 50, 99.0)
        assert len(t.history("job-1")) == 2


def test_restoring_a_job_fires_no_hook(
    ingestion: PhaseSet, store_target: StoreTarget, recorder: Recorder
) -> None:
    with Tracker(ingestion, store=store_target.open(), load_entrypoints=False) as t:
        job = t.create_job("job-1")
        job.phases["discovery"].start()
        job.phases["discovery"].complete()
    with Tracker(
        ingestion, store=store_target.open(), plugins=[recorder], load_entrypoints=False
    ) as t:
        restored = t.get_job("job-1")
        assert restored.get_overall_status() == "running"
    assert recorder.events == []


def test_a_restored_job_equals_the_one_that_was_saved(
    ingestion: PhaseSet, store_target: StoreTarget
) -> None:
    with Tracker(ingestion, store=store_target.open(), load_entrypoints=False) as t:
        job = t.create_job("job-1", metadata={"batch": [1, 2, 3]})
        job.phases["discovery"].start()
        job.phases["discovery"].update_progress(items_processed=1, items_total=3)
        job.phases["discovery"].fail("boom")
        saved = job.to_schema()
    with Tracker(ingestion, store=store_target.open(), load_entrypoints=False) as t:
        assert t.get_job("job-1").to_schema() == saved


MINI = """
phasekit: 1
name: mini
statuses:
  todo: {initial: true}
  doing: {active: true}
  held: {}
  done: {terminal: true, success: true}
transitions:
  - {trigger: begin, source: todo, dest: doing}
  - {trigger: hold, source: doing, dest: held}
  - {trigger: finish, source: [doing, held], dest: done}
phases:
  - {name: first}
  - {name: second}
aggregate:
  status:
    - {all: [done], then: done}
    - {any: [doing, held, done], then: doing}
    - {otherwise: todo}
"""


def test_a_phase_appended_to_the_spec_loads_in_its_initial_status_and_saves(
    store_target: StoreTarget,
) -> None:
    with Tracker(parse_spec(MINI), store=store_target.open(), load_entrypoints=False) as t:
        t.create_job("job-1").phases["first"].begin()
    longer = parse_spec(
        MINI.replace("  - {name: second}\n", "  - {name: second}\n  - {name: third}\n")
    )
    with Tracker(longer, store=store_target.open(), load_entrypoints=False) as t:
        job = t.get_job("job-1")
        assert [(p.phase_name, p.status) for p in job] == [
            ("first", "doing"),
            ("second", "todo"),
            ("third", "todo"),
        ]
        job.phases["third"].begin()
        assert [p.status for p in t.get_job("job-1")] == ["doing", "todo", "doing"]
        assert t.get_job("job-1").version == 3


def test_a_stored_status_the_spec_no_longer_has_raises_spec_mismatch(
    store_target: StoreTarget,
) -> None:
    with Tracker(parse_spec(MINI), store=store_target.open(), load_entrypoints=False) as t:
        job = t.create_job("job-1")
        job.phases["first"].begin()
        job.phases["first"].hold()
    without_held = parse_spec(
        MINI.replace("  held: {}\n", "")
        .replace("  - {trigger: hold, source: doing, dest: held}\n", "")
        .replace("[doing, held]", "[doing]")
        .replace("[doing, held, done]", "[doing, done]")
    )
    with (
        Tracker(without_held, store=store_target.open(), load_entrypoints=False) as t,
        pytest.raises(SpecMismatch, match="statuses 'held'"),
    ):
        t.get_job("job-1")


def test_a_stored_phase_the_spec_no_longer_has_raises_spec_mismatch(
    store_target: StoreTarget,
) -> None:
    with Tracker(parse_spec(MINI), store=store_target.open(), load_entrypoints=False) as t:
        t.create_job("job-1")
    shorter = parse_spec(MINI.replace("  - {name: second}\n", ""))
    with (
        Tracker(shorter, store=store_target.open(), load_entrypoints=False) as t,
        pytest.raises(SpecMismatch, match="phases 'second'"),
    ):
        t.get_job("job-1")


def test_sqlite_file_passes_integrity_check_after_use(tmp_path: Path, ingestion: PhaseSet) -> None:
    with Tracker(
        ingestion, store=SQLStore(f"sqlite:///{tmp_path}/j.db"), load_entrypoints=False
    ) as t:
        for i in range(20):
            t.create_job(f"job-{i}").phases["discovery"].start()
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- connections, URLs and what the store trusts ------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///"])
def test_a_sqlite_url_without_a_file_is_refused(url: str) -> None:
    # Each connection would get an empty database of its own: a job created would be gone.
    with pytest.raises(ValueError, match="a SQLite store needs a file"):
        SQLStore(url)


def test_a_password_in_the_query_string_never_reaches_a_message_or_the_repr() -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = SQLStore(f"postgresql://someone@127.0.0.1:{port}/test?password=hunter2")
    try:
        assert "hunter2" not in repr(store)
        with pytest.raises(PersistenceError) as caught:
            store.load("j1")
        assert "hunter2" not in str(caught.value)
    finally:
        store.close()


@pytest.mark.postgres
def test_a_row_locked_by_another_session_fails_the_commit_within_the_lock_timeout(
    pg_target: StoreTarget, ingestion: PhaseSet
) -> None:
    store = pg_target.open(lock_timeout=0.5)
    with Tracker(ingestion, store=store, load_entrypoints=False) as tracker:
        phase = tracker.create_job("locked").phases["discovery"]
        with row_locked(store, pg_target.url, "locked"):
            started = time.monotonic()
            with pytest.raises(PersistenceError, match="lock timeout"):
                phase.start()
            assert time.monotonic() - started < 5
        phase.start()  # the lock is gone: the same commit goes through
        assert tracker.get_job("locked").phases["discovery"].status == "running"


@pytest.mark.postgres
def test_connections_the_server_dropped_cost_no_caller_an_error(
    pg_target: StoreTarget, ingestion: PhaseSet
) -> None:
    name = f"phasekit-dropped-{secrets.token_hex(4)}"
    store = pg_target.open(engine_options={"connect_args": {"application_name": name}})
    with Tracker(ingestion, store=store, load_entrypoints=False) as tracker:
        phases = [tracker.create_job(f"d{i}").phases["discovery"] for i in range(3)]
        with psycopg.connect(pg_target.url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        for phase in phases:  # every pooled connection is dead: each commit still succeeds
            phase.start()
        assert [tracker.get_job(f"d{i}").phases["discovery"].status for i in range(3)] == [
            "running"
        ] * 3


# -- the schema version ---------------------------------------------------------------------------


def test_a_store_records_its_schema_version(store_target: StoreTarget) -> None:
    store = store_target.open()
    store.load("nothing")  # the first use creates the tables
    info = store.tables.schema_info
    with store.engine.connect() as conn:
        assert conn.execute(select(info.c.name, info.c.version)).all() == [
            ("phasekit", SCHEMA_VERSION)
        ]
    store.close()


def test_tables_of_another_schema_version_are_refused_before_anything_is_written(
    store_target: StoreTarget,
) -> None:
    first = store_target.open()
    first.create(a_record("kept"), [])
    info = first.tables.schema_info
    with first.engine.begin() as conn:
        conn.execute(info.update().values(version=SCHEMA_VERSION + 1))
    first.close()
    store = store_target.open()
    with pytest.raises(PersistenceError, match=f"schema version {SCHEMA_VERSION + 1}"):
        store.create(a_record("new"), [])
    with pytest.raises(PersistenceError, match="schema version"):
        store.load("kept")
    store.close()
    check = store_target.open(create_tables=False)
    with check.engine.connect() as conn:
        jobs = conn.execute(select(check.tables.jobs.c.job_id)).scalars().all()
    check.close()
    assert jobs == ["kept"]


def test_a_jobs_table_without_its_primary_key_is_refused_not_used(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as db:  # a jobs table someone made by hand, without its key
        db.execute(
            "CREATE TABLE phasekit_jobs (job_id TEXT, spec_name TEXT, spec_fingerprint TEXT, "
            "status TEXT, current_phase TEXT, progress REAL, version INTEGER, metadata TEXT, "
            "created_at TEXT, updated_at TEXT)"
        )
    store = SQLStore(f"sqlite:///{path}")
    with pytest.raises(PersistenceError, match=r"phasekit_jobs's primary key is not \(job_id\)"):
        store.create(a_record(), [])
    store.close()


def test_tables_of_an_earlier_release_get_their_version_recorded(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLStore(f"sqlite:///{path}")
    store.create(a_record(), [])
    store.close()
    with sqlite3.connect(path) as db:  # as a release before the version table left them
        db.execute("DROP TABLE phasekit_schema")
    again = SQLStore(f"sqlite:///{path}")
    assert again.load("job-1") == a_record()
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name, version FROM phasekit_schema").fetchall() == [
            ("phasekit", SCHEMA_VERSION)
        ]
