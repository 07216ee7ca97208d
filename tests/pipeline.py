"""Helpers to run the real pipeline in tests: a replay feed -> the consumer -> Redis -> workers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

from fanops import keys
from fanops.config import Config
from fanops.retry import Backoff
from fanops.runtime import db
from realtime.consumer import Consumer
from scoring.worker import Worker
from tests.conftest import await_for
from tests.feeds import Feed, send_all


def run_consumer(cfg: Config, script: Callable[[Any, int], Awaitable[None]], until: Callable[[Consumer], Any],
                 timeout: float = 60.0, what: str = "the consumer to read every frame",
                 connect: Callable[[], Awaitable[aredis.Redis]] | None = None, mapping: Any = None) -> Consumer:
    """Serve ``script`` (websocket, connection number) on a real WebSocket server and run the real
    consumer until ``until(consumer)`` holds (or it stops); ``connect`` makes its Redis client;
    ``mapping``: the consumer reads another platform's frames through it (``realtime.mapping``)."""

    async def main() -> Consumer:
        feed = await Feed(script).start()
        ar = await connect() if connect is not None else db.async_client(cfg.redis_url)
        c = Consumer(feed.url, ar, cfg, backoff=Backoff(initial=0.01, cap=0.05), mapping=mapping)
        task = asyncio.create_task(c.run())
        try:
            await await_for(lambda: until(c) or task.done(), timeout, what)
            c.stop()
            await asyncio.wait_for(task, 20)
        finally:
            if not task.done():
                task.cancel()
            await feed.stop()
            await ar.aclose()
        return c

    return asyncio.run(main())


def ingest_frames(cfg: Config, frames: list[str | bytes], timeout: float = 60.0) -> Consumer:
    """Serve ``frames`` on a real WebSocket server and run the real consumer until all are read."""
    return run_consumer(cfg, lambda ws, n: send_all(ws, frames), lambda c: c.counters.frames >= len(frames), timeout)


def read_lines(path: Path) -> list[str]:
    return [ln.rstrip("\n") for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def drain(r: redis.Redis, cfg: Config, name: str = "w1", shops: list[str] | None = None) -> Worker:
    w = Worker(r, cfg, name=name, shops=shops)
    w.drain(timeout=120)
    return w


def lag(r: redis.Redis, shop: str) -> int:
    st = r.hgetall(keys.stats(shop))
    return int(st.get(b"accepted", 0)) - int(st.get(b"applied", 0))


def product_tasks(r: redis.Redis, shop: str, states: tuple[str, ...]) -> dict[str, str]:
    """Every task in the queues of ``states``: "room/viewer" (lingered) or "kind/occasion/viewer"
    (spec/tiers.md v1.1's other kinds) -> state, as ``reference_tasks`` names them."""
    out = {}
    for st in states:
        for m in r.zrange(keys.queue(shop, st), 0, -1):
            k = keys.split_kind_task_id(m.decode())
            out["/".join(keys.split_pair(m.decode())) if k is None else m.decode().replace(":", "/", 2)] = st
    return out


def reference_tasks(ref: Any, shop: str) -> dict[str, str]:
    """The reference's tasks, named as ``product_tasks`` names them."""
    out = {"/".join(k): t["state"] for k, t in ref.followups(shop).items()}
    out.update({f"{k}/{occ}/{v}": st for (k, occ, v), st in ref.kind_tasks(shop).items()})
    return out


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Every leaf where two nested dicts differ, as "a.b.c: got != want" (for readable failures)."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for k in sorted(set(got) | set(want), key=str):
            out += differences(got.get(k), want.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


def project(got: Any, want: Any) -> Any:
    """``got`` cut down to the keys ``want`` has, at every level: a v1 expectation checked against
    output that has v1.1's added fields (spec/cli.md: fields are added, never renamed or dropped)."""
    if isinstance(got, dict) and isinstance(want, dict):
        return {k: project(got[k], want[k]) if k in got else got.get(k) for k in want}
    return got
