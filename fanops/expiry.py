"""Expiry (spec/tiers.md v1.1): a task still pending ``followup_expire_hours`` of wall time after it
was made becomes ``expired``, a final state.  ``expire_old`` is the scorer's periodic pass.

The making times (Redis's clock, when the scorer's batch made the task) are kept by minute of
wall time, ~14 bytes a task: each batch that makes tasks appends to its minute's list
(``keys.made_bucket``) a marker ``@<wall ms>`` and the ids of the tasks it made, each id split
in its viewer and the rest (a lingered task's room, a kind's occasion): ``=<rest>`` once, then
``.<viewer>`` a task (an id that does not end in its viewer is kept whole); the minutes are
listed in ``keys.made``.  A pass reads the minutes old enough, oldest first, each list
from its head up to the first marker not yet due, and hands every entry to ``lua/task.lua``'s
``age_out``, which decides on the task as it is then:

- pending (a lapsed claim is pending): expired;
- claimed, the claim still held: noted in ``keys.made_held``, looked at again every pass;
- settled, or gone: nothing (the entry just leaves).

``forget`` removes the viewer's entries with their tasks (an entry names its task, and so its
viewer); so a task made again for a viewer who comes back has its own entry only.  The kind
prune leaves a pruned task's entry, which finds it gone: the scorer never makes it again.  A task
the scorer deletes (``task_del``) and makes again keeps the earlier entry, as the zset did.

The entries looked at then leave their list, compare-and-trim (``lua/made_trim.lua``): of two
scorers' passes at once, one trims and the other finds the head changed and leaves it.  Every
step is safe to repeat, so a pass cut off half-way loses nothing: the next one does it again.

Upgrades: making times kept by versions before the buckets (``keys.task_made``, a zset) move into
them; open tasks made before tasks had a making time at all count as made at the first pass.
"""

from __future__ import annotations

import time
from typing import cast

import redis
from redis.client import Pipeline

from fanops import keys, replies, rules_store
from fanops.queue import where
from fanops.runtime import db
from fanops.scripts import script_source

EXPIRE_BATCH = 500  # entries read from a list, and tasks looked at, per pipeline
MINUTE_MS = 60_000


def marker(wall_ms: int) -> str:
    """The entry that precedes the ids of the tasks a batch made at ``wall_ms``."""
    return f"@{wall_ms}"


def parse_marker(item: bytes) -> int | None:
    """The wall ms of a marker; None for any other entry (neither a head nor a viewer starts with ``@``)."""
    return int(item[1:]) if item.startswith(b"@") else None


class Entries(list[tuple[bytes, bytes]]):
    """(task id, its marker) of the entries read, and where the reading stopped: ``cut`` items
    read, the marker and the ``=<rest>`` in force there."""

    cut = 0
    mark = b""
    head = b""


def entries(items: list[bytes], first: bytes = b"@0", cutoff: float = float("inf")) -> Entries:
    """The entries of a minute's list from its head, up to the first marker made after ``cutoff``."""
    out = Entries()
    out.mark = first
    for item in items:
        m = parse_marker(item)
        if m is not None:
            if m > cutoff:
                break
            out.mark, out.head = item, b""
        elif item[:1] == b"=":
            out.head = item
        elif item[:1] == b".":
            if out.head:  # (never without: a trim puts the head back in front)
                out.append((out.head[1:] + item[1:], out.mark))
        else:
            out.append((item, out.mark))
        out.cut += 1
    return out


def expire_old(r: redis.Redis, shop: str, now_ms: int | None = None) -> int:
    """Expire the tasks still pending ``followup_expire_hours`` of wall time (``now_ms``, default
    this machine's clock) after they were made; returns how many expired."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    _migrate(r, shop)
    _backfill(r, shop, now)
    settings, _ = rules_store.load(r, shop)
    cutoff = now - settings.expire_ms
    pass_ = _Pass(r, shop, now, settings.expire_ms)
    held = cast("dict[bytes, bytes]", r.hgetall(keys.made_held(shop)))
    n = pass_.age_out([(tid, mark) for tid, mark in held.items()], held=True)
    for m in cast(replies.Members, r.zrangebyscore(keys.made(shop), "-inf", cutoff)):
        n += pass_.bucket(int(m), cutoff)
    return n


class _Pass:
    def __init__(self, r: redis.Redis, shop: str, now: int, expire_ms: int) -> None:
        self.r, self.shop, self.now, self.expire_ms = r, shop, now, expire_ms
        self.task = r.register_script(script_source("fanops", "task"))
        self.trim = r.register_script(script_source("fanops", "made_trim"))

    def bucket(self, minute: int, cutoff: int) -> int:
        """A minute's list, from its head to the first marker made after ``cutoff``."""
        key, n = keys.made_bucket(self.shop, minute), 0
        first = marker(minute).encode()  # a list whose head is no marker: the minute's start
        while True:
            # two more than a batch: a trim puts back at most a marker and a head, so each read gets on
            items = cast("list[bytes]", self.r.lrange(key, 0, EXPIRE_BATCH + 1))
            if not items:  # gone (emptied): out of the minutes
                self.trim(keys=[key, keys.made(self.shop)], args=[minute, "", ""])
                return n
            got = entries(items, first, cutoff)
            cut = got.cut
            n += self.age_out(got, held=False, trim=(key, minute, items[:cut], got.mark, got.head))
            stop = cut < len(items)
            if stop or len(items) < EXPIRE_BATCH + 2:
                return n

    def age_out(self, due: list[tuple[bytes, bytes]], held: bool,
                trim: tuple[str, int, list[bytes], bytes, bytes] | None = None) -> int:
        """``age_out`` on each (task id, marker), then the trim of the entries read; the expired count."""
        p = db.slot_pipeline(self.r, keys.made(self.shop))  # one node: the shop's keys share its slot
        hk_held = keys.made_held(self.shop)
        for tid_b, mark in due:
            tid = replies.to_str(tid_b)
            try:
                hk, ck, fld, viewer = where(self.shop, tid)
            except ValueError:  # not a task id: dropped (and from the held claims)
                if held:
                    p.hdel(hk_held, tid_b)
                continue
            self.task(keys=[hk, ck, keys.sent_log(self.shop), hk_held],
                      args=["age_out", "", self.now, self.expire_ms, keys.queue(self.shop, ""), tid, "", 0, viewer,
                            "", "", fld, mark, "held" if held else ""], client=p)
        if trim is not None and trim[2]:
            key, minute, read, mark, head = trim
            self.trim(keys=[key, keys.made(self.shop)], args=[minute, mark, head, *read], client=p)
        res = p.execute() if len(p) else []
        return sum(1 for x in res if isinstance(x, list) and replies.to_str(x[1]) == "expired"
                   and replies.to_str(x[0]) == "ok")


def _push(p: Pipeline, shop: str, wall_ms: int, tids: list[bytes]) -> None:
    """Entries of tasks made at ``wall_ms`` into the minute's list, queued in ``p`` (a transaction),
    as apply.lua writes them: the marker, the ids that do not end in their viewer whole, then
    ``=<id less its viewer>`` once and ``.<viewer>`` a task of it."""
    whole: list[bytes] = []
    by_rest: dict[bytes, list[bytes]] = {}
    for tid in tids:
        try:
            viewer = where(shop, replies.to_str(tid))[3].encode()
        except ValueError:
            continue  # not a task id: nothing to expire
        if tid.endswith(viewer) and len(tid) > len(viewer):
            by_rest.setdefault(b"=" + tid[:-len(viewer)], []).append(b"." + viewer)
        else:
            whole.append(tid)
    items = [marker(wall_ms).encode(), *whole, *(x for rest, vs in by_rest.items() for x in (rest, *vs))]
    if len(items) == 1:
        return
    minute = wall_ms - wall_ms % MINUTE_MS
    for i in range(0, len(items), EXPIRE_BATCH):  # in one transaction: the chunks stay together
        p.rpush(keys.made_bucket(shop, minute), *items[i:i + EXPIRE_BATCH])
    p.zadd(keys.made(shop), {str(minute): minute}, nx=True)


def _migrate(r: redis.Redis, shop: str) -> None:
    """The making times of the version before the buckets (a zset, ``keys.task_made``) move into
    them, a chunk at a time, each chunk's entries and its removal in one transaction."""
    old = keys.task_made(shop)
    while got := cast("list[tuple[bytes, float]]", r.zrange(old, 0, EXPIRE_BATCH - 1, withscores=True)):
        by_ms: dict[int, list[bytes]] = {}
        for tid, ms in got:
            by_ms.setdefault(int(ms), []).append(tid)
        p = r.pipeline(transaction=True)
        for ms, tids in by_ms.items():
            _push(p, shop, ms, tids)
        p.zrem(old, *(tid for tid, _ in got))
        p.execute()


def _backfill(r: redis.Redis, shop: str, now: int) -> None:
    """Once per shop: open tasks made before tasks had a making time count as made ``now``, so that
    they expire too, a full ``followup_expire_hours`` after the upgrade (those with an entry
    already, made by this version before its first pass, keep theirs)."""
    if not r.hsetnx(keys.stats(shop), "task_made_since", now):
        return
    have = set(cast("list[bytes]", r.hkeys(keys.made_held(shop))))
    for m in cast(replies.Members, r.zrange(keys.made(shop), 0, -1)):
        have.update(tid for tid, _ in entries(cast("list[bytes]", r.lrange(keys.made_bucket(shop, int(m)), 0, -1))))
    tids: list[bytes] = []
    for s in ("pending", "claimed"):
        tids += [t for t in cast(replies.Members, r.zrange(keys.queue(shop, s), 0, -1)) if t not in have]
    if tids:
        p = r.pipeline(transaction=True)
        _push(p, shop, now, tids)
        p.execute()


__all__ = ["entries", "expire_old", "marker", "parse_marker"]
