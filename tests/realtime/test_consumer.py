"""The consumer against a real Redis and real WebSocket feed servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aredis

from fanops import keys, schema
from fanops.config import Config
from fanops.retry import Backoff
from fanops.schema import BadInput, Join, parse_frame, unpack_events
from realtime.consumer import Consumer
from tests.conftest import await_for, stream_entries
from tests.feeds import Feed, ev, frame, send_all
from tests.pipeline import run_consumer as serve_and_consume

FAST = dict(initial=0.01, cap=0.05)


def stream_events(r: redis.Redis, shop: str = "default") -> list:
    out = []
    for _s, _id, fields in stream_entries(r, shop):
        out.extend(unpack_events(fields[b"e"]))
    out.sort(key=lambda e: (e.ts, e.id))  # the partition streams are read one after the other
    return out


def dead(r: redis.Redis) -> list[dict[bytes, bytes]]:
    return [f for _id, f in r.xrange(keys.dead_stream())]


def dead_count(r: redis.Redis) -> int:
    return int(r.hget(keys.dead_stats(), "dead_letters") or 0)


@contextlib.asynccontextmanager
async def consumer_on(cfg: Config, frames: list[str], writer: type | None = None) -> AsyncIterator[Consumer]:
    """A consumer running on a feed that sends ``frames`` (with ``writer``, an IngestWriter class, in
    place of its own), with fast back-offs; stopped, and everything closed, on leaving."""
    feed = await Feed(lambda ws, n: send_all(ws, frames)).start()
    ar = aredis.Redis.from_url(cfg.redis_url)
    c = Consumer(feed.url, ar, cfg, backoff=Backoff(**FAST))
    if writer is not None:
        c.writer = writer(ar, cfg)
    c.redis_backoff = Backoff(**FAST)
    task = asyncio.create_task(c.run())
    try:
        yield c
    finally:
        c.stop()
        await asyncio.wait_for(task, 10)
        await ar.aclose()
        await feed.stop()


async def run_consumer(cfg: Config, url: str, until, timeout: float = 15.0) -> Consumer:
    ar = aredis.Redis.from_url(cfg.redis_url)
    c = Consumer(url, ar, cfg, backoff=Backoff(**FAST))
    task = asyncio.create_task(c.run())
    try:
        await await_for(lambda: until(c) or task.done(), timeout, "the consumer to get there")
        c.stop()
        await asyncio.wait_for(task, 10)
    finally:
        if not task.done():
            task.cancel()
        await ar.aclose()
    return c


NOW = int(time.time() * 1000)

# one case per bad-input rule of events.md: (label, raw event text, reason fragment)
BAD_CASES = [
    ("bad JSON", '{"id": "x", "room": ', "JSON"),
    ("wrong type", json.dumps(ev("w", ts="soon")), "ts"),
    ("missing field", json.dumps({k: v for k, v in ev("m").items() if k != "room"}), "room"),
    ("missing viewer id", json.dumps(ev("mv") | {"viewer": {"name": "x"}}), "id"),
    ("unknown type", json.dumps(ev("u", type="teleport")), "type"),
    ("unknown version", json.dumps(ev("v2") | {"v": 2}), "v"),
    ("negative amount", json.dumps(ev("n", type="order", order_id="o", amount=-1, currency="USD")), "amount"),
    ("negative gift value", json.dumps(ev("g", type="gift", gift="rose", value=-0.5)), "value"),
    ("ts in the future", json.dumps(ev("f", ts=NOW + 25 * 3600 * 1000)), "ahead"),
    ("negative ts", json.dumps(ev("nt", ts=-5)), "ts"),
    ("id too long", json.dumps(ev("x" * 129)), "id"),
    ("empty room", json.dumps(ev("er", room="")), "room"),
    ("name too long", json.dumps(ev("nl") | {"viewer": {"id": "u", "name": "n" * 257}}), "name"),
    ("comment too long", json.dumps(ev("cl", type="comment", text="t" * 2001)), "text"),
    ("like count 0", json.dumps(ev("l0", type="like", count=0)), "count"),
    ("like count over 10000", json.dumps(ev("lb", type="like", count=10001)), "count"),
    ("bad country", json.dumps(ev("bc") | {"viewer": {"id": "u", "country": "usa"}}), "country"),
    ("consent without dm", json.dumps(ev("c", type="consent")), "dm"),
    ("dm not a bool", json.dumps(ev("c2", type="consent", dm="yes")), "dm"),
    ("bool as ts", json.dumps(ev("bt", ts=True)), "ts"),
    ("order without currency", json.dumps(ev("oc", type="order", order_id="o", amount=3)), "currency"),
    ("not an object", "42", "object"),
    # over the product's ceilings (fanops.schema.MAX_AMOUNT, MAX_COUNT): two such orders summed to
    # infinity and failed the scorer's script half-way through its batch, on every retry
    ("amount over 10^15", json.dumps(ev("oa", type="order", order_id="o", amount=1e308, currency="USD")),
     "amount"),
    ("gift value over 10^15", json.dumps(ev("gv", type="gift", gift="rose", value=2e15)), "value"),
    ("gift count over 10^9", json.dumps(ev("gc", type="gift", gift="rose", value=1, count=10**19)), "count"),
    ("cart qty over 10^9", json.dumps(ev("cq", type="cart_add", sku="s", qty=10**9 + 1)), "qty"),
    # a trailing newline is not part of a code ("$" of a pattern let it through)
    ("currency with a newline", json.dumps(ev("cn", type="order", order_id="o", amount=1, currency="USD\n")),
     "currency"),
    ("country with a newline", json.dumps(ev("kn") | {"viewer": {"id": "u", "country": "US\n"}}), "country"),
    ("phone with a newline", json.dumps(ev("pn", type="contact", phone="+4930123456\n")), "phone"),
    # events.md: lang is a BCP 47 tag, tz an IANA time zone
    ("lang not a BCP 47 tag", json.dumps(ev("bl") | {"viewer": {"id": "u", "lang": "not a tag!!"}}), "BCP 47"),
    ("lang with an underscore", json.dumps(ev("bu") | {"viewer": {"id": "u", "lang": "en_US"}}), "viewer.lang"),
    ("tz not an IANA zone", json.dumps(ev("bz") | {"viewer": {"id": "u", "tz": "Mars/Olympus_Mons"}}), "IANA"),
]


@pytest.mark.parametrize("label,raw,reason", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_each_bad_input_goes_to_dead_letters_and_spares_the_good(cfg, r, label, raw, reason):
    good1, good2 = ev(1, viewer="a"), ev(2, viewer="b", type="comment", text="hi")
    if raw.startswith("{") and not label == "bad JSON":
        frames = [f"[{json.dumps(good1)}, {raw}, {json.dumps(good2)}]"]  # bad one inside a batch
    else:
        frames = [json.dumps(good1), raw, json.dumps(good2)]

    async def script(ws, n):
        await send_all(ws, frames)

    async def main():
        feed = await Feed(script).start()
        try:
            await run_consumer(cfg, feed.url, lambda c: c.counters.frames >= len(frames) and
                               len(stream_events(r)) == 2 and dead_count(r) == 1)
        finally:
            await feed.stop()

    asyncio.run(main())
    assert [e.id for e in stream_events(r)] == ["e-1", "e-2"]
    (d,) = dead(r)
    assert reason.lower() in d[b"reason"].decode().lower()
    assert d[b"raw"].decode() in raw or raw.startswith(d[b"raw"].decode()[:50])
    assert dead_count(r) == 1


def test_raw_text_of_a_dead_letter_is_cut_at_4_kib(cfg, r):
    raw = json.dumps(ev("big", type="comment", text="x" * 2500 + "é" * 1000))

    async def main():
        feed = await Feed(lambda ws, n: send_all(ws, [raw])).start()
        try:
            await run_consumer(cfg, feed.url, lambda c: dead_count(r) == 1)
        finally:
            await feed.stop()

    asyncio.run(main())
    (d,) = dead(r)
    assert len(d[b"raw"]) == 4096
    assert raw.encode().startswith(d[b"raw"])


def test_a_binary_frame_is_bad_input_and_not_fatal(cfg, r):
    async def main():
        feed = await Feed(lambda ws, n: send_all(ws, [b"\x00\x01binary", frame(ev(1))])).start()
        try:
            await run_consumer(cfg, feed.url, lambda c: dead_count(r) == 1 and len(stream_events(r)) == 1)
        finally:
            await feed.stop()

    asyncio.run(main())
    assert b"binary" in dead(r)[0][b"reason"]


def test_a_repeated_event_is_written_once(cfg, r):
    e1, e2 = ev(1), ev(2, viewer="u-2")
    frames = [frame(e1), frame(e1, e2), frame(e2), frame(e1)]

    async def main():
        feed = await Feed(lambda ws, n: send_all(ws, frames)).start()
        try:
            await run_consumer(cfg, feed.url, lambda c: c.counters.frames == 4 and c.counters.duplicates == 3)
        finally:
            await feed.stop()

    asyncio.run(main())
    assert sorted(e.id for e in stream_events(r)) == ["e-1", "e-2"]
    st = r.hgetall(keys.stats("default"))
    assert int(st[b"accepted"]) == 2 and int(st[b"duplicates"]) == 3


def test_same_id_in_two_rooms_is_two_events(cfg, r):
    frames = [frame(ev(1, room="r-1"), ev(1, room="r-2"))]

    async def main():
        feed = await Feed(lambda ws, n: send_all(ws, frames)).start()
        try:
            await run_consumer(cfg, feed.url, lambda c: len(stream_events(r)) == 2)
        finally:
            await feed.stop()

    asyncio.run(main())


def test_events_go_to_their_shops_stream(cfg, r):
    frames = [frame(ev(1), ev(2, shop="other-shop"), ev(3, shop="we{ird}:shop"))]

    async def main():
        feed = await Feed(lambda ws, n: send_all(ws, frames)).start()
        try:
            await run_consumer(cfg, feed.url, lambda c: c.counters.accepted == 3)
        finally:
            await feed.stop()

    asyncio.run(main())
    assert [e.id for e in stream_events(r)] == ["e-1"]
    assert [e.id for e in stream_events(r, "other-shop")] == ["e-2"]
    assert [e.id for e in stream_events(r, "we{ird}:shop")] == ["e-3"]
    assert r.smembers(keys.shops()) == {b"default", b"other-shop", b"we{ird}:shop"}


def test_feed_dropped_and_restarted_mid_stream_loses_and_duplicates_nothing(cfg, r):
    events = [ev(i, viewer=f"u-{i % 7}", ts=1_763_856_000_000 + i) for i in range(300)]
    state: dict[str, int | bool] = {"sent_upto": 0}

    async def script(ws, n):
        if n == 1:
            # first connection: send 120 events, then the server goes away abruptly
            for e in events[:120]:
                await ws.send(frame(e))
            state["sent_upto"] = 120
            await ws.close(code=1011, reason="restart")
        elif not state.get("restarted"):
            # the old process, going down: a reconnect that reaches it before it stops gets nothing
            await ws.close(code=1012, reason="going down")
        else:
            # after the restart the feed resends from a little before where it stopped
            await send_all(ws, [frame(*events[i:i + 10]) for i in range(100, 300, 10)])

    async def main():
        feed = await Feed(script).start()
        port = feed.port
        # the feed process restarts: stop the listener after the first drop, start again on the same port
        c_task = None
        try:
            ar = aredis.Redis.from_url(cfg.redis_url)
            backoff = Backoff(**FAST)
            c = Consumer(feed.url, ar, cfg, backoff=backoff)
            c_task = asyncio.create_task(c.run())
            await await_for(lambda: c.counters.drops >= 1, 10, "the drop")
            await feed.stop()
            # the server is down for a while: the consumer retries (a failed connect after the last
            # drop takes the back-off past its first step; a connect resets it)
            await await_for(lambda: backoff.attempt >= 2, 10, "a retry while the server is down")
            state["restarted"] = True
            feed2 = await Feed(script, port=port).start()
            feed2.connections = 1
            await await_for(lambda: len(stream_events(r)) == 300, 15, "all 300 events")
            c.stop()
            await asyncio.wait_for(c_task, 10)
            await feed2.stop()
            await ar.aclose()
            return c
        finally:
            if c_task and not c_task.done():
                c_task.cancel()

    c = asyncio.run(main())
    ids = [e.id for e in stream_events(r)]
    assert len(ids) == len(set(ids)) == 300
    assert c.counters.connects >= 2
    assert int(r.hget(keys.stats("default"), "duplicates")) == 20


def test_a_frame_over_the_size_limit_is_bad_input_and_the_frames_after_it_are_read(cfg, r):
    """events.md: a frame over the size limit is bad input, never fatal. The connection goes on, so
    the frames the feed sent after it are not lost with it (they were, unless the feed resent them)."""
    small = Config.from_env({}, redis_url=cfg.redis_url, max_frame_bytes=10_000, flush_ms=5)
    big = frame(ev("big", type="comment", text="é" * 1999), *[ev(f"b{i}") for i in range(100)])
    assert 10_000 < len(big.encode()) < 16 * 10_000

    c = serve_and_consume(small, lambda ws, n: send_all(ws, [frame(ev(1)), big, frame(ev(2)), frame(ev(3))]),
                          lambda c: len(stream_events(r)) == 3 and dead_count(r) == 1, 15)
    assert (c.counters.connects, c.counters.drops, c.counters.bad) == (1, 0, 1)
    assert [e.id for e in stream_events(r)] == ["e-1", "e-2", "e-3"]
    [d] = dead(r)
    assert b"size limit of 10000 bytes" in d[b"reason"] and d[b"raw"] == big.encode()[:4096]


def test_a_frame_over_sixteen_times_the_limit_is_bad_input_and_the_consumer_reconnects(cfg, r):
    small = Config.from_env({}, redis_url=cfg.redis_url, max_frame_bytes=1_000, flush_ms=5)
    huge = frame(ev("big", type="comment", text="x" * 1999), *[ev(f"b{i}") for i in range(200)])
    assert len(huge) > 16 * 1_000

    async def script(ws, n):
        if n == 1:
            await send_all(ws, [frame(ev(1)), huge])
        else:
            await send_all(ws, [frame(ev(2))])

    c = serve_and_consume(small, script, lambda c: len(stream_events(r)) == 2 and dead_count(r) == 1, 15)
    assert c.counters.connects == 2
    assert b"size limit" in dead(r)[0][b"reason"]


def test_stop_flushes_what_the_consumer_holds(cfg, r):
    slow = Config.from_env({}, redis_url=cfg.redis_url, flush_ms=60_000, flush_events=10_000)

    async def main():
        feed = await Feed(lambda ws, n: send_all(ws, [frame(ev(i)) for i in range(50)])).start()
        try:
            return await run_consumer(slow, feed.url, lambda c: c.counters.frames == 50)
        finally:
            await feed.stop()

    asyncio.run(main())
    assert len(stream_events(r)) == 50


def test_unreachable_feed_is_retried_with_backoff(cfg, r):
    from fanops.runtime.server import free_port

    port = free_port()

    async def main():
        ar = aredis.Redis.from_url(cfg.redis_url)
        backoff = Backoff(**FAST)
        c = Consumer(f"ws://127.0.0.1:{port}", ar, cfg, backoff=backoff)
        task = asyncio.create_task(c.run())
        await await_for(lambda: backoff.attempt >= 3, 10, "three failed connects")
        assert c.counters.connects == 0 and not task.done()
        feed = await Feed(lambda ws, n: send_all(ws, [frame(ev(1))]), port=port).start()
        await await_for(lambda: len(stream_events(r)) == 1, 10, "the event after the feed came up")
        c.stop()
        await asyncio.wait_for(task, 10)
        await feed.stop()
        await ar.aclose()

    asyncio.run(main())



def test_backoff_is_capped_and_jittered():
    import random

    b = Backoff(initial=1, cap=8, rng=random.Random(3))
    delays = [b.next() for _ in range(8)]
    assert all(0.5 <= d <= 1 for d in delays[:1])
    assert all(d <= 8 for d in delays) and max(delays) >= 4
    assert len(set(delays)) == len(delays)
    b.reset()
    assert b.next() <= 1


def _busy(r: redis.Redis) -> bool:
    try:
        r.ping()
    except redis.ResponseError as e:
        return str(e).startswith("BUSY")
    return False


def test_redis_busy_with_another_script_holds_the_events_and_writes_them_after(cfg, r):
    """Another client's long script makes Redis answer BUSY: the consumer keeps the events, backs
    off and writes them once the script is over (it used to stop on that reply)."""
    import threading

    old = r.config_get("busy-reply-threshold")["busy-reply-threshold"]
    r.config_set("busy-reply-threshold", 50)
    blocker = redis.Redis.from_url(cfg.redis_url, socket_timeout=30)
    spin = "local t = redis.call('TIME'); local s = t[1] * 1e6 + t[2]; " \
           "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > 1500000; return 1"
    th = threading.Thread(target=lambda: blocker.eval(spin, 0))
    frames = [frame(ev(1), ev(2, viewer="u-2"))]

    async def main():
        feed = await Feed(lambda ws, n: send_all(ws, frames)).start()
        try:
            th.start()
            # the script runs past the threshold: every other command gets BUSY
            await await_for(lambda: _busy(r), 10, "Redis to answer BUSY")
            await run_consumer(cfg, feed.url, lambda c: c.counters.accepted == 2, timeout=20)
        finally:
            await feed.stop()

    try:
        asyncio.run(main())
    finally:
        th.join(10)
        blocker.close()
        r.config_set("busy-reply-threshold", old)
    assert sorted(e.id for e in stream_events(r)) == ["e-1", "e-2"]


def test_a_flush_that_fails_after_one_shop_is_written_writes_only_the_rest_and_counts_no_repeat(cfg, r):
    """A frame of two shops; Redis drops the connection after the first shop's events are in. The
    retry writes the second shop's only: every event once, and none counted as a repeat."""
    from fanops import keys as fkeys
    from fanops.ingest import IngestWriter

    class DropsOnce(IngestWriter):
        """The writer, with its ingest script's call for shop "b" failing once as a dropped connection."""
        failed = False

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            script = self._ingest

            async def ingest(keys, args):
                if keys[0] == fkeys.stats("b") and not DropsOnce.failed:
                    DropsOnce.failed = True
                    raise redis.ConnectionError("Connection closed by server.")
                return await script(keys=keys, args=args)
            self._ingest = ingest

    frames = [frame(ev(1, shop="a"), ev(2, shop="b", viewer="u-2"), ev(3, shop="a", viewer="u-3"))]

    async def main():
        async with consumer_on(cfg, frames, DropsOnce) as c:
            await await_for(lambda: c.counters.accepted == 3, 15, "every event written")
        return c

    c = asyncio.run(main())
    assert DropsOnce.failed and (c.counters.accepted, c.counters.duplicates) == (3, 0)
    assert [e.id for e in stream_events(r, "a")] == ["e-1", "e-3"] and [e.id for e in stream_events(r, "b")] == ["e-2"]


def test_a_full_backlog_holds_the_feed_until_the_scorer_catches_up_and_loses_nothing(cfg, r, caplog):
    """FANOPS_STREAM_MAXLEN caps what a shop's stream holds not yet applied. At the cap the
    consumer holds its events (and reads no more of the feed) instead of the stream trimming
    entries no scorer has applied; once a scorer applies them, every event is in, once."""
    import dataclasses
    import logging

    from fanops.read import status
    from scoring.worker import Worker

    small = dataclasses.replace(cfg, stream_maxlen=2, flush_events=1)
    frames = [frame(ev(i, viewer="u-1", type="like", count=1)) for i in range(1, 7)]
    caplog.set_level(logging.WARNING, logger="realtime.consumer")

    async def main():
        async with consumer_on(small, frames) as c:
            await await_for(lambda: "BACKLOG" in caplog.text, 15, "the consumer to meet the full backlog")
            assert c.counters.accepted == 2 and len(stream_events(r)) == 2  # held, nothing trimmed away
            worker = Worker(r, small)
            deadline = time.monotonic() + 30
            while c.counters.accepted < 6 and time.monotonic() < deadline:
                # the scorer applies (and trims) what is there; the consumer goes on
                await asyncio.to_thread(worker.drain, 10)
                await asyncio.sleep(0.02)
            assert c.counters.accepted == 6, "every event written"
            await asyncio.to_thread(worker.drain, 10)
        return c

    c = asyncio.run(main())
    st = status(r, "default")
    assert (c.counters.accepted, c.counters.duplicates) == (6, 0)
    assert (st["events_applied"], st["duplicates"], st["lag"]) == (6, 0, 0)


@pytest.mark.parametrize("lang", ["en", "es-MX", "ar", "zh-Hant-TW", "sr-Latn-RS", "de-CH-1996", "EN-us", "x-private",
                                  "i-klingon", "en-US-u-ca-gregory"])
@pytest.mark.parametrize("tz", ["America/New_York", "UTC", "Asia/Riyadh", "US/Eastern", "Etc/GMT+5"])
def test_well_formed_language_tags_and_iana_zones_are_taken(lang, tz):
    (got,) = parse_frame(json.dumps(ev("ok") | {"viewer": {"id": "u", "lang": lang, "tz": tz}}), NOW)
    assert type(got) is Join and (got.viewer.lang, got.viewer.tz) == (lang, tz)


def test_a_language_tag_over_64_characters_is_refused_and_not_remembered():
    """A hostile feed's long tags: refused without a look at the pattern, and not kept in the cache
    of tags seen (megabytes each, they would stay for the consumer's life)."""
    before = len(schema._TAGS)
    for i in range(50):
        tag = "en-" + "a" * (100_000 + i)
        (got,) = parse_frame(json.dumps(ev(f"long{i}") | {"viewer": {"id": "u", "lang": tag}}), NOW)
        assert isinstance(got, BadInput) and "BCP 47" in got.reason
    assert len(schema._TAGS) == before
    assert not schema.is_time_zone("localtime") and not schema.is_time_zone("Factory")  # the host's, not IANA's
