"""The per-viewer state the scorer keeps in Redis, as compact msgpack structs.

``ViewerState`` is a viewer's shop-wide history (spec/tiers.md "What is kept
per viewer"); ``RoomViewer`` is the viewer's record in one room.  Both are
stored as msgpack arrays (``array_like``) in one hash field each, which keeps
a known viewer to a few hundred bytes of Redis memory.
"""

from __future__ import annotations

import json

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
    # rooms attended that are archived, folded out of ``rooms`` (see ``fold``): their shop-wide
    # numbers and the viewer's first ts there, packed by ``pack_past``; and the latest ts of the
    # viewer there (the rules need no other ts of those rooms)
    past: list[int] = []
    past_last: int = -1


def pack_past(pairs: list[tuple[int, int]]) -> list[int]:
    """(room number, first ts) pairs as a flat list of small integers: most recent first, each
    number and ts as the step from the one before (a few bytes a room instead of ~30)."""
    pairs = sorted(pairs, key=lambda p: (-p[1], p[0]))
    out: list[int] = []
    prev_no, prev_ts = 0, 0
    for i, (no, ts) in enumerate(pairs):
        out += (no - prev_no, ts if i == 0 else prev_ts - ts)
        prev_no, prev_ts = no, ts
    return out


def past_rooms(v: ViewerState) -> list[tuple[int, int]]:
    """The folded rooms of ``v`` as (room number, first ts), most recent first."""
    out: list[tuple[int, int]] = []
    p = v.past
    no = ts = 0
    for i in range(0, len(p), 2):
        no += p[i]
        ts = p[1] if i == 0 else ts - p[i + 1]
        out.append((no, ts))
    return out


def fold(v: ViewerState, archived: dict[str, int]) -> bool:
    """Move the rooms of ``v`` that are archived (``archived``: room -> its shop-wide number)
    from ``rooms`` to ``past``. An archived room gets no more events (a scorer drops late ones),
    so all the rules still need of it is its first ts, and the latest ts of all such rooms.
    Returns whether anything moved."""
    gone = [rm for rm in v.rooms if rm in archived]
    if not gone:
        return False
    pairs = past_rooms(v)
    for rm in gone:
        first, last = v.rooms.pop(rm)
        pairs.append((archived[rm], first))
        v.past_last = max(v.past_last, last)
    v.past = pack_past(pairs)
    return True


def rooms_attended(v: ViewerState) -> int:
    return len(v.rooms) + len(v.past) // 2


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


class TaskRec(msgspec.Struct, array_like=True):
    """One follow-up task, packed in one field of the room's task hash (``keys.tasks``).

    The Lua scripts (``lua/apply.lua``, ``lua/task.lua``) read and write it by position:
    ``TASK_FIELDS`` gives each field's 1-based index; keep the order (append only)."""

    state: str
    made_at: int = 0  # shop clock when the scorer made it
    task_at: int = -1  # the shop-clock value it belongs to (spec: t0)
    # what the operator sees, copied from the viewer's records when made and while pending
    name: str = ""
    tier: str = ""
    country: str = ""
    lang: str = ""
    tz: str = ""
    dwell_ms: int = 0
    priority: float = 0.0
    reactivated: bool = False
    comments: int = 0
    likes: int = 0
    views: int = 0
    carts: int = 0
    shares: int = 0
    follows: int = 0
    said: list[str] = []
    skus_viewed: list[str] = []
    skus_carted: list[str] = []
    product: str = ""
    # operator actions
    holder: str = ""
    lease_until: int = 0
    claimed_at: int = 0
    updated_at: int = 0
    sent_by: str = ""
    sent_at: int = 0
    sent_clock: int = 0
    skipped_by: str = ""
    skip_reason: str = ""
    skipped_at: int = 0


TASK_FIELDS = {name: i + 1 for i, name in enumerate(TaskRec.__struct_fields__)}
_TASK_DEFAULTS = {f: d for f, d in zip(TaskRec.__struct_fields__[-len(TaskRec.__struct_defaults__):],
                                       TaskRec.__struct_defaults__, strict=True)}


_enc = msgspec.msgpack.Encoder()
_dec_viewer = msgspec.msgpack.Decoder(ViewerState)
_dec_rv = msgspec.msgpack.Decoder(RoomViewer)


def pack(obj: ViewerState | RoomViewer) -> bytes:
    return _enc.encode(obj)


def unpack_viewer(b: bytes) -> ViewerState:
    return _dec_viewer.decode(b)


def unpack_room_viewer(b: bytes) -> RoomViewer:
    return _dec_rv.decode(b)


_dec_task = msgspec.msgpack.Decoder(TaskRec)


def pack_task(t: TaskRec) -> bytes:
    return _enc.encode(t)


def unpack_task(b: bytes) -> TaskRec:
    return _dec_task.decode(b)


def task_fields(b: bytes) -> dict[str, str]:
    """A packed task as text fields by name (lists as JSON, booleans as "0"/"1"); operator fields
    that were never set are left out."""
    t = unpack_task(b)
    out: dict[str, str] = {}
    for f in TaskRec.__struct_fields__:
        v = getattr(t, f)
        if f in _OPERATOR and v == _TASK_DEFAULTS.get(f):
            continue
        if isinstance(v, bool):
            out[f] = "1" if v else "0"
        elif isinstance(v, list):
            out[f] = json.dumps(v, ensure_ascii=False)
        else:
            out[f] = str(v)
    return out


_OPERATOR = set(TaskRec.__struct_fields__[TASK_FIELDS["holder"] - 1:])
