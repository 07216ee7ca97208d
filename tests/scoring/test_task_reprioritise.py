"""A pending task's priority and shown fields follow the viewer's later events (spec/tiers.md:
"Priority (higher first; ties: longer dwell first, then viewer id)").

A story of one show on a simulated clock: five viewers join seconds apart, stay, and act minute after
minute (comments, product views, cart adds, likes), each in their own rhythm, some silent for a while;
the scorer applies each minute's events before the next minute comes.  After every minute, the queue
and the task cards are checked against the spec's formula worked out here from the events alone:

- the priority on the card is ``3*comments + 5*cart_adds + 2*product_views + min(likes,100)/20`` of the
  viewer's events so far (all new fans: no bonus);
- the dwell on the card is the one when the scorer last looked at the task: when it made it, or at the
  viewer's last event since (they are present then: that moment - their first ts);
- the pending queue's order is priority, then that dwell (to the second), highest first.

One task is claimed by an operator half-way: it keeps its holder, and its priority still moves (the
record then carries the operator's fields: apply.lua repacks it instead of splicing it).
"""

from __future__ import annotations

import json
from typing import Any

from fanops import keys, queue
from fanops.config import Config
from fanops.state import unpack_task
from scoring.worker import Worker
from tests.scoring.test_scoring_properties import ingest

SHOP = "default"
ROOM = "live-1"
T0 = 1_763_856_000_000
MIN = 60_000
NOW = 1_800_000_000_000  # operators' wall clock (ms)
# first ts of each viewer: seconds apart, never a whole minute, so no two dwell values meet
FIRST = {"ana": 0, "bo": 7_000, "cy": 19_000, "di": 31_000, "ed": 43_000}
ACTIONS = ("comment", "product_view", "cart_add", "like")
WEIGHT = {"comment": 3.0, "product_view": 2.0, "cart_add": 5.0}


def _act(vid: str, minute: int) -> str | None:
    """What the viewer does in the given minute of the show (None: stays silent)."""
    k = sorted(FIRST).index(vid)
    if (minute + k) % 4 == 3:
        return None  # each viewer is silent one minute in four, not all in the same minute
    return ACTIONS[(minute * (k + 1) + k) % len(ACTIONS)]


def _event(n: int, vid: str, typ: str, ts: int) -> dict[str, Any]:
    e: dict[str, Any] = {"id": f"e-{n}", "room": ROOM, "ts": ts, "type": typ, "viewer": {"id": vid}}
    if typ == "comment":
        e["text"] = f"{vid} says {n}"
    elif typ in ("product_view", "cart_add"):
        e["sku"] = f"sku-{n % 3}"
    elif typ == "like":
        e["count"] = 7
    return e


class Model:
    """The spec's priority and dwell of each viewer's task, from their events alone."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {v: dict.fromkeys((*ACTIONS, "likes"), 0) for v in FIRST}
        self.looked: dict[str, int] = {}  # the clock when the scorer last looked at the viewer's task

    def made(self, ts: int) -> None:
        self.looked = dict.fromkeys(FIRST, ts)

    def see(self, e: dict[str, Any]) -> None:
        v = e["viewer"]["id"]
        self.looked[v] = e["ts"]
        if e["type"] == "like":
            self.counts[v]["likes"] += e["count"]
        elif e["type"] in WEIGHT:
            self.counts[v][e["type"]] += 1

    def priority(self, v: str) -> float:
        c = self.counts[v]
        return sum(WEIGHT[t] * c[t] for t in WEIGHT) + min(c["likes"], 100) / 20

    def dwell_ms(self, v: str) -> int:
        return self.looked[v] - (T0 + FIRST[v])

    def order(self) -> list[str]:
        return sorted(FIRST, key=lambda v: (-round(self.priority(v) * 20), -(self.dwell_ms(v) // 1000), v))


def _apply(r, cfg: Config, events: list[dict[str, Any]]) -> None:
    ingest(cfg, [json.dumps(events)])
    Worker(r, cfg, name="w1").drain(timeout=60)


def _card(r, v: str):
    return unpack_task(r.hget(keys.tasks(SHOP, ROOM), v))


def test_a_pending_tasks_priority_follows_the_viewers_events_and_the_queue_keeps_the_specs_order(r, cfg):
    model, n = Model(), 0
    joins = [_event(i, v, "join", T0 + f) for i, (v, f) in enumerate(FIRST.items())]
    n = len(joins)
    for e in joins:
        model.see(e)
    _apply(r, cfg, joins)
    claimed = keys.pair(ROOM, "cy")  # a lingered task's id
    at_made: dict[str, float] = {}
    for minute in range(4, 16):  # the dwell passes 3 minutes in the first of these: tasks are made
        ts = T0 + minute * MIN
        events = []
        for v in FIRST:
            typ = _act(v, minute)
            if typ is not None:
                events.append(_event(n, v, typ, ts))
                n += 1
        if minute == 4:
            model.made(ts)  # every viewer's dwell is past 3 minutes: every task is made in this batch
        for e in events:
            model.see(e)
        _apply(r, cfg, events)
        if minute == 4:
            at_made = {v: _card(r, v).priority for v in FIRST}
        if minute == 7:
            queue.Operator(r, SHOP, "ops-1").claim(claimed, now_ms=NOW)
        pending = [v for v in model.order() if v != "cy" or minute < 7]
        got = [keys.split_pair(m.decode())[1] for m in r.zrevrange(keys.queue(SHOP, "pending"), 0, -1)]
        assert got == pending, f"minute {minute}: queue {got}, the spec's order {pending}"
        for v in FIRST:
            card = _card(r, v)
            assert (card.priority, card.dwell_ms) == (round(model.priority(v), 2), model.dwell_ms(v)), (minute, v)
            c = model.counts[v]
            assert (card.comments, card.views, card.carts, card.likes) == (
                c["comment"], c["product_view"], c["cart_add"], c["likes"]), (minute, v)
            state = "claimed" if v == "cy" and minute >= 7 else "pending"
            assert card.state == state
            score = r.zscore(keys.queue(SHOP, state), keys.pair(ROOM, v))
            assert score == round(model.priority(v) * 20) * 1e7 + model.dwell_ms(v) // 1000, (minute, v)
    # every task's priority moved since it was made: each was rewritten, not left as made
    assert all(_card(r, v).priority > at_made[v] for v in FIRST)
    held = _card(r, "cy")
    assert held.holder == "ops-1" and held.said[0].startswith("cy says")
    # what the operator's list shows: the same order, priority then dwell
    listed = [t.viewer for t in queue.list_tasks(r, SHOP, "pending", now_ms=NOW, limit=10)]
    assert listed == [v for v in model.order() if v != "cy"]
