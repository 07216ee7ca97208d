"""Redis at its memory limit (``maxmemory``), during a show.

A full Redis with ``noeviction`` refuses writes (``OOM``): the consumer holds what it has read, the
scorer waits, the board says why, and once memory frees every event is in, once, as if nothing had
happened.  A Redis that would evict keys instead (losing events, or forgetting ids and counting a
resend twice) is refused at connect, with the fix.  Each test runs its own server: they change
its configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from fanops import keys
from fanops.config import Config
from fanops.errors import RedisEvicts
from fanops.ingest import IngestWriter
from fanops.read import status
from fanops.retry import Backoff, is_retryable
from fanops.runtime import db, server
from fanops.schema import BadInput
from scoring.worker import Worker
from screens.reads.board import read_board
from tests.conftest import await_for, wait_for
from tests.feeds import ev, frame
from tests.realtime.test_consumer import consumer_on

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_763_856_000_000


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[str, Config]]:
    """A server of this test's own (its configuration is changed), and a Config on it."""
    d = tmp_path / "srv"
    info = server.ensure_running(d, port=server.free_port())
    try:
        yield info.url, Config.from_env({}, redis_url=info.url, data_dir=tmp_path / "data", flush_ms=5)
    finally:
        server.stop(d)


def _show() -> list[str]:
    """A small show: 12 viewers join, comment, cart, and 4 of them order, over 10 minutes."""
    out, i = [], 0
    for step in range(10):
        evs = []
        for v in range(12):
            i += 1
            ts = T0 + step * 60_000 + v * 1_000
            kind: dict = ({"type": "join"} if step == 0 else
                          {"type": "order", "order_id": f"o-{v}", "amount": 20.0, "currency": "USD"}
                          if step == 7 and v % 3 == 0 else
                          {"type": "cart_add", "sku": "p-1"} if step == 5 else
                          {"type": "comment", "text": f"how much is it? {step}"})
            evs.append(ev(i, viewer=f"u-{v}", ts=ts, **kind))
        out.append(frame(*evs))
    return out


def _full(r: redis.Redis) -> None:
    """Redis at its limit: maxmemory below what it uses (noeviction: writes are refused)."""
    r.config_set("maxmemory", max(1, int(r.info("memory")["used_memory"]) // 2))


def _n(frames: list[str]) -> int:
    return sum(len(x) if isinstance(x := json.loads(f), list) else 1 for f in frames)


def _feed(cfg: Config, frames: list[str]) -> None:
    """The consumer reads ``frames`` and writes them all; no scorer yet."""
    async def main() -> None:
        async with consumer_on(cfg, frames) as c:
            await await_for(lambda: c.counters.accepted == _n(frames), 15, "the frames in")
    asyncio.run(main())


def _show_run(r: redis.Redis, cfg: Config, frames: list[str], caplog: pytest.LogCaptureFixture,
              full: bool) -> dict:
    """Half the show written, then (``full``: Redis fills first) a scorer started and the rest read
    by a consumer; with ``full``, once both are seen waiting, Redis gets room again.  Returns the
    room's status once every event is applied."""
    half = len(frames) // 2
    _feed(cfg, frames[:half])
    worker, writes = _scorer(r, cfg)
    if full:
        _full(r)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    async def rest() -> None:
        async with consumer_on(cfg, frames[half:]) as c:
            if full:
                await await_for(lambda: "Redis is full" in _said(caplog, "scoring.worker")
                                and "Redis is full" in _said(caplog, "realtime.consumer"), 20,
                                "the scorer and the consumer to wait for memory")
                assert thread.is_alive() and c.counters.accepted == 0, "both wait; the consumer holds its events"
                assert writes and status(r, "default")["events_applied"] == 0, "apply.lua refused: nothing applied"
                problems = read_board(r, "default", "r-1").health.problems
                assert problems[0][0] == "health.redis_full", problems
                r.config_set("maxmemory", 0)
            await await_for(lambda: c.counters.accepted == _n(frames[half:]), 20, "the held events in")

    try:
        asyncio.run(rest())
        # the refused batch is read again at once, not after FANOPS_CLAIM_IDLE_MS (30 s) behind newer ones
        wait_for(lambda: status(r, "default")["events_applied"] == _n(frames), 10, "every event applied")
    finally:
        worker.stop()
        thread.join(15)
    assert not thread.is_alive()
    return status(r, "default", "r-1")


def _scorer(r: redis.Redis, cfg: Config) -> tuple[Worker, list[int]]:
    """A scorer of the shop with its consumer groups made (so that a full Redis meets its apply
    script, not its start-up) and fast back-offs; and the list its apply calls add to."""
    worker = Worker(r, cfg, shops=["default"])
    worker._redis_backoff = Backoff(initial=0.01, cap=0.05)
    worker._ensure_group("default")
    writes: list[int] = []
    write = worker.write

    def counted(*a, **kw):
        writes.append(1)
        return write(*a, **kw)

    worker.write = counted  # type: ignore[method-assign]
    return worker, writes


def _said(caplog: pytest.LogCaptureFixture, logger: str) -> str:
    return " ".join(rec.getMessage() for rec in caplog.records if rec.name == logger)


def test_a_full_redis_mid_show_holds_the_feed_and_every_event_is_applied_once_it_has_room(own, caplog):
    url, cfg = own
    r = redis.Redis.from_url(url)
    caplog.set_level(logging.WARNING)
    frames = _show()
    calm = _show_run(r, dataclasses.replace(cfg, data_dir=cfg.data_dir / "calm"), frames, caplog, full=False)
    r.flushall()
    r.script_flush()
    caplog.clear()
    disturbed = _show_run(r, dataclasses.replace(cfg, data_dir=cfg.data_dir / "full"), frames, caplog, full=True)
    assert disturbed == calm
    assert (disturbed["events_applied"], disturbed["duplicates"], disturbed["lag"]) == (120, 0, 0)
    assert disturbed["room"]["orders"] == 4 and disturbed["room"]["unique_viewers"] == 12


def test_a_batch_that_meets_a_full_redis_writes_nothing_and_goes_in_whole_later(own):
    """Redis refuses a script's first write when it is full, and lets one that has begun writing
    finish: so a batch is applied whole or not at all, never half (a half-applied batch, tried
    again, would count part of it twice)."""
    url, cfg = own
    r = redis.Redis.from_url(url)
    frames = _show()
    _feed(cfg, frames)
    worker, writes = _scorer(r, cfg)
    _full(r)
    streams = set(keys.streams("default"))  # reading them moves entries to the scorer's pending list

    def data() -> dict:
        return {k: r.dump(k) for k in r.keys("*") if k.decode() not in streams}

    before = data()
    with pytest.raises(redis.RedisError) as e:
        worker.step()
    assert writes and is_retryable(e.value), "apply.lua met the full Redis"
    assert data() == before, "the refused batch wrote nothing"
    r.config_set("maxmemory", 0)
    worker.drain(30)
    st = status(r, "default", "r-1")
    assert (st["events_applied"], st["duplicates"], st["lag"]) == (120, 0, 0)


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_a_redis_that_would_evict_keys_when_full_is_refused_with_the_fix(own, policy):
    url, cfg = own
    r = redis.Redis.from_url(url)
    r.config_set("maxmemory-policy", policy)
    r.config_set("maxmemory", 512 * 2**20)
    with pytest.raises(RedisEvicts, match=f"maxmemory-policy {policy}.*noeviction"):
        db.connect(cfg)
    with pytest.raises(RedisEvicts, match="noeviction"):
        asyncio.run(db.connect_async(cfg))
    got = subprocess.run([sys.executable, "-m", "scoring", "status", "--shop", "default", "--redis", url], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 1 and got.stdout == ""
    assert got.stderr.startswith("error: Redis at") and "deletes keys when full" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1
    # no limit: it never evicts; a limit with noeviction: it refuses writes, and the product waits
    r.config_set("maxmemory", 0)
    db.connect(cfg).close()
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 512 * 2**20)
    db.connect(cfg).close()


def test_a_contact_is_noted_even_when_its_batch_fills_redis(own):
    """The batch that takes Redis over its limit is written whole; what the scorer notes of it after
    (who named which address, for a shop order's match) must not be lost to the next refusal."""
    url, cfg = own
    r = redis.Redis.from_url(url)
    _feed(cfg, [frame(ev(1, viewer="u-1", type="contact", email="ana@example.com"))])
    worker, _writes = _scorer(r, cfg)
    write = worker.write

    def fills(*a, **kw):
        got = write(*a, **kw)
        _full(r)  # this batch was the one too many
        return got

    worker.write = fills  # type: ignore[method-assign]
    try:
        worker.step()
    except redis.RedisError as e:
        assert is_retryable(e)
    worker.write = write  # type: ignore[method-assign]
    r.config_set("maxmemory", 0)
    worker.drain(10)
    owners = r.hgetall(keys.contact_owners("default"))
    assert owners == {keys.contact_owner_field("email", "ana@example.com"): b"u-1"}


def test_dead_letters_refused_part_way_by_a_full_redis_are_recorded_once(own):
    url, cfg = own
    r = redis.Redis.from_url(url)
    bad = [BadInput(f"bad {i}", b"x" * 4096) for i in range(20)]
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 90_000)  # room for a few of them

    async def main() -> None:
        ar = aredis.Redis.from_url(url)
        w = IngestWriter(ar, cfg)
        try:
            await w.write_dead(bad, "test")
        except redis.RedisError as e:
            assert is_retryable(e)
            r.config_set("maxmemory", 0)
            await w.write_dead(bad, "test")  # the consumer's retry
        await ar.aclose()

    asyncio.run(main())
    assert r.xlen(keys.dead_stream()) == 20 and r.hget(keys.dead_stats(), "dead_letters") == b"20"


def test_only_a_limit_with_an_evicting_policy_is_refused():
    from fanops.runtime.memory import Memory

    assert Memory(1, 10, "allkeys-lru").evicts and Memory(1, 10, "volatile-lru").evicts
    assert not Memory(1, 0, "allkeys-lru").evicts, "no limit: it never evicts"
    assert not Memory(1, 10, "noeviction").evicts
    assert not Memory(1, 10, "").evicts, "a server that names no policy is not judged"


def test_a_consumer_stopped_while_redis_is_full_keeps_its_events_until_stopped_again(own, caplog):
    """A stop (SIGTERM) waits for the held events to be written; a second one gives them up, says
    how many, and ends: a process that cannot be stopped at all is no better."""
    url, cfg = own
    r = redis.Redis.from_url(url)
    caplog.set_level(logging.WARNING, logger="realtime.consumer")
    _full(r)

    async def main() -> None:
        async with consumer_on(cfg, _show()[:2]) as c:
            task = next(t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Consumer.run")
            await await_for(lambda: "Redis is full" in caplog.text, 15, "the consumer to hold its events")
            c.stop()
            await asyncio.sleep(0.5)
            assert not task.done(), "a stop waits for the held events"
            assert "stop again to give them up" in caplog.text
            c.stop()
            await asyncio.wait_for(task, 5)
            assert "stopped twice: 24 events read from the feed were not written" in caplog.text
            assert c.counters.accepted == 0

    asyncio.run(main())
