"""A scored batch's effects as the Redis writes ``scoring/lua/apply.lua`` makes: keys, commands, wire.

``scoring.engine`` says what changes in its own terms (``Effects``); this module says where
each change lives in Redis (``fanops.keys``) and how it travels to the script: a msgpack map
whose many small writes are flat arrays of fixed stride, each key named once in ``k`` (by its
index), so that Lua unpacks one table per kind instead of one per write; packed states travel
as extra script arguments (Redis's msgpack decoder has no binary type), named by index.  The
map's layout is described at the top of apply.lua.

Where a viewer's time-index entry lives is decided here too: due before its partition's due
front, in the ``due`` zset; at or after it, in the list of a day (``keys.due_far``), which the
viewer's state records (``ViewerState.due_day``) before it is packed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from fanops import keys
from fanops.scripts import script_source
from fanops.state import ViewerState, pack
from scoring.batch_reads import Promoted
from scoring.effects import Effects
from scoring.engine import MOVABLE

TRANSITIONS_MAXLEN = 100_000  # the tier-transition stream keeps about this many entries
FEED_KEEP = 20  # entries a room's host-screen list keeps


@dataclass
class ScoredBatch:
    """A batch read and scored, not written yet: what ``Worker.write`` sends to apply.lua."""

    wire: dict[str, Any]  # the write set as apply.lua takes it, but for the entries it acknowledges
    blobs: list[bytes]  # the packed states the wire names by index
    dropped: int  # events of archived rooms not scored: the repeats, and late ones counted as applied
    clock: int  # the shop clock the time indexes were read up to (what a time pass has moved to)
    time_full: bool  # more viewers were due than one batch takes: another time pass follows
    repeats: int = 0  # of ``dropped``: repeats of archived shows' events, counted as duplicates
    # archived rooms' open tasks of viewers whose tier the batch changed: rescored once it is written
    # (``scoring.retier.archived_pairs``; their records are in the archive, their cards hold the counts)
    retier_archived: list[tuple[str, str]] = field(default_factory=list)


class _Wire:
    """The map being built: its key table, its packed states and its arrays by kind."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.kidx: dict[str, int] = {}
        self.blobs = blobs
        self.out: dict[str, list[Any]] = {kind: [] for kind in (
            "cas", "hset", "hincr", "hfloat", "hmax", "zadd", "zrem", "xadd", "lpush", "pcount", "task_new",
            "task_move", "task_prio", "task_del", "scount", "zremrange", "task_withdraw", "rpush", "lpop")}

    def key(self, k: str) -> int:
        i = self.kidx.get(k)
        if i is None:
            i = self.kidx[k] = len(self.kidx) + 1
        return i

    def ref(self, b: bytes) -> int:
        self.blobs.append(b)
        return len(self.blobs) + 1  # ARGV[1] is the map itself


def to_wire(fx: Effects, shop: str, blobs: list[bytes], fronts: dict[int, int] | None = None,
            moved_fronts: dict[int, int] | None = None, promote: list[Promoted] | None = None,
            late_read: list[list[Any]] | None = None, *, rules_version: int,
            archive_epoch: int) -> dict[str, Any]:
    """The map for ``apply.lua`` of the batch's effects ``fx`` in ``shop``; packed states go to
    ``blobs``. ``fronts``: each partition's due front for the batch (0 or absent: none, every
    due viewer in the zset), ``moved_fronts`` the ones that move forward; ``promote``: the day
    lists whose head the batch took; ``late_read``: what it read of the late-window index (for
    apply.lua to check); ``rules_version``: the rules it was scored under (apply.lua refuses it if
    a rebuild under other rules ran since); ``archive_epoch``: the shop's as the batch read it first
    (apply.lua refuses it if a show was archived or opened again since: what it read of the show's
    data may be half from before and half from after)."""
    w = _Wire(blobs)
    _states(w, fx, shop, fronts or {})
    _counters(w, fx, shop)
    _indexes(w, fx, shop)
    _tasks(w, fx, shop)
    _lists(w, fx, shop)
    st = keys.stats(shop)
    for part, front in (moved_fronts or {}).items():
        w.out["hmax"] += (w.key(st), keys.due_front_field(part), front)
    for part, lk, day, vs in promote or []:
        w.out["lpop"].append([lk, len(vs), keys.due_days(shop, part), day])
    wire: dict[str, Any] = {"k": list(w.kidx), **w.out, "late_check": fx.late_check, "late_read": late_read or [],
                            "clock_keys": [keys.clock_min(shop), keys.clock_max(shop)] if fx.late_check else []}
    if fx.task_prio:
        wire["task_qp"] = keys.queue(shop, "")
    if fx.sent_read:
        wire["sent_check"] = [keys.sent_log(shop), *(x for vm in fx.sent_read.items() for x in vm)]
    wire["epoch"] = archive_epoch
    wire["rules_version"] = rules_version
    return wire


def _states(w: _Wire, fx: Effects, shop: str, fronts: dict[int, int]) -> None:
    """The viewers' time-index entries, then their states (compare-and-set against the state
    read), and the (room, viewer) records."""
    for vid, v, due, had_due, known, taken in fx.due:
        _index_due(w, shop, vid, v, due, had_due, known, taken, fronts)
    cas = w.out["cas"]
    ref = w.ref
    vk = w.key(keys.viewers(shop))
    for vid, old, new in fx.viewers:
        cas += (vk, vid, ref(old) if old else False, ref(pack(new)))
    hset = w.out["hset"]
    rk: dict[str, int] = {}
    for room, vid, b in fx.records:
        k = rk.get(room)
        if k is None:
            k = rk[room] = w.key(keys.room_viewers(shop, room))
        hset += (k, vid, ref(b))


def _index_due(w: _Wire, shop: str, vid: str, v: ViewerState, due: int | None, had_due: int | None,
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
        w.out["zadd"] += (w.key(keys.due(shop, part)), vid, due, False)
        return
    if was_near and known:
        w.out["zrem"] += (w.key(keys.due(shop, part)), vid)
    if due is None:
        return
    day = due // keys.DAY_MS
    if v.due_day < 0 or day < v.due_day:
        w.out["rpush"] += (w.key(keys.due_far(shop, part, day)), vid, w.key(keys.due_days(shop, part)), day)
        v.due_day = day


def _counters(w: _Wire, fx: Effects, shop: str) -> None:
    """Counter deltas (the shop's, its tiers, its rooms' and their minutes'), sums, the shop clock,
    and the rooms' orders (each counted once)."""
    hincr, key = w.out["hincr"], w.key
    for k, counts in ((keys.stats(shop), fx.shop_counts), (keys.tiers(shop), fx.tier_counts)):
        for f, v in counts.items():
            if v:
                hincr += (key(k), f, v)
    for (room, f), v in fx.room_counts.items():
        if v:
            hincr += (key(keys.room(shop, room)), f, v)
    for (room, f), v in fx.minute_counts.items():
        if v:
            hincr += (key(keys.room_minutes(shop, room)), f, v)
    hfloat = w.out["hfloat"]
    for (room, f), x in fx.room_sums.items():
        if x:
            hfloat += (key(keys.room(shop, room)), f, x)
    w.out["hmax"] += (key(keys.stats(shop)), "clock", fx.clock)
    scount = w.out["scount"]
    for room, oid in fx.orders:
        scount += (key(keys.room_orders(shop, room)), oid, key(keys.room(shop, room)), "orders")


def _indexes(w: _Wire, fx: Effects, shop: str) -> None:
    """The sorted-set indexes: the shop clock's values by second, the rooms' present viewers, the
    lurk and late-window pairs (by the viewer's partition), the rooms' last and first events."""
    zadd, zrem, key = w.out["zadd"], w.out["zrem"], w.key
    cmin, cmax = key(keys.clock_min(shop)), key(keys.clock_max(shop))
    for sec, (lo, hi) in fx.seconds.items():
        zadd += (cmin, sec, lo, "LT", cmax, sec, hi, "GT")
    for room, vid, score in fx.present:
        zadd += (key(keys.present(shop, room)), vid, score, False)
    for room, vid in fx.present_gone:
        zrem += (key(keys.present(shop, room)), vid)
    for index, added, gone in ((keys.lurk, fx.lurk, fx.lurk_gone),
                               (keys.late_window, fx.late_window, fx.late_window_gone)):
        for room, vid, score in added:
            zadd += (key(index(shop, keys.part_of(vid))), keys.pair(room, vid), score, False)
        for room, vid in gone:
            zrem += (key(index(shop, keys.part_of(vid))), keys.pair(room, vid))
    rooms, first = key(keys.rooms(shop)), key(keys.room_first(shop))
    for room, ts in fx.room_last.items():
        zadd += (rooms, room, ts, "GT")
    for room, ts in fx.room_first.items():
        zadd += (first, room, ts, "LT")
    for room, f, since in fx.rooms_on:
        pk = keys.present(shop, room)
        w.out["pcount"] += (key(pk), key(keys.room_minutes(shop, room)), f, since)
        w.out["zremrange"].append([pk, since])


def _tasks(w: _Wire, fx: Effects, shop: str) -> None:
    """The (room, viewer) tasks' changes, as apply.lua's task arrays (keys.tasks, keys.queue)."""
    qp, sent, made = keys.queue(shop, ""), keys.sent_log(shop), keys.made(shop)
    out = w.out
    for room, vid, target, score, min_sent, rec in fx.task_new:
        out["task_new"].append([keys.tasks(shop, room), vid, qp + target, keys.room(shop, room), sent,
                                keys.pair(room, vid), vid, score, min_sent, target, w.ref(rec), made])
    for room, vid, target in fx.task_move:
        out["task_move"].append([keys.tasks(shop, room), vid, qp, keys.room(shop, room), keys.pair(room, vid),
                                 target, *MOVABLE])
    prio = out["task_prio"]
    hash_ref: dict[str, int] = {}  # room -> its task hash's index in the key table
    for room, vid, score, shown in fx.task_prio:  # many a batch: flat, each room's task hash named once
        k = hash_ref.get(room)
        if k is None:
            k = hash_ref[room] = w.key(keys.tasks(shop, room))
        prio += (k, vid, keys.pair(room, vid), score, w.ref(shown))
    for room, vid in fx.task_del:
        out["task_del"].append([keys.tasks(shop, room), vid, qp, keys.room(shop, room), keys.pair(room, vid)])
    for room, vid, ts in fx.task_withdraw:
        out["task_withdraw"].append([keys.tasks(shop, room), vid, qp, keys.room(shop, room),
                                     keys.pair(room, vid), ts])
    # the other kinds: the same arrays, on the kind's task hash and counters (keys.kind_tasks)
    for vid, op, kind, occ, *rest in fx.kind_tasks:
        tk, ck, f, tid = (keys.kind_tasks(shop, kind), keys.kind_counts(shop, kind), f"{occ}:{vid}",
                          keys.kind_task_id(kind, occ, vid))
        if op == "new":
            target, score, min_sent, rec = rest
            out["task_new"].append([tk, f, qp + target, ck, sent, tid, vid, score, min_sent,
                                    target, w.ref(rec), made])
        elif op == "move":
            out["task_move"].append([tk, f, qp, ck, tid, rest[0], *MOVABLE])
        else:
            out["task_del"].append([tk, f, qp, ck, tid])


def _lists(w: _Wire, fx: Effects, shop: str) -> None:
    """The host screen's lists and the tier-transition stream."""
    lpush = w.out["lpush"]
    for room, feed, entry in fx.feeds:
        lpush += (w.key(keys.room_feed(shop, room, feed)), entry, FEED_KEEP)
    tk = keys.transitions(shop)
    for vid, room, frm, to, ts, cause, version, name in fx.transitions:
        w.out["xadd"].append([tk, TRANSITIONS_MAXLEN, "viewer", vid, "room", room, "from", frm, "to", to,
                              "ts", ts, "cause", cause, "rules_version", version, "name", name])


_encoder = msgspec.msgpack.Encoder()


def encode_wire(d: dict[str, Any]) -> bytes:
    """The map as ``apply.lua``'s ARGV[1]."""
    return _encoder.encode(d)


def apply_script() -> str:
    """The text of ``apply.lua``, with the library it calls before it (``apply_reads.lua``)."""
    return script_source("scoring", "apply_reads") + script_source("scoring", "apply")
