"""Ingest throughput: events/s from a WebSocket feed into Redis, beside its ceiling and a naive baseline.

``python -m bench.ingest [--events-1 N] [--events-50 N] [--repeat K] [--naive-seconds S]``

For 1-event and 50-event frames, three runs against the same feed server (a separate
process: ``python -m realtime replay FILE --port P`` of a pre-generated simulated show):

- ceiling: a plain websockets client that only receives the frames (no parsing, no Redis),
  connected with the consumer's own options (so the same compression is negotiated);
- product: the real ``realtime.consumer.Consumer`` (parse, batch, one ``ingest.lua`` call per
  shop per flush), timed until the shop's ``accepted`` counter holds every event;
- naive: parse each frame the same way, then one ``await XADD`` per event.

Targets: 50-event frames >= 50,000 events/s into Redis; 1-event frames >= half the raw
receive rate.  The server is private (a temp dir, a free port), stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import redis.asyncio as aredis
from websockets.asyncio.client import connect

from bench._profile import Profiler
from bench._util import (
    CpuMeter,
    FeedFile,
    fresh,
    machine_note,
    private_server,
    ratio,
    replay_server,
    sim_settings,
    table,
    tree_note,
    verdict,
    write_feed,
)
from fanops import keys
from fanops.config import Config
from fanops.schema import BadInput, parse_frame
from realtime.consumer import Consumer

PROFILES: list[str] = []
TARGET_50 = 50_000.0  # events/s into Redis with 50-event frames
TARGET_1_SHARE = 0.5  # of the raw receive rate, with 1-event frames


@dataclass
class Run:
    events: int
    seconds: float
    cpu: str

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _ws_options(cfg: Config) -> dict[str, object]:
    # the consumer's own connect() arguments (realtime/consumer.py), so both negotiate the same
    return dict(max_size=cfg.max_frame_bytes, open_timeout=10, ping_interval=20, ping_timeout=20,
                close_timeout=2)


async def _raw(url: str, ff: FeedFile, cfg: Config) -> float:
    t0 = time.perf_counter()
    n = 0
    async with connect(url, **_ws_options(cfg)) as ws:  # type: ignore[arg-type]
        async for _msg in ws:
            n += 1
            if n >= ff.frames:
                break
        dt = time.perf_counter() - t0
    return dt


async def _consumer(url: str, cfg: Config, ff: FeedFile) -> float:
    r = aredis.Redis.from_url(cfg.redis_url)
    poll = aredis.Redis.from_url(cfg.redis_url)
    c = Consumer(url, r, cfg)
    stats = keys.stats(ff.shop)
    t0 = time.perf_counter()
    task = asyncio.create_task(c.run())
    try:
        while True:
            accepted = int(await poll.hget(stats, "accepted") or 0)
            if accepted >= ff.events:
                dt = time.perf_counter() - t0
                break
            if task.done():
                task.result()
                raise RuntimeError(f"the consumer stopped with {accepted} of {ff.events} events accepted")
            await asyncio.sleep(0.005)
    finally:
        c.stop()
        await asyncio.wait_for(task, 30)
        await r.aclose()
        await poll.aclose()
    return dt


async def _naive(url: str, cfg: Config, ff: FeedFile, budget_s: float) -> tuple[int, float]:
    enc = msgspec.msgpack.Encoder()
    r = aredis.Redis.from_url(cfg.redis_url)
    stream = keys.stream(ff.shop)
    n = 0
    t0 = time.perf_counter()
    try:
        async with connect(url, **_ws_options(cfg)) as ws:  # type: ignore[arg-type]
            async for msg in ws:
                data = msg.encode() if isinstance(msg, str) else msg
                for ev in parse_frame(data, int(time.time() * 1000), cfg.future_skew_ms):
                    if not isinstance(ev, BadInput):
                        await r.xadd(stream, {"e": enc.encode(ev)})  # one round trip per event
                        n += 1
                if n >= ff.events or time.perf_counter() - t0 >= budget_s:
                    break
            dt = time.perf_counter() - t0  # before the closing handshake
        assert await r.xlen(stream) == n
    finally:
        await r.aclose()
    return n, dt


def measure(kind: str, url: str, ff: FeedFile, cfg: Config, pids: dict[str, int], budget_s: float,
            profile: Path | None = None) -> Run:
    fresh(cfg.redis_url).close()
    meter = CpuMeter(dict(pids))
    prof = Profiler(f"ingest-{ff.frames}frames-{kind}", os.getpid(), profile) if profile else None
    if kind == "raw":
        n, dt = ff.events, asyncio.run(_raw(url, ff, cfg))
    elif kind == "consumer":
        n, dt = ff.events, asyncio.run(_consumer(url, cfg, ff))
    else:
        n, dt = asyncio.run(_naive(url, cfg, ff, budget_s))
    meter.stop()
    if prof is not None:
        PROFILES.append(prof.stop())
    return Run(n, dt, meter.describe())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events-1", type=int, default=200_000, help="events in the 1-event-frame run")
    p.add_argument("--events-50", type=int, default=1_000_000, help="events in the 50-event-frame run")
    p.add_argument("--viewers", type=int, default=20_000, help="distinct viewers in the simulated show")
    p.add_argument("--naive-seconds", type=float, default=5.0, help="time budget of each naive run")
    p.add_argument("--repeat", type=int, default=3, help="runs of the ceiling and the product; the median is shown")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="py-spy this process during the consumer runs into DIR (pip install py-spy)")
    args = p.parse_args(argv)

    started = time.perf_counter()
    results: dict[tuple[int, str], Run] = {}
    with private_server() as (info, d), tempfile.TemporaryDirectory(prefix="fanops-bench-feed-") as tmp:
        cfg = Config.from_env(redis_url=info.url)
        print(f"private server {info.url} (pid {info.pid}); consumer flush_events={cfg.flush_events}, "
              f"flush_ms={cfg.flush_ms}; {machine_note()}\n{tree_note()}", flush=True)
        for batch, n in ((1, args.events_1), (50, args.events_50)):
            ff = write_feed(Path(tmp) / f"feed-{batch}.jsonl", sim_settings(args.viewers, n, batch))
            print(f"{batch}-event frames: {ff.events:,} events in {ff.frames:,} frames, "
                  f"{ff.bytes / ff.events:.0f} bytes/event", flush=True)
            feed, url = replay_server(ff.path, d, name=f"feed-{batch}")
            pids = {"bench": os.getpid(), "feed": feed.pid, "redis": info.pid}
            try:
                for kind in ("raw", "consumer", "naive"):
                    repeat = 1 if kind == "naive" else args.repeat  # the baseline is 10x off: once is enough
                    prof = args.profile if kind == "consumer" else None
                    runs = [measure(kind, url, ff, cfg, pids, args.naive_seconds, prof) for _ in range(repeat)]
                    runs.sort(key=lambda x: x.rate)
                    results[(batch, kind)] = runs[len(runs) // 2]
                    print(f"  {kind:<8} {results[(batch, kind)].rate:>12,.0f} events/s"
                          + (f"  (runs: {', '.join(f'{x.rate:,.0f}' for x in runs)})" if len(runs) > 1 else ""),
                          flush=True)
            finally:
                feed.stop()

    print()
    rows = []
    names = {"raw": "raw receive, no Redis (ceiling)", "consumer": "Consumer -> ingest.lua (product)",
             "naive": "await XADD per event (baseline)"}
    for batch in (1, 50):
        raw, prod = results[(batch, "raw")], results[(batch, "consumer")]
        for kind in ("raw", "consumer", "naive"):
            x = results[(batch, kind)]
            rows.append([f"{batch}", names[kind], x.events, f"{x.seconds:.2f}", x.rate,
                         ratio(x.rate, raw.rate), ratio(prod.rate, x.rate) if kind == "naive" else "",
                         x.cpu])
    print(table(["ev/frame", "path", "events", "s", "events/s", "of raw", "product is", "CPU cores used"],
                rows, "Ingest: feed -> Redis"))
    print()
    r1, c1 = results[(1, "raw")].rate, results[(1, "consumer")].rate
    c50 = results[(50, "consumer")].rate
    goal1 = TARGET_1_SHARE * r1
    print(table(["target", "measured", "goal", "measured/goal", ""], [
        ["50-event frames into Redis", c50, TARGET_50, ratio(c50, TARGET_50), verdict(c50 >= TARGET_50)],
        ["1-event frames >= 0.5 x raw receive", c1, goal1, ratio(c1, goal1), verdict(c1 >= goal1)],
    ], "Targets"))
    if PROFILES:
        print("\nProfiles (py-spy, the consumer's process):")
        print("\n".join(PROFILES))
    print(f"\n{time.perf_counter() - started:.0f} s in all; python {sys.version.split()[0]}; {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
