"""The simulated shop's whole timeline: a fan pool, its earlier shows (history) and the live show, from one seed."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from realtime.simulator.bad import Garbled
from realtime.simulator.settings import SimSettings
from realtime.simulator.show import Show
from realtime.simulator.tables import HOSTILE_NAMES
from realtime.simulator.viewers import Viewer

DAY_MS = 86_400_000
NOMINAL_SHOW_S = 3600.0  # show length used for the arrival curve when duration is None


class Sim:
    """The shop: a fan pool, its earlier shows (history) and the live show, all from one seed."""

    def __init__(self, s: SimSettings) -> None:
        if s.viewers < 1 or s.rate <= 0:
            raise ValueError("viewers must be >= 1 and rate > 0")
        if s.start_ms is None:
            s = replace(s, start_ms=int(time.time() * 1000))
        self.s, rng = s, random.Random(s.seed)
        assert s.start_ms is not None
        day = datetime.fromtimestamp(s.start_ms / 1000, UTC).strftime("%Y-%m-%d")
        self.room = s.room or f"live-{s.seed}-{day}"
        self.batch = s.batch or max(1, min(200, int(s.rate // 100)))
        pool_n = max(4, s.viewers * 3 // 5) if s.history_shows > 0 else 0
        ids = [f"u-{n:09d}" for n in rng.sample(range(10 ** 9), s.viewers + pool_n)]
        n_fresh = s.viewers - int(s.viewers * .3)  # hostile names go to first-time live viewers: always present
        hostile = set(rng.sample(range(pool_n, pool_n + n_fresh), min(len(HOSTILE_NAMES), n_fresh)))
        names = iter(HOSTILE_NAMES)
        people = [Viewer(rng, vid, next(names) if i in hostile else None) for i, vid in enumerate(ids)]
        self.pool, fresh = people[:pool_n], people[pool_n:]
        back = sorted([33, 12, 45][:s.history_shows] + [45 + 15 * i for i in range(1, s.history_shows - 2)],
                      reverse=True)
        self.shows: list[Show] = []
        attended: dict[str, Viewer] = {}
        for j, days in enumerate(back):
            start = s.start_ms - days * DAY_MS + rng.randrange(-3, 4) * 3_600_000
            hday = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%d")
            room = f"{s.room[:100]}-past-{hday}" if s.room else f"live-{s.seed}-{hday}"
            cast = rng.sample(self.pool, max(2, s.viewers // 4) if len(self.pool) > 2 else len(self.pool))
            attended.update((v.vid, v) for v in cast)
            total = min(len(cast) * 6, 40_000)
            self.shows.append(Show(random.Random(f"{s.seed}/{j}"), s, room=room, prefix=f"h{j}-", start_ms=start,
                                   length_s=2700, total=total, rate=total / 2700, cast=cast, batch=100,
                                   exact_batch=False))
        returning = rng.sample(sorted(attended.values(), key=lambda v: v.vid), min(len(attended), int(s.viewers * .3)))
        cast = returning + fresh[:s.viewers - len(returning)]
        length = s.duration if s.duration is not None else NOMINAL_SHOW_S
        live_total = None if s.duration is None else max(1, round(s.rate * s.duration))
        self.live = Show(random.Random(f"{s.seed}/live"), s, room=self.room, prefix="e-", start_ms=s.start_ms,
                         length_s=length, total=live_total, rate=s.rate, cast=cast, batch=self.batch,
                         exact_batch=s.batch is not None)

    def history(self) -> Iterator[list[dict[str, Any]]]:
        """The earlier shows' frames, oldest show first (call once, before ``live_frames``)."""
        for show in self.shows:
            for _, f in show.frames():
                yield f

    def live_frames(self) -> Iterator[tuple[float, list[dict[str, Any]]]]:
        """The live show's frames with their due offsets (ms after the start)."""
        return self.live.frames()


def generate(settings: SimSettings) -> Iterator[list[dict[str, Any]]]:
    """The whole timeline, history first then live: one list of event dicts per frame.

    Deterministic for a given ``settings`` with ``start_ms`` set. Good events follow events.md
    exactly; deliberate bad ones are ``Bad`` dicts (``Garbled`` ones always alone in a frame and
    sent as ``.text``: use ``encode_frame``). Dicts may be shared between events: read-only.
    """
    sim = Sim(settings)
    yield from sim.history()
    for _, f in sim.live_frames():
        yield f


_encoder = msgspec.json.Encoder()


def encode_frame(frame: list[dict[str, Any]]) -> bytes:
    """A frame's wire text (UTF-8): one event as an object, several as an array, ``Garbled`` verbatim."""
    if len(frame) == 1:
        e = frame[0]
        return e.text.encode() if isinstance(e, Garbled) else _encoder.encode(e)
    return _encoder.encode(frame)
