"""v1.1 per-viewer data: addresses (``contact``), channel consents, and customer history.

Each channel's consent and each address is the value of the event with the largest (ts, id)
that names it (spec/events.md v1.1), so that late and reordered events give the same state;
the ``history`` room counts for the viewer and the clock but is never a show (spec/tiers.md
v1.1). Random event sets with every v1.1 case go through the real ingest path and real workers
in shuffled arrivals, and must give what the in-order run and ``tests/reference.py`` give.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanops import keys
from fanops.read import can_send, status, viewer_reach
from tests.reference import Reference
from tests.scoring.test_scoring_properties import (
    DAY,
    MIN,
    PROPS,
    SHOP,
    T0,
    Spec,
    arrivals,
    assert_same,
    build,
    expected,
    frames_of,
    in_order,
    run,
    without_duplicates,
)

V11 = ("join", "comment", "order", "consent", "contact", "contact", "chan", "chan", "hist", "hist", "hist_consent")
EMAILS = ("anna@example.com", "a.k@shop.de", "x@y.z")
PHONES = ("+4915123456789", "+12025550143")


def build11(starts: list[int], specs: list[Spec]) -> list[dict[str, Any]]:
    """``build`` with the v1.1 kinds: contact events, channel-only consents, history orders."""
    v1 = [s if s.type in ("join", "comment", "order", "consent") else Spec(s.room, s.viewer, "join", 0, 0, 0)
          for s in specs]
    out = build(starts, v1)
    for i, (s, e) in enumerate(zip(specs, out, strict=True)):
        k = s.variant
        if s.type == "contact":
            e.update(type="contact", **({"email": EMAILS[k % 3]} if k % 3 else {"phone": PHONES[k % 2]}))
            if k % 4 == 0:
                e["phone"] = PHONES[(k + 1) % 2]
        elif s.type == "chan":
            e.update(type="consent", dm=k % 2 == 0,  # dm is required (spec/events.md)
                     **{c: (k + j) % 3 == 0 for j, c in enumerate(("email", "whatsapp", "sms"))
                        if (k >> j) & 1 or j == 0})
        elif s.type in ("hist", "hist_consent"):
            # customer history: in the history room, up to 90 days before the first show
            e.update(room="history", ts=T0 - (1 + k * 9) * DAY + s.minute * MIN)
            if s.type == "hist":
                e.update(type="order", id=f"hist:v{s.viewer}:{k % 3 + 1}", order_id=f"hist:v{s.viewer}:{k % 3 + 1}",
                         amount=10.0 + k, currency="USD")
            else:
                e.update(type="consent", id=f"hist:v{s.viewer}:consent", dm=True, email=k % 2 == 0, sms=k % 3 == 0)
        e.setdefault("id", f"e{i}")
    return out


@st.composite
def event_sets11(draw) -> list[dict[str, Any]]:
    n_rooms, n_viewers = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    starts = draw(st.lists(st.sampled_from((0, 1, 20, 45)), min_size=n_rooms, max_size=n_rooms))
    spec = st.builds(Spec, room=st.integers(0, n_rooms - 1), viewer=st.integers(0, n_viewers - 1),
                     type=st.sampled_from(V11), minute=st.sampled_from((0, 1, 4, 12)),
                     jitter=st.sampled_from((0, 0, 1)), variant=st.integers(0, 9))
    evs = build11(starts, draw(st.lists(spec, min_size=3, max_size=20)))
    seen: set[tuple[str, str]] = set()  # a history event id is the same event: keep its first
    return [e for e in evs if (e["room"], e["id"]) not in seen and not seen.add((e["room"], e["id"]))]


def observe11(r, frames_events: list[dict[str, Any]]) -> dict[str, Any]:
    vids = sorted({e["viewer"]["id"] for e in frames_events})
    rooms = sorted(m.decode() for m in r.zrange(keys.rooms(SHOP), 0, -1))
    return {"reach": viewer_reach(r, SHOP, vids), "rooms": rooms}


def expected11(frames: list[str], events: list[dict[str, Any]]) -> dict[str, Any]:
    ref = Reference()
    ref.feed(frames, T0 + 400 * DAY)
    vids = sorted({e["viewer"]["id"] for e in events})
    return {"reach": {v: ref.viewer(SHOP, v)["reach"] for v in vids},  # type: ignore[index]
            "rooms": sorted({e["room"] for e in events} - {"history"})}


def _ref_status_expected(frames: list[str]) -> dict[str, Any]:
    want = expected(frames)
    want["rooms"].pop("history", None)  # the history room is never a show
    return want


@PROPS
@given(data=st.data(), events=event_sets11())
def test_reach_and_history_are_the_set_of_events_in_any_arrival(r, redis_url, tmp_path, data, events):
    frames = [json.dumps(e) for e in in_order(events)]
    got = run(r, redis_url, tmp_path, frames)
    assert_same(got, _ref_status_expected(frames), "in order vs the reference", events)
    assert_same(observe11(r, events), expected11(frames, events), "reach in order vs the reference", events)
    a = data.draw(arrivals(len(events), max_workers=2))
    shuffled = run(r, redis_url, tmp_path, frames_of(events, a), a.workers, a.worker_batch, a.seed)
    assert_same(without_duplicates(shuffled), without_duplicates(got), "shuffled vs in order", events)
    assert_same(observe11(r, events), expected11(frames, events), "reach shuffled vs the reference", events)


def _ev(i: int, ts: int, typ: str, room: str = "r1", vid: str = "u1", **kw: Any) -> dict[str, Any]:
    return {"id": f"e{i}", "room": room, "ts": ts, "type": typ, "viewer": {"id": vid}, **kw}


STORY = [  # one viewer's v1.1 story, in event time
    _ev(1, T0, "join"),
    _ev(2, T0 + 1000, "contact", email="anna@example.com"),
    _ev(3, T0 + 2000, "consent", dm=True, email=True),
    _ev(4, T0 + 3000, "consent", dm=True, sms=True),
    _ev(5, T0 + 4000, "contact", phone="+4915123456789"),
    _ev(6, T0 + 5000, "consent", dm=True, email=False),  # the latest to name email: refused
    _ev(7, T0 + 5000, "contact", email="anna.k@example.com"),
]


@pytest.mark.parametrize("order", [list(range(7)), list(range(6, -1, -1)), [3, 6, 0, 5, 1, 4, 2]])
def test_a_viewers_addresses_and_consents_follow_the_latest_event_naming_each(r, redis_url, tmp_path, order):
    run(r, redis_url, tmp_path, [json.dumps(STORY[i]) for i in order])
    got = viewer_reach(r, SHOP, ["u1", "nobody"])
    assert got == {"u1": {"email": "anna.k@example.com", "phone": "+4915123456789",
                          "consent": {"dm": True, "email": False, "whatsapp": None, "sms": True}}}
    assert [c for c in ("dm", "email", "whatsapp", "sms") if can_send(got["u1"], c)] == ["dm", "sms"]


def test_a_tie_in_ts_goes_to_the_larger_event_id(r, redis_url, tmp_path):
    evs = [_ev(1, T0, "consent", dm=True, whatsapp=True), _ev(2, T0, "consent", dm=True, whatsapp=False),
           _ev(3, T0, "contact", phone="+12025550143"), _ev(4, T0, "contact", phone="+4915123456789")]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0]):
        run(r, redis_url, tmp_path, [json.dumps(evs[i]) for i in order])
        reach = viewer_reach(r, SHOP, ["u1"])["u1"]
        assert reach["consent"]["whatsapp"] is False and reach["phone"] == "+4915123456789"


def test_a_history_buyer_is_no_new_viewer_and_history_is_no_show(r, redis_url, tmp_path):
    hist = [_ev(0, T0 - 40 * DAY, "order", room="history", order_id="hist:u1:1", amount=30, currency="USD"),
            _ev(1, T0 - 35 * DAY, "order", room="history", order_id="hist:u1:2", amount=30, currency="USD")]
    hist[0]["id"], hist[1]["id"] = "hist:u1:1", "hist:u1:2"
    show = [_ev(2, T0, "join"), _ev(3, T0 + 5 * MIN, "comment", vid="u2", text="hi")]
    frames = [json.dumps(e) for e in hist + show]
    got = run(r, redis_url, tmp_path, frames)
    assert got["shop"]["events_applied"] == 4
    assert list(got["rooms"]) == ["r1"]  # no room facts for history
    room = got["rooms"]["r1"]
    assert room["new_viewers"] == 1 and room["reactivated"] == 0  # u2 is new; u1 was a customer already
    assert got["tiers"]["u1"] == "active" and got["tasks"] == {"r1/u1": "pending"}  # u1 lingered 5 min
    assert status(r, SHOP, "history")["room"]["unique_viewers"] == 0
    assert_same(got, _ref_status_expected(frames), "history vs the reference")
