"""A lingered task's card (its dwell and priority) is the same whatever order the events arrive in
(spec/events.md: the state after all events are applied does not depend on their arrival order;
spec/tiers.md: dwell is the room's last event minus its first, priority from the room's counts)."""

from __future__ import annotations

import json
import random

from fanops import queue
from realtime.simulator import SimSettings, generate
from tests.pipeline import drain, ingest_frames

SHOP = "default"
X = 1_735_689_600_000 + 10 * 86_400_000
S = 1000


def ev(i: str, typ: str, dt_s: int, **kw: object) -> dict:
    return {"id": i, "room": "r", "ts": X + dt_s * S, "type": typ, "viewer": {"id": "v"}, **kw}


EVENTS = {
    "join": ev("j", "join", 0), "gift": ev("g", "gift", 96, gift="rose", value=1.5),
    "consent": ev("c", "consent", 195, dm=True), "leave1": ev("l1", "leave", 304), "leave2": ev("l2", "leave", 441),
    "like1": ev("k1", "like", 462, count=18), "share1": ev("s1", "share", 528), "share2": ev("s2", "share", 670),
    "like2": ev("k2", "like", 769, count=38), "pv": ev("p", "product_view", 908, sku="a"),
    "like3": ev("k3", "like", 1024, count=49),
}
CLOCK = {"id": "clk", "room": "r", "ts": X + 7200 * S, "type": "join", "viewer": {"id": "other"}}


def card(r) -> list[tuple[str, float, int]]:
    return [(t["state"], t["priority"], t["dwell_ms"]) for st in queue.TASK_STATES
            for t in queue.task_rows(r, SHOP, st) if t["viewer_id"] == "v"]


def test_a_task_made_before_earlier_events_arrive_gets_their_counts_and_dwell(r, cfg):
    ingest_frames(cfg, [json.dumps(list(EVENTS.values()) + [CLOCK])])
    drain(r, cfg)
    in_order = card(r)
    # shares 2, a product view, 105 likes (100 count): 2 + 2 + 5; dwell 1024 s (the last event - the first)
    assert in_order == [("pending", 9.0, 1024 * S)]
    r.flushall()
    arrivals = [["pv", "share2"], ["leave1", "like3"], ["consent", "gift", "leave2", "share1"],
                ["join", "like1", "like2"]]
    for k, names in enumerate(arrivals):
        ingest_frames(cfg, [json.dumps([EVENTS[n] for n in names] + ([CLOCK] if k == 0 else []))])
        drain(r, cfg)
    assert card(r) == in_order



FEED = SimSettings(seed=5, viewers=150, rate=2.0, duration=1200, history_shows=2, start_ms=1_760_000_000_000,
                   bad_ratio=0.0, dup_ratio=0.0)


def cards(r) -> dict[str, tuple]:
    """Every task: its state, tier, priority and dwell, as the queue shows them."""
    return {t["id"]: (t["state"], t["tier"], t["priority"], t["dwell_ms"])
            for st in queue.TASK_STATES for t in queue.task_rows(r, SHOP, st)}


def test_every_open_task_of_simulated_shows_has_the_same_tier_and_priority_in_any_arrival_order(r, cfg):
    """A few simulated shows fed in order, then shuffled and a few frames at a time (tasks are made
    before earlier events of their viewer come, in this room and in earlier shows): every task has
    the same state, tier, priority (the counts of the room, the tier bonus, the reactivated bonus
    that an earlier show's late events give) and dwell (worked out at the shop clock when read: a
    card written while its viewer was present kept that moment's), closed ones (converted,
    withdrawn, the thank-yous' occasion) as the open ones."""
    frames = [json.dumps(f) for f in generate(FEED)]
    ingest_frames(cfg, frames)
    drain(r, cfg)
    in_order = cards(r)
    assert sum(1 for c in in_order.values() if c[0] == "pending") > 20  # not vacuous
    assert any(k.startswith("thank_first_order:") and c[0] == "pending" for k, c in in_order.items())
    r.flushall()
    shuffled = frames[:]
    random.Random(3).shuffle(shuffled)
    for i in range(0, len(shuffled), 40):
        ingest_frames(cfg, shuffled[i:i + 40])
        drain(r, cfg)
    got = cards(r)
    diff = {k: (got.get(k), in_order.get(k)) for k in set(got) | set(in_order) if got.get(k) != in_order.get(k)}
    assert not diff, f"{len(diff)} of {len(got)} tasks differ (shuffled, in order): {sorted(diff.items())[:5]}"


def test_the_first_order_that_comes_late_is_the_thank_you_s_occasion_and_room(r, cfg):
    """spec/tiers.md v1.1: thank_first_order's occasion is the viewer's first order ever. An earlier
    order in another room that arrives after a later one moves the task there, as in order."""
    day = 86_400_000
    late = {"id": "o1", "room": "rB", "ts": X - 40 * day, "type": "order", "viewer": {"id": "x"},
            "order_id": "o1", "amount": 10, "currency": "USD"}
    later = {"id": "o2", "room": "rA", "ts": X - 3_600_000, "type": "order", "viewer": {"id": "x"},
             "order_id": "o2", "amount": 12, "currency": "USD"}

    def thank() -> list[tuple[str, str, str]]:
        return [(t["state"], t["room"], t["tier"]) for t in queue.task_rows(r, SHOP, "pending", "thank_first_order")]

    def sent() -> list[tuple[str, str, str]]:
        (t,) = queue.task_rows(r, SHOP, "pending", "thank_first_order")
        op = queue.Operator(r, SHOP, "ana")
        op.claim(t["id"])
        op.mark_sent(t["id"])
        return [(t["state"], t["room"], t["tier"]) for t in queue.task_rows(r, SHOP, "sent", "thank_first_order")]

    ingest_frames(cfg, [json.dumps([late, later])])
    drain(r, cfg)
    in_order = thank()
    assert in_order == [("pending", "rB", "active")]
    in_order_sent = sent()
    assert in_order_sent == [("sent", "rB", "active")]
    r.flushall()
    for e in (later, late):
        ingest_frames(cfg, [json.dumps([e])])
        drain(r, cfg)
    assert thank() == in_order
    assert sent() == in_order_sent  # and so once sent
