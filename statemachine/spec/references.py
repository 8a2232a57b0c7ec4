"""Cross-reference rules of a phase set that a schema cannot express."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import TypeAlias

from .model import MAX_SOURCE_PAIRS, NAME_PATTERN, RESERVED_PHASE_NAMES, RESERVED_TRIGGER_NAMES
from .rules import WILDCARD

__all__ = ["Finding", "check_references"]

#: (code, message, path, hint): one broken rule, at the path of the offending node.
Finding: TypeAlias = tuple[str, str, str, str | None]

_NAME = re.compile(NAME_PATTERN)


def check_references(data: Mapping[str, object]) -> list[Finding]:
    """Every broken cross-reference rule in raw phase-set data.

    The data may be partly invalid: parts that are malformed are skipped, since the schema
    reports them, so that a document with both kinds of mistakes gets both reported at once.
    """
    statuses = _mapping(data.get("statuses"))
    declared = [name for name in statuses or {} if isinstance(name, str)]
    findings: list[Finding] = []
    if statuses:
        findings += _status_flags(statuses)
    findings += _transitions(_items(data.get("transitions")), declared if statuses else None)
    findings += _source_pairs(_items(data.get("transitions")), len(declared))
    if statuses:
        findings += _deadlines(statuses, _items(data.get("transitions")))
    findings += _phases(_items(data.get("phases")))
    aggregate = _mapping(data.get("aggregate")) or {}
    findings += _status_rules(_items(aggregate.get("status")), declared if statuses else None)
    if statuses:
        for i, group in enumerate(_items(aggregate.get("current_phase"))):
            for j, name in enumerate(_items(group)):
                path = f"aggregate.current_phase[{i}][{j}]"
                findings += _unknown(name, declared, path, "the current-phase group names")
    return findings


def _mapping(value: object) -> Mapping[object, object] | None:
    return value if isinstance(value, Mapping) else None


def _items(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _flag(flags: Mapping[object, object], name: str) -> bool:
    return flags.get(name) is True


def _unknown(name: object, declared: list[str], path: str, what: str) -> Iterator[Finding]:
    """An ``unknown-status`` finding when ``name`` is a well-formed name that is not declared."""
    if not isinstance(name, str) or not _NAME.match(name) or name in declared:
        return
    close = difflib.get_close_matches(name, declared, n=1)
    message = f"{what} {name!r}, which is not a declared status; declared: {', '.join(declared)}"
    yield "unknown-status", message, path, close[0] if close else None


def _status_flags(statuses: Mapping[object, object]) -> Iterator[Finding]:
    initial: list[str] = []
    for name, flags in statuses.items():
        if not isinstance(name, str) or (flags := _mapping(flags)) is None:
            continue
        path = f"statuses.{name}"
        if _flag(flags, "initial"):
            initial.append(name)
        if _flag(flags, "success") and not _flag(flags, "terminal"):
            message = (
                f"status {name!r} has 'success: true' but not 'terminal: true'; "
                "a success status ends the phase's work, so mark it terminal"
            )
            yield "success-not-terminal", message, f"{path}.success", None
        if _flag(flags, "active") and _flag(flags, "terminal"):
            message = (
                f"status {name!r} is both active and terminal; a phase in an active status "
                "is working and one in a terminal status has stopped: keep one of the flags"
            )
            yield "active-and-terminal", message, path, None
    if not initial:
        message = (
            "no status has 'initial: true'; mark the one status every phase starts in, "
            f"one of: {', '.join(str(name) for name in statuses)}"
        )
        yield "no-initial-status", message, "statuses", None
    elif len(initial) > 1:
        message = (
            f"several statuses are marked initial: {', '.join(initial)}; "
            "exactly one may be, the status every phase starts in"
        )
        yield "several-initial-statuses", message, f"statuses.{initial[1]}.initial", None


def _deadlines(statuses: Mapping[object, object], transitions: list[object]) -> Iterator[Finding]:
    """``on_timeout`` goes with ``timeout``/``heartbeat``, and is a trigger of that status."""
    triggers: dict[str, set[str]] = {}  # trigger -> the statuses it may fire from ("*": any)
    for transition in transitions:
        if (transition := _mapping(transition)) is None:
            continue
        trigger = transition.get("trigger")
        if isinstance(trigger, str):
            triggers.setdefault(trigger, set()).update(
                s for s in _sources(transition.get("source")) if isinstance(s, str)
            )
    for name, flags in statuses.items():
        if not isinstance(name, str) or (flags := _mapping(flags)) is None:
            continue
        path = f"statuses.{name}"
        timed = [key for key in ("timeout", "heartbeat") if flags.get(key) is not None]
        on_timeout = flags.get("on_timeout")
        if timed and on_timeout is None:
            message = (
                f"status {name!r} has a {' and a '.join(timed)} but no 'on_timeout': name the "
                "trigger to fire when the deadline passes"
            )
            yield "missing-on-timeout", message, f"{path}.{timed[0]}", None
        elif on_timeout is not None and not timed:
            message = (
                f"status {name!r} has 'on_timeout' but no deadline; add 'timeout' (from entering "
                "the status) or 'heartbeat' (since the last change or progress report)"
            )
            yield "on-timeout-without-deadline", message, f"{path}.on_timeout", None
        if not isinstance(on_timeout, str) or not _NAME.match(on_timeout):
            continue
        sources = triggers.get(on_timeout)
        if sources is not None and (name in sources or WILDCARD in sources):
            continue
        allowed = sorted(t for t, src in triggers.items() if name in src or WILDCARD in src)
        close = difflib.get_close_matches(on_timeout, allowed, n=1)
        if sources is None:
            why = "no transition has that trigger"
        else:
            why = f"its transitions start from {', '.join(sorted(sources))}"
        message = (
            f"on_timeout {on_timeout!r} of status {name!r} cannot fire from {name!r} ({why}); "
            f"triggers allowed from {name!r}: {', '.join(allowed) or 'none'}"
        )
        yield (
            "timeout-trigger-not-allowed",
            message,
            f"{path}.on_timeout",
            (close[0] if close else None),
        )


def _sources(source: object) -> list[object]:
    return list(source) if isinstance(source, list) else [source]


def _guarded(transition: Mapping[object, object]) -> bool:
    return bool(transition.get("conditions")) or bool(transition.get("unless"))


def _transitions(transitions: list[object], declared: list[str] | None) -> Iterator[Finding]:
    # (trigger, source) -> index of the earlier transition without guards that always takes it
    taken: dict[tuple[str, str], int] = {}
    for i, item in enumerate(transitions):
        transition = _mapping(item)
        if transition is None:
            continue
        path = f"transitions[{i}]"
        trigger = transition.get("trigger")
        named = f"transition {trigger!r}" if isinstance(trigger, str) else "a transition"
        if isinstance(trigger, str) and trigger in RESERVED_TRIGGER_NAMES:
            message = (
                f"trigger {trigger!r} clashes with the PhaseState attribute {trigger!r}: "
                "every trigger becomes a method of the phase; pick another name"
            )
            yield "reserved-name", message, f"{path}.trigger", None
        source = transition.get("source")
        if declared is not None:
            dest = transition.get("dest")
            yield from _unknown(dest, declared, f"{path}.dest", f"{named} goes to")
            for j, name in enumerate(_sources(source)):
                where = f"{path}.source[{j}]" if isinstance(source, list) else f"{path}.source"
                yield from _unknown(name, declared, where, f"{named} starts from")
        yield from _wildcard_in_list(path, named, source)
        yield from _shadowed(i, transition, declared or [], taken)


def _source_pairs(transitions: list[object], statuses: int) -> Iterator[Finding]:
    """A ``too-many-sources`` finding when the expanded sources pass ``MAX_SOURCE_PAIRS``."""
    pairs = 0
    for item in transitions:
        source = (_mapping(item) or {}).get("source")
        pairs += statuses if source == WILDCARD else len(_sources(source))
    if pairs > MAX_SOURCE_PAIRS:
        message = (
            f"the transitions start from {pairs:,} (trigger, status) pairs once source lists "
            f'and "*" are expanded; at most {MAX_SOURCE_PAIRS:,} are compiled: declare fewer '
            "transitions or narrower sources"
        )
        yield "too-many-sources", message, "transitions", None


def _wildcard_in_list(path: str, named: str, source: object) -> Iterator[Finding]:
    """A ``wildcard-in-list`` finding: ``"*"`` means every status and stands alone."""
    if not isinstance(source, list) or len(source) < 2:
        return
    for j, name in enumerate(source):
        if name == WILDCARD:
            message = (
                f'{named} lists "{WILDCARD}" among its sources; "{WILDCARD}" already means every '
                f'status, so write source: "{WILDCARD}" alone, or list the statuses'
            )
            yield "wildcard-in-list", message, f"{path}.source[{j}]", None


def _shadowed(
    index: int,
    transition: Mapping[object, object],
    declared: list[str],
    taken: dict[tuple[str, str], int],
) -> Iterator[Finding]:
    """A ``duplicate-transition`` finding when earlier unguarded transitions always win."""
    trigger = transition.get("trigger")
    if not isinstance(trigger, str):
        return
    names = [s for s in _sources(transition.get("source")) if isinstance(s, str)]
    everywhere = WILDCARD in names
    mine = declared if everywhere else [s for s in names if s != WILDCARD]
    firing = [s for s in mine if (trigger, s) not in taken and (trigger, WILDCARD) not in taken]
    dead = [s for s in mine if s not in firing]
    # A "*" transition that earlier ones cover only in part still fires from the others.
    if dead and (not everywhere or not firing):
        earlier = sorted({taken.get((trigger, s), taken.get((trigger, WILDCARD), 0)) for s in dead})
        message = (
            f"transition {trigger!r} from {', '.join(dead)} can never fire: "
            f"{', '.join(f'transitions[{e}]' for e in earlier)} already takes {trigger!r} "
            "from there without conditions; remove one or give the earlier one conditions"
        )
        yield "duplicate-transition", message, f"transitions[{index}]", None
    if not _guarded(transition):
        for source in [WILDCARD] if everywhere else mine:
            taken.setdefault((trigger, source), index)


def _phases(phases: list[object]) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for i, item in enumerate(phases):
        name = (_mapping(item) or {}).get("name")
        if not isinstance(name, str):
            continue
        path = f"phases[{i}].name"
        if name in first:
            message = (
                f"phase {name!r} is declared twice, first at phases[{first[name]}]; "
                "phase names must be unique"
            )
            yield "duplicate-phase", message, path, None
        else:
            first[name] = i
        if name in RESERVED_PHASE_NAMES:
            message = (
                f"phase name {name!r} clashes with the JobState attribute {name!r}; "
                "pick another name"
            )
            yield "reserved-name", message, path, None


def _status_rules(rules: list[object], declared: list[str] | None) -> Iterator[Finding]:
    for i, item in enumerate(rules):
        rule = _mapping(item)
        if rule is None:
            continue
        path = f"aggregate.status[{i}]"
        if rule.get("otherwise") is not None and i < len(rules) - 1:
            message = (
                f"an 'otherwise' rule always fires, so the {len(rules) - 1 - i} rule(s) after "
                "it never do; move it to the end"
            )
            yield "otherwise-not-last", message, path, None
        for key in ("any", "all"):
            if declared is None:
                break
            for j, name in enumerate(_items(rule.get(key))):
                what = f"the rule's {key!r} names"
                yield from _unknown(name, declared, f"{path}.{key}[{j}]", what)
    last = _mapping(rules[-1]) if rules else None
    if last is not None and last.get("otherwise") is None:
        message = (
            "the last rule must be {otherwise: STATUS}, so that every combination of "
            "phase statuses gives an overall status"
        )
        yield "missing-otherwise", message, f"aggregate.status[{len(rules) - 1}]", None
