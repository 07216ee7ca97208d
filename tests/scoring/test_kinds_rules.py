"""The follow-up kinds' rules (scoring.kinds), pure: whatever order a viewer's events are merged
in, the kind tasks equal the reference's (tests/reference_kinds.py) over the set of them;
and the packed state keeps what the rules need."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fanops.rules_settings import RuleSettings
from fanops.schema import BadInput, parse_frame
from fanops.state import pack, unpack_viewer
from scoring import kinds
from scoring.merge import merge_viewer
from tests.reference_kinds import kind_tasks

DAY = 86_400_000
T0 = 1_735_689_600_000
S = RuleSettings()
# days with gaps of more and less than 30 days between them, and exactly 30 (not dormant: the event
# is at the moment)
DAYS = (0, 1, 5, 29, 30, 31, 45, 61, 62, 95)
ROOMS = ("r1", "r2", "history")


def event(i: int, day: int, room: str, kind: int, minute: int) -> dict:
    e = {"id": f"e{i}", "room": room, "ts": T0 + day * DAY + minute * 60_000, "viewer": {"id": "v"}}
    if kind in (0, 1):
        e.update(type="order", order_id=f"o{kind + (minute % 2)}", amount=5, currency="EUR")
    elif kind == 2:
        e.update(type="consent", dm=minute % 3 != 0)
    else:
        e.update(type="join")
    return e


events_st = st.lists(st.builds(event, st.just(0), st.sampled_from(DAYS), st.sampled_from(ROOMS),
                               st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=10)


def merged(evs: list[dict], seed: int):
    parsed = parse_frame(json.dumps(evs).encode(), T0 + 400 * DAY)
    assert not any(isinstance(x, BadInput) for x in parsed)
    random.Random(seed).shuffle(parsed)
    v = None
    for ev in parsed:
        b4 = kinds.before(v, ev, S)
        v = merge_viewer(v, ev)
        kinds.track(v, b4, ev, S)
        v = unpack_viewer(pack(v))  # as a batch boundary: written and read back
    return v


@settings(max_examples=300, deadline=None)
@given(events_st, st.integers(0, 1000), st.sampled_from((0, 10, 40)))
def test_kind_tasks_do_not_depend_on_the_order_events_arrive_in(evs, seed, later):
    evs = [dict(e, id=f"e{i}") for i, e in enumerate(evs)]
    now = max(e["ts"] for e in evs) + later * DAY  # other viewers moved the clock on
    v = merged(evs, seed)
    got = {k: st_ for k, (st_, _room, _at) in kinds.targets(v, now, S).items()}
    assert got == kind_tasks(evs, now)


def test_the_cases_the_rules_name_are_in_the_examples():
    """Not vacuous: the reference gives every kind and state on a hand-made set."""
    evs = [event(0, 0, "r1", 0, 0), event(1, 45, "r2", 3, 0), event(2, 95, "r1", 2, 1)]
    assert kind_tasks(evs, T0 + 200 * DAY) == {
        ("thank_first_order", 0): "pending", ("after_sales", 0): "pending",
        ("win_back", T0 + 30 * DAY): "withdrawn", ("win_back", T0 + 75 * DAY): "withdrawn",
        ("win_back", T0 + 125 * DAY + 60_000): "pending"}


def test_a_viewer_with_no_order_and_no_long_gap_costs_no_byte_more():
    v = merged([event(0, 0, "r1", 3, 0), event(1, 5, "r2", 3, 0)], 0)
    assert v.fol == []
    v = merged([event(0, 0, "r1", 3, 0), event(1, 45, "r1", 3, 0)], 0)
    assert v.fol == [[], [[T0, T0 + 45 * DAY, 0]], []]  # the gap is kept: an order may arrive late


def test_a_buyer_scored_before_the_kinds_gets_no_thank_you_for_a_later_order_but_a_win_back():
    from fanops.state import ViewerState

    old = ViewerState(first_seen=T0, last_active=T0, rooms={"r1": [T0, T0]}, orders=["o-old"])  # no ``fol``
    later = parse_frame(json.dumps(event(1, 1, "r2", 0, 0)).encode(), T0 + 400 * DAY)[0]
    b4 = kinds.before(old, later, S)
    v = merge_viewer(old, later)
    kinds.track(v, b4, later, S)
    assert kinds.targets(v, T0 + 10 * DAY, S) == {}  # neither a thank-you nor an after-sales check
    assert [k for k, _occ in kinds.targets(v, T0 + 40 * DAY, S)] == ["win_back"]
    fresh = merge_viewer(None, later)
    kinds.track(fresh, None, later, S)
    assert ("thank_first_order", 0) in kinds.targets(fresh, T0 + 2 * DAY, S)  # a new viewer's first order


def test_a_longer_dormant_setting_drops_the_shorter_past_spells():
    v = merged([event(0, 0, "r1", 0, 0), event(1, 45, "r1", 3, 0), event(2, 50, "r1", 3, 0)], 0)
    assert [k for k in kinds.targets(v, T0 + 60 * DAY, S) if k[0] == "win_back"] == [("win_back", T0 + 30 * DAY)]
    longer = RuleSettings(dormant_days=60)
    assert [k for k in kinds.targets(v, T0 + 60 * DAY, longer) if k[0] == "win_back"] == []
