"""The scorer's core: one batch of a shop's events -> the new viewer states and every effect.

Pure: it takes the states read from Redis (packed bytes) and the shop clock, and returns
the batch's ``Effects`` in its own terms: the new states of viewers and (room, viewer)
records, counter deltas, index entries, host-screen entries, tier transitions and task
changes.  ``scoring.writeset`` turns them into the Redis writes that ``scoring/lua/apply.lua``
makes atomically (or not at all, if a viewer changed meanwhile: then the worker reads again
and retries).  Every counter is kept as the difference between what the old state and the
new state give, so that applying the events of a shop in any order, in any batches, gives
the same counters.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from fanops.rules_settings import RuleSettings
from fanops.schema import HISTORY_ROOM, Event, event_type
from fanops.state import (
    RoomViewer,
    ViewerState,
    fold,
    pack,
    pack_scored_task,
    past_numbers,
    rooms_attended,
    tier_code,
    unpack_room_viewer,
    unpack_viewer,
)
from scoring import kinds, rules
from scoring.effects import Effects, Inputs
from scoring.followups import followup_target, held, late_moment, lurk_time, next_known
from scoring.merge import merge_room_viewer, merge_viewer

# the states a task moves from when its target changes (an operator's sent or skipped stays)
MOVABLE = ("pending", "claimed", "converted", "withdrawn")
# the states whose card (priority, counts, dwell) follows the data: the open ones and those the data
# closed (converted, withdrawn), so that a task shows the same whatever order its events came in
CARDED = ("pending", "converted", "withdrawn")

def _display(rv: RoomViewer, tier: str, reactivated: bool, dwell_ms: int, prio: float) -> list[Any]:
    """The task fields an operator sees, ``TaskRec.name`` to ``TaskRec.product`` in its order, as
    packed (the tier as its letter). The viewer's name, country, language and time zone are left
    empty: they are shown from the viewer's state (``fanops.read.fill_profiles``), not copied
    into every task (~30 bytes a task)."""
    product = (rv.skus_carted or rv.skus_viewed or [""])[0]
    return ["", tier_code(tier), "", "", "", dwell_ms, round(prio, 2),
            reactivated, rv.comments, rv.likes, rv.views, rv.carts, rv.shares, rv.follows,
            rv.said, rv.skus_viewed, rv.skus_carted, product]  # packed at once: no copies


def _affected_rooms(old: ViewerState, new: ViewerState) -> set[str]:
    """Rooms whose new-viewer or reactivated flag may differ between ``old`` and ``new``.

    A room's flags depend on its own first ts, on ``first_seen`` and on the spans of the rooms
    that started before it: only rooms whose first ts changed, and rooms that started after one
    whose span changed, can flip. A room's own later events (its last ts moves, the usual change)
    flip nothing unless a room started after it."""
    if old.first_seen != new.first_seen:
        return set(new.rooms) | set(old.rooms)
    lo = None
    firsts = set()
    old_rooms = old.rooms
    for rm, span in new.rooms.items():
        o = old_rooms.get(rm)
        if o == span:
            continue
        f = span[0] if o is None else min(span[0], o[0])
        if o is None or o[0] != span[0]:
            firsts.add(rm)
        if lo is None or f < lo:
            lo = f
    if lo is None:
        return firsts
    return firsts | {rm for rm, (f, _l) in new.rooms.items() if f > lo}


def _archived_ids(v: ViewerState | None, room_ids: dict[int, str]) -> list[str]:
    """The ids of the viewer's archived (folded) rooms."""
    if v is None or not v.past_nos:
        return []
    return [room_ids[no] for no in past_numbers(v) if no in room_ids]


def score_batch(inp: Inputs, events: list[Event]) -> Effects:
    """Apply ``events`` (all of one shop) to the states in ``inp``; returns what changes."""
    fx = Effects(clock=inp.clock)
    if inp.archived:
        # a room archived since the worker looked (close-room beside a running scorer): its
        # records are gone, so its late events are counted as applied and dropped, as the worker does
        kept = [ev for ev in events if ev.room not in inp.archived]
        if len(kept) != len(events):
            fx.shop_counts["applied"] += len(events) - len(kept)
            fx.shop_counts["dropped_archived"] += len(events) - len(kept)
            events = kept
    by_viewer, clock_values = _batch_facts(fx, inp, events)
    batch = _Batch(inp, fx, by_viewer, clock_values)
    for vid, rooms_here in _touched(inp, by_viewer).items():
        batch.viewer(vid, rooms_here)
    s, clock = inp.settings, fx.clock
    if events:
        fx.shop_counts["applied"] += len(events)
    for room, ts in fx.room_last.items():
        if ts >= clock - s.present_ms:  # the room is on: record its viewers present this minute
            # viewers whose last event is past the window can be present again only by a new event,
            # which puts them back: the index holds the room's present viewers, not all it ever had
            # (a longer window set later is filled back from the room records: recompute.rebuild)
            fx.rooms_on.append((room, f"p:{clock // 60_000}", clock - s.present_ms))
    return fx


def _batch_facts(fx: Effects, inp: Inputs, events: list[Event]) -> tuple[dict[str, list[Event]], list[int]]:
    """The batch's events by viewer, and the clock values its follow-up rules may need (sorted).
    Counts the events by room, type and minute, and notes the shop clock the batch moves to, the
    batch's clock values by second, and each room's first and last event."""
    by_viewer: dict[str, list[Event]] = defaultdict(list)
    room_last, room_first = fx.room_last, fx.room_first
    ts_set: set[int] = set()
    per_minute: dict[tuple[str, object, int], int] = defaultdict(int)  # (room, type, minute) -> events
    for ev in events:
        ts, room = ev.ts, ev.room
        ts_set.add(ts)
        by_viewer[ev.viewer.id].append(ev)
        if room == HISTORY_ROOM:
            continue  # it moves the clock, but it is never a show: no room facts
        rl = room_last.get(room)
        if rl is None or ts > rl:
            room_last[room] = ts
        rf = room_first.get(room)
        if rf is None or ts < rf:
            room_first[room] = ts
        per_minute[(room, ev.__struct_config__.tag, ts // 60_000)] += 1
    for (room, t, minute), n in per_minute.items():
        fx.room_counts[(room, f"n:{t}")] += n
        fx.minute_counts[(room, f"e:{minute}")] += n
    if ts_set:
        fx.clock = max(fx.clock, max(ts_set))
    seconds = fx.seconds
    ordered = sorted(ts_set)
    for ts in ordered:  # ascending: a second's first value is its smallest, its last its largest
        sec = ts // 1000
        mm = seconds.get(sec)
        if mm is None:
            seconds[sec] = [ts, ts]
        else:
            mm[1] = ts
    extra = [t for t in (inp.clock, *inp.past_clock) if t > 0 and t not in ts_set]
    if extra:
        ts_set.update(extra)
        ordered = sorted(ts_set)
    return by_viewer, ordered


def _touched(inp: Inputs, by_viewer: dict[str, list[Event]]) -> dict[str, set[str]]:
    """Every viewer the batch scores, with the rooms whose records it derives again."""
    rooms_touched: dict[str, set[str]] = defaultdict(set)
    for vid, evs in by_viewer.items():  # the first to fill it: a set a viewer (no generator)
        rooms_touched[vid] = {ev.room for ev in evs}
    for room, vid in inp.lurk:
        rooms_touched[vid].add(room)
    for vid in inp.due:
        rooms_touched.setdefault(vid, set())
    for (room, vid) in inp.room_viewers:
        rooms_touched[vid].add(room)  # e.g. every room of a viewer whose consent changed
    for rooms in rooms_touched.values():
        rooms.discard(HISTORY_ROOM)  # no record there: the history room is never a show
    return rooms_touched


class _Batch:
    """What scoring each viewer of one batch shares."""

    def __init__(self, inp: Inputs, fx: Effects, by_viewer: dict[str, list[Event]], clock_values: list[int]) -> None:
        self.inp = inp
        self.s = inp.settings
        self.fx = fx
        self.clock = fx.clock
        self.by_viewer = by_viewer
        self.clock_values = clock_values
        self.due_set = set(inp.due)
        self.lurked = set(inp.lurk)

    def viewer(self, vid: str, rooms_here: set[str]) -> None:
        """Score one viewer: its events merged into its state and its records in ``rooms_here``,
        and every effect of the change."""
        inp, s, fx, clock = self.inp, self.s, self.fx, self.clock
        old_blob = inp.viewers.get(vid)
        new = unpack_viewer(old_blob) if old_blob else None
        # the state as it was: merging events changes scalars and the rooms' spans, orders, spend and
        # consents in place, and fold reassigns the rest, so a copy of those containers does
        old = None if new is None else msgspec.structs.replace(
            new, rooms={rm: [f, last] for rm, (f, last) in new.rooms.items()}, orders=list(new.orders),
            spend=dict(new.spend), consents=list(new.consents), reach=list(new.reach))
        evs = self.by_viewer.get(vid, [])
        if len(evs) > 1:
            evs.sort(key=lambda e: (e.ts, e.id))
        if old is not None and new is not None and inp.archived:
            # archived rooms ended before the viewer's open rooms and these events: keep what the
            # rules need of them (a few bytes)
            before = evs[0].ts if evs else None
            fold(old, inp.archived, inp.open_since, before)
            fold(new, inp.archived, inp.open_since, before)
        old_rvs, new_rvs = self._records(vid, rooms_here)
        for ev in evs:
            b4 = kinds.before(new, ev, s)
            new = merge_viewer(new, ev)
            kinds.track(new, b4, ev, s)
            if ev.room != HISTORY_ROOM:
                new_rvs[ev.room] = merge_room_viewer(new_rvs.get(ev.room), ev, s)
        if new is None:
            return  # a due/lurk entry for a viewer that is gone
        tier_new = self._tier(vid, old, new, evs)
        sent = inp.sent_at.get(vid)
        made = kinds.changes(old, new, clock, s, tier_new, sent)  # under the 7-day rule
        if made:
            fx.kind_tasks += [(vid, *c) for c in made]
            if any(c[0] == "new" for c in made):  # a send between the read and the write: read again
                fx.sent_read[vid] = -1 if sent is None else sent
        for ev in evs:
            if ev.__struct_config__.tag in _NOTABLE and ev.room != HISTORY_ROOM:
                _count_event(fx, ev, new, tier_new)
        lurked = self.lurked
        for room, rv in new_rvs.items():
            _room_viewer_effects(fx, room, vid, old_rvs.get(room), rv, new, old, tier_new, clock, s,
                                 self.clock_values, (room, vid) in lurked, inp.sent_at.get(vid))
        refusals = [ev.ts for ev in evs if ev.__struct_config__.tag == "consent" and ev.dm is False]  # type: ignore[union-attr]
        if refusals:
            # rooms whose records are gone (archived): their open task is withdrawn all the same
            for room in [*(new.rooms.keys() - new_rvs.keys()), *_archived_ids(new, inp.room_ids)]:
                fx.task_withdraw.append((room, vid, min(refusals)))
        # the time index holds kinds.next_change(state, tier) of the state last written (the rebuild
        # keeps that true under new settings): written only when it moves, or when the viewer
        # was taken from it
        due = kinds.next_change(new, clock, s, tier_new)
        had_due = kinds.next_change(old, clock, s, old.tier) if old is not None and old.tier else None
        if due != had_due or vid in self.due_set:
            fx.due.append((vid, new, due, had_due, old is not None, vid in self.due_set))
        new.seq += 1
        fx.viewers.append((vid, old_blob, new))

    def _records(self, vid: str, rooms: set[str]) -> tuple[dict[str, RoomViewer | None], dict[str, RoomViewer]]:
        """The viewer's records in ``rooms`` as read (for the effects) and to merge into."""
        old_rvs: dict[str, RoomViewer | None] = {}
        new_rvs: dict[str, RoomViewer] = {}
        room_viewers = self.inp.room_viewers
        for room in rooms:
            b = room_viewers.get((room, vid))
            if b:
                rv = new_rvs[room] = unpack_room_viewer(b)
                # the record as it was, for _room_viewer_effects: it reads its scalars, its orders and
                # its early events (merging events replaces scalars and changes those two lists in
                # place), so a shallow copy with its own two lists does (a second decode cost 2-3x more)
                old_rvs[room] = msgspec.structs.replace(rv, orders=list(rv.orders), early=list(rv.early))
            else:
                old_rvs[room] = None
        return old_rvs, new_rvs

    def _tier(self, vid: str, old: ViewerState | None, new: ViewerState, evs: list[Event]) -> str:
        """The viewer's new tier; counts the change (shop, rooms), the transition, and the room facts
        that follow from the state: unique viewers, new viewers and reactivated ones."""
        fx, s, clock = self.fx, self.s, self.clock
        room_counts = fx.room_counts
        tier_old = old.tier if old else ""
        tier_new = rules.tier(new, clock, s)
        new.tier = tier_new
        rooms_old = old.rooms.keys() if old else set()
        if tier_old != tier_new:
            if tier_old:
                fx.tier_counts[tier_old] -= 1
            fx.tier_counts[tier_new] += 1
            for room in [*rooms_old, *_archived_ids(old, self.inp.room_ids)]:
                room_counts[(room, f"t:{tier_old}")] -= 1
                room_counts[(room, f"t:{tier_new}")] += 1
            if tier_old:
                cause = "time" if not evs else event_type(evs[-1])
                at = clock if not evs else evs[-1].ts
                fx.transitions.append((vid, evs[-1].room if evs else "", tier_old, tier_new, at, cause,
                                       self.inp.rules_version, (new.name or "")[:80]))
        for room in new.rooms.keys() - rooms_old:
            room_counts[(room, "unique")] += 1
            room_counts[(room, f"t:{tier_new}")] += 1
        for room in (_affected_rooms(old, new) if old else new.rooms.keys()):
            n_old = old is not None and rules.is_new_viewer(old, room)
            n_new = rules.is_new_viewer(new, room)
            if n_old != n_new:
                room_counts[(room, "new")] += 1 if n_new else -1
            r_old = old is not None and rules.is_reactivated(old, room, s)
            r_new = rules.is_reactivated(new, room, s)
            if r_old != r_new:
                room_counts[(room, "reactivated")] += 1 if r_new else -1
                fx.recard.append((room, vid))
        return tier_new


def _json(d: dict[str, Any]) -> str:
    """A host-screen list entry as JSON text (UTF-8 as it is: names and comments in any script)."""
    return _json_enc.encode(d).decode()


_json_enc = msgspec.json.Encoder()
_NOTABLE = frozenset({"join", "order", "comment", "like", "gift"})


def _count_event(fx: Effects, ev: Event, v: ViewerState, tier_new: str) -> None:
    """The per-minute joins and orders, GMV, likes, gift value, and the host screen's lists."""
    t = ev.__struct_config__.tag
    if t == "like":
        fx.room_counts[(ev.room, "likes")] += ev.count  # type: ignore[union-attr]
        return
    if t == "gift":
        fx.room_sums[(ev.room, "gift_value")] += ev.value  # type: ignore[union-attr]
        return
    name = (v.name or ev.viewer.name or "")[:120]
    if t == "join":
        fx.minute_counts[(ev.room, f"j:{ev.ts // 60_000}")] += 1
        returning = rooms_attended(v) > 1
        if tier_new == "active" or returning:
            why = "active" if tier_new == "active" else "returning"
            fx.feeds.append((ev.room, "greet", _json(
                {"viewer": ev.viewer.id, "name": name, "tier": tier_new, "why": why, "ts": ev.ts})))
    elif t == "order":
        fx.minute_counts[(ev.room, f"o:{ev.ts // 60_000}")] += 1
        fx.room_sums[(ev.room, f"gmv:{ev.currency}")] += ev.amount  # type: ignore[union-attr]
        first_time = v.orders[:1] == [ev.order_id]  # type: ignore[union-attr]
        fx.feeds.append((ev.room, "thank", _json(
            {"viewer": ev.viewer.id, "name": name, "amount": ev.amount,  # type: ignore[union-attr]
             "currency": ev.currency, "first_time": first_time, "ts": ev.ts})))  # type: ignore[union-attr]
    elif t == "comment":
        text = ev.text  # type: ignore[union-attr]
        if rules.is_question(text):
            fx.feeds.append((ev.room, "questions", _json(
                {"viewer": ev.viewer.id, "name": name, "text": text[:300], "lang": v.lang or "", "ts": ev.ts})))


def _room_viewer_effects(fx: Effects, room: str, vid: str, old: RoomViewer | None, rv: RoomViewer,
                         v: ViewerState, v_old: ViewerState | None, tier_new: str, clock: int,
                         s: RuleSettings, clock_values: list[int], lurked: bool = False,
                         sent_at: int | None = None) -> None:
    """What a (room, viewer) record's change moves: buyers and orders, the room's present index,
    the pair's task, its lurk and late-window entries; and the record itself.

    ``sent_at``: the shop clock of the latest follow-up sent to the viewer. A task due within its
    cooldown (7 days) is not made then: the record keeps that send (``held_by``), from its cooldown's
    end on the rules are looked at again (spec/tiers.md: made the first time they all hold), and the
    pair waits in the lurk index for the clock to pass it, even with no event of the viewer's by then."""
    if bool(old and old.orders) != bool(rv.orders):
        fx.room_counts[(room, "buyers")] += 1
    for oid in rv.orders[len(old.orders) if old else 0:]:
        fx.orders.append((room, oid))
    # present index: viewers with no leave after their last other event, scored by last event
    eligible = rv.last_other >= 0 and rv.last_leave <= rv.last_other
    if eligible:
        if old is None or old.last != rv.last or not (old.last_other >= 0 and old.last_leave <= old.last_other):
            fx.present.append((room, vid, rv.last))
    elif old is not None and old.last_other >= 0 and old.last_leave <= old.last_other:
        fx.present_gone.append((room, vid))
    # follow-up task
    target, rv.task_at = followup_target(rv, v, clock, s, clock_values)
    if target and not rv.task and sent_at is not None and held(rv.task_at, sent_at, clock, s):
        # a follow-up sent within the cooldown before its moment: looked at again from the
        # cooldown's end (apply.lua refuses a task while one was sent within it)
        rv.held_by = sent_at
        target, rv.task_at = followup_target(rv, v, clock, s, clock_values)
    if target != rv.task or (target in CARDED and _card_moved(old, rv, v_old, v, room, s)):
        if target and not rv.task:
            fx.sent_read[vid] = -1 if sent_at is None else sent_at
        task_effects(fx, room, vid, rv, v, target, tier_new, clock, s)
    lt = lurk_time(rv, clock, s) if not target else None
    # the last write of this pair put it in the lurk index at first + dwell (or its hold's end) only
    # if it had no task, no event after that moment and no order, and that moment was still ahead
    # of the clock; the clock never goes back, so with the same first and hold it is there already
    # (a pair taken from the index is rewritten all the same, in case the threshold changed since)
    may_have = old is not None and not old.task and (old.after < 0 or old.held_by >= 0) and old.first_order < 0
    if lt is not None:
        if not (may_have and old.first == rv.first and old.held_by == rv.held_by) or lurked:  # type: ignore[union-attr]
            fx.lurk.append((room, vid, lt))
    elif may_have or lurked:
        fx.lurk_gone.append((room, vid))
    # the late-window index: pairs whose task a clock value arriving late would change, by the
    # moment from which it would (followups.late_moment); a batch with such a value rescores them
    g = late_moment(rv, v, s) if lt is None else None
    g_old = late_moment(old, v_old, s) if old is not None and v_old is not None else None
    if g is not None:
        # a pair with no task and no event past its moment may have been in the lurk index instead
        surely = g_old == g and (old.task or (old.after >= 0 and old.held_by < 0)  # type: ignore[union-attr]
                                 or old.first_order >= 0)  # type: ignore[union-attr]
        if lurked or not surely:
            fx.late_window.append((room, vid, g))
            # new to the index: a scorer that added a clock value in [g, the first one this batch
            # knows after it) after this batch read the clock index, but read the index before
            # this write, would find the pair in neither; apply.lua refuses the batch then
            nk = next_known(rv, v, g, clock_values)
            fx.late_check += (g, g if nk is None else nk)
    elif lurked or g_old is not None:
        fx.late_window_gone.append((room, vid))
    fx.records.append((room, vid, pack(rv)))


def _card_moved(old: RoomViewer | None, rv: RoomViewer, v_old: ViewerState | None, v: ViewerState, room: str,
                s: RuleSettings) -> bool:
    """Whether what a pending task's card shows moved: its dwell's ends, its counts, what was said
    and looked at, its reactivated bonus. Events arriving late move any of them, not only the last
    event (the task is then the same as if they had come in order)."""
    if old is None or v_old is None:
        return True
    if (old.first != rv.first or old.last != rv.last or old.last_other != rv.last_other
            or old.last_leave != rv.last_leave or old.comments != rv.comments or old.likes != rv.likes
            or old.views != rv.views or old.carts != rv.carts or old.shares != rv.shares or old.follows != rv.follows
            or old.said != rv.said or old.skus_viewed != rv.skus_viewed or old.skus_carted != rv.skus_carted):
        return True
    return v_old.rooms != v.rooms and rules.is_reactivated(v_old, room, s) != rules.is_reactivated(v, room, s)


def task_effects(fx: Effects, room: str, vid: str, rv: RoomViewer, v: ViewerState, target: str,
                  tier_new: str, clock: int, s: RuleSettings) -> None:
    """The (room, viewer) task's change when its state changes, or its priority and the fields an
    operator sees when a pending one's data moved (worked out only then: most touches need none)."""
    moved = target != rv.task
    if moved and rv.task:  # a state change of a task that exists
        if target:
            fx.task_move.append((room, vid, target))
        else:
            fx.task_del.append((room, vid))
        rv.task = target
        if target not in CARDED:
            return
        moved = False  # and its card, which the events that moved it may have changed too
    reactivated = rules.is_reactivated(v, room, s)
    dwell_ms = rules.dwell(rv, clock, s)
    prio = rules.priority(rv, tier_new, reactivated, s)
    score = rules.queue_score(prio, dwell_ms)
    shown = [rv.task_at, *_display(rv, tier_new, reactivated, dwell_ms, prio)]
    if moved:  # a new task
        fx.task_new.append((room, vid, target, score, clock - s.cooldown_ms, pack_scored_task(target, clock, shown)))
        rv.task = target
    else:
        fx.task_prio.append((room, vid, score, _shown.encode(shown)))


_shown = msgspec.msgpack.Encoder()
