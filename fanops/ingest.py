"""Writes of the ingest side: accepted events to the shop streams, bad ones to the dead letters.

Every source of events writes through this one writer (the WebSocket consumer, the customer
history import of ``python -m scoring import``, and the sources to come): the same dedupe and
dead-letter path for all. It lives in the shared package so that a side other than ``realtime``
can use it without importing ``realtime`` (``realtime.writer`` re-exports it).

One script call per shop per flush (``lua/ingest.lua``): dedupe by
``(room, id)`` and append the new events as one stream entry per partition of
the viewers (``fanops.keys.part_of``), atomically, so a crash can never mark an
event seen without writing it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
import time
from collections import OrderedDict, defaultdict
from typing import Any, cast

import msgspec
import redis.asyncio as aredis
import redis.exceptions

from fanops import keys
from fanops.config import Config
from fanops.schema import BadInput, Event
from fanops.scripts import script_source

log = logging.getLogger(__name__)
_encoder = msgspec.msgpack.Encoder()
# an event in the script's body: stream index, room index, payload length (then its id's record
# and the payload); one argument for the whole batch, not four an event (redis-py packs each
# argument in Python: at 500 events a flush that was a third of the consumer's time)
_HEAD = struct.Struct(">BII")

DEAD_MAXLEN = 100_000
DEAD_MINUTE_TTL_S = 3600
# rooms and shops the writer remembers having set up; past this many it forgets the oldest
# (a forgotten one is only set up again: both steps are idempotent), so that a feed naming
# ever new rooms or shops cannot grow the consumer's memory without end
KNOWN_CAP = 1024


def dedupe_record(event_id: str) -> bytes:
    """What a room's dedupe table keeps of an event id: the first 10 bytes of its SHA-1
    (``lua/dedupe.lua`` makes the same from an id with ``redis.sha1hex``)."""
    return hashlib.sha1(event_id.encode("utf-8", "surrogatepass")).digest()[:10]


class IngestWriter:
    """Async writer bound to one client; registers its scripts once."""

    def __init__(self, r: aredis.Redis, cfg: Config, dead_maxlen: int = DEAD_MAXLEN) -> None:
        self.r = r
        self.cfg = cfg
        self.dead_maxlen = dead_maxlen
        dedupe = script_source("fanops", "dedupe")
        self._ingest = r.register_script(dedupe + script_source("fanops", "ingest"))
        self._migrate = r.register_script(dedupe + script_source("fanops", "dedupe_migrate"))
        self._known_shops: OrderedDict[str, None] = OrderedDict()
        self._known_rooms: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def write_events(self, events: list[Event], receipt_ms: int | None = None) -> tuple[int, int]:
        """Append ``events`` (any shops) to their streams; returns (accepted, duplicates)."""
        by_shop: dict[str, list[Event]] = defaultdict(list)
        for ev in events:
            by_shop[ev.shop].append(ev)
        t = receipt_ms if receipt_ms is not None else int(time.time() * 1000)
        accepted = dups = 0
        new_shops = [s for s in by_shop if s not in self._known_shops]
        if new_shops:
            await self.r.sadd(keys.shops(), *new_shops)
            _remember(self._known_shops, new_shops)
        for shop, evs in by_shop.items():
            await self._migrate_rooms(shop, evs)
            room_index: dict[str, int] = {}
            part_index: dict[int, int] = {}
            body: list[bytes] = []
            for ev in evs:
                idx = room_index.get(ev.room)
                if idx is None:
                    idx = room_index[ev.room] = len(room_index) + 1
                part = keys.part_of(ev.viewer.id)
                pidx = part_index.get(part)
                if pidx is None:
                    pidx = part_index[part] = len(part_index) + 1
                payload = _encoder.encode(ev)
                body += (_HEAD.pack(pidx, idx, len(payload)), dedupe_record(ev.id), payload)
            args: list[Any] = [self.cfg.stream_maxlen, self.cfg.dedupe_ttl_s, t, len(part_index), b"".join(body)]
            ks = ([keys.stats(shop)] + [keys.stream(shop, p) for p in part_index]
                  + [keys.seen(shop, rm) for rm in room_index])
            n, d = await self._ingest(keys=ks, args=args)
            accepted += int(n)
            dups += int(d)
        return accepted, dups

    async def _migrate_rooms(self, shop: str, evs: list[Event]) -> None:
        """Rooms this process meets for the first time: ids an earlier version kept as a set move
        into the room's dedupe hash (once; nothing to do for a room started by this version)."""
        new = {ev.room for ev in evs if (shop, ev.room) not in self._known_rooms}
        for room in sorted(new):
            moved = int(await self._migrate(keys=[keys.seen_v1(shop, room), keys.seen(shop, room)],
                                            args=[self.cfg.dedupe_ttl_s]))
            if moved:
                log.info("moved %d seen event ids of room %s of %s into its dedupe hash", moved, room, shop)
            _remember(self._known_rooms, [(shop, room)])

    async def write_dead(self, bad: list[BadInput], source: str = "", once_in: str | None = None) -> int:
        """Record rejected events with their reason and raw text, and count them: all or nothing (one
        transaction, its keys in one slot), so that a write refused part-way (Redis full) and tried
        again records none twice. ``once_in`` (a shop): an event rejected before under its id in that
        shop (``keys.dead_once``) is not recorded or counted again (a customer import run again: its
        events keep their ids). Returns how many were recorded."""
        if not bad:
            return 0
        if once_in is None:
            pipe = self.r.pipeline(transaction=True)
            self._queue_dead(pipe, bad, source)
            await pipe.execute()
            return len(bad)
        members = [dedupe_record(f"{once_in}\0{i}") if (i := _event_id(b)) else None for b in bad]
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(keys.dead_once())
                    named = [m for m in members if m is not None]
                    seen = await pipe.zmscore(keys.dead_once(), cast("list[str]", named)) if named else []  # bytes too
                    known = {m for m, x in zip(named, seen, strict=True) if x is not None}
                    new = [b for b, m in zip(bad, members, strict=True) if m is None or m not in known]
                    fresh = {m: 0 for m in named if m not in known}
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    if fresh:
                        pipe.zadd(keys.dead_once(), fresh)
                    self._queue_dead(pipe, new, source)
                    await pipe.execute()
                    return len(new)
                except redis.exceptions.WatchError:
                    continue

    def _queue_dead(self, pipe: Any, bad: list[BadInput], source: str) -> None:
        if not bad:
            return
        now = time.time()
        for b in bad:
            pipe.xadd(
                keys.dead_stream(),
                {"reason": b.reason[:500], "raw": b.raw, "at": int(now * 1000), "source": source},
                maxlen=self.dead_maxlen,
                approximate=True,
            )
        pipe.hincrby(keys.dead_stats(), "dead_letters", len(bad))
        minute_key = keys.dead_minute(int(now // 60))
        pipe.incrby(minute_key, len(bad))
        pipe.expire(minute_key, DEAD_MINUTE_TTL_S)


_ID_FIRST = re.compile(rb'^\s*\{\s*"id"\s*:\s*("(?:[^"\\]|\\.)*")')


def _event_id(b: BadInput) -> str | None:
    """The id a rejected event's raw text names, if it is an object with a string id; also when the
    raw text was cut (``RAW_LIMIT``: a long name, say) and the id comes first, as an import writes it."""
    try:
        obj = msgspec.json.decode(b.raw)
    except msgspec.DecodeError:
        m = _ID_FIRST.match(b.raw)
        try:
            obj = {"id": msgspec.json.decode(m.group(1))} if m else None
        except msgspec.DecodeError:
            return None
    i = obj.get("id") if isinstance(obj, dict) else None
    return i if isinstance(i, str) and i else None


def _remember(known: OrderedDict[Any, None], new: list[Any]) -> None:
    known.update(dict.fromkeys(new))
    while len(known) > KNOWN_CAP:
        known.popitem(last=False)
