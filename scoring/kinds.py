"""The follow-up kinds of spec/tiers.md v1.1 besides ``lingered``: when a viewer gets a
``thank_first_order``, ``after_sales`` or ``win_back`` task, and what state the data gives it.

Pure.  In event time, over the set of the viewer's events (so any order of arrival gives the
same tasks), with ``t1`` the viewer's first order (smallest (ts, event id) of a distinct
order id) and ``dormant`` the tier's threshold:

- ``thank_first_order`` (occasion 0: the first order): made at ``t1``;
- ``after_sales`` (occasion 0): made at ``t1 + after_sales_days`` once the shop clock reaches it,
  unless the viewer's second order is at or before that moment;
- ``win_back`` (occasion: the spell's start ``D``): each dormant spell of a viewer who had
  ordered by its start.  A spell starts at ``D = e + dormant`` after an event ``e`` of the viewer
  followed by none for more than ``dormant`` (or, for the last event, while the clock is at or
  past ``D``); it ends at their next event ("they came back").

A task is made only where the viewer's DM consent at that moment is not ``false``; it is then
``withdrawn`` if the consent turns ``false`` after it (a win_back task also once the spell ends),
else ``pending``.  The history room (imported customers) is never a show and makes no task: no
thank_first_order or after_sales for a first order in it, no win_back for a spell that starts
after an event in it.  The 7-day rule (spec/tiers.md: kinds are subject to the same 7-day rule as
``lingered``, made "the first time all of these hold"): a task whose moment lies within the 7 days
after a follow-up sent to the viewer (the sent log's latest) is held back, and made at the end of
those 7 days (``followups.wait_end``) if it still holds then: the consent not ``false``, a win_back's
spell not ended, no second order before an after_sales.  apply.lua checks the rule again where the
task is written (a send between the batch's read and its write: the batch is read again).

The viewer's state keeps what this needs in ``ViewerState.fol``: the two earliest orders, the
gaps of more than ``dormant`` between their events, and the kind tasks the data last gave.
"""

from __future__ import annotations

from typing import Any

from fanops.rules_settings import RuleSettings
from fanops.schema import HISTORY_ROOM, Event
from fanops.state import TaskRec, ViewerState, pack_task, tier_code
from scoring import rules
from scoring.followups import held, wait_end

Target = dict[tuple[str, int], tuple[str, str, int]]  # (kind, occasion) -> (state, room, made at)


def _parts(v: ViewerState) -> tuple[list[Any], list[Any], list[Any]]:
    fol = v.fol or [[], [], []]
    if v.orders and not fol[0]:
        # a state from before the kinds, with orders: its first order is unknown and past (no
        # thank_first_order or after_sales for a later one), at the latest when first seen
        return [[v.first_seen, "", "", HISTORY_ROOM]], fol[1], fol[2]
    return fol[0], fol[1], fol[2]


def _is_hist_at(v: ViewerState, t: int) -> bool:
    """Were the viewer's events at ``t`` (their latest) all in the history room?"""
    if any(last == t for _f, last in v.rooms.values()):
        return False
    return not (v.past_last == t)


def before(v: ViewerState | None, ev: Event, s: RuleSettings) -> tuple[int, int, int, list[Any]] | None:
    """What ``track`` needs of the viewer's state before ``ev`` is merged (whether their latest
    events were in the history room only when ``ev`` opens a gap after them)."""
    if v is None:
        return None
    la = v.last_active
    return v.first_seen, la, 1 if ev.ts - la > s.dormant_ms and _is_hist_at(v, la) else 0, _parts(v)[0]


def track(v: ViewerState, before: tuple[int, int, int, list[Any]] | None, ev: Event, s: RuleSettings) -> None:
    """Note ``ev`` (already merged into ``v``) in ``v.fol``: its order among the two earliest,
    and the gaps between the viewer's events that it opens or closes.  ``before``: the viewer's
    (first_seen, last_active, whether the events at last_active were all in the history room, its
    two earliest orders) before it (None: a new viewer)."""
    x = ev.ts
    if before is not None and ev.__struct_config__.tag != "order":
        fs, la = before[0], before[1]
        if la < x <= la + s.dormant_ms or (fs <= x <= la and not (v.fol and v.fol[1])):
            return  # most events: no order, no gap opened or closed
    _f, gaps, tasks = _parts(v)
    firsts = [list(f) for f in (before[3] if before is not None else [])]
    gaps = [list(g) for g in gaps]
    hist = 1 if ev.room == HISTORY_ROOM else 0
    if ev.__struct_config__.tag == "order":
        oid = ev.order_id  # type: ignore[union-attr]
        mine = [ev.ts, ev.id, oid, ev.room]
        same = next((f for f in firsts if f[2] == oid), None)
        if same is None:
            firsts.append(mine)
        elif (mine[0], mine[1]) < (same[0], same[1]):
            firsts[firsts.index(same)] = mine
        firsts = sorted(firsts, key=lambda f: (f[0], f[1]))[:2]
    dormant = s.dormant_ms
    if before is not None:
        fs, la, hist_la, _ = before
        if x > la:
            if x - la > dormant:
                gaps.append([la, x, hist_la])
        elif x < fs:
            if fs - x > dormant:
                gaps.append([x, fs, hist])
        else:
            out = []
            for g in gaps:
                if g[0] < x < g[1]:
                    if x - g[0] > dormant:
                        out.append([g[0], x, g[2]])
                    if g[1] - x > dormant:
                        out.append([x, g[1], hist])
                else:
                    if g[0] == x and not hist:
                        g = [g[0], g[1], 0]
                    out.append(g)
            gaps = out
        gaps.sort()
    _set(v, firsts, gaps, tasks)


def _set(v: ViewerState, firsts: list[Any], gaps: list[Any], tasks: list[Any]) -> None:
    v.fol = [firsts, gaps, tasks] if firsts or gaps or tasks else []  # most viewers: no byte more


def _consent(v: ViewerState, t: int) -> tuple[bool | None, int | None]:
    """The DM consent at ``t``, and the first moment after ``t`` at which it is ``false``."""
    c = None
    for x in v.consents:
        if x.ts > t:
            break
        c = x.dm
    cur, wd = c, None
    for x in v.consents:
        if x.ts > t:
            cur = x.dm
            if cur is False:
                wd = x.ts
                break
    return c, wd


def _add(out: Target, v: ViewerState, kind: str, occ: int, at: int, room: str, ended: bool) -> None:
    c, wd = _consent(v, at)
    if c is False:
        return
    out[(kind, occ)] = ("withdrawn" if ended or wd is not None else "pending", room, at)


def targets(v: ViewerState, clock: int, s: RuleSettings) -> Target:
    """Every kind task the viewer's data gives at shop clock ``clock``, switched-off kinds left out."""
    firsts, gaps, _tasks = _parts(v)
    out: Target = {}
    if not firsts:
        return out
    t1, _eid, _oid, room1 = firsts[0]
    if room1 != HISTORY_ROOM:
        if s.kind_on("thank_first_order"):
            _add(out, v, "thank_first_order", 0, t1, room1, False)
        due = t1 + s.after_sales_ms
        again = len(firsts) > 1 and firsts[1][0] <= due
        if s.kind_on("after_sales") and clock >= due and not again:
            _add(out, v, "after_sales", 0, due, room1, False)
    if s.kind_on("win_back"):
        # gaps are noted under the dormant_days of their time: a longer setting since drops the shorter
        # ones (a shorter one cannot bring back past gaps it never saw; the open spell is exact)
        spells = [(g[0], g[2], True) for g in gaps if g[1] - g[0] > s.dormant_ms]
        if clock - v.last_active >= s.dormant_ms:
            spells.append((v.last_active, 1 if _is_hist_at(v, v.last_active) else 0, False))
        for prev, hist, ended in spells:
            if not hist and t1 <= prev:
                _add(out, v, "win_back", prev + s.dormant_ms, prev + s.dormant_ms, _room_at(v, prev), ended)
    return out


def _room_at(v: ViewerState, t: int) -> str:
    """A room where the viewer has an event around ``t`` (the one whose span ends latest at or before)."""
    best, room = -1, ""
    for rm, (f, last) in v.rooms.items():
        if f <= t and last > best and last <= t:
            best, room = last, rm
    return room


def next_due(v: ViewerState, clock: int, s: RuleSettings) -> int | None:
    """When the clock next makes a kind task with no event of the viewer: the after_sales moment,
    if still ahead (a win_back comes with the tier's own change to dormant)."""
    firsts = _parts(v)[0]
    if not firsts or firsts[0][3] == HISTORY_ROOM:
        return None
    due = firsts[0][0] + s.after_sales_ms
    return due if due > clock else None


def next_change(v: ViewerState, clock: int, s: RuleSettings, tier: str | None) -> int | None:
    """The viewer's time-index entry: its next tier change (``rules.next_tier_change``: a win_back
    comes with the change to dormant) or its after_sales moment, whichever is first."""
    due = rules.next_tier_change(v, clock, s, tier)
    d2 = next_due(v, clock, s)
    return d2 if due is None or (d2 is not None and d2 < due) else due


def _held(v: ViewerState, k: str, st: str, at: int, clock: int, s: RuleSettings,
          sent_at: int) -> tuple[int, str | None]:
    """A new task (kind ``k``, state ``st`` at its moment ``at``) under a follow-up sent at ``sent_at``:
    its moment and state: as they are if the send holds nothing; (the 7 days' end, None) while they
    run; past them, (their end, the state it is made in then), or (0, None) if it no longer holds."""
    if not held(at, sent_at, clock, s):
        return at, st
    end = wait_end(sent_at, s)
    if clock < end:
        return end, None
    c, wd = _consent(v, end)
    firsts, gaps, _ = _parts(v)
    back = next((g[1] for g in gaps if g[0] + s.dormant_ms == at), None) if k == "win_back" else None
    if (c is False or back is not None and back <= end  # a win_back whose spell ended meanwhile
            or k == "after_sales" and len(firsts) > 1 and firsts[1][0] <= end):
        return 0, None
    return end, "withdrawn" if wd is not None or back is not None else st


def changes(old: ViewerState | None, new: ViewerState, clock: int, s: RuleSettings,
            tier: str, sent_at: int | None = None, hold: list[int] | None = None) -> list[tuple[Any, ...]]:
    """The viewer's kind tasks that the batch makes, moves or drops: ("new", kind, occasion, state,
    queue score, no task if one was sent since, packed task), ("move", kind, occasion, state) or
    ("del", kind, occasion); notes the new targets in ``new``.  Like lingered's, a move leaves a
    task an operator sent or skipped as it is (apply.lua), and so does a drop: the open tasks of a
    kind switched off go (switched on again, the data makes them again), its sent ones stay."""
    if not new.fol and not new.orders and (old is None or not old.fol):
        return []  # most viewers: never ordered, no kind task
    was = stored(old)
    got = targets(new, clock, s)
    out: list[tuple[Any, ...]] = []
    for (k, occ), (st, room, at) in list(got.items()):
        prev = was.get((k, occ))
        if prev is None:
            if sent_at is not None:  # the 7-day rule: held back, made at its end, or not at all
                at2, made = _held(new, k, st, at, clock, s, sent_at)
                if made is None:
                    del got[(k, occ)]  # not given: looked at again at the next touch (``hold``: when)
                    if at2 and hold is not None:
                        hold.append(at2)
                    continue
                if (at2, made) != (at, st):
                    st, at = made, at2
                    got[(k, occ)] = (st, room, at)
            prio = s.kind_priority(k)
            rec = TaskRec(st, clock, at, "", tier_code(tier), priority=prio, kind=k, room=room)
            out.append(("new", k, occ, st, rules.queue_score(prio, 0), clock - s.cooldown_ms, pack_task(rec)))
        elif prev != st:
            out.append(("move", k, occ, st))
    out += [("del", k, occ) for (k, occ) in was if (k, occ) not in got]
    keep(new, {key: st for key, (st, _r, _a) in got.items()})
    return out


def stale(v: ViewerState, clock: int, s: RuleSettings) -> bool:
    """Do the kind tasks the viewer's state last gave differ from those its data gives under ``s`` at
    ``clock``?  (Settings changed: a kind switched on or off, ``after_sales_days``, ``dormant_days``.)"""
    if not v.fol and not v.orders:
        return False
    return {key: st for key, (st, _r, _a) in targets(v, clock, s).items()} != stored(v)


def stored(v: ViewerState | None) -> dict[tuple[str, int], str]:
    """The kind tasks the viewer's state says the data gave last time: (kind, occasion) -> state."""
    if v is None:
        return {}
    return {(k, int(occ)): st for k, occ, st in _parts(v)[2]}


def keep(v: ViewerState, got: dict[tuple[str, int], str]) -> None:
    firsts, gaps, _ = _parts(v)
    _set(v, firsts, gaps, [[k, occ, st] for (k, occ), st in sorted(got.items())])
