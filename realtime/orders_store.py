"""Order webhooks, the part that moves data: a checked ``ShopOrder`` applied through the consumer's
own path (``OrdersSource``: ``fanops.schema.parse_frame``, the ``IngestWriter``'s dedupe and dead
letters, writes held while Redis is away), or kept in Redis until a viewer and room are known.

Where a kept order goes (``Orders.rematch``, every FANOPS_ORDERS_POLL_MS): an operator's link
from the app (``keys.orders_links``), or the one viewer that has named its email or phone in a
``contact`` event (``keys.contact_owners``, noted by the scorer). An order is never dropped: a
kept one stays in ``keys.orders_waiting`` until applied, and an applied one is remembered in
``keys.orders_done`` so that its replay goes to the same viewer and room (a repeat), even one that
names another room.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, cast

import msgspec
import redis
import redis.asyncio as aredis

from fanops import keys, retry
from fanops.config import Config
from fanops.imported import Imported, latest_marks, pack_imported, unpack_imported
from fanops.schema import BadInput, parse_frame
from fanops.state import Mark, unpack_viewer
from realtime.consumer import Consumer
from realtime.orders_map import ShopOrder, consent_marks, from_record, order_events, to_record

log = logging.getLogger(__name__)
MANY = b"*"  # scoring.contacts: more than one viewer named the address
APPLIED, KEPT = "applied", "kept"


class OrdersSource(Consumer):
    """The consumer with webhooks for a feed: events are handed in by ``submit`` and written at once
    (concurrent requests share a flush); its flush timer and heartbeat run as the consumer's."""

    def __init__(self, r: aredis.Redis, cfg: Config, name: str | None = None) -> None:
        super().__init__("webhook:orders", r, cfg, name=name)

    async def _read_loop(self) -> None:
        await self._stopping.wait()

    async def submit(self, events: list[dict[str, Any]], dry: bool = False) -> BadInput | None:
        """Validate ``events`` as one frame; all good: written (held and retried while Redis is away)
        unless ``dry``; else the first reason, and the bad ones go to the dead letters."""
        items = parse_frame(msgspec.json.encode(events), int(self.clock() * 1000), self.cfg.future_skew_ms)
        bad = [x for x in items if isinstance(x, BadInput)]
        if dry and not bad:
            return None
        if not self._events and not self._bad:
            self._oldest = time.monotonic()
        self.counters.frames += 1
        self.counters.events += len(items)
        if bad:
            self.counters.bad += len(bad)
            self._bad.extend(bad)
        else:
            self._events.extend(items)  # type: ignore[arg-type]  # no BadInput among them
        await self.flush()
        return bad[0] if bad else None

    async def submit_bad(self, bad: BadInput) -> None:
        """A signed body that is no order: to the dead letters, with its reason."""
        if not self._events and not self._bad:
            self._oldest = time.monotonic()
        self.counters.frames += 1
        self.counters.events += 1
        self.counters.bad += 1
        self._bad.append(bad)
        await self.flush()


def _room_at(state: bytes | None, ts: int) -> str | None:
    """The show the viewer was in at ``ts``: of its rooms in Redis, the latest that began by then."""
    if not state:
        return None
    rooms = [(span[0], room) for room, span in unpack_viewer(state).rooms.items() if span[0] <= ts]
    return max(rooms)[1] if rooms else None


def merge_marks(current: bytes | None, marks: list[Mark], ts: int, event_id: str) -> bytes:
    """The viewer's ``keys.imported`` record with ``marks`` merged in (per channel, the larger
    (ts, id) wins: the same rule as the viewer's own consent events)."""
    rec = unpack_imported(current) if current else Imported(ts, event_id)
    rec.reach = latest_marks(rec.reach, marks)
    return pack_imported(rec)


class Orders:
    """Applies or keeps webhook orders; one per server process."""

    def __init__(self, r: aredis.Redis, source: OrdersSource) -> None:
        self.r = r
        self.source = source
        self.shops: set[str] = set()  # shops this process kept an order of (beside keys.shops)

    async def take(self, o: ShopOrder) -> tuple[str, str | None]:
        """A new (or replayed) order: (APPLIED, None), (KEPT, why), or ("bad", reason)."""
        done = await self._done(o)
        if done is not None:  # applied before: a resend goes where the order went, whatever it names now
            bad = await self.apply(o, done[0], done[1], "replay")
            return (APPLIED, None) if bad is None else ("bad", bad)
        if o.viewer is not None and o.room is not None:  # the usual case: writes held while Redis is away
            bad = await self.apply(o, o.viewer, o.room, "webhook")
            return (APPLIED, None) if bad is None else ("bad", bad)
        viewer, room, why = await self.match(o)
        if viewer is not None and room is not None:
            bad = await self.apply(o, viewer, room, "webhook" if o.viewer else "contact")
            return (APPLIED, None) if bad is None else ("bad", bad)
        rejected = await self.source.submit(order_events(o, "?", "?"), dry=True)  # a kept order is a good one
        if rejected is not None:
            return "bad", rejected.reason
        await self.keep(o, why)
        return KEPT, why

    async def _done(self, o: ShopOrder) -> list[str] | None:
        """Where the order went when it was applied before ([viewer, room, how]), or None. With Redis
        away, None: an order that names its viewer and room is taken as it is and held."""
        try:
            got = await self.r.hget(keys.orders_done(o.shop), o.event_id)
        except redis.RedisError as e:
            if o.viewer is None or o.room is None:
                raise
            log.debug("order %s: where it went before not read (%s)", o.event_id, e)
            return None
        return cast("list[str]", json.loads(got)) if got else None

    async def match(self, o: ShopOrder) -> tuple[str | None, str | None, str]:
        """The viewer and room of ``o`` as far as known, and why not where one is missing."""
        viewer, why = o.viewer, ""
        if viewer is None:
            wants = [keys.contact_owner_field(w, v) for w, v in (("email", o.email), ("phone", o.phone)) if v]
            owners = set(cast("list[bytes | None]", await self.r.hmget(keys.contact_owners(o.shop), wants))
                         if wants else [])
            owners.discard(None)
            if len(owners) == 1 and MANY not in owners:
                viewer = cast(bytes, owners.pop()).decode()
            elif owners:
                why = "its email or phone was given by more than one viewer"
            else:
                why = ("no viewer: the order names none, and no viewer has given its email or phone"
                       if wants else "no viewer: the order names none, and has no email or phone")
        room = o.room
        if viewer is not None and room is None:
            room = _room_at(cast("bytes | None", await self.r.hget(keys.viewers(o.shop), viewer)), o.ts)
            why = why or f"no room: the order names none, and viewer {viewer!r} was in no show by then"
        return viewer, room, why

    async def apply(self, o: ShopOrder, viewer: str, room: str, how: str) -> str | None:
        """Write the order's events for ``viewer`` in ``room`` and its consents; None, or why not."""
        bad = await self.source.submit(order_events(o, viewer, room))
        if bad is not None:
            return bad.reason
        marks = consent_marks(o)
        if marks:
            await self._merge_consents(o.shop, viewer, marks, o)
        # remembered, so that a resend goes the same way: to the viewer and room chosen here for a kept
        # order; and, for one that names both, to those even if a resend names another room (it counted
        # in both rooms: dedupe is by room and event id)
        named = (viewer, room) == (o.viewer, o.room)

        async def note() -> None:
            p = self.r.pipeline(transaction=True)
            p.hset(keys.orders_done(o.shop), o.event_id, json.dumps([viewer, room, how]))
            if not named:
                p.hdel(keys.orders_waiting(o.shop), o.event_id)
            await p.execute()

        try:  # Redis away or full: waits, as the events' write did
            await retry.acall(note, "order note", outage=retry.Outage(), backoff=retry.Backoff(initial=0.2, cap=5.0))
        except redis.RedisError as e:
            if not named:
                raise
            log.warning("order %s applied but not noted (%s): a resend naming another room would count "
                        "there too", o.event_id, e)
        return None

    async def _merge_consents(self, shop: str, viewer: str, marks: list[Mark], o: ShopOrder) -> None:
        k = keys.imported(shop)
        async with self.r.pipeline(transaction=True) as p:
            while True:
                try:
                    await p.watch(k)
                    cur = cast("bytes | None", await p.hget(k, viewer))
                    p.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    p.hset(k, viewer, merge_marks(cur, marks, o.ts, o.event_id))
                    await p.execute()
                    return
                except redis.WatchError:
                    continue

    async def keep(self, o: ShopOrder, why: str) -> None:
        """Keep ``o`` until linked or matched; a replay of a kept order keeps the first (its time)."""
        self.shops.add(o.shop)
        rec = {"order": json.loads(to_record(o)), "why": why, "received": int(time.time() * 1000)}
        await self.r.hsetnx(keys.orders_waiting(o.shop), o.event_id, json.dumps(rec))

    async def rematch(self, shop: str) -> int:
        """Apply the shop's kept orders an operator linked or a contact now matches; returns how many."""
        links = cast("dict[bytes, bytes]", await self.r.hgetall(keys.orders_links(shop)))
        waiting = cast("dict[bytes, bytes]", await self.r.hgetall(keys.orders_waiting(shop)))
        n = 0
        for eid, raw in waiting.items():
            rec = json.loads(raw)
            o = from_record(json.dumps(rec["order"]).encode())
            link = json.loads(links[eid]) if eid in links else None
            if link is not None:
                how = f"operator:{link.get('operator', '')}"
                why = await self.apply(o, str(link["viewer"]), str(link["room"]), how)
                if why is not None:  # a link that makes a bad event: kept, and the app shows why
                    rec["why"] = f"the link to {link['viewer']!r} in {link['room']!r} was refused: {why}"
                    await self.r.hset(keys.orders_waiting(shop), eid, json.dumps(rec))
                await self.r.hdel(keys.orders_links(shop), eid)
                n += why is None
                continue
            viewer, room, why = await self.match(o)
            if viewer is not None and room is not None and await self.apply(o, viewer, room, "contact") is None:
                n += 1
                log.info("kept order %s of %s applied: its address is viewer %s's", o.event_id, shop, viewer)
            elif why != rec["why"]:
                rec["why"] = why
                await self.r.hset(keys.orders_waiting(shop), eid, json.dumps(rec))
        for eid in set(links) - set(waiting):
            await self.r.hdel(keys.orders_links(shop), eid)  # linked twice, or already applied
        return n

