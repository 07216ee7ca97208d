"""Packed viewer states keep their timestamps relative to a base, and the tier and follow-up
state as a letter (``fanops.state.pack``): every state reads back as it was, states packed by
earlier versions still read, and a live show's records take fewer bytes."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from fanops.state import (
    Consent,
    Mark,
    RoomViewer,
    ViewerState,
    pack,
    pack_runs,
    packed_past_numbers,
    past_numbers,
    room_viewer_first,
    room_viewer_may_be_held,
    unpack_room_viewer,
    unpack_viewer,
)

T0 = 1_763_856_000_000
ts = st.integers(min_value=T0 - 10**9, max_value=T0 + 10**11)
maybe = st.one_of(st.just(-1), ts)

viewers = st.builds(
    ViewerState, first_seen=ts, last_active=ts,
    rooms=st.dictionaries(st.text(min_size=1, max_size=12), st.lists(ts, min_size=2, max_size=2), max_size=4),
    orders=st.lists(st.text(max_size=6), max_size=3),
    consents=st.lists(st.builds(Consent, ts=ts, id=st.text(max_size=5), dm=st.booleans()), max_size=3),
    name=st.one_of(st.none(), st.text(max_size=10)), profile_ts=maybe,
    tier=st.sampled_from(["", "new_fan", "first_buyer", "active", "dormant"]),
    seq=st.integers(0, 10**6), past=st.lists(st.integers(0, 10**10), max_size=4), past_last=maybe,
    past_nos=st.lists(st.integers(0, 50), max_size=4),
    reach=st.lists(st.builds(Mark, what=st.sampled_from(["email", "phone", "c:sms"]), ts=ts, id=st.text(max_size=5),
                             value=st.one_of(st.booleans(), st.text(max_size=8))), max_size=3))
room_viewers = st.builds(
    RoomViewer, first=ts, last=ts, last_other=maybe, last_leave=maybe, comments=st.integers(0, 99),
    first_order=maybe, early=st.lists(st.tuples(ts, st.integers(0, 1)).map(list), max_size=5), after=maybe,
    gift_value=st.one_of(st.just(0.0), st.floats(0, 1e6)),
    task=st.sampled_from(["", "pending", "converted", "withdrawn"]), task_at=maybe, held_by=maybe)


@settings(max_examples=300, deadline=None)
@given(v=viewers, rv=room_viewers)
def test_every_state_reads_back_as_it_was_packed(v: ViewerState, rv: RoomViewer) -> None:
    assert unpack_viewer(pack(v)) == v
    assert unpack_room_viewer(pack(rv)) == rv
    assert room_viewer_first(pack(rv)) == rv.first  # what the scorer reads of a record without decoding it
    # and of a state, when it opens an archived show again: the archived rooms it folded
    v = msgspec.structs.replace(v, past_nos=pack_runs(v.past_nos))
    assert packed_past_numbers(pack(v)) == past_numbers(v)


@settings(max_examples=100, deadline=None)
@given(v=viewers, rv=room_viewers)
def test_states_packed_by_earlier_versions_still_read(v: ViewerState, rv: RoomViewer) -> None:
    # earlier versions wrote every ts as it is, with no trailing ``rel`` field
    enc = msgspec.msgpack.Encoder()
    v = msgspec.structs.replace(v, reach=[])  # nor addresses or channel consents (v1.1)
    rv = msgspec.structs.replace(rv, held_by=-1)  # nor the send that held its task back (7-day rule)
    old_v = enc.encode(msgspec.structs.astuple(v)[:-2])
    old_rv = enc.encode(msgspec.structs.astuple(rv)[:-2])
    assert unpack_viewer(old_v) == v
    assert unpack_room_viewer(old_rv) == rv


def test_a_live_shows_records_pack_in_fewer_bytes() -> None:
    rv = RoomViewer(T0, T0 + 90_000, T0 + 90_000, comments=2, views=1, task="pending", task_at=T0 + 180_000,
                    early=[[T0, 0], [T0 + 30_000, 0], [T0 + 60_000, 0], [T0 + 90_000, 0]])
    v = ViewerState(T0, T0 + 90_000, {"r-2026-11-22-a": [T0, T0 + 90_000]}, name="Anna K", country="US",
                    lang="en", tz="America/Chicago", profile_ts=T0, tier="new_fan", seq=3)
    enc = msgspec.msgpack.Encoder()
    assert len(pack(rv)) <= 0.7 * len(enc.encode(rv))
    assert len(pack(v)) <= 0.85 * len(enc.encode(v))


def test_a_record_with_no_task_held_back_costs_no_byte_more() -> None:
    rv = RoomViewer(T0, T0 + 90_000, T0 + 90_000, comments=2, early=[[T0, 0], [T0 + 90_000, 0]])
    packed = pack(rv)
    assert len(msgspec.msgpack.decode(packed)) == 22  # up to ``rel``
    assert not room_viewer_may_be_held(packed)  # the scorer decodes no such record to look for one
    rv.held_by = T0 - 86_400_000
    assert unpack_room_viewer(pack(rv)) == rv and len(pack(rv)) > len(packed)
    assert room_viewer_may_be_held(pack(rv))


def test_a_viewer_who_never_sent_contact_or_consent_costs_no_byte_more() -> None:
    v = ViewerState(T0, T0 + 90_000, {"r-2026-11-22-a": [T0, T0 + 90_000]}, name="Anna K", tier="new_fan", seq=3)
    packed = pack(v)
    assert len(msgspec.msgpack.decode(packed)) == 18  # the v1 fields, none for v1.1
    v.reach = [Mark("email", T0 + 1, "e-9", "anna@example.com")]
    assert unpack_viewer(pack(v)) == v and len(pack(v)) > len(packed)


def test_the_archived_rooms_of_a_state_from_before_they_were_kept_are_none() -> None:
    # ViewerState had 13 fields before the archived rooms' numbers (past_nos) were kept
    old = msgspec.msgpack.Encoder().encode(msgspec.structs.astuple(ViewerState(T0, T0 + 5, {"r-1": [T0, T0 + 5]}))[:13])
    assert packed_past_numbers(old) == past_numbers(unpack_viewer(old)) == []
