"""The live board's own history: a snapshot of its numbers at most every ``SNAP_EVERY_S``.

Written by whichever page refreshes first, at most once per ``SNAP_EVERY_S`` seconds per
shop and per room (a ``SET NX PX`` guard, ``board.record_snapshots``), so it costs the
same with one or twenty tabs open:

- ``keys.board_snaps`` (``fo:{shop}:board:snap``): capped LIST (newest first, ``SNAP_KEEP`` entries) of
  JSON ``{"at": wall s, "applied", "accepted", "lag", "frames", "tiers": {tier: n}}``.
  It gives the shop's tier change over 5 minutes, "lag growing" and "feed silent".
- ``keys.board_room_snaps`` (``fo:{shop}:board:rsnap:<room>``): the same for one room,
  ``{"at", "clock", "ev": events in the room, "present", "t": {tier: n}}``: the
  room's tier change and events/s.

Both expire a day after their last write (the chart's per-minute joins, orders, events and
viewers present are the scorer's, in ``keys.room_minutes``); the write guards
are ``keys.board_guard`` of the shop and of the room.  The helpers here
read the history as plain data and are tested without Redis.
"""

from __future__ import annotations

import json
from typing import Any

from fanops.replies import to_int
from fanops.state import TIERS

SNAP_EVERY_S = 10.0
SNAP_KEEP = 60  # 10 minutes at one entry per 10 s
SNAP_TTL_S = 86_400
CHANGE_WINDOW_S = 300.0  # "change over the last 5 minutes"


def parse(raw: list[bytes]) -> list[dict[str, Any]]:
    """The snapshots of a history LIST as read (newest first); entries that are not one are left out."""
    out = []
    for b in raw:
        try:
            s = json.loads(b)
        except ValueError:
            continue
        if isinstance(s, dict) and isinstance(s.get("at"), int | float):
            out.append(s)
    return out


def push(p: Any, key: str, entry: dict[str, Any]) -> None:
    """Queue on pipeline ``p`` one snapshot at the head of the history ``key`` (capped, expiring)."""
    p.lpush(key, json.dumps(entry, separators=(",", ":")))
    p.ltrim(key, 0, SNAP_KEEP - 1)
    p.expire(key, SNAP_TTL_S)


def _base_snapshot(snaps: list[dict[str, Any]], now: float, window: float) -> dict[str, Any] | None:
    """The newest snapshot at least ``window`` old, else the oldest one at least 30 s old."""
    for s in snaps:  # newest first
        if now - s["at"] >= window - 1:
            return s
    older = [s for s in snaps if now - s["at"] >= 30]
    return older[-1] if older else None


def tier_change(snaps: list[dict[str, Any]], now: float, current: dict[str, int],
                field_name: str = "tiers", window: float = CHANGE_WINDOW_S) -> tuple[dict[str, int] | None, float]:
    """Each tier's change since the snapshot ``window`` seconds ago (or the oldest one, if the
    history is shorter), and the span it covers; ``(None, 0)`` with under 30 s of history."""
    base = _base_snapshot(snaps, now, window)
    if base is None or not isinstance(base.get(field_name), dict):
        return None, 0.0
    before = base[field_name]
    return {t: current.get(t, 0) - to_int(before.get(t)) for t in TIERS}, now - base["at"]


def events_rate(snaps: list[dict[str, Any]], now: float, total_now: int, field_name: str = "ev",
                min_age: float = 5.0) -> float | None:
    """Events per second since the newest snapshot at least ``min_age`` old (None: no such snapshot)."""
    for s in snaps:
        age: float = now - s["at"]
        if age >= min_age and field_name in s:
            return max(0.0, (total_now - to_int(s[field_name])) / age)
    return None
