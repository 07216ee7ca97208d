"""The rules of spec/tiers.md as pure functions of a viewer's state, the shop clock and the settings.

No I/O, no wall clock: ``now`` is the shop clock (the largest ``ts`` applied
for the shop), passed in.  Each function says which threshold it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fanops.presence import dwell as dwell  # spec/tiers.md's presence and dwell, shared with the queue
from fanops.presence import is_present as is_present
from fanops.rules_settings import RuleSettings
from fanops.state import ViewerState, past_firsts


@dataclass(frozen=True)
class TierReason:
    tier: str
    why: str


def room_firsts(v: ViewerState) -> list[int]:
    """The viewer's first ts in each room attended, archived (folded) rooms included."""
    out = [first for first, _last in v.rooms.values()]
    if v.past:
        out += past_firsts(v)
    return out


def recent_rooms(v: ViewerState, now: int, s: RuleSettings) -> int:
    """Rooms whose first ts by the viewer is within the active window (``>= now - window``)."""
    lo = now - s.active_window_ms
    n = sum(1 for first, _last in v.rooms.values() if first >= lo)
    if v.past:
        for first in past_firsts(v):  # most recent first
            if first < lo:
                break
            n += 1
    return n


def _classify(v: ViewerState, now: int, s: RuleSettings) -> tuple[str, int, int, int]:
    """The tier (the first rule that matches) and what it was read from: days away in ms, orders,
    rooms in the window (-1 where the rule did not need them)."""
    away = now - v.last_active
    if away >= s.dormant_ms:
        return "dormant", away, -1, -1
    n_orders = len(v.orders)
    if n_orders >= s.active_orders:
        return "active", away, n_orders, -1
    rooms = recent_rooms(v, now, s)
    if rooms >= s.active_rooms:
        return "active", away, n_orders, rooms
    return ("first_buyer" if n_orders >= 1 else "new_fan"), away, n_orders, rooms


def explain_tier(v: ViewerState, now: int, s: RuleSettings) -> TierReason:
    """The tier (the first rule that matches) and the rule that gave it, in words."""
    t, away, n_orders, rooms = _classify(v, now, s)
    if t == "dormant":
        return TierReason(t, f"dormant: no event for {away / 86_400_000:.1f} days "
                             f"(threshold {s.dormant_days:g} days)")
    if t == "active" and rooms < 0:
        return TierReason(t, f"active: {n_orders} orders (threshold {s.active_orders:g})")
    if t == "active":
        return TierReason(t, f"active: {rooms} rooms in the last {s.active_window_days:g} days "
                             f"(threshold {s.active_rooms:g})")
    if t == "first_buyer":
        return TierReason(t, f"first_buyer: {n_orders} order")
    return TierReason(t, f"new_fan: no order yet, {rooms} room(s) in the last {s.active_window_days:g} days")


def tier(v: ViewerState, now: int, s: RuleSettings) -> str:
    return _classify(v, now, s)[0]


def next_tier_change(v: ViewerState, now: int, s: RuleSettings, current: str | None = None) -> int | None:
    """The earliest shop clock after ``now`` at which the viewer's tier can change with no event.

    Time moves a viewer into ``dormant`` (at ``last_active + dormant``) and out of
    ``active``-by-rooms (when the n-th most recent room leaves the window).
    """
    t = current if current is not None else tier(v, now, s)
    if t == "dormant":
        return None
    due = v.last_active + s.dormant_ms
    if t == "active" and len(v.orders) < s.active_orders:
        firsts = sorted(room_firsts(v), reverse=True)
        k = int(s.active_rooms)
        if len(firsts) >= k:
            due = min(due, firsts[k - 1] + s.active_window_ms + 1)
    return due


def is_new_viewer(v: ViewerState, room: str) -> bool:
    """The viewer's first ever appearance is in this room (their first ts there is ``first_seen``)."""
    r = v.rooms.get(room)
    return r is not None and r[0] == v.first_seen


def is_reactivated(v: ViewerState, room: str, s: RuleSettings) -> bool:
    """Back after ``reactivated_days`` or more: the room's first ts minus the viewer's latest
    earlier event in another room.  A room that started earlier and runs past this one's
    start counts as an event just before it (shows are hours long, never 30 days).

    Archived rooms (``past``) keep only their first ts and the latest ts of them all: when that
    latest ts is before this room's start, it is the latest earlier event, exactly; otherwise
    (an archived room ran past this one's start) an archived room that started before this one
    counts as an event just before it, as above."""
    r = v.rooms.get(room)
    if r is None:
        return False
    first = r[0]
    prev: int | None = None
    for other, (f, last) in v.rooms.items():
        if other == room or f >= first:
            continue
        cand = last if last < first else first
        if prev is None or cand > prev:
            prev = cand
    if v.past:
        if v.past_last < first:
            cand = v.past_last
        elif v.past_nos and (len(past_firsts(v)) < sum(v.past_nos[1::2])
                             or any(f < first for f in past_firsts(v))):  # rooms beyond those kept are older
            cand = first
        else:
            cand = -1
        if cand >= 0 and (prev is None or cand > prev):
            prev = cand
    return prev is not None and first - prev >= s.reactivated_ms


class Counts(Protocol):
    """What the priority counts: a room record's (``RoomViewer``) or a task card's (``TaskRec``)."""

    comments: int
    carts: int
    views: int
    shares: int
    follows: int
    likes: int


def priority(rv: Counts, tier_name: str, reactivated: bool, s: RuleSettings) -> float:
    """The follow-up priority of spec/tiers.md (higher first)."""
    p = (s.w_comment * rv.comments + s.w_cart_add * rv.carts + s.w_product_view * rv.views
         + s.w_share * rv.shares + s.w_follow * rv.follows
         + min(rv.likes, s.likes_cap) / s.likes_per_point)
    if reactivated:
        p += s.bonus_reactivated
    if tier_name == "first_buyer":
        p += s.bonus_first_buyer
    elif tier_name == "active":
        p += s.bonus_active
    elif tier_name == "new_fan":
        p += s.bonus_new_fan
    return p


def queue_score(prio: float, dwell_ms: int) -> float:
    """One sortable number: priority first, then longer dwell (to the second)."""
    return round(prio * 20) * 1e7 + min(dwell_ms // 1000, 9_999_999)


QUESTION_MARKS = ("?", "？", "؟", "¿")


def is_question(text: str) -> bool:
    """A comment that asks something, in any language (question marks of Latin, CJK, Arabic)."""
    return any(q in text for q in QUESTION_MARKS)
