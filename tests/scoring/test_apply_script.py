"""apply.lua writes a scorer's batch whole or not at all: if a viewer the batch read changed
since (another scorer wrote it), the call writes nothing and the batch is read and scored again."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from fanops import keys
from fanops.read import status, viewer_state
from fanops.state import ViewerState, pack
from scoring.worker import Worker
from scoring.writeset import FEED_KEEP, ScoredBatch, apply_script, encode_wire
from tests.feeds import ev, frame
from tests.pipeline import ingest_frames
from tests.scoring.test_scoring_properties import dump

SHOP = "default"
T0 = 1_763_856_000_000
N = 600  # more viewers than the script sends in one command (it groups writes by key, 256 a call)


class RacedWorker(Worker):
    """A scorer that another one overtakes once: between this one's read of a batch and its write,
    the other writes one of the batch's viewers (as a scorer applying an earlier event of theirs)."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.calls = 0
        self.after_race: dict[bytes, Any] = {}
        self.before_retry: dict[bytes, Any] = {}
        self.raced = ""

    def score(self, shop: str, all_events: Any) -> ScoredBatch:
        self.calls += 1
        if self.calls == 2:
            self.before_retry = dump(self.r)  # what the first, refused, call left
        got = super().score(shop, all_events)
        if self.calls == 1:
            # the batch's last viewer write: it travels in the script's last command of the kind
            self.raced = got.wire["cas"][-3]
            other = ViewerState(first_seen=T0 - 60_000, last_active=T0 - 60_000, rooms={"r-0": [T0 - 60_000] * 2},
                                tier="new_fan", seq=1)
            self.r.hset(keys.viewers(shop), self.raced, pack(other))
            self.after_race = dump(self.r)
        return got


def test_a_batch_whose_viewer_changed_since_its_read_writes_nothing_and_is_scored_again(r, cfg):
    ingest_frames(cfg, [frame(*[ev(i, viewer=f"u-{i}", ts=T0 + i) for i in range(N)])])
    w = RacedWorker(r, cfg, name="w1")
    w.drain(timeout=60)

    assert w.stats.conflicts == 1 and w.stats.batches == 1
    # the refused call wrote nothing: no viewer, room record, counter, task or acknowledgement
    assert w.before_retry == w.after_race
    # the second try read the other scorer's write and applied the batch on top of it
    st = status(r, SHOP)
    assert st["events_applied"] == N and st["lag"] == 0
    raced = viewer_state(r, SHOP, w.raced)
    assert raced is not None and raced.first_seen == T0 - 60_000 and set(raced.rooms) == {"r-0", "r-1"}
    assert r.hlen(keys.viewers(SHOP)) == N
    assert r.hlen(keys.room_viewers(SHOP, "r-1")) == N
    assert status(r, SHOP, "r-1")["room"]["unique_viewers"] == N


# -- the grouped list writes equal the item-after-item ones --------------------------------------
def _apply_lists(r, wire: dict[str, Any]) -> None:
    """One apply.lua call of ``wire`` (list writes only: no entry to acknowledge, no viewer read)."""
    script = r.register_script(apply_script())
    got = script(keys=[keys.stats(SHOP)], args=[encode_wire(dict(wire, group=keys.GROUP, consumer="w1", acks=[]))])
    assert got[0] == b"ok"


def test_a_batch_of_host_screen_entries_leaves_each_feed_with_its_newest_entries(r):
    """apply.lua sends a feed's entries of a batch in one push: the list must end as LPUSH + LTRIM to
    the kept number, entry after entry, leaves it: also for a feed with more entries than it keeps,
    one already holding some, and one whose entries keep two numbers in the batch."""
    joins, buyers, odd = (keys.room_feed(SHOP, room, "joins") for room in ("r-1", "r-2", "r-3"))
    r.rpush(buyers, *(f"old-{i}" for i in range(4)))
    r.rpush(odd, *(f"old-{i}" for i in range(9)))
    # the feeds' entries interleaved, as a batch of events in several rooms writes them; two keeps for
    # one list: a short keep first trims entries that a longer one later would have kept
    lists = [[(joins, f"j-{i}", FEED_KEEP) for i in range(FEED_KEEP + 7)],
             [(buyers, f"b-{i}", FEED_KEEP) for i in range(6)],
             [(odd, "o-0", 20), (odd, "o-1", 3), (odd, "o-2", 20), (odd, "o-3", 20), (odd, "o-4", 20)]]
    items = [x for group in zip_longest(*lists) for x in group if x]
    expected = {}
    for key in (joins, buyers, odd):
        want = r.lrange(key, 0, -1)
        for k, v, keep in items:
            if k == key:
                want = ([v.encode()] + want)[:keep]
        expected[key] = want
    names = [joins, buyers, odd]
    _apply_lists(r, {"k": names, "lpush": [x for k, v, keep in items for x in (names.index(k) + 1, v, keep)]})

    assert {key: r.lrange(key, 0, -1) for key in names} == expected
    assert expected[joins] == [f"j-{i}".encode() for i in reversed(range(7, FEED_KEEP + 7))]
    assert expected[odd] == [b"o-4", b"o-3", b"o-2", b"o-1", b"o-0", b"old-0"]


def test_a_batch_of_far_due_viewers_leaves_every_viewer_in_its_day_list_and_notes_each_day(r):
    """apply.lua sends a day list's viewers of a batch in one push and each day once: every viewer
    stays in its list in the batch's order after those already there, and every day is noted."""
    far = {(part, day): keys.due_far(SHOP, part, day) for part in (0, 1) for day in (20_400, 20_401, 20_405)}
    r.rpush(far[0, 20_400], "v-old")
    r.zadd(keys.due_days(SHOP, 0), {"20400": 20_400})
    items = [(part, day, f"v-{i}") for i in range(40) for part, day in [list(far)[(i * 7) % len(far)]]]
    names = [*far.values(), keys.due_days(SHOP, 0), keys.due_days(SHOP, 1)]
    rpush: list[Any] = []
    for part, day, vid in items:
        rpush += (names.index(far[part, day]) + 1, vid, names.index(keys.due_days(SHOP, part)) + 1, day)
    _apply_lists(r, {"k": names, "rpush": rpush})

    for (part, day), key in far.items():
        before = [b"v-old"] if (part, day) == (0, 20_400) else []
        assert r.lrange(key, 0, -1) == before + [v.encode() for p, d, v in items if (p, d) == (part, day)]
    for part in (0, 1):
        days = {d for p, d, _ in items if p == part} | ({20_400} if part == 0 else set())
        noted = r.zrange(keys.due_days(SHOP, part), 0, -1, withscores=True)
        assert noted == [(str(d).encode(), d) for d in sorted(days)]
