"""``engine._affected_rooms``: the rooms whose new-viewer or reactivated flag a viewer's change may
flip; the scorer recounts only those (a room's "new" and "reactivated" figures on the board and in
the review). Checked on random rooms and changes: every room left out keeps both flags."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanops.rules_settings import RuleSettings
from fanops.state import ViewerState
from scoring import rules
from scoring.engine import _affected_rooms

pytestmark = pytest.mark.pure

DAY = 86_400_000
S = RuleSettings()
spans = st.tuples(st.integers(0, 90), st.integers(0, 3)).map(lambda t: [t[0] * DAY, (t[0] + t[1]) * DAY])
rooms = st.dictionaries(st.sampled_from("abcde"), spans, min_size=1, max_size=5)
# a change: a room's last moves later, its first earlier, or a room is new
changes = st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from(("last", "first", "new")),
                             st.integers(1, 40)), max_size=3)


@settings(max_examples=500, deadline=None)
@given(before=rooms, change=changes)
def test_a_room_left_out_keeps_its_new_and_reactivated_flags(before, change):
    old = ViewerState(first_seen=min(f for f, _ in before.values()), last_active=0, rooms=before)
    after = {rm: list(span) for rm, span in before.items()}
    for rm, how, d in change:
        span = after.get(rm)
        if span is None or how == "new":
            if span is None:
                after[rm] = [d * DAY, d * DAY]
        elif how == "last":
            span[1] += d * DAY
        else:
            span[0] = max(0, span[0] - d * DAY)
    new = msgspec.structs.replace(old, rooms=after, first_seen=min(f for f, _ in after.values()))
    left_out = set(after) - _affected_rooms(old, new)
    for rm in left_out:
        assert rules.is_new_viewer(old, rm) == rules.is_new_viewer(new, rm), rm
        assert rules.is_reactivated(old, rm, S) == rules.is_reactivated(new, rm, S), rm


def test_a_later_event_in_the_only_room_recounts_nothing():
    old = ViewerState(first_seen=0, last_active=0, rooms={"a": [0, DAY]})
    new = msgspec.structs.replace(old, rooms={"a": [0, 2 * DAY]})
    assert _affected_rooms(old, new) == set()
