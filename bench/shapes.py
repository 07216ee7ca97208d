"""The scorer on the shapes of real shows: the same events at one ts, over 5 minutes, over 1 hour.

``python -m bench.shapes [--events 300000] [--viewers 20000] [--shapes one,5m,1h,1h-nf,real] [--inproc]
[--e2e] [--workers 1,2]``

issue 18 measured that the time-driven work (presence, dwell, tier changes as the clock moves,
follow-up moments, the time indexes) grows with the span of the events' ts, not with the events.
This bench reproduces that table in one run. The feeds, 50 events a frame:

- ``one`` / ``5m`` / ``1h``: one simulated show (``realtime.simulator``, an hour long), then the
  very same events with their ts squeezed linearly towards the show's start: all at one ts, over
  5 minutes, as simulated (1 hour).  Only the ts differ.
- ``1h-nf``: the ``1h`` feed scored with the follow-up rule's dwell at its maximum, 24 hours, so
  that no DM follow-up task is made (``--inproc`` only): what the clock's span costs apart from the
  follow-ups that a one-hour show makes and a show at one ts cannot (no one dwells at one ts).
- ``real``: a real show's shape: many viewers who come once (events/3 viewers, so most join, do
  little and go), over 1 hour, and late orders: 2% of the viewers order again after the show
  (ts up to an hour after its end), sent after the show's events, as a shop's checkout brings them.

Two ways to run each shape (both by default):

- ``--inproc``: the scorer alone, in this process: the feed is written to the streams first (the
  consumer's own writer, ``fanops.ingest``, in flushes of ``flush_events``), then one
  ``scoring.worker.Worker`` drains it. Reported: the scorer's CPU and Redis's CPU per event (us),
  the wall time, and each shape's cost per event against ``one``'s; the DM follow-up tasks made
  (per 1,000 events); for the ingest, Redis's time
  an event in ``INFO commandstats`` (every command's usec summed, as the deployment page's figure
  was first taken; a script's own commands are counted inside it and again on their own) and
  Redis's CPU an event (``/proc``); the bytes an event of the scorer's applied-event log
  (``scoring.eventlog``, its files after the drain).  Use this to profile
  (``py-spy record -o x.txt -f raw -- python -m bench.shapes --inproc --shapes 1h``).
- ``--e2e``: the product's own processes as bench.scorer runs them (``realtime replay`` ->
  ``realtime consume`` -> one ``scoring run``), timed from the first event accepted to ``status``
  lag 0; beside it, the consumer alone (the ceiling).

Exit code 0 whatever the figures; bench/README.md holds the figures and what they showed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

from bench._util import (
    FeedFile,
    cpu_seconds,
    fresh,
    machine_note,
    private_server,
    replay_server,
    sim_settings,
    table,
    tree_note,
)
from bench.scorer import redis_time, run_end_to_end, run_ingest_only
from fanops import keys, rules_store
from fanops.config import Config
from fanops.ingest import IngestWriter
from fanops.read import status
from fanops.schema import BadInput, Event, parse_frame
from fanops.state import TASK_STATES
from realtime.simulator import encode_frame, generate
from scoring import eventlog
from scoring.worker import Worker

SPAN_MS = {"one": 0, "5m": 300_000, "1h": 3_600_000, "1h-nf": 3_600_000, "real": 3_600_000}
# shapes scored with the follow-up rule's dwell at its maximum (24 h): no pair of a one-hour show reaches
# it, so the scorer makes no DM follow-up task; the rest of the time-driven work stays (presence, the
# time indexes, tier moments, the lurk index of pairs whose dwell is still ahead)
NO_FOLLOWUP = {"1h-nf": 1440.0}
FRAME = 50
LATE_ORDERS = 0.02  # of the viewers of the real shape: an order after the show


# -- feeds -------------------------------------------------------------------
def show_frames(events: int, viewers: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    """A simulated one-hour show of ``events`` events, ``FRAME`` events a frame (clean: no bad or
    repeated events), that ended an hour ago."""
    s = replace(sim_settings(viewers, events, FRAME, seed=seed, rate=events / 3600.0), contacts=0.0)
    return [list(fr) for fr in generate(s)]


def squeeze(frames: list[list[dict[str, Any]]], span_ms: int) -> list[list[dict[str, Any]]]:
    """The same events with their ts mapped linearly from the show's span onto ``span_ms``."""
    ts = [e["ts"] for fr in frames for e in fr]
    t0, t1 = min(ts), max(ts)
    k = span_ms / max(1, t1 - t0)
    return [[e | {"ts": t0 + int((e["ts"] - t0) * k)} for e in fr] for fr in frames]


def late_orders(frames: list[list[dict[str, Any]]], share: float, seed: int = 7) -> list[list[dict[str, Any]]]:
    """``frames`` followed by an order from ``share`` of their viewers, each at a ts up to an hour
    after the last event, in ts order, ``FRAME`` a frame."""
    rng = random.Random(seed)
    last = max(e["ts"] for fr in frames for e in fr)
    first_ev: dict[str, dict[str, Any]] = {}
    for fr in frames:
        for e in fr:
            first_ev.setdefault(e["viewer"]["id"], e)
    who = rng.sample(sorted(first_ev), int(len(first_ev) * share))
    orders = sorted(({"id": f"late-{i}", "room": first_ev[v]["room"], "shop": first_ev[v]["shop"],
                      "ts": last + rng.randrange(60_000, 3_600_000), "type": "order", "viewer": {"id": v},
                      "order_id": f"late-o-{i}", "amount": round(rng.uniform(5, 80), 2), "currency": "USD"}
                     for i, v in enumerate(who)), key=lambda e: e["ts"])
    return frames + [orders[i:i + FRAME] for i in range(0, len(orders), FRAME)]


def build_shapes(names: list[str], events: int, viewers: int) -> dict[str, list[list[dict[str, Any]]]]:
    out: dict[str, list[list[dict[str, Any]]]] = {}
    base = show_frames(events, viewers) if set(names) - {"real"} else []
    for name in names:
        if name == "real":
            out[name] = late_orders(show_frames(events, max(1, events // 3), seed=8), LATE_ORDERS)
        else:
            out[name] = squeeze(base, SPAN_MS[name])
    return out


def write_file(path: Path, frames: list[list[dict[str, Any]]]) -> FeedFile:
    n = size = 0
    seen: set[str] = set()
    with open(path, "wb") as f:
        for fr in frames:
            line = encode_frame(fr)
            f.write(line + b"\n")
            n += len(fr)
            size += len(line)
            seen.update(e["viewer"]["id"] for e in fr)
    return FeedFile(path, n, len(frames), size, len(seen), frames[0][0]["shop"])


# -- the scorer alone, in this process ---------------------------------------
@dataclass
class Inproc:
    shape: str
    events: int
    wall_s: float
    scorer_cpu_s: float
    redis_cpu_s: float
    batches: int
    commands: str = ""
    ingest_stats_s: float = 0.0  # INFO commandstats over the ingest, every command's usec summed
    ingest_cpu_s: float = 0.0  # the Redis server's CPU over the ingest (/proc)
    log_bytes: int = 0  # the applied-event log's files after the drain
    ingest_commands: str = ""
    tasks: int = 0  # DM follow-up tasks (of every kind) in the queues after the drain

    def us(self, seconds: float) -> float:
        return seconds / self.events * 1e6


def ingest(url: str, cfg: Config, frames: list[list[dict[str, Any]]]) -> int:
    """Write the feed to the streams as the consumer would (its writer, a flush per ``flush_events``)."""
    now = int(time.time() * 1000)
    evs: list[Event] = [e for fr in frames for e in parse_frame(encode_frame(fr), now)
                        if not isinstance(e, BadInput)]

    async def go() -> int:
        ar = aredis.Redis.from_url(url)
        w = IngestWriter(ar, cfg)
        n = 0
        for i in range(0, len(evs), cfg.flush_events):
            a, _d = await w.write_events(evs[i:i + cfg.flush_events])
            n += a
        await ar.aclose()
        return n

    return asyncio.run(go())


def commandstats_seconds(r: redis.Redis) -> float:
    """Redis's time in commands since CONFIG RESETSTAT: every ``INFO commandstats`` usec summed
    (a command a script runs counts on its own and inside the script's call)."""
    return float(sum(v["usec"] for v in r.info("commandstats").values())) / 1e6


def log_bytes(data_dir: Path, shop: str) -> int:
    """The size of the shop's applied-event log files (``scoring.eventlog``) under ``data_dir``."""
    return sum(f.stat().st_size for f in eventlog.shop_dir(data_dir, shop).glob(f"*{eventlog.SUFFIX}"))


def run_inproc(url: str, redis_pid: int, data_dir: Path, shape: str, frames: list[list[dict[str, Any]]],
               round_no: int = 0) -> Inproc:
    r = fresh(url)
    # a data dir a round: the applied-event log's bytes are the drain's own
    cfg = Config.from_env({}, redis_url=url, data_dir=data_dir / f"inproc-{shape}-{round_no}")
    shop = frames[0][0]["shop"]
    if shape in NO_FOLLOWUP:
        rules_store.save(r, shop, {"followup_dwell_minutes": NO_FOLLOWUP[shape]}, by="bench")
    r.config_resetstat()
    rc0 = cpu_seconds(redis_pid) or 0.0
    n = ingest(url, cfg, frames)
    ingest_cpu, ingest_stats = (cpu_seconds(redis_pid) or 0.0) - rc0, commandstats_seconds(r)
    ingest_cmds = redis_time(r, n, top=4)
    w = Worker(r, cfg, name="w1", shops=None)
    r.config_resetstat()
    rc0, c0, t0 = cpu_seconds(redis_pid) or 0.0, time.process_time(), time.perf_counter()
    w.drain(timeout=900)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rcpu = (cpu_seconds(redis_pid) or 0.0) - rc0
    st = status(r, shop)
    assert st["events_applied"] == n and st["lag"] == 0, (st["events_applied"], n, st["lag"])
    cmds = redis_time(r, n, top=8)
    tasks = sum(int(r.zcard(keys.queue(shop, state))) for state in TASK_STATES)
    r.close()
    return Inproc(shape, n, wall, cpu, rcpu, w.stats.batches, cmds, ingest_stats, ingest_cpu,
                  log_bytes(cfg.data_dir, shop), ingest_cmds, tasks)


def inproc_table(runs: list[Inproc]) -> str:
    base = next((x for x in runs if x.shape == "one"), runs[0])

    def per(x: Inproc) -> float:
        return x.us(x.scorer_cpu_s + x.redis_cpu_s)

    rows = [[x.shape, x.events, x.batches, f"{x.us(x.ingest_stats_s):.1f}", f"{x.us(x.ingest_cpu_s):.1f}",
             f"{x.wall_s:.2f}", f"{x.events / x.wall_s:,.0f}",
             f"{x.us(x.scorer_cpu_s):.1f}", f"{x.us(x.redis_cpu_s):.1f}", f"{per(x):.1f}",
             f"{per(x) / per(base):.2f}x", f"{x.log_bytes / x.events:.0f}", f"{x.tasks / x.events * 1000:.0f}"]
            for x in runs]
    return table(["shape", "events", "batches", "ingest redis us/ev", "ingest redis CPU us/ev", "wall s",
                  "events/s", "scorer us/ev", "redis us/ev", "CPU us/ev", f"of {base.shape}", "log B/ev",
                  "tasks /1k ev"], rows,
                 "The consumer's writer fills the streams (its Redis time: commandstats, then /proc CPU); then one "
                 "Worker.drain in this process applies the backlog (scorer and Redis CPU; the applied-event log's "
                 "bytes)") + "\n" + "\n".join(
        f"  Redis {x.shape} (ingest): {x.ingest_commands}\n  Redis {x.shape} (drain): {x.commands}" for x in runs)


def rounds_summary(rounds: list[list[Inproc]]) -> str:
    """Each shape's CPU us an event and ratio to ``one`` in every round, and their medians."""
    def per(x: Inproc) -> float:
        return x.us(x.scorer_cpu_s + x.redis_cpu_s)

    lines = [f"{len(rounds)} rounds, CPU us an event (scorer + Redis) and of one ts, round by round:"]
    for i, shape in enumerate(x.shape for x in rounds[0]):
        costs = [per(r[i]) for r in rounds]
        ratios = [per(r[i]) / per(next((x for x in r if x.shape == "one"), r[0])) for r in rounds]
        lines.append(f"  {shape}: " + ", ".join(f"{c:.1f} ({q:.2f}x)" for c, q in zip(costs, ratios, strict=True))
                     + f"; median {statistics.median(costs):.1f} ({statistics.median(ratios):.2f}x)")
    return "\n".join(lines)


# -- end to end, the product's processes -------------------------------------
def per_event(cpu: str, seconds: float, events: int) -> str:
    """A ``CpuMeter.describe`` text (cores used by each process) as CPU us an event of each."""
    out = []
    for part in cpu.split(", "):
        name, _, cores = part.rpartition(" ")
        out.append(f"{name} {float(cores) * seconds / events * 1e6:.1f}")
    return ", ".join(out)


def run_e2e(url: str, redis_pid: int, d: Path, tmp: Path, shape: str, frames: list[list[dict[str, Any]]],
            scorers: list[int]) -> list[list[object]]:
    """The consumer alone (the ceiling), then feed -> consumer -> n scorers for each n of ``scorers``."""
    ff = write_file(tmp / f"{shape}.jsonl", frames)
    feed, feed_url = replay_server(ff.path, d, f"feed-{shape}")
    try:
        ceiling = run_ingest_only(url, redis_pid, feed_url, feed.pid, ff, d)
        runs = [run_end_to_end(url, redis_pid, feed_url, feed.pid, ff, n, d) for n in scorers]
    finally:
        feed.stop()
    rows: list[list[object]] = [[shape, "consumer alone (ceiling)", ff.events, f"{ceiling.seconds:.2f}",
                                 ceiling.rate, "", per_event(ceiling.cpu, ceiling.seconds, ff.events)]]
    for n, x in zip(scorers, runs, strict=True):
        rows.append([shape, f"feed -> consumer -> {n} scorer{'s' if n > 1 else ''}", ff.events,
                     f"{x.seconds:.2f}", x.rate, f"{x.rate / ceiling.rate:.2f}x",
                     per_event(x.cpu, x.seconds, ff.events)])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--viewers", type=int, default=20_000, help="viewers of the one/5m/1h show")
    p.add_argument("--shapes", default="one,5m,1h,1h-nf,real")
    p.add_argument("--inproc", action="store_true", help="only the scorer alone in this process")
    p.add_argument("--e2e", action="store_true", help="only the end-to-end runs")
    p.add_argument("--workers", default="1", help="end to end: the scorer counts to run, e.g. 1,2")
    p.add_argument("--repeat", type=int, default=1,
                   help="in process: run the shapes this many rounds, in turn (one, 1h, one, 1h, ...), "
                        "and give each round's ratios and their median (the machine is shared: one round's "
                        "ratio moves by ~0.1)")
    args = p.parse_args(argv)
    names = [s for s in args.shapes.split(",") if s]
    if bad := [s for s in names if s not in SPAN_MS]:
        p.error(f"unknown shape {bad[0]!r}: one of {', '.join(SPAN_MS)}")
    both = not (args.inproc or args.e2e)
    started = time.perf_counter()
    print(f"building {len(names)} feeds of ~{args.events:,} events ...", flush=True)
    shapes = build_shapes(names, args.events, args.viewers)
    blocks: list[str] = []
    with private_server() as (info, d), tempfile.TemporaryDirectory(prefix="fanops-shapes-") as tmp:
        print(f"private server {info.url}; {machine_note()}; {tree_note()}", flush=True)
        if args.inproc or both:
            rounds = []
            for k in range(max(1, args.repeat)):
                runs = []
                for name, frames in shapes.items():
                    runs.append(run_inproc(info.url, info.pid, d, name, frames, k))
                    print(f"  inproc {name}: {runs[-1].events / runs[-1].wall_s:,.0f} events/s", flush=True)
                blocks.append(inproc_table(runs) if k == 0 else inproc_table(runs).split("\n  Redis ")[0])
                rounds.append(runs)
            if len(rounds) > 1:
                blocks.append(rounds_summary(rounds))
        if args.e2e or both:
            rows: list[list[object]] = []
            scorers = [int(x) for x in args.workers.split(",")]
            for name, frames in shapes.items():
                if name in NO_FOLLOWUP:
                    continue  # its rule is set in process only (--inproc)
                rows += run_e2e(info.url, info.pid, d, Path(tmp), name, frames, scorers)
                print(f"  e2e {name}: {rows[-1][4]:,.0f} events/s", flush=True)
            blocks.append(table(["shape", "path", "events", "s", "events/s", "of ceiling",
                                 "CPU us an event, by process"], rows,
                                "End to end, 50-event frames (timed from the first event accepted to lag 0)"))
            for n in scorers:
                e2e = {str(row[0]): float(row[4]) for row in rows  # type: ignore[arg-type]
                       if str(row[1]).endswith(f"> {n} scorer{'s' if n > 1 else ''}")}
                if "one" in e2e:
                    blocks.append(f"{n} scorer(s), end to end, events/s of one ts / of each shape: " + ", ".join(
                        f"{k} {e2e['one'] / v:.2f}x" for k, v in e2e.items()))
    print("\n\n".join(blocks))
    print(f"\n{time.perf_counter() - started:.0f} s in all; {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
