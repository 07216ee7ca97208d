"""Scenarios of spec/tiers.md, each a story on the shop clock: submit events, advance, assert.

The shop clock is event time (the largest ``ts`` applied): it moves only when an event
arrives, often another viewer's.  Each ``submit`` goes through the real ingest path
(``parse_frame`` and ``IngestWriter``) and a real scorer worker drains it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from fanops import keys
from fanops.config import Config
from fanops.queue import Operator, list_tasks
from fanops.read import status, viewer_state
from fanops.runtime import db, server
from fanops.schema import BadInput, parse_frame
from fanops.state import unpack_task
from realtime.writer import IngestWriter
from scoring.worker import Worker

SHOP = "default"
MIN = 60_000
DAY = 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z, a show's start; every story is in the past
ROOT = Path(__file__).resolve().parents[2]


def at(days: float = 0, minutes: float = 0) -> int:
    return T0 + int(days * DAY) + int(minutes * MIN)


class Story:
    """A shop on a simulated clock.  ``say(...)`` builds an event with a fresh id;
    ``submit(...)`` ingests events and lets a worker apply them all."""

    def __init__(self, r: redis.Redis, cfg: Config) -> None:
        self.r = r
        self.cfg = cfg
        self.worker = Worker(r, cfg, name="story")
        self.n = 0

    def say(self, viewer: str, type: str, room: str, ts: int, **extra: Any) -> dict[str, Any]:
        self.n += 1
        e: dict[str, Any] = {"id": f"s-{self.n}", "room": room, "ts": ts, "type": type, "viewer": {"id": viewer}}
        e.update(extra)
        return e

    def submit(self, *events: dict[str, Any]) -> None:
        self.submit_only(*events)
        self.worker.drain(timeout=30)
        assert status(self.r, SHOP)["lag"] == 0

    def submit_only(self, *events: dict[str, Any]) -> None:
        """Ingest the events, for the test's own scorers to apply."""
        frame = json.dumps(list(events) if len(events) > 1 else events[0])

        async def write() -> None:
            ar = db.async_client(self.cfg.redis_url)
            try:
                items = parse_frame(frame, int(time.time() * 1000))
                assert not any(isinstance(x, BadInput) for x in items), items
                await IngestWriter(ar, self.cfg).write_events(items)  # type: ignore[arg-type]
            finally:
                await ar.aclose()

        asyncio.run(write())

    # -- shorthands for the stories
    def event(self, viewer: str, type: str, room: str, ts: int, **extra: Any) -> None:
        self.submit(self.say(viewer, type, room, ts, **extra))

    def advance(self, ts: int, room: str = "r-1", by: str = "someone-else") -> None:
        """Another viewer's event: the shop clock moves to ``ts``."""
        self.event(by, "like", room, ts)
        assert self.clock == ts

    def advance_late(self, ts: int, room: str = "r-1", by: str = "someone-else") -> None:
        """Another viewer's event from before the shop clock (it arrives late): the clock stays."""
        before = self.clock
        self.event(by, "like", room, ts)
        assert ts < before == self.clock

    @property
    def clock(self) -> int:
        return status(self.r, SHOP)["clock"]

    def room(self, room: str) -> dict[str, Any]:
        return status(self.r, SHOP, room)["room"]

    def followups(self, room: str) -> dict[str, int]:
        return {k: v for k, v in self.room(room)["followups"].items() if v}

    def tier(self, viewer: str) -> str:
        v = viewer_state(self.r, SHOP, viewer)
        assert v is not None, f"no viewer {viewer}"
        return v.tier

    def task_state(self, room: str, viewer: str) -> str | None:
        b = self.r.hget(keys.tasks(SHOP, room), viewer)
        return unpack_task(b).state if b else None

    def pending(self) -> list[tuple[str, str]]:
        """The pending lingered tasks (the other kinds: tests/scoring/test_followup_kinds.py)."""
        return [(t.room, t.viewer) for t in list_tasks(self.r, SHOP, "pending", limit=500, kind="lingered")]

    def transitions(self, viewer: str) -> list[dict[str, str]]:
        out = []
        for _id, f in self.r.xrange(keys.transitions(SHOP)):
            d = {k.decode(): v.decode() for k, v in f.items()}
            if d["viewer"] == viewer:
                out.append(d)
        return out


@pytest.fixture
def story(r, cfg) -> Story:
    return Story(r, cfg)


# ---------------------------------------------------------------- follow-up tasks
def test_a_silent_lurker_gets_a_task_once_someone_else_moves_the_clock_3_minutes_on(story):
    story.event("lurker", "join", "r-1", at(minutes=0))
    story.advance(at(minutes=3) - 1)
    assert story.followups("r-1") == {}
    assert story.pending() == []
    story.advance(at(minutes=3))  # dwell is exactly 3 minutes: the lurker is still present
    assert story.task_state("r-1", "lurker") == "pending"
    assert story.followups("r-1") == {"pending": 1}
    assert ("r-1", "lurker") in story.pending()
    assert story.room("r-1")["present"] == 2 and story.room("r-1")["unique_viewers"] == 2


def test_the_live_boards_chart_gets_viewers_present_each_minute_from_the_scorer(story):
    from screens.reads import board

    story.submit(story.say("a", "join", "r-1", T0), story.say("b", "join", "r-1", T0 + 1000))
    story.submit(story.say("c", "join", "r-1", T0 + MIN + 5), story.say("a", "leave", "r-1", T0 + MIN + 10))
    story.advance(T0 + 12 * MIN + 7)  # a and b left or went quiet 10+ minutes ago: c too
    ch = board.read_chart(story.r, SHOP, "r-1", T0 + 12 * MIN + 7, span_minutes=20)
    by_minute = dict(zip(ch.minutes, ch.present, strict=True))
    assert by_minute[T0 // MIN] == 2 and by_minute[T0 // MIN + 1] == 2  # a, b; then b, c (a left)
    assert by_minute[T0 // MIN + 12] == story.room("r-1")["present"] == 1  # only someone-else
    assert by_minute[T0 // MIN + 5] is None  # no event that minute: not measured


def test_a_lower_dwell_threshold_applies_to_a_silent_lurker_already_waiting(story):
    from fanops import rules_store

    story.event("lurker", "join", "r-1", T0)  # in the lurk index at 3 minutes
    rules_store.save(story.r, SHOP, {"followup_dwell_minutes": 1})
    story.event("lurker", "like", "r-1", T0 + 50_000)  # scored again under 1 minute, then silent
    assert story.task_state("r-1", "lurker") is None
    story.advance(T0 + 2 * MIN)  # past the new 1 minute, before the old 3
    assert story.task_state("r-1", "lurker") == "pending"


def test_a_viewer_who_leaves_after_1_minute_gets_no_task(story):
    story.event("quick", "join", "r-1", at(minutes=0))
    story.event("quick", "leave", "r-1", at(minutes=1))
    for m in (3, 4, 10, 11, 30):
        story.advance(at(minutes=m))
        assert story.task_state("r-1", "quick") is None, m
    assert ("r-1", "quick") not in story.pending()
    assert story.room("r-1")["present"] == 1  # only the one who moves the clock


def test_a_lurker_who_joined_more_than_10_minutes_ago_is_no_longer_present_and_gets_no_task(story):
    story.event("gone", "join", "r-1", at(minutes=0))
    story.advance(at(minutes=10) + 1)  # first event since the join: presence lapsed at 10 min
    assert story.task_state("r-1", "gone") is None
    assert story.room("r-1")["present"] == 1


def test_a_longer_present_window_counts_back_a_viewer_whose_presence_had_lapsed(story):
    from fanops import rules_store

    story.event("early", "join", "r-1", at(minutes=0))
    story.event("early", "comment", "r-1", at(minutes=1), text="hi")
    story.advance(at(minutes=12))  # 11 minutes since early's last event: lapsed
    assert story.room("r-1")["present"] == 1
    # the index keeps only who is present (a show's crowd that left does not stay in Redis)
    assert story.r.zcard(keys.present(SHOP, "r-1")) == 1
    rules_store.save(story.r, SHOP, {"present_minutes": 15})
    story.advance(at(minutes=13))  # scored under the new rules (the scorer rebuilds first)
    assert story.room("r-1")["present"] == 2


def test_a_lurker_whose_first_clock_tick_is_exactly_10_minutes_later_is_still_present_and_gets_a_task(story):
    story.event("patient", "join", "r-1", at(minutes=0))
    story.advance(at(minutes=10))
    assert story.task_state("r-1", "patient") == "pending"
    assert story.room("r-1")["present"] == 2


def test_an_order_after_the_task_converts_it_and_it_leaves_the_pending_list_at_once(story):
    story.event("buyer", "join", "r-1", at(minutes=0))
    story.event("buyer", "comment", "r-1", at(minutes=4), text="is it true to size?")
    assert story.task_state("r-1", "buyer") == "pending"
    assert ("r-1", "buyer") in story.pending()
    story.event("buyer", "order", "r-1", at(minutes=6), order_id="o-1", amount=24.5, currency="USD")
    assert story.task_state("r-1", "buyer") == "converted"
    assert ("r-1", "buyer") not in story.pending()
    assert story.followups("r-1") == {"converted": 1}
    assert story.room("r-1")["buyers"] == 1 and story.room("r-1")["orders"] == 1


def test_an_order_before_the_dwell_is_reached_means_no_task(story):
    story.event("quickbuy", "join", "r-1", at(minutes=0))
    story.event("quickbuy", "order", "r-1", at(minutes=2), order_id="o-1", amount=9, currency="USD")
    story.advance(at(minutes=5))
    assert story.task_state("r-1", "quickbuy") is None
    assert story.followups("r-1") == {}


def test_consent_false_after_the_task_withdraws_it(story):
    story.event("shy", "join", "r-1", at(minutes=0))
    story.advance(at(minutes=4))
    assert story.task_state("r-1", "shy") == "pending"
    story.event("shy", "consent", "r-1", at(minutes=5), dm=False)
    assert story.task_state("r-1", "shy") == "withdrawn"
    assert ("r-1", "shy") not in story.pending()
    assert story.followups("r-1") == {"withdrawn": 1}
    story.event("shy", "consent", "r-1", at(minutes=6), dm=True)  # a later yes does not undo it
    assert story.task_state("r-1", "shy") == "withdrawn"


def test_a_late_clock_tick_that_makes_a_task_earlier_withdraws_it_if_consent_turned_false_since(story):
    # the clock reaches 4:00 and 5:00 first; the event at 3:00 (another viewer's) arrives late
    story.event("shy", "join", "r-1", at(minutes=0))
    story.event("shy", "consent", "r-1", at(minutes=4), dm=False)  # at 4:00 (the first tick past 3:00): no
    assert story.task_state("r-1", "shy") is None
    story.event("shy", "consent", "r-1", at(minutes=5), dm=True)  # 5:00: yes again, and the dwell is past
    assert story.task_state("r-1", "shy") == "pending"
    # the shop clock was at 3:00 after all: the task was made then (dwell exactly 3 minutes,
    # consent unknown), and the no at 4:00 withdrew it; the yes at 5:00 does not undo that
    story.advance_late(at(minutes=3))
    assert story.task_state("r-1", "shy") == "withdrawn"
    assert ("r-1", "shy") not in story.pending()
    assert story.followups("r-1") == {"withdrawn": 1}


def test_consent_false_first_then_true_in_a_later_show_makes_the_task_then(story):
    story.event("later", "consent", "show-1", at(minutes=0), dm=False)
    story.event("later", "comment", "show-1", at(minutes=1), text="hi")
    story.event("later", "comment", "show-1", at(minutes=5), text="love it")  # dwell 5 min
    story.advance(at(minutes=8), room="show-1")
    assert story.task_state("show-1", "later") is None
    story.advance(at(days=7), room="show-2")
    assert story.task_state("show-1", "later") is None
    story.event("later", "consent", "show-2", at(days=7, minutes=1), dm=True)
    assert story.task_state("show-1", "later") == "pending"
    assert story.followups("show-1") == {"pending": 1}
    assert ("show-1", "later") in story.pending()


def test_an_order_converts_a_claimed_task_but_not_a_sent_one(story):
    op = Operator(story.r, SHOP, "ana")
    for v in ("held", "done"):
        story.event(v, "join", "r-1", at(minutes=0))
    story.advance(at(minutes=4))
    op.claim(keys.pair("r-1", "held"))
    op.claim(keys.pair("r-1", "done"))
    op.mark_sent(keys.pair("r-1", "done"))
    assert story.followups("r-1") == {"claimed": 1, "sent": 1}
    for i, v in enumerate(("held", "done")):
        story.event(v, "order", "r-1", at(minutes=6), order_id=f"o-{i}", amount=5, currency="USD")
    assert story.task_state("r-1", "held") == "converted"
    assert story.task_state("r-1", "done") == "sent"
    assert story.followups("r-1") == {"converted": 1, "sent": 1}


def test_no_new_task_within_7_days_of_a_follow_up_marked_sent(story):
    op = Operator(story.r, SHOP, "ana")
    story.event("fan", "join", "show-1", at(days=0))
    story.advance(at(days=0, minutes=4), room="show-1")
    op.claim(keys.pair("show-1", "fan"))
    op.mark_sent(keys.pair("show-1", "fan"))
    story.event("fan", "join", "show-2", at(days=3))
    story.advance(at(days=3, minutes=5), room="show-2")
    assert story.task_state("show-2", "fan") is None  # sent 3 days of shop clock ago
    story.event("fan", "join", "show-3", at(days=8))
    story.advance(at(days=8, minutes=5), room="show-3")
    assert story.task_state("show-3", "fan") == "pending"


# ---------------------------------------------------------------- tiers over time
def test_a_viewer_with_no_event_for_30_days_falls_dormant_by_the_clock_and_back_out_with_an_event(story):
    story.event("sleeper", "join", "r-1", at(days=0))
    assert story.tier("sleeper") == "new_fan"
    story.advance(at(days=30) - 1, room="r-2")
    assert story.tier("sleeper") == "new_fan"
    story.advance(at(days=30), room="r-2")  # 30 days exactly, not one event of their own
    assert story.tier("sleeper") == "dormant"
    assert status(story.r, SHOP)["tiers"]["dormant"] == 1
    assert story.room("r-1")["tiers"]["dormant"] == 1
    story.event("sleeper", "join", "r-3", at(days=31))
    assert story.tier("sleeper") == "new_fan"
    assert story.room("r-3")["reactivated"] == 1
    moves = [(t["from"], t["to"], t["cause"]) for t in story.transitions("sleeper")]
    assert moves == [("new_fan", "dormant", "time"), ("dormant", "new_fan", "join")]
    fell, back = story.transitions("sleeper")
    assert int(fell["ts"]) == at(days=30) and int(back["ts"]) == at(days=31)


def test_three_rooms_in_30_days_make_a_viewer_active_until_the_oldest_room_leaves_the_window(story):
    story.event("fan", "join", "r-1", at(days=0))
    story.event("fan", "join", "r-2", at(days=10))
    assert story.tier("fan") == "new_fan"
    story.event("fan", "join", "r-3", at(days=20))
    assert story.tier("fan") == "active"
    assert story.room("r-1")["tiers"]["active"] == 1
    story.advance(at(days=30), room="r-4")  # r-1's first ts is exactly 30 days back: still in
    assert story.tier("fan") == "active"
    story.advance(at(days=30) + 1, room="r-4")
    assert story.tier("fan") == "new_fan"
    assert [(t["from"], t["to"], t["cause"]) for t in story.transitions("fan")] == [
        ("new_fan", "active", "join"), ("active", "new_fan", "time")]
    assert status(story.r, SHOP)["tiers"] == {"new_fan": 2, "first_buyer": 0, "active": 0, "dormant": 0}


def test_two_distinct_orders_make_a_viewer_active_and_a_resent_order_counts_once(story):
    story.event("buyer", "order", "r-1", at(minutes=1), order_id="o-1", amount=10, currency="USD")
    assert story.tier("buyer") == "first_buyer"
    story.event("buyer", "order", "r-1", at(minutes=2), order_id="o-1", amount=10, currency="USD")
    assert story.tier("buyer") == "first_buyer"  # the same order sent again under a new event id
    assert story.room("r-1")["orders"] == 1
    story.event("buyer", "order", "r-2", at(days=3), order_id="o-2", amount=5, currency="EUR")
    assert story.tier("buyer") == "active"
    assert story.room("r-2")["orders"] == 1 and story.room("r-2")["buyers"] == 1
    v = viewer_state(story.r, SHOP, "buyer")
    assert sorted(v.orders) == ["o-1", "o-2"] and v.spend == {"USD": 10.0, "EUR": 5.0}  # type: ignore[union-attr]


def test_room_orders_count_distinct_order_ids(story):
    """cli.md: ``room.orders`` counts distinct ``order_id``s (and ``buyers`` the viewers with one)."""
    story.event("a", "order", "r-1", at(minutes=1), order_id="o-77", amount=10, currency="USD")
    story.event("b", "order", "r-1", at(minutes=2), order_id="o-77", amount=10, currency="USD")
    assert story.room("r-1")["buyers"] == 2
    assert story.room("r-1")["orders"] == 1


def test_back_after_a_35_day_gap_is_reactivated_and_29_days_is_not(story):
    story.event("back", "join", "r-1", at(days=0))
    story.event("soon", "join", "r-1", at(days=0))
    story.event("soon", "join", "r-2", at(days=29))
    story.event("back", "join", "r-3", at(days=35))
    assert story.room("r-1")["new_viewers"] == 2 and story.room("r-1")["reactivated"] == 0
    assert story.room("r-2")["new_viewers"] == 0 and story.room("r-2")["reactivated"] == 0
    assert story.room("r-3")["new_viewers"] == 0 and story.room("r-3")["reactivated"] == 1
    assert story.tier("back") == "new_fan" and story.tier("soon") == "new_fan"


# ---------------------------------------------------------------- crowds and odd ids
CROWD = 5_100  # a big show's audience: more than the scorer takes from its time indexes per batch


def test_a_crowd_of_more_than_5000_falls_dormant_together_when_the_clock_passes_30_days(story):
    story.submit(*(story.say(f"v{i}", "join", "big-show", at(days=0)) for i in range(CROWD)))
    assert status(story.r, SHOP)["tiers"]["new_fan"] == CROWD
    story.advance(at(days=30), room="r-2")  # the one event after the show, 30 days later
    assert status(story.r, SHOP)["tiers"] == {"new_fan": 1, "first_buyer": 0, "active": 0, "dormant": CROWD}
    assert story.room("big-show")["tiers"]["dormant"] == CROWD


def test_viewers_due_weeks_ahead_wait_in_day_lists_and_still_fall_dormant_on_time(story):
    """A show's crowd is due (dormant) 30 days on: they wait in a list for that day, not in the
    time-ordered zset, until the clock is near; a rules change re-times them, lists and all."""
    from fanops import rules_store

    story.submit(*(story.say(f"v{i}", "join", "show", at(days=0, minutes=i)) for i in range(40)))
    part_sizes = [story.r.zcard(keys.due(SHOP, p)) for p in range(keys.PARTITIONS)]
    listed = [m for p in range(keys.PARTITIONS) for d in story.r.zrange(keys.due_days(SHOP, p), 0, -1)
              for m in story.r.lrange(keys.due_far(SHOP, p, int(d)), 0, -1)]
    assert sum(part_sizes) == 0 and sorted(m.decode() for m in listed) == sorted(f"v{i}" for i in range(40))
    story.advance(at(days=29, minutes=23 * 60), room="r-2")  # near: in the zset now, not yet dormant
    assert sum(story.r.zcard(keys.due(SHOP, p)) for p in range(keys.PARTITIONS)) == 40
    assert status(story.r, SHOP)["tiers"]["dormant"] == 0
    story.advance(at(days=30, minutes=20) - 1, room="r-2")  # v0..v19 have been away 30 days
    assert status(story.r, SHOP)["tiers"]["dormant"] == 20
    # fewer days to dormant: the rebuild puts the rest back in the index, due at once
    rules_store.save(story.r, SHOP, {"dormant_days": 10})
    story.advance(at(days=30, minutes=21), room="r-2")
    assert status(story.r, SHOP)["tiers"]["dormant"] == 40


def test_a_fan_back_every_day_is_listed_once_and_changes_tier_on_time(story):
    """Each show moves the fan's next change later: they stay listed where they are (looked at
    again when that day comes), not once more a show."""
    for day in range(10):
        story.event("fan", "join", f"show-{day}", at(days=day))
    listed = [m for p in range(keys.PARTITIONS) for d in story.r.zrange(keys.due_days(SHOP, p), 0, -1)
              for m in story.r.lrange(keys.due_far(SHOP, p, int(d)), 0, -1)]
    assert listed.count(b"fan") == 1
    assert story.tier("fan") == "active"  # 3 rooms or more in 30 days
    story.advance(at(days=37), room="elsewhere")
    assert story.tier("fan") == "active"
    story.advance(at(days=37) + 1, room="elsewhere")  # show-7, the 3rd most recent, leaves the window
    assert story.tier("fan") == "new_fan"
    story.advance(at(days=39), room="elsewhere")  # 30 days since the last show
    assert story.tier("fan") == "dormant"


def test_a_crowd_of_more_than_5000_silent_viewers_all_get_their_tasks(story):
    story.submit(*(story.say(f"v{i}", "join", "big-show", at(minutes=0)) for i in range(CROWD)))
    story.advance(at(minutes=4), room="big-show")
    assert story.followups("big-show") == {"pending": CROWD}


def test_a_room_id_may_hold_any_character(story):
    """events.md: a room id is any string of 1-128 characters; the scorer's own separators
    (NUL in its lurk and task members) must not cut it."""
    room = "show\x00b"
    story.event("lurker", "join", room, at(minutes=0))
    story.advance(at(minutes=4), room=room)
    assert story.task_state(room, "lurker") == "pending"
    assert story.followups(room) == {"pending": 1}
    assert story.room("show")["unique_viewers"] == 0


# ---------------------------------------------------------------- the commands
def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scoring", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)


def test_the_viewer_command_explains_the_tier_in_words(story, redis_url):
    for days, room in ((0, "r-1"), (10, "r-2"), (20, "r-3")):
        story.event("fan", "join", room, at(days=days))
    out = cli("viewer", "--shop", SHOP, "--id", "fan", "--redis", redis_url)
    assert out.returncode == 0, out.stderr
    v = json.loads(out.stdout)
    assert v["tier"] == "active"
    assert "active: 3 rooms in the last 30 days" in v["rule"]
    assert v["rooms_in_window"] == 3 and v["orders"] == 0


def test_the_viewer_command_for_an_unknown_viewer_fails_with_one_line(story, redis_url):
    story.event("fan", "join", "r-1", at())
    out = cli("viewer", "--shop", SHOP, "--id", "nobody-here", "--redis", redis_url)
    assert out.returncode != 0
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "nobody-here" in lines[0], out.stderr


def test_status_for_an_unreachable_redis_fails_with_one_line_naming_the_url(tmp_path):
    url = f"redis://127.0.0.1:{server.free_port()}/0"
    out = cli("status", "--shop", SHOP, "--redis", url)
    assert out.returncode != 0
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0], out.stderr


def test_a_batch_scored_before_a_rules_change_is_scored_again_after_the_rebuild(story):
    """A scorer that scored a batch under the old rules, while another rebuilt the shop under new ones,
    must not write it: apply.lua refuses it and the batch is scored again under the new rules."""
    from fanops import rules_store
    from fanops.schema import parse_frame
    from scoring import recompute

    story.event("a", "join", "r-1", T0)
    w = story.worker
    ev = parse_frame(json.dumps(story.say("a", "like", "r-1", T0 + 4 * MIN, count=1)), T0 + 5 * MIN)
    batch = w.score(SHOP, ev)  # the scorer's own step, cut in two
    rules_store.save(story.r, SHOP, {"followup_dwell_minutes": 10})
    assert recompute.rebuild(story.r, SHOP, "other-scorer")
    res = w.write(SHOP, batch, acks=[])
    assert [x.decode() for x in res] == ["locked", "rules_applied"]
    story.event("a", "like", "r-1", T0 + 4 * MIN + 1)  # scored under the new rules: 4 minutes is no task
    assert story.task_state("r-1", "a") is None


def test_the_largest_amounts_and_counts_an_event_may_carry_add_up_without_failing_the_scorer(story):
    """Orders of 10^15 and gifts of 10^9 (fanops.schema's ceilings), several of them from one viewer:
    applied and summed. Before the ceilings, two orders of 1e308 summed to infinity, the scorer's
    script failed half-way through the batch, and every scorer that took the batch over failed again."""
    big = 1e15
    story.submit(*[story.say("whale", "order", "r-1", at(minutes=i), order_id=f"o-{i}", amount=big, currency="USD")
                   for i in range(3)])
    story.submit(*[story.say("whale", "gift", "r-1", at(minutes=5 + i), gift="lion", value=big, count=10**9)
                   for i in range(2)])
    st = status(story.r, SHOP, "r-1")
    assert (st["events_applied"], st["lag"], st["room"]["orders"], st["room"]["buyers"]) == (5, 0, 3, 1)
    v = viewer_state(story.r, SHOP, "whale")
    assert v is not None and v.spend == {"USD": 3 * big} and v.tier == "active"


def _card(story: Story, room: str, viewer: str) -> tuple[str, float]:
    [t] = [t for t in list_tasks(story.r, SHOP, "pending", limit=500, kind="lingered")
           if (t.room, t.viewer) == (room, viewer)]
    return t.tier, t.priority


def test_an_open_task_takes_the_tier_an_order_elsewhere_gives_however_late_it_comes(story):
    """The tier bonus follows the viewer (spec/tiers.md): a late order in another show makes Ann a
    first buyer, and her task in r-1 shows it and ranks by it, as with the order in the same batch."""
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    assert _card(story, "r-1", "ann") == ("new_fan", 0.0)
    story.event("ann", "order", "r-0", at(days=-1), order_id="o-1", amount=5, currency="USD")  # late
    assert story.tier("ann") == "first_buyer" and _card(story, "r-1", "ann") == ("first_buyer", 3.0)


def test_an_open_task_takes_the_tier_the_clock_alone_gives(story):
    """Cy attended three shows in three days: active (+2). A month on, with no event of hers, two of
    them are past the 30 days: a new fan again (her comment's 3 stays), on the task's card too."""
    story.event("cy", "join", "r-1", at())
    story.event("cy", "join", "r-2", at(days=1))
    story.event("cy", "join", "r-3", at(days=2))
    story.event("cy", "comment", "r-3", at(days=2, minutes=4), text="hi")
    story.advance(at(days=2, minutes=5), room="r-3")
    assert _card(story, "r-3", "cy") == ("active", 5.0)
    story.advance(at(days=30, minutes=1), room="r-4")  # r-1 is 30 days and a minute back
    assert story.tier("cy") == "new_fan" and _card(story, "r-3", "cy") == ("new_fan", 3.0)


def test_an_open_task_the_batch_reads_but_leaves_takes_the_new_tier_too(story):
    """Ann's consent and first order in r-2 come in one batch: her record in r-1 is read and scored
    (a consent may move any of her tasks) but her task there is not rewritten by it; her new tier
    still reaches its card."""
    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    story.submit(story.say("ann", "consent", "r-2", at(minutes=5), dm=True),
                 story.say("ann", "order", "r-2", at(minutes=6), order_id="o-1", amount=5, currency="USD"))
    assert story.tier("ann") == "first_buyer" and _card(story, "r-1", "ann") == ("first_buyer", 3.0)


def test_an_open_task_of_an_archived_show_takes_the_new_tier(story):
    """Most open tasks belong to shows archived already (half an hour after they end). Ann's first
    order, a day after her show, reaches her task's card and rank all the same."""
    from scoring import archive

    story.event("ann", "join", "r-1", at())
    story.advance(at(minutes=4))
    story.advance(at(minutes=90), room="r-9")
    assert archive.archive_room(story.r, story.cfg, SHOP, "r-1").complete
    assert _card(story, "r-1", "ann") == ("new_fan", 0.0)
    story.event("ann", "order", "r-2", at(days=1), order_id="o-1", amount=5, currency="USD")
    assert story.tier("ann") == "first_buyer" and _card(story, "r-1", "ann") == ("first_buyer", 3.0)
