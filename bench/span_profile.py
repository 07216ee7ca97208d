"""The scorer's cost by the events' time span (issue 18 item 1).

``python -m bench.span_profile [--events N] [--viewers V] [--prof]``

The same events of one room (seeded: joins, comments, likes, views, carts, shares, leaves of
``V`` viewers) are ingested three times into an empty private server, all at one ts, spread over
5 minutes and over an hour, and each time drained by one scorer in this process. Printed: the
Redis time of the ingest (the consumer's writer, with its dedupe), the drain's wall and CPU time,
its Redis time, events/s, the ratio to the one-ts run, the tasks made, and Redis's
time per command (``INFO commandstats``). ``--prof``: a cProfile of the 1-hour drain (top 30 by
cumulative time; the profiler slows Python ~2x, so read it for shares, not speeds).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import time

from bench._util import fresh, machine_note, private_server, table
from fanops import queue
from fanops.config import Config
from scoring.worker import Worker
from tests.pipeline import ingest_frames

T0 = 1_764_000_000_000
TYPES = ("join", "comment", "like", "product_view", "share", "cart_add", "leave")
SPANS = {"one ts": 0, "5 minutes": 300_000, "1 hour": 3_600_000}


def events(n: int, viewers: int, span_ms: int) -> list[dict]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        v, t = f"v{rng.randrange(viewers)}", rng.choice(TYPES)
        e = {"id": f"e{i}", "room": "r1", "ts": T0 + i * span_ms // n, "type": t, "viewer": {"id": v, "name": v}}
        extra = {"comment": {"text": "hi"}, "like": {"count": 3}, "product_view": {"sku": f"s{i % 50}"},
                 "cart_add": {"sku": f"s{i % 50}"}}.get(t, {})
        out.append({**e, **extra})
    return out


def run(n: int, viewers: int, span_ms: int, prof: bool) -> dict:
    frames = [json.dumps(chunk) for chunk in (lambda evs: [evs[i:i + 50] for i in range(0, n, 50)])(
        events(n, viewers, span_ms))]
    with private_server() as (info, d):
        r = fresh(info.url)
        cfg = Config.from_env({}, redis_url=info.url, data_dir=d / "data")
        r.config_resetstat()
        ingest_frames(cfg, frames, timeout=600)
        ingest_s = sum(v["usec"] for v in r.info("commandstats").values()) / 1e6
        r.config_resetstat()
        w = Worker(r, cfg, name="w1")
        pr = cProfile.Profile() if prof else None
        t, c0 = time.perf_counter(), time.process_time()
        if pr:
            pr.enable()
        w.drain(timeout=600)
        if pr:
            pr.disable()
            pstats.Stats(pr).sort_stats("cumulative").print_stats(30)
        wall, cpu = time.perf_counter() - t, time.process_time() - c0
        stats = r.info("commandstats")
        top = sorted(((v["usec"], k.removeprefix("cmdstat_"), v["calls"]) for k, v in stats.items()), reverse=True)
        log_bytes = sum(f.stat().st_size for f in (d / "data").rglob("*.log") if "eventlog" in f.parts)
        return {"log_b": log_bytes / n, "wall": wall, "cpu": cpu, "redis": sum(u for u, _k, _c in top) / 1e6,
                "ingest": ingest_s,
                "tasks": sum(queue.counts(r, "default").values()),
                "top": ", ".join(f"{k} {u / 1e6:.2f} s ({c:,} calls)" for u, k, c in top[:4])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--viewers", type=int, default=20_000)
    p.add_argument("--prof", action="store_true")
    a = p.parse_args()
    rows, base = [], None
    for name, span in SPANS.items():
        got = run(a.events, a.viewers, span, a.prof and span == SPANS["1 hour"])
        rate = a.events / got["wall"]
        base = base or rate
        rows.append([name, f"{got['ingest']:.2f}", f"{got['wall']:.2f}", f"{got['cpu']:.2f}", f"{got['redis']:.2f}",
                     f"{rate:,.0f}",
                     f"{base / rate:.2f}x", f"{got['tasks']:,}", f"{got['log_b']:.0f}", got["top"]])
    print(machine_note())
    print(table(["span", "Redis s (ingest)", "wall s", "scorer CPU s", "Redis s", "events/s", "cost vs one ts", "tasks",
                 "log B/event", "Redis top"],
                rows))


if __name__ == "__main__":
    main()
