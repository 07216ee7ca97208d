"""Soak (issue 14): the whole product for 30 minutes at 2,000 events/s with the live board open in a browser.

``python -m bench.soak [--minutes 30] [--rate 2000] [--viewers 20000] [--show-s 300] [--sample-s 30]
[--warmup-min 10] [--window-min 5]`` (``--help`` for every option; bench/README.md for the figures)

On a private embedded server, the launcher's pieces, each its own process as in production
(fanops/runtime/launcher.py): the paced simulated room (``python -m realtime simulate``), the
consumer (``python -m realtime consume``), one scorer (``python -m scoring run``) and the Streamlit
app (``streamlit run app.py``, the launcher's flags), with one headless Chromium session (Playwright,
/usr/bin/chromium) on the live board for the whole run.

The audience is fixed and keeps acting. ``python -m realtime simulate`` with no ``--duration`` runs an
endless show whose arrival curve spans a nominal hour (``realtime.simulator.timeline.NOMINAL_SHOW_S``):
its known viewers would grow for the whole 30 minutes, and Redis with them, legitimately. The
simulator is therefore started as the same command with that nominal length set to ``--show-s``
(300 s; the one change, made in the child process before the command runs): every one of the
``--viewers`` has arrived by then, and from then on each ``--show-s`` those who left come back and half
of those present leave, at the same ``--rate``. ``--history 0``: the shop's known viewers are exactly
the room's cast, so they saturate at ``--viewers``.

Every ``--sample-s`` s: the RSS of every process (feed, consumer, scorer, streamlit, the Redis
server, Chromium's renderer of the board and its browser process), Redis ``used_memory`` and
``used_memory_dataset``, the room's dedupe table (its keys' ``MEMORY USAGE``: it keeps ~14 B for every
event id the room has had, by design, so it grows with the events, not the viewers), known viewers,
lag, events applied, the scorer's p99 receipt -> applied, and the CPU of each process and of the rest
of the machine (``others``).

Verdict: for each process, and for Redis memory without the dedupe table, the mean of the last
``--window-min`` minutes is within 10% of the mean of the ``--window-min`` minutes after
``--warmup-min`` minutes of warm-up; the dedupe table is judged per event it holds, and the follow-up
tasks (they grow with the audience's follow-ups, at most one per viewer, room and kind occasion) per
task, with Redis memory and the server's RSS judged without them too; no ``ERROR`` or
``Traceback`` in any process's log and no page error in the browser.  Exit 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench._util import (
    ROOT,
    Child,
    Report,
    cpu_seconds,
    fresh,
    machine_busy_seconds,
    machine_note,
    table,
    tree_note,
    wait_port,
    wait_until,
)
from fanops import keys
from fanops.read import status
from fanops.runtime import server
from fanops.state import TASK_KINDS, TASK_STATES

SHOP = "default"
TARGET_GROWTH = 0.10
ERROR_RE = re.compile(rb"\bERROR\b|Traceback")
# ``python -m realtime simulate ...`` with the endless show's nominal length set first (see the docstring)
SIM_CODE = ("import sys; import realtime.simulator.timeline as t; t.NOMINAL_SHOW_S = float(sys.argv.pop(1)); "
            "from realtime.__main__ import main; sys.exit(main())")
PROCS = ("feed", "consumer", "scorer", "app", "redis", "renderer", "chromium")


@dataclass
class Sample:
    minute: float
    rss: dict[str, int]  # bytes, by process
    cpu: dict[str, float]  # CPU seconds so far, by process; "machine": all processes of the machine
    used: int
    dataset: int
    dedupe: int  # bytes in the room's dedupe table (MEMORY USAGE of its keys)
    dedupe_ids: int  # event ids it holds
    backlog: int  # bytes in the shop's event streams (the entries not yet applied: they follow the lag)
    viewers: int
    applied: int
    lag: int
    dead: int
    p99_ms: float
    refreshes: int
    cores: dict[str, float] = field(default_factory=dict)  # since the previous sample
    tasks: int = 0  # bytes of the follow-up tasks: their hashes, queues and made index (MEMORY USAGE)
    task_n: int = 0  # follow-up tasks in Redis (every kind and state)

    @property
    def state(self) -> int:
        """Redis memory without the dedupe table and the backlog."""
        return self.used - self.dedupe - self.backlog

    @property
    def data(self) -> int:
        """Redis's dataset (``used_memory_dataset``: the keys' values, without the server's own overhead)
        without the dedupe table and the backlog: the viewers, rooms, tasks and indexes."""
        return self.dataset - self.dedupe - self.backlog

    @property
    def overhead(self) -> int:
        """``used_memory`` - dataset: the keyspace's own tables (they grow with the number of keys, i.e.
        with the dedupe table's buckets), client buffers, scripts."""
        return self.used - self.dataset


# -- processes -------------------------------------------------------------------------------
def _rss(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def chromium_pids() -> dict[str, int]:
    """This process's Chromium: the browser process, and the renderer with the largest RSS (the board's)."""
    import psutil

    out: dict[str, int] = {}
    best = -1
    for ch in psutil.Process().children(recursive=True):
        try:
            cmd = ch.cmdline()
        except psutil.Error:
            continue
        if not cmd or "chrom" not in Path(cmd[0]).name:
            continue
        kind = next((a.split("=", 1)[1] for a in cmd if a.startswith("--type=")), "browser")
        if kind == "browser":
            out["chromium"] = ch.pid
        elif kind == "renderer" and (rss := _rss(ch.pid)) > best:
            best, out["renderer"] = rss, ch.pid
    return out


def start_product(args: argparse.Namespace, url: str, d: Path, tmp: Path) -> tuple[list[Child], int]:
    """The launcher's pieces against ``url``; returns them (feed, consumer, scorer, app) and the app's port."""
    from bench.app import start_app

    env = {"REDIS_URL": url, "FANOPS_DATA_DIR": str(tmp / "data"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sim_port = server.free_port()
    procs = [Child("feed", ["-c", SIM_CODE, str(args.show_s), "simulate", "--port", str(sim_port), "--rate",
                            str(args.rate), "--viewers", str(args.viewers), "--seed", str(args.seed), "--history", "0",
                            "--shop", SHOP], d, env=env)]
    wait_port(sim_port, procs[0])
    procs.append(Child("consumer", ["-m", "realtime", "consume", "--url", f"ws://127.0.0.1:{sim_port}"], d, env=env))
    procs.append(Child("scorer", ["-m", "scoring", "run", "--name", "w1"], d, env=env))
    app, port = start_app(url, d, tmp, "app", usage_stats=False)
    procs.append(app)
    return procs, port


# -- readings --------------------------------------------------------------------------------
def dedupe_bytes(r: redis.Redis, room: str) -> tuple[int, int]:
    """(bytes, event ids) of the room's dedupe table: its key and every bucket."""
    head = keys.seen(SHOP, room)
    m = r.get(head)
    ids = int(m.split()[2]) if m else 0
    total = int(r.memory_usage(head, samples=0) or 0) if m else 0
    batch: list[bytes] = []

    def flush() -> int:
        p = r.pipeline(transaction=False)
        for k in batch:
            p.memory_usage(k, samples=0)
        n = sum(int(x or 0) for x in p.execute())
        batch.clear()
        return n

    for k in r.scan_iter(match=head.replace("[", "\\[").replace("]", "\\]") + ":*", count=5000):
        batch.append(k)
        if len(batch) >= 2000:
            total += flush()
    if batch:
        total += flush()
    return total, ids


def task_bytes(r: redis.Redis, room: str) -> tuple[int, int]:
    """(bytes, tasks) of the shop's follow-up tasks: the room's and each kind's task hash, the queue of
    every state, the making times (the minutes' lists and their indexes, ``fanops.expiry``)."""
    hashes = [keys.tasks(SHOP, room), *(keys.kind_tasks(SHOP, k) for k in TASK_KINDS[1:])]
    made = [m.decode() for m in r.keys(keys.made(SHOP) + ":*")]  # a few hundred lists: a bench, no hot path
    p = r.pipeline(transaction=False)
    for k in [*hashes, keys.made(SHOP), *made, *(keys.queue(SHOP, st) for st in TASK_STATES)]:
        p.memory_usage(k, samples=0)
    for k in hashes:
        p.hlen(k)
    got = p.execute()
    return sum(int(x or 0) for x in got[:-len(hashes)]), sum(int(x or 0) for x in got[-len(hashes):])


def breakdown(r: redis.Redis) -> dict[str, int]:
    from bench.scorer import breakdown as by_kind

    return by_kind(r)[0]


def take(r: redis.Redis, t0: float, pids: dict[str, int], room: str, refreshes: int) -> Sample:
    info = r.info("memory")
    st = status(r, SHOP)
    dd, ids = dedupe_bytes(r, room) if room else (0, 0)
    hb = json.loads(r.get(keys.heartbeat("scorer", "w1")) or "{}")
    backlog = sum(int(r.memory_usage(k, samples=0) or 0) for k in keys.streams(SHOP))
    tb, tn = task_bytes(r, room) if room else (0, 0)
    return Sample(minute=(time.monotonic() - t0) / 60, rss={k: _rss(p) for k, p in pids.items()},
                  cpu={k: cpu_seconds(p) or 0.0 for k, p in pids.items()} | {"machine": machine_busy_seconds(),
                                                                              "wall": time.monotonic()},
                  used=int(info["used_memory"]), dataset=int(info.get("used_memory_dataset", 0)), dedupe=dd,
                  dedupe_ids=ids, backlog=backlog, viewers=int(r.hlen(keys.viewers(SHOP))),
                  applied=int(st["events_applied"]),
                  lag=int(st["lag"]), dead=int(st["dead_letters"]), p99_ms=float(hb.get("p99_ms", float("nan"))),
                  refreshes=refreshes, tasks=tb, task_n=tn)


def cores_between(a: Sample, b: Sample) -> dict[str, float]:
    dt = max(1e-9, b.cpu["wall"] - a.cpu["wall"])
    out = {k: (b.cpu[k] - a.cpu.get(k, b.cpu[k])) / dt for k in b.cpu if k not in ("machine", "wall")}
    out["others"] = max(0.0, (b.cpu["machine"] - a.cpu["machine"]) / dt - sum(out.values()))
    return out


def log_errors(children: list[Child]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in children:
        try:
            lines = c.log.read_bytes().splitlines()
        except OSError:
            continue
        bad = [ln.decode(errors="replace")[:200] for ln in lines if ERROR_RE.search(ln)]
        out[c.name] = bad
    return out


# -- the run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> tuple[list[Sample], dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    from bench.app import CHROMIUM, CHROMIUM_ARGS, SessionProbe, open_session, own_server

    extra: dict[str, Any] = {}
    with ExitStack() as stack:
        info, d = own_server(stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanops-bench-soak-")))
        r = fresh(info.url)
        procs: list[Child] = []
        stack.callback(lambda: [c.stop() for c in reversed(procs)])
        started, port = start_product(args, info.url, d, tmp)
        procs.extend(started)
        wait_until(lambda: r.zcard(keys.rooms(SHOP)) > 0 and status(r, SHOP)["events_applied"] > 0, procs, 120,
                   "the simulated room", poll=0.2)
        room = (r.zrange(keys.rooms(SHOP), -1, -1) or [b""])[0].decode()
        print(f"private server {info.url} (pid {info.pid}); room {room}; {args.rate:g} events/s, "
              f"{args.viewers:,} viewers cycling every {args.show_s:g} s; app on port {port}; "
              f"{args.minutes:g} min, a sample every {args.sample_s:g} s", flush=True)
        probe = SessionProbe("board")
        samples: list[Sample] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ctx = open_session(browser, f"http://127.0.0.1:{port}/", probe)
                page = ctx.pages[0]
                pids = {c.name: c.pid for c in procs} | {"redis": info.pid} | chromium_pids()
                extra["pids"] = pids
                t0 = next_sample = time.monotonic()
                while True:
                    now = time.monotonic()
                    if now >= next_sample:
                        pids.update(chromium_pids())  # a renderer may be replaced
                        s = take(r, t0, pids, room, probe.fragment_runs)
                        if samples:
                            s.cores = cores_between(samples[-1], s)
                        samples.append(s)
                        print("    " + line(s), flush=True)
                        for c in procs:
                            c.check()
                        next_sample += args.sample_s
                    if now - t0 >= args.minutes * 60:
                        break
                    page.wait_for_timeout(max(50, min(1000, (next_sample - time.monotonic()) * 1000)))
                extra["kinds_end"] = breakdown(r)
                extra["page_errors"] = list(probe.errors)
                extra["full_runs"] = probe.full_runs
                ctx.close()
            finally:
                browser.close()
        extra["status"] = status(r, SHOP)
        r.close()
        for c in reversed(procs):
            c.stop()
        extra["errors"] = log_errors(procs)
        extra["exit"] = {c.name: c.proc.returncode for c in procs}
        procs.clear()
    return samples, extra


def line(s: Sample) -> str:
    mib = 2 ** 20
    rss = ", ".join(f"{k} {v / mib:.0f}" for k, v in s.rss.items())
    return (f"{s.minute:5.1f} min: applied {s.applied:,}, lag {s.lag:,}, viewers {s.viewers:,}; Redis used "
            f"{s.used / mib:.1f} MiB (dedupe {s.dedupe / mib:.1f}, backlog {s.backlog / mib:.1f}); RSS MiB {rss}; "
            f"refreshes {s.refreshes:,}; "
            f"others {s.cores.get('others', float('nan')):.2f}")


# -- the report ------------------------------------------------------------------------------
def window_means(samples: list[Sample], args: argparse.Namespace, value: Any) -> tuple[float, float]:
    warm, win, total = args.warmup_min, args.window_min, samples[-1].minute
    first = [value(s) for s in samples if warm <= s.minute < warm + win]
    last = [value(s) for s in samples if s.minute >= total - win]
    nan = float("nan")
    return (statistics.mean(first) if first else nan), (statistics.mean(last) if last else nan)


def report(samples: list[Sample], extra: dict[str, Any], args: argparse.Namespace, rep: Report) -> None:
    mib = 2 ** 20
    every = max(1, round(args.print_every_min * 60 / args.sample_s))
    shown = [s for i, s in enumerate(samples) if i % every == 0 or i == len(samples) - 1]
    procs = [k for k in PROCS if k in samples[0].rss]
    rows = []
    for s in shown:
        rows.append([f"{s.minute:.1f}", f"{s.applied:,}", f"{s.lag:,}", f"{s.viewers:,}",
                     *(f"{s.rss[k] / mib:.0f}" for k in procs), f"{s.used / mib:.1f}", f"{s.dataset / mib:.1f}",
                     f"{s.dedupe / mib:.1f}", f"{s.backlog / mib:.1f}", f"{s.state / mib:.1f}",
                     f"{s.tasks / mib:.1f} ({s.task_n:,})", f"{s.p99_ms:.0f}",
                     f"{s.cores.get('others', float('nan')):.2f}"])
    rep.blocks.append(table(["min", "applied", "lag", "viewers", *(f"{k} MiB" for k in procs), "used MiB",
                             "dataset", "dedupe", "backlog", "rest", "of it tasks (n)", "p99 ms", "others"], rows,
                            f"Samples (every {every * args.sample_s:g} s shown of every {args.sample_s:g} s; "
                            "RSS and Redis memory in MiB; p99: the scorer's receipt -> applied; "
                            "others: cores the rest of the machine used)"))
    span = samples[-1].minute - samples[0].minute
    rate = (samples[-1].applied - samples[0].applied) / (span * 60) if span else float("nan")
    cores = cores_between(samples[0], samples[-1])
    rows = [["events applied / s over the run", f"{rate:,.0f} (simulator set to {args.rate:g})"],
            ["lag at the end / largest sample", f"{samples[-1].lag:,} / {max(s.lag for s in samples):,}"],
            ["known viewers at the end", f"{samples[-1].viewers:,} (cast {args.viewers:,})"],
            ["dead letters (the simulator's deliberate bad events)", f"{samples[-1].dead:,}"],
            ["board refreshes in the browser", f"{samples[-1].refreshes - samples[0].refreshes:,} "
                                               f"(full page runs {extra.get('full_runs', 0)})"],
            ["CPU cores over the run", ", ".join(f"{k} {v:.2f}" for k, v in cores.items())],
            ["follow-up tasks in Redis: min 10 / at the end (at most one per viewer, room and kind occasion)",
             f"{next((s.task_n for s in samples if s.minute >= args.warmup_min), 0):,} / {samples[-1].task_n:,} "
             f"({samples[-1].tasks / mib:.1f} MiB at the end)"],
            ["dedupe bytes per event id at the end",
             f"{samples[-1].dedupe / max(1, samples[-1].dedupe_ids):.1f} ({samples[-1].dedupe_ids:,} ids)"],
            ["Redis memory by key kind at the end (MiB)",
             ", ".join(f"{k} {v / mib:.1f}" for k, v in sorted(extra.get("kinds_end", {}).items(),
                                                               key=lambda kv: -kv[1])[:8])]]
    rep.blocks.append(table(["run", "value"], rows, f"Soak: {span:.1f} min; {tree_note()}"))
    win = args.window_min
    judged: list[tuple[str, Any]] = [(f"{k} RSS", lambda s, k=k: s.rss[k]) for k in procs]
    judged = [j for j in judged if j[0] != "redis RSS"]  # it follows used_memory, judged in parts below
    judged += [("Redis server RSS per byte of used_memory (the allocator's share)",
                lambda s: s.rss["redis"] / max(1, s.used)),
               ("Redis dataset without dedupe and backlog", lambda s: s.data),
               ("Redis dataset without dedupe and backlog, per known viewer", lambda s: s.data / max(1, s.viewers)),
               ("Redis dedupe table, bytes per event id", lambda s: s.dedupe / max(1, s.dedupe_ids)),
               ("Redis overhead (used_memory - dataset), bytes per event id",
                lambda s: s.overhead / max(1, s.dedupe_ids))]
    if samples[-1].task_n:  # runs saved before the tasks were sampled have none
        judged += [("Redis follow-up tasks, bytes per task", lambda s: s.tasks / max(1, s.task_n))]
    for what, fn in judged:
        first, last = window_means(samples, args, fn)
        rep.target(f"{what}: last {win:g} min / min {args.warmup_min:g}-{args.warmup_min + win:g}",
                   last / first if first else float("nan"), 1 + TARGET_GROWTH,
                   bool(first) and last / first <= 1 + TARGET_GROWTH, lambda x: f"{x:.3f}")
    for what, fn in (("Redis used_memory", lambda s: s.used), ("Redis server RSS", lambda s: s.rss["redis"]),
                     ("Redis used_memory without dedupe and backlog", lambda s: s.state)):
        first, last = window_means(samples, args, fn)
        rep.blocks.append(f"{what} (not judged as a whole: the dedupe table and the keyspace's tables grow with "
                          f"the room's events): {first / mib:.1f} -> {last / mib:.1f} MiB, "
                          f"last/first {last / first:.3f}")
    errors = extra.get("errors", {})
    n_err = sum(len(v) for v in errors.values()) + len(extra.get("page_errors", []))
    rep.target("ERROR/Traceback lines in the logs + browser page errors", n_err, 0, n_err == 0)
    for name, lines in errors.items():
        if lines:
            rep.blocks.append(f"{name}.log: {len(lines)} error lines, first: " + " | ".join(lines[:3]))
    if extra.get("page_errors"):
        rep.blocks.append("browser page errors: " + " | ".join(extra["page_errors"][:3]))
    rep.blocks.append("exit codes after SIGTERM: " + ", ".join(f"{k} {v}" for k, v in extra.get("exit", {}).items()))


def reprint(args: argparse.Namespace) -> int:
    saved = json.loads(Path(args.report).read_text())
    for k in ("minutes", "rate", "viewers", "show_s", "sample_s"):
        setattr(args, k, saved["args"][k])
    rep = Report()
    report([Sample(**x) for x in saved["samples"]], saved["extra"], args, rep)
    for block in rep.blocks:
        print(block, end="\n\n")
    print(table(["target", "measured", "goal", "measured/goal", ""], rep.targets, "Targets"))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="minutes the board stays open and samples are taken")
    p.add_argument("--rate", type=float, default=2000.0, help="simulated events/s")
    p.add_argument("--viewers", type=int, default=20_000, help="the simulated room's cast (the audience)")
    p.add_argument("--show-s", type=float, default=300.0,
                   help="the endless show's nominal length: every viewer has arrived by then, and the audience "
                        "cycles (those who left come back) every this many seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--warmup-min", type=float, default=10.0,
                   help="first minutes not judged (the audience has all arrived after --show-s, and a viewer "
                        "counts as present for 10 minutes after their last event: the present set is full after 10)")
    p.add_argument("--window-min", type=float, default=5.0, help="minutes averaged after the warm-up and at the end")
    p.add_argument("--print-every-min", type=float, default=2.5, help="minutes between the rows of the printed table")
    p.add_argument("--json", help="also write every sample to this file")
    p.add_argument("--report", metavar="JSON", help="run nothing: print the report of a run saved with --json "
                                                    "(with this command's --warmup-min, --window-min)")
    args = p.parse_args(argv)
    if args.report:
        return reprint(args)
    if args.minutes < args.warmup_min + 2 * args.window_min:  # a short run: scale the windows down
        args.warmup_min = args.window_min = args.minutes / 3
        args.print_every_min = min(args.print_every_min, args.sample_s / 60)
    started = time.perf_counter()
    print(f"{machine_note()}; {tree_note()}", flush=True)
    rep = Report()
    samples, extra = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "samples": [vars(x) for x in samples],
                                               "extra": extra}, default=str))
    if len(samples) >= 2:
        report(samples, extra, args, rep)
    rep.print()
    print(f"\n{time.perf_counter() - started:.0f} s in all; python {sys.version.split()[0]}; {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
