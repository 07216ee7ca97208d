"""The late-window rule (``scoring.followups.late_moment``): which (room, viewer) pairs a shop-clock
value arriving late could still change, checked against spec/tiers.md worked out from scratch.

A scorer that applies a late value t rescores only the pairs of the late-window index whose moment
lies in (the known clock value before t, t]; every other pair keeps the task state it has. So for
any viewer history, any set of known clock values and any late value t: if the follow-up the spec
gives with t known differs in state from the one without it, the pair must be in the index, at a
moment in that range. (The moment the task was made at may move earlier without a change of state:
that is not looked for, as the engine says.)  Pure: no Redis.
"""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import example, given, settings
from hypothesis import strategies as st

from fanops.rules_settings import RuleSettings
from fanops.schema import Comment, Consent, Event, Join, Leave, Order, Viewer
from fanops.state import RoomViewer, ViewerState
from scoring.followups import followup_target, late_moment
from scoring.merge import merge_room_viewer, merge_viewer

MIN = 60_000
S = RuleSettings()
SHORT = RuleSettings(present_minutes=2, followup_dwell_minutes=5)  # presence shorter than the dwell
KINDS = ("join", "leave", "comment", "order", "yes", "no")


def _event(i: int, kind: str, ts: int) -> Event:
    base = {"id": f"e{i:02d}", "room": "r", "ts": ts, "viewer": Viewer(id="v")}
    if kind == "join":
        return Join(**base)
    if kind == "leave":
        return Leave(**base)
    if kind == "comment":
        return Comment(**base, text="hi")
    if kind == "order":
        return Order(**base, order_id=f"o{i}", amount=5.0, currency="USD")
    return Consent(**base, dm=kind == "yes")


def _records(history: list[tuple[str, int]], s: RuleSettings = S) -> tuple[RoomViewer, ViewerState]:
    rv: RoomViewer | None = None
    v: ViewerState | None = None
    for i, (kind, ts) in enumerate(history):
        ev = _event(i, kind, ts)
        rv = merge_room_viewer(rv, ev, s)
        v = merge_viewer(v, ev)
    assert rv is not None and v is not None
    return rv, v


def _followup(history: list[tuple[str, int]], known: list[int],
              s: RuleSettings = S) -> tuple[RoomViewer, ViewerState, str]:
    """The pair's records after its events, scored at the clock ``max(known)`` with ``known`` the
    shop's clock values (the viewer's own events among them), as the scorer leaves them."""
    rv, v = _records(history, s)
    target, rv.task_at = followup_target(rv, v, max(known), s, known)
    rv.task = target
    return rv, v, target


moments = st.tuples(st.integers(0, 25), st.sampled_from((0, 1, 500, 59_999))).map(lambda x: x[0] * MIN + x[1])


@settings(max_examples=3000, deadline=None)
@given(history=st.lists(st.tuples(st.sampled_from(KINDS), moments), min_size=1, max_size=7),
       others=st.lists(moments, max_size=6), late=moments,
       s=st.sampled_from((S, SHORT)))
@example(history=[("join", 0), ("no", 4 * MIN)], others=[5 * MIN], late=3 * MIN, s=S)  # tests/test_scoring_late_race.py
@example(history=[("join", 0)], others=[20 * MIN], late=4 * MIN, s=S)  # present at 4:00, not at 20:00
@example(history=[("join", 0), ("order", 6 * MIN)], others=[10 * MIN], late=4 * MIN, s=S)  # task, then converted
@example(history=[("join", 0), ("comment", 3 * MIN)], others=[10 * MIN], late=5 * MIN, s=SHORT)  # present to the ms
def test_a_late_clock_value_that_changes_a_follow_up_finds_its_pair_in_the_late_window(history, others, late, s):
    """Also under a presence window shorter than the dwell (settings an operator may choose)."""
    own = [ts for _kind, ts in history]
    known = sorted(set(own) | set(others))
    if late in known or late > known[-1]:
        return  # not a late value: the shop knew it, or it moves the clock (not what this checks)
    rv, v, before = _followup(history, known, s)
    _rv, _v, after = _followup(history, sorted([*known, late]), s)
    g = late_moment(rv, v, s)
    if after != before:
        below = known[bisect_left(known, late) - 1] if bisect_left(known, late) > 0 else -1
        assert g is not None, f"{before} -> {after}: the pair is not in the late-window index"
        assert below < g <= late, "the pair is in the index, but outside the range the late value reads"


@settings(max_examples=300, deadline=None)
@given(history=st.lists(st.tuples(st.sampled_from(("join", "comment")), moments), min_size=1, max_size=5),
       leave_at=moments)
def test_a_viewer_who_left_before_their_dwell_moment_is_not_kept_in_the_index(history, leave_at):
    """Most of a live room joins and leaves within minutes: with no task possible at any late
    value, they take no room in the index. (A leave at the ts of their last other event is not
    later than it: spec/tiers.md counts them present.)"""
    events = [*history, ("leave", leave_at)]
    if leave_at > max(ts for _k, ts in history) and leave_at < min(ts for _k, ts in history) + S.dwell_ms:
        rv, v, target = _followup(events, sorted({ts for _k, ts in events} | {leave_at + 30 * MIN}))
        assert target == ""
        assert late_moment(rv, v, S) is None


def test_a_viewer_who_refused_dms_before_their_dwell_moment_is_not_kept_in_the_index():
    rv, v, target = _followup([("join", 0), ("no", MIN)], [0, MIN, 20 * MIN])
    assert target == ""
    assert late_moment(rv, v, S) is None
    # and one whose task's moment a late value would move, with no consent change around it
    rv, v, target = _followup([("join", 0), ("comment", MIN)], [0, MIN, 5 * MIN])
    assert (target, rv.task_at) == ("pending", 5 * MIN)
    assert late_moment(rv, v, S) is None
