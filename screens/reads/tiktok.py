"""The live board's TikTok LIVE tile: the connection of each ``python -m realtime tiktok`` of the shop.

Read from the consumers' heartbeats, which the board reads anyway (no round trip of its own):
a TikTok source's beat carries ``source: "tiktok"``, its state, the room's viewer count and its
last error (``realtime.tiktok.TikTokSource.status``).  Pure: tested without Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fanops.replies import to_int

STATES = ("starting", "connecting", "connected", "offline", "ended", "rate_limited", "sign_error", "blocked",
          "not_found", "dropped", "error", "stopped")
ERROR_CHARS = 200


@dataclass(frozen=True)
class TikTokTile:
    unique_id: str
    state: str  # one of STATES ("unknown" for anything else)
    room: str | None
    viewers: int | None  # watching now, as TikTok counts them; None: not known yet
    viewers_total: int | None
    last_error: str | None
    last_error_at: float | None  # wall clock, s

    @property
    def ok(self) -> bool:
        return self.state in ("connected", "offline", "ended")


def _opt_int(v: Any) -> int | None:
    return None if v is None else to_int(v)


def tiles(consumer_beats: list[dict[str, Any]], shop: str) -> list[TikTokTile]:
    """The tiles of the shop's TikTok sources, by creator, from the consumers' heartbeats (parsed)."""
    out = []
    for b in consumer_beats:
        if b.get("source") != "tiktok" or b.get("shop") != shop:
            continue
        state = str(b.get("state") or "")
        err = b.get("last_error")
        at = b.get("last_error_at")
        out.append(TikTokTile(
            unique_id=str(b.get("unique_id") or "?"), state=state if state in STATES else "unknown",
            room=b.get("room") or None, viewers=_opt_int(b.get("viewers")),
            viewers_total=_opt_int(b.get("viewers_total")),
            last_error=str(err)[:ERROR_CHARS] if err else None,
            last_error_at=float(at) if isinstance(at, int | float) else None))
    return sorted(out, key=lambda t: t.unique_id)
