"""spec/tiers.md, the 7-day rule: a lingered task is made "the first time all of these hold",
one of them that no follow-up was sent to the viewer in the last 7 days of shop clock. A task
held back by a send is made when the clock passes the 7 days, whatever happened to its show
since (archived half an hour after it ended), and an order inside the 7 days means no task,
in whatever order the events arrive."""

from __future__ import annotations

from typing import Any

import pytest

from fanops import keys, rules_store
from fanops.queue import Operator, task_rows
from fanops.state import unpack_task
from scoring import archive
from scoring.worker import ScoredBatch, Worker
from tests.scoring.test_scoring_scenarios import SHOP, Story, at


@pytest.fixture
def story(r, cfg) -> Story:
    return Story(r, cfg)


def send(story: Story, viewer: str) -> None:
    """The operator sends the viewer's open lingered task (at the shop clock)."""
    op = Operator(story.r, SHOP, "ops")
    tid = next(t["id"] for t in task_rows(story.r, SHOP, kind="lingered") if t["viewer_id"] == viewer)
    op.claim(tid)
    op.mark_sent(tid)


def held_back(story: Story) -> None:
    """Ann's r-1 task is sent at minute 4; a day later she lingers 5 minutes in r-2: held back."""
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    send(story, "ann")  # at the shop clock at(minutes=4)
    story.event("ann", "join", "r-2", at(days=1))
    story.event("ann", "comment", "r-2", at(days=1, minutes=5), text="nice")
    story.advance(at(days=1, minutes=6), room="r-2")
    assert story.task_state("r-2", "ann") is None


def lurking(story: Story, room: str, viewer: str) -> float | None:
    """When the scorer looks at the pair again (its lurk index entry), if it does."""
    return story.r.zscore(keys.lurk(SHOP, keys.part_of(viewer)), keys.pair(room, viewer))


def test_a_held_back_task_is_made_after_its_show_was_archived(story):
    """The usual case: r-2 ends and is archived long before the 7 days are over. When another
    show moves the clock past them, Ann's r-2 task is made all the same, once."""
    held_back(story)
    story.advance(at(days=2), room="r-3")  # r-2 is over
    assert archive.archive_room(story.r, story.cfg, SHOP, "r-2").complete
    assert story.r.hexists(keys.room(SHOP, "r-2"), "archived")
    assert lurking(story, "r-2", "ann") == at(days=7, minutes=4) + 1  # the 7 days' end
    story.advance(at(days=6), room="r-3")
    assert story.task_state("r-2", "ann") is None  # still inside the 7 days
    story.advance(at(days=8), room="r-4")
    assert story.task_state("r-2", "ann") == "pending"
    assert [t["room"] for t in task_rows(story.r, SHOP, state="pending", kind="lingered")
            if t["viewer_id"] == "ann"] == ["r-2"]
    assert story.followups("r-2") == {"pending": 1}
    assert lurking(story, "r-2", "ann") is None  # looked at once, not again at every batch
    story.worker.archive_idle()  # r-2 archived again, with its task
    assert story.r.hexists(keys.room(SHOP, "r-2"), "archived")
    story.advance(at(days=9), room="r-4")
    assert story.task_state("r-2", "ann") == "pending"
    assert story.followups("r-2") == {"pending": 1}


def test_an_order_inside_the_7_days_means_no_task_in_order(story):
    """Ann buys in r-2 on day 3, inside the 7 days: the rules never all held, so no task then or after."""
    held_back(story)
    story.event("ann", "order", "r-2", at(days=3), order_id="o-1", amount=5, currency="USD")
    story.advance(at(days=9), room="r-3")
    assert story.task_state("r-2", "ann") is None
    assert story.followups("r-2") == {}


def test_an_order_inside_the_7_days_arriving_late_means_no_task_either(story):
    """The same order of day 3 reaches the scorer only after the clock passed the 7 days and the
    task was made: the task goes, as if the events had come in order (it did not become
    `converted`: the sale came before the task could be made)."""
    held_back(story)
    story.advance(at(days=9), room="r-3")
    assert story.task_state("r-2", "ann") == "pending"
    story.event("ann", "order", "r-2", at(days=3), order_id="o-1", amount=5, currency="USD")
    assert story.task_state("r-2", "ann") is None
    assert story.followups("r-2") == {}


def test_a_refusal_inside_the_7_days_means_no_task_when_they_end(story):
    """Ann refuses DMs on day 3: when the 7 days end her consent is false, so no task is made."""
    held_back(story)
    story.event("ann", "consent", "r-3", at(days=3), dm=False)
    story.advance(at(days=9), room="r-3")
    assert story.task_state("r-2", "ann") is None


def task(story: Story, room: str, viewer: str) -> tuple[str, int] | None:
    b = story.r.hget(keys.tasks(SHOP, room), viewer)
    return (unpack_task(b).state, unpack_task(b).task_at) if b else None


@pytest.mark.parametrize("arrival", ["in order", "late, one batch", "late, two batches"])
def test_a_held_task_is_the_same_whatever_order_its_events_arrive_in(story, arrival):
    """Ann lingers in r-2 a day after a send and orders there on day 8. In order, her task is made at
    the first clock value past the 7 days (day 7 + 60 minutes) and then converted. Her r-2 events
    arriving after the clock passed day 9 give the same, in one batch or two (the scorer looked the
    clock value past the 7 days up, as it does for the dwell's moment; it retried the batch for ever)."""
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    send(story, "ann")
    join = story.say("ann", "join", "r-2", at(days=1))
    stay = story.say("ann", "comment", "r-2", at(days=1, minutes=5), text="nice")
    buy = story.say("ann", "order", "r-2", at(days=8), order_id="o-1", amount=5, currency="USD")
    if arrival == "in order":
        story.submit(join, stay)
    story.advance(at(days=2), room="r-3")
    story.advance(at(days=7, minutes=60), room="r-3")
    if arrival == "in order":
        story.submit(buy)
    story.advance(at(days=9), room="r-3")
    if arrival == "late, one batch":
        story.submit(join, stay, buy)
    elif arrival == "late, two batches":
        story.submit(join, stay)
        assert task(story, "r-2", "ann") == ("pending", at(days=7, minutes=60))
        story.submit(buy)
    assert task(story, "r-2", "ann") == ("converted", at(days=7, minutes=60))


def other_viewer(prefix: str, not_in: set[int]) -> str:
    return next(v for v in (f"{prefix}-{i}" for i in range(1000)) if keys.part_of(v) not in not_in)


def test_two_scorers_make_a_held_task_from_the_first_clock_value_past_the_7_days(story):
    """Two scorers, Ann's partition on one. The other applies the likes of day 7 + 10 and + 20 minutes
    before hers gets Ann's refusal of day 7 + 15: her r-2 task was made at + 10 (the first clock value
    past the 7 days) and withdrawn at + 15, as in order (that scorer retried the batch for ever)."""
    held_back(story)
    pa = keys.part_of("ann")
    x = other_viewer("x", {pa})
    wa = Worker(story.r, story.cfg, name="wa", partitions=[pa])
    wb = Worker(story.r, story.cfg, name="wb", partitions=[p for p in range(keys.PARTITIONS) if p != pa])
    story.submit_only(story.say(x, "like", "r-3", at(days=7, minutes=10)),
                      story.say(x, "like", "r-3", at(days=7, minutes=20)))
    wb.drain(timeout=30)
    story.submit_only(story.say("ann", "consent", "r-3", at(days=7, minutes=15), dm=False))
    wa.drain(timeout=30)
    assert task(story, "r-2", "ann") == ("withdrawn", at(days=7, minutes=10))


def test_a_held_task_comes_due_after_its_reopened_show_was_archived_again(story):
    """Bob's and Ann's r-2 tasks are both held, Bob's 7 days ending first. The other scorer passes
    Bob's end (r-2 opened again, his task made), then Ann's; r-2 is archived again before Ann's scorer
    looks at her: her entry stays, and she gets her task (it was dropped with the show)."""
    pa = keys.part_of("ann")
    bob, x = other_viewer("b", {pa}), other_viewer("x", {pa})
    story.event(bob, "join", "r-0", at())
    story.advance(at(minutes=4), room="r-0")
    send(story, bob)
    story.event("ann", "join", "r-0", at(minutes=60))
    story.advance(at(minutes=64), room="r-0")
    send(story, "ann")
    for v in (bob, "ann"):
        story.event(v, "join", "r-2", at(days=1))
        story.event(v, "comment", "r-2", at(days=1, minutes=5), text="hi")
    story.advance(at(days=2), room="r-3")
    assert archive.archive_room(story.r, story.cfg, SHOP, "r-2").complete
    wa = Worker(story.r, story.cfg, name="wa", partitions=[pa])
    wb = Worker(story.r, story.cfg, name="wb", partitions=[p for p in range(keys.PARTITIONS) if p != pa])
    story.submit_only(story.say(x, "like", "r-3", at(days=7, minutes=30)))
    wb.drain(timeout=30)
    assert story.task_state("r-2", bob) == "pending"
    story.submit_only(story.say(x, "like", "r-3", at(days=7, minutes=120)))
    wb.drain(timeout=30)
    assert "r-2" in archive.close_idle_rooms(story.r, SHOP, story.cfg)
    assert lurking(story, "r-2", "ann") is not None
    wa.drain(timeout=30)
    wa.apply_time(SHOP)
    assert story.task_state("r-2", "ann") == "pending"


def test_a_shorter_wait_setting_reaches_a_held_task_at_once(story):
    """Ann is held back under 7 days; the shop sets `followup_cooldown_days` to 2: on day 3 she has
    her task, as if the feed had been scored under 2 days from the start."""
    held_back(story)
    rules_store.save(story.r, SHOP, {"followup_cooldown_days": 2}, by="test")
    story.advance(at(days=3), room="r-3")
    assert story.task_state("r-2", "ann") == "pending"


class SendsMidBatch(Worker):
    """A scorer during whose first write (after its reads) an operator sends the viewer's open task."""

    def __init__(self, *a: Any, viewer: str, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.viewer, self.sent = viewer, False

    def write(self, shop: str, batch: ScoredBatch, acks: list[list[str]]) -> list[Any]:
        if not self.sent:
            self.sent = True
            send(Story(self.r, self.cfg), self.viewer)
        return super().write(shop, batch, acks)


def test_a_send_between_the_scorers_read_and_write_holds_the_new_task_back(story):
    """Ann's r-1 task is sent while the batch that makes her r-2 task is being written: that task
    is held back 7 days, then made (the script dropped it for good; the record said pending)."""
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    story.event("ann", "join", "r-2", at(minutes=10))
    story.worker = SendsMidBatch(story.r, story.cfg, name="racer", viewer="ann")
    story.event("ann", "comment", "r-2", at(minutes=15), text="hi")  # a dwell of 5 minutes: her task
    assert story.worker.sent and story.task_state("r-1", "ann") == "sent"
    assert story.task_state("r-2", "ann") is None
    story.advance(at(days=8), room="r-3")
    assert story.task_state("r-2", "ann") == "pending"
