"""A running scorer archives idle rooms by itself; a late event of an archived room opens it again."""

from __future__ import annotations

import json
import threading
import time

import redis

from fanops import keys
from fanops.read import status
from review import archive_files
from scoring import archive
from scoring.worker import Worker
from tests.conftest import SAMPLES, wait_for
from tests.pipeline import differences, drain, ingest_frames, lag, read_lines
from tests.reference import Reference


def _late_events(before: dict) -> list[dict]:
    """Late events of the archived show-1-0: an order of a viewer who was there, a comment, and a
    viewer never seen before who joins and stays."""
    t = before["show-1-0"]["clock"] - 10**9
    return [
        {"id": "late-order", "room": "show-1-0", "ts": t, "type": "order", "order_id": "o-late", "amount": 5,
         "currency": "USD", "viewer": {"id": "v1-1"}},
        {"id": "late-comment", "room": "show-1-0", "ts": t + 1000, "type": "comment", "text": "still there?",
         "viewer": {"id": "v1-2"}},
        {"id": "late-join", "room": "show-1-0", "ts": t + 2000, "type": "join",
         "viewer": {"id": "v-late-new", "name": "Late", "country": "DE", "lang": "de"}},
        {"id": "late-cart", "room": "show-1-0", "ts": t + 5 * 60_000, "type": "cart_add", "sku": "SKU-1",
         "viewer": {"id": "v-late-new"}},
    ]


def test_idle_rooms_are_archived_and_a_late_event_reopens_them(cfg, r):
    """spec/events.md: an archived show takes its late events like any other (its archive is
    brought up to date); the state equals the reference model fed every event."""
    lines = read_lines(SAMPLES / "weeks-small.jsonl")
    ingest_frames(cfg, lines)
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
    gen = archive_files.read_room(cfg, "default", "show-1-0").info.generation
    late = _late_events(before)
    ingest_frames(cfg, [json.dumps(late)])
    drain(r, cfg)
    assert lag(r, "default") == 0
    assert int(r.hget(keys.stats("default"), "dropped_archived") or 0) == 0
    assert not archive.is_archived(r, "default", ["show-1-0"])  # open again
    ref = Reference()
    ref.feed([*lines, json.dumps(late)], int(time.time() * 1000))
    for rm in before:
        assert differences(status(r, "default", rm), ref.status("default", rm)) == [], rm
    # the idle pass archives it again: a new generation with the late events and the new viewer
    assert ("default", "show-1-0") in w.archive_idle()
    a = archive_files.read_room(cfg, "default", "show-1-0")
    assert a.info.generation > gen
    assert a.info.events == before_events(cfg, lines) + len(late)
    assert "v-late-new" in a.viewers().collect()["viewer"].to_list()
    assert a.facts["status"]["room"] == ref.status("default", "show-1-0")["room"]
    for rm in before:
        assert differences(status(r, "default", rm), ref.status("default", rm)) == [], rm


def before_events(cfg, lines: list[str]) -> int:
    """The events of show-1-0 in the sample (as the reference model reads them)."""
    ref = Reference()
    ref.feed(lines, int(time.time() * 1000))
    return sum(1 for (_shop, rm, _id) in ref.events if rm == "show-1-0")


def test_a_resend_of_an_archived_show_is_counted_as_repeats_not_applied_again(cfg, r):
    """spec/events.md: a repeat of an archived show's event is still a repeat (``duplicates``),
    also once the consumer's dedupe table of the room went with its raw data."""
    lines = read_lines(SAMPLES / "weeks-small.jsonl")
    ingest_frames(cfg, lines)
    drain(r, cfg)
    Worker(r, cfg, name="w1").archive_idle()
    assert "show-1-0" in archive.is_archived(r, "default", ["show-1-0"])
    before = status(r, "default")
    frames = []
    for ln in lines:
        try:
            frames.append(json.loads(ln))
        except ValueError:
            continue  # the sample's bad frames: not part of the show
    show = [e for f in frames for e in (f if isinstance(f, list) else [f])
            if isinstance(e, dict) and e.get("room") == "show-1-0"]
    ingest_frames(cfg, [json.dumps(show[i:i + 50]) for i in range(0, len(show), 50)])  # sent again, all of it
    drain(r, cfg)
    after = status(r, "default")
    assert lag(r, "default") == 0
    assert after["events_applied"] == before["events_applied"]
    assert after["duplicates"] - before["duplicates"] == len(show) - (after["dead_letters"] - before["dead_letters"])
    assert after["tiers"] == before["tiers"] and int(r.hget(keys.stats("default"), "dropped_archived") or 0) == 0


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
    from scoring import idle

    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    now = [1000.0]
    w = Worker(r, cfg, name="w1", monotonic=lambda: now[0])
    w.archive_idle()
    settled = queue.counts(r, "default")["converted"]
    assert settled > 0
    now[0] += idle.PRUNE_EVERY_S + 1  # the prune schedule comes round
    w.archive_idle()
    left = queue.list_tasks(r, "default", state="converted", limit=1000)
    assert all(t.room == "show-1-7" for t in left)  # only the open show keeps its settled tasks
    assert status(r, "default", "show-1-0")["room"]["followups"]["converted"] > 0  # counters stay


def test_archived_rooms_fold_into_a_few_numbers_and_still_count(cfg, r):
    """A viewer who comes back after a show was archived keeps that show as its number and first
    ts (``state.fold``); the archived room's tier counts still follow its viewers' tiers, through
    a settings change (rebuild) as well."""
    from fanops import rules_store
    from fanops.read import viewer_state
    from fanops.state import past_numbers
    from scoring import recompute

    lines = read_lines(SAMPLES / "weeks-small.jsonl")
    ingest_frames(cfg, lines)
    drain(r, cfg)
    w = Worker(r, cfg, name="w1")
    w.archive_idle()
    nos = {v.decode(): int(k) for k, v in r.hgetall(keys.room_nos("default")).items()}
    assert sorted(nos) == [f"show-1-{i}" for i in range(7)] and sorted(nos.values()) == list(range(1, 8))
    # every viewer of show-1-0 comes back to the open show: their states fold the archived shows
    viewers = sorted(archive_files.read_room(cfg, "default", "show-1-0").viewers().collect()["viewer"].to_list())
    clock = status(r, "default")["clock"]
    back = [{"id": f"back-{i}", "room": "show-1-7", "ts": clock, "type": "like", "viewer": {"id": v}}
            for i, v in enumerate(viewers)]
    ingest_frames(cfg, [json.dumps(back)])
    drain(r, cfg)
    for v in viewers:
        s = viewer_state(r, "default", v)
        assert not set(s.rooms) & set(nos)  # no archived room left in full
        assert nos["show-1-0"] in past_numbers(s)

    def by_tier(room: str) -> dict[str, int]:
        counts = dict.fromkeys(("new_fan", "first_buyer", "active", "dormant"), 0)
        for v in archive_files.read_room(cfg, "default", room).viewers().collect()["viewer"].to_list():
            counts[viewer_state(r, "default", v).tier] += 1
        return counts

    before = status(r, "default", "show-1-0")["room"]["tiers"]
    assert before == by_tier("show-1-0") and before["active"] > 0
    rules_store.save(r, "default", {"active_rooms": 20})  # active by rooms attended: none any more
    assert recompute.rebuild(r, "default")
    got = status(r, "default", "show-1-0")["room"]["tiers"]
    assert got == by_tier("show-1-0") and got["active"] < before["active"]


def test_folded_rooms_read_back_exactly():
    from hypothesis import given
    from hypothesis import strategies as st

    from fanops.state import (
        PAST_FIRSTS,
        ViewerState,
        fold,
        pack,
        past_firsts,
        past_numbers,
        rooms_attended,
        unpack_viewer,
    )

    ts = st.integers(min_value=0, max_value=4_000_000_000_000)

    @given(st.dictionaries(st.text(min_size=1, max_size=8), st.tuples(ts, st.integers(0, 10**8)), min_size=1,
                           max_size=50), st.data())
    def check(rooms, data):
        names = sorted(rooms)
        nos = {rm: i + 1 for i, rm in enumerate(data.draw(st.permutations(names)))}
        v = ViewerState(first_seen=0, last_active=0, rooms={k: [f, f + d] for k, (f, d) in rooms.items()})
        archived: list[str] = []
        for _ in range(data.draw(st.integers(1, 3))):  # archived over several batches
            archived = sorted(set(archived) | set(data.draw(st.lists(st.sampled_from(names), unique=True))))
            fold(v, {rm: nos[rm] for rm in archived})
            v = unpack_viewer(pack(v))
        # folded: the archived rooms that ended before every room still open started
        open_first = min((rooms[rm][0] for rm in names if rm not in archived), default=None)
        gone = [rm for rm in archived if open_first is None or rooms[rm][0] + rooms[rm][1] < open_first]
        assert past_firsts(v) == sorted((rooms[rm][0] for rm in gone), reverse=True)[:PAST_FIRSTS]
        assert past_numbers(v) == sorted(nos[rm] for rm in gone)
        assert set(v.rooms) == set(names) - set(gone) and rooms_attended(v) == len(names)
        assert v.past_last == (max(rooms[rm][0] + rooms[rm][1] for rm in gone) if gone else -1)

    check()


def _event(i: int, room: str, ts: int, viewer: str, type: str = "like", **x):
    from fanops.schema import parse_event

    e = parse_event(json.dumps({"id": f"e{i}", "room": room, "ts": ts, "type": type, "viewer": {"id": viewer},
                                **x}).encode(), ts, 10**12)
    assert not hasattr(e, "reason"), e
    return e


def test_an_event_of_a_room_archived_after_the_workers_check_is_dropped_not_counted_twice():
    """close-room beside a running scorer: the room is archived between the worker's check for
    archived rooms and its scoring; the engine drops the event (counted as applied), so the room
    is never both folded and attended again."""
    from fanops.rules_settings import RuleSettings
    from fanops.state import ViewerState, pack, rooms_attended
    from scoring.effects import Inputs
    from scoring.engine import score_batch

    day = 86_400_000
    v = ViewerState(first_seen=0, last_active=day, rooms={"a": [0, 1000], "b": [day, day]}, tier="new_fan")
    inp = Inputs(clock=day, settings=RuleSettings(), rules_version=0, viewers={"u": pack(v)},
                 room_viewers={}, archived={"a": 1}, room_ids={1: "a"}, open_since=day)
    fx = score_batch(inp, [_event(1, "a", 2000, "u"), _event(2, "b", day + 5, "u")])
    (_vid, _old, state), = fx.viewers
    assert rooms_attended(state) == 2 and "a" not in state.rooms
    assert fx.shop_counts["dropped_archived"] == 1 and fx.shop_counts["applied"] == 2


def test_an_archived_room_that_ran_past_an_open_rooms_start_is_not_folded_until_that_room_ends():
    """``reactivated`` needs the latest event before a room's start: a show archived while a longer
    one the viewer is in is still open stays in full until that one is archived too."""
    from fanops.rules_settings import RuleSettings
    from fanops.state import ViewerState, fold
    from scoring import rules

    day, h = 86_400_000, 3_600_000
    v = ViewerState(first_seen=0, last_active=40 * day + 2 * h,
                    rooms={"a": [0, h], "r": [40 * day, 40 * day + 2 * h], "c": [40 * day + h, 40 * day + 2 * h]})
    assert rules.is_reactivated(v, "r", RuleSettings())  # back after 40 days
    assert fold(v, {"a": 1, "c": 2}) and set(v.rooms) == {"r", "c"}  # a folded; c ran past r's start
    assert rules.is_reactivated(v, "r", RuleSettings())
    assert fold(v, {"a": 1, "c": 2, "r": 3}) and not v.rooms


def test_settings_saved_under_wider_bounds_are_brought_into_range(r, caplog):
    from fanops import rules_store

    r.hset(keys.rules("default"), mapping={"version": 3, "active_rooms": 25, "dormant_days": 45})
    s, version = rules_store.load(r, "default")
    assert (s.active_rooms, s.dormant_days, version) == (20, 45, 3)
    assert "outside today's bounds" in caplog.text


def test_rooms_archived_by_an_earlier_version_get_their_numbers_when_a_scorer_starts(cfg, r):
    """Layout 2 archived rooms without numbering them: a scorer numbers them once (scoring.migrate),
    and viewers who come back then keep those rooms compactly too."""
    from fanops.read import viewer_state
    from fanops.state import past_numbers

    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    Worker(r, cfg, name="w1").archive_idle()
    # as an earlier version left it: archived, no numbers
    for i in range(7):
        r.hdel(keys.room("default", f"show-1-{i}"), "no")
    r.delete(keys.room_nos("default"))
    r.hdel(keys.stats("default"), "room_no_seq")
    r.hset(keys.stats("default"), "layout", 2)
    Worker(r, cfg, name="w2").step()
    nos = {v.decode(): int(k) for k, v in r.hgetall(keys.room_nos("default")).items()}
    assert sorted(nos) == [f"show-1-{i}" for i in range(7)] and sorted(nos.values()) == list(range(1, 8))
    assert all(int(r.hget(keys.room("default", rm), "no")) == no for rm, no in nos.items())
    v = archive_files.read_room(cfg, "default", "show-1-0").viewers().collect()["viewer"][0]
    clock = status(r, "default")["clock"]
    ingest_frames(cfg, [json.dumps({"id": "back", "room": "show-1-7", "ts": clock, "type": "like",
                                    "viewer": {"id": v}})])
    drain(r, cfg)
    assert nos["show-1-0"] in past_numbers(viewer_state(r, "default", v))


def test_a_running_scorer_archives_earlier_shows_soon_after_applying_them(cfg, r):
    # the simulator and real feeds send a shop's earlier shows first: they reach the review within
    # seconds of being applied, not at the scorer's next minute
    w = Worker(redis.Redis.from_url(cfg.redis_url), cfg, name="w1", block_ms=200)
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    try:
        wait_for(lambda: w.stats.idle_looks > 0, 10, "the scorer's first look for idle rooms")
        ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))  # after that first look
        wait_for(lambda: len(archive_files.list_archived(cfg, "default")) == 7, 20, "the seven ended shows archived")
    finally:
        w.stop()
        th.join(10)
        w.r.close()


def test_a_show_whose_follow_ups_were_brought_up_to_date_in_its_archive_still_reopens(cfg, r):
    """refresh_followups writes a later generation of the archive (follow-ups only); the room's
    Redis data it carries over still opens the show for a late event."""
    from fanops import queue

    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    Worker(r, cfg, name="w1").archive_idle()
    gen = archive_files.read_room(cfg, "default", "show-1-0").info.generation
    (t,) = queue.list_tasks(r, "default", room="show-1-0", limit=1)
    clock = status(r, "default")["clock"]
    ingest_frames(cfg, [json.dumps({"id": "no-dm", "room": "show-1-7", "ts": clock, "type": "consent",
                                    "dm": False, "viewer": {"id": t.viewer}})])
    drain(r, cfg)
    assert archive.refresh_followups(r, cfg, "default", ["show-1-0"]) == ["show-1-0"]
    assert archive_files.read_room(cfg, "default", "show-1-0").info.generation > gen
    late = {"id": "late-after-refresh", "room": "show-1-0", "ts": clock - 10**9, "type": "comment",
            "text": "hello again", "viewer": {"id": "v-after-refresh"}}
    before = status(r, "default", "show-1-0")["room"]["unique_viewers"]
    ingest_frames(cfg, [json.dumps(late)])
    drain(r, cfg)
    assert int(r.hget(keys.stats("default"), "dropped_archived") or 0) == 0
    assert status(r, "default", "show-1-0")["room"]["unique_viewers"] == before + 1


def test_a_big_shows_archiving_does_not_hold_up_the_live_shows_batches(cfg, r, monkeypatch):
    """A show of 100,000 viewers takes seconds to archive (bench/reopen.py); the running scorer
    archives in a thread of its own, so the events of the show on air meanwhile are applied as
    they come, not after it."""
    import dataclasses

    from scoring import idle
    from tests.feeds import ev, frame

    entered, release = threading.Event(), threading.Event()

    def big_show(*_a, **_kw):  # an archive that takes as long as the test wants
        entered.set()
        release.wait(20)
        return []

    monkeypatch.setattr(idle.archive, "close_idle_rooms", big_show)
    busy = dataclasses.replace(cfg, archive_every_s=0)
    ingest_frames(busy, [frame(ev("earlier", room="big-show", type="join"))])  # the shop, known
    w = Worker(r, busy, name="w1")
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        assert entered.wait(10), "the scorer looks for idle rooms"
        ingest_frames(busy, [frame(*(ev(i, room="on-air", viewer=f"u-{i}", type="join") for i in range(50)))])
        wait_for(lambda: status(r, "default")["events_applied"] == 51, 5, "the live show's events applied")
        assert not release.is_set() and w._idle.running(), "while the archiving still runs"
    finally:
        release.set()
        w.stop()
        thread.join(15)
    assert not thread.is_alive()


def test_a_show_archived_between_a_batchs_read_and_its_write_gets_no_record_back(cfg, r):
    """The scorer archives in a thread beside its batches. A batch may read a show still open and
    write after the archive removed its data: a viewer of it who refuses DMs in the show on air has
    their records in every room rewritten. Those writes must not bring back records the archive
    took (they would linger, out of every archive): the write is refused and the batch read again."""
    lines = read_lines(SAMPLES / "weeks-small.jsonl")
    ingest_frames(cfg, lines)
    drain(r, cfg)
    clock = int(r.hget(keys.stats("default"), "clock"))
    who = next(v.decode() for v in r.hkeys(keys.room_viewers("default", "show-1-0"))
               if r.hexists(keys.room_viewers("default", "show-1-7"), v))
    refusal = {"id": "refusal", "room": "show-1-7", "ts": clock, "type": "consent", "dm": False, "viewer": {"id": who}}
    ingest_frames(cfg, [json.dumps(refusal)])
    w = Worker(r, cfg, name="w1")
    write = w.write
    archived_meanwhile = []

    def archive_first(*a, **kw):
        if not archived_meanwhile:  # the idle look's thread, between this batch's read and its write
            archived_meanwhile.append(archive.archive_room(r, cfg, "default", "show-1-0"))
        return write(*a, **kw)

    w.write = archive_first  # type: ignore[method-assign]
    w.drain(60)
    assert archived_meanwhile and not archived_meanwhile[0].already
    assert lag(r, "default") == 0 and archive.is_archived(r, "default", ["show-1-0"]) == {"show-1-0"}
    assert not r.exists(keys.room_viewers("default", "show-1-0")), "no record of the archived show came back"
    ref = Reference()
    ref.feed([*lines, json.dumps(refusal)], int(time.time() * 1000))
    for rm in ("show-1-0", "show-1-7"):
        assert differences(status(r, "default", rm), ref.status("default", rm)) == [], rm
