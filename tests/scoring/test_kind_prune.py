"""Settled tasks of the follow-up kinds besides lingered leave Redis for the shop's ledger
(``scoring.kind_prune``) once settled for FANOPS_KIND_TASKS_KEEP_DAYS, and nothing a user sees is lost:
the fan's page, the status counts, the 7-day rule and "at most once per (viewer, kind, occasion)".
Real Redis, a real scorer, the queue's real actions; the wall clock is passed in."""

from __future__ import annotations

from pathlib import Path

import msgspec
import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fanops import keys
from fanops.errors import ArchiveError
from fanops.queue import Operator, task_rows
from fanops.read import status
from fanops.rules_store import save
from fanops.state import pack_task, unpack_task
from scoring import forget, kind_prune, retention
from scoring.idle import PRUNE_EVERY_S
from scoring.worker import Worker
from screens.reads.fans import fan_record
from tests.scoring.test_scoring_scenarios import DAY, SHOP, Story, at

W0 = 1_800_000_000_000  # the operators' wall clock (ms)
KEEP = 30 * DAY


@pytest.fixture
def story(r, cfg) -> Story:
    return Story(r, cfg)


def order(story: Story, viewer: str, ts: int, oid: str, room: str = "r-1") -> None:
    story.event(viewer, "order", room, ts, order_id=oid, amount=10, currency="EUR")


def thank_id(story: Story, viewer: str) -> str:
    return keys.kind_task_id("thank_first_order", 0, viewer)


def in_redis(story: Story, viewer: str, kind: str = "thank_first_order", occ: int = 0) -> str | None:
    b = story.r.hget(keys.kind_tasks(SHOP, kind), f"{occ}:{viewer}")
    return unpack_task(b).state if b else None


def shop_of_four(story: Story) -> Operator:
    """ann: thank-you sent at W0 (message id m-1); bob: skipped at W0; cat: withdrawn by the scorer
    (DM consent false); dan: pending."""
    for i, v in enumerate(("ann", "bob", "cat", "dan")):
        order(story, v, at(minutes=1 + i), f"o-{v}")
    story.event("cat", "consent", "r-1", at(minutes=9), dm=False)
    op = Operator(story.r, SHOP, "ops")
    op.claim(thank_id(story, "ann"), now_ms=W0 - 60_000)
    op.mark_sent(thank_id(story, "ann"), now_ms=W0, channel="email", message_id="m-1")
    op.claim(thank_id(story, "bob"), now_ms=W0 - 60_000)
    op.skip(thank_id(story, "bob"), "asked not to", now_ms=W0)
    return op


def test_settled_kind_tasks_leave_redis_after_the_keep_time_open_ones_stay_and_counts_do_not_move(story):
    shop_of_four(story)
    counts = status(story.r, SHOP)["tasks"]
    assert counts["thank_first_order"]["sent"] == 1 and counts["thank_first_order"]["withdrawn"] == 1

    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP - 1) == 0  # kept before
    assert [in_redis(story, v) for v in ("ann", "bob", "cat", "dan")] == ["sent", "skipped", "withdrawn", "pending"]

    # the scorer stamps no time on a withdrawal: the pass above first saw cat's settled, at W0 + KEEP - 1
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    assert [in_redis(story, v) for v in ("ann", "bob", "cat", "dan")] == [None, None, "withdrawn", "pending"]
    assert story.r.zscore(keys.queue(SHOP, "sent"), thank_id(story, "ann")) is None
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + 2 * KEEP - 2) == 0
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + 2 * KEEP - 1) == 1
    assert [in_redis(story, v) for v in ("ann", "bob", "cat", "dan")] == [None, None, None, "pending"]
    assert story.r.hlen(keys.kind_tasks(SHOP, "thank_first_order")) == 1
    assert story.r.zcard(keys.kind_settled(SHOP)) == 0  # the notes leave with their tasks
    assert status(story.r, SHOP)["tasks"] == counts  # status counts from the counters: unchanged
    assert [t["viewer_id"] for t in task_rows(story.r, SHOP, kind="thank_first_order")] == ["dan"]

    rows = pl.concat([pl.read_parquet(p) for p in kind_prune.ledger_files(story.cfg, SHOP)]).sort("viewer")
    assert rows["viewer"].to_list() == ["ann", "bob", "cat"]
    assert rows["state"].to_list() == ["sent", "skipped", "withdrawn"]
    ann = rows.row(0, named=True)
    assert (ann["id"], ann["kind"], ann["occasion"], ann["room"]) == (thank_id(story, "ann"), "thank_first_order",
                                                                       0, "r-1")
    assert (ann["sent_by"], ann["sent_at"], ann["channel"], ann["message_id"]) == ("ops", W0, "email", "m-1")
    assert (ann["settled_at"], ann["task_at"]) == (W0, at(minutes=1))
    assert rows.row(1, named=True)["skip_reason"] == "asked not to"


def test_the_fans_page_still_lists_a_pruned_task_and_the_message_sent(story):
    shop_of_four(story)
    before = fan_record(story.r, story.cfg, SHOP, "ann")
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    after = fan_record(story.r, story.cfg, SHOP, "ann")
    assert after["tasks"] == before["tasks"] and after["sent"] == before["sent"]
    sent = after["sent"][0]
    assert (sent["id"], sent["state"], sent["message_id"], sent["channel"]) == (
        thank_id(story, "ann"), "sent", "m-1", "email")
    assert fan_record(story.r, story.cfg, SHOP, "dan")["tasks"][0]["state"] == "pending"


def test_the_fans_screen_shows_the_pruned_task_and_its_message_id(story, redis_url, monkeypatch):
    shop_of_four(story)
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    st.cache_resource.clear()
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FANOPS_DATA_DIR", str(story.cfg.data_dir))
    t = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=30)
    t.run()
    t.query_params["fan"] = "ann"
    t.switch_page("screens/fans.py").run()
    assert not t.exception, t.exception
    tasks, sent = t.dataframe[2].value, t.dataframe[3].value  # shows, tier changes, tasks, messages sent
    assert list(zip(tasks["kind"], tasks["state"], strict=True)) == [("Thank-you, first order", "sent")]
    assert list(zip(sent["channel"], sent["message_id"], sent["by"], strict=True)) == [("email", "m-1", "ops")]


def test_a_pruned_task_is_not_made_again_by_more_events_or_a_settings_redo(story):
    shop_of_four(story)
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    counts = status(story.r, SHOP)["tasks"]["thank_first_order"]
    order(story, "ann", at(days=1), "o-ann-2")  # more of ann: a second order, a comment, a join
    story.event("ann", "comment", "r-2", at(days=20), text="hello again")
    story.event("bob", "join", "r-2", at(days=20))
    assert in_redis(story, "ann") is None and in_redis(story, "bob") is None
    # a settings change that redoes every viewer's kind tasks (scoring.recompute: kinds.stale)
    save(story.r, SHOP, {"after_sales_days": 3, "prio_thank_first_order": 7})
    story.worker.time_pass()
    assert in_redis(story, "ann") is None and in_redis(story, "bob") is None
    assert status(story.r, SHOP)["tasks"]["thank_first_order"] == counts
    assert in_redis(story, "dan") == "pending"  # the redo did run: dan's open task took the new priority
    assert [t["priority"] for t in task_rows(story.r, SHOP, kind="thank_first_order")] == [7]
    assert in_redis(story, "dan", "after_sales") == "pending"
    assert in_redis(story, "ann", "after_sales") is None  # she ordered again 1 day in: no after_sales


def test_the_7_day_rule_still_counts_a_pruned_sent_task(story):
    shop_of_four(story)  # ann's thank-you was sent at shop clock minute 9
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    story.event("ann", "join", "r-2", at(days=1))
    story.event("bob", "join", "r-2", at(days=1))
    story.advance(at(days=1, minutes=4), room="r-2")  # both lingered 4 minutes
    assert ("r-2", "bob") in story.pending()  # bob's was skipped, not sent
    assert story.task_state("r-2", "ann") is None  # ann was sent a follow-up a day ago


def test_a_claim_a_send_and_a_scorer_racing_the_prune_lose_nothing(story):
    op = shop_of_four(story)
    order(story, "eve", at(minutes=20), "o-eve")
    op.claim(thank_id(story, "eve"), now_ms=W0 + KEEP - 60_000)  # an operator at work as the pass runs

    def meanwhile(ids: list[str]) -> None:
        assert set(ids) == {thank_id(story, v) for v in ("ann", "bob")}  # written, not yet forgotten
        op.claim(thank_id(story, "dan"), now_ms=W0 + KEEP)
        op.mark_sent(thank_id(story, "eve"), now_ms=W0 + KEEP, message_id="m-eve")
        # and bob's settled task changes after the ledger got it (a write to Redis the prune must not undo)
        story.r.hset(keys.kind_tasks(SHOP, "thank_first_order"), "0:bob",
                     pack_task(msgspec.structs.replace(unpack_task(story.r.hget(
                         keys.kind_tasks(SHOP, "thank_first_order"), "0:bob")), skip_reason="changed")))

    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP, on_ledger_written=meanwhile) == 1
    assert [in_redis(story, v) for v in ("ann", "bob", "dan", "eve")] == [None, "skipped", "claimed", "sent"]
    assert [i for i, _ in kind_prune.ledger_tasks(story.cfg, SHOP, "bob")] == []  # the ledger holds what left
    assert [t.message_id for _, t in kind_prune.ledger_tasks(story.cfg, SHOP, "ann")] == ["m-1"]
    eve = unpack_task(story.r.hget(keys.kind_tasks(SHOP, "thank_first_order"), "0:eve"))
    assert (eve.state, eve.message_id) == ("sent", "m-eve")
    assert unpack_task(story.r.hget(keys.kind_tasks(SHOP, "thank_first_order"), "0:bob")).skip_reason == "changed"
    # the next pass a keep time on: bob's, cat's (first seen withdrawn by the pass above) and eve's go
    # too, each as Redis last held it
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + 2 * KEEP) == 3
    assert [t.skip_reason for _, t in kind_prune.ledger_tasks(story.cfg, SHOP, "bob")] == ["changed"]
    assert [t.message_id for _, t in kind_prune.ledger_tasks(story.cfg, SHOP, "eve")] == ["m-eve"]
    assert in_redis(story, "dan") == "claimed"


def test_forget_erases_the_viewer_from_the_ledger_and_keeps_the_others(story):
    shop_of_four(story)
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    out = forget.forget_viewer(story.r, story.cfg, SHOP, "ann", rewrite_disk=False)
    assert out["removed"]["ledger_tasks"] == 1
    assert kind_prune.ledger_tasks(story.cfg, SHOP, "ann") == []
    files = kind_prune.ledger_files(story.cfg, SHOP)
    assert "ann" not in pl.read_parquet(files[0])["viewer"].to_list()  # not in the file's bytes either
    assert [t.state for _, t in kind_prune.ledger_tasks(story.cfg, SHOP, "bob")] == ["skipped"]
    assert forget.forget_viewer(story.r, story.cfg, SHOP, "ann", rewrite_disk=False)["removed"]["ledger_tasks"] == 0


def test_retention_empties_said_in_the_ledger_of_inactive_viewers_only(story):
    """Kind tasks carry no ``said`` today: this gives two pruned tasks one, as a scorer that kept
    comments in them would, and checks retention empties the inactive viewer's."""
    shop_of_four(story)
    hk = keys.kind_tasks(SHOP, "thank_first_order")
    for v in ("ann", "bob"):
        rec = unpack_task(story.r.hget(hk, f"0:{v}"))
        story.r.hset(hk, f"0:{v}", pack_task(msgspec.structs.replace(rec, said=[f"{v} says hi"])))
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    story.advance(at(days=100), by="bob")  # bob active, ann not for 100 days
    out = retention.retention_pass(story.r, story.cfg, SHOP)
    assert out["ledger_said"] == 1
    assert [t.said for _, t in kind_prune.ledger_tasks(story.cfg, SHOP, "ann")] == [[]]
    assert [t.said for _, t in kind_prune.ledger_tasks(story.cfg, SHOP, "bob")] == [["bob says hi"]]
    assert [t.message_id for _, t in kind_prune.ledger_tasks(story.cfg, SHOP, "ann")] == ["m-1"]


def test_a_ledger_that_cannot_be_written_is_a_clear_error_and_redis_keeps_every_task(story):
    shop_of_four(story)
    story.cfg.data_dir.mkdir(parents=True, exist_ok=True)
    (story.cfg.data_dir / kind_prune.LEDGER).write_text("not a folder")
    with pytest.raises(ArchiveError, match="cannot write the kind-task ledger of shop 'default'.*no task left Redis"):
        kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP)
    assert [in_redis(story, v) for v in ("ann", "bob", "cat", "dan")] == ["sent", "skipped", "withdrawn", "pending"]


def test_a_running_scorer_prunes_on_its_prune_schedule(story, r, cfg):
    shop_of_four(story)
    mono = [0.0]
    w = Worker(r, cfg, name="pruner", shops=[SHOP], clock=lambda: (W0 + KEEP) / 1000, monotonic=lambda: mono[0])
    w.archive_idle()
    assert in_redis(story, "ann") == "sent"  # not the prune's time yet
    mono[0] = PRUNE_EVERY_S + 1
    w.archive_idle()
    # dan's task, pending for 30 days, expired at the first look: settled just now, it stays
    assert in_redis(story, "ann") is None and in_redis(story, "dan") == "expired"
    assert [t.state for _, t in kind_prune.ledger_tasks(cfg, SHOP, "ann")] == ["sent"]


def test_a_kind_switched_off_and_on_again_after_the_prune_makes_no_second_task(story):
    """Without pruning, the task an operator sent keeps its hash field, which stops the redo under
    the settings that give it again from making it twice; a pruned one is put back first."""
    shop_of_four(story)
    story.advance(at(days=10))  # past the 7 days since ann's thank-you: only the task itself stops a second
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    counts = status(story.r, SHOP)["tasks"]["thank_first_order"]
    save(story.r, SHOP, {"on_thank_first_order": 0})
    story.worker.time_pass()
    assert [in_redis(story, v) for v in ("ann", "bob", "dan")] == ["sent", "skipped", None]  # back; dan's open one went
    # the data no longer gives them: they stay; cat's withdrawn one went with the switch, and so does
    # the note of when it was settled
    assert story.r.zscore(keys.kind_settled(SHOP), thank_id(story, "cat")) is not None
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + 3 * KEEP) == 0
    assert story.r.zcard(keys.kind_settled(SHOP)) == 0
    save(story.r, SHOP, {"on_thank_first_order": 1})
    story.worker.time_pass()
    assert [in_redis(story, v) for v in ("ann", "bob", "dan")] == ["sent", "skipped", "pending"]
    assert status(story.r, SHOP)["tasks"]["thank_first_order"] == counts
    assert [t["state"] for t in fan_record(story.r, story.cfg, SHOP, "ann")["tasks"]
            if t["kind"] == "thank_first_order"] == ["sent"]


def test_forget_erases_a_kind_task_the_viewers_state_no_longer_names(story):
    shop_of_four(story)
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    save(story.r, SHOP, {"on_thank_first_order": 0})
    story.worker.time_pass()  # ann's sent task is back in Redis; her state no longer names it
    assert in_redis(story, "ann") == "sent"
    out = forget.forget_viewer(story.r, story.cfg, SHOP, "ann", rewrite_disk=False)
    assert in_redis(story, "ann") is None and out["removed"]["ledger_tasks"] == 1
    assert story.r.zscore(keys.queue(SHOP, "sent"), thank_id(story, "ann")) is None
    assert in_redis(story, "bob") == "skipped"


def test_a_damaged_ledger_file_is_a_clear_error_redis_keeps_every_task_and_the_page_still_opens(story):
    shop_of_four(story)
    assert kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP) == 2
    good = kind_prune.ledger_files(story.cfg, SHOP)[0]
    kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + 2 * KEEP)  # cat's, next month's file
    assert len(kind_prune.ledger_files(story.cfg, SHOP)) == 2
    good.write_bytes(b"PAR1 half written")  # february's file, holding ann's and bob's, damaged
    story.advance(at(days=1))
    op = Operator(story.r, SHOP, "ops")
    op.claim(thank_id(story, "dan"), now_ms=W0 + KEEP)
    op.mark_sent(thank_id(story, "dan"), now_ms=W0 + KEEP)
    with pytest.raises(ArchiveError, match="kind-task ledger of shop 'default' .* is not readable .* no task left"):
        kind_prune.prune_kind_tasks(story.r, story.cfg, SHOP, now_ms=W0 + KEEP + DAY, keep_days=0)  # february
    assert in_redis(story, "dan") == "sent"
    assert [t["state"] for t in fan_record(story.r, story.cfg, SHOP, "dan")["tasks"]] == ["sent"]
    assert [t["state"] for t in fan_record(story.r, story.cfg, SHOP, "cat")["tasks"]] == ["withdrawn"]  # march's
    with pytest.raises(ArchiveError, match="kind-task ledger is not readable .* delete the file"):
        forget.forget_viewer(story.r, story.cfg, SHOP, "bob", rewrite_disk=False)
