"""Expiry (spec/tiers.md v1.1): a task still pending ``followup_expire_hours`` of wall time after it
was made becomes ``expired``, a final state, by the scorer's periodic pass on an injected wall clock.

The task's making time is Redis's clock when the scorer made it; the pass's wall clock is the
worker's ``clock``, which the stories set hours ahead of now.
"""

from __future__ import annotations

import time

import pytest

from fanops import keys, queue, rules_store
from fanops.errors import TaskStateError
from fanops.read import status
from scoring.worker import Worker
from tests.scoring.test_scoring_scenarios import SHOP, Story, at

HOUR_S = 3600


@pytest.fixture
def story(r, cfg) -> Story:
    return Story(r, cfg)


def _lurk(story: Story, viewer: str = "lurker", room: str = "r-1") -> float:
    """A viewer lingers 3 minutes: a pending task, made now (wall seconds returned: a bound from below)."""
    story.event(viewer, "join", room, at(minutes=0))
    made = time.time()
    story.advance(at(minutes=3), room=room)
    assert story.task_state(room, viewer) == "pending"
    return made


def _pass(story: Story, wall_s: float) -> None:
    """The scorer's periodic pass (archiving look, expiry), at wall time ``wall_s``."""
    Worker(story.r, story.cfg, name="later", clock=lambda: wall_s).archive_idle()


def test_a_task_pending_72_hours_of_wall_time_expires_and_is_counted(story):
    made = _lurk(story)
    _pass(story, made + 71 * HOUR_S)
    assert story.task_state("r-1", "lurker") == "pending"
    _pass(story, time.time() + 72 * HOUR_S + 1)
    assert story.task_state("r-1", "lurker") == "expired"
    st = status(story.r, SHOP, "r-1")
    assert st["room"]["followups"]["expired"] == 1 and st["room"]["followups"]["pending"] == 0
    assert st["tasks"]["lingered"]["expired"] == 1 and st["tasks"]["lingered"]["pending"] == 0
    assert [t.viewer for t in queue.list_tasks(story.r, SHOP, "expired")] == ["lurker"]
    assert queue.list_tasks(story.r, SHOP, "pending") == []


def test_an_expired_task_is_final_for_operators_and_for_a_later_order(story):
    _lurk(story)
    _pass(story, time.time() + 73 * HOUR_S)
    tid = queue.task_id("r-1", "lurker")
    with pytest.raises(TaskStateError, match="expired"):
        queue.Operator(story.r, SHOP, "ana").claim(tid)
    story.event("lurker", "order", "r-1", at(minutes=5), order_id="o-1", amount=10, currency="USD")
    assert story.task_state("r-1", "lurker") == "expired"  # not converted: final like skipped
    room = status(story.r, SHOP, "r-1")["room"]
    assert room["buyers"] == 1 and room["followups"]["converted"] == 0


def test_a_claim_still_held_does_not_expire_until_it_lapses(story):
    _lurk(story)
    late_ms = int((time.time() + 73 * HOUR_S) * 1000)
    tid = queue.task_id("r-1", "lurker")
    queue.Operator(story.r, SHOP, "ana").claim(tid, now_ms=late_ms)  # a 5-minute lease from then
    _pass(story, late_ms / 1000 + 60)
    assert story.task_state("r-1", "lurker") == "claimed"
    _pass(story, late_ms / 1000 + 6 * 60)  # the claim lapsed: pending, and too old
    assert story.task_state("r-1", "lurker") == "expired"
    f = status(story.r, SHOP, "r-1")["room"]["followups"]
    assert (f["claimed"], f["expired"]) == (0, 1)
    assert story.r.zcard(keys.task_made(SHOP)) == 0  # settled: gone from the age index


def test_the_expiry_hours_are_a_rule_setting(story):
    made = _lurk(story)
    rules_store.save(story.r, SHOP, {"followup_expire_hours": 1})
    _pass(story, made - 60)
    assert story.task_state("r-1", "lurker") == "pending"
    _pass(story, time.time() + HOUR_S + 1)
    assert story.task_state("r-1", "lurker") == "expired"


def test_sent_and_skipped_tasks_do_not_expire(story):
    _lurk(story, "a")
    _lurk(story, "b")
    op = queue.Operator(story.r, SHOP, "ana")
    op.claim(queue.task_id("r-1", "a"))
    op.mark_sent(queue.task_id("r-1", "a"))
    op.skip(queue.task_id("r-1", "b"), "spam")
    _pass(story, time.time() + 100 * HOUR_S)
    assert (story.task_state("r-1", "a"), story.task_state("r-1", "b")) == ("sent", "skipped")
    assert status(story.r, SHOP)["tasks"]["lingered"]["expired"] == 0


def test_open_tasks_made_before_tasks_had_a_making_time_expire_72_hours_after_the_upgrade(story):
    made = _lurk(story)
    story.r.delete(keys.task_made(SHOP))  # as a task of the previous version: no making time
    upgrade = made + 10 * HOUR_S
    _pass(story, upgrade)  # the first pass counts it as made now
    _pass(story, upgrade + 71 * HOUR_S)
    assert story.task_state("r-1", "lurker") == "pending"
    _pass(story, upgrade + 72 * HOUR_S + 1)
    assert story.task_state("r-1", "lurker") == "expired"
