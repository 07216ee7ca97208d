"""The scorer's core: one batch of a shop's events -> the new viewer states and every effect.

Pure: it takes the states read from Redis (packed bytes) and the shop clock,
and returns a ``WriteSet`` that ``scoring/lua/apply.lua`` writes atomically
(or not at all, if a viewer changed meanwhile: then the worker reads again and
retries).  Every counter is kept as the difference between what the old state
and the new state give, so that applying the events of a shop in any order,
in any batches, gives the same counters.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import UNSET

from fanops import keys
from fanops.rules_settings import RuleSettings
from fanops.schema import Event, Viewer, event_type
from fanops.state import (
    Consent,
    RoomViewer,
    TaskRec,
    ViewerState,
    fold,
    pack,
    pack_task,
    past_numbers,
    rooms_attended,
    tier_code,
    unpack_room_viewer,
    unpack_viewer,
)
from scoring import rules
from scoring.followups import EARLY_CAP, followup_target, late_moment, lurk_time, next_known

TRANSITIONS_MAXLEN = 100_000
FEED_KEEP = 20
SKU_KEEP = 5
SAID_KEEP = 3
CONSENT_KEEP = 16


@dataclass
class WriteSet:
    """Everything one batch writes; ``to_wire`` gives the map ``apply.lua`` takes."""

    shop: str = ""
    cas: list[list[Any]] = field(default_factory=list)
    hset: list[list[Any]] = field(default_factory=list)
    hincr: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    hfloat: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    hmax: list[list[Any]] = field(default_factory=list)
    zadd: list[list[Any]] = field(default_factory=list)
    zrem: list[list[Any]] = field(default_factory=list)
    xadd: list[list[Any]] = field(default_factory=list)
    lpush: list[list[Any]] = field(default_factory=list)
    pcount: list[list[Any]] = field(default_factory=list)  # [present zset, minutes hash, field, since]
    task_new: list[list[Any]] = field(default_factory=list)
    task_move: list[list[Any]] = field(default_factory=list)
    task_prio: list[list[Any]] = field(default_factory=list)
    task_del: list[list[Any]] = field(default_factory=list)
    scount: list[list[Any]] = field(default_factory=list)
    zremrange: list[list[Any]] = field(default_factory=list)
    task_withdraw: list[list[Any]] = field(default_factory=list)
    rpush: list[list[Any]] = field(default_factory=list)  # [list, value, days zset, day]
    lpop: list[list[Any]] = field(default_factory=list)  # [list, count, days zset, day]
    # [g, v, ...]: no shop-clock value may lie in [g, v) but those the batch knew (apply.lua checks)
    late_check: list[int] = field(default_factory=list)
    # [[late-window key, lo, hi, members...]]: what the batch read of the index in (lo, hi],
    # for its clock values that were new; apply.lua checks that it still holds just that
    late_read: list[list[Any]] = field(default_factory=list)
    transitions: int = 0

    def to_wire(self, blobs: list[bytes]) -> dict[str, Any]:
        """The map for ``apply.lua``; packed states go to ``blobs`` (passed as extra script
        arguments, since Redis's msgpack decoder has no binary type) and are named by index.

        The many small writes travel as flat arrays of fixed stride with each key named once in
        ``k`` (by its index): Lua unpacks one table per kind instead of one per write."""
        kidx: dict[str, int] = {}

        def key(k: str) -> int:
            i = kidx.get(k)
            if i is None:
                i = kidx[k] = len(kidx) + 1
            return i

        def ref(b: bytes | bool) -> int | bool:
            if b is False:
                return False
            blobs.append(b)  # type: ignore[arg-type]
            return len(blobs) + 1  # ARGV[1] is the map itself

        cas: list[Any] = []
        for k, f, old, new in self.cas:
            cas += (key(k), f, ref(old), ref(new))
        hset: list[Any] = []
        for k, f, v in self.hset:
            hset += (key(k), f, ref(v) if isinstance(v, bytes) else v)
        hincr: list[Any] = []
        for (k, f), v in self.hincr.items():
            if v:
                hincr += (key(k), f, v)
        hfloat: list[Any] = []
        for (k, f), v in self.hfloat.items():
            if v:
                hfloat += (key(k), f, v)
        hmax: list[Any] = []
        for k, f, v in self.hmax:
            hmax += (key(k), f, v)
        zadd: list[Any] = []
        for z in self.zadd:
            zadd += (key(z[0]), z[1], z[2], z[3] if len(z) > 3 else False)
        zrem: list[Any] = []
        for k, m in self.zrem:
            zrem += (key(k), m)
        scount: list[Any] = []
        for sk, m, hk, f in self.scount:
            scount += (key(sk), m, key(hk), f)
        lpush: list[Any] = []
        for k, v, keep in self.lpush:
            lpush += (key(k), v, keep)
        pcount: list[Any] = []
        for pk, mk, f, since in self.pcount:
            pcount += (key(pk), key(mk), f, since)
        rpush: list[Any] = []
        for lk, v, dk, day in self.rpush:
            rpush += (key(lk), v, key(dk), day)
        return {
            "k": list(kidx),
            "cas": cas,
            "hset": hset,
            "hincr": hincr,
            "hfloat": hfloat,
            "hmax": hmax,
            "zadd": zadd,
            "zrem": zrem,
            "xadd": self.xadd,
            "lpush": lpush,
            "pcount": pcount,
            "task_new": [[*t[:-1], ref(t[-1])] for t in self.task_new],
            "task_move": self.task_move,
            "task_prio": [[*t[:-1], ref(t[-1])] for t in self.task_prio],
            "task_del": self.task_del,
            "scount": scount,
            "zremrange": self.zremrange,
            "task_withdraw": self.task_withdraw,
            "rpush": rpush,
            "lpop": self.lpop,
            "late_check": self.late_check,
            "late_read": self.late_read,
            "clock_keys": [keys.clock_min(self.shop), keys.clock_max(self.shop)] if self.late_check else [],
        }


def _insort_early(rv: RoomViewer, ts: int, leave: int, horizon: int) -> None:
    """Keep the viewer's events up to ``horizon`` (first + dwell threshold), the next one in ``after``."""
    if ts > horizon:
        if rv.after < 0 or ts < rv.after:
            rv.after = ts
        return
    item = [ts, leave]
    e = rv.early
    if not e or ts > e[-1][0]:
        e.append(item)  # the usual case: events of a viewer come in order, so the list stays sorted
    elif item in e:
        return
    else:
        e.append(item)
        e.sort()
    if len(e) > EARLY_CAP:
        del e[1:len(e) - EARLY_CAP + 1]  # keep the first event and the latest ones


def _rehorizon(rv: RoomViewer, horizon: int) -> None:
    """``first`` moved earlier: events past the new horizon leave the early window."""
    keep = [x for x in rv.early if x[0] <= horizon]
    for x in rv.early:
        if x[0] > horizon and (rv.after < 0 or x[0] < rv.after):
            rv.after = x[0]
    rv.early = keep


def _push_recent(lst: list[str], value: str, keep: int) -> list[str]:
    out = [value] + [x for x in lst if x != value]
    return out[:keep]


def merge_viewer(v: ViewerState | None, ev: Event) -> ViewerState:
    """A viewer's shop-wide state with one more event (commutative up to profile fields)."""
    ts, room = ev.ts, ev.room
    if v is None:
        v = ViewerState(first_seen=ts, last_active=ts, rooms={room: [ts, ts]})
    else:
        if ts < v.first_seen:
            v.first_seen = ts
        if ts > v.last_active:
            v.last_active = ts
        r = v.rooms.get(room)
        if r is None:
            v.rooms[room] = [ts, ts]
        else:
            if ts < r[0]:
                r[0] = ts
            if ts > r[1]:
                r[1] = ts
    t = event_type(ev)
    if t == "order":
        oid = ev.order_id  # type: ignore[union-attr]
        if oid not in v.orders:
            v.orders.append(oid)
            v.spend[ev.currency] = v.spend.get(ev.currency, 0.0) + ev.amount  # type: ignore[union-attr]
    elif t == "consent":
        c = Consent(ts, ev.id, ev.dm)  # type: ignore[union-attr]
        if c not in v.consents:
            v.consents.append(c)
            v.consents.sort(key=lambda x: (x.ts, x.id))
            if len(v.consents) > CONSENT_KEEP:
                del v.consents[: len(v.consents) - CONSENT_KEEP]
    vw: Viewer = ev.viewer
    if ts >= v.profile_ts and (vw.name is not UNSET or vw.country or vw.lang or vw.tz):
        v.profile_ts = ts
        if vw.name is not UNSET:
            v.name = vw.name
        if vw.country:
            v.country = vw.country
        if vw.lang:
            v.lang = vw.lang
        if vw.tz:
            v.tz = vw.tz
    return v


def merge_room_viewer(rv: RoomViewer | None, ev: Event, s: RuleSettings) -> RoomViewer:
    ts = ev.ts
    t = event_type(ev)
    leave = 1 if t == "leave" else 0
    if rv is None:
        rv = RoomViewer(first=ts, last=ts)
    else:
        if ts < rv.first:
            rv.first = ts
            _rehorizon(rv, ts + s.dwell_ms)
        if ts > rv.last:
            rv.last = ts
    _insort_early(rv, ts, leave, rv.first + s.dwell_ms)
    if leave:
        rv.last_leave = max(rv.last_leave, ts)
    else:
        rv.last_other = max(rv.last_other, ts)
    if t == "comment":
        rv.comments += 1
        text = ev.text  # type: ignore[union-attr]
        if text:
            rv.said = ([text[:300]] + rv.said)[:SAID_KEEP]
    elif t == "like":
        rv.likes += ev.count  # type: ignore[union-attr]
    elif t == "share":
        rv.shares += 1
    elif t == "follow":
        rv.follows += 1
    elif t == "gift":
        rv.gift_value += ev.value  # type: ignore[union-attr]
    elif t == "product_view":
        rv.views += 1
        rv.skus_viewed = _push_recent(rv.skus_viewed, ev.sku, SKU_KEEP)  # type: ignore[union-attr]
    elif t == "cart_add":
        rv.carts += 1
        rv.skus_carted = _push_recent(rv.skus_carted, ev.sku, SKU_KEEP)  # type: ignore[union-attr]
    elif t == "order":
        oid = ev.order_id  # type: ignore[union-attr]
        if oid not in rv.orders:
            rv.orders.append(oid)
            rv.amount[ev.currency] = rv.amount.get(ev.currency, 0.0) + ev.amount  # type: ignore[union-attr]
        if rv.first_order < 0 or ts < rv.first_order:
            rv.first_order = ts
    return rv


@dataclass
class Inputs:
    """What the worker read for a batch."""

    shop: str
    clock: int  # the shop clock before the batch
    settings: RuleSettings
    rules_version: int
    viewers: dict[str, bytes | None]  # every viewer the batch touches (events, due, lurk)
    room_viewers: dict[tuple[str, str], bytes | None]  # (room, viewer) -> packed state
    due: list[str] = field(default_factory=list)  # viewers whose tier may change by time
    lurk: list[tuple[str, str]] = field(default_factory=list)  # (room, viewer) whose dwell may be reached
    # clock values from before this batch that it may need: the first one after each moment
    # (long past) at which a viewer's dwell in a room reached the threshold
    past_clock: list[int] = field(default_factory=list)
    # the shop's archived rooms by number: their rooms in viewers' states are folded (state.fold)
    archived: dict[str, int] = field(default_factory=dict)
    room_ids: dict[int, str] = field(default_factory=dict)
    open_since: int | None = None  # the first event of the shop's oldest open room (None: unknown)
    # partition -> its due front for this batch (keys.due_front_field; 0 or absent: none, all near)
    due_front: dict[int, int] = field(default_factory=dict)


lurk_member = keys.pair
split_lurk_member = keys.split_pair
task_id = keys.pair


def _display(rv: RoomViewer, tier: str, reactivated: bool, dwell_ms: int, prio: float) -> list[Any]:
    """The task fields an operator sees, ``TaskRec.name`` to ``TaskRec.product`` in its order, as
    packed (the tier as its letter). The viewer's name, country, language and time zone are left
    empty: they are shown from the viewer's state (``fanops.read.fill_profiles``), not copied
    into every task (~30 bytes a task)."""
    product = (rv.skus_carted or rv.skus_viewed or [""])[0]
    return ["", tier_code(tier), "", "", "", dwell_ms, round(prio, 2),
            reactivated, rv.comments, rv.likes, rv.views, rv.carts, rv.shares, rv.follows,
            list(rv.said), list(rv.skus_viewed), list(rv.skus_carted), product]


def _affected_rooms(old: ViewerState, new: ViewerState) -> set[str]:
    """Rooms whose new-viewer or reactivated flag may differ between ``old`` and ``new``.

    A room's flags depend on its own first ts, on ``first_seen`` and on the rooms that
    started before it: only rooms that changed, and rooms that started after one that
    changed, can flip (usually just the room the events are in)."""
    changed = {rm for rm, span in new.rooms.items() if old.rooms.get(rm) != span}
    if old.first_seen != new.first_seen:
        return set(new.rooms) | set(old.rooms)
    if not changed:
        return set()
    lo = min(min(new.rooms[rm][0], old.rooms.get(rm, new.rooms[rm])[0]) for rm in changed)
    return changed | {rm for rm, (f, _l) in new.rooms.items() if f > lo}


def _archived_ids(v: ViewerState | None, room_ids: dict[int, str]) -> list[str]:
    """The ids of the viewer's archived (folded) rooms."""
    if v is None or not v.past_nos:
        return []
    return [room_ids[no] for no in past_numbers(v) if no in room_ids]


def score_batch(inp: Inputs, events: list[Event]) -> tuple[WriteSet, int]:
    """Apply ``events`` (all of ``inp.shop``) to the states in ``inp``; returns the write set and the new clock."""
    s = inp.settings
    shop = inp.shop
    w = WriteSet(shop=shop)
    clock = inp.clock
    hincr = w.hincr
    if inp.archived:
        # a room archived since the worker looked (close-room beside a running scorer): its
        # records are gone, so its late events are counted as applied and dropped, as the worker does
        kept = [ev for ev in events if ev.room not in inp.archived]
        if len(kept) != len(events):
            hincr[(keys.stats(shop), "applied")] += len(events) - len(kept)
            hincr[(keys.stats(shop), "dropped_archived")] += len(events) - len(kept)
            events = kept
    by_viewer: dict[str, list[Event]] = defaultdict(list)
    room_last: dict[str, int] = {}
    room_first: dict[str, int] = {}
    ts_set: set[int] = set()
    per_minute: dict[tuple[str, object, int], int] = defaultdict(int)  # (room, type, minute) -> events
    for ev in events:
        ts, room = ev.ts, ev.room
        ts_set.add(ts)
        by_viewer[ev.viewer.id].append(ev)
        rl = room_last.get(room)
        if rl is None or ts > rl:
            room_last[room] = ts
        rf = room_first.get(room)
        if rf is None or ts < rf:
            room_first[room] = ts
        per_minute[(room, ev.__struct_config__.tag, ts // 60_000)] += 1
    for (room, t, minute), n in per_minute.items():
        hincr[(keys.room(shop, room), f"n:{t}")] += n
        hincr[(keys.room_minutes(shop, room), f"e:{minute}")] += n
    if ts_set:
        clock = max(clock, max(ts_set))
    seconds: dict[int, list[int]] = {}
    for ts in ts_set:
        sec = ts // 1000
        mm = seconds.get(sec)
        if mm is None:
            seconds[sec] = [ts, ts]
        else:
            mm[0] = min(mm[0], ts)
            mm[1] = max(mm[1], ts)
    cmin, cmax = keys.clock_min(shop), keys.clock_max(shop)
    for sec, (lo, hi) in seconds.items():
        w.zadd.append([cmin, sec, lo, "LT"])
        w.zadd.append([cmax, sec, hi, "GT"])
    if inp.clock > 0:
        ts_set.add(inp.clock)
    ts_set.update(inp.past_clock)
    clock_values = sorted(ts_set)

    rooms_touched: dict[str, set[str]] = defaultdict(set)  # viewer -> rooms to re-derive
    for vid, evs in by_viewer.items():
        rooms_touched[vid].update(ev.room for ev in evs)
    for room, vid in inp.lurk:
        rooms_touched[vid].add(room)
    for vid in inp.due:
        rooms_touched.setdefault(vid, set())
    for (room, vid) in inp.room_viewers:
        rooms_touched[vid].add(room)  # e.g. every room of a viewer whose consent changed

    vkey = keys.viewers(shop)
    tkey = keys.tiers(shop)
    due_set = set(inp.due)
    lurked = set(inp.lurk)

    for vid, rooms_here in rooms_touched.items():
        old_blob = inp.viewers.get(vid)
        new = unpack_viewer(old_blob) if old_blob else None
        # the state as it was: merging events changes scalars and the rooms' spans, orders, spend and
        # consents in place, and fold reassigns the rest, so a copy of those containers does
        old = None if new is None else msgspec.structs.replace(
            new, rooms={rm: [f, last] for rm, (f, last) in new.rooms.items()}, orders=list(new.orders),
            spend=dict(new.spend), consents=list(new.consents))
        if old is not None and new is not None and inp.archived:
            # archived rooms get no more events: keep what the rules need of them (a few bytes)
            fold(old, inp.archived, inp.open_since)
            fold(new, inp.archived, inp.open_since)
        evs = by_viewer.get(vid, [])
        if len(evs) > 1:
            evs.sort(key=lambda e: (e.ts, e.id))
        old_rvs: dict[str, RoomViewer | None] = {}
        new_rvs: dict[str, RoomViewer] = {}
        for room in rooms_here:
            b = inp.room_viewers.get((room, vid))
            if b:
                rv = new_rvs[room] = unpack_room_viewer(b)
                # the record as it was, for _room_viewer_effects: it reads its scalars, its orders and
                # its early events (merging events replaces scalars and changes those two lists in
                # place), so a shallow copy with its own two lists does (a second decode cost 2-3x more)
                old_rvs[room] = msgspec.structs.replace(rv, orders=list(rv.orders), early=list(rv.early))
            else:
                old_rvs[room] = None
        for ev in evs:
            new = merge_viewer(new, ev)
            new_rvs[ev.room] = merge_room_viewer(new_rvs.get(ev.room), ev, s)
        if new is None:
            continue  # a due/lurk entry for a viewer that is gone
        # --- tier --------------------------------------------------------
        tier_old = old.tier if old else ""
        tier_new = rules.tier(new, clock, s)
        new.tier = tier_new
        rooms_old = old.rooms.keys() if old else set()
        if tier_old != tier_new:
            if tier_old:
                hincr[(tkey, tier_old)] -= 1
            hincr[(tkey, tier_new)] += 1
            for room in [*rooms_old, *_archived_ids(old, inp.room_ids)]:
                rk = keys.room(shop, room)
                hincr[(rk, f"t:{tier_old}")] -= 1
                hincr[(rk, f"t:{tier_new}")] += 1
            if tier_old:
                cause = "time" if not evs else event_type(evs[-1])
                at = clock if not evs else evs[-1].ts
                w.xadd.append([keys.transitions(shop), TRANSITIONS_MAXLEN, "viewer", vid,
                               "room", evs[-1].room if evs else "", "from", tier_old, "to", tier_new,
                               "ts", at, "cause", cause, "rules_version", inp.rules_version,
                               "name", (new.name or "")[:80]])
                w.transitions += 1
        # --- per-room facts ---------------------------------------------
        for room in new.rooms.keys() - rooms_old:
            rk = keys.room(shop, room)
            hincr[(rk, "unique")] += 1
            hincr[(rk, f"t:{tier_new}")] += 1
        for room in (_affected_rooms(old, new) if old else new.rooms.keys()):
            rk = keys.room(shop, room)
            n_old = old is not None and rules.is_new_viewer(old, room)
            n_new = rules.is_new_viewer(new, room)
            if n_old != n_new:
                hincr[(rk, "new")] += 1 if n_new else -1
            r_old = old is not None and rules.is_reactivated(old, room, s)
            r_new = rules.is_reactivated(new, room, s)
            if r_old != r_new:
                hincr[(rk, "reactivated")] += 1 if r_new else -1
        for ev in evs:
            if ev.__struct_config__.tag in _NOTABLE:
                _count_event(w, shop, ev, new, tier_new)
        for room, rv in new_rvs.items():
            _room_viewer_effects(w, shop, room, vid, old_rvs.get(room), rv, new, old, tier_new, clock, s,
                                 clock_values, (room, vid) in lurked)
        refusals = [ev.ts for ev in evs if ev.__struct_config__.tag == "consent" and not ev.dm]  # type: ignore[union-attr]
        if refusals:
            # rooms whose records are gone (archived): their open task is withdrawn all the same
            for room in [*(new.rooms.keys() - new_rvs.keys()), *_archived_ids(new, inp.room_ids)]:
                w.task_withdraw.append([keys.tasks(shop, room), vid, keys.queue(shop, ""), keys.room(shop, room),
                                        task_id(room, vid), min(refusals)])
        # --- time index ------------------------------------------------------
        # the index holds next_tier_change(state, tier) of the state last written (the rebuild
        # keeps that true under new settings): written only when it moves, or when the viewer
        # was taken from it
        due = rules.next_tier_change(new, clock, s, tier_new)
        had_due = rules.next_tier_change(old, clock, s, old.tier) if old is not None and old.tier else None
        if due != had_due or vid in due_set:
            _index_due(w, shop, vid, new, due, had_due, old is not None, vid in due_set, inp.due_front)
        new.seq += 1
        w.cas.append([vkey, vid, old_blob if old_blob else False, pack(new)])

    st = keys.stats(shop)
    if events:
        hincr[(st, "applied")] += len(events)
    w.hmax.append([st, "clock", clock])
    for room, ts in room_last.items():
        w.zadd.append([keys.rooms(shop), room, ts, "GT"])
        if ts >= clock - s.present_ms:  # the room is on: record its viewers present this minute
            w.pcount.append([keys.present(shop, room), keys.room_minutes(shop, room), f"p:{clock // 60_000}",
                             clock - s.present_ms])
            # viewers whose last event is past the window can be present again only by a new event,
            # which puts them back: the index holds the room's present viewers, not all it ever had
            # (a longer window set later is filled back from the room records: recompute.rebuild)
            w.zremrange.append([keys.present(shop, room), clock - s.present_ms])
    for room, ts in room_first.items():
        w.zadd.append([keys.room_first(shop), room, ts, "LT"])
    return w, clock


def _index_due(w: WriteSet, shop: str, vid: str, v: ViewerState, due: int | None, had_due: int | None,
               known: bool, taken: bool, fronts: dict[int, int]) -> None:
    """Write a viewer's time-index entry: due before the partition's due front -> the ``due`` zset;
    at or after it -> the list of a day at or before its due's (``keys.due_far``; ``v.due_day`` is
    that day). A listed viewer whose due moves later stays where it is listed (it is looked at when
    that day comes, and listed again for its new day): a fan back at every show is written about
    once a month, not once a show, and the lists do not fill with stale entries. ``taken``: the
    viewer came from the index in this batch (its zset entry or list entry is gone or to be
    rewritten)."""
    part = keys.part_of(vid)
    front = fronts.get(part, 0)
    was_near = taken or (had_due is not None and (not front or had_due < front))
    if taken:
        v.due_day = -1
    if due is not None and (not front or due < front):
        w.zadd.append([keys.due(shop, part), vid, due])
        return
    if was_near and known:
        w.zrem.append([keys.due(shop, part), vid])
    if due is None:
        return
    day = due // keys.DAY_MS
    if v.due_day < 0 or day < v.due_day:
        w.rpush.append([keys.due_far(shop, part, day), vid, keys.due_days(shop, part), day])
        v.due_day = day


def _json(d: dict[str, Any]) -> str:
    """A host-screen list entry as JSON text (UTF-8 as it is: names and comments in any script)."""
    return _json_enc.encode(d).decode()


_json_enc = msgspec.json.Encoder()
_NOTABLE = frozenset({"join", "order", "comment", "like", "gift"})


def _count_event(w: WriteSet, shop: str, ev: Event, v: ViewerState, tier_new: str) -> None:
    """The per-minute joins and orders, GMV, likes, gift value, and the host screen's lists."""
    t = ev.__struct_config__.tag
    if t == "like":
        w.hincr[(keys.room(shop, ev.room), "likes")] += ev.count  # type: ignore[union-attr]
        return
    if t == "gift":
        w.hfloat[(keys.room(shop, ev.room), "gift_value")] += ev.value  # type: ignore[union-attr]
        return
    name = (v.name or ev.viewer.name or "")[:120]
    if t == "join":
        w.hincr[(keys.room_minutes(shop, ev.room), f"j:{ev.ts // 60_000}")] += 1
        returning = rooms_attended(v) > 1
        if tier_new == "active" or returning:
            why = "active" if tier_new == "active" else "returning"
            w.lpush.append([keys.room_feed(shop, ev.room, "greet"), _json(
                {"viewer": ev.viewer.id, "name": name, "tier": tier_new, "why": why, "ts": ev.ts}), FEED_KEEP])
    elif t == "order":
        w.hincr[(keys.room_minutes(shop, ev.room), f"o:{ev.ts // 60_000}")] += 1
        w.hfloat[(keys.room(shop, ev.room), f"gmv:{ev.currency}")] += ev.amount  # type: ignore[union-attr]
        first_time = v.orders[:1] == [ev.order_id]  # type: ignore[union-attr]
        w.lpush.append([keys.room_feed(shop, ev.room, "thank"), _json(
            {"viewer": ev.viewer.id, "name": name, "amount": ev.amount,  # type: ignore[union-attr]
             "currency": ev.currency, "first_time": first_time, "ts": ev.ts}), FEED_KEEP])  # type: ignore[union-attr]
    elif t == "comment":
        text = ev.text  # type: ignore[union-attr]
        if rules.is_question(text):
            w.lpush.append([keys.room_feed(shop, ev.room, "questions"), _json(
                {"viewer": ev.viewer.id, "name": name, "text": text[:300], "lang": v.lang or "",
                 "ts": ev.ts}), FEED_KEEP])


def _room_viewer_effects(w: WriteSet, shop: str, room: str, vid: str, old: RoomViewer | None,
                         rv: RoomViewer, v: ViewerState, v_old: ViewerState | None, tier_new: str, clock: int,
                         s: RuleSettings, clock_values: list[int], lurked: bool = False) -> None:
    rk = keys.room(shop, room)
    b_old = bool(old and old.orders)
    if b_old != bool(rv.orders):
        w.hincr[(rk, "buyers")] += 1
    for oid in rv.orders[len(old.orders) if old else 0:]:
        w.scount.append([keys.room_orders(shop, room), oid, rk, "orders"])
    # present index: viewers with no leave after their last other event, scored by last event
    pk = keys.present(shop, room)
    eligible = rv.last_other >= 0 and rv.last_leave <= rv.last_other
    if eligible:
        if old is None or old.last != rv.last or not (old.last_other >= 0 and old.last_leave <= old.last_other):
            w.zadd.append([pk, vid, rv.last])
    elif old is not None and old.last_other >= 0 and old.last_leave <= old.last_other:
        w.zrem.append([pk, vid])
    # follow-up task
    target, rv.task_at = followup_target(rv, v, clock, s, clock_values)
    if target != rv.task or (target == "pending" and (old is None or old.last != rv.last
                                                       or old.comments != rv.comments)):
        _task_effects(w, shop, room, vid, rv, v, target, tier_new, clock, s, rk)
    part = keys.part_of(vid)
    lk = keys.lurk(shop, part)
    member = lurk_member(room, vid)
    lt = lurk_time(rv, clock, s) if not target else None
    # the last write of this pair put it in the lurk index at first + dwell only if it had no task,
    # no event after that moment and no order, and that moment was still ahead of the clock; the
    # clock never goes back, so with the same first it is there already (a pair taken from the
    # index is rewritten all the same, in case the threshold changed since)
    may_have = old is not None and not old.task and old.after < 0 and old.first_order < 0
    if lt is not None:
        if not (may_have and old.first == rv.first) or lurked:  # type: ignore[union-attr]
            w.zadd.append([lk, member, lt])
    elif may_have or lurked:
        w.zrem.append([lk, member])
    # the late-window index: pairs whose task a clock value arriving late would change, by the
    # moment from which it would (followups.late_moment); a batch with such a value rescores them
    g = late_moment(rv, v, s) if lt is None else None
    g_old = late_moment(old, v_old, s) if old is not None and v_old is not None else None
    if g is not None:
        # a pair with no task and no event past its moment may have been in the lurk index instead
        surely = g_old == g and (old.task or old.after >= 0 or old.first_order >= 0)  # type: ignore[union-attr]
        if lurked or not surely:
            w.zadd.append([keys.late_window(shop, part), member, g])
            # new to the index: a scorer that added a clock value in [g, the first one this batch
            # knows after it) after this batch read the clock index, but read the index before
            # this write, would find the pair in neither; apply.lua refuses the batch then
            nk = next_known(rv, v, g, clock_values)
            w.late_check += (g, g if nk is None else nk)
    elif lurked or g_old is not None:
        w.zrem.append([keys.late_window(shop, part), member])
    w.hset.append([keys.room_viewers(shop, room), vid, pack(rv)])


def _task_effects(w: WriteSet, shop: str, room: str, vid: str, rv: RoomViewer, v: ViewerState, target: str,
                  tier_new: str, clock: int, s: RuleSettings, rk: str) -> None:
    """The (room, viewer) task's write when its state changes, or its priority and the fields an
    operator sees when a pending one's data moved (worked out only then: most touches need none)."""
    tk = keys.tasks(shop, room)
    tid = task_id(room, vid)
    qp = keys.queue(shop, "")
    moved = target != rv.task
    if moved and rv.task:  # a state change of a task that exists (its priority stays)
        if target:
            w.task_move.append([tk, vid, qp, rk, tid, target, "pending", "claimed", "converted", "withdrawn"])
        else:
            w.task_del.append([tk, vid, qp, rk, tid])
        rv.task = target
        return
    reactivated = rules.is_reactivated(v, room, s)
    dwell_ms = rules.dwell(rv, clock, s)
    prio = rules.priority(rv, tier_new, reactivated, s)
    score = rules.queue_score(prio, dwell_ms)
    if moved:  # a new task
        rec = TaskRec(target, clock, rv.task_at, *_display(rv, tier_new, reactivated, dwell_ms, prio))
        w.task_new.append([tk, vid, qp + target, rk, keys.sent_log(shop), tid, vid, score,
                           clock - s.cooldown_ms, target, pack_task(rec)])
        rv.task = target
    else:
        shown = _wire.encode([rv.task_at, *_display(rv, tier_new, reactivated, dwell_ms, prio)])
        w.task_prio.append([tk, vid, qp, tid, score, shown])


_wire = msgspec.msgpack.Encoder()


def encode_wire(d: dict[str, Any]) -> bytes:
    return _wire.encode(d)
