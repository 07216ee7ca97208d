"""The kept orders screen's reads and its one write: webhook orders matched to no viewer or room
yet (``keys.orders_waiting``), and an operator's link of one to a viewer and room
(``keys.orders_links``), which ``python -m realtime orders`` applies on its next round."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

import redis

from fanops import keys

ID_CHARS = 128


@dataclass(frozen=True)
class KeptOrder:
    event_id: str
    source: str
    order_id: str
    amount: float
    currency: str
    ts: int
    viewer: str | None
    room: str | None
    has_email: bool
    has_phone: bool
    why: str
    received: int
    linked: bool  # an operator's link waits for the orders server


def kept_orders(r: redis.Redis, shop: str, limit: int = 200) -> list[KeptOrder]:
    """The shop's kept orders, the oldest first (two hash reads: the list is small by nature)."""
    p = r.pipeline(transaction=False)
    p.hgetall(keys.orders_waiting(shop))
    p.hkeys(keys.orders_links(shop))
    waiting, links = cast("tuple[dict[bytes, bytes], list[bytes]]", p.execute())
    out = []
    for eid, raw in waiting.items():
        rec = json.loads(raw)
        o = rec["order"]
        out.append(KeptOrder(eid.decode(), o["source"], o["order_id"], o["amount"], o["currency"], o["ts"],
                             o.get("viewer"), o.get("room"), bool(o.get("email")), bool(o.get("phone")),
                             rec.get("why", ""), rec.get("received", 0), eid in links))
    return sorted(out, key=lambda k: (k.received, k.event_id))[:limit]


def link(r: redis.Redis, shop: str, event_id: str, viewer: str, room: str, operator: str) -> str | None:
    """Ask for a kept order to be applied as ``viewer``'s in ``room``; None, or why not."""
    viewer, room = viewer.strip(), room.strip()
    if not viewer or len(viewer) > ID_CHARS:
        return "viewer"
    if not room or len(room) > ID_CHARS:
        return "room"
    if not r.hexists(keys.orders_waiting(shop), event_id):
        return "gone"
    r.hset(keys.orders_links(shop), event_id, json.dumps({"viewer": viewer, "room": room, "operator": operator}))
    return None
