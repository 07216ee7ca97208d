"""A scorer's counters and its receipt -> applied latencies (its heartbeat shows them)."""

from __future__ import annotations

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
