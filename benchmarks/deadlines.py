"""Deadline sweeps (figure 9): ``tracker.sweep()`` over many stored phases, and what the
deadline column adds to a commit.

The store holds 1,000,000 phases (100,000 with ``--quick``): 250,000 jobs of the ingestion
phase set with deadlines on ``running`` and ``paused``. Their rows are phasekit's own: a few
template jobs are created and driven through a Tracker (each template in one state, at a
time of its own on the Tracker's clock), then their job and phase rows are copied in bulk
with SQL (``INSERT … SELECT`` over a generated series of ids), so every copy is a row exactly
as phasekit wrote it, dated (fingerprint and deadline set). The due phases of each sweep are
copies of a template of their own, created an hour after the previous one's: the sweep of
slot ``s`` runs 5 minutes past that template's deadline, when exactly its copies are due
(the earlier slots' were fired by the earlier sweeps; the other loaded phases' deadlines
are in 2100). The counts are checked after loading, and every sweep must return as many
changes as phases were due.

SQLite files live in a temporary folder; PostgreSQL tables in a schema of their own
(``phasekit_bench_…``), dropped with everything in it at the end.
"""

from __future__ import annotations

import gc
import itertools
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import yaml
from sqlalchemy import event

from statemachine import JobState, PhaseSet, Tracker, load_spec, parse_spec

from . import stages
from .databases import STORE_PREFIX, Database, StoreTables, libpq_url
from .harness import Case, Figure, Settings, Target, batch, interleaved, pause_resume
from .profiles import profile_if_missed

__all__ = ["deadline_figures", "deadline_spec"]

SECTION = "9. Deadlines"
MS = 1e3
US = 1e6
PHASES = 4  # phases per job of the ingestion phase set
FULL_PHASES = 1_000_000
QUICK_PHASES = 100_000
#: Slot ``s``'s due phases last changed at ``DUE_START + s`` hours.
DUE_START = datetime(2000, 1, 1, tzinfo=UTC)
SLOT = timedelta(hours=1)
#: The heartbeat of ``running``: a due phase's deadline is its last change plus this.
HEARTBEAT = timedelta(minutes=5)
#: A sweep with nothing due runs then: before the first slot's deadline, and every other.
NOTHING_DUE = DUE_START - timedelta(hours=1)
#: Where the phases not due are: their deadlines are a century after the sweeps.
FAR = datetime(2100, 1, 1, tzinfo=UTC)
ERROR = "heartbeat of 5m missed in status running"  # what the sweep writes for these phases
#: A sweep with nothing due is timed in batches of about this many seconds.
IDLE_BATCH = 0.05
_ids = itertools.count()


def deadline_spec() -> PhaseSet:
    """The bundled ingestion phase set with deadlines, under a name of its own."""
    definition = load_spec("ingestion").definition.model_dump(mode="json", exclude_defaults=True)
    definition["name"] = "ingestion-deadlines"
    statuses = definition["statuses"]
    statuses["running"].update(timeout="2h", heartbeat="5m", on_timeout="fail")
    statuses["paused"].update(timeout="1d", on_timeout="fail")
    return parse_spec(yaml.safe_dump(definition, sort_keys=False), filename="<deadlines>")


# -- the templates: one job per state (benchmarks/stages.py) -------------------------------


#: The jobs not due, in equal shares: four with a phase in a status with a deadline.
FAR_KINDS: tuple[Callable[[JobState], None], ...] = (
    stages.discovery_running,
    stages.extraction_running,
    stages.extraction_paused,
    stages.loading_running,
    stages.completed,
    stages.failed,
    stages.not_started,
)


@dataclass(frozen=True, slots=True)
class Block:
    """``count`` copies of template job ``template``: ids ``prefix0``, ``prefix1``, …"""

    template: str
    prefix: str
    count: int
    at: datetime  # the Tracker's clock when the template was made
    make: Callable[[JobState], None]

    def ids(self) -> Iterator[str]:
        return (f"{self.prefix}{i}" for i in range(self.count))

    @property
    def due_at(self) -> datetime:
        """When a sweep finds these phases due: 5 minutes past their deadline."""
        return self.at + HEARTBEAT + timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Group:
    """Sweeps of ``due`` phases each, ``rounds`` times, beside as many by-id batches."""

    due: int
    rounds: int
    analyzed: bool = False  # measured after ANALYZE (SQLite), with statistics for the planner


@dataclass(slots=True)
class Plan:
    """What is loaded: the due slots in the order the sweeps take them, and the rest."""

    jobs: int
    groups: tuple[Group, ...]
    undated: int  # phases the dating figure takes the deadline of, each round
    slots: dict[Group, list[Block]] = field(default_factory=dict)
    pool: Block | None = None  # phases the by-id baseline fires
    spare: Block | None = None  # phases the dating figure undates
    blocks: list[Block] = field(default_factory=list)

    @classmethod
    def make(cls, settings: Settings, backend: str) -> Plan:
        phases = QUICK_PHASES if settings.quick else FULL_PHASES
        few = 3 if settings.quick else 5
        groups = [Group(100, few), Group(1_000, few)]
        if not settings.quick:
            groups.append(Group(10_000, 1))
        if backend == "sqlite":
            groups.append(Group(1_000, 3, analyzed=True))
        plan = cls(phases // PHASES, tuple(groups), 100 if settings.quick else 1_000)
        s = 0
        for group in plan.groups:
            plan.slots[group] = []
            for _ in range(group.rounds):
                at = DUE_START + s * SLOT
                plan.slots[group].append(
                    Block(f"tpl-d{s}", f"d{s}-", group.due, at, stages.extraction_running)
                )
                s += 1
        due = sum(g.due * g.rounds for g in plan.groups)
        plan.pool = Block("tpl-b", "b-", due, FAR, stages.extraction_running)
        plan.spare = Block("tpl-u", "u-", plan.undated, FAR, stages.extraction_running)
        rest = plan.jobs - 2 * due - plan.undated
        if rest < len(FAR_KINDS):
            raise ValueError(f"{phases:,} phases leave no room for the phases not due")
        share, extra = divmod(rest, len(FAR_KINDS))
        far = [
            Block(f"tpl-f{k}", f"f{k}-", share + (k < extra), FAR + timedelta(minutes=k), make)
            for k, make in enumerate(FAR_KINDS)
        ]
        slots = [block for group in plan.groups for block in plan.slots[group]]
        plan.blocks = [*slots, plan.pool, plan.spare, *far]
        return plan

    @property
    def phases(self) -> int:
        return self.jobs * PHASES


class _Clock:
    """A clock the loader sets, for the templates' timestamps."""

    def __init__(self) -> None:
        self.now = FAR

    def __call__(self) -> datetime:
        return self.now


# -- plain SQL on the store's tables --------------------------------------------------------


class Sql(StoreTables):
    """The store's tables through the driver (sqlite3, or psycopg in autocommit)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.sqlite = db.backend == "sqlite"
        self.index = f"ix_{STORE_PREFIX}phases_deadline"
        if self.sqlite:
            path = db.store_url.removeprefix("sqlite:///")
            self.conn: Any = sqlite3.connect(path, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = 30000")
        else:
            self.conn = psycopg.connect(libpq_url(db.store_url), autocommit=True)

    def execute(self, sql: str, params: Any = ()) -> Any:
        """A cursor on ``sql`` run with ``params``; never a prepared statement on PostgreSQL,
        whose plan (made under whichever settings were in force) a later call would reuse."""
        if self.sqlite:
            return self.conn.execute(sql, params)
        return self.conn.execute(sql, params, prepare=False)

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    def at(self, value: datetime) -> Any:
        """A timestamp as the store keeps it (SQLite: UTC text, as ``UTCDateTime`` writes)."""
        if self.sqlite:
            return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(self._sql(sql), tuple(params)).fetchone()[0]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.execute(self._sql(sql), tuple(params)).rowcount)

    def among(self, ids: Sequence[str]) -> tuple[str, list[Any]]:
        """``job_id IN (…)`` for ``ids``, and its parameters."""
        if self.sqlite:
            return f"job_id IN ({', '.join('?' * len(ids))})", list(ids)
        return "job_id = ANY(?)", [list(ids)]

    def copy(self, block: Block) -> None:
        """``block.count`` copies of the template's job row and phase rows, with new ids."""
        params = {"prefix": block.prefix, "count": block.count, "template": block.template}
        for table, columns in ((self.jobs, self.job_columns), (self.phases, self.phase_columns)):
            rest = [c for c in columns if c != "job_id"]
            names = ", ".join(["job_id", *rest])
            values = ", ".join(f"t.{c}" for c in rest)
            if self.sqlite:
                sql = (
                    f"INSERT INTO {table} ({names}) "
                    "WITH RECURSIVE seq(i) AS "
                    "(SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < :count) "
                    f"SELECT :prefix || seq.i, {values} FROM seq, {table} AS t "
                    "WHERE t.job_id = :template"
                )
            else:
                sql = (
                    f"INSERT INTO {table} ({names}) "
                    f"SELECT %(prefix)s::text || seq.i::text, {values} "
                    f"FROM generate_series(0, %(count)s - 1) AS seq(i), {table} AS t "
                    "WHERE t.job_id = %(template)s"
                )
            self.execute(sql, params)

    def explain(self, sql: str, params: Sequence[Any], *, settings: Sequence[str] = ()) -> str:
        """The plan of ``sql``, on one line."""
        if self.sqlite:
            rows = self.execute("EXPLAIN QUERY PLAN " + sql, tuple(params)).fetchall()
            return "; ".join(str(r[-1]) for r in rows)
        with self.conn.transaction():
            for setting in settings:
                self.run(setting)
            rows = self.execute("EXPLAIN " + self._sql(sql), tuple(params)).fetchall()
        return _pg_plan(str(r[0]) for r in rows)

    def close(self) -> None:
        self.conn.close()


def _pg_plan(lines: Iterator[str]) -> str:
    """A PostgreSQL plan on one line, without the cost estimates."""
    kept = [
        re.sub(r"\s*\(cost=[^)]*\)", "", line).strip().removeprefix("->").strip() for line in lines
    ]
    return "; ".join(k for k in kept if k)


# -- loading --------------------------------------------------------------------------------


def load(db: Database, spec: PhaseSet, plan: Plan) -> tuple[Sql, str]:
    """Fill the store with the plan's jobs, check the counts; a line on what was loaded."""
    started = time.perf_counter()
    clock = _Clock()
    tracker = db.tracker(spec, clock=clock)
    try:
        for block in plan.blocks:
            clock.now = block.at
            block.make(tracker.create_job(block.template))
    finally:
        tracker.close()
    sql = Sql(db)
    if sql.sqlite:
        sql.run("BEGIN IMMEDIATE")
    for block in plan.blocks:
        sql.copy(block)
    templates, params = sql.among([block.template for block in plan.blocks])
    for table in (sql.events, sql.history, sql.phases, sql.jobs):
        sql.run(f"DELETE FROM {table} WHERE {templates}", params)
    if sql.sqlite:
        sql.run("COMMIT")
    else:  # what autovacuum does soon after a bulk load, done now rather than mid-figure
        for table in (sql.jobs, sql.phases):
            sql.run(f"VACUUM ANALYZE {table}")
    seconds = time.perf_counter() - started
    dated = _check_loaded(sql, spec, plan)
    return sql, (
        f"{plan.phases:,} phases of {plan.jobs:,} jobs ({dated:,} with a deadline), "
        f"loaded in {seconds:.0f} s"
    )


def _check_loaded(sql: Sql, spec: PhaseSet, plan: Plan) -> int:
    """The counts the figures claim: every phase there and dated, each slot's phases due."""
    jobs = sql.one(f"SELECT count(*) FROM {sql.jobs}")
    phases = sql.one(f"SELECT count(*) FROM {sql.phases}")
    if (jobs, phases) != (plan.jobs, plan.phases):
        raise RuntimeError(f"loaded {jobs:,} jobs and {phases:,} phases, not as planned")
    statuses = ", ".join(f"'{s}'" for s in spec.deadlines.rules)
    undated = sql.one(
        f"SELECT count(*) FROM {sql.phases} WHERE status IN ({statuses}) AND deadline IS NULL"
    )
    if undated:
        raise RuntimeError(f"{undated:,} loaded phases have no deadline")
    due = 0
    for group in plan.groups:
        for block in plan.slots[group]:
            due += block.count
            found = sql.one(
                f"SELECT count(*) FROM {sql.phases} WHERE deadline <= ?", (sql.at(block.due_at),)
            )
            if found != due:
                raise RuntimeError(f"{found:,} phases due at {block.due_at}, not {due:,}")
    if sql.one(f"SELECT count(*) FROM {sql.phases} WHERE deadline <= ?", (sql.at(NOTHING_DUE),)):
        raise RuntimeError(f"phases are due at {NOTHING_DUE}")
    return int(sql.one(f"SELECT count(*) FROM {sql.phases} WHERE deadline IS NOT NULL"))


# -- timing ---------------------------------------------------------------------------------


def _timed(run: Callable[[], int], expected: int) -> float:
    """Seconds of ``run()`` with the collector off; ``run`` returns how many phases it fired,
    which must be ``expected``."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fired = run()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    if fired != expected:
        raise RuntimeError(f"fired {fired:,} phases, expected {expected:,}: measured nothing")
    return elapsed


def _sent(tracker: Tracker, run: Callable[[], object]) -> dict[str, tuple[str, Any]]:
    """The claim's and the dating pass's SELECT, as the store sends them while ``run()``."""
    engine = tracker.store.engine  # type: ignore[attr-defined]
    seen: dict[str, tuple[str, Any]] = {}

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().startswith("SELECT"):
            return
        kind = "claim" if "deadline <=" in statement else None
        kind = "dating" if "deadline IS NULL" in statement else kind
        if kind is not None:
            seen.setdefault(kind, (statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


@dataclass(slots=True)
class Bench:
    """One store loaded with the plan's jobs, and the Tracker that sweeps it."""

    settings: Settings
    db: Database
    spec: PhaseSet
    plan: Plan
    sql: Sql
    tracker: Tracker
    loaded: str
    pool: Iterator[str]

    @property
    def name(self) -> str:
        return "SQLite" if self.db.backend == "sqlite" else "PostgreSQL"

    def plan_of(self, kind: str, tracker: Tracker | None = None) -> str:
        """The plan of the claim (``claim``) or the dating pass (``dating``) of a sweep."""
        tracker = tracker or self.tracker
        sent = _sent(tracker, lambda: tracker.sweep(now=NOTHING_DUE))
        if kind not in sent:
            return "not seen"
        statement, parameters = sent[kind]
        if self.sql.sqlite:
            rows = self.sql.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            return "; ".join(str(r[-1]) for r in rows.fetchall())
        rows = self.sql.execute("EXPLAIN " + statement, parameters)
        return _pg_plan(str(r[0]) for r in rows.fetchall())

    # -- 1. a sweep of N due phases against N fires by id ---------------------------------

    def sweeps(self, group: Group) -> Figure:
        n, tracker = group.due, self.tracker
        slots = iter(self.plan.slots[group])

        def sweep() -> float:
            now = next(slots).due_at
            return _timed(lambda: len(tracker.sweep(now=now)), n)

        def by_id() -> float:
            ids = list(itertools.islice(self.pool, n))
            fire = tracker.fire

            def run() -> int:
                for job_id in ids:
                    fire(job_id, "extraction", "fail", error=ERROR)
                return len(ids)

            return _timed(run, n)

        samples = interleaved({"sweep": sweep, "by_id": by_id}, group.rounds)
        after = " after `ANALYZE`" if group.analyzed else ""
        figure = Figure.compare(
            f"deadlines.sweep.{n}{'.analyzed' if group.analyzed else ''}.{self.db.backend}",
            SECTION,
            f"{self.name}{after}: `tracker.sweep()`, {n:,} due of {self.plan.phases:,} phases",
            samples["sweep"],
            samples["by_id"],
            unit="ms",
            factor=MS,
            baseline_label=f"{n:,} `tracker.fire(id, 'extraction', 'fail')` by id",
            # One round is one pair of long batches, with no spread to judge it by: no target.
            target=(
                Target("≤ 1.25x by-id fires", "ratio", 1.25)
                if group.rounds > 1 and not group.analyzed
                else None
            ),
        )
        per = figure.value * MS / n
        base = (figure.baseline_value or 0.0) * MS / n
        rounds = f"{group.rounds} rounds" if group.rounds > 1 else "1 round (no target)"
        figure.note = (
            f"{per:,.0f} µs per due phase, by id {base:,.0f} µs; {rounds}; "
            f"every sweep returned its {n:,} changes"
        )
        return figure

    # -- 2. a sweep with nothing due, against a scan -------------------------------------

    def idle(self, *, analyzed: bool = False) -> list[Figure]:
        sql, tracker = self.sql, self.tracker
        tracker.sweep(now=NOTHING_DUE)
        probe = _timed(lambda: len(tracker.sweep(now=NOTHING_DUE)), 0)
        sweeps = max(1, min(20, int(IDLE_BATCH / max(probe, 1e-6))))

        def idle() -> float:
            def run() -> int:
                return sum(len(tracker.sweep(now=NOTHING_DUE)) for _ in range(sweeps))

            return _timed(run, 0) / sweeps

        at = (sql.at(NOTHING_DUE),)
        off = [f"SET LOCAL enable_{k} = off" for k in ("indexscan", "bitmapscan", "indexonlyscan")]
        if sql.sqlite:
            scan = f"SELECT count(*) FROM {sql.phases} NOT INDEXED WHERE deadline <= ?"
            indexed = (
                f"SELECT count(*) FROM {sql.phases} INDEXED BY {sql.index} WHERE deadline <= ?"
            )
        else:
            scan = indexed = f"SELECT count(*) FROM {sql.phases} WHERE deadline <= ?"

        def counting(query: str, settings: Sequence[str]) -> Case:
            def run() -> int:
                if sql.sqlite:
                    return int(sql.one(query, at))
                with sql.conn.transaction():
                    for setting in settings:
                        sql.run(setting)
                    return int(sql.one(query, at))

            return lambda: _timed(run, 0)

        cases: dict[str, Case] = {"idle": idle, "scan": counting(scan, off)}
        if not analyzed:
            cases["index"] = counting(indexed, ())
        samples = interleaved(cases, self.settings.rounds)
        after = " after `ANALYZE`" if analyzed else ""
        figures = [
            Figure.compare(
                f"deadlines.idle{'.analyzed' if analyzed else ''}.{self.db.backend}",
                SECTION,
                f"{self.name}{after}: `tracker.sweep()`, 0 due of {self.plan.phases:,} phases",
                samples["idle"],
                samples["scan"],
                unit="ms",
                factor=MS,
                baseline_label="`count(*)` of the phases past a deadline, without the index",
                target=None if analyzed else Target("≤ 5 ms", "value", 5.0),
                note=f"{sweeps} sweep{'s' if sweeps > 1 else ''} per batch; the claim's plan: "
                f"{self.plan_of('claim')}",
            )
        ]
        if analyzed:
            return figures
        profile_if_missed(
            self.settings,
            figures[0],
            lambda: [tracker.sweep(now=NOTHING_DUE) for _ in range(5)],
            5,
            f"{self.name} sweeps with nothing due",
        )
        plans = (
            f"scan: {sql.explain(scan, at, settings=off)}; "
            f"with the index: {sql.explain(indexed, at)}"
        )
        figures.append(
            Figure.compare(
                f"deadlines.index.{self.db.backend}",
                SECTION,
                f"{self.name}: the same `count(*)` on the deadline index",
                samples["index"],
                samples["scan"],
                unit="ms",
                factor=MS,
                baseline_label="the same without the index (a scan)",
                note=f"what the index alone costs; plans: {plans}",
            )
        )
        return figures

    # -- the first sweep of a Tracker: its dating pass ------------------------------------

    def dating(self) -> list[Figure]:
        sql, spare = self.sql, self.plan.spare
        assert spare is not None
        among, params = sql.among(list(spare.ids()))
        where = f"{among} AND phase_name = 'extraction'"

        def first(undate: bool) -> Case:
            def case() -> float:
                fresh = self.db.tracker(self.spec)
                try:
                    fresh.store.load("nobody")  # the store's first-use checks, untimed
                    if undate:
                        sql_text = f"UPDATE {sql.phases} SET deadline = NULL WHERE {where}"
                        if sql.run(sql_text, params) != spare.count:
                            raise RuntimeError("the spare phases were not all undated")
                    seconds = _timed(lambda: len(fresh.sweep(now=NOTHING_DUE)), 0)
                    left = sql.one(
                        f"SELECT count(*) FROM {sql.phases} WHERE {where} AND deadline IS NULL",
                        params,
                    )
                    if left:
                        raise RuntimeError(f"the first sweep left {left:,} phases undated")
                    return seconds
                finally:
                    fresh.close()

            return case

        def warm() -> float:
            return _timed(lambda: len(self.tracker.sweep(now=NOTHING_DUE)), 0)

        rounds = min(self.settings.rounds, 5)
        samples = interleaved({"first": first(False), "undated": first(True), "warm": warm}, rounds)
        fresh = self.db.tracker(self.spec)
        try:
            fresh.store.load("nobody")
            plan = self.plan_of("dating", fresh)
        finally:
            fresh.close()
        nothing = Figure.compare(
            f"deadlines.first.{self.db.backend}",
            SECTION,
            f"{self.name}: first `sweep()` of a new Tracker, 0 due, nothing to date",
            samples["first"],
            samples["warm"],
            unit="ms",
            factor=MS,
            baseline_label="`sweep()`, 0 due, on a Tracker that has swept",
            note=(
                "once per Tracker: the dating pass reads the phases in a status with a deadline "
                f"(all loaded ones are dated); {rounds} rounds; its plan: {plan}"
            ),
        )
        dating = Figure.compare(
            f"deadlines.dating.{self.db.backend}",
            SECTION,
            f"{self.name}: first `sweep()` of a new Tracker, {spare.count:,} phases to date",
            samples["undated"],
            samples["first"],
            unit="ms",
            factor=MS,
            baseline_label="the same, nothing to date",
        )
        extra = (dating.value - nothing.value) * MS / spare.count
        dating.note = f"{extra:,.0f} µs per phase dated (one `set_deadline` each); {rounds} rounds"
        return [nothing, dating]

    # -- 3. a commit with deadlines against the same without --------------------------------

    def commits(self) -> list[Figure]:
        backend = self.db.backend
        plain = load_spec("ingestion")
        pairs = self.settings.n(200 if backend == "sqlite" else 100, least=20)
        trackers = {
            "deadlines": self.db.tracker(self.spec),
            "plain": self.db.tracker(plain),
            "again": self.db.tracker(plain),
        }

        def prepare(tracker: Tracker) -> Callable[[], Callable[[int], None]]:
            def make() -> Callable[[int], None]:
                phase = tracker.create_job(f"commit-{next(_ids)}").phases["discovery"]
                phase.start()
                return pause_resume(phase)

            return make

        # Twice the rounds: the difference sought (5%) is well inside one round's spread.
        rounds = 2 * self.settings.rounds
        try:
            cases = {k: batch(prepare(t), pairs, 2) for k, t in trackers.items()}
            samples = interleaved(cases, rounds)
        finally:
            for tracker in trackers.values():
                tracker.close()
        return [
            Figure.compare(
                f"deadlines.commit.{backend}",
                SECTION,
                f"{self.name}: one commit with deadlines (`phase.pause()`/`resume()`)",
                samples["deadlines"],
                samples["plain"],
                unit="µs/commit",
                factor=US,
                baseline_label="the same phase set without deadline keys",
                target=Target("≤ 1.05x", "ratio", 1.05),
                note=(
                    "each commit moves the phase's deadline and its index entry; "
                    f"{pairs} pause/resume pairs per batch, a fresh job each, in the loaded "
                    f"tables; {rounds} rounds"
                ),
            ),
            Figure.compare(
                f"deadlines.commit_aa.{backend}",
                SECTION,
                f"{self.name}: the noise band (without deadlines, a second Tracker)",
                samples["again"],
                samples["plain"],
                unit="µs/commit",
                factor=US,
                baseline_label="the same phase set without deadline keys",
                note="an A/A comparison in the same rounds: how far apart two equal cases land",
            ),
        ]


def deadline_figures(settings: Settings, db: Database) -> list[Figure]:
    """Every deadline figure on ``db``: load, sweeps, idle sweeps, dating, commits."""
    spec = deadline_spec()
    plan = Plan.make(settings, db.backend)
    sql, loaded = load(db, spec, plan)
    tracker = db.tracker(spec)
    assert plan.pool is not None
    bench = Bench(settings, db, spec, plan, sql, tracker, loaded, plan.pool.ids())
    figures: list[Figure] = []
    try:
        started = time.perf_counter()
        tracker.sweep(now=NOTHING_DUE)  # the first sweep's dating pass: nothing to date
        first = (time.perf_counter() - started) * MS
        print(f"   {db.backend}: {loaded}; first sweep {first:,.0f} ms", file=sys.stderr)
        plain = [g for g in plan.groups if not g.analyzed]
        figures += [bench.sweeps(group) for group in plain]
        figures[-1].note += f"; {loaded}"
        figures += bench.idle()
        figures += bench.dating()
        figures += bench.commits()
        analyzed = [g for g in plan.groups if g.analyzed]
        if analyzed:  # SQLite: statistics the store never gathers, and the plans they give
            sql.run("ANALYZE")
            figures += [bench.sweeps(group) for group in analyzed]
            figures += bench.idle(analyzed=True)
    finally:
        tracker.close()
        sql.close()
    return figures
