"""apply.lua writes a scorer's batch whole or not at all: if a viewer the batch read changed
since (another scorer wrote it), the call writes nothing and the batch is read and scored again."""

from __future__ import annotations

from typing import Any

from fanops import keys
from fanops.read import status, viewer_state
from fanops.state import ViewerState, pack
from scoring.worker import Worker
from scoring.writeset import ScoredBatch
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
