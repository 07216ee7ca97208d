"""The live board's health panel: are the feed reader and the scorers running, and keeping up?

Judged from the processes' heartbeats (``fanops.heartbeat``), the shop's counters and
the board's own history (``screens.reads.history``).  Every function here takes plain
data and is tested without Redis; ``board.read_board`` does the reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fanops.replies import to_int
from fanops.runtime.memory import NEARLY_FULL, Memory
from screens.reads.history import SNAP_EVERY_S, events_rate

SILENT_WARN_S = 30.0
LAG_WINDOW_S = 30.0
LAG_GROWTH_MIN = 500
DEAD_WARN_MIN = 10


@dataclass
class Health:
    consumers: int = 0
    connected: bool = False
    scorers: int = 0
    lag: int = 0
    lag_growing: bool = False
    silent_s: float | None = None
    dead_last_minute: int = 0
    frames: int | None = None  # frames the consumers have read, all together (None: no consumer)
    memory: Memory | None = None  # Redis's, of the fullest primary with a maxmemory (None: none has one)
    problems: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (i18n key, params)

    @property
    def ok(self) -> bool:
        return not self.problems


def beats(raw: list[bytes | None]) -> list[dict[str, Any]]:
    """The heartbeats of one kind of process as read (MGET): expired and unreadable ones left out."""
    out = []
    for b in raw:
        if not b:
            continue
        try:
            d = json.loads(b)
        except ValueError:
            continue
        if isinstance(d, dict):
            out.append(d)
    return out


def lag_growing(snaps: list[dict[str, Any]], now: float, lag_now: int, window: float = LAG_WINDOW_S,
                min_growth: int = LAG_GROWTH_MIN) -> bool:
    """True if the scorer lag never fell over the last ``window`` seconds and grew by ``min_growth``."""
    pts = sorted((s["at"], to_int(s.get("lag"))) for s in snaps if 0 < now - s["at"] <= window + SNAP_EVERY_S)
    pts.append((now, lag_now))
    if len(pts) < 3 or pts[-1][0] - pts[0][0] < window * 2 / 3:
        return False
    rising = all(b[1] >= a[1] for a, b in zip(pts, pts[1:], strict=False))
    return rising and pts[-1][1] - pts[0][1] >= min_growth


def silent_for(snaps: list[dict[str, Any]], now: float, frames_now: int | None) -> float | None:
    """Seconds for which the consumers' frame count has not moved (a lower bound); None: no consumer."""
    if frames_now is None:
        return None
    since = now
    for s in snaps:  # newest first
        if s.get("frames") != frames_now:
            break
        since = s["at"]
    return now - since


def dead_last_minute(this_minute: int, last_minute: int, now: float) -> int:
    """Dead letters in the last 60 s, from the per-minute counters (the older minute pro rata)."""
    into = (now % 60) / 60
    return int(round(this_minute + last_minute * (1 - into)))


def judge_health(h: Health, accepted_per_s: float | None) -> Health:
    """Fill ``h.problems`` with what an operator should be warned about, most serious first."""
    p = h.problems
    p.clear()
    m = h.memory
    if m is not None and m.share is not None:
        mb = {"used": round(m.used / 2**20), "limit": round(m.limit / 2**20), "pct": int(100 * m.share)}
        if m.full:
            # nothing can be written, heartbeats neither: what they would say (no feed reader, no
            # scorer) is not to be believed, and the fix is memory, not another process
            p.append(("health.redis_full", mb))
            return h
        if m.share >= NEARLY_FULL:
            p.append(("health.redis_nearly_full", mb))
    if h.consumers == 0:
        p.append(("health.no_consumer", {}))
    elif not h.connected:
        p.append(("health.disconnected", {}))
    elif h.silent_s is not None and h.silent_s >= SILENT_WARN_S:
        p.append(("health.silent", {"s": int(h.silent_s)}))
    if h.scorers == 0 and h.lag > 0:
        p.append(("health.no_scorer", {"lag": h.lag}))
    elif h.lag_growing:
        p.append(("health.lag_growing", {"lag": h.lag}))
    accepted_min = (accepted_per_s or 0.0) * 60
    if h.dead_last_minute >= DEAD_WARN_MIN and h.dead_last_minute >= 0.01 * (h.dead_last_minute + accepted_min):
        p.append(("health.dead", {"n": h.dead_last_minute}))
    return h


def assess(consumers: list[dict[str, Any]], scorers: list[dict[str, Any]], accepted: int, applied: int,
           dead: tuple[int, int], snaps: list[dict[str, Any]], now: float,
           memory: Memory | None = None) -> Health:
    """The health panel, judged: from the heartbeats of the consumers and scorers, the shop's
    accepted and applied counters, the dead letters of this minute and the last, the shop's
    board history (newest first) and Redis's memory (``fanops.runtime.memory.fullest``)."""
    frames = sum(to_int(c.get("frames")) for c in consumers) if consumers else None
    h = Health(consumers=len(consumers), connected=any(c.get("connected") for c in consumers),
               scorers=sum(1 for s in scorers if s.get("running", True)), lag=max(0, accepted - applied),
               frames=frames, memory=memory)
    h.lag_growing = lag_growing(snaps, now, h.lag)
    h.silent_s = silent_for(snaps, now, frames)
    h.dead_last_minute = dead_last_minute(dead[0], dead[1], now)
    return judge_health(h, events_rate(snaps, now, accepted, "accepted"))
