"""A running scorer archives idle rooms by itself, and drops late events of archived rooms."""

from __future__ import annotations

import json

from fanops import archive, keys
from fanops.read import status
from scoring.worker import Worker
from tests.conftest import SAMPLES
from tests.pipeline import drain, ingest_frames, lag, read_lines


def test_idle_rooms_are_archived_and_late_events_of_them_dropped(cfg, r):
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    before = {rm: status(r, "default", rm) for rm in (f"show-1-{i}" for i in range(8))}
    w = Worker(r, cfg, name="w1")
    done = w.archive_idle()
    # every show but the last one has been quiet for far more than 30 minutes of shop clock
    assert sorted(rm for _, rm in done if _ == "default") == [f"show-1-{i}" for i in range(7)]
    assert archive.is_archived(r, "default", ["show-1-0", "show-1-7"]) == {"show-1-0"}
    assert not r.exists(keys.room_viewers("default", "show-1-0"))
    assert r.exists(keys.room_viewers("default", "show-1-7"))
    # the clock index keeps only what the open room may still need
    first_open = int(r.zscore(keys.room_first("default"), "show-1-7"))
    assert min(int(s) for _, s in r.zrange(keys.clock_min("default"), 0, 0, withscores=True)) >= first_open
    # a resend of an archived show's event arrives: counted as applied, changing nothing
    late = {"id": "late-resend", "room": "show-1-0", "ts": before["show-1-0"]["clock"] - 10**9,
            "type": "order", "order_id": "o-late", "amount": 5, "currency": "USD", "viewer": {"id": "v1-1"}}
    ingest_frames(cfg, [json.dumps(late)])
    drain(r, cfg)
    assert lag(r, "default") == 0
    assert int(r.hget(keys.stats("default"), "dropped_archived")) == 1
    after = status(r, "default", "show-1-0")
    assert after["room"] == before["show-1-0"]["room"]
    # the archived show reads back with the numbers it had at its close
    room = archive.read_room(cfg, "default", "show-1-0")
    assert room is not None


def test_a_refusal_after_the_archive_withdraws_the_open_task_of_an_archived_show(cfg, r):
    from fanops import queue

    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    Worker(r, cfg, name="w1").archive_idle()
    (t,) = queue.list_tasks(r, "default", room="show-1-0", limit=1)
    before = status(r, "default", "show-1-0")["room"]["followups"]
    clock = status(r, "default")["clock"]
    refusal = {"id": "no-dm", "room": "show-1-7", "ts": clock, "type": "consent", "dm": False,
               "viewer": {"id": t.viewer}}
    ingest_frames(cfg, [json.dumps(refusal)])
    drain(r, cfg)
    assert queue.get_task(r, "default", t.id).state == "withdrawn"
    after = status(r, "default", "show-1-0")["room"]["followups"]
    assert after["pending"] == before["pending"] - 1 and after["withdrawn"] == before["withdrawn"] + 1


def test_settled_tasks_of_archived_shows_leave_redis_on_the_prune_schedule(cfg, r):
    from fanops import queue
    from scoring import worker as worker_mod

    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    w = Worker(r, cfg, name="w1")
    w.archive_idle()
    settled = queue.counts(r, "default")["converted"]
    assert settled > 0
    w._last_prune -= worker_mod.PRUNE_EVERY_S + 1
    w._last_archive = 0.0
    w.archive_idle()
    left = queue.list_tasks(r, "default", state="converted", limit=1000)
    assert all(t.room == "show-1-7" for t in left)  # only the open show keeps its settled tasks
    assert status(r, "default", "show-1-0")["room"]["followups"]["converted"] > 0  # counters stay
