"""``batch_reads.past_clock``: the first shop-clock value at or after each pair's dwell moment, read
from the per-second clock index in one script call (``scoring/lua/clock_after.lua``).  A late event
makes the same task as in order only if this value is exact: checked here against the values the
index holds, in the cases the index can answer (a second's smallest and largest value)."""

from __future__ import annotations

import redis

from fanops import keys
from fanops.rules_settings import RuleSettings
from fanops.schema import Join, Viewer
from scoring.batch_reads import past_clock

S = RuleSettings()
SHOP = "default"
T0 = 1_764_000_000_000  # a second boundary


def index(r: redis.Redis, values: list[int]) -> None:
    """The shop clock took ``values``: the clock index keeps each second's smallest and largest."""
    for t in values:
        sec = t // 1000
        r.zadd(keys.clock_min(SHOP), {str(sec): t}, lt=True)
        r.zadd(keys.clock_max(SHOP), {str(sec): t}, gt=True)


def read_for(r: redis.Redis, moments: list[int], clock0: int) -> list[int]:
    """``past_clock`` for a batch of one new viewer (no record yet) per moment, whose dwell reaches
    the threshold then."""
    evs = [Join(id=f"e{i}", room="r1", ts=m - S.dwell_ms, viewer=Viewer(id=f"u{i}")) for i, m in enumerate(moments)]
    return past_clock(r, SHOP, evs, {(ev.room, ev.viewer.id): None for ev in evs}, clock0, S)


def test_each_moment_gets_the_first_clock_value_at_or_after_it(r: redis.Redis) -> None:
    # seconds of one value, of two, a second with values on both sides of a moment, and a gap
    values = [T0 + 5, T0 + 1_200, T0 + 1_900, T0 + 2_100, T0 + 2_700, T0 + 9_000, T0 + 9_001]
    index(r, values)
    moments = [T0 + 1, T0 + 5, T0 + 1_500, T0 + 1_900, T0 + 2_000, T0 + 2_500, T0 + 3_000, T0 + 9_001]
    got = read_for(r, moments, T0 + 10_000)
    want = [min(v for v in values if v >= m) for m in sorted(moments)]
    assert got == want


def test_a_moment_after_every_known_value_gives_none_and_the_others_keep_their_order(r: redis.Redis) -> None:
    index(r, [T0 + 100, T0 + 4_000])
    got = read_for(r, [T0 + 4_500, T0 + 50, T0 + 3_999], T0 + 10_000)
    assert got == [T0 + 100, T0 + 4_000]


def test_only_moments_before_the_batch_clock_are_read(r: redis.Redis) -> None:
    index(r, [T0 + 100, T0 + 4_000])
    # the second viewer's moment is past the clock the batch starts from: no value for it
    got = read_for(r, [T0 + 50, T0 + 3_000], T0 + 2_000)
    assert got == [T0 + 100]


def test_moments_in_one_gap_share_the_value_after_it_until_a_value_comes_between(r: redis.Redis) -> None:
    # several moments past their seconds' values: the first ones fall before T0+5_500, the next
    # ones after it (the answer of the first group is then before them and must not be reused)
    values = [T0 + 100, T0 + 5_500, T0 + 5_600, T0 + 12_000]
    index(r, values)
    moments = [T0 + 200, T0 + 1_300, T0 + 2_400, T0 + 5_550, T0 + 5_700, T0 + 7_000, T0 + 11_999, T0 + 12_001]
    got = read_for(r, moments, T0 + 20_000)
    assert got == [T0 + 5_500, T0 + 5_500, T0 + 5_500, T0 + 5_600, T0 + 12_000, T0 + 12_000, T0 + 12_000]


def test_many_moments_over_a_long_show_each_get_the_first_value_at_or_after_it(r: redis.Redis) -> None:
    # more seconds than one ZMSCORE call reads, with gaps and seconds of one and of two values
    import random
    rnd = random.Random(5)
    values = sorted({T0 + rnd.randrange(0, 3_600_000) for _ in range(1_500)})
    # at most two values a second: the index is exact then
    per_sec: dict[int, list[int]] = {}
    for v in values:
        per_sec.setdefault(v // 1000, []).append(v)
    values = sorted(v for vs in per_sec.values() for v in vs[:2])
    index(r, values)
    moments = sorted({T0 + rnd.randrange(0, 3_700_000) for _ in range(2_000)})
    got = read_for(r, moments, T0 + 4_000_000)
    want = [next(v for v in values if v >= m) for m in moments if m <= values[-1]]
    assert got == want
