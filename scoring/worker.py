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
from scoring.engine import Inputs, encode_wire, score_batch, split_lurk_member

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
        self._time_full = False
        self._scored_clock = 0
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
        ack_list = [[stream, *ids] for stream, ids in acks.items()]
        self._log.write(shop, entries)  # on disk before the apply acknowledges them
        for attempt in itertools.count():
            blobs: list[bytes] = []
            # late events of a room already archived are counted (as applied, so that lag returns
            # to 0) and dropped: its records are gone (the engine does it, by the room map)
            wire, dropped = self._score(shop, events, blobs)
            wire.update(group=keys.GROUP, consumer=self.name, acks=ack_list, lock=recompute.rebuild_lock(shop))
            res = self._apply(keys=[keys.stats(shop)], args=[encode_wire(wire), *blobs])
            verdict = res[0].decode() if isinstance(res[0], bytes) else res[0]
            if verdict == "ok":
                self._time_clock[shop] = max(self._time_clock.get(shop, 0), self._scored_clock)
                if self._time_full:
                    self._apply_time_only(shop)
                now_ms = self.clock() * 1000
                st = self.stats
                st.batches += 1
                st.entries += len(entries)
                st.events += len(events) - dropped
                st.samples.extend((t, now_ms - t, n) for t, n in receipts if t)
                if dropped:
                    log.info("dropped %d late events of archived rooms of %s", dropped, shop)
                self._untrimmed.setdefault(shop, set()).update(acks)
                self._trim(shop)
                return len(events) - dropped
            if verdict == "stale":
                self.stats.stale += 1
                log.info("batch of %s no longer ours (taken over): dropped", shop)
                return 0
            if verdict == "locked":
                self._wait_rebuild(shop)
                continue
            self.stats.conflicts += 1
            if self._stopping:
                return 0  # the entries stay pending: this name's next start, or another scorer, applies them
            if attempt == MAX_RETRIES:
                log.warning("a batch of %s conflicted %d times in a row (another scorer keeps changing its "
                            "viewers): still trying", shop, attempt)
            time.sleep(min(0.2, 0.001 * 2 ** min(attempt, 8)))
        raise AssertionError("unreachable")  # itertools.count() never ends

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

    def _score(self, shop: str, all_events: list[Event], out_blobs: list[bytes]) -> tuple[dict[str, Any], int]:
        """The wire map of a batch, and how many of its events were of archived rooms (dropped)."""
        r = self.r
        vk = keys.viewers(shop)
        vids = list(dict.fromkeys(ev.viewer.id for ev in all_events))
        p = r.pipeline(transaction=False)
        p.hmget(keys.stats(shop), ["clock", "rules_applied", "room_no_seq",
                                   *(keys.due_front_field(i) for i in range(keys.PARTITIONS))])
        p.hget(keys.rules(shop), "version")
        if vids:
            p.hmget(vk, vids)
        (clock_raw, applied_raw, seq_raw, *fronts_raw), version_raw, *rest = p.execute()
        found = rest[0] if vids else []
        clock0 = int(clock_raw or 0)
        archived = self._archived_rooms(shop, int(seq_raw or 0), clock0)
        events = [ev for ev in all_events if ev.room not in archived.by_room]
        max_ts = max((ev.ts for ev in events), default=0)
        version = int(version_raw or 0)
        settings, known = self.settings(shop)
        if version != known:
            settings, known = self._load_settings(shop)
        if version != int(applied_raw or 0):  # rules saved that no rebuild has applied yet
            # new thresholds apply to every viewer at once: one worker recounts, the others wait
            if not recompute.rebuild(r, shop, self.name):
                self._wait_rebuild(shop)
            settings, known = self._load_settings(shop)
        clock1 = max(clock0, max_ts)
        viewers: dict[str, bytes | None] = dict(zip(vids, found, strict=True))
        # the time indexes of the partitions this worker reads (other workers see to theirs)
        parts = self._mine if self._member else list(range(keys.PARTITIONS))
        p = r.pipeline(transaction=False)
        for part in parts:
            p.zrangebyscore(keys.due(shop, part), "-inf", clock1, start=0, num=TIME_INDEX_LIMIT)
            p.zrangebyscore(keys.lurk(shop, part), "-inf", clock1, start=0, num=TIME_INDEX_LIMIT)
        for part in parts:
            p.zrange(keys.due_days(shop, part), 0, 0)  # the first day with a list of far-due viewers
        # new clock values above clock0: the pairs of the late-window index they may concern
        # (another scorer's batch can have put some there, in a range this one's values open)
        ahead = [(clock0, clock1)] if clock1 > clock0 else []
        self._queue_late_window(p, shop, ahead)
        late_secs = self._late_seconds(p, shop, events, clock0)
        got_idx = p.execute()
        n_own = 2 * len(parts)
        due_parts = got_idx[0:n_own:2]
        lurk_parts = got_idx[1:n_own:2]
        first_days = got_idx[n_own:n_own + len(parts)]
        n_ahead = n_own + len(parts) + keys.PARTITIONS * len(ahead)
        late_read = self._late_window_read(shop, ahead, got_idx[n_own + len(parts):n_ahead])
        late_read += self._late_read(shop, late_secs, got_idx[n_ahead:])
        due = [d.decode() for got in due_parts for d in got]
        old_fronts = [int(f or 0) for f in fronts_raw]
        fronts, promote = self._due_fronts(shop, parts, old_fronts, first_days, clock1)
        due += [v for _part, _lk, _day, vs in promote for v in vs]
        lurk = [split_lurk_member(m.decode()) for got in lurk_parts for m in got]
        lurk += [split_lurk_member(m) for g in late_read for m in g[3:]]
        more = [v for v in dict.fromkeys(due + [v for _, v in lurk]) if v not in viewers]
        if more:
            for v, b in zip(more, cast("list[bytes | None]", r.hmget(vk, more)), strict=True):
                viewers[v] = b
        # the (room, viewer) records the batch needs: rooms with events, lurkers, and every
        # room of a viewer whose consent changed (a task elsewhere may be made or withdrawn)
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
        p = r.pipeline(transaction=False)
        for room, vs in by_room.items():
            p.hmget(keys.room_viewers(shop, room), vs)
        # the shop clock again, after every record the batch read: another scorer may have applied
        # a batch since the first read, and the records may hold its events (or a task it made at
        # its clock). Scored at the older clock, they would lose what happened after it (a task
        # made at a later value would be taken back); the clock read last is at least theirs
        p.hget(keys.stats(shop), "clock")
        *got_rvs, clock_again = p.execute()
        rvs: dict[tuple[str, str], bytes | None] = {}
        for (room, vs), got in zip(by_room.items(), got_rvs, strict=True):
            for vid, b in zip(vs, got, strict=True):
                rvs[(room, vid)] = b
        clock0 = max(clock0, int(clock_again or 0))
        past = self._past_clock(shop, events, rvs, clock0, settings)
        self._time_full = any(len(got) >= TIME_INDEX_LIMIT for got in due_parts + lurk_parts) or bool(promote)
        self._scored_clock = clock1  # the time indexes were read up to it, not to a clock read since
        inp = Inputs(shop=shop, clock=clock0, settings=settings, rules_version=known,
                     viewers=viewers, room_viewers=rvs, due=due, lurk=lurk, past_clock=past,
                     archived=archived.by_room, room_ids=archived.ids, open_since=archived.since,
                     due_front=fronts)
        ws, _clock = score_batch(inp, all_events)  # it drops (and counts) the archived rooms' events
        for part, front in fronts.items():
            if front > old_fronts[part]:
                ws.hmax.append([keys.stats(shop), keys.due_front_field(part), front])
        for part, lk, day, vs in promote:
            ws.lpop.append([lk, len(vs), keys.due_days(shop, part), day])
        ws.late_read = late_read
        wire = ws.to_wire(out_blobs)
        wire["rules_version"] = known  # apply.lua refuses it if a rebuild under other rules ran since
        return wire, len(all_events) - len(events)

    @staticmethod
    def _late_seconds(p: Any, shop: str, events: list[Event], clock0: int) -> dict[int, list[int]]:
        """The seconds of the batch's clock values below ``clock0`` (late: the shop may not have
        seen them), each with its values in order; queues on ``p`` what ``_late_read`` needs to
        know about each second from the per-second clock index: its smallest and largest value,
        and the largest values below the second's first late one."""
        secs: dict[int, list[int]] = {}
        for t in sorted({ev.ts for ev in events if ev.ts < clock0}):
            secs.setdefault(t // 1000, []).append(t)
        cmin, cmax = keys.clock_min(shop), keys.clock_max(shop)
        for sec, ts in secs.items():
            p.zscore(cmin, sec)
            p.zscore(cmax, sec)
            p.zrevrangebyscore(cmin, f"({ts[0]}", "-inf", start=0, num=1, withscores=True)
            p.zrevrangebyscore(cmax, f"({ts[0]}", "-inf", start=0, num=1, withscores=True)
        return secs

    def _late_read(self, shop: str, secs: dict[int, list[int]], got: list[Any]) -> list[list[Any]]:
        """The late-window index's pairs that the batch's values below the clock may concern, as
        ``_late_window_read`` gives them. A value is new unless it is its second's smallest or
        largest in the clock index, which keeps only those two: a value between them counts as
        new, and its range reaches back to the largest indexed value below it, so that it takes
        in at least the pairs it must."""
        ranges: list[list[int]] = []
        for i, ts in enumerate(secs.values()):
            lo_s, hi_s, below_min, below_max = got[4 * i:4 * i + 4]
            known = {int(x) for x in (lo_s, hi_s) if x is not None}
            new = [t for t in ts if t not in known]
            if new:
                before = [int(x[0][1]) for x in (below_min, below_max) if x]
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
        p = self.r.pipeline(transaction=False)
        spans = [(lo, hi) for lo, hi in merged]
        self._queue_late_window(p, shop, spans)
        return self._late_window_read(shop, spans, p.execute())

    @staticmethod
    def _queue_late_window(p: Any, shop: str, ranges: list[tuple[int, int]]) -> None:
        """Queue on ``p`` the read of every partition's late-window index in each (lo, hi]."""
        for lo, hi in ranges:
            for part in range(keys.PARTITIONS):
                p.zrangebyscore(keys.late_window(shop, part), f"({lo}", hi)

    @staticmethod
    def _late_window_read(shop: str, ranges: list[tuple[int, int]], got: list[Any]) -> list[list[Any]]:
        """``[[key, lo, hi, member...], ...]``: what each partition's late-window index held in
        each (lo, hi], from ``got`` (its ZRANGEBYSCOREs in that order). For a new clock value t,
        the pairs whose moment lies in (the known value before t, t] (``followups.late_moment``):
        the batch rescores them, and apply.lua reads the same ranges again before it writes.
        ``got``: the replies to ``_queue_late_window``."""
        out = []
        res = iter(got)
        for lo, hi in ranges:
            for part in range(keys.PARTITIONS):
                out.append([keys.late_window(shop, part), lo, hi, *(m.decode() for m in next(res))])
        return out

    def _due_fronts(self, shop: str, parts: list[int], fronts: list[int], first_days: list[Any],
                    clock: int) -> tuple[dict[int, int], list[tuple[int, str, int, list[str]]]]:
        """The due front of each partition for this batch, and the far-due viewers it takes into the
        ``due`` zset now: (partition, their day's list, the day, up to TIME_INDEX_LIMIT viewers from its head),
        for the first day the front passes in a partition. The front moves to a day boundary
        ``DUE_NEAR_DAYS`` ahead of the clock, but never past the end of a day whose list is not
        taken yet; the viewers taken are scored as due, which writes their entry under the new front."""
        target = keys.due_front(clock)
        out: dict[int, int] = {}
        lists: list[tuple[int, str, int]] = []
        for part, got in zip(parts, first_days, strict=True):
            front = max(fronts[part], target)
            if got:
                day = int(got[0])
                if day < target // keys.DAY_MS:
                    front = max(fronts[part], (day + 1) * keys.DAY_MS)
                    lists.append((part, keys.due_far(shop, part, day), day))
            out[part] = front
        if not lists:
            return out, []
        p = self.r.pipeline(transaction=False)
        for _part, lk, _day in lists:
            p.lrange(lk, 0, TIME_INDEX_LIMIT - 1)
        promote = []
        for (part, lk, day), got in zip(lists, p.execute(), strict=True):
            promote.append((part, lk, day, [v.decode() for v in got]))  # an empty list: the day goes
        return out, promote

    def _apply_time_only(self, shop: str) -> None:
        """Apply time-driven changes with no events: when more viewers were due than one batch
        takes (the rest), or when the shop clock moved with no events for this worker."""
        for _ in range(10_000):
            blobs: list[bytes] = []
            wire, _ = self._score(shop, [], blobs)
            wire.update(group=keys.GROUP, consumer=self.name, acks=[], lock=recompute.rebuild_lock(shop))
            res = self._apply(keys=[keys.stats(shop)], args=[encode_wire(wire), *blobs])
            verdict = res[0].decode() if isinstance(res[0], bytes) else res[0]
            if verdict == "locked":
                self._wait_rebuild(shop)
                continue
            if verdict == "ok":
                self._time_clock[shop] = max(self._time_clock.get(shop, 0), self._scored_clock)
                if not self._time_full:
                    return
            else:
                self.stats.conflicts += 1
                time.sleep(0.001)

    def _past_clock(self, shop: str, events: list[Event], rvs: dict[tuple[str, str], bytes | None],
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
        if not moments:
            return []
        xs = sorted(moments)
        cmin, cmax = keys.clock_min(shop), keys.clock_max(shop)
        p = self.r.pipeline(transaction=False)
        for x in xs:
            p.zscore(cmin, x // 1000)
            p.zscore(cmax, x // 1000)
            p.zrangebyscore(cmin, x, "+inf", start=0, num=1, withscores=True)
        res = p.execute()
        out = []
        for i, x in enumerate(xs):
            lo, hi, nxt = res[3 * i], res[3 * i + 1], res[3 * i + 2]
            if hi is not None and hi >= x:
                # in x's own second: its smallest value if that is not before x, else (exact when
                # the second holds two values or fewer) its largest
                out.append(int(lo) if lo is not None and lo >= x else int(hi))
            elif nxt:
                out.append(int(nxt[0][1]))
        return out

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
