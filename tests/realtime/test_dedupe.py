"""Dedupe by (room, id) through the real consumer: a room's seen ids in its dedupe hash
(``fanops/lua/dedupe.lua``), however big the room grows, and ids kept by an earlier version."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any, cast

import redis
import redis.asyncio as aredis

from fanops import keys
from fanops.config import Config
from fanops.read import seen_keys
from fanops.schema import Event, parse_frame
from realtime.writer import IngestWriter
from tests.feeds import ev, frame
from tests.pipeline import ingest_frames

SHOP = "dd"


def _frames(ids: list[int], room: str, per_frame: int = 250) -> list[str]:
    return [frame(*(ev(i, room=room, shop=SHOP, viewer=f"u-{i % 997}", ts=1_763_856_000_000 + i)
                    for i in ids[k:k + per_frame])) for k in range(0, len(ids), per_frame)]


def _counts(r: redis.Redis) -> tuple[int, int]:
    st = r.hgetall(keys.stats(SHOP))
    return int(st.get(b"accepted", 0)), int(st.get(b"duplicates", 0))


def test_every_repeat_is_dropped_however_big_the_room_grows(cfg: Config, r: redis.Redis) -> None:
    first = list(range(20_000))
    ingest_frames(cfg, _frames(first, "r-1"))
    assert _counts(r) == (20_000, 0)
    # the room's table grew from one bucket to hundreds: repeats must still be found after the splits
    assert len(seen_keys(r, SHOP, "r-1")) > 200

    again = first[:]
    random.Random(5).shuffle(again)
    more = list(range(20_000, 25_000))
    ingest_frames(cfg, _frames(again + more, "r-1", per_frame=333) + _frames(first[:3000], "r-2"))
    # every repeat in r-1 dropped, the new ids and the same ids in another room accepted
    assert _counts(r) == (20_000 + 5_000 + 3_000, 20_000)
    # and a repeat inside one frame is dropped too
    ingest_frames(cfg, [frame(ev(30_000, room="r-1", shop=SHOP), ev(30_000, room="r-1", shop=SHOP))])
    assert _counts(r) == (28_001, 20_001)
    assert all(r.ttl(k) > 0 for k in seen_keys(r, SHOP, "r-1"))


def test_ids_seen_by_an_earlier_version_still_count_as_seen(cfg: Config, r: redis.Redis) -> None:
    old = keys.seen_v1(SHOP, "r-old")
    r.sadd(old, *(f"e-{i}" for i in range(300)))
    r.expire(old, 3600)
    ingest_frames(cfg, _frames(list(range(400)), "r-old", per_frame=50))
    assert _counts(r) == (100, 300)
    assert not r.exists(old) and all(r.ttl(k) > 0 for k in seen_keys(r, SHOP, "r-old"))


def test_a_resend_within_the_ttl_of_the_rooms_last_event_is_a_duplicate(cfg: Config, r: redis.Redis) -> None:
    """The ids are remembered for dedupe_ttl_s after the room's last event, not after the first
    (a 2-second TTL here; the default is 7 days)."""
    cfg = dataclasses.replace(cfg, dedupe_ttl_s=2)
    ts = int(time.time() * 1000)

    async def main() -> list[tuple[int, int]]:
        ar = aredis.Redis.from_url(cfg.redis_url)
        w = IngestWriter(ar, cfg)
        out = [await w.write_events(_parsed(ev(1, room="r-1", shop=SHOP, ts=ts)))]
        # the TTL runs on the server's clock: these two sleeps are the scenario, not a wait for work
        await asyncio.sleep(1.5)
        out.append(await w.write_events(_parsed(ev(2, room="r-1", shop=SHOP, ts=ts + 1500))))  # the room is live
        await asyncio.sleep(1.0)  # 2.5 s after its first event, 1 s after its last
        out.append(await w.write_events(_parsed(ev(1, room="r-1", shop=SHOP, ts=ts))))  # e-1 resent
        await ar.aclose()
        return out

    assert asyncio.run(main()) == [(1, 0), (1, 0), (0, 1)]


def _parsed(*evs: dict[str, Any]) -> list[Event]:
    items = parse_frame(frame(*evs), int(time.time() * 1000))
    assert all(isinstance(x, Event) for x in items)
    return cast("list[Event]", items)


def test_an_archives_ids_filled_back_are_repeats_to_the_consumer_and_the_table_grows_as_it_would(
        cfg: Config, r: redis.Redis) -> None:
    """Opening an archived show again puts its event ids back into the room's dedupe table
    (``scoring.reopen.fill_dedupe``: the table grown to size first, then bucket by bucket). Ids the
    consumer accepted meanwhile stay; every filled id is a repeat to the consumer afterwards; the
    new ones are not; and the table keeps growing from there as the consumer's own writes grow it."""
    from scoring.reopen import DEDUPE_CHUNK, fill_dedupe

    ingest_frames(cfg, _frames(list(range(1_000)), "r-1"))  # accepted while the show was archived
    archived = [f"e-{i}" for i in range(500, 3 * DEDUPE_CHUNK + 777)]  # several calls; 500 of them known
    assert fill_dedupe(r, SHOP, "r-1", archived, 3600) == len(archived) - 500
    n_buckets = len(seen_keys(r, SHOP, "r-1"))
    assert len(archived) + 500 <= 40 * n_buckets <= 2 * (len(archived) + 500) + 40
    assert all(r.ttl(k) > 0 for k in seen_keys(r, SHOP, "r-1"))
    # filled again (a scorer that crashed half-way, or two opening it): nothing new, and no bigger
    assert fill_dedupe(r, SHOP, "r-1", archived, 3600) == 0
    assert len(seen_keys(r, SHOP, "r-1")) <= n_buckets + DEDUPE_CHUNK // 40 + 1

    top = 3 * DEDUPE_CHUNK + 777
    ingest_frames(cfg, _frames(list(range(top + 20_000)), "r-1"))
    assert _counts(r) == (1_000 + 20_000, top)  # every filled or earlier id a repeat, the rest new
    assert len(seen_keys(r, SHOP, "r-1")) > n_buckets  # and it grew on from the filled size
