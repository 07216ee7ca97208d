"""The screens' read model: tier change, rates, health judgement, host lists, transitions, the chart, and
the board's snapshot history (a read writes nothing; the page records)."""

from __future__ import annotations

import json

import pytest

from fanops.i18n import LANGS, TABLE, t
from screens.reads import board, health, history, host

NOW = 1_800_000_030.0
MIN = 60_000


def snap(age: float, **fields):
    return {"at": NOW - age, **fields}


def test_tier_change_uses_the_snapshot_five_minutes_old():
    snaps = [snap(10, tiers={"new_fan": 99}), snap(300, tiers={"new_fan": 10, "active": 5}),
             snap(310, tiers={"new_fan": 0})]
    change, span = history.tier_change(snaps, NOW, {"new_fan": 15, "first_buyer": 1, "active": 5, "dormant": 0})
    assert change == {"new_fan": 5, "first_buyer": 1, "active": 0, "dormant": 0}
    assert span == 300


def test_tier_change_with_a_short_history_covers_what_there_is():
    change, span = history.tier_change([snap(5, tiers={}), snap(120, tiers={"dormant": 3})], NOW,
                                     {"dormant": 1})
    assert change == {"new_fan": 0, "first_buyer": 0, "active": 0, "dormant": -2} and span == 120
    assert history.tier_change([snap(5, tiers={})], NOW, {}) == (None, 0.0)
    assert history.tier_change([], NOW, {}) == (None, 0.0)


def test_events_rate_from_the_newest_snapshot_at_least_5_s_old():
    snaps = [snap(2, ev=990), snap(10, ev=900), snap(20, ev=800)]
    assert history.events_rate(snaps, NOW, 1000) == 10.0
    assert history.events_rate([snap(2, ev=0)], NOW, 1000) is None


@pytest.mark.parametrize("lags,now_lag,growing", [
    ([(30, 100), (20, 400), (10, 700)], 1000, True),
    ([(30, 100), (20, 400), (10, 300)], 1000, False),  # it fell once: catching up
    ([(30, 100), (20, 150), (10, 200)], 250, False),   # rising, but by less than 500
    ([(10, 100)], 5000, False),                        # too little history to tell
])
def test_lag_growing(lags, now_lag, growing):
    snaps = [snap(age, lag=lag) for age, lag in lags]
    assert health.lag_growing(snaps, NOW, now_lag) is growing


def test_silent_for_counts_back_while_the_frame_count_stands_still():
    snaps = [snap(10, frames=50), snap(20, frames=50), snap(40, frames=50), snap(50, frames=49)]
    assert health.silent_for(snaps, NOW, 50) == 40
    assert health.silent_for(snaps, NOW, 51) == 0
    assert health.silent_for(snaps, NOW, None) is None


def test_dead_letters_in_the_last_60_s_take_the_older_minute_pro_rata():
    assert health.dead_last_minute(4, 0, 60 * 100 + 30) == 4
    assert health.dead_last_minute(4, 10, 60 * 100 + 30) == 9
    assert health.dead_last_minute(0, 10, 60 * 100) == 10


def test_health_problems_in_plain_words():
    h = health.judge_health(health.Health(consumers=0, lag=5, scorers=0), None)
    assert [k for k, _ in h.problems] == ["health.no_consumer", "health.no_scorer"]
    h = health.judge_health(health.Health(consumers=1, connected=True, silent_s=31, scorers=1), None)
    assert h.problems == [("health.silent", {"s": 31})]
    ok = health.judge_health(health.Health(consumers=1, connected=True, silent_s=3, scorers=1,
                                         dead_last_minute=12), accepted_per_s=300)
    assert ok.ok  # 12 bad of 18,000 a minute is noise, not a problem
    bad = health.judge_health(health.Health(consumers=1, connected=True, scorers=1, dead_last_minute=12), 1)
    assert bad.problems == [("health.dead", {"n": 12})]


def test_a_full_redis_is_the_one_problem_shown_and_a_nearly_full_one_is_warned_of():
    from fanops.runtime.memory import Memory

    mb = 2**20
    # full: the heartbeats cannot be written either, so "no feed reader" would send the operator the wrong way
    full = health.judge_health(health.Health(consumers=0, lag=40, scorers=0,
                                             memory=Memory(101 * mb, 100 * mb, "noeviction")), None)
    assert full.problems == [("health.redis_full", {"used": 101, "limit": 100, "pct": 101})]
    near = health.judge_health(health.Health(consumers=1, connected=True, scorers=1,
                                             memory=Memory(92 * mb, 100 * mb, "noeviction")), None)
    assert near.problems == [("health.redis_nearly_full", {"used": 92, "limit": 100, "pct": 92})]
    room_left, no_limit = Memory(50 * mb, 100 * mb, "noeviction"), Memory(500 * mb, 0, "noeviction")
    for memory in [room_left, no_limit, None]:
        assert health.judge_health(health.Health(consumers=1, connected=True, scorers=1, memory=memory), None).ok


def entry(viewer, ts, **kw):
    return json.dumps({"viewer": viewer, "name": kw.pop("name", viewer), "ts": ts, **kw}).encode()


def test_host_lists_newest_first_one_line_per_viewer_old_ones_dropped():
    clock = 100 * MIN
    raw = [entry("a", clock - 1000, tier="active"), entry("b", clock - 6 * MIN, tier="new_fan"),
           entry("c", clock - 500, tier="first_buyer"), entry("a", clock - 2000, tier="active"),
           b"not json"] + [entry(f"x{i}", clock - 3000 - i, tier="new_fan") for i in range(6)]
    items = host.host_items(raw, "greet", clock)
    assert [i.viewer for i in items] == ["c", "a", "x0", "x1", "x2"]
    assert [i.tag for i in items[:2]] == ["back", "vip"]


def test_host_names_and_questions_are_cleaned_and_cut():
    clock = 100 * MIN
    raw = [entry("q", clock, name="\u202e" + "A" * 100, text="is it " + "very " * 40 + "big?")]
    (it,) = host.host_items(raw, "questions", clock)
    assert it.name == "A" * (host.HOST_NAME_CHARS - 1) + "…"
    assert len(it.text) == host.HOST_TEXT_CHARS and it.text.endswith("…")
    (th,) = host.host_items([entry("t", clock, first_time=True)], "thank", clock)
    assert th.tag == "first"


@pytest.mark.parametrize("frm,to,cause,kind", [
    ("new_fan", "first_buyer", "order", "first_order"),
    ("dormant", "new_fan", "join", "back"),
    ("dormant", "active", "order", "back"),
    ("first_buyer", "active", "order", "active"),
    ("new_fan", "active", "join", "active"),
    ("active", "dormant", "time", None),
    ("active", "new_fan", "time", None),
    ("first_buyer", "active", "time", None),
])
def test_which_transitions_matter(frm, to, cause, kind):
    assert board.transition_kind(frm, to, cause) == kind


def test_every_string_has_both_languages_and_formats():
    for key, row in TABLE.items():
        assert set(row) == set(LANGS), key
        assert row["en"].strip() and row["zh-Hans"].strip(), key
    assert t("live.ended", "zh-Hans", ago="3 分钟") == "最后事件：3 分钟前"
    assert t("no.such.key", "en") == "no.such.key"


def test_chart_reads_orders_joins_and_presence_per_minute_from_the_rooms_first_minute(r):
    from fanops import keys

    r.hset(keys.room_minutes("s", "rm"), mapping={"o:998": 2, "j:998": 5, "e:998": 9, "o:1000": 1, "e:1000": 3,
                                                  "p:999": 40})
    ch = board.read_chart(r, "s", "rm", 1000 * MIN + 5000, span_minutes=10)
    assert ch.minutes == [998, 999, 1000]
    assert (ch.orders, ch.joins, ch.present) == ([2, 0, 1], [5, 0, 0], [None, 40, None])
    assert board.read_chart(r, "s", "nothing", 1000 * MIN).minutes == []


def test_read_board_only_reads_and_record_snapshots_writes_once_per_10_s_per_shop_and_room(r):
    from fanops import keys

    r.hset(keys.stats("s"), mapping={"clock": 1000 * MIN, "accepted": 5, "applied": 4})
    r.hset(keys.room("s", "rm"), mapping={"unique": 3, "t:new_fan": 3, "n:join": 3})
    r.zadd(keys.present("s", "rm"), {"a": 1000 * MIN, "b": 1000 * MIN - 11 * MIN})
    before = {k: r.dump(k) for k in r.keys()}
    b = board.read_board(r, "s", "rm", now=NOW)
    assert {k: r.dump(k) for k in r.keys()} == before  # a read writes nothing
    assert (b.present, b.room_events, b.health.lag) == (1, 3, 1)
    board.record_snapshots(r, b)
    board.record_snapshots(r, board.read_board(r, "s", "rm", now=NOW + 1))  # within 10 s: not written
    (shop,) = history.parse(r.lrange(keys.board_snaps("s"), 0, -1))
    assert shop == {"at": NOW, "applied": 4, "accepted": 5, "lag": 1, "frames": None,
                    "tiers": {"new_fan": 0, "first_buyer": 0, "active": 0, "dormant": 0}}
    (room,) = history.parse(r.lrange(keys.board_room_snaps("s", "rm"), 0, -1))
    assert room == {"at": NOW, "clock": 1000 * MIN, "ev": 3, "present": 1,
                    "t": {"new_fan": 3, "first_buyer": 0, "active": 0, "dormant": 0}}
    board.record_snapshots(r, board.read_board(r, "s", "nothing", now=NOW))  # an unknown room: no history
    assert not r.exists(keys.board_room_snaps("s", "nothing"))
