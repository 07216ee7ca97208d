"""No accepted event is ever dropped for arriving late (spec/events.md "Ordering and repeats"):
a feed whose frames arrive out of order while the scorer archives idle shows between batches
ends in the state the reference model gives for the same events, and resends after archiving
are repeats."""

from __future__ import annotations

import json
import random
import time

import pytest

from fanops import keys
from fanops import queue as fqueue
from fanops.config import Config
from fanops.read import status
from review import archive_files
from scoring import archive
from scoring.worker import Worker
from tests.conftest import SAMPLES
from tests.pipeline import differences, ingest_frames, lag, read_lines
from tests.reference import Reference

SHOP = "default"


def _rooms(ref: Reference) -> list[str]:
    return sorted({rm for (shop, rm, _id) in ref.events if shop == SHOP})


def _run_in_chunks(cfg, r, chunks: list[list[str]]) -> Worker:
    """Each chunk read by the consumer, applied, and then the idle shows archived (as a running
    scorer does every minute)."""
    w = Worker(r, cfg, name="w1")
    for chunk in chunks:
        ingest_frames(cfg, chunk)
        w.drain(timeout=120)
        w.archive_idle()
    return w


@pytest.mark.parametrize("seed", [1, 2])
def test_a_shuffled_feed_with_archiving_between_batches_equals_the_reference(cfg, r, seed: int) -> None:
    lines = read_lines(SAMPLES / "weeks-small.jsonl")
    rng = random.Random(seed)
    shuffled = lines[:]
    rng.shuffle(shuffled)  # every show's frames spread over the whole feed: each gets late events
    n = 8
    _run_in_chunks(cfg, r, [shuffled[i::n] for i in range(n)])
    assert lag(r, SHOP) == 0
    ref = Reference()
    ref.feed(shuffled, int(time.time() * 1000))
    rooms = _rooms(ref)
    assert archive.is_archived(r, SHOP, rooms), "some shows were archived along the way"
    for rm in rooms:
        diff = differences(status(r, SHOP, rm), ref.status(SHOP, rm))
        assert not diff, f"room {rm}: {diff}"
    # every archived show's file set holds all its events (its generations merged)
    for rm in archive.is_archived(r, SHOP, rooms):
        a = archive_files.read_room(cfg, SHOP, rm)
        want = sum(1 for (shop, room, _id) in ref.events if shop == SHOP and room == rm)
        assert a.info.events == want, rm
        assert a.events().select("id").collect()["id"].n_unique() == want


def test_a_resent_feed_after_every_show_is_archived_changes_nothing_but_duplicates(cfg, r) -> None:
    lines = read_lines(SAMPLES / "weeks-small.jsonl")
    _run_in_chunks(cfg, r, [lines])
    ref = Reference()
    ref.feed(lines, int(time.time() * 1000))
    rooms = _rooms(ref)
    before = {rm: status(r, SHOP, rm) for rm in rooms}
    rng = random.Random(7)
    again = lines[:]
    rng.shuffle(again)
    _run_in_chunks(cfg, r, [again[i::3] for i in range(3)])
    for rm in rooms:
        after = status(r, SHOP, rm)
        assert after["events_applied"] == before[rm]["events_applied"]
        assert after["room"] == before[rm]["room"] and after["tiers"] == before[rm]["tiers"], rm
    assert after["duplicates"] > before[rooms[0]]["duplicates"]
    sent = sum(1 for (shop, _rm, _id) in ref.events if shop == SHOP) + ref.status(SHOP, rooms[0])["duplicates"]
    assert after["duplicates"] - before[rooms[0]]["duplicates"] == sent, "every resent event is a repeat"
    assert json.dumps(after["tiers"]) == json.dumps(ref.status(SHOP, rooms[0])["tiers"])


def test_a_late_refusal_earlier_than_a_task_of_an_archived_show_takes_the_task_back(cfg, r) -> None:
    """A viewer refused DMs in show A; the refusal arrives late, after a later show B made them a
    task (their consent then looked unknown) and both shows were archived. Had the refusal come in
    order, B would have made no task (spec/tiers.md: `dm_consent` is not `false` when it is made):
    B is opened again and its task taken back, as the reference gives. (Found by a shuffled
    simulated feed through the whole product, tests/scoring/test_late_processes.py.)"""
    day, m, t = 86_400_000, 60_000, 1_760_000_000_000
    v, w = {"id": "v"}, {"id": "w"}
    refusal = {"id": "a2", "room": "A", "ts": t + 10_000, "type": "consent", "dm": False, "viewer": v}
    feed = [{"id": "a1", "room": "A", "ts": t, "type": "join", "viewer": v},
            {"id": "a3", "room": "A", "ts": t + 5 * m, "type": "comment", "text": "hi", "viewer": v},
            {"id": "b1", "room": "B", "ts": t + 10 * day, "type": "join", "viewer": v},
            {"id": "b2", "room": "B", "ts": t + 10 * day + 5 * m, "type": "like", "viewer": v},
            {"id": "b3", "room": "B", "ts": t + 10 * day + 6 * m, "type": "join", "viewer": w},
            {"id": "c1", "room": "C", "ts": t + 20 * day, "type": "join", "viewer": w}]
    w_ = _run_in_chunks(cfg, r, [[json.dumps(feed)]])
    assert archive.is_archived(r, SHOP, ["A", "B"]) == {"A", "B"}
    assert status(r, SHOP, "B")["room"]["followups"]["pending"] == 1  # made: no refusal known yet
    ingest_frames(cfg, [json.dumps([refusal])])
    w_.drain(timeout=120)
    w_.archive_idle()
    ref = Reference()
    ref.feed([json.dumps(feed + [refusal])], int(time.time() * 1000))
    assert ("B", "v") not in ref.followups(SHOP)
    for rm in ("A", "B", "C"):
        diff = differences(status(r, SHOP, rm), ref.status(SHOP, rm))
        assert not diff, f"room {rm}: {diff}"
# --- a late consent of a viewer whose later show is archived ----------------------------------
T0 = 1_760_000_000_000  # the first show; the second is two days later
T1 = T0 + 2 * 86_400_000


def _ev(i: str, room: str, ts: int, kind: str, viewer: str, **kw: object) -> dict[str, object]:
    return {"id": i, "room": room, "shop": SHOP, "ts": ts, "type": kind, "viewer": {"id": viewer}, **kw}


@pytest.mark.parametrize("dm, first_consent", [(False, []), (True, [False])], ids=["refusal", "grant"])
def test_a_late_consent_before_an_archived_show_changes_its_follow_up_as_in_order(
        cfg, r, dm: bool, first_consent: list[bool]) -> None:
    """A viewer lingers in show B without buying; their DM consent from an earlier show A arrives
    only once B is archived (the clock went past B's idle time on show C). In order, B's task
    follows that consent: none after a refusal, pending after a grant that undoes an older refusal.
    Late, the task must be the same (it was: pending after the refusal, none after the grant)."""
    early = [_ev("a-0", "show-a", T0, "consent", "v1", dm=False) for _ in first_consent]
    show_b = [_ev("b-1", "show-b", T1, "join", "v1"), _ev("b-2", "show-b", T1 + 240_000, "comment", "v1", text="hi"),
              _ev("b-3", "show-b", T1 + 300_000, "like", "v1", count=2)]
    show_c = [_ev("c-1", "show-c", T1 + 7_200_000, "join", "v2")]
    late = [_ev("a-1", "show-a", T0 + 60_000, "consent", "v1", dm=dm)]
    chunks = [[json.dumps(early + show_b + show_c)], [json.dumps(late)]]
    w = Worker(r, cfg, name="w1")
    ingest_frames(cfg, chunks[0])
    w.drain(timeout=60)
    assert ("default", "show-b") in w.archive_idle(), "show B is archived before the consent comes"
    ingest_frames(cfg, chunks[1])
    w.drain(timeout=60)
    ref = Reference()
    ref.feed([ln for ch in chunks for ln in ch], int(time.time() * 1000))
    want = {pair: t["state"] for pair, t in ref.followups(SHOP).items()}
    assert want.get(("show-b", "v1")) == (None if dm is False else "pending"), "the reference says so"
    got = {}
    for state in ("pending", "claimed", "converted", "withdrawn"):
        for m in r.zrange(keys.queue(SHOP, state), 0, -1):
            if m[:1].isdigit():  # the lingered tasks (the reference's followups); other kinds' ids say their kind
                got[tuple(keys.split_pair(m.decode()))] = state
    assert got == want
    for rm in ("show-a", "show-b", "show-c"):
        diff = differences(status(r, SHOP, rm), ref.status(SHOP, rm))
        assert not diff, f"room {rm}: {diff}"


def test_a_show_whose_settled_tasks_were_pruned_opened_again_makes_no_task_twice(cfg, r) -> None:
    """Show B is archived; the operators send one of its follow-ups and skip another; the settled
    tasks are pruned from Redis (``prune_followups``). Late events of B then open it again: one of
    the sent task's viewer, one of a new viewer who lingers. The sent and skipped tasks are not made
    again (they stay settled, counted once), the new viewer gets their task, and the next
    generation of B's archive holds all three, once each."""
    show_b = [_ev("b-1", "show-b", T1, "join", "v1"), _ev("b-2", "show-b", T1 + 240_000, "comment", "v1", text="hi"),
              _ev("b-3", "show-b", T1 + 10_000, "join", "v3"),
              _ev("b-4", "show-b", T1 + 250_000, "like", "v3", count=1)]
    show_c = [_ev("c-1", "show-c", T1 + 7_200_000, "join", "v2")]
    w = Worker(r, cfg, name="w1")
    ingest_frames(cfg, [json.dumps(show_b + show_c)])
    w.drain(timeout=60)
    assert ("default", "show-b") in w.archive_idle()
    gen = archive_files.read_room(cfg, SHOP, "show-b").info.generation
    op = fqueue.Operator(r, SHOP, "bo")
    op.claim(keys.pair("show-b", "v1"))
    op.mark_sent(keys.pair("show-b", "v1"))
    op.claim(keys.pair("show-b", "v3"))
    op.skip(keys.pair("show-b", "v3"), "asked not to")
    assert archive.prune_followups(r, cfg, SHOP) == 2
    assert not r.hlen(keys.tasks(SHOP, "show-b")), "the settled tasks left Redis"

    late = [_ev("b-5", "show-b", T1 + 200_000, "comment", "v1", text="again"),
            _ev("b-6", "show-b", T1 + 20_000, "join", "v4"), _ev("b-7", "show-b", T1 + 260_000, "like", "v4", count=3)]
    ingest_frames(cfg, [json.dumps(late)])
    w.drain(timeout=60)
    assert "show-b" not in archive.is_archived(r, SHOP, ["show-b"]), "the late events opened show B again"
    queued = {s: sorted(m.decode() for m in r.zrange(keys.queue(SHOP, s), 0, -1)) for s in ("pending", "claimed")}
    assert queued == {"pending": [keys.pair("show-b", "v4")], "claimed": []}
    followups = status(r, SHOP, "show-b")["room"]["followups"]
    assert (followups["pending"], followups["sent"], followups["skipped"]) == (1, 1, 1), followups

    assert ("default", "show-b") in w.archive_idle()
    a = archive_files.read_room(cfg, SHOP, "show-b")
    assert a.info.generation > gen
    rows = a.followups().select("viewer", "state").sort("viewer").collect().rows()
    assert rows == [("v1", "sent"), ("v3", "skipped"), ("v4", "pending")]
    assert a.info.events == 7


def test_resends_of_a_show_opened_again_are_repeats_whether_accepted_before_or_after_it_opened(
        r, redis_url: str, tmp_path) -> None:
    """Show B is archived (its dedupe table goes with its raw data). A new late event of it is
    accepted, then a resend of one of its archived events; a scorer applying one stream entry a
    batch opens B again with the first, and must still know the second (accepted before B opened)
    for a repeat. Once B is open, the consumer itself knows B's archived events and the late one:
    their resends never reach the stream."""
    cfg = Config.from_env({}, redis_url=redis_url, data_dir=tmp_path / "data", flush_ms=5, worker_batch=1)
    show_b = [_ev("b-1", "show-b", T1, "join", "v1"), _ev("b-2", "show-b", T1 + 240_000, "comment", "v1", text="hi"),
              _ev("b-3", "show-b", T1 + 300_000, "like", "v1", count=2)]
    show_c = [_ev("c-1", "show-c", T1 + 7_200_000, "join", "v2")]
    w = Worker(r, cfg, name="w1")
    ingest_frames(cfg, [json.dumps(show_b + show_c)])
    w.drain(timeout=60)
    assert ("default", "show-b") in w.archive_idle()
    late = _ev("b-9", "show-b", T1 + 100_000, "comment", "v1", text="late")
    ingest_frames(cfg, [json.dumps([late])])  # one stream entry each, both accepted while B is archived
    ingest_frames(cfg, [json.dumps([show_b[1]])])
    w.drain(timeout=60)
    assert "show-b" not in archive.is_archived(r, SHOP, ["show-b"]), "the late event opened B again"
    assert _counted(r, "show-b") == {"join": 1, "comment": 2, "like": 1}, "the resend accepted before B opened"
    assert status(r, SHOP)["duplicates"] == 1

    accepted = int(r.hget(keys.stats(SHOP), "accepted"))
    c = ingest_frames(cfg, [json.dumps([show_b[0], late, show_b[2]])])
    assert c.counters.duplicates == 3 and int(r.hget(keys.stats(SHOP), "accepted")) == accepted, \
        "the consumer knows B's events again"
    w.drain(timeout=60)
    assert _counted(r, "show-b") == {"join": 1, "comment": 2, "like": 1}
    assert (status(r, SHOP)["duplicates"], lag(r, SHOP)) == (4, 0)


def _counted(r, room: str) -> dict[str, int]:
    """The room's applied events by type, as its counters hold them."""
    h = r.hgetall(keys.room(SHOP, room))
    return {k.decode()[2:]: int(v) for k, v in h.items() if k.startswith(b"n:") and int(v)}
