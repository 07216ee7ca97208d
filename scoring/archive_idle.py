"""Which rooms are over and may be archived: by the shop clock (no event for ``archive_idle_min``
of shop time) and by wall time (the consumer has written none for ``archive_idle_wall_h``)."""

from __future__ import annotations

from typing import Any, cast

import redis

from fanops import keys
from fanops.config import Config

IDLE_MS = 30 * 60_000  # a room with no event for this long (shop clock) is over


def is_archived(r: redis.Redis, shop: str, rooms: list[str]) -> set[str]:
    """Which of ``rooms`` are archived (their raw data gone; a scorer should drop late events of them)."""
    p = r.pipeline(transaction=False)
    for rm in rooms:
        p.hexists(keys.room(shop, rm), "archived")
    return {rm for rm, a in zip(rooms, p.execute() if rooms else [], strict=True) if a}


def idle_rooms(r: redis.Redis, shop: str, idle_ms: int = IDLE_MS, cfg: Config | None = None) -> list[str]:
    """Rooms whose last event is ``idle_ms`` or more before the shop clock, not archived yet; and,
    given ``cfg``, the open rooms that have received no event for ``archive_idle_wall_h`` of wall
    time (``wall_idle``)."""
    clock = int(r.hget(keys.stats(shop), "clock") or 0)
    found: Any = r.zrangebyscore(keys.rooms(shop), "-inf", clock - idle_ms)
    cands = [m.decode() for m in found]
    if cfg is not None:
        later = cast("list[bytes]", r.zrangebyscore(keys.rooms(shop), f"({clock - idle_ms}", "+inf"))
        cands += wall_idle(r, shop, [m.decode() for m in later], cfg)
    done = is_archived(r, shop, cands)
    return [rm for rm in cands if rm not in done]


def wall_idle(r: redis.Redis, shop: str, rooms: list[str], cfg: Config) -> list[str]:
    """Of ``rooms``, those the consumer has written no event of for ``archive_idle_wall_h`` hours:
    the time left on their dedupe table (``keys.seen``, kept ``dedupe_ttl_s`` after each write)
    tells when it last wrote one. (A room with no table is left to the shop clock: the consumer
    wrote none for it, or so long ago that a scorer running since would have archived it.)"""
    if not rooms:
        return []
    p = r.pipeline(transaction=False)
    for rm in rooms:
        p.pttl(keys.seen(shop, rm))
    limit = cfg.dedupe_ttl_s * 1000 - cfg.archive_idle_wall_h * 3_600_000
    return [rm for rm, left in zip(rooms, cast("list[int]", p.execute()), strict=True) if 0 <= left <= limit]
