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


def made_keys(story: Story) -> list[bytes]:
    """The expiry entries' keys of the shop: the minutes, their lists, the held claims."""
    return story.r.keys(keys.made(SHOP) + "*")


def made_entries(story: Story) -> list[bytes]:
    """Every task id with an expiry entry still to look at (the held claims among them)."""
    out: list[bytes] = list(story.r.hkeys(keys.made_held(SHOP)))
    for _, tid in _entries(story):
        out.append(tid)
    return out


def _entries(story: Story) -> list[tuple[int, bytes]]:
    """(wall ms made, task id) of every entry in the minutes' lists, in order."""
    out = []
    for m in story.r.zrange(keys.made(SHOP), 0, -1):
        at_ms, head = 0, b""
        for x in story.r.lrange(keys.made_bucket(SHOP, int(m)), 0, -1):
            if x.startswith(b"@"):
                at_ms = int(x[1:])
            elif x.startswith(b"="):
                head = x[1:]
            elif x.startswith(b"."):
                out.append((at_ms, head + x[1:]))
            else:
                out.append((at_ms, x))
    return out


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
    assert not made_entries(story)  # settled: no entry left, none held


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
    story.r.delete(*made_keys(story))  # as a task of a version before: no making time
    upgrade = made + 10 * HOUR_S
    _pass(story, upgrade)  # the first pass counts it as made now
    _pass(story, upgrade + 71 * HOUR_S)
    assert story.task_state("r-1", "lurker") == "pending"
    _pass(story, upgrade + 72 * HOUR_S + 1)
    assert story.task_state("r-1", "lurker") == "expired"


def _made_ms(story: Story, viewer: str, room: str = "r-1") -> list[int]:
    """The wall ms of every expiry entry of the viewer's task, from the markers before them."""
    tid = queue.task_id(room, viewer).encode()
    return [at_ms for at_ms, x in _entries(story) if x == tid]


def test_a_task_made_again_after_forget_expires_72_hours_after_its_own_making(story):
    from scoring.forget import forget_in_redis

    _lurk(story)
    first = _made_ms(story, "lurker")
    forget_in_redis(story.r, SHOP, "lurker")
    time.sleep(1.1)  # a second of wall time between the two makings
    story.event("lurker", "join", "r-1", at(minutes=10))  # they come back: a new record of them
    story.advance(at(minutes=14))
    assert story.task_state("r-1", "lurker") == "pending"
    again = max(_made_ms(story, "lurker"))
    assert again - first[0] >= 1000
    _pass(story, (first[0] + 72 * HOUR_S * 1000 + 500) / 1000)  # the first entry is due, not the task
    assert story.task_state("r-1", "lurker") == "pending"
    _pass(story, (again + 72 * HOUR_S * 1000 + 1) / 1000)
    assert story.task_state("r-1", "lurker") == "expired"


def test_tasks_made_in_one_minute_expire_each_72_hours_after_its_making(story):
    _lurk(story, "a")
    time.sleep(1.1)
    _lurk(story, "b", room="r-2")
    a, b = _made_ms(story, "a")[0], _made_ms(story, "b", "r-2")[0]
    _pass(story, (a + 72 * HOUR_S * 1000 + 1) / 1000)
    assert (story.task_state("r-1", "a"), story.task_state("r-2", "b")) == ("expired", "pending")
    _pass(story, (b + 72 * HOUR_S * 1000 + 1) / 1000)
    assert story.task_state("r-2", "b") == "expired"
    assert not made_entries(story) and not story.r.exists(keys.made(SHOP))


def test_a_long_list_read_in_small_chunks_loses_no_entry_and_keeps_its_times(story, monkeypatch):
    from fanops import expiry

    monkeypatch.setattr(expiry, "EXPIRE_BATCH", 2)  # every read ends inside a batch's entries
    for v in ("a", "b", "c"):
        story.event(v, "join", "r-1", at(minutes=0))
    story.advance(at(minutes=3))
    time.sleep(1.1)
    _lurk(story, "d", room="r-2")
    d = _made_ms(story, "d", "r-2")[0]
    _pass(story, (_made_ms(story, "c")[0] + 72 * HOUR_S * 1000 + 1) / 1000)
    assert [story.task_state("r-1", v) for v in "abc"] == ["expired"] * 3
    assert story.task_state("r-2", "d") == "pending"
    assert _made_ms(story, "d", "r-2") == [d]  # its entry kept its own time
    _pass(story, (d + 72 * HOUR_S * 1000 + 1) / 1000)
    assert story.task_state("r-2", "d") == "expired"


def test_making_times_kept_by_the_version_before_the_buckets_move_into_them_and_still_expire(story):
    made = _lurk(story)
    at_ms = _made_ms(story, "lurker")[0]
    story.r.delete(*made_keys(story))
    story.r.zadd(keys.task_made(SHOP), {queue.task_id("r-1", "lurker"): at_ms})  # the zset of before
    story.r.hset(keys.stats(SHOP), "task_made_since", at_ms)
    _pass(story, made + 71 * HOUR_S)
    assert story.task_state("r-1", "lurker") == "pending" and not story.r.exists(keys.task_made(SHOP))
    assert _made_ms(story, "lurker") == [at_ms]
    _pass(story, (at_ms + 72 * HOUR_S * 1000 + 1) / 1000)
    assert story.task_state("r-1", "lurker") == "expired"


def test_a_trim_after_another_pass_trimmed_first_leaves_the_list_as_it_is(story):
    from fanops.scripts import script_source

    _lurk(story, "a")
    _lurk(story, "b")
    m = int(story.r.zrange(keys.made(SHOP), 0, 0)[0])  # (b's may be the next minute's)
    k = keys.made_bucket(SHOP, m)
    items = story.r.lrange(k, 0, -1)
    trim = story.r.register_script(script_source("fanops", "made_trim"))
    ks = [k, keys.made(SHOP)]
    assert trim(keys=ks, args=[m, items[0], items[1], *items[:3]]) == 1  # the first marker and task: gone
    assert story.r.lrange(k, 0, -1) == items[3:]
    assert trim(keys=ks, args=[m, items[0], items[1], *items[:3]]) == 0  # read before that trim: the head moved on
    assert story.r.lrange(k, 0, -1) == items[3:]


def test_forget_leaves_no_expiry_entry_that_names_the_viewer(story):
    from scoring.forget import forget_in_redis

    _lurk(story, "a")
    _lurk(story, "b")
    story.r.hset(keys.made_held(SHOP), queue.task_id("r-1", "a"), "@1")  # as if its claim were held
    forget_in_redis(story.r, SHOP, "a")
    assert made_entries(story) == [queue.task_id("r-1", "b").encode()]
