"""Whole-shop recomputation: the settings what-if, and the rebuild that applies new thresholds.

Both walk every known viewer of the shop (HSCAN in chunks): they run on an
operator's request, never on a dashboard refresh.  The rebuild holds the
shop's rebuild lock, under which ``apply.lua`` refuses batches, so that the
counters it writes are exact; workers wait for it and go on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import cast

import msgspec
import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from fanops import keys, read, replies, rules_store
from fanops.config import Config
from fanops.rules_settings import RuleSettings
from fanops.scripts import script_source
from fanops.state import (
    TASK_KINDS,
    TIERS,
    pack,
    pack_task,
    past_numbers,
    unpack_room_viewer,
    unpack_task,
    unpack_viewer,
)
from scoring import kind_prune, kinds, rules
from scoring.followups import late_moment, lurk_time

log = logging.getLogger(__name__)
CHUNK = 2000
LOCK_TTL_S = 600


def rebuild_lock(shop: str) -> str:
    return f"{keys.tag(shop)}:rebuild"


def _clock(r: redis.Redis, shop: str) -> int:
    return int(r.hget(keys.stats(shop), "clock") or 0)


def what_if(r: redis.Redis, shop: str, new: RuleSettings) -> dict[str, dict[str, int]]:
    """Tier counts of the shop today and under ``new`` thresholds, at the current shop clock."""
    today, _ = rules_store.load(r, shop)
    clock = _clock(r, shop)
    a: Counter[str] = Counter({t: 0 for t in TIERS})
    b: Counter[str] = Counter({t: 0 for t in TIERS})
    for _vid, blob in r.hscan_iter(keys.viewers(shop), count=CHUNK):
        v = unpack_viewer(blob)
        a[rules.tier(v, clock, today)] += 1
        b[rules.tier(v, clock, new)] += 1
    return {"today": dict(a), "new": dict(b)}


def _rebuild_lurk(r: redis.Redis, shop: str, clock: int, s: RuleSettings) -> None:
    """Re-time the lurk index under the current dwell threshold: each (room, viewer) in it is due
    at first + threshold (the scorer rewrites an entry only when its pair changes, so a new
    threshold must be carried into the index here)."""
    p = r.pipeline(transaction=False)
    for part in range(keys.PARTITIONS):
        p.zrange(keys.lurk(shop, part), 0, -1)
    wanted: dict[tuple[int, str], list[str]] = defaultdict(list)  # (partition, room) -> viewers
    for part, members in enumerate(cast("list[list[bytes]]", p.execute())):
        for m in members:
            room, vid = keys.split_pair(m.decode())
            wanted[(part, room)].append(vid)
    if not wanted:
        return
    p = r.pipeline(transaction=False)
    for (_part, room), vids in wanted.items():
        p.hmget(keys.room_viewers(shop, room), vids)
    got = cast("list[list[bytes | None]]", p.execute())
    p = r.pipeline(transaction=False)
    for ((part, room), vids), blobs in zip(wanted.items(), got, strict=True):
        for vid, b in zip(vids, blobs, strict=True):
            if not b:
                continue  # an archived show's task held back by a sent follow-up: kept (see README)
            rv = unpack_room_viewer(b)
            lt = lurk_time(rv, clock, s) if not rv.task else None
            # past its moment under the new threshold: due now, so that the next batch takes the
            # pair from the index and decides (its task, or its removal)
            p.zadd(keys.lurk(shop, part), {keys.pair(room, vid): lt if lt is not None else clock})
    p.execute()


def late_window_from(r: redis.Redis, shop: str, src: str, part: int, s: RuleSettings) -> int:
    """Put the pairs of the zset ``src`` (of partition ``part``) that belong in the late-window index
    under settings ``s`` there, by their dwell moment (``followups.late_moment``), and take the others
    out of it. Returns how many pairs it looked at."""
    lk = keys.late_window(shop, part)
    members = [m.decode() for m in cast(replies.Members, r.zrange(src, 0, -1))]
    for i in range(0, len(members), CHUNK):
        pairs = [keys.split_pair(m) for m in members[i:i + CHUNK]]
        p = r.pipeline(transaction=False)
        for room, vid in pairs:
            p.hget(keys.room_viewers(shop, room), vid)
            p.hget(keys.viewers(shop), vid)
        got = p.execute()
        p = r.pipeline(transaction=False)
        for j, (room, vid) in enumerate(pairs):
            rb, vb = got[2 * j], got[2 * j + 1]
            g = late_moment(unpack_room_viewer(rb), unpack_viewer(vb), s) if rb and vb else None
            if g is None:
                p.zrem(lk, keys.pair(room, vid))
            else:
                p.zadd(lk, {keys.pair(room, vid): g})
        p.execute()
    return len(members)


def _rebuild_late_window(r: redis.Redis, shop: str, s: RuleSettings) -> None:
    """Re-score the late-window index under the current thresholds: its pairs are there by their
    dwell moment (first + threshold), and some may no longer belong."""
    for part in range(keys.PARTITIONS):
        late_window_from(r, shop, keys.late_window(shop, part), part, s)


def _rebuild_present(r: redis.Redis, shop: str, clock: int, s: RuleSettings, archived: set[str]) -> None:
    """Fill each open room's present index back from its room records under the current window
    (the scorer keeps only viewers within the window in it, and the window may have grown)."""
    since = clock - s.present_ms
    rooms = [m.decode() for m in cast(replies.Members, r.zrangebyscore(keys.rooms(shop), since, "+inf"))]
    for room in rooms:
        if room in archived:
            continue
        pk = keys.present(shop, room)
        batch: dict[str, int] = {}
        for vid, b in r.hscan_iter(keys.room_viewers(shop, room), count=CHUNK):
            rv = unpack_room_viewer(b)
            if rv.last >= since and rv.last_other >= 0 and rv.last_leave <= rv.last_other:
                batch[vid.decode()] = rv.last
            if len(batch) >= CHUNK:
                r.zadd(pk, batch)
                batch = {}
        if batch:
            r.zadd(pk, batch)


def _rescore_kinds(r: redis.Redis, shop: str, s: RuleSettings) -> int:
    """Give the open tasks of the kinds besides ``lingered`` their kind's priority under ``s`` (a
    ``prio_<kind>`` setting changed): the queue's order follows at once.  Returns the tasks moved."""
    script = r.register_script(script_source("scoring", "task_prio"))
    n = 0
    for kind in TASK_KINDS[1:]:
        prio, tk = s.kind_priority(kind), keys.kind_tasks(shop, kind)
        p = r.pipeline(transaction=False)
        for f, b in r.hscan_iter(tk, count=CHUNK):
            rec = unpack_task(b)
            if rec.state not in ("pending", "claimed") or rec.priority == prio:
                continue
            occ, vid = f.decode().split(":", 1)
            new = pack_task(msgspec.structs.replace(rec, priority=prio))
            script(keys=[tk, keys.queue(shop, rec.state)], client=p, args=[
                f, b, new, rules.queue_score(prio, 0), keys.kind_task_id(kind, int(occ), vid)])
            if len(p) >= CHUNK:
                n += sum(int(x) for x in p.execute())
        n += sum(int(x) for x in p.execute())
    return n


def _rescore_lingered(r: redis.Redis, shop: str, s: RuleSettings) -> int:
    """Give the open ``lingered`` tasks their priority under ``s`` (a weight or a bonus changed):
    the counts their card shows, the viewer's tier now, and their room's reactivated flag (the
    card's, once the room is archived); the dwell part of the queue score stays the one the card
    shows.  Compare-and-set (``task_prio.lua``): a task an operator or a scorer moved since it was
    read is left to them.  Returns the tasks moved."""
    n = 0
    for state in ("pending", "claimed"):
        members = [m.decode() for m in cast(replies.Members, r.zrange(keys.queue(shop, state), 0, -1))]
        n += rescore_pairs(r, shop, [keys.split_pair(m) for m in members if m[:1].isdigit()], s, state)
    return n


def rescore_pairs(r: redis.Redis, shop: str, pairs: list[tuple[str, str]], s: RuleSettings,
                  state: str | None = None) -> int:
    """The lingered tasks of ``pairs`` that are open (in ``state`` only, if given): their priority
    and tier from their card's counts and the viewer's state now (``_rescore_lingered``; and the
    worker's, for the archived rooms of a viewer whose tier a batch changed). Returns the tasks moved."""
    script = r.register_script(script_source("scoring", "task_prio"))
    n = 0
    for i in range(0, len(pairs), CHUNK):
        chunk = pairs[i:i + CHUNK]
        p = r.pipeline(transaction=False)
        for room, vid in chunk:
            p.hget(keys.tasks(shop, room), vid)
            p.hget(keys.viewers(shop), vid)
        got = p.execute()
        for j, (room, vid) in enumerate(chunk):  # the writes go on p, executed once a chunk
            b, vb = got[2 * j], got[2 * j + 1]
            if not b or not vb:
                continue
            rec, v = unpack_task(b), unpack_viewer(vb)
            if rec.state not in ((state,) if state else ("pending", "claimed")):
                continue
            reactivated = rules.is_reactivated(v, room, s) if room in v.rooms else rec.reactivated
            prio = rules.priority(rec, v.tier, reactivated, s)
            if (round(prio, 2), v.tier, reactivated) == (rec.priority, rec.tier, rec.reactivated):
                continue
            new = pack_task(msgspec.structs.replace(rec, priority=round(prio, 2), tier=v.tier,
                                                    reactivated=reactivated))
            script(keys=[keys.tasks(shop, room), keys.queue(shop, rec.state)], client=p, args=[
                vid, b, new, rules.queue_score(prio, rec.dwell_ms), keys.pair(room, vid)])
        n += sum(int(x) for x in p.execute())
    return n


@dataclass
class _Recount:
    """The shop's viewers counted again under the current settings."""

    shop_tiers: Counter[str]
    room_tiers: dict[str, Counter[str]]
    room_react: Counter[str]
    dues: list[tuple[str, int, int]]  # viewer, due, the day list it goes in (-1: the due zset)
    updates: list[tuple[str, bytes]]  # viewers whose tier or day list changed: their new state
    n: int


def _recount(r: redis.Redis, shop: str, clock: int, s: RuleSettings, room_ids: dict[int, str],
             front: int) -> _Recount:
    """Every viewer's tier (shop and rooms, archived rooms too), the rooms' reactivated viewers, and
    each viewer's next tier change, listed by the due front ``front`` (the due zset before it, the
    list of the day of its due after it)."""
    rc = _Recount(Counter({t: 0 for t in TIERS}), defaultdict(Counter), Counter(), [], [], 0)
    for vid_b, blob in r.hscan_iter(keys.viewers(shop), count=CHUNK):
        v = unpack_viewer(blob)
        t = rules.tier(v, clock, s)
        rc.shop_tiers[t] += 1
        for room in v.rooms:
            rc.room_tiers[room][t] += 1
            if rules.is_reactivated(v, room, s):
                rc.room_react[room] += 1
        for no in past_numbers(v):  # archived rooms: their viewers' tiers are still counted
            if no in room_ids:
                rc.room_tiers[room_ids[no]][t] += 1
        due = kinds.next_change(v, clock, s, None)
        if kinds.stale(v, clock, s):
            due = clock  # its follow-up kinds are redone under the new settings by the next time pass
        vid = vid_b.decode()
        listed = due // keys.DAY_MS if due is not None and due >= front else -1  # the day list it goes to
        if due is not None:
            rc.dues.append((vid, due, listed))
        if v.tier != t or v.due_day != listed:
            v.tier = t
            v.due_day = listed
            v.seq += 1
            rc.updates.append((vid, pack(v)))
        rc.n += 1
    return rc


def _queue_counts(p: Pipeline, r: redis.Redis, shop: str, rc: _Recount, archived: set[str]) -> None:
    """Queue on ``p`` the shop's tier counts and its rooms' (and their reactivated viewers')."""
    p.delete(keys.tiers(shop))
    tier_counts: dict[FieldT, EncodableT] = {t: rc.shop_tiers[t] for t in TIERS}
    p.hset(keys.tiers(shop), mapping=tier_counts)
    rooms = set(rc.room_tiers) | {m.decode() for m in cast(replies.Members, r.zrange(keys.rooms(shop), 0, -1))}
    for room in rooms:
        room_counts: dict[FieldT, EncodableT] = {f"t:{t}": rc.room_tiers[room][t] for t in TIERS}
        if room not in archived:  # an archived room's facts are those it closed with (its archive)
            room_counts["reactivated"] = rc.room_react[room]
        p.hset(keys.room(shop, room), mapping=room_counts)


def _queue_time_index(p: Pipeline, r: redis.Redis, shop: str, rc: _Recount, front: int) -> None:
    """Queue on ``p`` the time index written anew: due before the front in the zset, later in day
    lists; every partition's due front set to ``front``."""
    for part in range(keys.PARTITIONS):
        days = cast(replies.Members, r.zrange(keys.due_days(shop, part), 0, -1))
        for k in (keys.due(shop, part), keys.due_days(shop, part), *(keys.due_far(shop, part, int(d)) for d in days)):
            p.delete(k)  # one key a DEL: a cluster client's pipeline takes no DEL of several
        p.hset(keys.stats(shop), keys.due_front_field(part), front)
    for i in range(0, len(rc.dues), CHUNK):
        by_part: dict[int, dict[str, int]] = {}
        far: dict[tuple[int, int], list[str]] = {}
        for vid, due, listed in rc.dues[i:i + CHUNK]:
            if listed < 0:
                by_part.setdefault(keys.part_of(vid), {})[vid] = due
            else:
                far.setdefault((keys.part_of(vid), listed), []).append(vid)
        for part, mapping in by_part.items():
            p.zadd(keys.due(shop, part), mapping)
        for (part, day), vids in far.items():
            p.rpush(keys.due_far(shop, part, day), *vids)
            p.zadd(keys.due_days(shop, part), {str(day): day})


def rebuild(r: redis.Redis, shop: str, holder: str = "rebuild", cfg: Config | None = None) -> bool:
    """Recount tiers (shop and rooms), reactivated viewers and the time index under the
    current settings.  Returns False if another process holds the lock (it is doing it).
    With ``cfg``, the pruned kind tasks the new settings drop are first put back from the
    ledger (``kind_prune.restore_dropped``: once, by the one process that rebuilds)."""
    lock = rebuild_lock(shop)
    if not r.set(lock, holder, nx=True, ex=LOCK_TTL_S):
        return False
    started = time.monotonic()
    try:
        if cfg is not None:
            kind_prune.restore_dropped(r, cfg, shop)  # before the redo drops them from the viewers' fol
        s, version = rules_store.load(r, shop)
        clock = _clock(r, shop)
        room_ids = read.archived_room_ids(r, shop)
        front = keys.due_front(clock)
        rc = _recount(r, shop, clock, s, room_ids, front)
        archived = set(room_ids.values())
        p = r.pipeline(transaction=False)
        _queue_counts(p, r, shop, rc, archived)
        _queue_time_index(p, r, shop, rc, front)
        for i in range(0, len(rc.updates), CHUNK):
            p.hset(keys.viewers(shop), mapping=dict(rc.updates[i:i + CHUNK]))
        p.hset(keys.stats(shop), "rules_applied", version)
        p.execute()
        _rebuild_lurk(r, shop, clock, s)
        _rebuild_late_window(r, shop, s)
        _rebuild_present(r, shop, clock, s, archived)
        _rescore_kinds(r, shop, s)
        _rescore_lingered(r, shop, s)
        log.info("rebuilt %s under rules version %d: %d viewers in %.1f s",
                 shop, version, rc.n, time.monotonic() - started)
        return True
    finally:
        if r.get(lock) == holder.encode():
            r.delete(lock)
