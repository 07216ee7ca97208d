"""The per-viewer state the scorer keeps in Redis, as compact msgpack structs.

``ViewerState`` is a viewer's shop-wide history (spec/tiers.md "What is kept
per viewer"); ``RoomViewer`` is the viewer's record in one room.  Both are
stored as msgpack arrays (``array_like``) in one hash field each, which keeps
a known viewer to a few hundred bytes of Redis memory.
"""

from __future__ import annotations

import msgspec


class Consent(msgspec.Struct, array_like=True, frozen=True):
    ts: int
    id: str
    dm: bool


class ViewerState(msgspec.Struct, array_like=True):
    first_seen: int
    last_active: int
    rooms: dict[str, list[int]]  # room -> [first ts, last ts] of the viewer there
    orders: list[str] = []  # distinct order ids
    spend: dict[str, float] = {}  # currency -> total
    consents: list[Consent] = []  # the viewer's consent events, oldest first (a handful)
    name: str | None = None
    country: str | None = None
    lang: str | None = None
    tz: str | None = None
    profile_ts: int = -1  # ts of the event the profile fields came from
    tier: str = ""  # the tier it is counted under in the shop's counters
    seq: int = 0  # bumped on every write: the compare-and-set token


class RoomViewer(msgspec.Struct, array_like=True):
    first: int
    last: int  # last event of any type
    last_other: int = -1  # last event that is not a leave
    last_leave: int = -1
    comments: int = 0
    likes: int = 0
    shares: int = 0
    follows: int = 0
    views: int = 0
    carts: int = 0
    gift_value: float = 0.0
    orders: list[str] = []
    amount: dict[str, float] = {}  # currency -> ordered in this room
    skus_viewed: list[str] = []  # most recent first, a handful
    skus_carted: list[str] = []
    said: list[str] = []  # the last few comments, for the operator
    first_order: int = -1  # ts of the first order in the room
    # the viewer's events near the start of the room, [ts, 1 if leave else 0], sorted, capped:
    # enough to tell when their dwell first reached the follow-up threshold
    early: list[list[int]] = []
    after: int = -1  # the first event ts past the early window, -1 if none
    task: str = ""  # the follow-up state the data gave when last applied ("" none)
    task_at: int = -1  # the shop-clock value the task was made at (a known clock value)


_enc = msgspec.msgpack.Encoder()
_dec_viewer = msgspec.msgpack.Decoder(ViewerState)
_dec_rv = msgspec.msgpack.Decoder(RoomViewer)


def pack(obj: ViewerState | RoomViewer) -> bytes:
    return _enc.encode(obj)


def unpack_viewer(b: bytes) -> ViewerState:
    return _dec_viewer.decode(b)


def unpack_room_viewer(b: bytes) -> RoomViewer:
    return _dec_rv.decode(b)
