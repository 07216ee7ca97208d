"""spec/tiers.md's presence and dwell of a viewer in a room: the scorer's rules, and what the follow-up
queue shows (a present viewer's dwell grows with the shop clock, so the queue works it out when read)."""

from __future__ import annotations

from fanops.rules_settings import RuleSettings
from fanops.state import RoomViewer


def is_present(rv: RoomViewer, now: int, s: RuleSettings) -> bool:
    """No leave later than their last other event, and their last event within ``present_minutes``."""
    if rv.last_other < 0 or rv.last_leave > rv.last_other:
        return False
    return now - rv.last <= s.present_ms


def dwell(rv: RoomViewer, now: int, s: RuleSettings) -> int:
    """``(present ? now : last event in the room) - first ts in the room``, in ms."""
    end = now if is_present(rv, now, s) else rv.last
    return max(0, end - rv.first)
