"""The rooms every screen picks from, and the screens' notion of now.

``wall_clock`` is the one clock of the read model: tests and the app benchmark pin
it (``rooms.wall_clock``) so that rates, ages and "live" are exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from fanops import keys, read
from fanops.replies import to_float
from fanops.rules_settings import MINUTE, RuleSettings

LIVE_MS = 5 * MINUTE  # a room is live if its last event is this recent (wall clock)


def wall_clock() -> float:
    """Seconds since the epoch; tests replace it to pin the screens' notion of now."""
    return time.time()


@dataclass(frozen=True)
class RoomRef:
    id: str
    last_ts: int
    live: bool


def room_list(r: redis.Redis, shop: str, now_ms: int, limit: int = 50) -> list[RoomRef]:
    """The shop's rooms, most recently active first; ``live``: an event in the last 5 minutes."""
    return [RoomRef(room, ts, now_ms - ts <= LIVE_MS) for room, ts in read.rooms(r, shop, limit)]


def room_ref(r: redis.Redis, shop: str, room: str, now_ms: int) -> RoomRef | None:
    """One room of the shop by id; None if the shop has no such room."""
    score = r.zscore(keys.rooms(shop), room)
    return None if score is None else RoomRef(room, int(score), now_ms - int(score) <= LIVE_MS)


def present_ms(raw: object) -> int:
    """The ``present_minutes`` rule setting as read from the rules hash (None: never set), in ms."""
    return int(to_float(raw or RuleSettings.present_minutes) * MINUTE)
