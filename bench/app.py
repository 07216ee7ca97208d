"""App benchmarks (issue 4): server time of a screen refresh at size, and Streamlit server memory.

``python -m bench.app [--only ab] [--viewers 1000000] [--in-room 100000] [--repeat 30]
[--minutes 30] [--sessions 5] [--quick]`` (``--help`` for every option; bench/README.md for the figures)

(A) Refresh time with ``--viewers`` known viewers in the shop and ``--in-room`` of them in the
    live room.  The state is made by the product: past shows (the simulator's shows, viewer ids
    mapped onto one fan base, 45 to 10 days ago, ~100,000 viewers a show) are written with the
    consumer's writer (``realtime.writer.IngestWriter``, 1,000-event flushes) while
    ``python -m scoring run`` (``FANOPS_WORKER_BATCH=10``) applies them and, as in production,
    archives each show once the shop clock is 30 minutes past it; then the live room (the last
    hour up to now; 30% of its viewers came to an earlier show) is fed by ``python -m realtime
    replay`` to ``python -m realtime consume``.  The feed, the consumer and the scorer keep
    running (idle) while the screens are timed, so the board shows them connected.  A
    1,000-viewer shop (one live room, same path) is the ceiling: the same screen, little data.

    Timed, per screen (the live board, whose fragment refreshes every FANOPS_BOARD_REFRESH_MS (1 s),
    and the follow-up queue, every 3 s):
    - the fragment's own run (what ``run_every`` re-executes: one refresh) under
      ``streamlit.testing.v1.AppTest``, warm, ``--repeat`` times; the whole script run (app.py,
      its sidebar, the page) beside it; and within the fragment, the time in the fanops read
      functions it calls (those functions wrapped with a timer, nothing else changed);
    - the same refresh in a real ``streamlit run`` server with one Chromium session on the
      screen: the script run as the server measures it (``PageProfile.exec_time``, sent when
      ``browser.gatherUsageStats`` is on), and the rerun request -> ``script_finished`` as
      Chromium timestamps the WebSocket frames, which adds what the server does after the
      run (Streamlit's ``gc.collect(2)`` after every run, sending); then the same round trip
      with ``--runner.postScriptGC false``; and the server's CPU per refresh;
    - the bare reads (the fanops functions the fragment calls) from a plain client;
    - ceilings: a Redis PING round trip; each of the above on the 1,000-viewer shop; a
      one-metric fragment in ``streamlit run`` (Streamlit's own floor);
    - baselines, the obvious way: the live board's headline and room tiers by reading and
      decoding every viewer of the room; the queue's first page by reading every open task.
    Where the fragment's time goes: cProfile of extra runs, by package.

    The board's own history (the snapshots it writes every 10 s) is filled first as if the
    board had been open for 10 minutes (``board.read_board`` at 10-s steps of its clock).  If
    the room would show as ended by the time AppTest runs (no event for 5 minutes), the
    board's clock (``rooms.wall_clock``, as tests/screens/test_app.py pins it) is pinned in the
    AppTest runs to 30 s after the room's last event; the real server is never pinned.

(B) Streamlit server memory: a fresh private server, the launcher's processes (``python -m
    realtime simulate --rate 300 --viewers 3000``, ``consume``, ``scoring run``,
    ``streamlit run app.py --server.headless true --browser.gatherUsageStats false``), and
    ``--sessions`` headless Chromium sessions (each its own browser context) on the live board
    for ``--minutes``.  The server's RSS is read every ``--sample-s`` s; the first
    ``--warmup-min`` minutes are not counted; the mean of the first ``--window-min`` minutes
    after that is compared with the mean of the last ``--window-min`` minutes.  The board's
    refresh period is FANOPS_BOARD_REFRESH_MS (default 1,000 ms; screens/live.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import functools
import math
import os
import pstats
import random
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis

from bench._util import (
    ROOT,
    Child,
    CpuMeter,
    Report,
    cpu_seconds,
    fresh,
    machine_note,
    private_server,
    ratio,
    table,
    tree_note,
    wait_port,
    wait_until,
)
from fanops import keys, queue
from fanops.config import Config
from fanops.read import status
from fanops.runtime import server
from screens.reads import board, history, rooms, tasks

SHOP = "default"
SMALL_SHOP = "small"  # the ceiling: the same screens on a 1,000-viewer shop
SMALL_VIEWERS = 1_000
TARGET_MS = 50.0
TARGET_GROWTH = 0.10
DAY = 86_400_000
PAST_CAST = 100_000  # viewers a past show (its own slice of the fan base)
PAST_EXTRA = 0.15  # ... plus this share again from other slices (viewers who came to two shows)
PAST_EVENTS = 2.5  # events a viewer in a past show (every viewer joins)
PAST_SHOW_S = 2700.0
LIVE_EVENTS = 4  # events a viewer in the live room
LIVE_S = 3600.0
RETURNING = 0.3  # share of the live room's viewers who came to an earlier show
FLUSH = 1000  # events a stream entry when the bench writes the past shows
# Entries a scorer batch while populating (the default 50 makes 50,000-event apply.lua calls at 1M viewers,
# which can hold the server past its 5 s busy threshold on a loaded machine; see bench/README.md)
SCORER_BATCH = 10
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def ms(x: float) -> str:
    return "-" if x != x else (f"{x:.1f}" if x < 100 else f"{x:,.0f}")


# -- populating the shop through the product -----------------------------------------------
@dataclass
class Show:
    room: str
    start_ms: int
    length_s: float
    events: int
    pool: list[str]  # the viewer ids the simulator's viewers are mapped onto, in order of first event
    seed: int
    batch: int = 500


def plan(n_viewers: int, in_room: int, now_ms: int, seed: int = 1) -> tuple[list[Show], Show]:
    """Past shows covering a fan base, and the live room (30% of it from the fan base)."""
    returning = int(in_room * RETURNING)
    new_live = in_room - returning
    n_fan = n_viewers - new_live
    if in_room < 10 or n_fan < returning or n_fan < 3:
        raise SystemExit(f"--viewers {n_viewers:,} is too small for --in-room {in_room:,}")
    rng = random.Random(seed)
    fan = [f"f-{i:07d}" for i in range(n_fan)]
    n_past = max(3, math.ceil(n_fan / PAST_CAST))
    live_start = now_ms - int(LIVE_S * 1000)
    past: list[Show] = []
    for j in range(n_past):
        primary = fan[j::n_past]
        extra = [fan[i] for i in rng.sample(range(n_fan), min(n_fan, int(len(primary) * PAST_EXTRA)))
                 if i % n_past != j]
        pool = primary + extra
        rng.shuffle(pool)
        days = 45 - j * (35 / max(1, n_past - 1))  # 45 days ago ... 10 days ago
        start = live_start - int(days * DAY)
        room = f"show-{time.strftime('%Y-%m-%d', time.gmtime(start / 1000))}-{j + 1}"
        past.append(Show(room, start, PAST_SHOW_S, int(len(pool) * PAST_EVENTS), pool, seed=100 + j))
    live_pool = rng.sample(fan, returning) + [f"n-{i:07d}" for i in range(new_live)]
    rng.shuffle(live_pool)
    room = f"live-{time.strftime('%Y-%m-%d', time.gmtime(now_ms / 1000))}"
    live = Show(room, live_start, LIVE_S, LIVE_EVENTS * in_room, live_pool, seed=7, batch=50)
    return past, live


def frames_of(show: Show, shop: str) -> Iterator[list[dict[str, Any]]]:
    """The simulator's show (no bad or duplicate events), its viewers mapped onto ``show.pool``."""
    from realtime.simulator import SimSettings, generate

    s = SimSettings(seed=show.seed, viewers=len(show.pool), rate=show.events / show.length_s,
                    duration=show.length_s, shop=shop, room=show.room, history_shows=0, batch=show.batch,
                    start_ms=show.start_ms, bad_ratio=0.0, dup_ratio=0.0)
    who: dict[str, str] = {}
    pool = show.pool
    for fr in generate(s):
        out = []
        for e in fr:
            vid = e["viewer"]["id"]
            m = who.get(vid)
            if m is None:
                m = who[vid] = pool[len(who)]
            out.append({**e, "viewer": {**e["viewer"], "id": m}})
        yield out


def ingest(url: str, shows: list[Show], shop: str, note: Callable[[str], None]) -> int:
    """Parse each show's frames as the consumer does and write them with the consumer's writer."""
    import redis.asyncio as aredis

    from fanops.config import Config
    from fanops.schema import BadInput, parse_frame
    from realtime.simulator import encode_frame
    from realtime.writer import IngestWriter

    cfg = Config.from_env({}, redis_url=url)

    async def write(w: IngestWriter, events: list[Any]) -> int:
        while True:
            try:
                return (await w.write_events(events))[0]
            except redis.ResponseError as e:
                if not _busy(e):
                    raise
                await asyncio.sleep(0.2)  # a long apply.lua holds the server: the script was refused, resend

    async def run() -> int:
        ar = aredis.Redis.from_url(url, socket_timeout=120)
        w = IngestWriter(ar, cfg)
        n = 0
        try:
            for show in shows:
                held: list[Any] = []
                now_ms = int(time.time() * 1000)
                for fr in frames_of(show, shop):
                    held.extend(e for e in parse_frame(encode_frame(fr), now_ms) if not isinstance(e, BadInput))
                    if len(held) >= FLUSH:
                        n += await write(w, held)
                        held = []
                if held:
                    n += await write(w, held)
                note(f"{show.room}: {len(show.pool):,} viewers written ({n:,} events so far)")
        finally:
            await ar.aclose()
        return n

    return asyncio.run(run())


def write_feed(path: Path, show: Show, shop: str) -> int:
    from realtime.simulator import encode_frame

    n = 0
    with open(path, "wb") as f:
        for fr in frames_of(show, shop):
            f.write(encode_frame(fr) + b"\n")
            n += len(fr)
    return n


@dataclass
class World:
    room: str
    last_ts: int
    past_rooms: list[str]
    small_room: str
    events: int
    seconds: float
    procs: list[Child] = field(default_factory=list)


_wait = functools.partial(wait_until, poll=0.5)  # the populating waits are minutes long


def own_server(stack: ExitStack) -> tuple[server.ServerInfo, Path]:
    """``private_server()``; if its clean stop fails (a server busy in a script refuses SHUTDOWN),
    the server process is killed."""
    pid: list[int] = []
    stack.callback(lambda: _kill_server(pid[0]) if pid else None)
    info, d = stack.enter_context(private_server())
    pid.append(info.pid)
    return info, d


def _kill_server(pid: int) -> None:
    try:
        if "valkey" in Path(f"/proc/{pid}/cmdline").read_text() and cpu_seconds(pid) is not None:
            os.kill(pid, signal.SIGKILL)
            print(f"  the private server (pid {pid}) did not stop cleanly: killed", flush=True)
    except OSError:
        pass


def _busy(e: Exception) -> bool:
    return str(e).startswith("BUSY")


def populate(url: str, d: Path, tmp: Path, n_viewers: int, in_room: int) -> World:
    """The shop's past shows and live room, and a small shop, through the product's processes."""
    t0 = time.perf_counter()
    r = fresh(url)
    now_ms = int(time.time() * 1000)
    past, live = plan(n_viewers, in_room, now_ms)
    small_past, small_live = plan(SMALL_VIEWERS, SMALL_VIEWERS // 10, now_ms, seed=2)
    env = {"FANOPS_DATA_DIR": str(tmp / "data"), "FANOPS_WORKER_BATCH": str(SCORER_BATCH)}
    scorer = Child("a-scorer", ["-m", "scoring", "run", "--name", "w1", "--redis", url], d, env=env)
    procs = [scorer]
    print(f"  {len(past)} past shows of ~{len(past[0].pool):,} viewers, then the live room of {in_room:,} "
          f"({int(in_room * RETURNING):,} returning); scorer pid {scorer.pid}", flush=True)

    def progress() -> str:
        s = status(r, SHOP)
        gone = len(_archived(r, SHOP, [p.room for p in past]))
        return (f"{s['events_applied']:,} events applied, lag {s['lag']:,}, "
                f"{r.hlen(keys.viewers(SHOP)):,} viewers known, {gone}/{len(past)} past shows archived")

    n = ingest(url, past, SHOP, lambda m: print(f"    {time.perf_counter() - t0:.0f} s: {m}", flush=True))
    n += ingest(url, small_past, SMALL_SHOP, lambda m: None)
    print(f"  {n:,} events of the past shows written in {time.perf_counter() - t0:.0f} s; "
          "waiting for the scorer ...", flush=True)
    _wait(lambda: status(r, SHOP)["lag"] == 0 and status(r, SMALL_SHOP)["lag"] == 0, procs, 7200,
          "the scorer to apply the past shows", progress=progress)
    print(f"  past shows applied after {time.perf_counter() - t0:.0f} s", flush=True)

    # the live room ends now (it is generated now, so that it is live when measured)
    now_ms = int(time.time() * 1000)
    live.start_ms = now_ms - int(LIVE_S * 1000)
    small_live.start_ms = live.start_ms
    feed_path = tmp / "live.jsonl"
    n_live = write_feed(feed_path, live, SHOP)
    n += ingest(url, [small_live], SMALL_SHOP, lambda m: None)
    fport = server.free_port()
    feed = Child("a-feed", ["-m", "realtime", "replay", str(feed_path), "--port", str(fport)], d)
    wait_port(fport, feed)
    consumer = Child("a-consumer", ["-m", "realtime", "consume", "--url", f"ws://127.0.0.1:{fport}", "--redis", url],
                     d)
    procs += [feed, consumer]
    accepted0 = n
    _wait(lambda: int(r.hget(keys.stats(SHOP), "accepted") or 0) + _accepted(r, SMALL_SHOP) >= accepted0 + n_live,
          procs, 600, "the consumer to write the live room")
    n += n_live
    _wait(lambda: status(r, SHOP)["lag"] == 0 and status(r, SMALL_SHOP)["lag"] == 0, procs, 3600,
          "the scorer to apply the live room", progress=progress)
    print(f"  live room applied after {time.perf_counter() - t0:.0f} s; waiting for the past shows to be archived",
          flush=True)
    rooms = [p.room for p in past]
    try:
        _wait(lambda: len(_archived(r, SHOP, rooms)) == len(rooms), procs, 900, "the past shows archived",
              progress=progress)
    except RuntimeError as e:
        print(f"  {e}: measuring anyway", flush=True)
    last_ts = int(r.zscore(keys.rooms(SHOP), live.room) or 0)
    r.close()
    return World(live.room, last_ts, rooms, small_live.room, n, time.perf_counter() - t0, procs)


def _accepted(r: redis.Redis, shop: str) -> int:
    return int(r.hget(keys.stats(shop), "accepted") or 0)


def _archived(r: redis.Redis, shop: str, rooms: list[str]) -> set[str]:
    try:
        from scoring import archive
    except ImportError:
        return set(rooms)
    return archive.is_archived(r, shop, rooms)


def prefill_history(r: redis.Redis, shop: str, room: str, now_s: float) -> None:
    """The board's snapshot history as after 10 minutes of an open board (one per 10 s)."""
    for i in range(history.SNAP_KEEP):
        r.delete(keys.board_guard(shop), keys.board_guard(shop, room))
        now = now_s - (history.SNAP_KEEP - 1 - i) * history.SNAP_EVERY_S
        board.record_snapshots(r, board.read_board(r, shop, room, now=now))


def describe_state(r: redis.Redis, shop: str, room: str) -> list[str]:
    s = status(r, shop, room)
    qc = queue.counts(r, shop)
    info = r.info("memory")
    return [
        f"shop {shop!r}: {r.hlen(keys.viewers(shop)):,} known viewers, tiers "
        + ", ".join(f"{k} {v:,}" for k, v in s["tiers"].items())
        + f"; {s['events_applied']:,} events applied, {r.zcard(keys.rooms(shop))} rooms",
        f"live room {room!r}: {s['room']['unique_viewers']:,} viewers, {s['room']['present']:,} present, "
        f"{s['room']['orders']:,} orders, follow-ups "
        + ", ".join(f"{k} {v:,}" for k, v in s["room"]["followups"].items() if v),
        "shop's follow-up queue: " + ", ".join(f"{k} {v:,}" for k, v in qc.items() if v),
        f"Redis used_memory {int(info['used_memory']) / 2**20:,.0f} MiB",
    ]


# -- timing the screens in-process (AppTest) ------------------------------------------------
class Probe:
    """Times the page's fragment runs and the fanops reads inside them (in this process).

    ``st.fragment`` is replaced by one that wraps the decorated function with a timer before
    handing it to the real ``st.fragment``; the read functions the pages call through their
    module (``board.read_board`` ...) are wrapped the same way.  Nothing else changes."""

    READS = [(board, "read_board"), (board, "record_snapshots"), (board, "read_chart"), (board, "read_transitions"),
             (tasks, "task_page"),
             (queue, "counts")]

    def __init__(self) -> None:
        import streamlit as st
        import streamlit.logger

        from screens import _ui

        streamlit.logger.set_log_level("error")  # "missing ScriptRunContext" outside a run: expected here

        self.st = st
        self.frag: dict[str, list[float]] = defaultdict(list)
        self.reads: dict[str, list[float]] = defaultdict(list)  # per fragment run: seconds in the reads
        self._in_reads = 0.0
        self.profile: cProfile.Profile | None = None
        self._saved: list[tuple[Any, str, Any]] = []
        self._orig_fragment = st.fragment
        targets = self.READS + [(_ui, "current_room")]
        for mod, name in targets:
            self._wrap_read(mod, name)
        self._set(st, "fragment", self._fragment)

    def _set(self, obj: Any, name: str, value: Any) -> None:
        self._saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def _wrap_read(self, mod: Any, name: str) -> None:
        f = getattr(mod, name)

        @functools.wraps(f)
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                self._in_reads += time.perf_counter() - t

        self._set(mod, name, timed)

    def _fragment(self, func: Any = None, **kw: Any) -> Any:
        def deco(f: Any) -> Any:
            @functools.wraps(f)
            def timed(*a: Any, **k: Any) -> Any:
                self._in_reads = 0.0
                prof = self.profile
                t = time.perf_counter()
                if prof is not None:
                    prof.enable()
                try:
                    return f(*a, **k)
                finally:
                    if prof is not None:
                        prof.disable()
                    self.frag[f.__name__].append(time.perf_counter() - t)
                    self.reads[f.__name__].append(self._in_reads)

            return self._orig_fragment(timed, **kw)

        return deco if func is None else deco(func)

    def reset(self) -> None:
        self.frag.clear()
        self.reads.clear()

    def restore(self) -> None:
        for obj, name, value in reversed(self._saved):
            setattr(obj, name, value)


@dataclass
class Timing:
    runs: list[float]  # ms

    @property
    def p50(self) -> float:
        return pct(self.runs, 50)

    @property
    def p90(self) -> float:
        return pct(self.runs, 90)

    @property
    def max(self) -> float:
        return max(self.runs) if self.runs else float("nan")


@dataclass
class ScreenTimes:
    fragment: Timing
    reads_in_fragment: Timing
    full: Timing
    profile: list[tuple[str, float]] = field(default_factory=list)


PAGES = {"live": ("screens/live.py", "live_board"), "queue": ("screens/queue.py", "tasks")}


def apptest_times(probe: Probe, shop: str, page: str, repeat: int, warm: int = 3, profile_runs: int = 0
                  ) -> ScreenTimes:
    from streamlit.testing.v1 import AppTest

    path, frag = PAGES[page]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["shop"] = shop
    at.run()
    if page != "live":
        at.switch_page(path).run()
    if at.exception:
        raise RuntimeError(f"the {page} page raised: {at.exception}")
    for _ in range(warm):
        at.run()
    probe.reset()
    full = []
    for _ in range(repeat):
        t = time.perf_counter()
        at.run()
        full.append((time.perf_counter() - t) * 1000)
    if at.exception:
        raise RuntimeError(f"the {page} page raised: {at.exception}")
    times = ScreenTimes(Timing([x * 1000 for x in probe.frag[frag]]), Timing([x * 1000 for x in probe.reads[frag]]),
                        Timing(full))
    if profile_runs:
        probe.profile = cProfile.Profile()
        try:
            for _ in range(profile_runs):
                at.run()
        finally:
            prof, probe.profile = probe.profile, None
        times.profile = by_package(prof)
    return times


PACKAGES = [("waiting for Redis (socket)", ("recv_into", "sendall", "'recv'", "select.poll", "'poll'")),
            ("redis-py client", ("/redis/",)),
            ("fanops (reads, decoding)", ("/fanops/",)),
            ("the page's own code", ("/screens/",)),
            ("plotly (figure)", ("/plotly/", "/_plotly_utils/")),
            ("pyarrow / pandas / numpy", ("/pyarrow/", "/pandas/", "/numpy/")),
            ("protobuf", ("/google/protobuf/", "protobuf")),
            ("streamlit (elements, state)", ("/streamlit/",)),
            ("json", ("/json/", "json")),
            ]


def by_package(prof: cProfile.Profile) -> list[tuple[str, float]]:
    """Own time (cProfile ``tottime``) by package, as shares of the total."""
    st = pstats.Stats(prof)
    out: dict[str, float] = defaultdict(float)
    for (fn, _line, name), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = f"{fn}:{name}"
        for label, needles in PACKAGES:
            if any(n in where for n in needles):
                out[label] += tt
                break
        else:
            out["other (stdlib, builtins)"] += tt
    total = sum(out.values()) or 1.0
    return sorted(((k, v / total) for k, v in out.items()), key=lambda kv: -kv[1])


def time_calls(fn: Callable[[], Any], repeat: int, warm: int = 2) -> Timing:
    for _ in range(warm):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return Timing(out)


def live_reads(r: redis.Redis, shop: str) -> Callable[[], Any]:
    """What the live board's fragment reads, in its order (the room, the board, the chart, the changes)."""
    def run() -> Any:
        recent = rooms.room_list(r, shop, int(rooms.wall_clock() * 1000), limit=1)
        if not recent:
            return None
        ref = recent[0]
        board.record_snapshots(r, board.read_board(r, shop, ref.id))
        board.read_chart(r, shop, ref.id, ref.last_ts)
        return board.read_transitions(r, shop, ref.id)
    return run


def queue_reads(r: redis.Redis, shop: str) -> Callable[[], Any]:
    def run() -> Any:
        queue.counts(r, shop)
        return tasks.task_page(r, shop, queue.OPEN, limit=20)
    return run


def scan_headline(r: redis.Redis, shop: str, room: str) -> dict[str, Any]:
    """The baseline: the board's headline and room tiers from every viewer of the room."""
    from fanops import rules_store
    from fanops.state import unpack_room_viewer, unpack_viewer
    from scoring import rules

    s, _ = rules_store.load(r, shop)
    clock = int(r.hget(keys.stats(shop), "clock") or 0)
    rvs = r.hgetall(keys.room_viewers(shop, room))
    vids = list(rvs)
    states: list[bytes | None] = []
    for i in range(0, len(vids), 10_000):
        states += r.hmget(keys.viewers(shop), vids[i:i + 10_000])
    out: dict[str, Any] = {"unique": len(vids), "present": 0, "new": 0, "orders": 0, "buyers": 0,
                           "gmv": defaultdict(float), "tiers": Counter()}
    for vid, b in zip(vids, states, strict=True):
        rv = unpack_room_viewer(rvs[vid])
        out["present"] += rules.is_present(rv, clock, s)
        out["orders"] += len(rv.orders)
        out["buyers"] += bool(rv.orders)
        for cur, amount in rv.amount.items():
            out["gmv"][cur] += amount
        if b:
            v = unpack_viewer(b)
            out["new"] += rules.is_new_viewer(v, room)
            out["tiers"][rules.tier(v, clock, s)] += 1
    return out


# -- timing the screens in a real server, from a browser ----------------------------------------
def _local(url: str) -> bool:
    u = urlparse(url)
    return u.scheme in ("data", "blob", "about") or u.hostname in ("127.0.0.1", "localhost")


class SessionProbe:
    """One browser session's refreshes, from its WebSocket frames (Streamlit's protobufs) as Chromium
    timestamps them (CDP ``Network.webSocketFrame*``): the Python side may see them later."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent_at: float | None = None
        self.fragment_runs = 0
        self.full_runs = 0
        self.rtt: list[float] = []  # ms: fragment rerun request sent -> its script_finished received
        self.exec_ms: list[float] = []  # ms: PageProfile.exec_time of fragment runs (the server's own clock)
        self.errors: list[str] = []

    def attach(self, ctx: Any, page: Any) -> None:
        cdp = ctx.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.webSocketFrameSent", self._sent)
        cdp.on("Network.webSocketFrameReceived", self._received)
        page.on("pageerror", lambda e: self.errors.append(str(e)[:200]))

    @staticmethod
    def _message(params: dict[str, Any], cls: Any) -> Any:
        """The frame's Streamlit protobuf of type ``cls``, or None (a text frame, or not one of ours)."""
        resp = params.get("response") or {}
        if resp.get("opcode") != 2:
            return None
        m = cls()
        try:
            m.ParseFromString(base64.b64decode(resp.get("payloadData") or ""))
        except Exception:  # noqa: BLE001  (not a message of ours: skip it)
            return None
        return m

    def _sent(self, params: dict[str, Any]) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        m = self._message(params, BackMsg)
        if m is not None and m.WhichOneof("type") == "rerun_script" and m.rerun_script.fragment_id:
            self.sent_at = float(params["timestamp"])

    def _received(self, params: dict[str, Any]) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        m = self._message(params, ForwardMsg)
        if m is None:
            return
        kind = m.WhichOneof("type")
        if kind == "page_profile" and m.page_profile.is_fragment_run:
            self.exec_ms.append(m.page_profile.exec_time / 1000)
        elif kind == "script_finished":
            if m.script_finished == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                self.fragment_runs += 1
                if self.sent_at is not None:
                    self.rtt.append((float(params["timestamp"]) - self.sent_at) * 1000)
            elif m.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                self.full_runs += 1
            self.sent_at = None


def _browser_cpu() -> dict[int, float]:
    """CPU seconds so far of this process's descendants (Playwright's driver and Chromium)."""
    try:
        import psutil
    except ImportError:
        return {}
    out = {}
    for ch in psutil.Process().children(recursive=True):
        c = cpu_seconds(ch.pid)
        if c is not None:
            out[ch.pid] = c
    return out


class Meter:
    """``CpuMeter`` of named processes, plus the browser's (which come and go): its cores are
    shown as ``browser`` and taken out of ``others``."""

    def __init__(self, pids: dict[str, int], browser: bool = False) -> None:
        self.browser = browser
        self.b0 = _browser_cpu() if browser else {}
        self.t0 = time.perf_counter()
        self.m = CpuMeter(dict(pids))

    def stop(self) -> str:
        res = self.m.stop()
        self.seconds = dt = max(1e-9, time.perf_counter() - self.t0)
        if self.browser:
            used = sum(v - self.b0.get(p, 0.0) for p, v in _browser_cpu().items()) / dt
            others = res.pop("others")
            res["browser"] = used
            res["others"] = max(0.0, others - used)
        return self.m.describe()


FLOOR_SCRIPT = """import streamlit as st


@st.fragment(run_every=1.5)
def tick():
    st.metric("x", 1)


tick()
"""


NO_POST_GC = ["--runner.postScriptGC", "false"]  # Streamlit's gc.collect(2) after every run, fragments too


def start_app(url: str, d: Path, tmp: Path, name: str, usage_stats: bool, script: Path | None = None,
              extra: list[str] | None = None) -> tuple[Child, int]:
    """``streamlit run app.py`` as the launcher starts it (usage stats on: the server then sends
    each run's PageProfile, with its exec_time)."""
    port = server.free_port()
    env = {"REDIS_URL": url, "FANOPS_DATA_DIR": str(tmp / "data"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    app = Child(name, ["-m", "streamlit", "run", str(script or ROOT / "app.py"), "--server.port", str(port),
                       "--server.headless", "true", "--browser.gatherUsageStats", str(usage_stats).lower(),
                       *(extra or [])], d, env=env)
    deadline = time.monotonic() + 90
    while True:
        app.check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return app, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"streamlit did not answer on port {port}:\n{app.tail()}")
        time.sleep(0.25)


def open_session(browser: Any, url: str, probe: SessionProbe) -> Any:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.route("**/*", lambda route: route.continue_() if _local(route.request.url) else route.abort())
    probe.attach(ctx, page)
    page.goto(url, timeout=120_000)
    page.wait_for_selector("[data-testid='stMetric'], [data-testid='stAlert']", timeout=120_000)
    return ctx


def server_times(url: str, d: Path, tmp: Path, screens: list[tuple[str, str, str]], seconds: float,
                 pids: dict[str, int], script: Path | None = None, extra: list[str] | None = None,
                 usage_stats: bool = False) -> dict[str, tuple[SessionProbe, str]]:
    """Each screen (label, path, query) alone in a real server with one browser session."""
    from playwright.sync_api import sync_playwright

    app, port = start_app(url, d, tmp, "a-app" if script is None else "a-floor", usage_stats=usage_stats,
                          script=script, extra=extra)
    out: dict[str, tuple[SessionProbe, str]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for label, path, q in screens:
                    probe = SessionProbe(label)
                    ctx = open_session(browser, f"http://127.0.0.1:{port}/{path}{q}", probe)
                    page = ctx.pages[0]
                    page.wait_for_timeout(3000)  # the first refreshes: warm
                    probe.rtt.clear()
                    probe.exec_ms.clear()
                    runs0 = probe.fragment_runs
                    m = Meter({"app": app.pid} | pids, browser=True)
                    page.wait_for_timeout(seconds * 1000)
                    cpu = m.stop()
                    ctx.close()
                    n = probe.fragment_runs - runs0
                    if n:  # the server process's CPU over the interval, a refresh: an upper bound (idle work too)
                        cpu += f"; app CPU {m.m.result.get('app', 0) * m.seconds / n * 1000:.0f} ms a refresh"
                    out[label] = (probe, cpu)
            finally:
                browser.close()
    finally:
        app.stop()
    return out


# -- (A) -------------------------------------------------------------------------------------
def part_a(args: argparse.Namespace, rep: Report) -> None:
    from fanops.config import Config
    from fanops.runtime import db

    with ExitStack() as stack:
        info, d = own_server(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanops-bench-app-")))
        print(f"(A) private server {info.url} (pid {info.pid}); logs in {d}", flush=True)
        w = populate(info.url, d, tmp, args.viewers, args.in_room)
        stack.callback(lambda: [c.stop() for c in reversed(w.procs)])
        pids = {c.name.removeprefix("a-"): c.pid for c in w.procs} | {"redis": info.pid}
        r = db.connect(Config.from_env({}), info.url)
        state = describe_state(r, SHOP, w.room)
        state.append(f"small shop {SMALL_SHOP!r}: {r.hlen(keys.viewers(SMALL_SHOP)):,} known viewers, live room "
                     f"{status(r, SMALL_SHOP, w.small_room)['room']['unique_viewers']:,} viewers, "
                     f"{sum(queue.counts(r, SMALL_SHOP).values()):,} tasks")
        print(f"  populated in {w.seconds:.0f} s ({w.events:,} events):\n    " + "\n    ".join(state), flush=True)
        now_s = time.time()
        for shop, room in ((SHOP, w.room), (SMALL_SHOP, w.small_room)):
            prefill_history(r, shop, room, now_s)

        # the real server first, while the room is live by the wall clock
        srv: dict[str, tuple[SessionProbe, str]] = {}
        if not args.no_browser:
            live_now = time.time() * 1000 - w.last_ts <= rooms.LIVE_MS
            print(f"  real server, one browser session per screen, {args.server_s:.0f} s each "
                  f"(room {'live' if live_now else 'NOT live any more: the board shows it ended'}) ...", flush=True)
            screens = [("live", "", ""), ("queue", "queue", ""), ("live-small", "", f"?shop={SMALL_SHOP}"),
                       ("queue-small", "queue", f"?shop={SMALL_SHOP}")]
            floor = tmp / "floor.py"
            floor.write_text(FLOOR_SCRIPT)
            screens.append(("floor", "", ""))
            # as launched (usage stats off): round trips; stats on: exec_time; without the post-run GC
            for suffix, stats, extra, which in (("", False, None, screens), ("-stats", True, None, screens),
                                                ("-nogc", False, NO_POST_GC, [screens[0], screens[1], screens[4]])):
                app_screens = [(f"{lab}{suffix}", path, q) for lab, path, q in which if lab != "floor"]
                srv |= server_times(info.url, d, tmp, app_screens, args.server_s, pids, usage_stats=stats,
                                    extra=extra)
                srv |= server_times(info.url, d, tmp, [(f"floor{suffix}", "", "")], args.server_s, pids,
                                    script=floor, usage_stats=stats, extra=extra)
            for label, (pr, cpu) in srv.items():
                print(f"    {label}: {pr.fragment_runs} refreshes, exec p50 {ms(pct(pr.exec_ms, 50))} ms, "
                      f"round trip p50 {ms(pct(pr.rtt, 50))} ms; {cpu}", flush=True)

        # in-process: AppTest
        os.environ["REDIS_URL"] = info.url
        os.environ["FANOPS_DATA_DIR"] = str(tmp / "data")
        pinned = ""
        if time.time() * 1000 - w.last_ts > rooms.LIVE_MS - 60_000:
            pin = w.last_ts / 1000 + 30
            rooms.wall_clock = lambda: pin  # type: ignore[assignment]
            pinned = f"board clock pinned to 30 s after the room's last event ({(time.time() - pin) / 60:.1f} min ago)"
            print(f"  {pinned}", flush=True)
        probe = Probe()
        at_times: dict[tuple[str, str], ScreenTimes] = {}
        meters: dict[str, str] = {}
        try:
            for page in ("live", "queue"):
                for shop in (SHOP, SMALL_SHOP):
                    print(f"  AppTest: {page} on {shop!r}, {args.repeat} runs ...", flush=True)
                    m = Meter({"bench": os.getpid()} | pids)
                    at_times[(page, shop)] = apptest_times(probe, shop, page, args.repeat,
                                                           profile_runs=args.profile_runs if shop == SHOP else 0)
                    cpu = m.stop()
                    if shop == SHOP:
                        meters[page] = cpu
                    t = at_times[(page, shop)]
                    print(f"    fragment p50 {ms(t.fragment.p50)} ms (reads {ms(t.reads_in_fragment.p50)}), "
                          f"full run p50 {ms(t.full.p50)} ms; {cpu}", flush=True)
        finally:
            probe.restore()

        # bare reads, ceilings, baselines
        print("  bare reads, ceilings, baselines ...", flush=True)
        n = args.repeat
        reads = {(pg, shop): time_calls(fn(r, shop), n) for pg, fn in (("live", live_reads), ("queue", queue_reads))
                 for shop in (SHOP, SMALL_SHOP)}
        ping = time_calls(r.ping, max(n, 100))
        base_live: Timing | None = None
        base_live_note = ""
        try:
            base_live = time_calls(lambda: scan_headline(r, SHOP, w.room), 3, warm=0)
        except Exception as e:  # noqa: BLE001  (the state format may have changed under the baseline)
            base_live_note = f"baseline not measured: {type(e).__name__}: {e}"
        open_tasks = sum(queue.counts(r, SHOP)[s] for s in ("pending", "claimed"))
        cap = min(open_tasks, args.baseline_tasks)
        base_q = time_calls(lambda: tasks.task_page(r, SHOP, queue.OPEN, limit=20, scan=cap), 3, warm=0)
        scale = open_tasks / cap if cap else 1.0
        base_q = Timing([x * scale for x in base_q.runs])
        r.close()

    rows: list[list[object]] = []

    def row(screen: str, what: str, t: Timing | None, ceiling: Timing | None, baseline: Timing | None,
            cpu: str = "") -> None:
        if t is None or not t.runs:
            rows.append([screen, what, 0, "-", "-", "-", "-", "-", "-", cpu])
            return
        rows.append([screen, what, len(t.runs), ms(t.p50), ms(t.p90), ms(t.max),
                     ms(ceiling.p50) if ceiling else "", ratio(t.p50, ceiling.p50) if ceiling else "",
                     ratio(baseline.p50, t.p50) if baseline else "", cpu])

    for page, label in (("live", "live board"), ("queue", "follow-up queue")):
        big, small = at_times[(page, SHOP)], at_times[(page, SMALL_SHOP)]
        base = base_live if page == "live" else base_q
        row(label, "fragment refresh (AppTest, in-process)", big.fragment, small.fragment, base, meters[page])
        row(label, "  of which in fanops reads", big.reads_in_fragment, small.reads_in_fragment, None)
        row(label, "whole script run: app.py + sidebar + page (AppTest)", big.full, small.full, None)
        if srv:
            pe, cpue = srv[f"{page}-stats"]
            pse, _ = srv[f"{page}-small-stats"]
            pb, cpu = srv[page]
            ps, _ = srv[f"{page}-small"]
            pn, cpun = srv[f"{page}-nogc"]
            row(label, "`streamlit run`: the script run (exec_time, usage stats on)", Timing(pe.exec_ms),
                Timing(pse.exec_ms), base, cpue)
            row(label, "`streamlit run` as launched: rerun sent -> script_finished", Timing(pb.rtt),
                Timing(ps.rtt), base, cpu)
            row(label, "  same, with --runner.postScriptGC false", Timing(pn.rtt), None, base, cpun)
        row(label, "bare reads the fragment makes (plain client)", reads[(page, SHOP)], reads[(page, SMALL_SHOP)],
            base)
    row("-", "ceiling: Redis PING round trip", ping, None, None)
    if srv:
        pfe, cpue = srv["floor-stats"]
        pf, cpu = srv["floor"]
        pfn, cpun = srv["floor-nogc"]
        row("-", "ceiling: a one-metric fragment, `streamlit run` (exec_time, stats on)", Timing(pfe.exec_ms),
            None, None, cpue)
        row("-", "  as launched: rerun sent -> script_finished", Timing(pf.rtt), None, None, cpu)
        row("-", "  same, with --runner.postScriptGC false", Timing(pfn.rtt), None, None, cpun)
    rooms_n = f"{args.in_room:,}"
    row("live board", f"baseline: headline + room tiers by decoding the room's {rooms_n} viewers", base_live,
        None, None)
    qlabel = (f"baseline: first page by reading every open task ({open_tasks:,})"
              + (f", timed on {cap:,} and scaled" if cap < open_tasks else ""))
    row("follow-up queue", qlabel, base_q, None, None)
    rep.blocks.append(table(
        ["screen", "what (ms)", "runs", "p50", "p90", "max", f"{SMALL_VIEWERS:,}-viewer shop p50 (ceiling)",
         "of ceiling", "baseline is", "CPU cores used"], rows,
        f"(A) Refresh server time, {args.viewers:,} known viewers, {args.in_room:,} in the live room "
        f"(target < {TARGET_MS:.0f} ms; ceiling: the same on a {SMALL_VIEWERS:,}-viewer shop; "
        f"baseline is: baseline p50 / this p50)"))
    notes = [f"state: {s}" for s in state]
    if pinned:
        notes.append(pinned)
    if base_live_note:
        notes.append(base_live_note)
    if srv:
        for label, (pr, _cpu) in srv.items():
            if pr.errors:
                notes.append(f"browser errors on {label}: {pr.errors[:3]}")
    rep.blocks.append("\n".join(notes))
    for page, label in (("live", "live board"), ("queue", "follow-up queue")):
        prof = at_times[(page, SHOP)].profile
        if prof:
            rep.blocks.append(f"Where a {label} fragment refresh goes ({args.profile_runs} runs under cProfile, "
                              "own time by package; proportions only, cProfile inflates call-heavy code):\n  "
                              + ", ".join(f"{k} {v * 100:.0f}%" for k, v in prof if v >= 0.01))
    for page, label in (("live", "live board"), ("queue", "follow-up queue")):
        t = at_times[(page, SHOP)].fragment
        rep.target(f"{label} refresh p50 (ms, AppTest fragment)", t.p50, TARGET_MS, t.p50 < TARGET_MS, ms)
        rep.target(f"{label} refresh p90 (ms, AppTest fragment)", t.p90, TARGET_MS, t.p90 < TARGET_MS, ms)
        if srv and srv[f"{page}-stats"][0].exec_ms:
            e = Timing(srv[f"{page}-stats"][0].exec_ms)
            rep.target(f"{label} refresh p50 (ms, streamlit run exec_time)", e.p50, TARGET_MS, e.p50 < TARGET_MS, ms)
            rep.target(f"{label} refresh p90 (ms, streamlit run exec_time)", e.p90, TARGET_MS, e.p90 < TARGET_MS, ms)
        # The browser's round trip (rerun sent -> script_finished) is in the table above, not here: it adds
        # Streamlit's sending of every element and the loopback to the server's time.


# -- (B) -------------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def part_b(args: argparse.Namespace, rep: Report) -> None:
    from playwright.sync_api import sync_playwright

    with ExitStack() as stack:
        info, d = own_server(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanops-bench-app-b-")))
        fresh(info.url).close()
        env = {"REDIS_URL": info.url, "FANOPS_DATA_DIR": str(tmp / "data"),
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        sim_port = server.free_port()
        procs: list[Child] = []
        stack.callback(lambda: [c.stop() for c in reversed(procs)])
        procs.append(Child("b-simulator", ["-m", "realtime", "simulate", "--port", str(sim_port), "--rate",
                                           str(args.rate), "--viewers", str(args.room_viewers), "--seed", "1",
                                           "--shop", SHOP], d, env=env))
        wait_port(sim_port, procs[-1])
        procs.append(Child("b-consumer", ["-m", "realtime", "consume", "--url", f"ws://127.0.0.1:{sim_port}"], d,
                           env=env))
        procs.append(Child("b-scorer", ["-m", "scoring", "run"], d, env=env))
        app, port = start_app(info.url, d, tmp, "b-app", usage_stats=False,
                              extra=None if args.post_gc else NO_POST_GC)
        procs.append(app)
        r = redis.Redis.from_url(info.url)
        _wait(lambda: r.zcard(keys.rooms(SHOP)) > 0 and status(r, SHOP)["events_applied"] > 0, procs, 120,
              "the simulated room")
        print(f"(B) private server {info.url}; simulator {args.rate:g} events/s, {args.room_viewers:,} viewers; "
              f"streamlit pid {app.pid} on port {port}; {args.sessions} sessions for {args.minutes:g} min", flush=True)
        pids = {c.name.removeprefix("b-"): c.pid for c in procs} | {"redis": info.pid}
        samples: list[tuple[float, int, int, float]] = []  # (minutes since sessions opened, rss, refreshes, app cpu)
        probes = [SessionProbe(f"s{i + 1}") for i in range(args.sessions)]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ctxs = [open_session(browser, f"http://127.0.0.1:{port}/", pr) for pr in probes]
                page = ctxs[0].pages[0]
                t0 = time.monotonic()
                runs0 = sum(pr.fragment_runs for pr in probes)
                m = Meter(pids, browser=True)
                next_sample = t0
                while True:
                    now = time.monotonic()
                    if now >= next_sample:
                        rss = rss_bytes(app.pid) or 0
                        samples.append(((now - t0) / 60, rss, sum(pr.fragment_runs for pr in probes),
                                        _cpu(app.pid)))
                        for c in procs:
                            c.check()
                        if len(samples) % max(1, int(300 / args.sample_s)) == 1:
                            print(f"    {samples[-1][0]:5.1f} min: RSS {rss / 2**20:,.1f} MiB, "
                                  f"{samples[-1][2]:,} refreshes", flush=True)
                        next_sample += args.sample_s
                    if now - t0 >= args.minutes * 60:
                        break
                    page.wait_for_timeout(max(50, min(1000, (next_sample - time.monotonic()) * 1000)))
                cpu = m.stop()
                runs = sum(pr.fragment_runs for pr in probes) - runs0
                app_ms = m.m.result.get("app", 0.0) * m.seconds / runs * 1000 if runs else float("nan")
                for c in ctxs:
                    c.close()
            finally:
                browser.close()
        r.close()

    warm, win, total = args.warmup_min, args.window_min, args.minutes
    first = [s[1] for s in samples if warm <= s[0] < warm + win]
    last = [s[1] for s in samples if s[0] >= total - win]
    mf = statistics.mean(first) if first else float("nan")
    ml = statistics.mean(last) if last else float("nan")
    after = [s for s in samples if s[0] >= warm]
    slope = float("nan")
    if len(after) >= 3:
        xs, ys = [s[0] for s in after], [s[1] / 2**20 for s in after]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 10 if den else float("nan")
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0
    refreshes = samples[-1][2] - samples[0][2] if samples else 0
    per_s = refreshes / (span * 60) if span else 0
    rtt = [x for pr in probes for x in pr.rtt]
    rows = [
        ["sessions (headless Chromium, one browser context each)", args.sessions],
        ["board refresh period (FANOPS_BOARD_REFRESH_MS)", f"{Config.from_env().board_refresh_ms / 1000:g} s"],
        ["streamlit run flags", "as fanops/runtime/launcher.py"
         + ("" if args.post_gc else " + --runner.postScriptGC false")],
        ["fragment refreshes served", f"{refreshes:,} ({per_s:.2f}/s; per session: "
                                      + ", ".join(str(pr.fragment_runs) for pr in probes) + ")"],
        ["refresh round trip seen by the browsers p50 / p90 / max (ms)",
         f"{ms(pct(rtt, 50))} / {ms(pct(rtt, 90))} / {ms(max(rtt) if rtt else float('nan'))}"],
        [f"RSS mean, minutes {warm:g}-{warm + win:g} (MiB)", f"{mf / 2**20:,.1f}"],
        [f"RSS mean, minutes {total - win:g}-{total:g} (MiB)", f"{ml / 2**20:,.1f}"],
        ["last / first", f"{ml / mf:.3f}" if first and last else "-"],
        ["RSS at start of sessions / peak (MiB)",
         f"{samples[0][1] / 2**20:,.1f} / {max(s[1] for s in samples) / 2**20:,.1f}" if samples else "-"],
        [f"trend after minute {warm:g} (least squares, MiB per 10 min)", f"{slope:+.2f}"],
        ["CPU cores used over the run", cpu],
        ["Streamlit server CPU per refresh (ms; all its work over the run / refreshes)", f"{app_ms:.0f}"],
    ]
    rep.blocks.append(table(["(B) Streamlit server memory", "value"], rows,
                            f"(B) Streamlit server RSS, {args.sessions} sessions on the live board for "
                            f"{args.minutes:g} min, sampled every {args.sample_s:g} s; a moving room "
                            f"({args.rate:g} events/s, {args.room_viewers:,} viewers; target: last "
                            f"{win:g} min within {TARGET_GROWTH * 100:.0f}% of the first {win:g} after "
                            f"{warm:g} min of warm-up)"))
    rep.blocks.append("RSS by sample (min: MiB): " + "  ".join(f"{s[0]:.1f}:{s[1] / 2**20:.0f}" for s in samples))
    errs = [f"{pr.name}: {pr.errors[:2]}" for pr in probes if pr.errors]
    if errs:
        rep.blocks.append("browser errors: " + "; ".join(errs))
    if first and last:
        rep.target(f"Streamlit RSS, last {win:g} min / first {win:g} min", ml / mf, 1 + TARGET_GROWTH,
                   ml / mf <= 1 + TARGET_GROWTH, lambda x: f"{x:.3f}")


def _cpu(pid: int) -> float:
    return cpu_seconds(pid) or 0.0


# -- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="ab", help="which parts to run: 'a', 'b' or 'ab'")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 20,000 viewers, 2,000 in the room, 8 repeats; (B) 2 sessions for 2 min")
    p.add_argument("--viewers", type=int, default=1_000_000, help="(A) known viewers in the shop")
    p.add_argument("--in-room", type=int, default=100_000, help="(A) viewers in the live room")
    p.add_argument("--repeat", type=int, default=30, help="(A) timed refreshes per screen (AppTest, reads)")
    p.add_argument("--profile-runs", type=int, default=10, help="(A) extra refreshes under cProfile (0: none)")
    p.add_argument("--server-s", type=float, default=20.0,
                   help="(A) seconds each screen is open in the real server (after 3 s of warm-up)")
    p.add_argument("--no-browser", action="store_true", help="(A) skip the real-server timing")
    p.add_argument("--baseline-tasks", type=int, default=100_000,
                   help="(A) the queue baseline reads at most this many tasks and scales to all open ones")
    p.add_argument("--minutes", type=float, default=30.0, help="(B) minutes the sessions stay open")
    p.add_argument("--sessions", type=int, default=5, help="(B) browser sessions on the live board")
    p.add_argument("--sample-s", type=float, default=30.0, help="(B) seconds between RSS readings")
    p.add_argument("--warmup-min", type=float, default=2.0, help="(B) first minutes not counted")
    p.add_argument("--window-min", type=float, default=5.0, help="(B) minutes averaged at the start and the end")
    p.add_argument("--rate", type=float, default=300.0, help="(B) simulated events/s (the launcher's default)")
    p.add_argument("--room-viewers", type=int, default=3000, help="(B) simulated viewers (the launcher's default)")
    p.add_argument("--no-post-gc", dest="post_gc", action="store_false",
                   help="(B) run the app with --runner.postScriptGC false (default: as the launcher runs it)")
    args = p.parse_args(argv)
    if args.quick:
        defaults = {"viewers": 1_000_000, "in_room": 100_000, "repeat": 30, "server_s": 20.0, "minutes": 30.0,
                    "sessions": 5, "sample_s": 30.0, "warmup_min": 2.0, "window_min": 5.0}
        quick = {"viewers": 20_000, "in_room": 2_000, "repeat": 8, "server_s": 8.0, "minutes": 2.0, "sessions": 2,
                 "sample_s": 10.0, "warmup_min": 0.5, "window_min": 0.5}
        for k, v in quick.items():
            if getattr(args, k) == defaults[k]:  # an option given explicitly wins over --quick
                setattr(args, k, v)

    started = time.perf_counter()
    print(f"{machine_note()}; {tree_note()}", flush=True)
    rep = Report()
    if "a" in args.only:
        part_a(args, rep)
    if "b" in args.only:
        part_b(args, rep)
    rep.print()
    print(f"\n{time.perf_counter() - started:.0f} s in all; python {sys.version.split()[0]}; {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
