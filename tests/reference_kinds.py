"""Reference (test oracle) of spec/tiers.md v1.1 "Follow-up kinds": thank_first_order,
after_sales and win_back, over the set of one viewer's events.  Plain Python, nothing imported
from the project's packages (tests/reference.py calls it).

Decisions (- = our choice where the spec is silent):
  - first order: the distinct ``order_id`` whose earliest event has the smallest (ts, id);
    second order: the next one.  ``t1``: the first order's ts.
  - thank_first_order, occasion 0: at ``t1``.
  - after_sales, occasion 0: at ``D = t1 + after_sales_days`` once the shop clock is at or past
    it, unless the second order's ts is ``<= D`` ("ordered again by then": by that moment).
  - win_back, occasion = the spell's start: the viewer's distinct event times sorted; between
    consecutive ``a < b`` with ``b - a > dormant`` (at ``a + dormant`` the viewer's latest event
    is ``a``: dormant), a spell starting at ``a + dormant`` that ended at ``b``; after the last
    event ``a``, a spell if ``now - a >= dormant``, not ended.  Only for a viewer who had ordered
    by then (``t1 <= a``).
  - a task is made when the DM consent at its moment (the dm of the consent with the largest
    (ts, id) at or before it) is not False; state: ``withdrawn`` if the consent is False at some
    consent ts after the moment, or (win_back) the spell ended; else ``pending``.
  - the history room makes no task: no thank_first_order or after_sales when the first order is
    in it (an imported buyer's first order is in their history: a later order at a show is not a
    first order), no win_back for a spell whose ``a`` has only history-room events.
  - the 7-day rule and sent/skipped/claimed are operator actions: never in play here.
"""

from __future__ import annotations

DAY = 86_400_000
HISTORY = "history"


def _consent(evs: list[dict], t: int) -> tuple[bool | None, bool]:
    """The DM consent at ``t`` and whether it is False at some consent after ``t``."""
    cs = sorted((e["ts"], e["id"], e["dm"]) for e in evs if e["type"] == "consent" and "dm" in e)
    at = None
    for ts, _id, dm in cs:
        if ts <= t:
            at = dm
    later_false = False
    cur = at
    for ts, _id, dm in cs:
        if ts > t:
            cur = dm
            later_false = later_false or cur is False
    return at, later_false


def kind_tasks(evs: list[dict], now: int, dormant: int = 30 * DAY,
               after_sales: int = 7 * DAY) -> dict[tuple[str, int], str]:
    """(kind, occasion) -> state for one viewer's events."""
    firsts: dict[str, tuple[int, str, str]] = {}
    for e in sorted((e for e in evs if e["type"] == "order"), key=lambda e: (e["ts"], e["id"])):
        firsts.setdefault(e["order_id"], (e["ts"], e["id"], e["room"]))
    if not firsts:
        return {}
    orders = sorted(firsts.values())
    t1, _id, room1 = orders[0]
    out: dict[tuple[str, int], str] = {}

    def add(kind: str, occ: int, at: int, ended: bool) -> None:
        c, later_false = _consent(evs, at)
        if c is not False:
            out[(kind, occ)] = "withdrawn" if ended or later_false else "pending"

    if room1 != HISTORY:
        add("thank_first_order", 0, t1, False)
        due = t1 + after_sales
        if now >= due and not (len(orders) > 1 and orders[1][0] <= due):
            add("after_sales", 0, due, False)
    times = sorted({e["ts"] for e in evs})
    only_history = {t: all(e["room"] == HISTORY for e in evs if e["ts"] == t) for t in times}
    spells = [(a, True) for a, b in zip(times, times[1:], strict=False) if b - a > dormant]
    if now - times[-1] >= dormant:
        spells.append((times[-1], False))
    for a, ended in spells:
        if t1 <= a and not only_history[a]:
            add("win_back", a + dormant, a + dormant, ended)
    return out
