"""A primary of a Redis Cluster killed mid-feed: its replica takes over, and once the feed resends,
the final status is the one of an undisturbed run.

Replication is asynchronous: what the primary acknowledged and its replica had not received yet
is gone with the primary.  The test makes that certain (the replica is paused while the primary
takes a third of the feed and the scorer applies it), then kills the primary (SIGKILL) and
lets the replica be promoted (``cluster-node-timeout`` 1 s)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fanops import keys
from fanops.read import status
from fanops.retry import Backoff
from fanops.runtime import db
from fanops.runtime.cluster import LocalCluster
from realtime.consumer import Consumer
from tests.conftest import SAMPLES, await_for
from tests.feeds import Feed, send_all
from tests.pipeline import drain, ingest_frames, lag, read_lines

SHOP = "default"
RECEIPTS = ("duplicates", "dead_letters")  # what arrived, not what it made: a resend counts again


def _disturbed_run(cluster: LocalCluster, cr: Any, ccfg: Any, frames: list[str]) -> dict[str, int]:
    """Feed a third, score it; pause the shop's replica; feed and score another third; kill the
    primary, resume the replica and wait for its promotion; the feed resends from its start."""
    cut = len(frames) // 3
    key = keys.stats(SHOP)
    seen: dict[str, int] = {}
    box: dict[str, Any] = {}

    async def sent(ws: Any, part: list[str], total: int) -> None:
        await send_all(ws, part)
        await await_for(lambda: box["c"].counters.frames >= total, 30, "the consumer to read the frames")
        await box["c"].flush()
        await asyncio.to_thread(drain, cr, ccfg)

    async def script(ws: Any, n: int) -> None:
        try:
            await steps(ws)
        except BaseException as e:
            seen["done"] = 0
            box["error"] = e  # type: ignore[assignment]
            raise

    async def steps(ws: Any) -> None:
        await sent(ws, frames[:cut], cut)
        primary = cluster.primary_of(key)
        replica = cluster.replicas_of(primary)[0]
        cluster.pause(replica)
        await sent(ws, frames[cut:2 * cut], 2 * cut)
        seen["acknowledged"] = int(cr.hget(key, "accepted"))
        cluster.kill(primary)
        cluster.resume(replica)
        seen["kept"] = int(cluster.replica_read(replica, "hget", key, "accepted") or 0)
        # at once, while no node serves the shop's slot: the consumer holds what it reads and retries;
        # the feed resends from its start (it cannot know what was lost) and goes on to its end
        await sent(ws, frames, 2 * cut + len(frames))
        cluster.wait_primary(key, replica)
        seen["done"] = 1

    async def main() -> None:
        feed = await Feed(script).start()
        ar = await db.connect_async(ccfg)
        box["c"] = c = Consumer(feed.url, ar, ccfg, backoff=Backoff(initial=0.01, cap=0.05))
        task = asyncio.create_task(c.run())
        try:
            await await_for(lambda: "done" in seen or task.done(), 120, "the disturbed feed")
            c.stop()
            await asyncio.wait_for(task, 20)
            if "error" in box:
                raise AssertionError("the feed's script failed") from box["error"]  # type: ignore[arg-type]
        finally:
            await feed.stop()
            await ar.aclose()

    asyncio.run(main())
    drain(cr, ccfg)
    return seen


def test_a_primary_killed_mid_feed_ends_in_the_status_of_an_undisturbed_run(cluster, cr, ccfg, r, cfg, caplog):
    frames = read_lines(SAMPLES / "weeks-small.jsonl")
    rooms = list(json.loads((SAMPLES / "weeks-small.expected.json").read_text())["status_by_room"])
    with caplog.at_level(logging.WARNING, "realtime.consumer"):
        seen = _disturbed_run(cluster, cr, ccfg, frames)
    assert seen["kept"] < seen["acknowledged"]  # the promoted replica lacked acknowledged events
    assert any("holding" in m for m in caplog.messages)  # the consumer held events while no node served
    ingest_frames(cfg, frames)  # the undisturbed run, on the single test server
    drain(r, cfg)
    assert int(cr.hget(keys.stats(SHOP), "accepted")) == int(r.hget(keys.stats(SHOP), "accepted"))
    assert lag(cr, SHOP) == 0
    for room in rooms:
        got, want = status(cr, SHOP, room), status(r, SHOP, room)
        for k in RECEIPTS:
            assert got.pop(k) >= want.pop(k), (room, k)
        assert got == want, room
