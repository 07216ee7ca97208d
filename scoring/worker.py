"""The scorer worker: reads the shop streams with a consumer group and applies each batch.

Moves data only: decoding, reading the states a batch needs (``scoring.batch_reads``), calling
the pure ``scoring.engine.score_batch``, and writing its result with one call of ``scoring/lua/apply.lua``.
That script acknowledges the batch's entries in the same atomic step, and only if this worker
still owns them: a batch is applied once, whatever crashes.  If a viewer changed between the read
and the write (another worker), nothing is written and the batch is read and scored again.
Entries a dead worker left unacknowledged are taken over with XAUTOCLAIM.

A shop's events come in ``keys.PARTITIONS`` streams split by viewer; running scorers split the
partitions between them (``scoring.partitions``), so two scorers never score the same viewer; while
the membership changes, two may briefly read one partition, which the compare-and-set keeps correct.
A batch holds as many events as Redis applies in about ``worker_apply_ms`` (``intake.BatchSize``):
Redis is never busy for long with one call, and a backlog is applied in batches as big as that allows.
With no events of its own, a running scorer still moves its viewers with the shop clock (``time_pass``).
"""

from __future__ import annotations

import gc
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from fanops import heartbeat, keys, replies, retry, rules_store
from fanops.config import Config
from fanops.rules_settings import RuleSettings
from fanops.runtime.gcpause import gc_paused
from fanops.schema import Event, unpack_events
from scoring import eventlog, intake, migrate, recompute, retier
from scoring.batch_reads import (
    ArchivedRooms,
    Head,
    clock_and_rules,
    past_clock,
    read_head,
    read_pairs,
    read_records,
    read_time_indexes,
    read_viewers,
)
from scoring.contacts import note_contacts
from scoring.effects import Inputs
from scoring.engine import score_batch
from scoring.idle import IdleLook
from scoring.intake import Entry
from scoring.late import reopen_held, take_late
from scoring.partitions import MEMBERS_UNSETTLED_S, Share
from scoring.worker_stats import WorkerStats, beat_body
from scoring.writeset import ScoredBatch, apply_script, encode_wire, to_wire

log = logging.getLogger(__name__)

IDLE_JOIN_S = 5.0  # how long a stopping scorer waits for its look for idle rooms (an archive is crash-safe)
ARCHIVE_AFTER_WORK_S = 3.0  # ... and how soon once it goes idle after applying events
MAX_RETRIES = 50
LOG_RETRY_S = 5.0  # pause after the applied-event log could not be written (disk full, folder gone)
TRIM_EVERY_S = 0.5  # how often a busy worker removes applied entries from the streams it reads
TIME_PASSES = 10_000  # time passes in a row at most, while more viewers are due than one batch takes


class Worker:
    """One scorer.  ``run()`` until ``stop()``; ``drain()`` for a finite run (tests, benchmarks).

    ``clock``: wall time, for the receipt -> applied latencies.  ``monotonic``: the clock of the
    worker's schedules (membership rounds, claims, trims, archiving, pruning, heartbeats); tests
    pass one they move by hand.  ``partitions``: read only these (as a scorer among others would),
    without joining the running scorers' split; by default every partition until ``run``."""

    def __init__(self, r: redis.Redis, cfg: Config, name: str | None = None,
                 shops: list[str] | None = None, block_ms: int = 1000, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, partitions: list[int] | None = None) -> None:
        self.r = r
        self.cfg = cfg
        self.name = name or heartbeat.process_name()
        self.fixed_shops = shops
        self.block_ms = block_ms
        self.clock = clock
        self.monotonic = monotonic
        self.stats = WorkerStats()
        self._apply = r.register_script(apply_script())
        self._sizes: dict[str, intake.BatchSize] = {}  # a shop's batches: each show costs Redis its own
        self._share = Share(r, self.name, cfg.heartbeat_ttl_s, monotonic, partitions)
        self._archived = ArchivedRooms(r)
        self._groups: set[str] = set()
        self._settings: dict[str, tuple[RuleSettings, int]] = {}
        self._stopping = False
        # the schedules' last rounds: none yet, whatever the clock's origin
        self._last_claim = -math.inf
        self._last_beat = -math.inf
        self._pending_done: set[str] = set()
        self._last_archive = -math.inf
        self.outage = retry.Outage()  # since when Redis has been failing this scorer, for its heartbeat
        self._redis_backoff = retry.Backoff(initial=0.2, cap=5.0)
        self._idle = IdleLook(r, cfg, self.shops, self.stats, clock, monotonic)
        self._time_clock: dict[str, int] = {}  # the shop clock of this worker's last time pass
        self._time_rules: dict[str, int] = {}  # the rules version of this worker's last idle time pass
        # every entry is written to the applied-event log before it is applied; applied entries
        # then leave the stream (scoring.eventlog)
        self._log = eventlog.EventLogWriter(cfg.data_dir, self.name)
        self._trims = eventlog.AppliedTrim(r, monotonic, TRIM_EVERY_S)

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

    def join(self) -> None:
        """Take part in the split of the partitions among the running scorers, as ``run`` does
        (``scoring.partitions``): from then on this worker reads only its share."""
        self._share.join()

    def partitions(self) -> list[int]:
        """The partitions this worker reads now: every one, the ones it was given, or (once it has
        joined the running scorers) its share, renewed when its round is due."""
        before = self._share.mine
        mine = self._share.current()
        if set(mine) - set(before):
            # a partition taken over may have time-driven changes its last reader did not apply yet
            self._time_clock.clear()
        return mine

    # -- loop --------------------------------------------------------------
    def run(self) -> WorkerStats:
        log.info("scorer %s started", self.name)
        gc.freeze()  # what start-up made lives on: keep it out of every later collection
        # a scorer given a fixed list of shops reads every partition of them (the split is shop-wide
        # among the scorers that serve every shop)
        if self.fixed_shops is None and not self._share.pinned:
            try:
                retry.call(self.join, "scorer start", outage=self.outage, backoff=self._redis_backoff,
                           stopping=lambda: self._stopping)
            except InterruptedError:  # asked to stop before Redis ever answered
                return self.stats
        worked = False  # applied events since the last look for idle rooms
        while not self._stopping:
            try:
                worked = self._round(worked)
                self._redis_ok()
            except eventlog.LogWriteError as e:
                # nothing is applied that is not on disk: the entries stay pending to us, read first again
                log.error("%s: retrying in %.0f s; no event is applied until it can be written", e, LOG_RETRY_S)
                time.sleep(LOG_RETRY_S)
            except Exception as e:
                # one policy for every Redis call of the loop (batches, time pass, archiving, trims): a wait
                # fixes the server being away, full, busy or starting; anything else is ours
                if not retry.is_retryable(e):
                    raise
                delay = self._redis_backoff.next()
                if self.outage.failed(e):
                    log.warning("%s (%s): scorer %s waits and retries; nothing is lost, "
                                "the entries stay in the streams", retry.why(e), e, self.name)
                time.sleep(delay)
            self._heartbeat()
        self._share.leave()
        self._idle.stop(IDLE_JOIN_S)
        self._log.close()
        self._heartbeat(final=True)
        s = self.stats
        log.info("scorer %s stopped: %d batches, %d events, %d conflicts retried, %d taken over",
                 self.name, s.batches, s.events, s.conflicts, s.claimed)
        return self.stats

    def _round(self, worked: bool) -> bool:
        """One turn of ``run``: a batch (or the time pass when there is none), then, every
        minute or soon after a run of batches ends, a look for idle rooms to archive.  Returns
        whether events were applied since the last look."""
        n = self.step(block=True)
        worked = worked or n > 0
        if n == 0:
            self.trim_idle()
            if not self.shops():
                time.sleep(0.2)
            else:
                self.time_pass()
        since = self.monotonic() - self._last_archive
        # every minute; and soon after a run of batches ends (a backlog of earlier shows, a show
        # that just ended), so that their rooms reach the review without waiting the minute
        if since > self.cfg.archive_every_s or (n == 0 and worked and since > ARCHIVE_AFTER_WORK_S):
            if self._idle.start():  # in a thread: archiving a big show takes seconds, the batches go on
                self._last_archive = self.monotonic()  # (one still under way: started when it ends)
                worked = False
        return worked

    def _redis_ok(self) -> None:
        self._redis_backoff.reset()
        lasted = self.outage.ended()
        if lasted is not None:
            log.warning("Redis reachable again after %.0f s: scorer %s goes on", lasted, self.name)

    def drain(self, timeout: float = 60.0) -> WorkerStats:
        """Apply until every shop stream has nothing new for this worker (burst mode)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.step(block=False) == 0:
                break
        self.trim_idle()
        return self.stats

    def step(self, block: bool = False) -> int:
        """One round of entries of every shop, applied (if it fails, the next round reads them first)."""
        try:
            return self._step(block)
        except BaseException:
            self._pending_done.clear()
            raise

    def _step(self, block: bool) -> int:
        shops = self.shops()
        total = 0
        now = self.monotonic()
        mine = self.partitions()
        for shop in shops:
            self._ensure_group(shop)
            if shop not in self._pending_done:
                total += self._apply_pending(shop)
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

    # -- stream entries ------------------------------------------------------
    def _apply_pending(self, shop: str) -> int:
        """Our own unacknowledged entries first, in every partition (a restart under the same name, a
        batch Redis refused), every one of them: a read takes about two batches' events, and the next
        read from "0" starts at what is still pending (applied entries are acknowledged)."""
        total = 0
        while not self._stopping:
            size = self._size(shop)
            entries, any_read = intake.read_pending(self.r, shop, self.name,
                                                    size.entries_to_read(keys.PARTITIONS))
            if not any_read:
                break
            total += self._apply_capped(shop, entries)
        return total

    def _read_and_apply(self, shop: str, parts: list[int], start: str, block: int | None = None) -> int:
        if not parts:
            if block:
                # short of its share: ask again soon; one with no share (more scorers than
                # partitions) waits as a blocking read would
                time.sleep(block / 1000 if self._share.settled else min(block / 1000, MEMBERS_UNSETTLED_S))
            return 0
        size = self._size(shop)
        entries = intake.read_entries(self.r, shop, self.name, parts, start,
                                      size.entries_to_read(len(parts)), block)
        return self._apply_capped(shop, entries)

    def _claim_and_apply(self, shop: str, parts: list[int]) -> int:
        total = 0
        for part in parts:
            stream = keys.stream(shop, part)
            count = self._size(shop).entries_to_read(1)
            for entries in intake.claim_entries(self.r, stream, self.name, self.cfg.claim_idle_ms, count):
                self.stats.claimed += len(entries)
                log.info("took over %d entries of %s from a stalled scorer", len(entries), stream)
                total += self._apply_capped(shop, entries)
        return total

    def _apply_capped(self, shop: str, entries: list[Entry]) -> int:
        """Apply in batches of at most the shop's ``BatchSize`` events (an entry is never split)."""
        size = self._size(shop)
        size.read(entries)
        return sum(self.apply_batch(shop, chunk) for chunk in intake.capped(entries, size))

    def _size(self, shop: str) -> intake.BatchSize:
        if shop not in self._sizes:
            cfg = self.cfg
            self._sizes[shop] = intake.BatchSize(cfg.worker_apply_ms, cfg.worker_batch_events, cfg.worker_batch,
                                                 cfg.flush_events)
        return self._sizes[shop]

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
        note_contacts(self.r, shop, events)  # addresses' owners; before the ack: a refusal is retried with it
        batch = self._score_and_write(shop, events, [[stream, *ids] for stream, ids in acks.items()])
        if batch is None:
            return 0
        if batch.time_full:
            self.apply_time(shop)
        now_ms = self.clock() * 1000
        st = self.stats
        st.batches += 1
        st.entries += len(entries)
        st.events += len(events) - batch.dropped
        st.samples.extend((t, now_ms - t, n) for t, n in receipts if t)
        if batch.repeats:
            log.info("%d repeats of archived shows' events of %s counted as duplicates", batch.repeats, shop)
        if batch.dropped > batch.repeats:
            log.info("dropped %d late events of archived rooms of %s", batch.dropped - batch.repeats, shop)
        self._trims.applied(shop, acks)
        return len(events) - batch.dropped

    def _score_and_write(self, shop: str, events: list[Event], acks: list[list[str]]) -> ScoredBatch | None:
        """Score ``events`` and write them, acknowledging ``acks`` ([stream, id...] each), until
        apply.lua takes the batch: it is scored again after a conflict (a viewer changed since its
        read) or a rebuild. None: the entries are no longer this worker's, or it is stopping."""
        for attempt in itertools.count():
            batch = self.score(shop, events)
            t0 = time.perf_counter()
            res = self.write(shop, batch, acks)
            verdict = replies.to_str(res[0])
            if verdict == "ok":
                self._size(shop).took(len(events), time.perf_counter() - t0)
                self._time_clock[shop] = max(self._time_clock.get(shop, 0), batch.clock)
                if batch.retier_archived:
                    retier.rescore_archived(self.r, shop, batch.retier_archived, self.settings(shop)[0])
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

    def score(self, shop: str, given: list[Event]) -> ScoredBatch:
        """Read what a batch of ``given`` events needs and score it (the first half of applying a batch;
        ``write`` is the second). Writes nothing, but for a rebuild under rules saved since the last one."""
        r = self.r
        head = read_head(r, shop, list(dict.fromkeys(ev.viewer.id for ev in given)))
        self.after_clock_read(shop)
        late = take_late(r, self.cfg, shop, given, head, self._archived)
        head, archived, all_events, repeats = late.head, late.archived, late.events, late.repeats
        events = [ev for ev in all_events if ev.room not in archived.by_room]
        viewers = {**head.viewers, **late.unfolded}
        settings, known = self._rules(shop, head)
        clock1 = max(head.clock, max((ev.ts for ev in events), default=0))
        t = read_time_indexes(r, shop, self._share.mine, head.fronts, head.clock, clock1, events)  # its partitions
        if reopen_held(r, self.cfg, shop, t.lurk, archived):  # a held task of an archived show is due
            return self.score(shop, given)
        viewers.update(read_viewers(r, shop, [v for v in dict.fromkeys(t.due + [v for _, v in t.lurk])
                                              if v not in viewers]))
        rvs, clock_again, sent_at = read_records(r, shop, events, t.lurk, viewers, t.due)
        clock0 = max(head.clock, clock_again)
        inp = Inputs(clock=clock0, settings=settings, rules_version=known,
                     viewers=viewers, room_viewers=rvs, due=t.due, lurk=t.lurk, sent_at=sent_at,
                     past_clock=past_clock(r, shop, events, rvs, clock0, settings, sent_at),
                     archived=archived.by_room, room_ids=archived.ids, open_since=archived.since)
        fx = score_batch(inp, all_events)  # it drops (and counts) the archived rooms' events
        if fx.transitions or fx.recard:  # open tasks elsewhere of viewers whose tier or bonus changed
            others = retier.pairs(fx)
            retier.retier(fx, read_pairs(r, shop, others) if others else {}, settings)
        if late.unfolded:  # compared and set against the states as read
            read_as = head.viewers
            fx.viewers = [(vid, read_as[vid] if vid in late.unfolded else old, new) for vid, old, new in fx.viewers]
        if repeats:  # accepted by the consumer, but repeats: counted as such, not applied
            fx.shop_counts["accepted"] -= len(repeats)
            fx.shop_counts["duplicates"] += len(repeats)
        blobs: list[bytes] = []
        wire = to_wire(fx, shop, blobs, fronts=t.fronts, promote=t.promote, late_read=t.late_read,
                       moved_fronts={part: f for part, f in t.fronts.items() if f > head.fronts[part]},
                       rules_version=known, archive_epoch=head.archive_epoch)
        # the time indexes were read up to clock1, not to a clock read since
        return ScoredBatch(wire, blobs, len(all_events) - len(events) + len(repeats), clock1, t.full, len(repeats),
                           retier.archived_pairs(fx, archived.ids) if fx.transitions else [])

    def after_clock_read(self, shop: str) -> None:
        """Called by ``score`` between its first read (the shop clock, rules state, events' viewers) and
        the others. Does nothing: a test overrides it to have another scorer apply a batch there."""

    def _rules(self, shop: str, head: Head) -> tuple[RuleSettings, int]:
        """The shop's rules and their version; rules saved that no rebuild has applied yet are
        applied first (new thresholds apply to every viewer at once: one worker recounts, the
        others wait)."""
        settings, known = self.settings(shop)
        if head.rules_version != known:
            settings, known = self._load_settings(shop)
        if head.rules_version != head.rules_applied:
            if not recompute.rebuild(self.r, shop, self.name, self.cfg):
                self._wait_rebuild(shop)
            settings, known = self._load_settings(shop)
        return settings, known

    def write(self, shop: str, batch: ScoredBatch, acks: list[list[str]]) -> list[Any]:
        """One call of apply.lua: writes ``batch`` and acknowledges the stream entries ``acks``
        ([stream, id...] each), or nothing. Its reply: ``[b"ok", made]``, ``[b"stale", id]`` (an entry is no
        longer this worker's), ``[b"conflict", key, field]`` (a viewer the batch read changed since) or
        ``[b"locked", ...]`` (a rebuild runs, or ran since the batch was scored)."""
        wire = dict(batch.wire, group=keys.GROUP, consumer=self.name, acks=acks, lock=recompute.rebuild_lock(shop))
        return cast("list[Any]", self._apply(keys=[keys.stats(shop)], args=[encode_wire(wire), *batch.blobs]))

    def _wait_rebuild(self, shop: str, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.r.exists(recompute.rebuild_lock(shop)) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- the time pass --------------------------------------------------------
    def time_pass(self) -> None:
        """With no events for this worker, the shop clock may still have moved (events of
        partitions other scorers read): apply the time-driven changes of its own viewers."""
        if not self._share.mine:
            return  # no partition of its own (more scorers than partitions): no viewers to move
        for shop in self.shops():
            clock, applied, version = clock_and_rules(self.r, shop)
            # also with the clock still: settings saved that no rebuild applied yet (the pass rebuilds),
            # or a rebuild since this worker's last pass (it left viewers due now)
            if clock > self._time_clock.get(shop, 0) or not applied == version == self._time_rules.get(shop):
                self.apply_time(shop)
                self._time_rules[shop] = version

    def apply_time(self, shop: str) -> None:
        """Apply the time-driven changes of this worker's viewers up to the shop clock, with no
        events: the viewers and pairs its time indexes hold as due, pass after pass while more are
        due than one batch takes."""
        for _ in range(TIME_PASSES):
            batch = self._score_and_write(shop, [], [])
            if batch is None or not batch.time_full:
                return

    # -- housekeeping ----------------------------------------------------------
    def archive_idle(self) -> list[tuple[str, str]]:
        """The look for idle rooms and old tasks (``scoring.idle``), here and now; ``run`` makes it
        in a thread of its own.  Returns the (shop, room) archived."""
        return self._idle.look()

    def trim_idle(self) -> None:
        """The applied entries of the streams this worker applied from leave Redis (they are in the
        applied-event log): every ``TRIM_EVERY_S`` at most while busy, at once when idle."""
        self._trims.idle()

    def _heartbeat(self, final: bool = False) -> None:
        now = self.monotonic()
        if not final and now - self._last_beat < 1.0:
            return
        self._last_beat = now
        body = beat_body(self.stats, self.name, self.cfg.latency_window_s, self._share.mine, final,
                         self.outage.as_fields())
        try:
            p = self.r.pipeline(transaction=False)
            heartbeat.queue_beat(p, "scorer", self.name, body, self.cfg.heartbeat_ttl_s, final)
            p.execute()
        except redis.RedisError as e:
            log.debug("heartbeat not written: %s", e)
