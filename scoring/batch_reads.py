"""What a scorer's batch reads before it is scored: the shop clock and rules state, the viewers and
(room, viewer) records of its events, the time indexes (due, lurk, the far-due day lists and their
fronts), the late-window ranges its new clock values open, the past clock values it needs, and
the shop's archived rooms.

Reads only (``Worker.score`` puts them together): nothing here writes.  What a batch read is
checked again by ``scoring/lua/apply.lua`` when it writes (the viewers' compare-and-set, the
late-window ranges), so that reads racing another scorer's write never leave a wrong state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from fanops import keys, read
from fanops.rules_settings import RuleSettings
from fanops.schema import Event, event_type
from fanops.scripts import script_source
from fanops.state import room_viewer_first, room_viewer_may_be_held, unpack_room_viewer, unpack_viewer
from scoring.followups import start, wait_end

TIME_INDEX_LIMIT = 5000  # due / lurk entries taken per batch


class Reply:
    """The reply of one command queued on a ``Pipe``, once the pipe has run."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None


class Pipe:
    """A non-transactional pipeline whose commands each answer into their own ``Reply``, so that
    a reader names the replies it queued instead of counting their places in the pipeline."""

    def __init__(self, r: redis.Redis) -> None:
        self._p = r.pipeline(transaction=False)
        self._replies: list[Reply] = []

    def __call__(self, command: str, *args: Any, **kwargs: Any) -> Reply:
        getattr(self._p, command)(*args, **kwargs)
        reply = Reply()
        self._replies.append(reply)
        return reply

    def run(self) -> None:
        if self._replies:
            for reply, value in zip(self._replies, self._p.execute(), strict=True):
                reply.value = value


@dataclass(frozen=True)
class Head:
    """What a batch reads first: the shop's clock and rules state, and the viewers of its events."""

    clock: int
    rules_applied: int  # the rules version the shop's state was last rebuilt under
    rules_version: int  # the rules version saved
    room_no_seq: int
    archive_epoch: int  # moves when a room is opened again (``scoring.reopen``)
    fronts: list[int]  # each partition's due front (0: none yet)
    viewers: dict[str, bytes | None]


def clock_and_rules(r: redis.Redis, shop: str) -> tuple[int, int, int]:
    """The shop clock, the rules version its state was last rebuilt under, and the version saved."""
    p = Pipe(r)
    st = p("hmget", keys.stats(shop), ["clock", "rules_applied"])
    version = p("hget", keys.rules(shop), "version")
    p.run()
    clock, applied = st.value
    return int(clock or 0), int(applied or 0), int(version.value or 0)


def read_head(r: redis.Redis, shop: str, vids: list[str]) -> Head:
    p = Pipe(r)
    st = p("hmget", keys.stats(shop), ["clock", "rules_applied", "room_no_seq", "archive_epoch",
                                       *(keys.due_front_field(i) for i in range(keys.PARTITIONS))])
    version = p("hget", keys.rules(shop), "version")
    found = p("hmget", keys.viewers(shop), vids) if vids else None
    p.run()
    clock, applied, seq, epoch, *fronts = st.value
    return Head(int(clock or 0), int(applied or 0), int(version.value or 0), int(seq or 0), int(epoch or 0),
                [int(f or 0) for f in fronts], dict(zip(vids, found.value if found else [], strict=True)))


# a day list of far-due viewers whose head the batch takes into the due index:
# (partition, its list's key, the day, the viewers taken)
Promoted = tuple[int, str, int, list[str]]


@dataclass
class TimeReads:
    """What the time indexes give a batch: viewers whose tier may change by time, (room, viewer)
    pairs whose dwell may be reached, and the due fronts it moves."""

    due: list[str]
    lurk: list[tuple[str, str]]
    fronts: dict[int, int]  # partition -> its due front for this batch
    promote: list[Promoted]
    late_read: list[list[Any]]  # what the batch read of the late-window index (apply.lua checks it)
    full: bool  # an index had more entries due than one batch takes


def read_time_indexes(r: redis.Redis, shop: str, parts: list[int], old_fronts: list[int], clock0: int,
                      clock1: int, events: list[Event]) -> TimeReads:
    """The time indexes of the partitions ``parts`` up to ``clock1``, and the late-window pairs the
    batch's new clock values concern (above ``clock0``, and late ones below it)."""
    p = Pipe(r)
    due: list[Reply] = []
    lurk: list[Reply] = []
    for part in parts:
        due.append(p("zrangebyscore", keys.due(shop, part), "-inf", clock1, start=0, num=TIME_INDEX_LIMIT))
        lurk.append(p("zrangebyscore", keys.lurk(shop, part), "-inf", clock1, start=0, num=TIME_INDEX_LIMIT))
    # the first day with a list of far-due viewers, in each partition
    first_days = [p("zrange", keys.due_days(shop, part), 0, 0) for part in parts]
    # new clock values above clock0: the pairs of the late-window index they may concern
    # (another scorer's batch can have put some there, in a range this one's values open)
    ahead = queue_late_window(p, shop, [(clock0, clock1)] if clock1 > clock0 else [])
    seconds = queue_late_seconds(p, shop, events, clock0)
    p.run()
    late_read = late_window_read(ahead) + late_read_below(r, shop, seconds)
    heads = {part: (old_fronts[part], d.value) for part, d in zip(parts, first_days, strict=True)}
    fronts, promote = due_fronts(r, shop, heads, clock1)
    due_vids = [d.decode() for got in due for d in got.value] + [v for _p, _lk, _d, vs in promote for v in vs]
    pairs = [keys.split_pair(m.decode()) for got in lurk for m in got.value]
    pairs += [keys.split_pair(m) for g in late_read for m in g[3:]]
    full = any(len(got.value) >= TIME_INDEX_LIMIT for got in due + lurk) or bool(promote)
    return TimeReads(due_vids, pairs, fronts, promote, late_read, full)


LateSecond = tuple[list[int], Reply, Reply, Reply, Reply]


def queue_late_seconds(p: Pipe, shop: str, events: list[Event], clock0: int) -> list[LateSecond]:
    """The seconds of the batch's clock values below ``clock0`` (late: the shop may not have
    seen them), each with its values in order and, from the per-second clock index, its smallest
    and largest value and the largest values below the second's first late one."""
    secs: dict[int, list[int]] = {}
    for t in sorted({ev.ts for ev in events if ev.ts < clock0}):
        secs.setdefault(t // 1000, []).append(t)
    cmin, cmax = keys.clock_min(shop), keys.clock_max(shop)
    return [(ts, p("zscore", cmin, sec), p("zscore", cmax, sec),
             p("zrevrangebyscore", cmin, f"({ts[0]}", "-inf", start=0, num=1, withscores=True),
             p("zrevrangebyscore", cmax, f"({ts[0]}", "-inf", start=0, num=1, withscores=True))
            for sec, ts in secs.items()]


def late_read_below(r: redis.Redis, shop: str, seconds: list[LateSecond]) -> list[list[Any]]:
    """The late-window index's pairs that the batch's values below the clock may concern, as
    ``late_window_read`` gives them. A value is new unless it is its second's smallest or
    largest in the clock index, which keeps only those two: a value between them counts as
    new, and its range reaches back to the largest indexed value below it, so that it takes
    in at least the pairs it must."""
    ranges: list[list[int]] = []
    for ts, lo_s, hi_s, below_min, below_max in seconds:
        known = {int(x.value) for x in (lo_s, hi_s) if x.value is not None}
        new = [t for t in ts if t not in known]
        if new:
            before = [int(x.value[0][1]) for x in (below_min, below_max) if x.value]
            ranges.append([max(before, default=-1), new[-1]])
    if not ranges:
        return []
    ranges.sort()
    merged = [ranges[0]]
    for lo, hi in ranges[1:]:
        if lo < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    p = Pipe(r)
    queued = queue_late_window(p, shop, [(lo, hi) for lo, hi in merged])
    p.run()
    return late_window_read(queued)


LateRange = tuple[str, int, int, Reply]


def queue_late_window(p: Pipe, shop: str, ranges: list[tuple[int, int]]) -> list[LateRange]:
    """Queue on ``p`` the read of every partition's late-window index in each (lo, hi]."""
    out = []
    for lo, hi in ranges:
        for part in range(keys.PARTITIONS):
            k = keys.late_window(shop, part)
            out.append((k, lo, hi, p("zrangebyscore", k, f"({lo}", hi)))
    return out


def late_window_read(queued: list[LateRange]) -> list[list[Any]]:
    """``[[key, lo, hi, member...], ...]``: what each partition's late-window index held in
    each (lo, hi] (``queue_late_window``). For a new clock value t, the pairs whose moment lies
    in (the known value before t, t] (``followups.late_moment``): the batch rescores them, and
    apply.lua reads the same ranges again before it writes."""
    return [[k, lo, hi, *(m.decode() for m in got.value)] for k, lo, hi, got in queued]


def due_fronts(r: redis.Redis, shop: str, heads: dict[int, tuple[int, list[Any]]],
               clock: int) -> tuple[dict[int, int], list[Promoted]]:
    """The due front of each partition for this batch, and the far-due viewers it takes into the
    ``due`` zset now: up to TIME_INDEX_LIMIT viewers from the head of the first day's list the
    front passes in a partition. ``heads``: partition -> (its front, its first listed day read).
    The front moves to a day boundary ``DUE_NEAR_DAYS`` ahead of the clock, but never past the end
    of a day whose list is not taken yet; the viewers taken are scored as due, which writes their
    entry under the new front."""
    target = keys.due_front(clock)
    out: dict[int, int] = {}
    p = Pipe(r)
    lists: list[tuple[int, str, int, Reply]] = []
    for part, (old, got) in heads.items():
        front = max(old, target)
        if got:
            day = int(got[0])
            if day < target // keys.DAY_MS:
                front = max(old, (day + 1) * keys.DAY_MS)
                lk = keys.due_far(shop, part, day)
                lists.append((part, lk, day, p("lrange", lk, 0, TIME_INDEX_LIMIT - 1)))
        out[part] = front
    p.run()
    # an empty list: the day goes
    return out, [(part, lk, day, [v.decode() for v in got.value]) for part, lk, day, got in lists]


def read_viewers(r: redis.Redis, shop: str, vids: list[str]) -> dict[str, bytes | None]:
    if not vids:
        return {}
    return dict(zip(vids, cast("list[bytes | None]", r.hmget(keys.viewers(shop), vids)), strict=True))


def read_pairs(r: redis.Redis, shop: str, by_room: dict[str, list[str]]) -> dict[tuple[str, str], bytes | None]:
    """(room, viewer) records, room by room, in one round trip."""
    p = Pipe(r)
    got = _queue_pairs(p, shop, by_room)
    p.run()
    return _pairs_read(got)


_Queued = list[tuple[str, list[str], Reply]]


def _queue_pairs(p: Pipe, shop: str, by_room: dict[str, list[str]]) -> _Queued:
    """One HMGET a room of the records ``by_room`` names, queued on ``p``."""
    return [(room, vs, p("hmget", keys.room_viewers(shop, room), vs)) for room, vs in by_room.items()]


def _pairs_read(got: _Queued) -> dict[tuple[str, str], bytes | None]:
    return {(room, vid): b for room, vs, bs in got for vid, b in zip(vs, bs.value, strict=True)}


def read_records(r: redis.Redis, shop: str, events: list[Event], lurk: list[tuple[str, str]],
                 viewers: dict[str, bytes | None], due: Sequence[str] = ()
                 ) -> tuple[dict[tuple[str, str], bytes | None], int, dict[str, int]]:
    """The (room, viewer) records the batch needs: rooms with events, lurkers, and every room of a
    viewer whose consent changed (a task elsewhere may be made or withdrawn); the shop clock read
    after them; and the shop clock of each of their viewers' (and the ``due`` viewers') latest sent
    follow-up (the 7-day rule)."""
    pairs: dict[tuple[str, str], None] = {}
    for ev in events:
        pairs[(ev.room, ev.viewer.id)] = None
    for pair in lurk:
        pairs[pair] = None
    for ev in events:
        if event_type(ev) == "consent":
            b = viewers.get(ev.viewer.id)
            if b:
                for room in unpack_viewer(b).rooms:
                    pairs[(room, ev.viewer.id)] = None
    by_room: dict[str, list[str]] = {}
    for room, vid in pairs:
        by_room.setdefault(room, []).append(vid)
    p = Pipe(r)
    got = _queue_pairs(p, shop, by_room)
    # the shop clock again, after every record the batch read: another scorer may have applied
    # a batch since the first read, and the records may hold its events (or a task it made at
    # its clock). Scored at the older clock, they would lose what happened after it (a task
    # made at a later value would be taken back); the clock read last is at least theirs
    clock = p("hget", keys.stats(shop), "clock")
    # (and the viewers the time index brought: a kind task the clock makes is under the 7-day rule too)
    vids = list(dict.fromkeys([*(vid for _room, vid in pairs), *due]))
    sent = p("zmscore", keys.sent_log(shop), vids) if vids else None
    p.run()
    rvs = _pairs_read(got)
    sent_at = {} if sent is None else {
        vid: int(x) for vid, x in zip(vids, cast("list[float | None]", sent.value), strict=True) if x is not None}
    return rvs, int(clock.value or 0), sent_at


def past_clock(r: redis.Redis, shop: str, events: list[Event], rvs: dict[tuple[str, str], bytes | None],
               clock0: int, s: RuleSettings, sent_at: dict[str, int] | None = None) -> list[int]:
    """For every (room, viewer) of the batch whose dwell would have reached the threshold
    before the clock the batch starts from, the first shop-clock value at or after that
    moment (from the per-second clock index), so that events arriving late make the same
    follow-up tasks as events in order; and so for the end of the cooldown of a follow-up sent to
    a viewer of the batch (``sent_at``), from which a task it held back is looked for
    (``followups.start``), whether the record keeps it or the batch holds it now."""
    first: dict[tuple[str, str], int] = {}
    for ev in events:
        k = (ev.room, ev.viewer.id)
        if k not in first or ev.ts < first[k]:
            first[k] = ev.ts
    moments = set()
    horizon: dict[str, int] = {}  # each viewer's earliest dwell moment among the batch's pairs
    for k, b in rvs.items():
        f = first.get(k)
        if b:
            rf = room_viewer_first(b)
            f = rf if f is None else min(f, rf)
        if f is not None:
            horizon[k[1]] = min(horizon.get(k[1], f + s.dwell_ms), f + s.dwell_ms)
            if f + s.dwell_ms <= clock0:
                moments.add(f + s.dwell_ms)
        if b and room_viewer_may_be_held(b):
            rv = unpack_room_viewer(b)
            if rv.held_by >= 0 and start(rv, s) <= clock0:
                moments.add(start(rv, s))
    for vid, sent in (sent_at or {}).items():
        end = wait_end(sent, s)  # a send whose wait ended before the viewer's pairs' moments holds none
        if vid in horizon and horizon[vid] < end <= clock0:
            moments.add(end)
    if not moments:
        return []
    # one script call for every moment (three commands a moment from here cost ~10 us each of
    # client time: with a clock that moves past the dwell between batches, nearly every pair has one)
    got = r.register_script(script_source("scoring", "clock_after"))(
        keys=[keys.clock_min(shop), keys.clock_max(shop)], args=sorted(moments))
    return [int(float(v)) for v in cast("list[bytes | None]", got) if v is not None]


@dataclass(frozen=True)
class Archived:
    """A shop's archived rooms by number, and the first event of its oldest open room."""

    seq: tuple[int, int]  # the shop's room-number sequence and archive epoch when read
    by_room: dict[str, int]
    ids: dict[int, str]
    since: int | None
    reopened: frozenset[str] = frozenset()  # archived once, opened again by a late event
    last: int = -1  # the last event of any archived room: a later event cannot predate one


class ArchivedRooms:
    """The shops' archived rooms, read again when a room was archived since (the shop's
    room-number sequence moved) or opened again (its archive epoch moved; a room keeps its number)."""

    def __init__(self, r: redis.Redis) -> None:
        self._r = r
        self._by_shop: dict[str, Archived] = {}

    def get(self, shop: str, seq: tuple[int, int], clock: int) -> Archived:
        """``shop``'s archived rooms (room -> number, number -> room) and the first event of its
        oldest open room, for the room-number sequence ``seq`` and the shop clock ``clock``."""
        got = self._by_shop.get(shop)
        if got is None or got.seq != seq:
            p = Pipe(self._r)
            raw = p("hgetall", keys.room_nos(shop))
            firsts = p("zrange", keys.room_first(shop), 0, -1, withscores=True)
            again = p("hkeys", keys.reopened(shop))
            lasts = p("zrange", keys.rooms(shop), 0, -1, withscores=True)
            p.run()
            ids = read.room_ids(raw.value)
            by_room = {room: no for no, room in ids.items()}
            open_firsts = [int(sc) for m, sc in firsts.value if m.decode() not in by_room]
            # with no room open, the next one starts at the clock or later
            since = min(open_firsts) if open_firsts else clock
            last = max((int(sc) for m, sc in lasts.value if m.decode() in by_room), default=-1)
            got = self._by_shop[shop] = Archived(seq, by_room, ids, since if by_room else None,
                                                 frozenset(m.decode() for m in again.value), last)
        return got
