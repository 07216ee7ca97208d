"""A late clock value applied by one scorer while another scorer applies a consent change of a
viewer in its own partition (found by review, 2026-11-24).

Neither batch touches the other's viewers, so no compare-and-set on a viewer conflicts: the scorer
of the late value reads the late-window index before the pair is put there, and the scorer of the
consent change reads the per-second clock index before the late value is written to it. Unless
apply.lua checks both reads again, the late value is lost for that pair and its task disagrees
with spec/tiers.md (it was, until the late-window index)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fanops import keys
from fanops.read import status
from fanops.state import unpack_task
from scoring.worker import Worker
from scoring.writeset import ScoredBatch
from tests.scoring.test_scoring_properties import ingest
from tests.scoring.test_scoring_scenarios import SHOP, Story, at

V, W, X = "shy", "someone-else", "x"  # partitions 0, 2 and 3


@pytest.fixture
def story(r, cfg) -> Story:
    return Story(r, cfg)


class Pinned(Worker):
    """A scorer that reads only the given partitions (as `scoring run` does among others)."""

    def __init__(self, *a: Any, parts: list[int], **k: Any) -> None:
        super().__init__(*a, partitions=parts, **k)


class Overtaken(Pinned):
    """Between this scorer's reads and its write, another scorer applies a batch of its own."""

    other: Worker | None = None

    def score(self, shop: str, all_events: Any) -> ScoredBatch:
        got = super().score(shop, all_events)
        if self.other is not None:
            o, self.other = self.other, None
            o.drain(timeout=30)
        return got


def _setup(story: Story) -> None:
    assert (keys.part_of(V), keys.part_of(W), keys.part_of(X)) == (0, 2, 3)
    story.event(V, "join", "r-1", at(minutes=0))
    story.event(X, "like", "r-1", at(minutes=5))  # the clock jumps 0:00 -> 5:00
    assert story.task_state("r-1", V) == "pending"  # made at 5:00, the first clock value past 3:00


def _late(story: Story) -> None:
    # W's like at 3:00 arrives late (a clock value the shop had not seen), and V refuses DMs at 4:00
    ingest(story.cfg, [json.dumps(story.say(W, "like", "r-1", at(minutes=3), count=1)),
                       json.dumps(story.say(V, "consent", "r-1", at(minutes=4), dm=False))])


def test_one_scorer_makes_the_task_at_the_late_tick_and_withdraws_it(story):
    _setup(story)
    _late(story)
    story.worker.drain(timeout=30)
    assert status(story.r, SHOP)["lag"] == 0
    # spec: the task is made at 3:00 (dwell exactly 3 min, consent unknown) and the no at 4:00 withdraws it
    assert story.task_state("r-1", V) == "withdrawn"


@pytest.mark.parametrize("overtaken", ["late value", "consent change"])
def test_two_scorers_give_the_same_state_as_one(story, overtaken):
    """Each scorer reads before the other writes, whichever writes first: the one that writes second
    finds that the other changed what it read (the clock values in the window of a pair it puts in
    the late-window index, or the pairs in that index that its late value concerns), and scores
    its batch again."""
    _setup(story)
    _late(story)
    if overtaken == "late value":
        b = Pinned(story.r, story.cfg, name="b", parts=[0, 1])  # V's partition
        a = Overtaken(story.r, story.cfg, name="a", parts=[2, 3])  # W's partition
        a.other = b
        first, second = a, b
    else:
        a = Pinned(story.r, story.cfg, name="a", parts=[2, 3])
        b = Overtaken(story.r, story.cfg, name="b", parts=[0, 1])
        b.other = a
        first, second = b, a
    first.drain(timeout=30)
    second.drain(timeout=30)
    assert status(story.r, SHOP)["lag"] == 0
    assert first.stats.conflicts == 1 and second.stats.conflicts == 0  # scored again once, after the other's write
    b_ = story.r.hget(keys.tasks(SHOP, "r-1"), V)
    assert (unpack_task(b_).state if b_ else None) == "withdrawn"


def _late_window(r: Any) -> dict[str, float]:
    return {m.decode(): sc for part in range(keys.PARTITIONS)
            for m, sc in r.zrange(keys.late_window(SHOP, part), 0, -1, withscores=True)}


def _three_who_got_no_task(story: Story) -> None:
    for who in ("lurker", "leaver", "refuser"):
        story.event(who, "join", "r-1", at(minutes=0))
    story.event("leaver", "leave", "r-1", at(minutes=1))
    story.event("refuser", "consent", "r-1", at(minutes=1), dm=False)
    story.advance(at(minutes=20))  # the first clock value past their 3 minutes: none is present
    assert [story.task_state("r-1", who) for who in ("lurker", "leaver", "refuser")] == [None] * 3


def test_only_the_pairs_a_late_value_would_change_wait_in_the_index(story):
    """A room's crowd mostly leaves within minutes or says no to DMs: no late value can make them a
    task, and they take no room in Redis for it. The lurker, present at 3 to 10 minutes, can."""
    _three_who_got_no_task(story)
    assert _late_window(story.r) == {keys.pair("r-1", "lurker"): at(minutes=3)}
    story.advance_late(at(minutes=4))
    assert [story.task_state("r-1", who) for who in ("lurker", "leaver", "refuser")] == ["pending", None, None]
    assert _late_window(story.r) == {}  # its task made, with no consent change around it


def test_a_shop_upgraded_from_layout_4_keeps_the_pairs_a_late_value_would_change(story):
    """Layout 4 kept every pair past its dwell moment with no task in an open-lurk index, by the end
    of its presence window. A scorer of this version moves the ones that need it to the late-window
    index once, and a late value then finds them."""
    from scoring import migrate

    _three_who_got_no_task(story)
    r = story.r
    r.delete(*(keys.late_window(SHOP, p) for p in range(keys.PARTITIONS)))
    for who in ("lurker", "leaver", "refuser"):  # as layout 4 left them
        r.zadd(keys.open_lurk(SHOP, keys.part_of(who)), {keys.pair("r-1", who): at(minutes=10)})
    r.hset(keys.stats(SHOP), "layout", 4)
    story.worker = Worker(r, story.cfg, name="upgraded")
    story.advance_late(at(minutes=2))  # a late value the pairs do not care about; the scorer migrates first
    assert int(r.hget(keys.stats(SHOP), "layout")) == migrate.LAYOUT
    assert not any(r.exists(keys.open_lurk(SHOP, p)) for p in range(keys.PARTITIONS))
    assert _late_window(r) == {keys.pair("r-1", "lurker"): at(minutes=3)}
    story.advance_late(at(minutes=4))
    assert [story.task_state("r-1", who) for who in ("lurker", "leaver", "refuser")] == ["pending", None, None]


def test_a_new_dwell_threshold_moves_the_pairs_of_the_index_to_their_new_moment(story):
    from fanops import rules_store

    _three_who_got_no_task(story)
    rules_store.save(story.r, SHOP, {"followup_dwell_minutes": 5})
    story.advance(at(minutes=21))  # scored under the new rules (the scorer rebuilds first)
    assert _late_window(story.r) == {keys.pair("r-1", "lurker"): at(minutes=5)}
    story.advance_late(at(minutes=4))  # 4 minutes of dwell: not enough now
    assert story.task_state("r-1", "lurker") is None
    story.advance_late(at(minutes=6))
    assert story.task_state("r-1", "lurker") == "pending"


class OvertakenAfterClockRead(Pinned):
    """Another scorer applies a batch right after this one read the shop clock, before it reads the
    time indexes and the (room, viewer) records."""

    other: Worker | None = None

    def after_clock_read(self, shop: str) -> None:
        if self.other is not None:
            o, self.other = self.other, None
            o.drain(timeout=30)


def test_a_record_newer_than_the_clock_a_scorer_read_is_scored_at_its_own_clock(story):
    """V refuses DMs at 2:30 and says yes at 6:00, so the spec makes the task at 6:00. The other
    scorer applies the yes (clock 6:00, task pending) between this scorer's read of the clock (5:00)
    and its read of V's records (found through its late 4:00). Scored at 5:00, the records would
    give no task (the only clock value by then, 4:00, has consent false) and take the task back."""
    _v, w2 = "v5", "v4"  # partitions 0 and 2
    assert (keys.part_of(_v), keys.part_of(w2)) == (0, 2)
    story.event(_v, "join", "r-1", at(minutes=0))
    story.event(_v, "consent", "r-1", at(minutes=2.5), dm=False)
    story.advance(at(minutes=5))
    assert story.task_state("r-1", _v) is None
    ingest(story.cfg, [json.dumps(story.say(w2, "like", "r-1", at(minutes=4), count=1)),
                       json.dumps(story.say(_v, "consent", "r-1", at(minutes=6), dm=True))])
    y = Pinned(story.r, story.cfg, name="y", parts=[0, 1])
    x = OvertakenAfterClockRead(story.r, story.cfg, name="x", parts=[2, 3])
    x.other = y
    x.drain(timeout=30)
    y.drain(timeout=30)
    assert status(story.r, SHOP)["lag"] == 0
    assert story.task_state("r-1", _v) == "pending"


def test_a_late_join_that_opens_a_window_for_a_late_value_puts_the_pair_in_the_index(story):
    """Arrival order 12:00 order, 4:00 leave, 6:00 join, then another viewer's 11:00. The join makes
    the viewer present from 6:00 (first 4:00, moment 7:00) with no clock value until 12:00, when they
    bought: no task. The 11:00 then makes it at 11:00, and the order converts it. The join's batch
    must tell the pair's record before the join from the one after (they share no event list)."""
    a = "buyer"
    for e in (story.say(a, "order", "r-1", at(minutes=12), order_id="o1", amount=5, currency="USD"),
              story.say(a, "leave", "r-1", at(minutes=4)), story.say(a, "join", "r-1", at(minutes=6))):
        story.submit(e)
    assert story.task_state("r-1", a) is None
    assert _late_window(story.r) == {keys.pair("r-1", a): at(minutes=7)}
    story.advance_late(at(minutes=11))
    assert story.task_state("r-1", a) == "converted"


def test_a_scorer_that_scored_at_a_newer_clock_still_moves_its_lurkers_to_it(story):
    """The clock read again after the records can be past the one the time indexes were read to:
    the scorer's next time pass must still take its lurkers up to the newer clock. Here the lurker
    reaches 3 minutes at a clock value (5:00) that only the other scorer's partition sees."""
    lurker, own, other = "v5", "v7", "v1"  # partitions 0, 0 (scorer y) and 1 (scorer x)
    assert [keys.part_of(v) for v in (lurker, own, other)] == [0, 0, 1]
    story.event(lurker, "join", "r-1", at(minutes=0))
    story.event(other, "like", "r-1", at(minutes=1), count=1)
    ingest(story.cfg, [json.dumps(story.say(own, "comment", "r-1", at(minutes=2), text="hi")),
                       json.dumps(story.say(other, "like", "r-1", at(minutes=5), count=1))])
    x = Pinned(story.r, story.cfg, name="x", parts=[1, 2, 3])
    y = OvertakenAfterClockRead(story.r, story.cfg, name="y", parts=[0])
    y.other = x  # x applies 5:00 between y's clock read (1:00) and the rest of its reads
    y.drain(timeout=30)
    assert status(story.r, SHOP)["lag"] == 0
    y.time_pass()  # as `scoring run` does when its partitions are quiet and the shop clock moved
    assert story.task_state("r-1", lurker) == "pending"
