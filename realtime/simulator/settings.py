"""What to simulate: one frozen settings object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimSettings:
    """What to simulate. Same settings (with ``start_ms`` fixed) -> the same timeline."""

    seed: int = 1
    viewers: int = 2000
    rate: float = 200.0  # events/s target
    duration: float | None = None  # seconds of live show; None = until stopped
    shop: str = "default"
    room: str | None = None  # default: f"live-{seed}-{date}"
    history_shows: int = 3  # earlier shows of the same shop, sent first, fast, with past ts
    batch: int | None = None  # events per frame; None = pick by rate (1 at low rate, up to 200 at high)
    start_ms: int | None = None  # ts of the live show's start; None = the wall clock
    bad_ratio: float = 0.002  # fraction of frames that carry a malformed/invalid event
    dup_ratio: float = 0.002  # fraction of events resent
    # events.md v1.1: the fraction of orders followed (same ts) by the buyer's ``contact`` and a channel
    # ``consent`` (as a shop order brings them); drawn apart from the rest, so that 0 gives the v1 timeline
    contacts: float = 0.8
