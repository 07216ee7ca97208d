"""``viewer`` command: one viewer's state, tier and the rule that gave it."""

from __future__ import annotations

from typing import Any

import redis

from fanops import keys, read, rules_store
from scoring import rules
from scoring.followups import consent_at


def viewer_report(r: redis.Redis, shop: str, viewer_id: str) -> dict[str, Any] | None:
    v = read.viewer_state(r, shop, viewer_id)
    if v is None:
        return None
    s, version = rules_store.load(r, shop)
    clock = int(r.hget(keys.stats(shop), "clock") or 0)
    why = rules.explain_tier(v, clock, s)
    rooms = []
    for room, (first, last) in sorted(v.rooms.items(), key=lambda kv: kv[1][0]):
        rooms.append({"room": room, "first_ts": first, "last_ts": last,
                      "new_viewer": rules.is_new_viewer(v, room),
                      "reactivated": rules.is_reactivated(v, room, s)})
    dm = consent_at(v, clock) if v.consents else None
    return {
        "shop": shop, "id": viewer_id, "clock": clock, "rules_version": version,
        "tier": why.tier, "rule": why.why,
        "first_seen": v.first_seen, "last_active": v.last_active,
        "orders": len(v.orders), "order_ids": v.orders, "spend": v.spend,
        "dm_consent": dm, "name": v.name, "country": v.country, "lang": v.lang, "tz": v.tz,
        "rooms_attended": len(v.rooms),
        "rooms_in_window": rules.recent_rooms(v, clock, s),
        "rooms": rooms,
    }
