"""Scorer benchmarks: end-to-end throughput, receipt-to-effect latency, Redis memory per viewer.

``python -m bench.scorer [--only abc] [--events N] [--duration S] [--memory-viewers 100000] [--full]
[--profile DIR]`` (``--help`` for every option; bench/README.md for the figures)

Every process is the product's own command, as in production: the feed
(``python -m realtime replay`` / ``simulate``), the consumer (``python -m realtime consume``),
the scorers (``python -m scoring run --name wN``), against a private embedded server.

(a) throughput: events/s from the first event accepted to the last one applied
    (``status`` shows lag 0), with 1 and 2 scorers; beside it, the ceiling of each stage
    alone: the consumer alone (ingest only), the scorers alone on a pre-ingested backlog, and
    one scorer reading one ~500-event entry at a time (the batch size of a paced feed).
(b) latency at 5,000 and 20,000 events/s (the simulator paced in real time): each event's
    ts (the simulator publishes it then; the consumer receives it within a few ms) to the
    moment the shop clock polled every 2 ms shows it applied; beside it, the stream entry's
    receipt field ``t`` (the consumer's flush) to that moment, and the worker's own p50/p99.
(c) Redis memory: INFO used_memory after minus before, divided by known viewers (HLEN of
    the shop's viewers hash), with a breakdown by key kind, for a 1-hour show of 4 events a
    viewer fed through the consumer and a scorer; then again after ``scoring close-room``
    (if the tree has it).  1,000,000 viewers is extrapolated linearly from the largest
    measured point unless ``--full`` (about 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import redis

from bench._profile import Profiler
from bench._util import (
    Child,
    CpuMeter,
    FeedFile,
    Report,
    fresh,
    machine_note,
    private_server,
    ratio,
    replay_server,
    sim_settings,
    table,
    tree_note,
    wait_port,
    wait_until,
    write_feed,
)
from fanops import keys
from fanops.config import Config
from fanops.read import status
from fanops.runtime import server
from fanops.schema import unpack_events
from fanops.state import TASK_STATES
from scoring import eventlog

TARGET_RATE = 50_000.0  # events/s applied end to end
TARGET_P99_MS = 250.0  # at 20,000 events/s
TARGET_BYTES = 600.0  # Redis memory per known viewer
POLL_S = 0.002


# -- processes ---------------------------------------------------------------
def workers(n: int, url: str, log_dir: Path, tag: str, env: dict[str, str] | None = None) -> list[Child]:
    return [Child(f"{tag}-w{i}", ["-m", "scoring", "run", "--name", f"w{i}", "--redis", url], log_dir, env=env)
            for i in range(1, n + 1)]


def consumer(feed_url: str, url: str, log_dir: Path, tag: str) -> Child:
    return Child(f"{tag}-consumer", ["-m", "realtime", "consume", "--url", feed_url, "--redis", url], log_dir)


def stop_all(children: list[Child]) -> None:
    for c in children:
        c.stop()


def _counts(r: redis.Redis, shop: str) -> tuple[int, int]:
    st = r.hmget(keys.stats(shop), "accepted", "applied")
    return int(st[0] or 0), int(st[1] or 0)


def scorer_summary(r: redis.Redis, n: int) -> str:
    """Batches and conflict retries per scorer, from their final heartbeats (read after they stop)."""
    parts = []
    for i in range(1, n + 1):
        hb = json.loads(r.get(keys.heartbeat("scorer", f"w{i}")) or "{}")
        parts.append(f"w{i} {hb.get('batches', '?')} batches/{hb.get('conflicts', '?')} conflicts")
    return ", ".join(parts)


_wait = wait_until


# -- (a) throughput ----------------------------------------------------------
@dataclass
class Rate:
    label: str
    events: int
    seconds: float
    cpu: str
    scorers: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def run_ingest_only(url: str, redis_pid: int, feed_url: str, feed_pid: int, ff: FeedFile, log_dir: Path) -> Rate:
    """The consumer alone, from its first accepted event until every event is accepted."""
    r = fresh(url)
    c = consumer(feed_url, url, log_dir, "ingest")
    try:
        _wait(lambda: _counts(r, ff.shop)[0] > 0, [c], 60, "the first accepted event", 0.002)
        t0 = time.perf_counter()
        m = CpuMeter({"consumer": c.pid, "feed": feed_pid, "redis": redis_pid})
        _wait(lambda: _counts(r, ff.shop)[0] >= ff.events, [c], 600, "every event accepted", 0.005)
        dt = time.perf_counter() - t0
        m.stop()
    finally:
        c.stop()
        r.close()
    return Rate("consumer alone (ingest only)", ff.events, dt, m.describe())


def run_backlog(url: str, redis_pid: int, feed_url: str, feed_pid: int, ff: FeedFile, n_workers: int,
                log_dir: Path, entries_per_read: int | None = None, limit: int | None = None) -> Rate:
    """Ingest the whole feed, then time the scorers on it (up to ``limit`` events applied).
    ``entries_per_read`` sets FANOPS_WORKER_BATCH for the scorers (each entry holds ~500 events here)."""
    run_ingest_only(url, redis_pid, feed_url, feed_pid, ff, log_dir)
    r = redis.Redis.from_url(url)
    env = {"FANOPS_WORKER_BATCH": str(entries_per_read)} if entries_per_read else None
    tag = f"backlog{n_workers}" + (f"-b{entries_per_read}" if entries_per_read else "")
    ws = workers(n_workers, url, log_dir, tag, env)
    goal = min(limit or ff.events, ff.events)
    try:
        _wait(lambda: _counts(r, ff.shop)[1] > 0, ws, 60, "the first applied event", 0.002)
        t0 = time.perf_counter()
        first = _counts(r, ff.shop)[1]
        m = CpuMeter({f"w{i + 1}": w.pid for i, w in enumerate(ws)} | {"redis": redis_pid})
        done = _wait(lambda: (a := _counts(r, ff.shop)[1]) >= goal and a, ws, 900, "the backlog applied")
        dt = time.perf_counter() - t0
        m.stop()
    finally:
        stop_all(ws)
    summary = scorer_summary(r, n_workers)
    r.close()
    label = f"{n_workers} scorer{'s' if n_workers > 1 else ''} alone on a backlog"
    if entries_per_read:
        label += f", {entries_per_read} entr{'ies' if entries_per_read > 1 else 'y'} a read"
    return Rate(label, int(done) - first, dt, m.describe(), summary)


PROFILES: list[str] = []
REDIS_TIME: list[str] = []


def redis_time(r: redis.Redis, events: int, top: int = 9) -> str:
    """Where the server's time went (INFO commandstats since CONFIG RESETSTAT), in us per event.

    A command a script runs is counted on its own and inside the script's EVALSHA."""
    stats = r.info("commandstats")
    rows = sorted(((k.removeprefix("cmdstat_"), v) for k, v in stats.items()), key=lambda kv: -kv[1]["usec"])
    return "us/event (calls/event): " + ", ".join(
        f"{k} {v['usec'] / events:.1f} ({v['calls'] / events:.2f})" for k, v in rows[:top])


def run_end_to_end(url: str, redis_pid: int, feed_url: str, feed_pid: int, ff: FeedFile, n_workers: int,
                   log_dir: Path, profile: Path | None = None) -> Rate:
    r = fresh(url)
    ws = workers(n_workers, url, log_dir, f"e2e{n_workers}")
    c = consumer(feed_url, url, log_dir, f"e2e{n_workers}")
    procs = ws + [c]
    try:
        _wait(lambda: _counts(r, ff.shop)[0] > 0, procs, 60, "the first accepted event", 0.002)
        t0 = time.perf_counter()
        m = CpuMeter({"consumer": c.pid} | {f"w{i + 1}": w.pid for i, w in enumerate(ws)}
                     | {"feed": feed_pid, "redis": redis_pid})
        r.config_resetstat()
        profs = ([Profiler(f"e2e{n_workers}-consumer", c.pid, profile)]
                 + [Profiler(f"e2e{n_workers}-w{i + 1}", w.pid, profile) for i, w in enumerate(ws)]
                 if profile else [])

        def done() -> bool:
            s = status(r, ff.shop)
            return s["events_applied"] >= ff.events and s["lag"] == 0

        try:
            _wait(done, procs, 900, "lag 0 with every event applied")
            dt = time.perf_counter() - t0
            m.stop()
        finally:
            PROFILES.extend(pr.stop() for pr in profs)
        cmd = redis_time(r, ff.events)
        tiers = status(r, ff.shop)["tiers"]
        assert sum(tiers.values()) == ff.viewers, (tiers, ff.viewers)
    finally:
        stop_all(procs)
    summary = scorer_summary(r, n_workers)
    r.close()
    REDIS_TIME.append(f"{n_workers} scorer{'s' if n_workers > 1 else ''}: {cmd}")
    return Rate(f"feed -> consumer -> {n_workers} scorer{'s' if n_workers > 1 else ''} (end to end)",
                ff.events, dt, m.describe(), summary)


# -- (b) latency -------------------------------------------------------------
@dataclass
class Latency:
    rate: float
    events: int
    achieved: float
    p50_ts: float
    p99_ts: float
    max_ts: float
    p50_t: float
    p99_t: float
    worker: str
    cpu: str
    catchup_s: float
    notes: list[str] = field(default_factory=list)
    bound_p50: float = float("nan")  # upper bound of receipt -> effect: the scorers' own + the consumer's hold
    bound_p99: float = float("nan")


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def _applied_entries(r: redis.Redis, shop: str) -> list[tuple[int, bytes]]:
    """Every stream entry of the shop, each once, as (receipt ms, payload): those the scorers applied
    are in their applied-event log (the entry id's time is the consumer's XADD, its receipt), the
    rest still in the streams (their receipt field ``t``)."""
    out: dict[tuple[int, tuple[int, int]], tuple[int, bytes]] = {}
    for _path, rec in eventlog.LogReader(Path(os.environ["FANOPS_DATA_DIR"]), shop).read_new():
        out[(rec.part, rec.sid)] = (rec.sid[0], rec.payload)
    for part, s in enumerate(keys.streams(shop)):
        for i, f in cast("list[tuple[bytes, dict[bytes, bytes]]]", r.xrange(s)):
            out.setdefault((part, eventlog.stream_id(i)), (int(f[b"t"]), f[b"e"]))
    return list(out.values())


def run_latency(url: str, redis_pid: int, rate: float, duration: float, viewers: int, n_workers: int,
                warmup_s: float, log_dir: Path, shop: str = "default", profile: Path | None = None) -> Latency:
    r = fresh(url)
    # the scorers report receipt -> applied over the entries received in this last window: the show
    # after the warm-up, read when the show is over
    ws = workers(n_workers, url, log_dir, f"lat{int(rate)}",
                 env={"FANOPS_LATENCY_WINDOW_S": str(max(1, int(duration - warmup_s)))})
    port = server.free_port()
    sim = Child(f"lat{int(rate)}-sim", ["-m", "realtime", "simulate", "--port", str(port), "--rate", str(rate),
                                        "--viewers", str(viewers), "--duration", str(duration),
                                        "--history", "0", "--seed", "11"], log_dir)
    procs = ws + [sim]
    samples: list[tuple[int, float]] = []  # (shop clock, wall ms when read)
    stats = keys.stats(shop)
    try:
        wait_port(port, sim)
        listening_ms = time.time() * 1000  # the show starts when the simulator listens: ts >= this
        c = consumer(f"ws://127.0.0.1:{port}", url, log_dir, f"lat{int(rate)}")
        procs.append(c)
        m = CpuMeter({"sim": sim.pid, "consumer": c.pid} | {f"w{i + 1}": w.pid for i, w in enumerate(ws)}
                     | {"redis": redis_pid})
        profs = [Profiler(f"lat{int(rate)}-w{i + 1}", w.pid, profile) for i, w in enumerate(ws)] if profile else []
        last = -1
        end_by = time.monotonic() + duration + 900
        meter_until = time.monotonic() + duration - 0.5  # while every process still runs
        show_over_at = None
        while time.monotonic() < end_by:
            if meter_until and time.monotonic() >= meter_until:
                m.stop()
                PROFILES.extend(pr.stop() for pr in profs)
                meter_until = 0
            clock = int(r.hget(stats, "clock") or 0)
            now = time.time() * 1000
            if clock != last:
                samples.append((clock, now))
                last = clock
            if show_over_at is None and sim.proc.poll() is not None:
                show_over_at = time.monotonic()
            if show_over_at is not None:
                acc, app = _counts(r, shop)
                if acc and app >= acc:
                    break
            for p in procs:
                p.check()
            time.sleep(POLL_S)
        else:
            raise RuntimeError("the scorer never caught up with the simulated show")
        catchup = time.monotonic() - (show_over_at or time.monotonic())
        clock = int(r.hget(stats, "clock") or 0)  # the last batch may have landed after the last reading
        if clock != last:
            samples.append((clock, time.time() * 1000))
        hb = [json.loads(r.get(keys.heartbeat("scorer", f"w{i}")) or "{}") for i in range(1, n_workers + 1)]
        own = [(float(h.get("p50_ms", "nan")), float(h.get("p99_ms", "nan"))) for h in hb]
        worker = "; ".join(f"p50 {h.get('p50_ms', '?')} / p99 {h.get('p99_ms', '?')}, "
                           f"{h.get('events', 0) // max(1, h.get('batches', 0)):,} ev/batch" for h in hb)
        entries = _applied_entries(r, shop)
        applied = _counts(r, shop)[1]
    finally:
        stop_all(procs)
    r.close()

    clocks = [s[0] for s in samples]
    from_ts: list[float] = []
    from_t: list[float] = []
    ts_of: list[int] = []  # second of the show of each sample
    cutoff = listening_ms + warmup_s * 1000
    first_ts = last_ts = None
    for t, payload in entries:
        for ev in unpack_events(payload):
            if ev.ts < cutoff:
                continue
            i = bisect.bisect_left(clocks, ev.ts)
            if i >= len(samples):
                continue
            seen = samples[i][1]
            from_ts.append(seen - ev.ts)
            from_t.append(seen - t)
            ts_of.append(int((ev.ts - listening_ms) // 1000))
            first_ts = ev.ts if first_ts is None else min(first_ts, ev.ts)
            last_ts = ev.ts if last_ts is None else max(last_ts, ev.ts)
    worst: dict[int, float] = {}
    for lat_ms, ts_s in zip(from_ts, ts_of, strict=True):
        worst[ts_s] = max(worst.get(ts_s, 0.0), lat_ms)
    from_ts.sort()
    from_t.sort()
    span = ((last_ts or 0) - (first_ts or 0)) / 1000 or 1
    res = Latency(rate, applied, len(from_ts) / span, _pct(from_ts, 50), _pct(from_ts, 99),
                  from_ts[-1] if from_ts else float("nan"), _pct(from_t, 50), _pct(from_t, 99), worker,
                  m.describe(), catchup)
    if worst:
        res.notes.append("max by second of the show: " + " ".join(f"{worst[k]:.0f}" for k in sorted(worst)))
    # a scorer's own figure runs from the consumer's flush (receipt field t) to the batch applied; the
    # consumer holds an event at most flush_ms before that flush; over several scorers the largest of
    # their percentiles bounds the percentile of all events
    hold = Config.from_env().flush_ms
    res.bound_p50 = max(p for p, _ in own) + hold
    res.bound_p99 = max(p for _, p in own) + hold
    if n_workers > 1:
        res.notes.append("with more than one scorer the shop clock may run ahead of an unapplied batch: "
                         "ts->vis and t->vis are then a lower bound; the bound column is not")
    return res


# -- (c) memory --------------------------------------------------------------
@dataclass
class Memory:
    viewers: int
    events: int
    delta: int
    by_kind: dict[str, int]
    seconds: float
    measured: bool = True
    tasks: int = 0
    label: str = ""

    @property
    def name(self) -> str:
        lab = f"{self.viewers:,}"
        if self.label:
            lab += f" {self.label}"
        return lab if self.measured else lab + " (extrapolated)"

    @property
    def short(self) -> str:
        n = f"{self.viewers // 1_000_000}M" if self.viewers % 1_000_000 == 0 else f"{self.viewers / 1000:g}k"
        return n + (" closed" if self.label else "") + ("" if self.measured else "*")

    @property
    def per_viewer(self) -> float:
        return self.delta / self.viewers

    def kinds_per_viewer(self, kinds: set[str]) -> float:
        return sum(v for k, v in self.by_kind.items() if k in kinds) / self.viewers


EVENT_KINDS = {"events", "seen", "dedupe"}  # grow with events, not with viewers
KIND_NOTES = {
    "events": "the shop's event streams, 4 partitions: entries not applied yet",
    "seen": "dedupe ids per room, as a set (before the dedupe hash)",
    "dedupe": "dedupe ids per room, 10-byte records (expire after dedupe_ttl_s)",
    "viewers": "packed shop-wide state per viewer",
    "rv": "packed state per viewer per room",
    "lurk": "time index: dwell threshold per (room, viewer)",
    "due": "time index: next tier change, viewers due before the front (~2 days)",
    "duefar": "time index: viewers due later, a list per day",
    "duedays": "time index: the days that have a list",
    "present": "last event per present viewer per room",
    "tasks": "follow-up tasks, packed, a hash per room",
    "queue": "follow-up queues by state",
    "made": "open tasks' making times (expiry): a list a minute",
    "task_made": "open tasks' making times, a zset (before the lists)",
    "transitions": "stream of tier transitions (MAXLEN 100k)",
    "sent": "last follow-up sent per viewer",
    "orders": "order ids counted",
    "clockmin": "per-second clock index (per second of show)",
    "clockmax": "per-second clock index (per second of show)",
    "latewin": "pairs a late clock value would still change (few)",
    "openlurk": "layout 4: lurkers past their dwell moment with no task",
    "feed": "bounded lists of notable events per room",
    "roommin": "per-minute counts per room (charts)",
}


def _kind(key: bytes) -> str:
    k = key.decode(errors="replace")
    if "}:" in k:
        rest = k.split("}:", 1)[1]
        return rest.split(":", 1)[0]
    return k.split(":")[1] if ":" in k else k


def breakdown(r: redis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes and number of keys by key kind (the part after the shop's tag), over every key."""
    out: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    batch: list[bytes] = []

    def flush() -> None:
        p = r.pipeline(transaction=False)
        for k in batch:
            p.memory_usage(k, samples=0)
        for k, n in zip(batch, p.execute(), strict=True):
            out[_kind(k)] += int(n or 0)
            count[_kind(k)] += 1
        batch.clear()

    for k in r.scan_iter(count=1000):
        batch.append(k)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return dict(out), dict(count)


def run_memory(url: str, redis_pid: int, n_viewers: int, per_viewer: int, n_workers: int, tmp: Path,
               log_dir: Path, show_s: float = 3600.0, archive: bool = True) -> list[Memory]:
    """Feed ``per_viewer`` events a viewer (a simulated show of ``show_s`` seconds of ts, sent as
    fast as it goes) through the consumer and the scorers; memory after minus before.  Then, if
    the tree has ``python -m scoring close-room``, the same once the show is archived."""
    ff = write_feed(tmp / f"memory-{n_viewers}.jsonl",
                    sim_settings(n_viewers, n_viewers * per_viewer, 50, seed=13, shop="mem",
                                 rate=n_viewers * per_viewer / show_s))
    feed, feed_url = replay_server(ff.path, log_dir, name=f"mem{n_viewers}-feed")
    r = fresh(url)
    time.sleep(0.2)
    before = int(r.info("memory")["used_memory"])
    ws = workers(n_workers, url, log_dir, f"mem{n_viewers}")
    c = consumer(feed_url, url, log_dir, f"mem{n_viewers}")
    procs = ws + [c]
    t0 = time.perf_counter()
    last_note = [t0]

    def applied_all() -> bool:
        applied = _counts(r, ff.shop)[1]
        if time.perf_counter() - last_note[0] >= 30:
            last_note[0] = time.perf_counter()
            print(f"    {applied:,} of {ff.events:,} events applied after {last_note[0] - t0:.0f} s", flush=True)
        return applied >= ff.events

    try:
        _wait(applied_all, procs, 7200, "every event applied", 0.05)
    finally:
        stop_all(procs)
        feed.stop()
        ff.path.unlink()
    dt = time.perf_counter() - t0

    def measure(label: str, seconds: float) -> Memory:
        for k in r.scan_iter(match=keys.heartbeat_pattern("*")):
            r.delete(k)  # process heartbeats: not viewer data
        time.sleep(0.2)
        after = int(r.info("memory")["used_memory"])
        known = int(r.hlen(keys.viewers(ff.shop)))
        by_kind, counts = breakdown(r)
        tasks = sum(int(r.zcard(keys.queue(ff.shop, st))) for st in TASK_STATES)
        return Memory(known, ff.events, after - before, by_kind, seconds, tasks=tasks, label=label)

    out = [measure("", dt)]
    if archive and _has_close_room():
        rooms = [m.decode() for m in r.zrange(keys.rooms(ff.shop), 0, -1)]
        t1 = time.perf_counter()
        for room in rooms:
            cr = Child(f"mem{n_viewers}-close-room", ["-m", "scoring", "close-room", "--shop", ff.shop, "--room", room,
                                                      "--redis", url], log_dir)
            if cr.proc.wait() != 0:
                print(f"  close-room failed (exit {cr.proc.returncode}): {cr.tail(400)}", flush=True)
                cr.stop()
                break
            cr.stop()
        else:
            out.append(measure("after close-room", time.perf_counter() - t1))
    r.close()
    return out


def _has_close_room() -> bool:
    try:
        import scoring.archive  # noqa: F401  (the archive feature; absent in older trees)
    except ImportError:
        return False
    return True


# -- report ------------------------------------------------------------------
def part_a(args: argparse.Namespace, info: server.ServerInfo, d: Path, tmp: Path, rep: Report) -> None:
    ff = write_feed(tmp / "throughput.jsonl", sim_settings(args.viewers, args.events, 50))
    print(f"(a) feed: {ff.events:,} events, {ff.viewers:,} viewers, 50 events a frame", flush=True)
    feed, feed_url = replay_server(ff.path, d, name="a-feed")
    runs: list[Rate] = []
    counts = [int(x) for x in args.workers.split(",")]
    e2e: dict[int, Rate] = {}
    try:
        ceiling = run_ingest_only(info.url, info.pid, feed_url, feed.pid, ff, d)
        runs.append(ceiling)
        print(f"  {ceiling.label}: {ceiling.rate:,.0f} events/s", flush=True)
        if not args.no_backlog:
            for n in counts:
                runs.append(run_backlog(info.url, info.pid, feed_url, feed.pid, ff, n, d))
                print(f"  {runs[-1].label}: {runs[-1].rate:,.0f} events/s", flush=True)
            # small batches (one ~500-event entry a read), as at a paced rate: what drives latency
            runs.append(run_backlog(info.url, info.pid, feed_url, feed.pid, ff, 1, d, entries_per_read=1,
                                    limit=min(ff.events, 100_000)))
            print(f"  {runs[-1].label}: {runs[-1].rate:,.0f} events/s", flush=True)
        for n in counts:
            e2e[n] = run_end_to_end(info.url, info.pid, feed_url, feed.pid, ff, n, d, args.profile)
            runs.append(e2e[n])
            print(f"  {e2e[n].label}: {e2e[n].rate:,.0f} events/s", flush=True)
    finally:
        feed.stop()
    rep.blocks.append(table(
        ["path", "events", "s", "events/s", "of ingest", "of target", "CPU cores used", "scorers"],
        [[x.label, x.events, f"{x.seconds:.2f}", x.rate, ratio(x.rate, ceiling.rate),
          ratio(x.rate, TARGET_RATE), x.cpu, x.scorers] for x in runs],
        f"(a) Throughput, {ff.events:,} events of {ff.viewers:,} viewers, 50 events a frame "
        f"(ceiling: the consumer alone; target {TARGET_RATE:,.0f} events/s)"))
    for n, x in e2e.items():
        rep.target(f"end to end, {n} scorer{'s' if n > 1 else ''} (events/s)", x.rate, TARGET_RATE,
                   x.rate >= TARGET_RATE)
    if len(e2e) > 1:
        rep.blocks.append(f"scaling: {max(counts)} scorers give "
                          f"{ratio(e2e[max(counts)].rate, e2e[min(counts)].rate)} of {min(counts)}")


def part_b(args: argparse.Namespace, info: server.ServerInfo, d: Path, rep: Report) -> None:
    lat: list[Latency] = []
    for rate in [float(x) for x in args.rates.split(",")]:
        print(f"(b) latency at {rate:,.0f} events/s for {args.duration:.0f} s ...", flush=True)
        lat.append(run_latency(info.url, info.pid, rate, args.duration, args.viewers,
                               args.latency_workers, args.warmup, d, profile=args.profile))
        print(f"  p50 {lat[-1].p50_ts:.0f} ms, p99 {lat[-1].p99_ts:.0f} ms (ts -> visible)", flush=True)
    rep.blocks.append(table(
        ["rate", "applied", "events/s seen", "p50 ts->vis", "p99 ts->vis", "max", "p50 t->vis",
         "p99 t->vis", "p50/p99 bound", "scorers' own p50/p99 (per event)", "catch-up s", "CPU cores used"],
        [[x.rate, x.events, x.achieved, f"{x.p50_ts:.0f} ms", f"{x.p99_ts:.0f} ms", f"{x.max_ts:.0f} ms",
          f"{x.p50_t:.0f} ms", f"{x.p99_t:.0f} ms", f"{x.bound_p50:.0f} / {x.bound_p99:.0f} ms", x.worker,
          f"{x.catchup_s:.1f}", x.cpu] for x in lat],
        f"(b) Latency, simulator paced in real time, {args.latency_workers} scorer(s), "
        f"first {args.warmup:.0f} s not counted (ts->vis: event ts to effect visible, an upper bound of "
        f"receipt->effect; t->vis: the consumer's flush to visible, a lower bound)"))
    top = max(x.rate for x in lat)
    for x in lat:
        if x.notes:
            rep.blocks.append(f"{x.rate:,.0f} events/s: {'; '.join(x.notes)} (ms)")
        if x.rate == top:
            # one scorer: the event's ts to the shop clock reaching it; more: the scorers' own + the hold
            bound = x.p99_ts if args.latency_workers == 1 else x.bound_p99
            rep.target(f"p99 receipt -> effect at {x.rate:,.0f} events/s (ms, upper bound)", bound,
                       TARGET_P99_MS, bound < TARGET_P99_MS)


def part_c(args: argparse.Namespace, info: server.ServerInfo, d: Path, tmp: Path, rep: Report) -> None:
    mems: list[Memory] = []
    sizes = [int(x) for x in args.memory_viewers.split(",")] + ([1_000_000] if args.full else [])
    for n in sizes:
        print(f"(c) memory with {n:,} viewers ...", flush=True)
        for m in run_memory(info.url, info.pid, n, args.events_per_viewer, args.memory_workers, tmp, d,
                            archive=not args.no_archive):
            mems.append(m)
            print(f"  {m.name}: {m.per_viewer:,.0f} bytes per viewer ({m.viewers:,} known, {m.seconds:.0f} s)",
                  flush=True)
    if not args.full:
        big = max(m.viewers for m in mems)
        for m in [m for m in mems if m.viewers == big]:
            scale = 1_000_000 / m.viewers  # linear: every structure is per viewer or per event
            mems.append(Memory(1_000_000, int(m.events * scale), int(m.delta * scale),
                               {k: int(v * scale) for k, v in m.by_kind.items()}, 0.0, measured=False,
                               tasks=int(m.tasks * scale), label=m.label))
    rows: list[list[object]] = []
    for m in mems:
        state = m.per_viewer - m.kinds_per_viewer(EVENT_KINDS)
        rows.append([m.name, m.events, f"{m.tasks / m.viewers:.2f}", f"{m.seconds:.0f}" if m.measured else "-",
                     m.per_viewer, ratio(m.per_viewer, TARGET_BYTES), state, ratio(state, TARGET_BYTES)])
    rep.blocks.append(table(
        ["viewers", "events", "tasks/viewer", "s", "B/viewer", "of target", "B/viewer w/o stream+seen",
         "of target"], rows,
        f"(c) Redis memory per known viewer: used_memory after - before, / HLEN viewers "
        f"({args.events_per_viewer} events a viewer, a 1-hour show, through consumer + {args.memory_workers} "
        f"scorer(s); "
        f"target < {TARGET_BYTES:.0f} B)"))
    kinds = sorted({k for m in mems for k in m.by_kind}, key=lambda k: -mems[0].by_kind.get(k, 0))
    brows: list[list[object]] = []
    for k in kinds:
        if max(m.by_kind.get(k, 0) / m.viewers for m in mems) >= 1:
            brows.append([k, KIND_NOTES.get(k, "")] + [m.by_kind.get(k, 0) / m.viewers for m in mems])
    brows.append(["(sum of keys)", "MEMORY USAGE of every key"] + [sum(m.by_kind.values()) / m.viewers for m in mems])
    brows.append(["(used_memory)", "after - before"] + [m.per_viewer for m in mems])
    rep.blocks.append(table(["key kind", "what"] + [m.short for m in mems], brows,
                            "Bytes per viewer by key kind (MEMORY USAGE; closed: after close-room; * extrapolated)"))
    for m in mems:
        rep.target(f"memory per viewer, {m.name} (bytes)", m.per_viewer, TARGET_BYTES, m.per_viewer < TARGET_BYTES)
        if not m.label:
            state = m.per_viewer - m.kinds_per_viewer(EVENT_KINDS)
            rep.target("  same without the event stream and dedupe sets", state, TARGET_BYTES, state < TARGET_BYTES)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scorer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="abc", help="which parts to run, e.g. 'a' or 'bc'")
    p.add_argument("--events", type=int, default=300_000, help="(a) events in the throughput feed")
    p.add_argument("--viewers", type=int, default=20_000, help="(a, b) viewers in the simulated show")
    p.add_argument("--workers", default="1,2", help="(a) scorer counts to run")
    p.add_argument("--no-backlog", action="store_true", help="(a) skip the scorers-alone-on-a-backlog rows")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="(a, b) py-spy the consumer and scorers of the end-to-end and latency runs into DIR "
                        "(pip install py-spy)")
    p.add_argument("--rates", default="5000,20000", help="(b) paced event rates")
    p.add_argument("--duration", type=float, default=15.0, help="(b) seconds of show per rate")
    p.add_argument("--warmup", type=float, default=3.0, help="(b) first seconds of each show not counted")
    p.add_argument("--latency-workers", type=int, default=2, help="(b) scorers during the latency runs")
    p.add_argument("--memory-viewers", default="100000", help="(c) viewer counts measured")
    p.add_argument("--events-per-viewer", type=int, default=4, help="(c) events fed per viewer")
    p.add_argument("--memory-workers", type=int, default=1, help="(c) scorers feeding the memory runs")
    p.add_argument("--no-archive", action="store_true", help="(c) skip the after-close-room measurement")
    p.add_argument("--full", action="store_true", help="(c) also measure 1,000,000 viewers (several minutes)")
    args = p.parse_args(argv)

    started = time.perf_counter()
    rep = Report()
    with ExitStack() as stack:
        info, d = stack.enter_context(private_server())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanops-bench-feed-")))
        print(f"private server {info.url} (pid {info.pid}); {machine_note()}; "
              f"logs of the child processes in {d}\n{tree_note()}", flush=True)
        if "a" in args.only:
            part_a(args, info, d, tmp, rep)
        if "b" in args.only:
            part_b(args, info, d, rep)
        if "c" in args.only:
            part_c(args, info, d, tmp, rep)

    rep.print()
    if REDIS_TIME:
        print("\nRedis server time in the end-to-end runs (INFO commandstats):")
        print("\n".join(REDIS_TIME))
    if PROFILES:
        print("\nProfiles (py-spy; e2e: end-to-end runs, lat: latency runs):")
        print("\n".join(PROFILES))
    print(f"\n{time.perf_counter() - started:.0f} s in all; python {sys.version.split()[0]}; {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
