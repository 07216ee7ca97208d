"""A scorer's counters and its receipt -> applied latencies (its heartbeat shows them)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class WorkerStats:
    batches: int = 0
    entries: int = 0
    events: int = 0
    conflicts: int = 0
    stale: int = 0
    claimed: int = 0
    idle_looks: int = 0  # looks for idle rooms to archive (``Worker.archive_idle``) finished
    # per stream entry applied: (receipt ms, receipt -> applied ms, events in it), the most recent
    samples: deque[tuple[float, float, int]] = field(default_factory=lambda: deque(maxlen=50_000))

    def percentile(self, p: float, since_ms: float = 0.0) -> float:
        """The p-th percentile of receipt -> applied over events (an entry counts once per event),
        for entries received at or after ``since_ms``."""
        xs = sorted((lat, n) for t, lat, n in self.samples if t >= since_ms)
        total = sum(n for _, n in xs)
        if not total:
            return 0.0
        want, acc = p / 100 * total, 0
        for lat, n in xs:
            acc += n
            if acc >= want:
                return lat
        return xs[-1][0]


def beat_body(s: WorkerStats, name: str, window_s: float, partitions: list[int], final: bool,
              outage: dict[str, object]) -> dict[str, object]:
    """A scorer's heartbeat (``fanops.heartbeat``): its counts, its latency over the last ``window_s``,
    its partitions, whether it runs, and since when Redis fails it (``outage``)."""
    recent = time.time() * 1000 - window_s * 1000
    return {"name": name, "batches": s.batches, "events": s.events, "conflicts": s.conflicts, "claimed": s.claimed,
            "p50_ms": round(s.percentile(50, recent), 1), "p99_ms": round(s.percentile(99, recent), 1),
            "latency_window_s": window_s, "partitions": partitions, "running": not final, **outage}
