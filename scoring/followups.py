"""When a (room, viewer) gets a 1-on-1 DM follow-up task, and what state the data gives it.

Pure.  spec/tiers.md, in event time: the task is made at ``t0``, the first value
of the shop clock (the ts of one of the shop's events) at which the viewer's
dwell in the room is at least the threshold, they have no order in the room at
or before it, and their DM consent is not ``false``.  It is ``converted`` if
they then order in the room before their consent turns ``false``, ``withdrawn``
if their consent turns ``false`` first, else ``pending``.

``t0`` can only be the first clock value at or after one of: the moment the
dwell reaches the threshold (``first + dwell``), the viewer's first event in
the room after that moment, or one of the viewer's consent events.  The
room-viewer record keeps the viewer's events up to ``first + dwell`` (``early``)
and the first one after (``after``): enough to tell the dwell at any of those
moments exactly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from fanops.rules_settings import RuleSettings
from fanops.state import RoomViewer, ViewerState

EARLY_CAP = 48


def dwell_reached(rv: RoomViewer, t: int, s: RuleSettings) -> bool:
    """Is the viewer's dwell in the room at clock ``t`` at least the threshold?"""
    horizon = rv.first + s.dwell_ms
    if t < horizon:
        return False
    if rv.after >= 0 and t >= rv.after:
        return True  # an event past the horizon: dwell >= that event - first > threshold
    last = last_other = last_leave = -1
    for ts, leave in rv.early:  # every event up to t is in ``early``
        if ts > t:
            break
        last = ts
        if leave:
            last_leave = ts
        else:
            last_other = ts
    present = last_other >= 0 and last_leave <= last_other and t - last <= s.present_ms
    return (t if present else last) - rv.first >= s.dwell_ms


def wait_end(sent_at: int, s: RuleSettings) -> int:
    """The first shop-clock moment past the cooldown (7 days) of a follow-up sent at ``sent_at``."""
    return sent_at + s.cooldown_ms + 1


def start(rv: RoomViewer, s: RuleSettings) -> int:
    """The first moment the pair's task may be made at: its dwell's threshold (``first + dwell``),
    or past the cooldown (7 days) of a follow-up sent to the viewer before it was made (``held_by``)."""
    h = rv.first + s.dwell_ms
    return max(h, wait_end(rv.held_by, s)) if rv.held_by >= 0 else h


def held(t0: int, sent_at: int, clock: int, s: RuleSettings) -> bool:
    """Is a task whose rules first hold at ``t0`` held back by a follow-up sent at ``sent_at`` (shop
    clock)?  When ``t0`` is within its cooldown and came after it; or, wherever ``t0`` is (a late
    event's), while the clock is still within it (apply.lua would refuse the task)."""
    end = sent_at + s.cooldown_ms
    return t0 <= end and (t0 >= sent_at or clock <= end)


def consent_at(v: ViewerState, t: int) -> bool | None:
    """The viewer's DM consent at ``t``: their consent event with the largest (ts, id) up to ``t``."""
    c = None
    for x in v.consents:
        if x.ts > t:
            break
        c = x.dm
    return c


def _next_clock(t: int, clock_values: Sequence[int], rv: RoomViewer, v: ViewerState) -> int | None:
    """The first known shop-clock value at or after ``t``: in ``clock_values`` or one the pair's
    records hold (the viewer's events and consents, and the clock value its task was made at,
    found before, maybe in a batch long gone)."""
    i = bisect_left(clock_values, t)
    best = clock_values[i] if i < len(clock_values) else None
    after = rv.after
    if after >= t and (best is None or after < best):
        best = after
    early = rv.early
    if early and early[-1][0] >= t:  # sorted: only its tail can be at or after t
        for ts, _ in reversed(early):
            if ts < t:
                break
            if best is None or ts < best:
                best = ts
    for c in v.consents:
        if c.ts >= t and (best is None or c.ts < best):
            best = c.ts
    task_at = rv.task_at
    if task_at >= t and (best is None or task_at < best):
        best = task_at
    return best


def next_known(rv: RoomViewer, v: ViewerState, t: int, clock_values: Sequence[int]) -> int | None:
    """The first shop-clock value at or after ``t`` that a batch knows (``clock_values`` and the
    pair's own), as ``task_time`` finds it."""
    return _next_clock(t, clock_values, rv, v)


def task_time(rv: RoomViewer, v: ViewerState, clock: int, s: RuleSettings,
              clock_values: Sequence[int]) -> int | None:
    """``t0``, the clock value at which the task is made, or None if it is not (yet).

    ``clock_values``: sorted shop-clock values known besides the viewer's own events
    (the batch's event times and the clock before it).
    """
    horizon = start(rv, s)
    if clock < horizon:
        return None  # the dwell reaches the threshold at first + dwell at the earliest: not by this clock
    # every candidate before the horizon fails the dwell (or, with an order at or before it, ends the
    # search: checked here too), and the first one at or after it is the first known value there:
    # the usual answer, found without listing and sorting them all
    first = _next_clock(horizon, clock_values, rv, v)
    if first is not None and first <= clock and not 0 <= rv.first_order <= first:
        if consent_at(v, first) is not False and dwell_reached(rv, first, s):
            return first
    triggers = [horizon] + ([rv.after] if rv.after >= 0 else []) + [c.ts for c in v.consents if c.dm]
    cands = sorted({t for t in (_next_clock(x, clock_values, rv, v) for x in triggers)
                    if t is not None and horizon <= t <= clock})
    for t in cands:
        if 0 <= rv.first_order <= t:
            return None  # they bought at or before it: no task, ever
        if consent_at(v, t) is False or not dwell_reached(rv, t, s):
            continue
        return t
    return None


def followup_target(rv: RoomViewer, v: ViewerState, clock: int, s: RuleSettings,
                    clock_values: Sequence[int]) -> tuple[str, int]:
    """The state the events give the (room, viewer) task: "" (none), pending, converted or
    withdrawn; and the clock value it was made at (-1 if none).

    Operator states (claimed, sent, skipped) are the queue's: the scorer moves only
    tasks that are not sent or skipped.
    """
    t0 = task_time(rv, v, clock, s, clock_values)
    if t0 is None:
        return "", -1
    conv = rv.first_order if rv.first_order > t0 else None
    wd = next((c.ts for c in v.consents if c.ts > t0 and consent_at(v, c.ts) is False), None) if v.consents else None
    if conv is not None and (wd is None or conv <= wd):
        return "converted", t0
    if wd is not None:
        return "withdrawn", t0
    return "pending", t0


def lurk_time(rv: RoomViewer, clock: int, s: RuleSettings) -> int | None:
    """When to look again at a (room, viewer) with no task and no event of their own:
    the moment their dwell reaches the threshold, or the end of the hold a sent follow-up put on
    its task, if that is still ahead of the clock."""
    horizon = rv.first + s.dwell_ms
    if rv.first_order >= 0:
        return None
    end = start(rv, s)
    if end > horizon:  # held by a sent follow-up
        return end if end > clock else None
    if horizon > clock and rv.after < 0:
        return horizon
    return None


def late_moment(rv: RoomViewer, v: ViewerState, s: RuleSettings) -> int | None:
    """``first + dwell`` if a shop-clock value ``t`` that arrives late, in [first + dwell, the
    first clock value known at or after it), could still change the state of the pair's task;
    else None.  Call it for a pair whose task the scorer has decided (not one in the lurk index).

    Such a ``t`` is the only clock value a late event can add that ``task_time`` would use:
    every other candidate is one of the viewer's own events.  At ``t`` the viewer has made no
    event past the horizon (``after`` is a known value), and their consent is that at the horizon
    (their consents are known values too).  So:

    - they bought at or before the horizon: no task at any ``t``;
    - with a task (made at ``task_at``), a task made at ``t`` instead has the same state unless
      a consent event lies in [horizon, task_at] (no order is at or before ``task_at``);
    - with none, a task at ``t`` needs them present at ``t`` (their last event up to the
      horizon is not a leave and is within the presence window of it) and their consent at the
      horizon not ``false``.

    Few pairs pass: the ones whose first clock value after the horizon came after their
    presence lapsed, and the ones with a consent change around their task's moment.  (A task held
    by a sent follow-up: the same from the hold's end on, ``start``.)"""
    h = start(rv, s)
    if 0 <= rv.first_order <= h:
        return None
    if rv.task:
        if rv.task_at > h and any(h <= c.ts <= rv.task_at for c in v.consents):
            return h
        return None
    # present at some t in [h, after) means present at h (presence only lapses as t grows, and
    # every event up to t is one up to h); dwell_reached(h) is that, or an event of theirs at h
    # (then h is a known clock value: no late value can come before it, an entry that is never read)
    if not dwell_reached(rv, h, s) or consent_at(v, h) is False:
        return None
    return h
