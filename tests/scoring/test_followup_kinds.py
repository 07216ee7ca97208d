"""Stories of spec/tiers.md v1.1 "Follow-up kinds": thank_first_order, after_sales, win_back
beside lingered, through the real ingest path, a real scorer and the queue's actions."""

from __future__ import annotations

import pytest

from fanops.queue import Operator, task_rows
from fanops.read import status
from fanops.rules_store import save
from tests.scoring.test_scoring_scenarios import DAY, SHOP, Story, at


@pytest.fixture
def story(r, cfg) -> Story:
    return Story(r, cfg)


def kinds(story: Story, viewer: str) -> dict[str, str]:
    """The viewer's tasks of the new kinds: kind -> state (every state, win_back by occasion)."""
    out = {}
    for row in task_rows(story.r, SHOP, state="open", limit=500) + [
            row for s in ("sent", "skipped", "withdrawn", "expired")
            for row in task_rows(story.r, SHOP, state=s, limit=500)]:
        if row["viewer_id"] == viewer and row["kind"] != "lingered":
            out[row["kind"] if row["kind"] != "win_back" else f"win_back@{row['id'].split(':')[1]}"] = row["state"]
    return out


def order(story: Story, viewer: str, ts: int, oid: str, room: str = "r-1") -> None:
    story.event(viewer, "order", room, ts, order_id=oid, amount=10, currency="EUR")


def test_a_first_order_makes_a_thank_task_at_once_and_a_second_order_does_not(story):
    order(story, "ann", at(minutes=1), "o-1")
    assert kinds(story, "ann") == {"thank_first_order": "pending"}
    row = next(x for x in task_rows(story.r, SHOP, kind="thank_first_order"))
    assert row["room"] == "r-1" and row["viewer_id"] == "ann" and row["id"].startswith("thank_first_order:")
    order(story, "ann", at(minutes=5), "o-2")
    assert kinds(story, "ann") == {"thank_first_order": "pending"}
    assert status(story.r, SHOP)["tasks"]["thank_first_order"]["pending"] == 1


def test_after_sales_is_made_when_the_clock_reaches_7_days_after_the_first_order(story):
    order(story, "ann", at(minutes=1), "o-1")
    order(story, "bob", at(minutes=2), "o-2")
    order(story, "bob", at(days=3), "o-3")  # bob ordered again before his after-sales moment
    story.advance(at(days=7, minutes=1) - 1)
    assert "after_sales" not in kinds(story, "ann")
    story.advance(at(days=7, minutes=1))  # no event of ann's: the clock alone makes it
    assert kinds(story, "ann")["after_sales"] == "pending"
    story.advance(at(days=8))
    assert "after_sales" not in kinds(story, "bob")
    assert status(story.r, SHOP)["tasks"]["after_sales"] == {
        "pending": 1, "claimed": 0, "sent": 0, "skipped": 0, "converted": 0, "withdrawn": 0, "expired": 0}


def test_a_buyer_30_days_idle_gets_win_back_which_is_withdrawn_when_they_come_back(story):
    order(story, "ann", at(minutes=1), "o-1")
    story.event("tim", "join", "r-1", at(minutes=2))  # never ordered: no win_back
    story.advance(at(days=30, minutes=1) - 1, room="r-2")
    assert not any(k.startswith("win_back") for k in kinds(story, "ann"))
    story.advance(at(days=31), room="r-2")
    spell = f"win_back@{at(minutes=1) + 30 * DAY}"
    assert kinds(story, "ann")[spell] == "pending"
    assert not any(k.startswith("win_back") for k in kinds(story, "tim"))
    story.event("ann", "join", "r-3", at(days=40))
    assert kinds(story, "ann")[spell] == "withdrawn"


def test_consent_turning_false_withdraws_the_open_kind_tasks_and_blocks_new_ones(story):
    order(story, "ann", at(minutes=1), "o-1")
    story.event("ann", "consent", "r-1", at(minutes=2), dm=False)
    assert kinds(story, "ann") == {"thank_first_order": "withdrawn"}
    story.advance(at(days=8))
    assert "after_sales" not in kinds(story, "ann")  # no DM consent at its moment


def test_a_sent_task_of_one_kind_blocks_new_tasks_of_every_kind_for_7_days(story):
    order(story, "ann", at(minutes=1), "o-1")
    op = Operator(story.r, SHOP, "ops")
    tid = task_rows(story.r, SHOP, kind="thank_first_order")[0]["id"]
    op.claim(tid)
    op.mark_sent(tid)
    assert kinds(story, "ann") == {"thank_first_order": "sent"}
    story.event("ann", "join", "r-2", at(days=1))
    story.event("bob", "join", "r-2", at(days=1))
    story.advance(at(days=1, minutes=4), room="r-2")  # both lingered 4 minutes
    assert ("r-2", "bob") in story.pending()  # bob was sent nothing
    assert story.task_state("r-2", "ann") is None  # ann was sent a thank-you a day ago


def test_a_lingered_task_blocks_a_thank_task_after_it_is_sent_and_stays_as_it_is(story):
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    tid = task_rows(story.r, SHOP, kind="lingered")[0]["id"]
    op = Operator(story.r, SHOP, "ops")
    op.claim(tid)
    op.mark_sent(tid)
    order(story, "ann", at(days=1), "o-1", room="r-2")
    assert kinds(story, "ann") == {}  # sent 1 day ago: the thank-you waits for the 7 days to end
    assert story.task_state("r-1", "ann") == "sent"
    story.advance(at(days=7, minutes=5), room="r-3")  # they have: made then, by the clock alone
    assert kinds(story, "ann") == {"thank_first_order": "pending"}
    assert story.task_state("r-1", "ann") == "sent"


def test_a_switched_off_kind_makes_no_task_and_priority_orders_the_kinds(story):
    save(story.r, SHOP, {"on_thank_first_order": 0, "prio_win_back": 9})
    order(story, "ann", at(minutes=1), "o-1")
    assert kinds(story, "ann") == {}
    story.advance(at(days=31))
    rows = task_rows(story.r, SHOP)
    assert rows[0]["kind"] == "win_back" and rows[0]["priority"] == 9
    assert [r["kind"] for r in rows] == ["win_back", "after_sales"]


def test_an_imported_first_order_in_the_history_room_makes_no_thank_or_after_sales_task(story):
    order(story, "imp", at(minutes=1), "hist:imp:1", room="history")
    story.advance(at(days=8))
    assert kinds(story, "imp") == {}
    order(story, "imp", at(days=9), "o-2")  # not their first order: no thank-you either
    assert kinds(story, "imp") == {}


def test_a_kind_task_is_claimed_sent_and_expires_like_a_lingered_one(story):
    from fanops.expiry import expire_old
    order(story, "ann", at(minutes=1), "o-1")
    order(story, "bob", at(minutes=2), "o-2")
    ids = {r["viewer_id"]: r["id"] for r in task_rows(story.r, SHOP, kind="thank_first_order")}
    Operator(story.r, SHOP, "ops").skip(ids["bob"], "no need")
    import time
    assert expire_old(story.r, SHOP, now_ms=int(time.time() * 1000) + 73 * 3_600_000) == 1
    assert kinds(story, "ann") == {"thank_first_order": "expired"}
    assert kinds(story, "bob") == {"thank_first_order": "skipped"}


def test_tasks_send_on_the_command_line_takes_a_kind_tasks_id(story, redis_url):
    import json

    from tests.scoring.test_cli_lists import cli

    order(story, "ann", at(minutes=1), "o-1")
    tid = task_rows(story.r, SHOP, kind="thank_first_order")[0]["id"]
    p = cli(redis_url, "tasks", "send", "--shop", SHOP, "--id", tid, "--operator", "ops")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"id": tid, "channel": "dm", "message_id": None}
    assert kinds(story, "ann") == {"thank_first_order": "sent"}
    bad = cli(redis_url, "tasks", "send", "--shop", SHOP, "--id", "win_back:x:ann", "--operator", "ops")
    assert bad.returncode == 1 and "not a task id" in bad.stderr and bad.stdout == ""


def test_bad_kind_settings_and_an_unknown_kind_are_refused_and_change_nothing(story):
    from fanops.errors import BadSettings, TaskError
    from fanops.rules_store import load

    with pytest.raises(BadSettings) as e:
        save(story.r, SHOP, {"on_win_back": 2, "after_sales_days": 0, "prio_after_sales": "high"})
    assert sorted(e.value.problems) == [
        "after_sales_days: 0 is out of range (1 to 365 days)",
        "on_win_back: 2 is out of range (0 to 1 on (1) / off (0))",
        "prio_after_sales: 'high' is not a number"]
    settings, _ = load(story.r, SHOP)
    assert (settings.on_win_back, settings.after_sales_days, settings.prio_after_sales) == (1, 7, 0)
    with pytest.raises(TaskError, match="unknown task kind 'vip'"):
        task_rows(story.r, SHOP, kind="vip")


def test_a_settings_change_redoes_the_kind_tasks_at_once_with_no_event(story):
    """tiers.md: a change applies to every viewer at once. The running scorer's next round (its idle
    time pass: no event comes, the clock stays) rebuilds and redoes every viewer's kind tasks."""
    order(story, "ann", at(minutes=1), "o-1")
    order(story, "bob", at(minutes=2), "o-2")
    story.advance(at(days=8))
    ids = {r["viewer_id"]: r["id"] for r in task_rows(story.r, SHOP, kind="after_sales")}
    op = Operator(story.r, SHOP, "ops")
    op.claim(ids["bob"])
    op.mark_sent(ids["bob"])
    assert kinds(story, "ann") == {"thank_first_order": "pending", "after_sales": "pending"}

    save(story.r, SHOP, {"on_after_sales": 0})
    story.worker.time_pass()
    assert kinds(story, "ann") == {"thank_first_order": "pending"}  # switched off: its open task goes
    assert kinds(story, "bob")["after_sales"] == "sent"  # what an operator sent stays
    assert status(story.r, SHOP)["tasks"]["after_sales"]["pending"] == 0

    save(story.r, SHOP, {"on_after_sales": 1, "after_sales_days": 10})
    story.worker.time_pass()
    assert "after_sales" not in kinds(story, "ann")  # due at day 10 now: not yet
    story.advance(at(days=10, minutes=1))
    assert kinds(story, "ann")["after_sales"] == "pending"
    assert status(story.r, SHOP)["tasks"]["after_sales"]["pending"] == 1

    save(story.r, SHOP, {"on_after_sales": 1, "after_sales_days": 10, "dormant_days": 5})
    story.worker.time_pass()  # ann and bob idle for 10 days: dormant under 5
    assert kinds(story, "ann")["win_back@" + str(at(minutes=1) + 5 * DAY)] == "pending"
    assert not any(k.startswith("win_back") for k in kinds(story, "bob"))  # sent to 2 days ago: the 7 days
    assert status(story.r, SHOP)["tasks"]["win_back"]["pending"] == 1


def test_a_kinds_new_priority_reorders_its_open_tasks_in_the_queue_at_once(story):
    story.event("cat", "comment", "r-1", at(minutes=0), text="hi")
    order(story, "ann", at(minutes=1), "o-1")
    story.advance(at(minutes=5))  # cat lingered 5 minutes with a comment: priority 3
    assert [r["kind"] for r in task_rows(story.r, SHOP)] == ["lingered", "thank_first_order"]

    save(story.r, SHOP, {"prio_thank_first_order": 20})
    story.worker.time_pass()
    rows = task_rows(story.r, SHOP)
    assert [(r["kind"], r["priority"]) for r in rows] == [("thank_first_order", 20), ("lingered", 3)]


def test_new_weights_reorder_the_open_lingered_tasks_in_the_queue_at_once(story):
    """tiers.md: a change applies to every viewer at once; a lingered task's priority is the
    spec's formula of its card's counts under the weights of now, with no event needed."""
    story.event("ann", "comment", "r-1", at(minutes=0), text="hi")
    story.event("ann", "comment", "r-1", at(minutes=0.1), text="price?")
    story.event("bob", "cart_add", "r-1", at(minutes=0.15), sku="s-1")
    story.advance(at(minutes=5))  # both lingered: ann 2 comments (6), bob 1 cart add (5)
    rows = task_rows(story.r, SHOP)
    assert [(r["viewer_id"], r["priority"]) for r in rows] == [("ann", 6), ("bob", 5)]

    save(story.r, SHOP, {"w_comment": 1, "bonus_new_fan": 4})
    story.worker.time_pass()
    rows = task_rows(story.r, SHOP)
    assert [(r["viewer_id"], r["priority"]) for r in rows] == [("bob", 9), ("ann", 6)]


def test_a_task_held_back_by_the_7_day_rule_is_made_when_the_clock_alone_passes_its_end(story):
    """spec/tiers.md: a task is made the first time all its rules hold. Ann lingered in r-2 a day
    after a follow-up was sent to her: held back. When later events of others move the shop clock
    past the 7 days, she gets the task, though she did nothing since (it was made only if that move
    came in the same batch as her events)."""
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    op = Operator(story.r, SHOP, "ops")
    tid = task_rows(story.r, SHOP, kind="lingered")[0]["id"]
    op.claim(tid)
    op.mark_sent(tid)  # at the shop clock at(minutes=4)
    story.event("ann", "join", "r-2", at(days=1))
    story.event("ann", "comment", "r-2", at(days=1, minutes=5), text="nice")  # a dwell of 5 minutes
    story.advance(at(days=1, minutes=6), room="r-2")
    assert story.task_state("r-2", "ann") is None  # sent to a day ago
    story.advance(at(days=7, minutes=4), room="r-3")  # exactly 7 days after the send: still held back
    assert story.task_state("r-2", "ann") is None
    story.advance(at(days=8), room="r-3")
    assert story.task_state("r-2", "ann") == "pending"
    assert story.followups("r-2") == {"pending": 1}
    story.advance(at(days=9), room="r-3")
    assert story.followups("r-2") == {"pending": 1}  # made once


def test_after_sales_held_by_a_thank_you_sent_is_made_when_the_7_days_from_the_send_end(story):
    """spec/tiers.md v1.1: the kinds are subject to the same 7-day rule as lingered, which is made the
    first time all its rules hold. A thank-you sent an hour after the first order holds back the
    after_sales due 7 days after that order; it is made when the 7 days from the send are over (it was
    never made: the usual flow, a thank-you sent at once, lost every after_sales)."""
    order(story, "ann", at(minutes=1), "o-1")
    op = Operator(story.r, SHOP, "ops")
    tid = task_rows(story.r, SHOP, kind="thank_first_order")[0]["id"]
    story.advance(at(minutes=60), room="r-2")
    op.claim(tid)
    op.mark_sent(tid)  # at the shop clock at(minutes=60)
    story.advance(at(days=7, minutes=2), room="r-2")  # after_sales is due: within 7 days of the send
    assert kinds(story, "ann") == {"thank_first_order": "sent"}
    story.advance(at(days=7, minutes=60), room="r-2")  # exactly 7 days after the send: still held
    assert kinds(story, "ann") == {"thank_first_order": "sent"}
    story.advance(at(days=7, minutes=61), room="r-2")  # the clock alone, no event of ann's
    assert kinds(story, "ann") == {"thank_first_order": "sent", "after_sales": "pending"}
    assert status(story.r, SHOP)["tasks"]["after_sales"]["pending"] == 1
    story.advance(at(days=9), room="r-2")
    assert status(story.r, SHOP)["tasks"]["after_sales"]["pending"] == 1  # made once


def test_a_held_kind_task_that_no_longer_holds_at_the_end_of_the_7_days_is_never_made(story):
    """Bo's after_sales is held by a thank-you sent; he refuses DMs before the 7 days end: none. Nor
    later, when he agrees again and another follow-up is sent to him: the rule decided at the end of
    its wait, and a later send does not reopen that (it did: the latest send no longer held it)."""
    order(story, "bo", at(minutes=1), "o-1")
    op = Operator(story.r, SHOP, "ops")
    story.advance(at(minutes=60), room="r-2")
    tid = next(t["id"] for t in task_rows(story.r, SHOP, kind="thank_first_order") if t["viewer_id"] == "bo")
    op.claim(tid)
    op.mark_sent(tid)
    story.advance(at(days=7, minutes=2), room="r-2")  # due, held
    assert kinds(story, "bo") == {"thank_first_order": "sent"}
    story.event("bo", "consent", "r-2", at(days=7, minutes=30), dm=False)
    story.advance(at(days=8), room="r-2")
    assert kinds(story, "bo") == {"thank_first_order": "sent"}
    story.event("bo", "consent", "r-2", at(days=9), dm=True)
    story.event("bo", "join", "r-5", at(days=20))
    story.advance(at(days=20, minutes=4), room="r-5")
    lingered = next(t["id"] for t in task_rows(story.r, SHOP, kind="lingered") if t["viewer_id"] == "bo")
    op.claim(lingered)
    op.mark_sent(lingered)
    story.event("bo", "join", "r-6", at(days=28))
    story.advance(at(days=28, minutes=1), room="r-6")
    assert "after_sales" not in kinds(story, "bo")


def _send(story: Story, viewer: str, kind: str) -> None:
    op = Operator(story.r, SHOP, "ops")
    tid = next(t["id"] for t in task_rows(story.r, SHOP, kind=kind) if t["viewer_id"] == viewer)
    op.claim(tid)
    op.mark_sent(tid)


def test_a_second_send_during_the_hold_moves_the_held_task_to_the_end_of_its_own_7_days(story):
    """Made the first time all the rules hold: a lingered task sent during the after_sales' hold
    pushes it to that send's 7 days' end (it was written at the first end, refused by apply.lua, and
    lost). And a rebuild of the time index (a settings save) keeps the hold's look."""
    story.event("bo", "join", "r-5", at(minutes=0))
    order(story, "bo", at(minutes=1), "o-1")
    story.advance(at(minutes=6), room="r-5")  # a lingered task in r-5
    story.advance(at(minutes=60), room="r-2")
    _send(story, "bo", "thank_first_order")  # at minute 60
    story.advance(at(days=7, minutes=2), room="r-2")  # after_sales due: held to day 7 + 60 minutes
    save(story.r, SHOP, {"prio_win_back": 3})
    story.worker.time_pass()  # the time index rebuilt: the hold's end stays its entry
    story.advance(at(days=7, minutes=8), room="r-2")
    _send(story, "bo", "lingered")  # at day 7 + 8 minutes, inside the hold
    story.advance(at(days=7, minutes=62), room="r-2")
    assert "after_sales" not in kinds(story, "bo")
    story.advance(at(days=14, minutes=9), room="r-7")  # the second send's 7 days are over: the clock alone
    assert kinds(story, "bo")["after_sales"] == "pending"
    story.advance(at(days=15), room="r-7")
    assert status(story.r, SHOP)["tasks"]["after_sales"]["pending"] == 1
