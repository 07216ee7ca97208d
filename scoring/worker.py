"""The scorer worker: reads the shop streams with a consumer group and applies each batch.

Moves data only: decoding, reading the states a batch needs, calling the pure
``scoring.engine.score_batch``, and writing its result with one call of
``scoring/lua/apply.lua``.  That script acknowledges the batch's entries in the
same atomic step, and only if this worker still owns them: a batch is applied
once, whatever crashes.  If a viewer changed between the read and the write
(another worker), nothing is written and the batch is read and scored again.
Entries a dead worker left unacknowledged are taken over with XAUTOCLAIM.

A shop's events come in ``keys.PARTITIONS`` streams split by viewer.  Running
scorers (``run``) list themselves in ``keys.scorer_members()`` and split the
partitions between them by their sorted names (partition p goes to the k-th of
n when p % n == k), so two scorers never score the same viewer and never
conflict; while the membership changes, two may briefly read one partition,
which the compare-and-set keeps correct.  A scorer driven step by step
(``drain``, tests) reads every partition.  A batch holds at most
``worker_batch_events`` events: Redis is never busy for long with one call.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from fanops import heartbeat, keys, read, replies, rules_store
from fanops.config import Config
from fanops.rules_settings import RuleSettings
from fanops.runtime.gcpause import gc_paused
from fanops.schema import Event, event_type, unpack_events
from fanops.scripts import script_source
from fanops.state import room_viewer_first, unpack_viewer
from scoring import archive, eventlog, migrate, recompute
from scoring.engine import Inputs, encode_wire, score_batch

log = logging.getLogger(__name__)

TIME_INDEX_LIMIT = 5000  # due / lurk entries taken per batch
ARCHIVE_EVERY_S = 60.0  # how often a running worker looks for idle rooms to archive
ARCHIVE_AFTER_WORK_S = 3.0  # ... and how soon once it goes idle after applying events
PRUNE_EVERY_S = 6 * 3600.0  # how often settled tasks of archived rooms leave Redis (kept in the archive)
MAX_RETRIES = 50
LOG_RETRY_S = 5.0  # pause after the applied-event log could not be written (disk full, folder gone)
# how often a running scorer renews its place among the running ones (its heartbeat in the list), and
# how often while it is short of its share of the partitions (one holds a partition it must give up)
MEMBERS_EVERY_S = 0.25
MEMBERS_UNSETTLED_S = 0.05
TRIM_EVERY_S = 0.5  # how often a busy worker removes applied entries from the streams it reads

Entry = tuple[str, Any, dict[bytes, bytes]]  # (stream, entry id, fields)


def _entry_order(e: Entry) -> tuple[int, int]:
    i = e[1].decode() if isinstance(e[1], bytes) else e[1]
    ms, _, seq = i.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class _Archived:
    seq: int  # the shop's room-number sequence when read
    by_room: dict[str, int]
    ids: dict[int, str]
    since: int | None


@dataclass
class WorkerStats:
    batches: int = 0
    entries: int = 0
    events: int = 0
    conflicts: int = 0
    stale: int = 0
    claimed: int = 0
    # per stream entry applied: (receipt ms, receipt -> applied ms, events in it), the most recent
    samples: deque[tuple[float, float, int]] = field(default_factory=lambda: deque(maxlen=50_000))

    def percentile(self, p: float, since_ms: float = 0.0) -> float:
        """The p-th percentile of receipt -> applied over events (an entry counts once per event),
        for entries received at or after ``since_ms``."""
        xs = sorted((lat, n) for t, lat, n in self.samples if t >= since_ms)
        total = sum(n for _, n in xs)
        if not total:
            return 0.0
        want, acc = p / 100 * total, 0
        for lat, n in xs:
            acc += n
            if acc >= want:
                return lat
        return xs[-1][0]


@dataclass
class ScoredBatch:
    """A batch read and scored, not written yet: what ``Worker.write`` sends to apply.lua."""

    wire: dict[str, Any]  # the write set as apply.lua takes it, but for the entries it acknowledges
    blobs: list[bytes]  # the packed states the wire names by index
    dropped: int  # late events of archived rooms: counted as applied by the write, not scored
    clock: int  # the shop clock the time indexes were read up to (what a time pass has moved to)
    time_full: bool  # more viewers were due than one batch takes: another time pass follows


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
    fronts: list[int]  # each partition's due front (0: none yet)
    viewers: dict[str, bytes | None]


def read_head(r: redis.Redis, shop: str, vids: list[str]) -> Head:
    p = Pipe(r)
    st = p("hmget", keys.stats(shop), ["clock", "rules_applied", "room_no_seq",
                                       *(keys.due_front_field(i) for i in range(keys.PARTITIONS))])
    version = p("hget", keys.rules(shop), "version")
    found = p("hmget", keys.viewers(shop), vids) if vids else None
    p.run()
    clock, applied, seq, *fronts = st.value
    return Head(int(clock or 0), int(applied or 0), int(version.value or 0), int(seq or 0),
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


def read_records(r: redis.Redis, shop: str, events: list[Event], lurk: list[tuple[str, str]],
                 viewers: dict[str, bytes | None]) -> tuple[dict[tuple[str, str], bytes | None], int]:
    """The (room, viewer) records the batch needs: rooms with events, lurkers, and every room of a
    viewer whose consent changed (a task elsewhere may be made or withdrawn); and the shop clock
    read after them."""
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
    got = [(room, vs, p("hmget", keys.room_viewers(shop, room), vs)) for room, vs in by_room.items()]
    # the shop clock again, after every record the batch read: another scorer may have applied
    # a batch since the first read, and the records may hold its events (or a task it made at
    # its clock). Scored at the older clock, they would lose what happened after it (a task
    # made at a later value would be taken back); the clock read last is at least theirs
    clock = p("hget", keys.stats(shop), "clock")
    p.run()
    rvs = {(room, vid): b for room, vs, bs in got for vid, b in zip(vs, bs.value, strict=True)}
    return rvs, int(clock.value or 0)


def past_clock(r: redis.Redis, shop: str, events: list[Event], rvs: dict[tuple[str, str], bytes | None],
               clock0: int, s: RuleSettings) -> list[int]:
    """For every (room, viewer) of the batch whose dwell would have reached the threshold
    before the clock the batch starts from, the first shop-clock value at or after that
    moment (from the per-second clock index), so that events arriving late make the same
    follow-up tasks as events in order."""
    first: dict[tuple[str, str], int] = {}
    for ev in events:
        k = (ev.room, ev.viewer.id)
        if k not in first or ev.ts < first[k]:
            first[k] = ev.ts
    moments = set()
    for k, b in rvs.items():
        f = first.get(k)
        if b:
            rf = room_viewer_first(b)
            f = rf if f is None else min(f, rf)
        if f is not None and f + s.dwell_ms <= clock0:
            moments.add(f + s.dwell_ms)
    cmin, cmax = keys.clock_min(shop), keys.clock_max(shop)
    p = Pipe(r)
    got = [(x, p("zscore", cmin, x // 1000), p("zscore", cmax, x // 1000),
            p("zrangebyscore", cmin, x, "+inf", start=0, num=1, withscores=True)) for x in sorted(moments)]
    p.run()
    out = []
    for x, lo, hi, nxt in got:
        if hi.value is not None and hi.value >= x:
            # in x's own second: its smallest value if that is not before x, else (exact when
            # the second holds two values or fewer) its largest
            out.append(int(lo.value) if lo.value is not None and lo.value >= x else int(hi.value))
        elif nxt.value:
            out.append(int(nxt.value[0][1]))
    return out


class Worker:
    """One scorer.  ``run()`` until ``stop()``; ``drain()`` for a finite run (tests, benchmarks)."""

    def __init__(self, r: redis.Redis, cfg: Config, name: str | None = None,
                 shops: list[str] | None = None, block_ms: int = 1000, clock: Callable[[], float] = time.time) -> None:
        self.r = r
        self.cfg = cfg
        self.name = name or heartbeat.process_name()
        self.fixed_shops = shops
        self.block_ms = block_ms
        self.clock = clock
        self.stats = WorkerStats()
        self._apply = r.register_script(script_source("scoring", "apply"))
        self._members = r.register_script(script_source("scoring", "members"))
        self._groups: set[str] = set()
        self._settings: dict[str, tuple[RuleSettings, int]] = {}
        self._stopping = False
        self._last_claim = 0.0
        self._last_beat = 0.0
        self._pending_done: set[str] = set()
        self._last_archive = 0.0
        self._archived: dict[str, _Archived] = {}
        self._last_prune = time.monotonic()
        self._member = False  # listed in keys.scorer_members() (run mode): owns only its share
        self._mine: list[int] = list(range(keys.PARTITIONS))
        self._last_members = 0.0
        self._settled = False  # this worker holds its whole share of the partitions
        self._time_clock: dict[str, int] = {}  # the shop clock of this worker's last time pass
        # every entry is written to the applied-event log before it is applied; applied entries
        # then leave the stream (scoring.eventlog)
        self._log = eventlog.EventLogWriter(cfg.data_dir, self.name)
        self._last_trim: dict[str, float] = {}
        self._untrimmed: dict[str, set[str]] = {}  # shop -> streams applied from since their last trim

    def stop(self) -> None:
        self._stopping = True

    # -- discovery ---------------------------------------------------------
    def shops(self) -> list[str]:
        if self.fixed_shops is not None:
            return self.fixed_shops
        return sorted(s.decode() for s in cast("set[bytes]", self.r.smembers(keys.shops())))

    def _ensure_group(self, shop: str) -> None:
        if shop in self._groups:
            return
        migrate.ensure_layout(self.r, shop, self._log)
        for stream in keys.streams(shop):
            try:
                self.r.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        self._groups.add(shop)

    def partitions(self) -> list[int]:
        """The partitions this worker reads now (all of them unless it runs among others).

        Running scorers split the partitions by their sorted names (partition p to the k-th of n
        when p % n == k).  A scorer gives up a partition at once when the split moves it away, and
        takes one only once no other running scorer lists it as its own: a partition changes
        hands without two scorers reading it at the same time (which would make their batches
        conflict over the same viewers)."""
        if not self._member:
            return list(range(keys.PARTITIONS))
        now = time.monotonic()
        if now - self._last_members >= (MEMBERS_EVERY_S if self._settled else MEMBERS_UNSETTLED_S):
            self._last_members = now
            res = cast(list[int], self._members(
                keys=[keys.scorer_members(), keys.scorer_parts()],
                args=[self.name, self.cfg.heartbeat_ttl_s, keys.HEARTBEAT_INDEX_KEEP_S, keys.PARTITIONS]))
            n, k, mine = int(res[0]), int(res[1]), [int(x) for x in res[2:]]
            # short of its share: another scorer still holds a partition the split gives this one
            # (it drops it at its next round): ask again soon, so that a scorer that joins a
            # running show takes its share within a fraction of a second
            self._settled = mine == [p for p in range(keys.PARTITIONS) if p % n == k]
            if set(mine) - set(self._mine):
                # a partition taken over may have time-driven changes its last reader did not apply yet
                self._time_clock.clear()
            if mine != self._mine:
                log.info("scorer %s now reads partitions %s (%d scorers running)", self.name, mine, n)
                self._mine = mine
        return self._mine

    def _leave(self) -> None:
        if self._member:
            try:
                p = self.r.pipeline(transaction=False)
                p.zrem(keys.scorer_members(), self.name)
                p.hdel(keys.scorer_parts(), self.name)
                p.execute()
            except redis.RedisError as e:
                log.debug("could not leave the scorer list: %s", e)

    # -- loop --------------------------------------------------------------
    def run(self) -> WorkerStats:
        log.info("scorer %s started", self.name)
        gc.freeze()  # what start-up made lives on: keep it out of every later collection
        # a scorer given a fixed list of shops reads every partition of them (the split is shop-wide
        # among the scorers that serve every shop)
        self._member = self.fixed_shops is None
        self._mine = [] if self._member else list(range(keys.PARTITIONS))
        worked = False  # applied events since the last look for idle rooms
        while not self._stopping:
            n = -1
            try:
                n = self.step(block=True)
                worked = worked or n > 0
                if n == 0:
                    self.trim_idle()
                    if not self.shops():
                        time.sleep(0.2)
                    else:
                        self.time_pass()
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("Redis unavailable (%s): retrying in 1 s", e)
                time.sleep(1.0)
            except eventlog.LogWriteError as e:
                # nothing is applied that is not on disk: the entries stay pending and are taken up
                # again (after FANOPS_CLAIM_IDLE_MS) once the log can be written
                log.error("%s: retrying in %.0f s; no event is applied until it can be written", e, LOG_RETRY_S)
                time.sleep(LOG_RETRY_S)
            since = time.monotonic() - self._last_archive
            # every minute; and soon after a run of batches ends (a backlog of earlier shows, a show
            # that just ended), so that their rooms reach the review without waiting the minute
            if since > ARCHIVE_EVERY_S or (n == 0 and worked and since > ARCHIVE_AFTER_WORK_S):
                self._last_archive = time.monotonic()
                worked = False
                self.archive_idle()
            self._heartbeat()
        self._leave()
        self._log.close()
        self._heartbeat(final=True)
        s = self.stats
        log.info("scorer %s stopped: %d batches, %d events, %d conflicts retried, %d taken over",
                 self.name, s.batches, s.events, s.conflicts, s.claimed)
        return self.stats

    def archive_idle(self) -> list[tuple[str, str]]:
        """Archive the rooms that have been idle long enough (safe from every worker: each room
        is archived once; archiving trims the clock index below the oldest room still open)."""
        done = []
        for shop in self.shops():
            try:
                for room in archive.close_idle_rooms(self.r, shop, self.cfg,
                                                     idle_ms=self.cfg.archive_idle_min * 60_000):
                    log.info("archived room %s of %s", room, shop)
                    done.append((shop, room))
                if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                    n = archive.prune_followups(self.r, self.cfg, shop)
                    log.info("%d settled tasks of archived rooms of %s left Redis (kept in the archive)", n, shop)
            except (archive.ArchiveError, OSError, redis.ResponseError) as e:
                log.warning("archiving the idle rooms of %s failed: %s", shop, e)
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
        return done

    def time_pass(self) -> None:
        """With no events for this worker, the shop clock may still have moved (events of
        partitions other scorers read): apply the time-driven changes of its own viewers."""
        if self._member and not self._mine:
            return  # no partition of its own (more scorers than partitions): no viewers to move
        for shop in self.shops():
            clock = int(self.r.hget(keys.stats(shop), "clock") or 0)
            if clock > self._time_clock.get(shop, 0):
                self._apply_time_only(shop)

    def drain(self, timeout: float = 60.0) -> WorkerStats:
        """Apply until every shop stream has nothing new for this worker (burst mode)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.step(block=False) == 0:
                break
        self.trim_idle()
        return self.stats

    def step(self, block: bool = False) -> int:
        """Read and apply one round of entries from every shop; returns the events applied."""
        shops = self.shops()
        total = 0
        now = time.monotonic()
        mine = self.partitions()
        for shop in shops:
            self._ensure_group(shop)
            if shop not in self._pending_done:
                # our own unacknowledged entries first, in every partition (a restart under the same name)
                total += self._read_and_apply(shop, list(range(keys.PARTITIONS)), "0")
                self._pending_done.add(shop)
        if now - self._last_claim > max(1.0, self.cfg.claim_idle_ms / 4000):
            self._last_claim = now
            for shop in shops:
                total += self._claim_and_apply(shop, mine)
        for shop in shops:
            blk = self.block_ms if (block and len(shops) == 1) else None
            total += self._read_and_apply(shop, mine, ">", blk)
        if block and len(shops) > 1 and total == 0:
            time.sleep(0.02)
        return total

    def _read_and_apply(self, shop: str, parts: list[int], start: str, block: int | None = None) -> int:
        if not parts:
            if block:
                # short of its share: ask again soon; one with no share (more scorers than
                # partitions) waits as a blocking read would
                time.sleep(block / 1000 if self._settled else min(block / 1000, MEMBERS_UNSETTLED_S))
            return 0
        res = cast("replies.GroupRead | None", self.r.xreadgroup(
            keys.GROUP, self.name, {keys.stream(shop, p): start for p in parts},
            count=self.cfg.worker_batch, block=block))
        if not res:
            return 0
        items = res.items() if isinstance(res, dict) else ((k, [v]) for k, v in res)
        entries: list[Entry] = []
        for stream, got in items:
            sname = stream.decode() if isinstance(stream, bytes) else stream
            for batch in got:
                entries.extend((sname, i, f) for i, f in batch if f)
        if len(res) > 1:
            entries.sort(key=_entry_order)  # in order of receipt across the partitions
        return self._apply_capped(shop, entries)

    def _claim_and_apply(self, shop: str, parts: list[int]) -> int:
        total = 0
        for part in parts:
            stream = keys.stream(shop, part)
            cursor = "0-0"
            while True:
                res = self.r.xautoclaim(stream, keys.GROUP, self.name,
                                        min_idle_time=self.cfg.claim_idle_ms, start_id=cursor,
                                        count=self.cfg.worker_batch)
                cursor, got = res[0], res[1]
                entries = [(stream, i, f) for i, f in got if f]
                if entries:
                    self.stats.claimed += len(entries)
                    log.info("took over %d entries of %s from a stalled scorer", len(entries), stream)
                    total += self._apply_capped(shop, entries)
                if cursor in (b"0-0", "0-0"):
                    break
        return total

    def _apply_capped(self, shop: str, entries: list[Entry]) -> int:
        """Apply in batches of at most ``worker_batch_events`` events (an entry is never split)."""
        total = 0
        chunk: list[Entry] = []
        n = 0
        cap = max(1, self.cfg.worker_batch_events)
        for e in entries:
            k = int(e[2].get(b"n", 1))
            if chunk and n + k > cap:
                total += self.apply_batch(shop, chunk)
                chunk, n = [], 0
            chunk.append(e)
            n += k
        if chunk:
            total += self.apply_batch(shop, chunk)
        return total

    # -- one batch -----------------------------------------------------------
    def settings(self, shop: str) -> tuple[RuleSettings, int]:
        return self._settings.get(shop) or self._load_settings(shop)

    def _load_settings(self, shop: str) -> tuple[RuleSettings, int]:
        self._settings[shop] = rules_store.load(self.r, shop)
        return self._settings[shop]

    def apply_batch(self, shop: str, entries: list[Entry]) -> int:
        """Score and write a batch of stream entries (stream, id, fields); returns the events
        applied (0 if stale)."""
        with gc_paused():
            return self._apply_batch(shop, entries)

    def _apply_batch(self, shop: str, entries: list[Entry]) -> int:
        acks: dict[str, list[str]] = {}
        events: list[Event] = []
        receipts: list[tuple[int, int]] = []
        for stream, i, f in entries:
            acks.setdefault(stream, []).append(i.decode() if isinstance(i, bytes) else i)
            events.extend(unpack_events(f[b"e"]))
            receipts.append((int(f.get(b"t", 0)), int(f.get(b"n", 1))))
        self._log.write(shop, entries)  # on disk before the apply acknowledges them
        batch = self._score_and_write(shop, events, [[stream, *ids] for stream, ids in acks.items()])
        if batch is None:
            return 0
        if batch.time_full:
            self._apply_time_only(shop)
        now_ms = self.clock() * 1000
        st = self.stats
        st.batches += 1
        st.entries += len(entries)
        st.events += len(events) - batch.dropped
        st.samples.extend((t, now_ms - t, n) for t, n in receipts if t)
        if batch.dropped:
            log.info("dropped %d late events of archived rooms of %s", batch.dropped, shop)
        self._untrimmed.setdefault(shop, set()).update(acks)
        self._trim(shop)
        return len(events) - batch.dropped

    def _apply_time_only(self, shop: str) -> None:
        """Apply time-driven changes with no events: when more viewers were due than one batch
        takes (the rest), or when the shop clock moved with no events for this worker."""
        for _ in range(10_000):
            batch = self._score_and_write(shop, [], [])
            if batch is None or not batch.time_full:
                return

    def _score_and_write(self, shop: str, events: list[Event], acks: list[list[str]]) -> ScoredBatch | None:
        """Score ``events`` and write them, acknowledging ``acks`` ([stream, id...] each), until
        apply.lua takes the batch: it is scored again after a conflict (a viewer changed since its
        read) or a rebuild. None: the entries are no longer this worker's, or it is stopping."""
        for attempt in itertools.count():
            batch = self.score(shop, events)
            res = self.write(shop, batch, acks)
            verdict = replies.to_str(res[0])
            if verdict == "ok":
                self._time_clock[shop] = max(self._time_clock.get(shop, 0), batch.clock)
                return batch
            if verdict == "stale":
                self.stats.stale += 1
                log.info("batch of %s no longer ours (taken over): dropped", shop)
                return None
            if verdict == "locked":
                self._wait_rebuild(shop)
                continue
            self.stats.conflicts += 1
            if self._stopping:
                return None  # the entries stay pending: this name's next start, or another scorer, applies them
            if attempt == MAX_RETRIES:
                log.warning("a batch of %s conflicted %d times in a row (another scorer keeps changing its "
                            "viewers): still trying", shop, attempt)
            time.sleep(min(0.2, 0.001 * 2 ** min(attempt, 8)))
        raise AssertionError("unreachable")  # itertools.count() never ends

    def write(self, shop: str, batch: ScoredBatch, acks: list[list[str]]) -> list[Any]:
        """One call of apply.lua: writes ``batch`` and acknowledges the stream entries ``acks``
        ([stream, id...] each), or nothing. Its reply: ``[b"ok", made]``, ``[b"stale", id]`` (an entry is no
        longer this worker's), ``[b"conflict", key, field]`` (a viewer the batch read changed since) or
        ``[b"locked", ...]`` (a rebuild runs, or ran since the batch was scored)."""
        wire = dict(batch.wire, group=keys.GROUP, consumer=self.name, acks=acks, lock=recompute.rebuild_lock(shop))
        return cast("list[Any]", self._apply(keys=[keys.stats(shop)], args=[encode_wire(wire), *batch.blobs]))

    def _trim(self, shop: str, now_too: bool = False) -> None:
        """The applied entries of the streams this worker applied from leave Redis (they are in the
        applied-event log): every ``TRIM_EVERY_S`` at most while busy, at once when idle."""
        now = time.monotonic()
        streams = self._untrimmed.get(shop)
        if not streams or (not now_too and now - self._last_trim.get(shop, 0.0) < TRIM_EVERY_S):
            return
        self._last_trim[shop] = now
        self._untrimmed[shop] = set()
        try:
            eventlog.trim_applied(self.r, sorted(streams))
        except redis.ResponseError as e:
            log.warning("could not trim the applied entries of %s: %s", shop, e)

    def trim_idle(self) -> None:
        for shop in list(self._untrimmed):
            self._trim(shop, now_too=True)

    def _archived_rooms(self, shop: str, seq: int, clock: int) -> _Archived:
        """The shop's archived rooms by number (room -> number, number -> room) and the first
        event of its oldest open room, read again when a room was archived since (the shop's
        room-number sequence moved; a room is archived once, and its number never changes)."""
        got = self._archived.get(shop)
        if got is None or got.seq != seq:
            p = self.r.pipeline(transaction=False)
            p.hgetall(keys.room_nos(shop))
            p.zrange(keys.room_first(shop), 0, -1, withscores=True)
            raw, firsts = p.execute()
            ids = read.room_ids(raw)
            by_room = {room: no for no, room in ids.items()}
            open_firsts = [int(sc) for m, sc in firsts if m.decode() not in by_room]
            # with no room open, the next one starts at the clock or later
            since = min(open_firsts) if open_firsts else clock
            got = self._archived[shop] = _Archived(seq, by_room, ids, since if by_room else None)
        return got

    def _rules(self, shop: str, head: Head) -> tuple[RuleSettings, int]:
        """The shop's rules and their version; rules saved that no rebuild has applied yet are
        applied first (new thresholds apply to every viewer at once: one worker recounts, the
        others wait)."""
        settings, known = self.settings(shop)
        if head.rules_version != known:
            settings, known = self._load_settings(shop)
        if head.rules_version != head.rules_applied:
            if not recompute.rebuild(self.r, shop, self.name):
                self._wait_rebuild(shop)
            settings, known = self._load_settings(shop)
        return settings, known

    def score(self, shop: str, all_events: list[Event]) -> ScoredBatch:
        """Read what a batch of ``all_events`` needs and score it (the first half of applying a batch;
        ``write`` is the second). Writes nothing, but for a rebuild under rules saved since the last one."""
        r = self.r
        head = read_head(r, shop, list(dict.fromkeys(ev.viewer.id for ev in all_events)))
        archived = self._archived_rooms(shop, head.room_no_seq, head.clock)
        events = [ev for ev in all_events if ev.room not in archived.by_room]
        settings, known = self._rules(shop, head)
        clock1 = max(head.clock, max((ev.ts for ev in events), default=0))
        # the time indexes of the partitions this worker reads (other workers see to theirs)
        parts = self._mine if self._member else list(range(keys.PARTITIONS))
        t = read_time_indexes(r, shop, parts, head.fronts, head.clock, clock1, events)
        viewers = dict(head.viewers)
        viewers.update(read_viewers(r, shop, [v for v in dict.fromkeys(t.due + [v for _, v in t.lurk])
                                              if v not in viewers]))
        rvs, clock_again = read_records(r, shop, events, t.lurk, viewers)
        clock0 = max(head.clock, clock_again)
        inp = Inputs(shop=shop, clock=clock0, settings=settings, rules_version=known,
                     viewers=viewers, room_viewers=rvs, due=t.due, lurk=t.lurk,
                     past_clock=past_clock(r, shop, events, rvs, clock0, settings),
                     archived=archived.by_room, room_ids=archived.ids, open_since=archived.since,
                     due_front=t.fronts)
        ws, _clock = score_batch(inp, all_events)  # it drops (and counts) the archived rooms' events
        for part, front in t.fronts.items():
            if front > head.fronts[part]:
                ws.hmax.append([keys.stats(shop), keys.due_front_field(part), front])
        for part, lk, day, vs in t.promote:
            ws.lpop.append([lk, len(vs), keys.due_days(shop, part), day])
        ws.late_read = t.late_read
        blobs: list[bytes] = []
        wire = ws.to_wire(blobs)
        wire["rules_version"] = known  # apply.lua refuses it if a rebuild under other rules ran since
        # the time indexes were read up to clock1, not to a clock read since
        return ScoredBatch(wire, blobs, len(all_events) - len(events), clock1, t.full)
    def _wait_rebuild(self, shop: str, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.r.exists(recompute.rebuild_lock(shop)) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- health ---------------------------------------------------------------
    def _heartbeat(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_beat < 1.0:
            return
        self._last_beat = now
        s = self.stats
        recent = time.time() * 1000 - self.cfg.latency_window_s * 1000
        body = {"name": self.name, "batches": s.batches, "events": s.events,
                "conflicts": s.conflicts, "claimed": s.claimed,
                "p50_ms": round(s.percentile(50, recent), 1), "p99_ms": round(s.percentile(99, recent), 1),
                "latency_window_s": self.cfg.latency_window_s, "partitions": self._mine, "running": not final}
        try:
            p = self.r.pipeline(transaction=False)
            heartbeat.queue_beat(p, "scorer", self.name, body, self.cfg.heartbeat_ttl_s, final)
            p.execute()
        except redis.RedisError as e:
            log.debug("heartbeat not written: %s", e)
