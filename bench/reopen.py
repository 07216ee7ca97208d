"""Opening an archived show again, and archiving it again, beside the archiving every show pays once.

``python -m bench.reopen [--viewers 2000,20000,100000] [--events-per-viewer 6] [--returning 0.3]
[--repeat 1] [--profile]``

A follow-up task that the 7-day rule held back comes due after its show was archived: the scorer
opens the show again (``scoring.reopen.reopen_room``), scores, and the idle pass archives it again
(``scoring.archive.archive_room``, a second generation merging the first one's events).  For one
show of N viewers, built fresh each round in a private Redis:

1. the show: a one-hour simulated show (``realtime.simulator``, ~``--events-per-viewer`` events a
   viewer: joins, comments, likes, leaves, orders; 50-event frames) through the consumer's writer
   and one ``Worker.drain``; then one event in another room moves the shop clock 31 minutes past
   the show's end;
2. **archive** (timed): ``archive_room`` of the live show, the baseline;
3. ``--returning`` of its viewers then come to the next show (a like there), so that their states
   fold the archived room (``fanops.state.fold``) and opening it again must unfold them;
4. **reopen** (timed): ``reopen_room`` of the archived show; then one late event of the show
   (a like inside its span) is scored (timed apart);
5. **re-archive** (timed): ``archive_room`` again (the second generation).

Reported: wall seconds of each step and Redis's CPU seconds in it (``/proc``), reopen / archive and
re-archive / archive, and Redis ``used_memory`` with the show live, archived, archived with the returning
fans' likes scored (before reopen), open again and archived again.  ``--profile`` adds a round of the
largest size under cProfile (not in the tables) and prints where its reopen and re-archive spent
their time (this process; Redis's side shows as the script's round trip).  Exit code 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from bench._util import (
    cpu_seconds,
    fresh,
    machine_note,
    private_server,
    ratio,
    sim_settings,
    table,
    tree_note,
    write_frames,
)
from fanops import keys
from fanops.config import Config
from fanops.read import status
from fanops.scripts import script_source
from realtime.simulator import generate
from review.archive_files import read_room
from scoring.archive import archive_room
from scoring.reopen import reopen_room
from scoring.worker import Worker

SHOP = "bench"
FRAME = 50
SHOW_S = 3600.0
IDLE_MS = 31 * 60_000  # past FANOPS_ARCHIVE_IDLE_MIN (30) after the show's last event
SCRATCH = "bench-reopen-scratch"  # a key outside the product's prefix, written once to settle memory
MEMORY = ("live", "archived", "before reopen", "reopened", "re-archived")
T = TypeVar("T")


@dataclass
class Step:
    wall_s: float
    redis_cpu_s: float


@dataclass
class Round:
    viewers: int
    events: int
    returning: int
    steps: dict[str, Step] = field(default_factory=dict)
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)  # (used, peak) after each step (``MEMORY``)
    profile: str = ""
    longest_ms: float = 0.0  # the longest Redis command of the reopen (SLOWLOG: Redis stopped for it)


# -- building the show ---------------------------------------------------------
def ingest(cfg: Config, frames: Iterable[list[dict[str, Any]]], flush: int = 2000) -> int:
    return write_frames(cfg, frames, flush)


def score(r: redis.Redis, cfg: Config, frames: Iterable[list[dict[str, Any]]]) -> int:
    """Ingest ``frames`` and let one scorer apply them all."""
    n = ingest(cfg, frames)
    Worker(r, cfg, name="bench").drain(timeout=3600)
    st = status(r, SHOP)
    assert st["lag"] == 0, st["lag"]
    return n


def likes(room: str, viewers: list[str], ts: int, tag: str) -> list[list[dict[str, Any]]]:
    """A like of each viewer in ``room`` at ``ts``, ``FRAME`` a frame."""
    evs = [{"id": f"{tag}-{i}", "shop": SHOP, "room": room, "ts": ts, "type": "like", "viewer": {"id": v}}
           for i, v in enumerate(viewers)]
    return [evs[i:i + FRAME] for i in range(0, len(evs), FRAME)]


def build_show(r: redis.Redis, cfg: Config, viewers: int, per_viewer: int,
               seed: int) -> tuple[str, int, int, list[str]]:
    """The live show scored, the shop clock moved past its idle mark: (room, events, end ts, viewer ids)."""
    events = viewers * per_viewer
    s = sim_settings(viewers, events, FRAME, seed=seed, shop=SHOP, rate=events / SHOW_S)
    frames = [list(fr) for fr in generate(s)]
    room = frames[0][0]["room"]
    end = max(e["ts"] for fr in frames for e in fr)
    who = list(dict.fromkeys(e["viewer"]["id"] for fr in frames for e in fr))
    n = score(r, cfg, frames)
    score(r, cfg, likes("next", ["clock-mover"], end + IDLE_MS, "mover"))
    return room, n, end, who


# -- measuring -----------------------------------------------------------------
def timed(pid: int, fn: Callable[[], T], prof: cProfile.Profile | None = None) -> tuple[Step, T]:
    c0, t0 = cpu_seconds(pid) or 0.0, time.perf_counter()
    if prof is not None:
        prof.enable()
    try:
        out = fn()
    finally:
        if prof is not None:
            prof.disable()
    return Step(time.perf_counter() - t0, (cpu_seconds(pid) or 0.0) - c0), out


def used_memory(r: redis.Redis) -> tuple[int, int]:
    """(``used_memory``, ``used_memory_peak``), the slow log emptied first (it keeps the big script calls'
    first arguments) and one small write done: right after a big script call (reopen.lua), a few MB that
    the server lets go on its next write command (~6 MB at 20,000 viewers, with AOF on) are still counted."""
    r.slowlog_reset()
    r.set(SCRATCH, 1)
    r.delete(SCRATCH)
    m = r.info("memory")
    return int(m["used_memory"]), int(m["used_memory_peak"])


def one_round(url: str, pid: int, data: Path, viewers: int, per_viewer: int, share: float, k: int,
              profile: bool) -> Round:
    r = fresh(url)
    r.config_set("slowlog-log-slower-than", 1000)  # us: every call of 1 ms or more
    cfg = Config.from_env({}, redis_url=url, data_dir=data / f"n{viewers}-{k}")
    room, n, end, who = build_show(r, cfg, viewers, per_viewer, seed=7 + k)
    back = who[:int(len(who) * share)]
    x = Round(viewers, n, len(back))
    x.memory["live"] = used_memory(r)
    x.steps["archive"], first = timed(pid, lambda: archive_room(r, cfg, SHOP, room))
    assert first.generation == 1 and not first.already, first
    x.memory["archived"] = used_memory(r)
    if back:
        score(r, cfg, likes("next", back, end + IDLE_MS + 60_000, "back"))
    x.memory["before reopen"] = used_memory(r)
    # as a scorer that opened a show before: its first reopen also pays a NOSCRIPT and sends the MBs again
    r.script_load(script_source("scoring", "reopen"))
    prof = cProfile.Profile() if profile else None
    x.steps["reopen"], opened = timed(pid, lambda: reopen_room(r, cfg, SHOP, room), prof)
    assert opened and b"archived" not in r.hgetall(keys.room(SHOP, room)), room
    x.longest_ms = max((e["duration"] for e in r.slowlog_get(1000)), default=0) / 1000
    x.memory["reopened"] = used_memory(r)
    x.steps["score 1 late event"], _ = timed(pid, lambda: score(r, cfg, likes(room, who[:1], end - 1000, "late")))
    prof2 = cProfile.Profile() if profile else None
    x.steps["re-archive"], again = timed(pid, lambda: archive_room(r, cfg, SHOP, room), prof2)
    x.memory["re-archived"] = used_memory(r)
    gen = read_room(cfg, SHOP, room, verify=False).info.generation
    assert gen == again.generation == 2 and again.events == first.events + 1, (first, again)
    if prof is not None and prof2 is not None:
        x.profile = top(prof, "reopen_room") + "\n" + top(prof2, "archive_room again")
    r.close()
    return x


def top(prof: cProfile.Profile, what: str, n: int = 14) -> str:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(r"/(scoring|fanops|review)/|evalsha", n)
    body = out.getvalue().split("\n\n", 1)[-1].strip()  # past the header lines
    return f"cProfile of {what}, the product's functions (and evalsha: the script's round trip) by cumulative " \
           f"time:\n{body}"


# -- output --------------------------------------------------------------------
def steps_table(rounds: list[Round]) -> str:
    rows: list[list[object]] = []
    for x in rounds:
        a, o, b = x.steps["archive"], x.steps["reopen"], x.steps["re-archive"]
        rows.append([x.viewers, x.events, x.returning, f"{a.wall_s:.3f}", f"{o.wall_s:.3f}",
                     f"{x.steps['score 1 late event'].wall_s:.3f}", f"{b.wall_s:.3f}",
                     ratio(o.wall_s, a.wall_s), ratio(b.wall_s, a.wall_s),
                     f"{a.redis_cpu_s:.2f} / {o.redis_cpu_s:.2f} / {b.redis_cpu_s:.2f}", f"{x.longest_ms:.0f}"])
    return table(["viewers", "events", "returning", "archive s", "reopen s", "1 late event s", "re-archive s",
                  "reopen / archive", "re-archive / archive", "Redis CPU s (arch / reopen / re-arch)",
                  "reopen's longest Redis call ms"], rows,
                 "One archived show: archived (baseline), opened again, archived again (wall seconds)")


def memory_table(rounds: list[Round]) -> str:
    rows: list[list[object]] = []
    for x in rounds:
        m = {k: used / 1e6 for k, (used, _peak) in x.memory.items()}
        peaks = " / ".join(f"{x.memory[k][1] / 1e6:.0f}" for k in MEMORY)
        rows.append([x.viewers, *(f"{m[k]:.2f}" for k in MEMORY), f"{m['reopened'] - m['before reopen']:+.2f}",
                     f"{m['re-archived'] - m['before reopen']:+.2f}", peaks])
    return table(["viewers", *(f"{k} MB" for k in MEMORY), "reopen adds MB", "re-archived - before reopen MB",
                  "used_memory_peak MB after each"], rows,
                 "Redis used_memory (MB; 'before reopen': archived, and the returning fans' likes scored; the peak "
                 "never goes down: a step whose figure is above the one before set it)")


def medians(rounds: list[Round]) -> str:
    lines = ["Medians over the rounds (reopen / archive, re-archive / archive):"]
    for n in dict.fromkeys(x.viewers for x in rounds):
        xs = [x for x in rounds if x.viewers == n]
        q1 = statistics.median(x.steps["reopen"].wall_s / x.steps["archive"].wall_s for x in xs)
        q2 = statistics.median(x.steps["re-archive"].wall_s / x.steps["archive"].wall_s for x in xs)
        lines.append(f"  {n:,} viewers, {len(xs)} rounds: {q1:.2f}x, {q2:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reopen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", default="2000,20000", help="show sizes, e.g. 2000,20000,100000")
    p.add_argument("--events-per-viewer", type=int, default=6)
    p.add_argument("--returning", type=float, default=0.3,
                   help="share of the show's viewers at the next show before it is opened again (their states "
                        "fold it)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of each size, in turn (a fresh show each)")
    p.add_argument("--profile", action="store_true", help="one more round, the reopen and re-archive under cProfile")
    a = p.parse_args(argv)
    sizes = [int(v) for v in a.viewers.split(",") if v]
    started = time.perf_counter()
    rounds: list[Round] = []
    with private_server() as (info, _d), tempfile.TemporaryDirectory(prefix="fanops-bench-reopen-") as tmp:
        print(f"private server {info.url}; {machine_note()}; {tree_note()}", flush=True)
        for k in range(max(1, a.repeat)):
            for n in sizes:
                x = one_round(info.url, info.pid, Path(tmp), n, a.events_per_viewer, a.returning, k, False)
                rounds.append(x)
                print(f"  round {k + 1}, {n:,} viewers ({x.events:,} events): archive "
                      f"{x.steps['archive'].wall_s:.2f} s, reopen {x.steps['reopen'].wall_s:.2f} s, re-archive "
                      f"{x.steps['re-archive'].wall_s:.2f} s; {machine_note()}", flush=True)
        if a.profile:  # a round of its own: cProfile slows the Python side about 2x
            profiled = one_round(info.url, info.pid, Path(tmp), sizes[-1], a.events_per_viewer, a.returning,
                                 a.repeat, True)
    print()
    print(steps_table(rounds))
    print()
    print(memory_table(rounds))
    if a.repeat > 1:
        print()
        print(medians(rounds))
    if a.profile:
        print(f"\nProfiled round ({sizes[-1]:,} viewers, not in the tables), wall s under cProfile: "
              + ", ".join(f"{k} {v.wall_s:.2f}" for k, v in profiled.steps.items()))
        print(profiled.profile)
    print(f"\n{time.perf_counter() - started:.0f} s in all; {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
