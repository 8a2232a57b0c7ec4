"""Why a missed target is missed: the floor under each figure, read from its profile.

RESULTS.md shows the text kept here for a figure whose target was missed, followed by the
profile the run took of it. Each text names the costs its profile shows; keep it true when
the code or the figures change.
"""

from __future__ import annotations

__all__ = ["CHANGES", "FLOORS"]

_DRIVE = (
    "transitions' own trigger path (`transitions/core.py`: `trigger`, `_trigger`, `_process`, "
    "`execute`, `_change_state`, `enter`/`exit`, `set_state`/`get_state`, and the `logging` "
    "`debug` calls it makes at every step)"
)

FLOORS: dict[str, str] = {
    "trigger.detached": f"""
**The floor is the transitions trigger itself, plus planning a change before making it.**
A detached trigger drives the same transitions machine as the baseline (DESIGN §4: one
compiled machine, `machine.events[name].trigger(...)` on a stand-in), so the baseline's whole
cost is inside the subject: {_DRIVE} is the larger part of the profile below. Driven alone on
an `Outcome` stand-in, the compiled machine costs what the raw machine costs (within a few
per cent: `send_event` and the `status` attribute change nothing measurable).

Around it, phasekit does what the commit protocol (DESIGN §5) requires even without a store:
it learns the destination on a stand-in instead of moving the phase, checks the source
status (`allowed_triggers`), takes a timezone-aware timestamp, builds the phase's next
immutable `PhaseRecord` (a frozen dataclass: one `object.__setattr__` per field) and a
`Change`, then applies it (`PhaseState._load`). Those entries (`plan_transition`,
`PhaseRecord.__init__`, `Change.__init__`, `_load`, `_fire`) add about half a raw trigger.
A 1.3x target leaves 0.3 of a raw trigger for all of that.

The only way under it is not to drive transitions where the transition table alone decides
(one unguarded transition for the trigger and source: every transition of the bundled phase
sets): DESIGN §5 allows "look the transition up and evaluate its guards", but DESIGN §4 says
phases are driven through the machine. That is a contract decision, left to the lead.
""",
    "trigger.tracker": f"""
**The floor is a detached trigger plus the commit the contract asks for.** A tracked trigger
runs everything the detached one does ({_DRIVE}, then planning), and then commits
(DESIGN §5): under the job's lock it builds the job's next immutable `JobRecord` with its
aggregate (`JobState._record_after`: overall status, current phase, weighted progress), the
`PhaseChanged` history event (a frozen pydantic model, built without validation by
`EventBase.build`; pydantic's `model_construct` is still among the largest entries), saves
both with the memory store's compare-and-swap under its lock (`MemoryStore.save`), applies
the change, and dispatches notifications (none implemented here, so none is built). The
transitions trigger (`compiler.py:drive`) is about two fifths of the profile; the record,
the event and the save are each required by the contract (the store keeps the record and the
history event).

Before the first change listed under "Changes made to phasekit" (events built with
`model_construct`, which made pydantic inspect the `event_id` factory's signature on every
call), this figure was 6.1x.
""",
    "scale.memory.tracker": """
**The floor is what the memory store keeps of each job.** A Tracker job is a detached job
(the `JobState`, its `phases` dict and four `PhaseState`s: `job.py` lines below, about the
detached figure) plus the store's copy: the `JobRecord` (the four initial `PhaseRecord`s
are shared by every new job) and the history, which holds the `JobCreated` event. That
event is a pydantic model: its instance `__dict__`, its fields-set and the object itself
(the `pydantic/main.py` lines), its `phases` list and `metadata` dict (`tracker.py` lines)
and its id come to about half of the job. The store must keep the history (DESIGN §6:
`history(job_id)` returns the creation event). A memory store that kept its history as
tuples and rebuilt the events in `history()` would save most of the event's kilobyte; it
would return equal events instead of the very objects the plugins saw, so it is proposed,
not made.
""",
    "scale.rate.tracker": """
**The floor is the garbage collector, and the creation event.** cProfile below does not show
the cyclic garbage collector; the note gives the rate of the same 100,000 creations with the
collector off. Each Tracker job adds a dozen container objects the collector tracks (the
`JobState`, four `PhaseState`s, the `phases` dict, the record, the `JobCreated` event with
its dict, fields-set and `phases` list, the history list), and the collector's full passes
walk every object made so far: at 100,000 jobs they take a third of the time or more. This
figure is a rate, not a ratio, so the machine's load moves it (see the load average above):
on a quieter run of the same code it was about 36,000 jobs/s, and 61,000 with the collector
off. Of the rest, the profile shows the `JobCreated` event (pydantic's
`model_construct`), the four `PhaseState`s (`PhaseState.__init__`/`_load`), the initial
record and the store's `create`. Detached jobs, which have no record and no event, meet the
target.
""",
    "durable.sqlite": f"""
**The floor is Python around the same database work.** Both sides run the same statements on
the same tables with the same pragmas, so the SQLite entries (`commit`, `execute`) are the
same on both sides. The store's extra is the Tracker's trigger and commit (the Tracker
figure: {_DRIVE}, the planning, the record and the event), the connection's trip through
SQLAlchemy's pool for each commit (`store.py:_transaction`: its cumulative time beyond
sqlite3's `commit` and `BEGIN IMMEDIATE` is the pool's checkout and checkin, `pool/base.py`),
and the conversion of about thirty parameters per commit through the columns' own bind
processors (`statements.py:args`, `schema.py:process` for timestamps, JSON for the
metadata). The hand-written job keeps one connection and formats its values inline.
""",
    "durable.postgresql": f"""
**The floor is Python around the same round trips.** Both sides send the same statements in
one transaction (four round trips), so the psycopg entries are the same on both sides. The
store's extra is the Tracker's trigger and commit ({_DRIVE}, the planning, the record and the
event), SQLAlchemy's pool checkout and checkin per commit and the bind conversions.
""",
    "hooks.job_created_only": """
The difference is noise, not work: with only `job_created` implemented, `wants()` is False
for every other hook and no notification event is built (the note counts them: 0). The
profile below shows no hook machinery beyond the `wants()` checks.
""",
}

#: Changes made to phasekit for these figures, with the figures before and after (measured
#: with this benchmark, interleaved, on the machine RESULTS.md describes).
CHANGES = """
- `statemachine/events.py`: `EventBase.build(**values)` builds an event from checked values
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
"""
