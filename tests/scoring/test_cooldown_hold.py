"""spec/tiers.md, the 7-day rule: a lingered task is made "the first time all of these hold",
one of them that no follow-up was sent to the viewer in the last 7 days of shop clock. A task
held back by a send is made when the clock passes the 7 days, whatever happened to its show
since (archived half an hour after it ended), and an order inside the 7 days means no task,
in whatever order the events arrive."""

from __future__ import annotations

import pytest

from fanops import keys
from fanops.queue import Operator, task_rows
from scoring import archive
from tests.scoring.test_scoring_scenarios import SHOP, Story, at


@pytest.fixture
def story(r, cfg) -> Story:
    return Story(r, cfg)


def held_back(story: Story) -> None:
    """Ann's r-1 task is sent at minute 4; a day later she lingers 5 minutes in r-2: held back."""
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    op = Operator(story.r, SHOP, "ops")
    tid = task_rows(story.r, SHOP, kind="lingered")[0]["id"]
    op.claim(tid)
    op.mark_sent(tid)  # at the shop clock at(minutes=4)
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
