"""``followups.task_time`` answers with the first known clock value at or after the dwell horizon
when that one passes (the usual case) without listing every candidate; the answer is the spec's
t0 all the same: compared here with the plain search over every candidate (the code before),
on records built by the real merge from random events, at random clocks and known clock values."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanops.rules_settings import RuleSettings
from fanops.schema import parse_event
from fanops.state import RoomViewer, ViewerState
from scoring.followups import consent_at, dwell_reached, task_time
from scoring.merge import merge_room_viewer, merge_viewer

pytestmark = pytest.mark.pure

T0 = 1_735_689_600_000
S = RuleSettings()
TYPES = ("join", "leave", "comment", "like", "consent", "order")


def known_after(x: int, clock_values: Sequence[int], rv: RoomViewer, v: ViewerState) -> int | None:
    """The first known clock value at or after ``x``: every value the batch and the pair's records
    know, listed."""
    own = [ts for ts, _ in rv.early] + ([rv.after] if rv.after >= 0 else []) + [c.ts for c in v.consents]
    if rv.task_at >= 0:
        own.append(rv.task_at)
    return min((t for t in [*clock_values, *own] if t >= x), default=None)


def every_candidate(rv: RoomViewer, v: ViewerState, clock: int, s: RuleSettings,
                    clock_values: Sequence[int]) -> int | None:
    """t0 by the definition: every candidate, sorted, the first that passes."""
    if clock < rv.first + s.dwell_ms:
        return None
    horizon = rv.first + s.dwell_ms
    triggers = [horizon] + ([rv.after] if rv.after >= 0 else []) + [c.ts for c in v.consents if c.dm]
    cands = sorted({t for t in (known_after(x, clock_values, rv, v) for x in triggers)
                    if t is not None and t <= clock})
    for t in cands:
        if 0 <= rv.first_order <= t:
            return None
        if consent_at(v, t) is False or not dwell_reached(rv, t, s):
            continue
        return t
    return None


def _event(i: int, typ: str, second: int) -> dict:
    e = {"id": f"e-{i}", "room": "r", "ts": T0 + second * 1000, "type": typ, "viewer": {"id": "v"}}
    if typ == "comment":
        e["text"] = "hi"
    elif typ == "like":
        e["count"] = 1
    elif typ == "consent":
        e["dm"] = i % 3 != 0
    elif typ == "order":
        e.update(order_id=f"o-{i}", amount=1, currency="USD")
    return e


feeds = st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 1500)), min_size=1, max_size=14)


@settings(max_examples=400, deadline=None)
@given(feed=feeds, others=st.lists(st.integers(0, 1800), max_size=12), clock_s=st.integers(0, 1900),
       dwell_min=st.sampled_from((1, 3, 5)), present_min=st.sampled_from((1, 2, 10)),
       task_at_s=st.one_of(st.none(), st.integers(0, 1900)))
def test_the_first_known_value_past_the_horizon_is_the_same_t0_as_the_search_over_every_candidate(
        feed, others, clock_s, dwell_min, present_min, task_at_s):
    s = RuleSettings(followup_dwell_minutes=dwell_min, present_minutes=present_min)
    rv, v = None, None
    for i, (typ, second) in enumerate(feed):
        ev = parse_event(json.dumps(_event(i, typ, second)).encode(), T0 + 10**9, 10**9)
        v = merge_viewer(v, ev)
        rv = merge_room_viewer(rv, ev, s)
    assert rv is not None and v is not None
    if task_at_s is not None:  # the clock value a task was made at, found in a batch long gone
        rv.task_at = T0 + task_at_s * 1000
    clock = max(rv.last, T0 + clock_s * 1000)
    known = sorted({T0 + x * 1000 for x in others if T0 + x * 1000 <= clock} | {clock})
    assert task_time(rv, v, clock, s, known) == every_candidate(rv, v, clock, s, known)
