"""Capped, jittered exponential back-off (pure: the randomness is injected)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of ``initial * factor**n`` capped at ``cap``, with "full jitter" in [delay/2, delay]."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return base / 2 + self.rng.random() * base / 2

    def reset(self) -> None:
        self.attempt = 0
