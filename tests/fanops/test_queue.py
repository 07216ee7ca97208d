"""Operator actions on the follow-up queue, against a real Redis filled by the real pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from fanops import keys, queue
from fanops.errors import TaskClaimedByOther, TaskError, TaskNotFound, TaskStateError
from fanops.read import status
from fanops.state import unpack_task
from scoring.worker import Worker
from tests.conftest import SAMPLES
from tests.pipeline import drain, ingest_frames, read_lines

NOW = 1_800_000_000_000  # wall clock for the actions (ms), passed in so leases are exact


@pytest.fixture
def filled(cfg, r):
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    return r


def top(r, **kw):
    return queue.list_tasks(r, "default", now_ms=NOW, **kw)


def test_pending_tasks_come_by_priority_with_what_the_operator_needs(filled):
    tasks = top(filled, limit=20)
    assert len(tasks) == 20
    prios = [t.priority for t in tasks]
    assert prios == sorted(prios, reverse=True)
    t = tasks[0]
    assert t.state == "pending" and t.name and t.tier in ("new_fan", "first_buyer", "active", "dormant")
    assert t.dwell_ms >= 180_000
    assert t.message and (t.name[:10] in t.message or t.name == "")
    # every listed task is really pending in Redis
    for t in tasks:
        room, viewer = queue.split_task_id(t.id)
        assert unpack_task(filled.hget(keys.tasks("default", room), viewer)).state == "pending"


def test_filters_by_tier_language_country_and_state(filled):
    for t in top(filled, tier="first_buyer", limit=100):
        assert t.tier == "first_buyer"
    es = top(filled, lang="es", limit=100)
    assert es and all(t.lang.lower().startswith("es") for t in es)
    conv = top(filled, state="converted", limit=1000)
    assert len(conv) == sum(status(filled, "default", rm)["room"]["followups"]["converted"]
                            for rm in [f"show-1-{i}" for i in range(8)])
    assert all(t.state == "converted" for t in conv)
    sendable = top(filled, sendable_now=True, limit=1000)
    assert all(t.decent_hour is not False for t in sendable)


def test_open_lists_pending_and_claimed_together_and_skips_members_that_are_no_task_id(filled):
    t1, t2 = top(filled, limit=2)
    queue.Operator(filled, "default", "ana").claim(t1.id, now_ms=NOW)
    filled.zadd(keys.queue("default", "pending"), {"not a task id": 10**9})
    assert t1.id not in {t.id for t in top(filled, limit=1000)}
    assert [t.id for t in top(filled, state="claimed")] == [t1.id]
    opened = top(filled, state=queue.OPEN, limit=2)
    assert [t.id for t in opened] == [t1.id, t2.id]  # by priority, whoever holds them
    assert opened[0].state == "claimed" and opened[0].holder == "ana" and opened[0].message
    assert top(filled, state=queue.OPEN, limit=1, scan=1)[0].id == t1.id


def test_claim_send_flow_updates_the_room_counts(filled):
    t = top(filled)[0]
    before = status(filled, "default", t.room)["room"]["followups"]
    ana = queue.Operator(filled, "default", "ana")
    assert ana.claim(t.id, now_ms=NOW) == "claimed"
    assert queue.get_task(filled, "default", t.id, now_ms=NOW).holder == "ana"
    assert ana.mark_sent(t.id, now_ms=NOW) == "sent"
    after = status(filled, "default", t.room)["room"]["followups"]
    assert after["pending"] == before["pending"] - 1 and after["sent"] == before["sent"] + 1
    assert t.id not in {x.id for x in top(filled, limit=1000)}
    assert filled.zscore(keys.sent_log("default"), t.viewer) is not None


def test_two_operators_claiming_one_task_one_wins_the_other_is_told_who(filled):
    t = top(filled)[0]
    ana, bo = queue.Operator(filled, "default", "ana"), queue.Operator(filled, "default", "bo")
    ana.claim(t.id, now_ms=NOW)
    with pytest.raises(TaskClaimedByOther) as e:
        bo.claim(t.id, now_ms=NOW + 1000)
    assert e.value.holder == "ana" and "ana" in str(e.value)
    with pytest.raises(TaskClaimedByOther):
        bo.mark_sent(t.id, now_ms=NOW + 1000)
    with pytest.raises(TaskClaimedByOther):
        bo.skip(t.id, "duplicate", now_ms=NOW + 1000)


def test_a_claim_lapses_after_five_minutes(filled):
    t = top(filled)[0]
    ana, bo = queue.Operator(filled, "default", "ana"), queue.Operator(filled, "default", "bo")
    ana.claim(t.id, now_ms=NOW)
    assert queue.get_task(filled, "default", t.id, now_ms=NOW + 299_000).state == "claimed"
    assert queue.get_task(filled, "default", t.id, now_ms=NOW + 301_000).state == "pending"
    assert bo.claim(t.id, now_ms=NOW + 301_000) == "claimed"
    with pytest.raises(TaskClaimedByOther):
        ana.mark_sent(t.id, now_ms=NOW + 302_000)


def test_release_expired_sweeps_lapsed_claims_back(filled):
    t = top(filled)[0]
    queue.Operator(filled, "default", "ana").claim(t.id, now_ms=NOW)
    room = t.room
    assert status(filled, "default", room)["room"]["followups"]["claimed"] == 1
    assert queue.release_expired(filled, "default", now_ms=NOW + 10_000) == 0
    assert queue.release_expired(filled, "default", now_ms=NOW + 400_000) == 1
    assert status(filled, "default", room)["room"]["followups"]["claimed"] == 0


def test_a_lapsed_claim_counts_as_pending_in_status_and_after_a_scorer_s_idle_look(filled, cfg, redis_url):
    """spec/tiers.md: a claim lapses back to pending after 5 minutes of wall time. ``status`` says so at
    once; a running scorer sweeps lapsed claims back in its idle look (each minute), for the board."""
    now = int(time.time() * 1000)
    a, b = top(filled)[:2]
    queue.Operator(filled, "default", "ana").claim(a.id, now_ms=now - 301_000)  # 5 minutes and 1 s ago
    queue.Operator(filled, "default", "bo").claim(b.id, now_ms=now)
    counts = status(filled, "default")["tasks"]["lingered"]
    assert counts["claimed"] == 2
    out = subprocess.run([sys.executable, "-m", "scoring", "status", "--shop", "default", "--redis", redis_url],
                         capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout)["tasks"]["lingered"]
    assert (got["claimed"], got["pending"]) == (1, counts["pending"] + 1)
    queue.Operator(filled, "default", "cy").claim(a.id, now_ms=now - 400_000)  # lapsed again
    Worker(filled, cfg, name="w1")._idle.look()
    assert status(filled, "default")["tasks"]["lingered"]["claimed"] == 1


def test_skip_needs_a_reason_and_release_gives_the_task_back(filled):
    t1, t2 = top(filled)[:2]
    ana = queue.Operator(filled, "default", "ana")
    with pytest.raises(TaskError, match="reason"):
        ana.skip(t1.id, "  ")
    assert ana.skip(t1.id, "already talked on WhatsApp", now_ms=NOW) == "skipped"
    got = queue.get_task(filled, "default", t1.id, now_ms=NOW)
    assert got.state == "skipped" and got.skip_reason == "already talked on WhatsApp"
    ana.claim(t2.id, now_ms=NOW)
    assert ana.release(t2.id, now_ms=NOW) == "pending"
    with pytest.raises(TaskStateError):
        ana.release(t2.id, now_ms=NOW)


def test_actions_on_finished_or_missing_tasks_are_refused_clearly(filled):
    conv = top(filled, state="converted")[0]
    ana = queue.Operator(filled, "default", "ana")
    with pytest.raises(TaskStateError, match="converted"):
        ana.claim(conv.id, now_ms=NOW)
    with pytest.raises(TaskStateError, match="not claimed"):
        ana.mark_sent(top(filled)[0].id, now_ms=NOW)
    with pytest.raises(TaskNotFound):
        ana.claim(queue.task_id("nope", "nobody"), now_ms=NOW)
    with pytest.raises(TaskError):
        queue.Operator(filled, "default", "   ")


def test_hostile_names_are_stored_and_shown_as_given(cfg, r):
    import json

    name = '<script>alert(1)</script>{product}\u202eevil'
    base = 1_760_000_000_000
    evs = [{"id": "a", "room": "r1", "ts": base, "type": "join", "viewer": {"id": "x", "name": name}},
           {"id": "b", "room": "r1", "ts": base + 1000, "type": "comment", "text": "<b>hi</b>?",
            "viewer": {"id": "x"}},
           {"id": "c", "room": "r1", "ts": base + 200_000, "type": "join", "viewer": {"id": "y"}}]
    ingest_frames(cfg, [json.dumps(evs)])
    drain(r, cfg)
    (t,) = queue.list_tasks(r, "default", now_ms=NOW)
    assert t.name == name
    assert t.said == ["<b>hi</b>?"]
    # the name goes into the message literally, once: its "{product}" is not expanded,
    # and the right-to-left override that would flip the operator's text is dropped
    assert "<script>alert(1)</script>{product}evil" in t.message
    assert "\u202e" not in t.message


def test_a_task_shows_the_viewers_name_and_country_as_they_are_now_and_so_does_its_archive(cfg, r):
    import json

    from review import archive_files
    from scoring import archive

    base = 1_760_000_000_000
    quiet = {"id": "quiet"}
    ingest_frames(cfg, [json.dumps([
        {"id": "a", "room": "r1", "ts": base, "type": "join", "viewer": quiet},  # no name yet
        {"id": "b", "room": "r1", "ts": base + 200_000, "type": "join", "viewer": {"id": "other"}}])])
    drain(r, cfg)
    tid = queue.task_id("r1", "quiet")
    t = queue.get_task(r, "default", tid, now_ms=NOW)
    assert t.state == "pending" and (t.name, t.country, t.lang) == ("", "", "")
    # they tell their name, country and language in another show: nothing of the r1 task moves,
    # and the operator still sees who they are now, in their language and their local time
    ingest_frames(cfg, [json.dumps({"id": "c", "room": "r2", "ts": base + 300_000, "type": "comment",
                                    "text": "oi", "viewer": {"id": "quiet", "name": "Ana Luísa", "country": "BR",
                                                             "lang": "pt-BR"}})])
    drain(r, cfg)
    t = queue.get_task(r, "default", tid, now_ms=NOW)
    assert (t.name, t.country, t.lang) == ("Ana Luísa", "BR", "pt-BR")
    assert "Ana Luísa" in t.message and t.local.endswith("(-03)")
    assert [x.id for x in queue.list_tasks(r, "default", country="BR", now_ms=NOW)] == [tid]
    assert [x.id for x in queue.list_tasks(r, "default", lang="pt", now_ms=NOW)] == [tid]
    # the post-show review reads the room's tasks from its archive: the same name
    archive.archive_room(r, cfg, "default", "r1")
    rows = archive_files.read_room(cfg, "default", "r1").followups().collect()
    row = rows.filter(rows["viewer"] == "quiet").to_dicts()[0]
    assert (row["name"], row["country"], row["lang"]) == ("Ana Luísa", "BR", "pt-BR")
