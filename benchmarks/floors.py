"""Why a missed target is missed: the floor under each figure, read from its profile.

RESULTS.md shows the text kept here for a figure whose target was missed, followed by the
profile the run took of it. Each text names the costs its profile shows; keep it true when
the code or the figures change.
"""

from __future__ import annotations

__all__ = ["CHANGES", "FLOORS"]

FLOORS: dict[str, str] = {
    "trigger.detached": """
**What a detached trigger costs besides the baseline's work.** Where the compiled machine
holds one unguarded transition for the trigger and the source status (every transition of
the bundled phase sets), the destination is read from the machine's table
(`CompiledMachine.fixed`) and transitions' trigger path does not run. What remains is
planning and applying the change: the source check, a timezone-aware timestamp, the phase's
next immutable `PhaseRecord` (`build_phase_record`), the `Change`, and replacing the job's
tuple of phase records (`plan_transition`, then applying it). A guarded trigger drives the
machine on a stand-in (`runtime/machine.py:drive`) and costs a raw trigger more.
""",
    "trigger.tracker": """
**The floor is a detached trigger plus the commit the contract asks for.** Under the job's
lock a tracked trigger plans the change as a detached one does, builds the job's next
`JobRecord` with its aggregate (`JobState._record_after`: overall status and current phase
from a cache keyed by the phases' statuses, the weighted progress), builds the `PhaseChanged`
history event (`EventBase.build`), saves both with the memory store's compare-and-swap
(`MemoryStore.save`, which packs the event), applies the change and dispatches
notifications (none implemented here, so none is built). The record, the event and the save
are each required by the contract: the store keeps the record and the history event.
""",
    "scale.memory.tracker": """
**The floor is what the memory store keeps of each job.** A Tracker job is a detached job
(the `JobState`; its phases are the phase set's shared initial records) plus the store's
copy: the `JobRecord`, its `metadata` dict, and the history, which keeps the `JobCreated`
event packed as a tuple of its values (its id, its `phases` list and `metadata` dict
included). The lines below show each by allocation site.
""",
    "scale.rate.tracker": """
**The floor is the garbage collector, and the creation event.** cProfile below does not show
the cyclic garbage collector; the note gives the rate of the same 100,000 creations with the
collector off. Each Tracker job leaves container objects the collector tracks (the
`JobState`, the record, the packed history entry and its list), and the collector's full
passes walk every object made so far. Of the rest, the profile shows the `JobCreated` event
(`EventBase.build`), the initial record and the store's `create`. This figure is a rate, not
a ratio, so the machine's load moves it (see the load average above).
""",
    "durable.sqlite": """
**The floor is Python around the same database work.** Both sides run the same statements on
the same tables with the same pragmas, so the SQLite entries (`commit`, `execute`) are the
same on both sides. The store's extra is the Tracker's trigger and commit (the Tracker
figure: the planning, the record and the event), the connection's trip through
SQLAlchemy's pool for each commit (`store.py:_transaction`: its cumulative time beyond
sqlite3's `commit` and `BEGIN IMMEDIATE` is the pool's checkout and checkin, `pool/base.py`),
and the conversion of about thirty parameters per commit through the columns' own bind
processors (`statements.py:args`, `schema.py:process` for timestamps, JSON for the
metadata). The hand-written job keeps one connection and formats its values inline.
""",
    "durable.postgresql": """
**The floor is Python around the same round trips.** Both sides send the same statements in
one transaction (four round trips), so the psycopg entries are the same on both sides. The
store's extra is the Tracker's trigger and commit (the planning, the record and the event),
SQLAlchemy's pool checkout and checkin per commit and the bind conversions.
""",
    "delivery.commit.sqlite": """
**The floor is the log row, in the same commit.** Both stores run the same Python and write
the same job, phase and history rows (the store without the log makes the log row too, and
drops it). The store with the log runs one more INSERT per event in the transaction: the
event-log row (the event's JSON a second time, and AUTOINCREMENT's `sqlite_sequence` row). On
SQLite the row's id is its position, so there is no numbering statement and no position
index. The rest of the difference is sqlite3's `commit`, which appends the extra pages to the
WAL.
""",
    "delivery.commit.postgresql": """
**The floor is the log rows and `NOTIFY`.** Once the compare-and-swap matched, the store sends
the phase rows, the history row, the event-log rows and `NOTIFY` in one pipelined round trip
(psycopg's pipeline mode), so the log adds statements but no wait for the server. At commit
the server queues the notification under a database-wide lock that serialises notifying
transactions (PostgreSQL's `async.c`); with `notify=False` (the row below the figure) the log
costs only its rows.
""",
    "delivery.relay.sqlite": """
**The floor is the notifier's attempt around the same request.** The bare loop sends each
request on its kept-alive connection with nothing around it. The webhook notifier also makes
the body from the event (`model_dump`, JSON) and signs it, checks the host's addresses before
the attempt, arms the attempt's deadline for its watcher thread (one per notifier), streams
the answer (`client.stream`, `discard_body`) to read at most 64 KiB, and the relay around it
reads the log 100 events at a time (each parsed back into its event) and saves its cursor
after each batch and every 0.2 s. On this shared 2-core machine the receiver, the relay and
the commits compete for the same cores.
""",
    "delivery.idle.sqlite": """
**The floor is the relay renewing its lease and SQLite's polling.** An idle lane only waits:
it claims (renews) its lease, a write transaction, every `lease / 3` seconds, and otherwise
waits for events (woken by this process's commits, PostgreSQL's LISTEN, or `stop()`). On
SQLite, where another process's commit cannot wake it, the wait looks at the log's last
position every 0.25 s (a small query each).
""",
    "hosts.async.sqlite": """
**The floor is aiosqlite's thread hop per driver call.** aiosqlite runs sqlite3 on a thread
of its own and hands every call (cursor, execute, fetch, commit) to it and back: a fire by id
makes about 16 such calls (the load with its `BEGIN` and `ROLLBACK`, then the commit's
statements), each some 95 µs here against under 1 µs for sqlite3 called directly (the driver
rows below). The Tracker's own work is the same on both sides: the AsyncTracker runs it inside
`greenlet_spawn`, and its own cost (the memory-store row) is tens of µs.
""",
    "hosts.async.postgresql": """
**The floor is the event loop between the round trips.** The same statements go to the
server on both sides; with psycopg's async connection each wait for the server goes through
the event loop (a callback and a task switch) and SQLAlchemy's greenlet hand-off, about 27
per fire by id here, where the sync driver blocks on its socket.
""",
    "hosts.writers.postgresql": """
**The floor is the job's one row.** Every commit updates the job row (its version is the
compare-and-swap), so writers on one job take turns on that row's lock, however disjoint
their phases. A writer that loaded the job before another's commit loses its optimistic
attempt, reloads, and plans again inside `locked(job_id)` (`SELECT ... FOR UPDATE`), which
cannot lose but waits for the row; for two seconds after that the job counts as contended and
the writer's calls on it go locked at once, so the conflicts counted below are few. No report
fails.
""",
    "hooks.job_created_only": """
The difference is noise, not work: with only `job_created` implemented, `wants()` is False
for every other hook and no notification event is built (the note counts them: 0). The
profile below shows no hook machinery beyond the `wants()` checks.
""",
}
FLOORS["delivery.relay.postgresql"] = FLOORS["delivery.relay.sqlite"]
FLOORS["delivery.idle.postgresql"] = FLOORS["delivery.idle.sqlite"]

_SQLITE_CLAIM = """
**Not a floor: SQLite's planner does not use the deadline index for the claim.** The claim's
`SELECT` (`plugins/sql/store.py`, `SQLStore.claim_due`) joins the phases to the jobs for
`jobs.spec_name = ?` and asks for `phases.deadline <= ?`, earliest first. Without statistics
(the store never runs `ANALYZE` or `PRAGMA optimize`), SQLite prefers the equality on
`ix_<prefix>jobs_spec_updated` to the range on the deadline index: it reads every job of the
phase set, looks up each one's phases by primary key and sorts the due ones in a temporary
B-tree (the plan is in the note of the "0 due" row). So every claim, one per 100 due phases
plus a last one that comes back short, reads the whole store. The rows "after `ANALYZE`" show
the same sweeps once the planner has statistics: the plan starts from the deadline index and
the sweep costs about what the same fires by id cost.
"""
FLOORS["deadlines.idle.sqlite"] = _SQLITE_CLAIM
for _due in (100, 1_000, 10_000):
    FLOORS[f"deadlines.sweep.{_due}.sqlite"] = _SQLITE_CLAIM
_COMMIT_NOISE = """
**Read it beside the noise band.** The commit with deadlines does one thing more than the one
without: it computes the phase's next deadline and writes it, which moves its entry in the
partial deadline index. The A/A row below it (two Trackers of the phase set without
deadlines, in the same rounds) shows how far apart two equal cases land on this machine; a
miss within that band is not a cost the deadline column adds.
"""
FLOORS["deadlines.commit.sqlite"] = _COMMIT_NOISE
FLOORS["deadlines.commit.postgresql"] = _COMMIT_NOISE

#: Changes made to phasekit for these figures, with the figures before and after (measured
#: with this benchmark, interleaved, on the machine RESULTS.md describes).
CHANGES = """
- `statemachine/store/events.py`: `EventBase.build(**values)` builds an event from checked values
  without validation, filling defaults itself. pydantic's `model_construct` inspected the
  `event_id` default factory's signature (`inspect.signature`) on every call: 11 µs of a
  17 µs event. Event ids are `os.urandom(16).hex()` (the same 32 hex digits as
  `uuid4().hex`, without the UUID object). `statemachine/tracker.py` builds its four events
  with it. Tracker trigger (memory store): 6.1x raw transitions (57.9 µs) before, 3.8x
  (35.0 µs) after; Tracker jobs created: 19,000-22,600 jobs/s before, 34,500-36,100 after.
- `statemachine/tracker.py`: `create_job` builds the job straight from the record the phase
  set just made (`JobState.from_record`) instead of `PhaseSet.restore`, whose checks are for
  records read from a store: 5.5 µs before, 2.6 µs after, per job.
- `plugins/sql/store.py`: a commit that changes one phase row (every transition and progress
  report) runs it with `execute`, not `executemany`: psycopg's `executemany` enters pipeline
  mode, 7 waits for the server per commit instead of 5. PostgreSQL store commit: 1.52-1.7x
  hand-written psycopg before, 1.41x after.

Then, against the run before them (detached trigger 1.58x raw transitions, Tracker trigger
3.88x, detached job 880 B, Tracker job 2,526 B, 27,214 Tracker jobs/s, SQLite commit 2.14x);
the tables above give the figures after all of them:

- `statemachine/runtime/machine.py`, `statemachine/runtime/job.py`: where the compiled machine
  holds one unguarded transition for a trigger and a source status, its destination is read from the
  machine's transition table (`CompiledMachine.fixed`) instead of driving transitions on a
  stand-in; the machine has no state callbacks, so driving could only reach that
  destination (tests/test_compiler.py checks the two agree, on random phase sets too).
  Guarded triggers still drive the machine. Detached trigger: 1.6x before, 0.45x after.
- `statemachine/store/events.py`: `EventBase.build` fills the model's `__dict__` itself (what
  `model_construct` makes, checked by tests/test_events.py) and events of a class share
  their fields-set: `PhaseChanged` 7.0 µs before, 4.0 µs after; the fields-set was 728 B of
  every stored `JobCreated`.
- `statemachine/runtime/job.py`: a job holds the tuple of its phases'
  immutable records (shared with the record it committed, or with the phase set for a new
  job) and `job.phases` makes `PhaseState` views on access, instead of four ten-slot
  `PhaseState`s and a dict per job: a detached job about 250 B after, and five
  objects fewer per job for the garbage collector.
- `statemachine/store/records.py`: `build_phase_record`/`build_job_record` set the slots through
  their descriptors instead of a frozen dataclass's `object.__setattr__` per field: 1.9 µs
  before, 1.0 µs after, per record.
- `statemachine/runtime/aggregate.py`: the overall status and current phase are cached per
  combination of phase statuses (`Aggregator.outline`).
- `statemachine/store/memory.py`: `MemoryStore` keeps history events as their type tag and a tuple
  of their values, validated back into equal events by `history()`: about 1 KB less per job.
"""
