"""TikTok LIVE events (the ``TikTokLive`` library's objects) -> ``spec/events.md`` events.

Pure: no I/O, no clock (the receipt time is passed in).  ``map_event(ev, ctx)`` gives one of

- an events.md event as a dict, ready to be sent as JSON through the consumer's validation
  (``fanops.schema.parse_frame``), dedupe and writer;
- ``BadInput`` (the reason and the message as text) for a message we cannot credit to anyone;
- ``RoomViewers`` (the room's viewer counts, for the live board) or ``LiveEnd``;
- ``None``: nothing for us (a gift streak still running, zero likes, a pause).

Each event's ``id`` is the platform's message id (``tt-<msg_id>``), so the messages a reconnect
sends again are repeats, not new events.  Our room is the TikTok room id (one per broadcast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from TikTokLive.events import (
    CommentEvent,
    ControlEvent,
    FollowEvent,
    GiftEvent,
    JoinEvent,
    LikeEvent,
    LiveEndEvent,
    RoomUserSeqEvent,
    ShareEvent,
)
from TikTokLive.proto.custom_proto import ControlAction

from fanops.schema import RAW_LIMIT, BadInput, is_language_tag

# the library's classes this module maps: the run loop listens to these only (a follow also
# arrives as a plain SocialEvent and an end as a plain ControlEvent; their subclasses are enough)
MAPPED_EVENTS: tuple[type, ...] = (
    CommentEvent, JoinEvent, LikeEvent, FollowEvent, ShareEvent, GiftEvent, RoomUserSeqEvent, LiveEndEvent,
)
NAME_MAX = 256  # events.md: a display name holds 0-256 chars
STREAKABLE = 1  # Gift.type of gifts sent in streaks (the library's ``ExtendedGift.streakable``)
_ENDS = (ControlAction.STREAM_ENDED, ControlAction.STREAM_SUSPENDED)


@dataclass(frozen=True)
class Context:
    """What a message alone does not say: where it goes and how gifts are valued."""

    shop: str
    room: str  # our room id, from ``room_id()``
    diamonds_per_usd: float  # FANOPS_TIKTOK_DIAMONDS_PER_USD
    now_ms: int  # receipt time: the ts of a message that carries none


@dataclass(frozen=True)
class RoomViewers:
    viewers: int  # watching now
    total: int  # viewers the room has had (as TikTok counts them)
    ts: int


@dataclass(frozen=True)
class LiveEnd:
    ts: int
    reason: str  # "ended" or "suspended" (by TikTok)


Mapped = dict[str, Any] | BadInput | RoomViewers | LiveEnd | None


def room_id(tiktok_room_id: int | str) -> str:
    """Our room id for a TikTok broadcast."""
    return f"tiktok-{tiktok_room_id}"


def _raw(ev: Any) -> bytes:
    try:
        body = json.dumps(ev.to_dict(), ensure_ascii=False, default=str)
    except Exception:  # noqa: BLE001 (a message too odd to print still gets a dead letter)
        body = repr(ev)
    return f"{type(ev).__name__} {body}".encode("utf-8", "replace")[:RAW_LIMIT]


def _ts(ev: Any, ctx: Context) -> int:
    t = int(getattr(ev.common, "create_time", 0) or 0) if ev.common is not None else 0
    if t <= 0:
        return ctx.now_ms
    return t * 1000 if t < 100_000_000_000 else t  # some messages count seconds, most milliseconds


def _msg_id(ev: Any) -> int:
    return int(ev.common.msg_id or 0) if ev.common is not None else 0


def _viewer(user: Any, lang: str = "") -> dict[str, str] | None:
    if user is None:
        return None
    vid = str(user.id) if user.id else (user.id_str or "")
    if not vid:
        return None
    v = {"id": vid}
    name = user.nickname or user.display_id or ""
    if name:
        v["name"] = name[:NAME_MAX]
    lang = lang.replace("_", "-")
    if lang and is_language_tag(lang):  # one events.md would refuse is left out, not the event
        v["lang"] = lang
    return v


def _base(ev: Any, ctx: Context, kind: str, lang: str = "") -> dict[str, Any] | BadInput:
    what = type(ev).__name__
    mid = _msg_id(ev)
    if not mid:
        return BadInput(f"TikTok {what} without a message id: a resend could not be told from a new event",
                        _raw(ev))
    viewer = _viewer(ev.user, lang)
    if viewer is None:
        return BadInput(f"TikTok {what} without a user id: no viewer to credit it to", _raw(ev))
    return {"id": f"tt-{mid}", "room": ctx.room, "shop": ctx.shop, "ts": _ts(ev, ctx), "type": kind,
            "viewer": viewer}


def _gift(ev: GiftEvent, ctx: Context) -> Mapped:
    gift = ev.gift
    if gift is None:
        return BadInput("TikTok gift without its gift details: its value is unknown", _raw(ev))
    if gift.type == STREAKABLE and not ev.repeat_end:
        return None  # a streak in progress: its last message carries the whole count
    base = _base(ev, ctx, "gift")
    if isinstance(base, BadInput):
        return base
    count = max(int(ev.repeat_count or 0), 1)
    value = count * max(int(gift.diamond_count or 0), 0) / ctx.diamonds_per_usd
    base.update(gift=gift.name or f"gift-{gift.id or ev.gift_id}", count=count, value=round(value, 4))
    return base


def map_event(ev: Any, ctx: Context) -> Mapped:
    """One library event -> what it means for us (see the module's docstring)."""
    if isinstance(ev, RoomUserSeqEvent):
        return RoomViewers(viewers=max(int(ev.total or 0), 0), total=max(int(ev.total_user or 0), 0),
                           ts=_ts(ev, ctx))
    if isinstance(ev, ControlEvent):  # LiveEndEvent included
        if ev.action in _ENDS or isinstance(ev, LiveEndEvent):
            reason = "suspended" if ev.action == ControlAction.STREAM_SUSPENDED else "ended"
            return LiveEnd(ts=_ts(ev, ctx), reason=reason)
        return None
    if isinstance(ev, GiftEvent):
        return _gift(ev, ctx)
    if isinstance(ev, LikeEvent):
        if int(ev.count or 0) <= 0:
            return None  # no tap to count
        base = _base(ev, ctx, "like")
        if not isinstance(base, BadInput):
            base["count"] = int(ev.count)
        return base
    if isinstance(ev, CommentEvent):
        base = _base(ev, ctx, "comment", ev.content_language or "")
        if not isinstance(base, BadInput):
            base["text"] = ev.content or ""
        return base
    if isinstance(ev, FollowEvent):
        return _base(ev, ctx, "follow")
    if isinstance(ev, ShareEvent):
        return _base(ev, ctx, "share")
    if isinstance(ev, JoinEvent):
        return _base(ev, ctx, "join")
    return None
