"""Who owns an address: the scorer notes, for each ``contact`` event it applied, which viewer named
each email and phone (``keys.contact_owners``), so that a webhook order kept for want of a viewer
can be matched when exactly one viewer has named its address (``realtime.orders``)."""

from __future__ import annotations

import json
from typing import cast

import redis
from msgspec import UNSET

from fanops import keys
from fanops.imported import unpack_imported
from fanops.schema import Contact, Event
from fanops.state import REACH_ADDRESSES, unpack_viewer

MANY = "*"  # two viewers named the address: no certain match


def note_contacts(r: redis.Redis, shop: str, events: list[Event]) -> None:
    """Record the owners of the addresses of ``events``' contact events (two round trips; none
    without a contact event). Idempotent and order-independent: a second viewer makes it ``*``."""
    pairs = sorted({(keys.contact_owner_field(what, getattr(ev, what)), ev.viewer.id)
                    for ev in events if type(ev) is Contact for what in REACH_ADDRESSES
                    if getattr(ev, what) is not UNSET})
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


def order_records(r: redis.Redis, shop: str, viewer: str) -> list[tuple[str, str, bytes]]:
    """``(kind, key, field)`` of every record of the order webhooks that names ``viewer``: the addresses
    it owns in ``keys.contact_owners``, its kept, linked and matched orders (for ``scoring.forget``).
    Scans those hashes: forgetting is rare, and a viewer's old addresses are found too."""
    out: list[tuple[str, str, bytes]] = []
    want = viewer.encode()
    for f, v in r.hscan_iter(keys.contact_owners(shop), count=1000):
        if v == want:
            out.append(("address_owners", keys.contact_owners(shop), f))
    for kind, k in (("webhook_orders", keys.orders_waiting(shop)), ("webhook_orders", keys.orders_done(shop)),
                    ("webhook_orders", keys.orders_links(shop))):
        for f, v in r.hscan_iter(k, count=1000):
            rec = json.loads(v)
            named = rec[0] if isinstance(rec, list) else rec.get("viewer") or (rec.get("order") or {}).get("viewer")
            if named == viewer:
                out.append((kind, k, f))
    return out


def viewer_addresses(r: redis.Redis, shop: str, viewer: str) -> set[bytes]:
    """The ``contact_owner_field``\\ s of every address known for ``viewer``: the ones it owns in
    ``keys.contact_owners``, and those its state and its imported record hold (an address two viewers
    named is in neither's ownership, but still theirs to erase)."""
    want = viewer.encode()
    out = {f for f, v in r.hscan_iter(keys.contact_owners(shop), count=1000) if v == want}
    state, imported = cast("list[bytes | None]", r.hmget(keys.viewers(shop), [viewer]) +
                           r.hmget(keys.imported(shop), [viewer]))
    marks = [*(unpack_viewer(state).reach if state else []), *(unpack_imported(imported).reach if imported else [])]
    out.update(keys.contact_owner_field(m.what, m.value) for m in marks
               if m.what in REACH_ADDRESSES and isinstance(m.value, str) and m.value)
    return out


def kept_order_scrubs(r: redis.Redis, shop: str, addresses: set[bytes]) -> list[tuple[bytes, bytes, bytes]]:
    """``(field, read, rewritten)`` of the kept (unmatched) webhook orders that carry one of
    ``addresses``: the order stays kept (a sale is never dropped) with its email and phone cleared,
    so an operator can still link it by hand."""
    out = []
    for f, raw in r.hscan_iter(keys.orders_waiting(shop), count=1000):
        rec = json.loads(raw)
        order = rec.get("order") or {}
        named = [w for w in REACH_ADDRESSES if isinstance(order.get(w), str)
                 and keys.contact_owner_field(w, order[w]) in addresses]
        if named:
            rec["order"] = {**order, **dict.fromkeys(named)}
            out.append((f, raw, json.dumps(rec).encode()))
    return out
