"""Post-show analysis and archive: analysis time for one big show and for 30 archived shows, and
Redis memory as shows are archived.

``python -m bench.analysis [--events N] [--viewers N] [--shows K] [--show-events N] [--show-viewers N]
[--skip-big] [--skip-shows] [--repeat R]``

1. One show of ``--events`` events (default 1,000,000) by ``--viewers`` viewers (100,000), two hours
   long, from the simulator, through the real ingest writer and scorer into a private Redis, archived
   with ``scoring.archive.archive_room``.  Timed: ``analysis.analyse`` over the archive (every table of
   the review, from the Parquet files), cold (first call in the process) and warm (best of R).
2. ``--shows`` shows (30) of one shop, one a day, each by the same fan base of ``--show-viewers``
   viewers (behaviour differs per show: a different simulator seed, viewer ids mapped onto the fixed
   fan base), ``--show-events`` events each.  After each show operators work the queue (send a
   third of its tasks, skip a sixth) and the show is archived (``close_idle_rooms``, as the worker
   does once the room is idle).  Redis ``used_memory`` is read after the first show is archived and
   after the last; then ``analysis.analyse`` over all the archived shows is timed as in 1.

Targets: each analysis under 2 s; memory after 30 shows within 20% of memory after the first.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from bench._util import fresh, private_server, table, verdict, write_frames
from fanops import keys, queue
from fanops.config import Config
from realtime.simulator import SimSettings, generate
from review import analysis, archive_files
from review.report import render_html
from scoring import archive
from scoring.worker import Worker

DAY = 86_400_000
TARGET_S = 2.0
MEMORY_GROWTH = 0.20
WALL = 1_800_000_000_000  # operators' wall clock for the queue actions


def _ingest(cfg: Config, frames: Iterator[list[dict[str, Any]]], batch: int = 2000) -> int:
    return write_frames(cfg, frames, batch, received_ms=4_000_000_000_000)


def _analyse(cfg: Config, shop: str, repeat: int) -> tuple[float, float, analysis.Review]:
    """(cold seconds, best warm seconds, the review) of analysing every archived show of the shop."""
    times = []
    rv = None
    for _ in range(1 + repeat):
        t = time.perf_counter()
        shows = [archive_files.read_room(cfg, shop, i.room) for i in archive_files.list_archived(cfg, shop)]
        rv = analysis.analyse(analysis.load(shows))
        times.append(time.perf_counter() - t)
    assert rv is not None
    return times[0], min(times[1:] or times), rv


def big_show(url: str, tmp: Path, events: int, viewers: int, repeat: int) -> list[list[object]]:
    r = fresh(url)
    cfg = Config.from_env({}, redis_url=url, data_dir=tmp / "big", worker_batch=20)
    duration = 7200.0
    s = SimSettings(seed=5, viewers=viewers, rate=events / duration, duration=duration, shop="big",
                    room="big-show", history_shows=0, start_ms=1_763_856_000_000, bad_ratio=0.0, dup_ratio=0.0,
                    batch=500)
    t = time.perf_counter()
    n = _ingest(cfg, generate(s))
    t_ingest = time.perf_counter() - t
    t = time.perf_counter()
    Worker(r, cfg, name="bench").drain(timeout=3600)
    t_score = time.perf_counter() - t
    t = time.perf_counter()
    res = archive.archive_room(r, cfg, "big", "big-show")
    t_archive = time.perf_counter() - t
    cold, warm, rv = _analyse(cfg, "big", repeat)
    t = time.perf_counter()
    html = render_html(rv, "big-show")
    t_html = time.perf_counter() - t
    sizes = {p.name: p.stat().st_size for p in archive_files.read_room(cfg, "big", "big-show").paths.values()}
    print(f"big show: {n:,} events, {res.viewers:,} viewers, {res.tasks:,} follow-ups; ingest {t_ingest:.1f} s, "
          f"scorer {t_score:.1f} s, archive {t_archive:.1f} s; files "
          + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()), flush=True)
    r.close()
    return [[f"1 show, {n:,} events, {res.viewers:,} viewers", cold, warm, verdict(max(cold, warm) < TARGET_S)],
            [f"  HTML report of it ({len(html) / 1e6:.1f} MB)", t_html, "", ""]]


def _show_frames(seed: int, fan_base: list[str], room: str, start: int, n_events: int
                 ) -> Iterator[list[dict[str, Any]]]:
    """One show by the fixed fan base: the simulator's show for ``seed``, viewer ids mapped onto it."""
    viewers = len(fan_base)
    s = SimSettings(seed=seed, viewers=viewers, rate=n_events / 5400, duration=5400.0, shop="shop", room=room,
                    history_shows=0, start_ms=start, bad_ratio=0.0, dup_ratio=0.0, batch=100)
    who: dict[str, str] = {}
    pool = fan_base[:]
    random.Random(seed).shuffle(pool)
    for fr in generate(s):
        out = []
        for e in fr:
            vid = e["viewer"]["id"]
            if vid not in who:
                who[vid] = pool[len(who)]
            out.append({**e, "viewer": {**e["viewer"], "id": who[vid]}})
        yield out


def _work_queue(r: redis.Redis, room: str) -> tuple[int, int]:
    """Operators after the show work its whole queue: send every third task, skip the others."""
    op = queue.Operator(r, "shop", "bench")
    ids = [m.decode() for m in r.zrange(keys.queue("shop", "pending"), 0, -1)
           if queue.split_task_id(m.decode())[0] == room]
    sent = 0
    for i, tid in enumerate(ids):
        if i % 3 == 0:
            op.claim(tid, now_ms=WALL)
            op.mark_sent(tid, now_ms=WALL)
            sent += 1
        else:
            op.skip(tid, "not now", now_ms=WALL)
    return sent, len(ids) - sent


RAW = ("events", "seen", "rv", "present", "roommin", "feed", "lurk")
KIND = {**{k: "raw room data" for k in RAW}, "task": "follow-up tasks", "queue": "follow-up tasks",
        "sent": "follow-up tasks", "viewers": "viewers (history, tiers)", "due": "viewers (history, tiers)",
        "tiers": "viewers (history, tiers)", "clockmin": "shop clock index", "clockmax": "shop clock index",
        "transitions": "tier transitions stream", "room": "room counters"}


def memory(r: redis.Redis) -> dict[str, int]:
    """used_memory, and the bytes of the shop's keys by kind (MEMORY USAGE of every key).

    The slow log is emptied first: it is a diagnostic ring of the server's last 128 slow commands
    (``slowlog-max-len``), each with its first 32 arguments, i.e. up to ~0.5 MB of the scorer's
    script calls that are kept across FLUSHALL, whatever the data; it is not the shop's data."""
    r.slowlog_reset()
    out = {"used_memory": int(r.info("memory")["used_memory"])}
    for k in r.scan_iter(match=keys.tag("shop") + ":*", count=1000):
        kind = KIND.get(k.decode().split(":", 2)[2].split(":")[0], "other")
        out[kind] = out.get(kind, 0) + int(r.memory_usage(k, samples=0) or 0)
    return out


def many_shows(url: str, tmp: Path, shows: int, show_events: int, show_viewers: int, repeat: int, prune: bool
               ) -> tuple[list[list[object]], list[list[object]]]:
    r = fresh(url)
    cfg = Config.from_env({}, redis_url=url, data_dir=tmp / f"shows-{int(prune)}")
    fan_base = [f"fan-{i:07d}" for i in range(show_viewers)]
    base = 1_763_856_000_000 - shows * DAY
    mem: list[dict[str, int]] = []
    live: dict[str, int] = {}
    t0 = time.perf_counter()
    handled = [0, 0]
    for i in range(shows):
        room = f"show-{i + 1:02d}"
        _ingest(cfg, _show_frames(100 + i, fan_base, room, base + i * DAY, show_events))
        Worker(r, cfg, name="bench").drain(timeout=3600)
        sent, skipped = _work_queue(r, room)
        handled[0] += sent
        handled[1] += skipped
        if i == 0:
            live = memory(r)  # the first show's raw data still in Redis
        assert archive.close_idle_rooms(r, "shop", cfg, idle_ms=0) == [room]  # as the worker would, 30 min on
        if prune:
            archive.prune_followups(r, cfg, "shop")
        if i in (0, shows - 1):  # after the first show was archived, and after the last
            mem.append(memory(r))
    t_build = time.perf_counter() - t0
    archived = archive_files.list_archived(cfg, "shop")
    n_events = sum(i.events for i in archived)
    print(f"{len(archived)} shows ({'settled tasks pruned' if prune else 'every task kept'}), {n_events:,} events, "
          f"{show_viewers:,} fans, {handled[0]:,} DMs sent and {handled[1]:,} skipped, built in {t_build:.0f} s",
          flush=True)
    growth = mem[-1]["used_memory"] / mem[0]["used_memory"] - 1
    policy = "settled tasks pruned" if prune else "every task kept"
    mem_rows: list[list[object]] = [[f"{policy}: used_memory", f"{live['used_memory'] / 1e6:.2f} MB",
                                     f"{mem[0]['used_memory'] / 1e6:.2f} MB", f"{mem[-1]['used_memory'] / 1e6:.2f} MB",
                                     f"{growth:+.0%} {verdict(growth <= MEMORY_GROWTH)}"]]
    for kind in sorted({k for m in mem for k in m} - {"used_memory"}):
        a, b = mem[0].get(kind, 0), mem[-1].get(kind, 0)
        mem_rows.append([f"  {kind}", f"{live.get(kind, 0) / 1e6:.2f} MB", f"{a / 1e6:.2f} MB", f"{b / 1e6:.2f} MB",
                         f"{b - a:+,} B"])
    rows: list[list[object]] = []
    if not prune:
        cold, warm, _rv = _analyse(cfg, "shop", repeat)
        rows = [[f"{len(archived)} archived shows, {n_events:,} events", cold, warm,
                 verdict(max(cold, warm) < TARGET_S)]]
    r.close()
    return rows, mem_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.analysis", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--viewers", type=int, default=100_000)
    p.add_argument("--shows", type=int, default=30)
    p.add_argument("--show-events", type=int, default=20_000)
    p.add_argument("--show-viewers", type=int, default=2_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--skip-shows", action="store_true")
    p.add_argument("--policy", choices=("keep", "prune", "both"), default="both",
                   help="follow-up tasks of archived shows: kept (as archived), pruned once settled, or both runs")
    a = p.parse_args(argv)
    rows: list[list[object]] = []
    mem_rows: list[list[object]] = []
    with private_server() as (info, _d), tempfile.TemporaryDirectory(prefix="fanops-bench-archive-") as tmp:
        if not a.skip_big:
            rows += big_show(info.url, Path(tmp), a.events, a.viewers, a.repeat)
        if not a.skip_shows:
            for prune in {"keep": [False], "prune": [True], "both": [False, True]}[a.policy]:
                r2, m2 = many_shows(info.url, Path(tmp), a.shows, a.show_events, a.show_viewers, a.repeat, prune)
                rows += r2
                mem_rows += m2
    print()
    print(table(["analysis (every table of the review)", "cold s", "warm s", f"< {TARGET_S:g} s"], rows,
                title="Post-show analysis"))
    if mem_rows:
        print()
        print(table(["Redis memory", "1st show, before archiving", "1st show archived", f"{a.shows} shows archived",
                     f"growth (target <= {MEMORY_GROWTH:.0%})"], mem_rows, title="Redis memory as shows are archived"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
