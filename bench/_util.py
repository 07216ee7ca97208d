"""Plumbing shared by the benchmarks: a private server, child processes, feed files, tables.

Nothing here is measured: it sets the stage and prints the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

from fanops.config import Config
from fanops.runtime import server
from fanops.schema import BadInput, parse_frame
from realtime.simulator import SimSettings, encode_frame, generate
from realtime.writer import IngestWriter

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


# -- the private server ------------------------------------------------------
@contextlib.contextmanager
def private_server(keep: bool = False) -> Iterator[tuple[server.ServerInfo, Path]]:
    """An embedded server of our own on a free port, in a temp dir; stopped and removed after.
    While it runs, ``FANOPS_DATA_DIR`` names ``<that dir>/data`` for this process and the children
    it starts (the scorers' applied-event logs and the archives go there, not to the project's)."""
    d = Path(tempfile.mkdtemp(prefix="fanops-bench-"))
    info = server.ensure_running(d, port=server.free_port())
    before = os.environ.get("FANOPS_DATA_DIR")
    os.environ["FANOPS_DATA_DIR"] = str(d / "data")
    try:
        yield info, d
    finally:
        if before is None:
            os.environ.pop("FANOPS_DATA_DIR", None)
        else:
            os.environ["FANOPS_DATA_DIR"] = before
        server.stop(d)
        if not keep:
            shutil.rmtree(d, ignore_errors=True)


def fresh(url: str) -> redis.Redis:
    """A client on an empty database (every run starts from nothing)."""
    r = redis.Redis.from_url(url, socket_timeout=120)
    r.execute_command("FLUSHALL", "SYNC")  # not lazily: a memory reading right after must not see the old data
    r.script_flush()
    return r


# -- CPU accounting ----------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (Linux /proc); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used so far, all cores together (/proc/stat)."""
    try:
        f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


class CpuMeter:
    """CPU used by a set of processes over an interval, as cores (1.0 = one core busy).

    ``others`` is what the rest of the machine used meanwhile: other work on a shared
    machine takes cores from the run, and the figures are then low.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = time.perf_counter()
        self.c0 = {k: cpu_seconds(p) for k, p in pids.items()}
        self.m0 = machine_busy_seconds()
        self.result: dict[str, float] = {}

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        self.c0[name] = cpu_seconds(pid)

    def stop(self) -> dict[str, float]:
        dt = max(1e-9, time.perf_counter() - self.t0)
        self.result = {}
        for k, p in self.pids.items():
            now, before = cpu_seconds(p), self.c0[k]
            if now is not None and before is not None:  # a process that exited meanwhile is left out
                self.result[k] = (now - before) / dt
        machine = (machine_busy_seconds() - self.m0) / dt
        self.result["others"] = max(0.0, machine - sum(self.result.values()))
        return self.result

    def describe(self) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in self.result.items())


# -- child processes ---------------------------------------------------------
class Child:
    """A product command run as its own process (``python -m ...``), its output in a log file."""

    def __init__(self, name: str, args: Sequence[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log_dir / f"{name}.log"
        e = dict(os.environ)
        e.setdefault("FANOPS_LOG", "WARNING")
        e.update(env or {})
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=self._fh,
                                     stderr=subprocess.STDOUT, env=e)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None and self.proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (the product's clean stop), then SIGKILL if it does not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def wait_until(cond: Callable[[], object], children: Sequence[Child], timeout: float, what: str,
               poll: float = 0.01, *, every: float = 30.0, progress: Callable[[], str] | None = None) -> object:
    """Poll ``cond`` until it gives something true (returned); fail if a child died or after
    ``timeout`` s. A BUSY reply (Redis running a long script) counts as "not yet". With
    ``progress``, print its line every ``every`` s."""
    deadline = time.monotonic() + timeout
    t0 = last = time.monotonic()
    while True:
        try:
            v = cond()
        except redis.ResponseError as e:
            if not str(e).startswith("BUSY"):
                raise
            v = None
        if v:
            return v
        for c in children:
            c.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        if progress and time.monotonic() - last >= every:
            last = time.monotonic()
            try:
                print(f"    {time.monotonic() - t0:.0f} s: {progress()}", flush=True)
            except redis.ResponseError as e:
                if not str(e).startswith("BUSY"):
                    raise
        time.sleep(poll)


def wait_port(port: int, child: Child | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            child.check()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f} s"
                       + (f":\n{child.tail()}" if child else ""))


def replay_server(path: Path, log_dir: Path, name: str = "feed") -> tuple[Child, str]:
    """``python -m realtime replay FILE --port P``: every client gets the whole file, as fast as it reads."""
    port = server.free_port()
    c = Child(name, ["-m", "realtime", "replay", str(path), "--port", str(port)], log_dir)
    wait_port(port, c)
    return c, f"ws://127.0.0.1:{port}"


# -- feed files --------------------------------------------------------------
@dataclass(frozen=True)
class FeedFile:
    path: Path
    events: int
    frames: int
    bytes: int
    viewers: int
    shop: str


def sim_settings(viewers: int, events: int, batch: int, seed: int = 7, shop: str = "bench",
                 rate: float = 50_000.0) -> SimSettings:
    """A clean simulated show (no bad or duplicate events, no history) of ``events`` events,
    ``batch`` events a frame, whose ts are ``1/rate`` s apart (the show lasts events/rate s),
    that ended an hour ago (so no ts is ahead of any clock)."""
    start = int(time.time() * 1000) - 3_600_000 - int(events / rate * 1000)
    return SimSettings(seed=seed, viewers=viewers, rate=rate, duration=events / rate, shop=shop,
                       history_shows=0, batch=batch, start_ms=start, bad_ratio=0.0, dup_ratio=0.0)


def write_feed(path: Path, s: SimSettings) -> FeedFile:
    """The simulator's timeline for ``s``, one frame a line, as ``python -m realtime replay`` reads it."""
    n = frames = size = 0
    seen: set[str] = set()
    with open(path, "wb") as f:
        for fr in generate(replace(s)):
            line = encode_frame(fr)
            f.write(line + b"\n")
            n += len(fr)
            frames += 1
            size += len(line)
            for e in fr:
                seen.add(e["viewer"]["id"])
    return FeedFile(path, n, frames, size, len(seen), s.shop)


# -- output ------------------------------------------------------------------
def machine_note() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"


def tree_note() -> str:
    """The commit measured, and whether the product's code had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "realtime", "scoring", "fanops"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "tree: unknown"
    return f"tree {head or '?'}" + (" + uncommitted changes in realtime/scoring/fanops" if dirty else "")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """Plain aligned text: text columns left, numbers right."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    numeric = [all(_is_num(row[i]) for row in rows if i < len(row)) for i in range(len(headers))]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=False))
        return "  ".join((c.rjust(w) if numeric[i] else c.ljust(w)) for i, (c, w) in pairs).rstrip()

    out = [title] if title else []
    out += [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) or (isinstance(v, str) and v.replace(",", "").replace(".", "")
                                           .replace("x", "").replace("%", "").strip().isdigit())


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}x" if y else "-"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


@dataclass
class Report:
    """What a benchmark prints at the end: its tables (``blocks``) and one row a target."""

    blocks: list[str] = field(default_factory=list)
    targets: list[list[object]] = field(default_factory=list)

    def target(self, what: str, measured: float, goal: float, ok: bool,
               fmt: Callable[[float], object] = lambda x: x) -> None:
        self.targets.append([what, fmt(measured), fmt(goal), ratio(measured, goal), verdict(ok)])

    def print(self) -> None:
        """Every table, then the targets."""
        print()
        for block in self.blocks:
            print(block)
            print()
        print(table(["target", "measured", "goal", "measured/goal", ""], self.targets, "Targets"))


def write_frames(cfg: Config, frames: Iterable[list[dict[str, Any]]], batch: int = 2000,
                 received_ms: int | None = None) -> int:
    """Parse frames as the consumer does and write them with its writer (no WebSocket in between),
    ``batch`` events a write; ``received_ms``: the receipt time stamped on them (None: now). Returns
    the events accepted."""

    async def run() -> int:
        ar = aredis.Redis.from_url(cfg.redis_url)
        w = IngestWriter(ar, cfg)
        held: list[Any] = []
        n = 0
        try:
            for fr in frames:
                now = int(time.time() * 1000) if received_ms is None else received_ms
                held.extend(e for e in parse_frame(encode_frame(fr), now) if not isinstance(e, BadInput))
                if len(held) >= batch:
                    n += (await w.write_events(held))[0]
                    held = []
            if held:
                n += (await w.write_events(held))[0]
        finally:
            await ar.aclose()
        return n

    return asyncio.run(run())
