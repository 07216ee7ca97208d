"""Order webhooks at a steady rate: request -> applied latency, with a scorer running.

``PYTHONPATH=. .venv/bin/python -m bench.webhooks [--rate 500] [--duration 30] [--connections 32]``

A private embedded server, ``python -m realtime orders`` and one ``python -m scoring run``, each its
own process; this process is the shop: it sends signed generic orders on keep-alive connections,
open loop (order i is due at start + i/rate whatever the answers; a late send counts from when it
was due), each with ``ts`` = that due time in ms, and a new viewer each.  The viewers are picked in
one partition of the shop (``keys.part_of``), so their events sit in one stream and are applied in
the order they were written: an order is applied once the shop clock (polled every 2 ms) has
reached its ts.  Reports the p50/p99/max of request -> 200 and of request -> applied.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path

from bench._util import Child, CpuMeter, fresh, machine_note, private_server, table, tree_note, wait_port
from fanops import keys
from fanops.runtime import server

SECRET = "bench-secret"
SHOP = "bench"
POLL_S = 0.002


def viewers(n: int) -> list[str]:
    """``n`` viewer ids of partition 0."""
    out, i = [], 0
    while len(out) < n:
        v = f"wv-{i}"
        if keys.part_of(v) == 0:
            out.append(v)
        i += 1
    return out


def _request(i: int, viewer: str, ts: int) -> bytes:
    body = json.dumps({"shop": SHOP, "room": "bench-live", "viewer_id": viewer, "order_id": f"wo-{i}",
                       "amount": 19.9, "currency": "USD", "ts": ts}).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (f"POST /webhooks/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


async def send_all(port: int, rate: float, duration: float, conns: int) -> tuple[list[float], list[int], int]:
    """Every order sent open loop; returns (request -> answer ms, the orders' ts, non-200 answers)."""
    n = int(rate * duration)
    ids = viewers(n)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    answers: list[float] = [0.0] * n
    tss: list[int] = []
    bad = 0
    t0 = time.time() + 0.2

    async def one(i: int, due: float) -> None:
        nonlocal bad
        reader, writer = await pool.get()
        writer.write(_request(i, ids[i], int(due * 1000)))
        status = await _answer(reader)
        answers[i] = (time.time() - due) * 1000
        pool.put_nowait((reader, writer))
        if status != 200:
            bad += 1

    tasks = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tss.append(int(due * 1000))
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return answers, tss, bad


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    p.add_argument("--rate", type=float, default=500.0, help="orders a second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections of the shop")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of orders sent first and not counted")
    p.add_argument("--debug", action="store_true", help="the latencies by twentieths of the run")
    a = p.parse_args(argv)
    with private_server() as (info, d):
        log_dir = Path(d) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        r = fresh(info.url)
        port = server.free_port()
        env = {"REDIS_URL": info.url, "FANOPS_WEBHOOK_SECRET": SECRET}
        scorer = Child("scorer", ["-m", "scoring", "run", "--name", "w1", "--redis", info.url], log_dir, env=env)
        orders = Child("orders", ["-m", "realtime", "orders", "--port", str(port), "--redis", info.url], log_dir,
                       env=env)
        seen: list[tuple[int, float]] = []  # (shop clock, wall ms when read)
        stop = threading.Event()

        def poll() -> None:
            last = -1
            while not stop.is_set():
                clock = int(r.hget(keys.stats(SHOP), "clock") or 0)
                if clock != last:
                    seen.append((clock, time.time() * 1000))
                    last = clock
                time.sleep(POLL_S)

        try:
            wait_port(port, orders)
            meter = CpuMeter({"orders": orders.pid, "scorer": scorer.pid, "redis": info.pid})
            th = threading.Thread(target=poll, daemon=True)
            th.start()
            answers, tss, bad = asyncio.run(send_all(port, a.rate, a.warmup + a.duration, a.connections))
            deadline = time.time() + 60
            while (not seen or seen[-1][0] < tss[-1]) and time.time() < deadline:
                time.sleep(0.05)
            stop.set()
            th.join()
            cpu = meter.stop()
        finally:
            orders.stop()
            scorer.stop()
        applied = []
        j = 0
        for ts in tss:  # both ascending: the first reading of the clock at or past each ts
            while j < len(seen) and seen[j][0] < ts:
                j += 1
            applied.append(seen[j][1] - ts if j < len(seen) else float("inf"))
    if a.debug:
        for k in range(0, len(applied), len(applied) // 20):
            chunk = applied[k:k + len(applied) // 20]
            print(f"orders {k}-{k + len(chunk)}: p99 {_pct(chunk, 99):.1f} max {max(chunk):.1f}")
    w = int(a.rate * a.warmup)  # the scorer meets the new shop, the server its first requests
    warm = max(applied[:w], default=float("nan"))
    answers, applied = answers[w:], applied[w:]
    rows = [["request -> 200", _pct(answers, 50), _pct(answers, 99), max(answers)],
            ["request -> applied", _pct(applied, 50), _pct(applied, 99), max(applied)]]
    print(machine_note())
    print(tree_note())
    print(f"{len(applied)} orders counted at {a.rate:g}/s for {a.duration:g} s on {a.connections} connections, "
          f"after {w} in {a.warmup:g} s of warm-up (their slowest applied in {warm:.1f} ms); "
          f"{bad} answers not 200; CPU (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    print(table(["ms", "p50", "p99", "max"], [[n, f"{x:.1f}", f"{y:.1f}", f"{z:.1f}"] for n, x, y, z in rows]))
    ok = _pct(applied, 99) < 100 and bad == 0
    print(f"target p99 request -> applied < 100 ms at {a.rate:g}/s: {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
