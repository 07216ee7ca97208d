"""Bring a shop's Redis data written by an earlier layout up to the current one, once.

Layout 2 (this one) splits a shop's events and time indexes into ``keys.PARTITIONS``
partitions by viewer, and packs each follow-up task into a field of its room's task
hash.  Partition 0 keeps layout 1's key names, so its single stream and indexes are
read as partition 0: what is left to do is to move index entries of viewers of other
partitions to their own index, and to repack layout 1's task hashes
(``fo:{shop}:task:<room>:<viewer>``).  Layout 3 gives each room archived before it a
shop-wide number (``keys.room_nos``), by which viewers' states then keep it compactly
(``fanops.state.fold``).  Layout 4 keeps applied stream entries out of Redis: they are in
the scorers' applied-event log (``scoring.eventlog``), and a scorer trims them from the streams;
entries an earlier version applied are only in the streams, so they are written to the log first
(else the archive of a show that ran across the upgrade would miss them).  Safe to run from
several scorers at once (every step is a move or a set-if-absent that a second run finds done,
and an entry logged twice is read once); the shop's ``stats`` hash records ``layout`` when it is
over.  Layout 5 replaces the open-lurk index (every pair past its dwell moment with no task, by
the end of its presence window) with the late-window index (the few pairs a late clock value
would still change, by their dwell moment: ``keys.late_window``), worked out from each pair's
records.  Stop scorers of an earlier version before starting these: an entry one of them applies
after the upgrade is not logged, and would be trimmed.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import redis

from fanops import keys, replies, rules_store
from fanops.state import TaskRec, pack_task
from scoring import eventlog
from scoring.recompute import late_window_from

log = logging.getLogger(__name__)

LAYOUT = 5
CHUNK = 1000


def ensure_layout(r: redis.Redis, shop: str, event_log: eventlog.EventLogWriter) -> None:
    """Migrate ``shop`` to the current layout unless its stats say it is there."""
    if int(cast("bytes | None", r.hget(keys.stats(shop), "layout")) or 0) >= LAYOUT:
        return
    moved = _split_indexes(r, shop)
    tasks = _repack_tasks(r, shop)
    numbered = number_archived_rooms(r, shop)
    logged = log_stream_entries(r, shop, event_log)
    late = late_windows(r, shop)
    r.hset(keys.stats(shop), "layout", LAYOUT)
    if moved or tasks or numbered or logged or late:
        log.info("shop %s brought to data layout %d: %d index entries moved to their partition, "
                 "%d follow-up tasks repacked, %d archived rooms numbered, %d stream entries written to "
                 "the applied-event log, %d open-lurk entries looked at for the late-window index",
                 shop, LAYOUT, moved, tasks, numbered, logged, late)


def late_windows(r: redis.Redis, shop: str) -> int:
    """Layout 5: put the pairs of the open-lurk index that a late clock value would still change
    in the late-window index, by their dwell moment under the shop's rules, and drop the old
    index. The pairs it left out never needed it (no task possible, or one whose state a late
    value cannot change), and pairs that were not in it are not either."""
    s, _version = rules_store.load(r, shop)
    n = 0
    for part in range(keys.PARTITIONS):
        n += late_window_from(r, shop, keys.open_lurk(shop, part), part, s)
        r.delete(keys.open_lurk(shop, part))
    return n


def log_stream_entries(r: redis.Redis, shop: str, event_log: eventlog.EventLogWriter) -> int:
    """Write the entries of the shop's streams that a scorer has applied (acknowledged) to the
    applied-event log (layout 4); the others are logged by whoever applies them."""
    n = 0
    streams = keys.streams(shop)
    for stream, prog in zip(streams, eventlog.group_progress(r, streams), strict=True):
        if prog is None:
            continue  # no stream or no scorers' group: nothing applied
        last_id = f"{prog[0][0]}-{prog[0][1]}"
        pending = {p["message_id"] for p in cast("list[dict[str, Any]]",
                                                 r.xpending_range(stream, keys.GROUP, "-", last_id, 10**9))}
        start = "-"
        while True:
            got = cast("list[tuple[bytes, dict[bytes, bytes]]]", r.xrange(stream, start, last_id, count=CHUNK))
            if not got:
                break
            applied = [(stream, i, f) for i, f in got if i not in pending]
            event_log.write(shop, applied)
            n += len(applied)
            start = "(" + got[-1][0].decode()
    return n


def number_archived_rooms(r: redis.Redis, shop: str) -> int:
    """Give every archived room that has no number yet its number (oldest show first)."""
    rooms = [m.decode() for m in cast("list[bytes]", r.zrange(keys.rooms(shop), 0, -1))]
    p = r.pipeline(transaction=False)
    for rm in rooms:
        p.hmget(keys.room(shop, rm), ["archived", "no"])
    n = 0
    for rm, (archived, no) in zip(rooms, p.execute() if rooms else [], strict=True):
        if archived is None or no is not None:
            continue
        new = int(r.hincrby(keys.stats(shop), "room_no_seq", 1))
        if r.hsetnx(keys.room(shop, rm), "no", new):  # another scorer may have numbered it meanwhile
            r.hset(keys.room_nos(shop), str(new), rm)
            n += 1
    return n


def _split_indexes(r: redis.Redis, shop: str) -> int:
    moved = 0
    for name, viewer_of in ((keys.due, lambda m: m), (keys.lurk, lambda m: keys.split_pair(m)[1]),
                            (keys.open_lurk, lambda m: keys.split_pair(m)[1])):
        src = name(shop, 0)
        batch: list[tuple[str, float]] = []
        for m, sc in cast("list[tuple[bytes, float]]", r.zscan_iter(src, count=CHUNK)):
            member = m.decode("utf-8", "surrogateescape")
            if keys.part_of(viewer_of(member)) != 0:
                batch.append((member, sc))
        for i in range(0, len(batch), CHUNK):
            p = r.pipeline(transaction=True)
            for member, sc in batch[i:i + CHUNK]:
                p.zadd(name(shop, keys.part_of(viewer_of(member))), {member: sc})
                p.zrem(src, member)
            p.execute()
        moved += len(batch)
    return moved


_INTS = {"made_at", "task_at", "dwell_ms", "comments", "likes", "views", "carts", "shares", "follows",
         "lease_until", "claimed_at", "updated_at", "sent_at", "sent_clock", "skipped_at"}
_LISTS = {"said", "skus_viewed", "skus_carted"}


def task_from_fields(h: replies.Hash) -> TaskRec:
    """A layout-1 task hash as a packed task."""
    f = {k.decode(): v.decode("utf-8", "replace") for k, v in h.items()}
    args: dict[str, Any] = {}
    for name in TaskRec.__struct_fields__:
        if name not in f:
            continue
        v = f[name]
        if name in _INTS:
            args[name] = int(float(v or 0))
        elif name in _LISTS:
            args[name] = json.loads(v or "[]")
        elif name == "priority":
            args[name] = float(v or 0)
        elif name == "reactivated":
            args[name] = v == "1"
        else:
            args[name] = v
    args.setdefault("state", "pending")
    return TaskRec(**args)


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def _repack_tasks(r: redis.Redis, shop: str) -> int:
    n = 0
    pattern = _glob_escape(f"{keys.tag(shop)}:task:") + "*"
    for k in cast("list[bytes]", r.scan_iter(match=pattern, count=CHUNK)):
        h = cast(replies.Hash, r.hgetall(k))
        room, viewer = h.get(b"room"), h.get(b"viewer")
        if room is None or viewer is None:
            continue
        p = r.pipeline(transaction=True)
        p.hsetnx(keys.tasks(shop, room.decode()), viewer.decode(), pack_task(task_from_fields(h)))
        p.delete(k)
        p.execute()
        n += 1
    return n
