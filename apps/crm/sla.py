"""The SLA engine: due times and elapsed business time for a ticket, with pauses (waiting on the customer).

Pure functions over a ``BusinessCalendar`` and an explicit ``now`` (the controllable clock): the ticket
hook, the refresh job and the tests all call the same code.

Pauses are kept on the ticket as ``paused_since`` (the open pause) plus ``paused_minutes`` (the working minutes of
closed pauses), so a due time is ``opened_at + target + paused`` in working minutes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .calendar import BusinessCalendar

ON_TRACK, AT_RISK, BREACHED, PAUSED, MET = "on_track", "at_risk", "breached", "paused", "met"
PAUSING_STATUSES = frozenset({"waiting_on_customer"})
DONE_STATUSES = frozenset({"resolved", "closed"})


@dataclass(frozen=True)
class Targets:
    first_response: int  # business minutes
    resolution: int


@dataclass(frozen=True)
class TargetState:
    name: str
    due: dt.datetime | None
    elapsed: int  # business minutes counted against the target
    target: int
    state: str


@dataclass(frozen=True)
class TicketClock:
    opened_at: dt.datetime
    paused_minutes: int = 0
    paused_since: dt.datetime | None = None
    first_responded_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None


def elapsed(cal: BusinessCalendar, clock: TicketClock, until: dt.datetime) -> int:
    """Working minutes from opening to ``until``, not counting pauses."""
    end = until
    if clock.paused_since is not None and clock.paused_since < end:
        end = clock.paused_since  # the clock stopped when the pause began
    return max(0, cal.minutes_between(clock.opened_at, end) - clock.paused_minutes)


def due_time(cal: BusinessCalendar, clock: TicketClock, target: int) -> dt.datetime:
    return cal.add_minutes(clock.opened_at, target + clock.paused_minutes)


def target_state(cal: BusinessCalendar, clock: TicketClock, name: str, target: int, done_at: dt.datetime | None,
                 now: dt.datetime, *, at_risk_ratio: float = 0.8) -> TargetState:
    used = elapsed(cal, clock, done_at or now)
    due = None if clock.paused_since is not None and done_at is None else due_time(cal, clock, target)
    if done_at is not None:
        state = MET if used <= target else BREACHED
    elif used >= target:
        state = BREACHED
    elif clock.paused_since is not None:
        state = PAUSED
    elif used >= target * at_risk_ratio:
        state = AT_RISK
    else:
        state = ON_TRACK
    return TargetState(name, due, used, target, state)


def ticket_states(cal: BusinessCalendar, clock: TicketClock, targets: Targets, now: dt.datetime, *, at_risk_ratio: float = 0.8) -> list[TargetState]:
    return [target_state(cal, clock, "first_response", targets.first_response, clock.first_responded_at or clock.resolved_at, now, at_risk_ratio=at_risk_ratio),
            target_state(cal, clock, "resolution", targets.resolution, clock.resolved_at, now, at_risk_ratio=at_risk_ratio)]


WORST = (BREACHED, AT_RISK, ON_TRACK, PAUSED, MET)


def overall(states: list[TargetState]) -> str:
    """The ticket's one SLA state: the worst of its targets (a breach stays visible after resolution)."""
    found = {s.state for s in states}
    for state in WORST:
        if state in found:
            return state
    return ON_TRACK


def pause_transition(cal: BusinessCalendar, clock: TicketClock, old_status: str | None, new_status: str, now: dt.datetime) -> TicketClock:
    """The clock after a status change: entering a pausing status opens a pause, leaving it adds the paused minutes."""
    was, becomes = old_status in PAUSING_STATUSES, new_status in PAUSING_STATUSES
    if becomes and not was:
        return TicketClock(clock.opened_at, clock.paused_minutes, now, clock.first_responded_at, clock.resolved_at)
    if was and not becomes and clock.paused_since is not None:
        extra = cal.minutes_between(clock.paused_since, now)
        return TicketClock(clock.opened_at, clock.paused_minutes + extra, None, clock.first_responded_at, clock.resolved_at)
    return clock
