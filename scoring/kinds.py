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
after a follow-up sent to the viewer (the sent log's latest) is held back (noted ``HELD`` with the
wait's end, the viewer's time-index entry) and made at the end of the wait unless the DM consent is
false then (noted ``NOT_MADE``); its state then follows the data as any task's does.  apply.lua
checks the rule again where the task is written (a send between the batch's read and its write:
the batch is read again).

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
    comes with the change to dormant), its after_sales moment, or the end of a wait of the 7-day
    rule that holds a kind task back (its ``HELD`` note), whichever is first."""
    times = [x for x in (rules.next_tier_change(v, clock, s, tier), next_due(v, clock, s), *_held_ends(v))
             if x is not None]
    return min(times) if times else None


def _held_ends(v: ViewerState) -> list[int]:
    return [int(st[len(HELD):]) for _k, _occ, st in _parts(v)[2] if st.startswith(HELD)] if v.fol else []


HELD = "held:"  # a kind task the 7-day rule holds back, noted with the end of the wait: "held:<ms>"
NOT_MADE = "none"  # one that no longer held when the wait ended: never made, whatever comes later


def _decided(st: str) -> bool:
    return st == NOT_MADE or st.startswith(HELD)


def _after_wait(v: ViewerState, st: str, end: int, clock: int) -> str:
    """A held task's state at the end of its wait ``end``: still held (``HELD``) before it, else
    ``NOT_MADE`` if the DM consent is false then, else the state the data gives it (``st``)."""
    if clock < end:
        return f"{HELD}{end}"
    return NOT_MADE if _consent(v, end)[0] is False else st


def changes(old: ViewerState | None, new: ViewerState, clock: int, s: RuleSettings,
            tier: str, sent_at: int | None = None) -> list[tuple[Any, ...]]:
    """The viewer's kind tasks that the batch makes, moves or drops: ("new", kind, occasion, state,
    queue score, no task if one was sent since, packed task), ("move", kind, occasion, state) or
    ("del", kind, occasion); notes the new targets in ``new``.  Like lingered's, a move leaves a
    task an operator sent or skipped as it is (apply.lua), and so does a drop: the open tasks of a
    kind switched off go (switched on again, the data makes them again), its sent ones stay.

    The 7-day rule: a new task whose moment a follow-up sent at ``sent_at`` (the viewer's latest)
    holds back is noted ``HELD`` with the end of that wait (``next_change`` makes it the viewer's
    time-index entry), and made then, at that moment, unless the DM consent is false then
    (``NOT_MADE``). A send that holds the noted end in turn pushes it to that send's wait's end (made
    "the first time all of these hold"). Once decided, the note, not the latest send, stands: a later
    send does not bring back a task the rule decided against."""
    if not new.fol and not new.orders and (old is None or not old.fol):
        return []  # most viewers: never ordered, no kind task
    was = stored(old)
    got = targets(new, clock, s)
    out: list[tuple[Any, ...]] = []
    for (k, occ), (st, room, at) in list(got.items()):
        prev = was.get((k, occ))
        if prev is None and sent_at is not None and held(at, sent_at, clock, s):
            prev = f"{HELD}{wait_end(sent_at, s)}"
        if prev is not None and prev.startswith(HELD):
            end = int(prev[len(HELD):])
            if sent_at is not None and held(end, sent_at, clock, s):  # sent again meanwhile
                end = max(end, wait_end(sent_at, s))
            made = _after_wait(new, st, end, clock)
            if _decided(made):
                got[(k, occ)] = (made, room, at)
                continue
            st, at = made, end
            got[(k, occ)] = (st, room, at)
            prev = None
        if prev == NOT_MADE:
            got[(k, occ)] = (NOT_MADE, room, at)
        elif prev is None:
            prio = s.kind_priority(k)
            rec = TaskRec(st, clock, at, "", tier_code(tier), priority=prio, kind=k, room=room)
            out.append(("new", k, occ, st, rules.queue_score(prio, 0), clock - s.cooldown_ms, pack_task(rec)))
        elif prev != st:
            out.append(("move", k, occ, st))
    out += [("del", k, occ) for (k, occ), st in was.items() if (k, occ) not in got and not _decided(st)]
    # a note stays while its kind is switched off (on again, it decides as before, whatever was sent since)
    notes = {key: st for key, st in was.items() if _decided(st)}
    keep(new, {**notes, **{key: st for key, (st, _r, _a) in got.items()}})
    return out


def stale(v: ViewerState, clock: int, s: RuleSettings) -> bool:
    """Do the kind tasks the viewer's state last gave differ from those its data gives under ``s`` at
    ``clock``?  (Settings changed: a kind switched on or off, ``after_sales_days``, ``dormant_days``.)"""
    if not v.fol and not v.orders:
        return False
    got = {key: st for key, (st, _r, _a) in targets(v, clock, s).items()}
    have = {key: st for key, st in stored(v).items() if key in got or not _decided(st)}
    for key, st in have.items():
        if _decided(st):  # the 7-day rule's note stands for the task the data gives
            got[key] = st
    return got != have


def stored(v: ViewerState | None) -> dict[tuple[str, int], str]:
    """The kind tasks the viewer's state says the data gave last time: (kind, occasion) -> state."""
    if v is None:
        return {}
    return {(k, int(occ)): st for k, occ, st in _parts(v)[2]}


def keep(v: ViewerState, got: dict[tuple[str, int], str]) -> None:
    firsts, gaps, _ = _parts(v)
    _set(v, firsts, gaps, [[k, occ, st] for (k, occ), st in sorted(got.items())])
