"""Throughput on a local Redis Cluster beside the single embedded server, in one run.

``python -m bench.cluster [--events N] [--viewers N] [--workers 1,2]``

The product's own processes (``python -m realtime replay`` feeds, ``python -m realtime consume``,
``python -m scoring run --name wN``) against, in turn, one embedded server and a cluster of 3
primaries and 3 replicas on loopback (``fanops/runtime/cluster.py``; every node a ``valkey-server``
process with append-only files, as the embedded server).  events/s from the first event accepted
to the last one applied, and the cluster's figure as a ratio of the single server's.  One shop:
its keys sit on one primary, so the cluster adds its routing and the replication to one replica,
not more cores for the shop (several shops spread over the primaries).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench._util import (
    CpuMeter,
    Report,
    machine_note,
    private_server,
    ratio,
    replay_server,
    sim_settings,
    table,
    tree_note,
    wait_until,
    write_feed,
)
from bench.scorer import Rate, consumer, stop_all, workers
from fanops import keys
from fanops.read import status
from fanops.runtime import db
from fanops.runtime.cluster import LocalCluster, start_cluster


def _counts(r: object, shop: str) -> int:
    return int(r.hget(keys.stats(shop), "accepted") or 0)  # type: ignore[attr-defined]


def run(url: str, server_pids: dict[str, int], feed_url: str, feed_pid: int, events: int, shop: str,
        n_workers: int, log_dir: Path, tag: str) -> Rate:
    """Feed -> consumer -> ``n_workers`` scorers on an emptied database, timed to lag 0."""
    r = db.client(url, socket_timeout=120)
    r.flushall()
    r.script_flush()
    ws = workers(n_workers, url, log_dir, f"{tag}{n_workers}")
    c = consumer(feed_url, url, log_dir, f"{tag}{n_workers}")
    procs = ws + [c]
    try:
        wait_until(lambda: _counts(r, shop) > 0, procs, 60, "the first accepted event", 0.002)
        t0 = time.perf_counter()
        m = CpuMeter({"consumer": c.pid} | {f"w{i + 1}": w.pid for i, w in enumerate(ws)}
                     | {"feed": feed_pid} | server_pids)

        def done() -> bool:
            s = status(r, shop)
            return s["events_applied"] >= events and s["lag"] == 0

        wait_until(done, procs, 900, "lag 0 with every event applied")
        dt = time.perf_counter() - t0
        m.stop()
    finally:
        stop_all(procs)
        r.close()
    return Rate(f"{tag}, {n_workers} scorer{'s' if n_workers > 1 else ''}", events, dt, m.describe())


def _cpu(servers: dict[str, int], x: Rate) -> str:
    """The CPU column with the cluster's six nodes summed into one figure."""
    parts = dict(kv.rsplit(" ", 1) for kv in x.cpu.split(", "))
    nodes = sum(float(v) for k, v in parts.items() if k in servers and k.startswith("node"))
    kept = [f"{k} {v}" for k, v in parts.items() if not (k in servers and k.startswith("node"))]
    return ", ".join(kept + ([f"6 nodes {nodes:.2f}"] if nodes else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000, help="events in the feed")
    p.add_argument("--viewers", type=int, default=10_000, help="viewers in the simulated show")
    p.add_argument("--workers", default="1,2", help="scorer counts to run")
    args = p.parse_args(argv)
    started = time.perf_counter()
    counts = [int(x) for x in args.workers.split(",")]
    rep = Report()
    with private_server() as (info, d), tempfile.TemporaryDirectory(prefix="fanops-bench-feed-") as tmp:
        ff = write_feed(Path(tmp) / "feed.jsonl", sim_settings(args.viewers, args.events, 50))
        print(f"feed: {ff.events:,} events, {ff.viewers:,} viewers; {machine_note()}\n{tree_note()}", flush=True)
        feed, feed_url = replay_server(ff.path, d, name="feed")
        lc: LocalCluster = start_cluster(d / "cluster")
        single = {"redis": info.pid}
        nodes = {f"node{i}": proc.pid for i, proc in enumerate(lc.procs.values())}
        runs: dict[tuple[str, int], Rate] = {}
        try:
            for n in counts:
                for tag, url, pids in (("single server", info.url, single), ("cluster 3+3", lc.url, nodes)):
                    runs[tag, n] = run(url, pids, feed_url, feed.pid, ff.events, ff.shop, n, d, tag)
                    print(f"  {runs[tag, n].label}: {runs[tag, n].rate:,.0f} events/s", flush=True)
        finally:
            feed.stop()
            lc.stop()
    rows = [[x.label, x.events, f"{x.seconds:.2f}", x.rate,
             ratio(x.rate, runs["single server", n].rate), _cpu(nodes, x)] for (_, n), x in runs.items()]
    rep.blocks.append(table(["path", "events", "s", "events/s", "of the single server, same scorers",
                             "CPU cores used"], rows,
                            f"End to end, {ff.events:,} events of {ff.viewers:,} viewers, one shop"))
    rep.print()
    print(f"{time.perf_counter() - started:.0f} s in all; {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
