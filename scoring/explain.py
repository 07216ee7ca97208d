"""``viewer`` command: one viewer's state, tier and the rule that gave it."""

from __future__ import annotations

from typing import Any

import polars as pl
import redis

from fanops import keys, read, rules_store
from fanops.config import Config
from fanops.errors import ArchiveError
from fanops.imported import profile_of, unpack_imported
from fanops.state import past_numbers, rooms_attended
from review.archive_files import read_room
from scoring import rules
from scoring.followups import consent_at


def _archived_row(cfg: Config, shop: str, room: str, viewer_id: str) -> dict[str, Any] | None:
    """The viewer's row in an archived room's viewers table (None if the archive is not readable)."""
    try:
        path = read_room(cfg, shop, room, verify=False).paths["viewers.parquet"]
        rows = (pl.scan_parquet(path).filter(pl.col("viewer") == viewer_id)
                .select("first_ts", "last_ts", "new_viewer", "reactivated").collect().to_dicts())
    except (ArchiveError, OSError, pl.exceptions.PolarsError):
        return None
    return rows[0] if rows else None


def viewer_report(r: redis.Redis, shop: str, viewer_id: str, cfg: Config | None = None) -> dict[str, Any] | None:
    """The ``viewer`` command's report. Archived rooms come first (oldest first), named from the
    viewer's state; with ``cfg``, their ts and facts are read from their archive."""
    v = read.viewer_state(r, shop, viewer_id)
    if v is None:
        return None
    s, version = rules_store.load(r, shop)
    clock = int(r.hget(keys.stats(shop), "clock") or 0)
    why = rules.explain_tier(v, clock, s)
    rooms: list[dict[str, Any]] = []
    if v.past_nos:
        # archived rooms: the state keeps which they are; the rest is in their archive
        ids = read.archived_room_ids(r, shop)
        for no in past_numbers(v):
            room = ids.get(no, f"#{no}")
            row = _archived_row(cfg, shop, room, viewer_id) if cfg is not None else None
            rooms.append({"room": room, "first_ts": row["first_ts"] if row else None,
                          "last_ts": row["last_ts"] if row else None,
                          "new_viewer": row["new_viewer"] if row else None,
                          "reactivated": row["reactivated"] if row else None, "archived": True})
    for room, (first, last) in sorted(v.rooms.items(), key=lambda kv: kv[1][0]):
        rooms.append({"room": room, "first_ts": first, "last_ts": last,
                      "new_viewer": rules.is_new_viewer(v, room),
                      "reactivated": rules.is_reactivated(v, room, s)})
    seed = r.hget(keys.imported(shop), viewer_id)
    name, country, lang, tz = profile_of(v, unpack_imported(seed) if isinstance(seed, bytes) else None)
    dm = consent_at(v, clock) if v.consents else None
    in_window = rules.recent_rooms(v, clock, s)  # the state keeps 20 archived rooms' first ts: enough for tiers
    if all(x["first_ts"] is not None for x in rooms):  # every archived room read from its archive: exact
        in_window = sum(1 for x in rooms if x["first_ts"] >= clock - s.active_window_ms)
    return {
        "shop": shop, "id": viewer_id, "clock": clock, "rules_version": version,
        "tier": why.tier, "rule": why.why,
        "first_seen": v.first_seen, "last_active": v.last_active,
        # a sum of amounts in floats: 10.01 + 20 shown as 30.01, not 30.009999999999998
        "orders": len(v.orders), "order_ids": v.orders, "spend": {cur: round(x, 6) for cur, x in v.spend.items()},
        "dm_consent": dm, "name": name, "country": country, "lang": lang, "tz": tz,
        "rooms_attended": rooms_attended(v),
        "rooms_in_window": in_window,
        "rooms": rooms,
    }
