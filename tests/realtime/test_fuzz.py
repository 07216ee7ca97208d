"""Bad input at volume (issue 14): random and mutated frames through the decoder and a real consumer.

The frames come from ``bench.fuzz.Fuzz`` (valid simulator events, alone and in batches, broken
in each way ``spec/events.md`` names, mutated byte by byte, garbage, and the frames that end a
connection); ``python -m bench.fuzz`` sends a million of them to a consumer process.  Here a
CI-sized run goes through ``fanops.schema.parse_frame`` and through ``realtime.consumer``
reading a real WebSocket server into the test's Redis.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import types

import pytest
import redis
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import Fuzz, FuzzFeed, raw_key
from fanops import keys
from fanops.retry import Backoff
from fanops.schema import RAW_LIMIT, BadInput, parse_frame, unpack_events
from realtime import writer
from realtime.consumer import Consumer
from tests.conftest import SAMPLES, await_for
from tests.feeds import ev, frame
from tests.pipeline import run_consumer

NOW = int(time.time() * 1000)


def good(i: int) -> str:
    return json.dumps(ev(i, viewer=f"u-{i}"))


# -- the decoder ---------------------------------------------------------------
DEEP = 5000


@pytest.mark.parametrize("label,frame,reasons", [
    ("a frame of nested arrays", "[" * DEEP + "]" * DEEP, ["Expected `object`, got `array`"]),
    ("a frame of nested objects", '{"a":' * DEEP + "1" + "}" * DEEP, ["nested too deeply"]),
    ("nested junk in an ignored field", good(1)[:-1] + ', "junk": ' + "[" * DEEP + "]" * DEEP + "}",
     ["nested too deeply"]),
    ("nested junk beside good events", f"[{good(1)}, " + '{"a":' * DEEP + "1" + "}" * DEEP + f", {good(3)}]",
     [None, "nested too deeply", None]),
])
def test_deep_nesting_is_bad_input_not_a_crash(label, frame, reasons):
    """It used to raise RecursionError out of parse_frame, and so out of the consumer: one frame of
    ~1,000 brackets stopped it."""
    items = parse_frame(frame, NOW)
    assert len(items) == len(reasons)
    for i, (it, reason) in enumerate(zip(items, reasons, strict=True)):
        if reason is None:
            assert not isinstance(it, BadInput) and it.id == f"e-{i + 1}"
        else:
            assert isinstance(it, BadInput) and reason in it.reason


BROKEN = [  # (label, the broken element's text, reason fragment)
    ("NaN", good(2).replace('"ts": 1763856000000', '"ts": NaN'), "bad JSON"),
    ("Infinity", json.dumps(ev(2, type="order", order_id="o", currency="USD", amount=0)).replace(
        '"amount": 0', '"amount": Infinity'), "bad JSON"),
    ("-Infinity", json.dumps(ev(2, type="gift", gift="rose", value=0)).replace('"value": 0', '"value": -Infinity'),
     "bad JSON"),
    ("a bare word", "undefined", "bad JSON"),
    ("a key without quotes", good(2).replace('"room"', "room"), "bad JSON"),
    ("a stray comma", "", "empty element"),
    ("a lone surrogate escape", good(2).replace('"u-2"', '"\\ud800"'), "bad JSON"),
]


@pytest.mark.parametrize("label,broken,reason", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_element_does_not_spoil_its_batch(label, broken, reason):
    """An array that is not JSON as a whole used to be one dead letter: the good events beside the
    broken one were lost (a Python adapter's json.dumps writes NaN for a float('nan') amount)."""
    items = parse_frame(f"[{good(1)}, {broken}, {good(3)}]", NOW)
    assert len(items) == 3
    assert [it.id for it in items if not isinstance(it, BadInput)] == ["e-1", "e-3"]
    assert isinstance(items[1], BadInput) and reason in items[1].reason
    assert items[1].raw == broken.encode()


def test_an_array_cut_short_keeps_the_events_before_the_cut():
    whole = f"[{good(1)}, {good(2)}, {good(3)}]"
    items = parse_frame(whole[: whole.index('"e-3"') + 3], NOW)
    assert [it.id for it in items if not isinstance(it, BadInput)] == ["e-1", "e-2"]
    assert isinstance(items[2], BadInput) and "truncated" in items[2].reason


def test_bytes_that_are_not_utf8_are_bad_input():
    items = parse_frame(b"[" + good(1).encode() + b", " + good(2).encode().replace(b"u-2", b"\xff\xfe") + b"]", NOW)
    assert [type(it).__name__ for it in items] == ["Join", "BadInput"]
    assert "not valid UTF-8" in items[1].reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_any_frame_decodes_to_events_and_reasons(frame):
    for it in parse_frame(frame, NOW):
        if isinstance(it, BadInput):
            assert it.reason and len(it.raw) <= RAW_LIMIT
        else:
            assert it.id and it.room and it.viewer.id


JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(JSON_JUNK, st.booleans())
def test_junk_between_good_events_is_one_bad_event(junk, ascii_only):
    """Any JSON value, NaN and Infinity included (what json.dumps writes), nested, with any text."""
    text = json.dumps(junk, ensure_ascii=ascii_only)
    items = parse_frame(f"[{good(1)}, {text}, {good(3)}]", NOW)
    assert len(items) == 3
    assert [it.id for it in items if not isinstance(it, BadInput)] == ["e-1", "e-3"]
    assert items[1].reason


def test_fuzzed_frames_are_counted_and_each_bad_event_says_what_was_wrong():
    """Every frame as the consumer reads it: the events built valid are accepted, each built bad is
    refused with the rule it broke named in the reason (the field's path, 'ahead', 'bad JSON')."""
    fz = Fuzz(11, NOW, 1 << 20, wire=0.0, samples=_samples())
    checked = 0
    for fr in fz.frames(4000):
        items = parse_frame(str(fr.data), NOW)
        assert len(items) == fr.units, fr.data[:300]
        ok = {it.id for it in items if not isinstance(it, BadInput)}
        assert set(fr.good) <= ok, fr.data[:300]
        for it in items:
            if isinstance(it, BadInput) and (frag := fr.bad.get(raw_key(it.raw))) is not None:
                assert frag in it.reason, (frag, it.reason, it.raw[:200])
                checked += 1
    assert checked > 4000


def _samples() -> list[str]:
    return (SAMPLES / "weeks-small.jsonl").read_text(encoding="utf-8").splitlines()


# -- a real consumer -----------------------------------------------------------
FRAMES = 12_000
PAUSES = (4_000, 8_000)
DEAD_CAP = 1_000


async def _counted(ar: aredis.Redis) -> int:
    """Events accepted, duplicates and dead letters, as Redis counts them (every shop)."""
    shops = [s.decode() for s in await ar.smembers(keys.shops())]
    p = ar.pipeline(transaction=False)
    for s in shops:
        p.hmget(keys.stats(s), "accepted", "duplicates")
    p.hget(keys.dead_stats(), "dead_letters")
    res = await p.execute()
    return sum(int(a or 0) + int(d or 0) for a, d in res[:-1]) + int(res[-1] or 0)


def _counts(r: redis.Redis) -> tuple[int, int, int]:
    """(accepted, duplicates, dead letters), every shop."""
    stats = [r.hmget(keys.stats(s.decode()), "accepted", "duplicates") for s in r.smembers(keys.shops())]
    return (sum(int(a or 0) for a, _d in stats), sum(int(d or 0) for _a, d in stats),
            int(r.hget(keys.dead_stats(), "dead_letters") or 0))


FOREIGN = ("redis", "websockets", "asyncio", "logging", "random", "concurrent")


def _owned_bytes(root: object) -> int:
    """The bytes of every object the consumer holds (its writer, counters, held events, remembered
    rooms...), found by walking references from it: not the clients and connections it uses (those
    libraries' objects, modules, classes and functions end the walk)."""
    seen: set[int] = set()
    todo = [root]
    total = 0
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, types.ModuleType, types.FunctionType, types.MethodType,
                                           types.BuiltinFunctionType)):
            continue
        if type(o).__module__.split(".")[0] in FOREIGN:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        todo.extend(gc.get_referents(o))
    return total


def test_fuzzed_feed_through_a_real_consumer_loses_nothing_and_stays_bounded(cfg, r):
    """12,000 fuzzed frames (~60,000 events, ~27,000 built valid; 7 over the size limit, a dead letter
    each; 13 not UTF-8, which end the connection) from a
    real WebSocket server: every event is accepted, a duplicate or a dead letter, exactly; each built
    valid is in its stream once, as sent; the consumer never stops; the dead-letter stream keeps its
    cap while the counter counts all; what the consumer holds does not grow."""
    frames = list(Fuzz(5, NOW, cfg.max_frame_bytes, wire=0.002, samples=_samples()).frames(FRAMES))
    memory: list[int] = []

    async def main() -> tuple[Consumer, FuzzFeed]:
        ar = aredis.Redis.from_url(cfg.redis_url)
        poll = aredis.Redis.from_url(cfg.redis_url)

        async def settled(units: int) -> bool:
            return await _counted(poll) == units

        feed = FuzzFeed(iter(frames), settled, pause_at=PAUSES)
        url = await feed.start()
        c = Consumer(url, ar, cfg, backoff=Backoff(initial=0.001, cap=0.005))
        c.writer.dead_maxlen = DEAD_CAP
        task = asyncio.create_task(c.run())
        try:
            for _ in PAUSES:
                await await_for(lambda: feed.paused.is_set() or task.done(), 120, "a pause of the feed")
                assert not task.done(), "the consumer stopped"
                memory.append(_owned_bytes(c))
                feed.paused.clear()
                feed.resume.set()
            await await_for(lambda: feed.done.is_set() or task.done(), 120, "the end of the feed")
            await await_for(lambda: settled(feed.units), 30, "every event written")
            assert not task.done(), "the consumer stopped"
            known = len(c.writer._known_rooms)
            c.stop()
            await asyncio.wait_for(task, 10)  # and it stops cleanly: no exception inside
        finally:
            if not task.done():
                task.cancel()
            await feed.stop()
            await ar.aclose()
            await poll.aclose()
        assert known <= writer.KNOWN_CAP
        return c, feed

    c, feed = asyncio.run(main())
    _check_counts(r, c, feed)
    _check_streams(r, feed)
    _check_dead_letters(r, feed)
    # what the consumer holds after 8,000 frames is what it held after 4,000: it used to keep every
    # room it had met (~150 B each; this feed names a new room in a quarter of its events)
    assert abs(memory[1] - memory[0]) < 16 * 1024, memory


def test_a_text_frame_that_is_not_utf8_is_bad_input_and_the_consumer_reconnects(cfg, r):
    """websockets ends the connection on it (close code 1007); the frame used to vanish without a
    dead letter or a count, as a plain drop."""
    async def script(ws, n):
        if n == 1:
            await ws.send(frame(ev(1)))
            await ws.send(b'{"id": "\xff\xfe"}', text=True)
        else:
            await ws.send(frame(ev(2)))

    c = run_consumer(cfg, script, lambda c: c.counters.accepted == 2 and r.hget(keys.dead_stats(), "dead_letters"),
                     15, "both events and the dead letter")
    assert c.counters.connects == 2 and c.counters.bad == 1
    ((_id, d),) = r.xrange(keys.dead_stream())
    assert b"not valid UTF-8" in d[b"reason"]
    assert int(r.hget(keys.dead_stats(), "dead_letters")) == 1


def _check_counts(r: redis.Redis, c: Consumer, feed: FuzzFeed) -> None:
    acc, dup, dead = _counts(r)
    assert acc + dup + dead == feed.units
    assert (c.counters.accepted, c.counters.duplicates, c.counters.bad) == (acc, dup, dead)
    assert c.counters.events == feed.units and c.counters.frames == feed.sent == FRAMES
    # one connection, then one more after each frame that ended one (text that is not UTF-8)
    assert c.counters.connects == 1 + feed.ended > 1


def _check_streams(r: redis.Redis, feed: FuzzFeed) -> None:
    """Each event built valid is in its shop's stream once, as it was sent; none built bad is."""
    ids: dict[str, int] = {}
    names: dict[str, str | None] = {}
    for shop in (s.decode() for s in r.smembers(keys.shops())):
        for s in keys.streams(shop):
            for _id, f in r.xrange(s):
                evs = unpack_events(f[b"e"])
                assert int(f[b"n"]) == len(evs)
                for e in evs:
                    ids[e.id] = ids.get(e.id, 0) + 1
                    if e.id in feed.names:
                        names[e.id] = e.viewer.name if isinstance(e.viewer.name, str) else None
    assert all(ids.get(i) == 1 for i in feed.good), [i for i in feed.good if ids.get(i) != 1][:10]
    assert not [i for i in ids if i.startswith("B")]
    assert names == feed.names


def _check_dead_letters(r: redis.Redis, feed: FuzzFeed) -> None:
    """The stream keeps the last ones (capped), the counter every one; each says what was wrong."""
    node = int(r.config_get("stream-node-max-entries")["stream-node-max-entries"])
    dead = int(r.hget(keys.dead_stats(), "dead_letters"))
    assert dead > 10 * DEAD_CAP
    assert DEAD_CAP <= r.xlen(keys.dead_stream()) <= DEAD_CAP + node
    matched = 0
    for _id, f in r.xrange(keys.dead_stream()):
        reason = f[b"reason"].decode()
        assert reason and len(f[b"raw"]) <= RAW_LIMIT
        frag = feed.bad.get(raw_key(f[b"raw"]))
        if frag is not None:
            assert frag in reason, (frag, reason)
            matched += 1
    assert matched > DEAD_CAP // 4
