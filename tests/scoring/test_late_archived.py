"""No accepted event is ever dropped for arriving late (spec/events.md "Ordering and repeats"):
a feed whose frames arrive out of order while the scorer archives idle shows between batches
ends in the state the reference model gives for the same events, and resends after archiving
are repeats."""

from __future__ import annotations

import json
import random
import time

import pytest

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
