"""Who owns an address: the scorer notes, for each ``contact`` event it applied, which viewer named
each email and phone (``keys.contact_owners``), so that a webhook order kept for want of a viewer
can be matched when exactly one viewer has named its address (``realtime.orders``)."""

from __future__ import annotations

from typing import cast

import redis
from msgspec import UNSET

from fanops import keys
from fanops.schema import Contact, Event
from fanops.state import REACH_ADDRESSES

MANY = "*"  # two viewers named the address: no certain match


def note_contacts(r: redis.Redis, shop: str, events: list[Event]) -> None:
    """Record the owners of the addresses of ``events``' contact events (two round trips; none
    without a contact event). Idempotent and order-independent: a second viewer makes it ``*``."""
    pairs = {(keys.contact_owner_field(what, getattr(ev, what)), ev.viewer.id)
             for ev in events if type(ev) is Contact for what in REACH_ADDRESSES
             if getattr(ev, what) is not UNSET}
    if not pairs:
        return
    k = keys.contact_owners(shop)
    p = r.pipeline(transaction=False)
    for f, vid in pairs:
        p.hsetnx(k, f, vid)
        p.hget(k, f)
    got = cast("list[object]", p.execute())[1::2]
    many = [f for (f, vid), owner in zip(pairs, got, strict=True) if owner not in (vid.encode(), MANY.encode())]
    if many:
        r.hset(k, mapping=dict.fromkeys(many, MANY))
