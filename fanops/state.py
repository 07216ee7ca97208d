"""The per-viewer state the scorer keeps in Redis, as compact msgpack structs.

``ViewerState`` is a viewer's shop-wide history (spec/tiers.md "What is kept
per viewer"); ``RoomViewer`` is the viewer's record in one room.  Both are
stored as msgpack arrays (``array_like``) in one hash field each, which keeps
a known viewer to a few hundred bytes of Redis memory.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

# The vocabulary of spec/tiers.md, in its order: every side names tiers and task states from here.
TIERS: tuple[str, ...] = ("new_fan", "first_buyer", "active", "dormant")
TASK_STATES: tuple[str, ...] = ("pending", "claimed", "sent", "skipped", "converted", "withdrawn", "expired")
# spec/tiers.md v1.1 "Follow-up kinds": lingered (v1, a task per room and viewer) and the others
TASK_KINDS: tuple[str, ...] = ("lingered", "thank_first_order", "after_sales", "win_back")
FINAL_TASK_STATES: tuple[str, ...] = ("sent", "skipped", "converted", "withdrawn", "expired")


class Consent(msgspec.Struct, array_like=True, frozen=True):
    ts: int
    id: str
    dm: bool


class Mark(msgspec.Struct, array_like=True, frozen=True):
    """One thing a viewer said about a channel (spec/events.md v1.1): ``what`` is ``email`` or
    ``phone`` (an address, from a contact event) or ``c:email``, ``c:whatsapp``, ``c:sms`` (a
    consent flag); ``value`` is from the event with the largest (ts, id) that names it."""

    what: str
    ts: int
    id: str
    value: str | bool


REACH_ADDRESSES: tuple[str, ...] = ("email", "phone")
REACH_CHANNELS: tuple[str, ...] = ("email", "whatsapp", "sms")  # the consent flags kept as marks


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
    # rooms attended that are archived, folded out of ``rooms`` (see ``fold``): the first ts in
    # the most recent of them (as steps), the latest ts of the viewer in any of them, and their
    # shop-wide numbers (as runs)
    past: list[int] = []
    past_last: int = -1
    past_nos: list[int] = []
    rel: int = 0  # 1 in the packed form only: its ts are relative to first_seen (see ``pack``)
    due_day: int = -1  # the day whose far-due list holds the viewer (keys.due_far), -1 none
    # v1.1: the viewer's addresses and channel consents (``Mark``); packed only when there are
    # some, so a viewer who never sent one costs no byte more
    reach: list[Mark] = []
    # v1.1 follow-up kinds (scoring.kinds): [the two earliest orders [ts, event id, order id, room],
    # the gaps of more than dormant_days between the viewer's events [before, after, 1 if the one
    # before was in the history room], the kind tasks the data gave [kind, occasion, state]]
    fol: list[Any] = []


def mark(v: ViewerState, what: str, ts: int, event_id: str, value: str | bool) -> None:
    """Keep ``value`` for ``what`` if its event is the latest that names it (largest ts, then id):
    the same state whatever order the events come in."""
    for i, m in enumerate(v.reach):
        if m.what == what:
            if (ts, event_id) > (m.ts, m.id):
                v.reach[i] = Mark(what, ts, event_id, value)
            return
    v.reach.append(Mark(what, ts, event_id, value))
    v.reach.sort(key=lambda m: m.what)


# The most rooms "active" may ask for (``fanops.rules_settings``: ``active_rooms`` is at most this):
# of its archived rooms a viewer keeps this many first ts, the most recent, which is all the
# rules can need of them under any allowed settings.
PAST_FIRSTS = 20


def _steps(values: list[int]) -> list[int]:
    """Sorted descending -> the first, then each step down (small numbers pack in fewer bytes)."""
    return [x if i == 0 else values[i - 1] - x for i, x in enumerate(values)]


def pack_firsts(firsts: list[int]) -> list[int]:
    """First ts of archived rooms as ``ViewerState.past`` keeps them: the ``PAST_FIRSTS`` most recent, as steps."""
    return _steps(sorted(firsts, reverse=True)[:PAST_FIRSTS])


def _unsteps(steps: list[int]) -> list[int]:
    out: list[int] = []
    for i, d in enumerate(steps):
        out.append(d if i == 0 else out[-1] - d)
    return out


def pack_runs(nos: list[int]) -> list[int]:
    """Room numbers as runs: [start, length, gap to the next start, length, ...]; a fan who came
    to every show is two numbers."""
    out: list[int] = []
    end = 0
    for no in sorted(set(nos)):
        if out and no == end:
            out[-1] += 1
        else:
            out += (no - end, 1)
        end = no + 1
    return out


def unpack_runs(runs: list[int]) -> list[int]:
    out: list[int] = []
    end = 0
    for i in range(0, len(runs), 2):
        start = end + runs[i]
        out.extend(range(start, start + runs[i + 1]))
        end = start + runs[i + 1]
    return out


def past_firsts(v: ViewerState) -> list[int]:
    """The viewer's first ts in their most recent archived rooms (at most ``PAST_FIRSTS``), most recent first."""
    return _unsteps(v.past) if v.past else []


def past_numbers(v: ViewerState) -> list[int]:
    """The numbers of every archived room the viewer attended."""
    return unpack_runs(v.past_nos) if v.past_nos else []


def fold(v: ViewerState, archived: dict[str, int], since: int | None = None, before: int | None = None) -> bool:
    """Move the rooms of ``v`` that are archived (``archived``: room -> its shop-wide number)
    out of ``rooms``. An archived room gets no more events (a scorer drops late ones), so what
    the rules still need of such rooms is: which they are (their numbers, as runs), the first
    ts in the most recent ``PAST_FIRSTS`` of them, and the latest ts in any. A returning fan's
    state so grows by a few bytes a show at most, not by a room id and two ts.

    A room is folded only once it ended before every room of the viewer still open started: then
    the latest ts of the folded rooms is exactly "the latest earlier event" that ``reactivated``
    asks for; and only once it ended before ``before`` (the viewer's earliest event being applied:
    a late event of a show opened again, ``scoring.reopen``). Consents from before ``since`` (the
    first event of the shop's oldest open room) go, but the last of them. Returns whether anything moved."""
    firsts = [f for rm, (f, _l) in v.rooms.items() if rm not in archived]
    open_first = min([*firsts, *([] if before is None else [before])], default=None)
    gone = [rm for rm in v.rooms if rm in archived and (open_first is None or v.rooms[rm][1] < open_first)]
    if not gone:
        return False
    firsts = past_firsts(v)
    nos = past_numbers(v)
    known = set(nos)
    for rm in gone:
        first, last = v.rooms.pop(rm)
        if archived[rm] in known:
            continue  # folded before (cannot happen: a scorer drops events of archived rooms)
        firsts.append(first)
        nos.append(archived[rm])
        v.past_last = max(v.past_last, last)
    v.past = pack_firsts(firsts)
    v.past_nos = pack_runs(nos)
    # consent: what the rules ask of it is the consent at times from the start of the shop's
    # oldest open room on (tasks of open rooms), and the latest: the events from then on, and
    # the last one before
    if since is not None and len(v.consents) > 1:
        cut = min([since, *(f for f, _l in v.rooms.values())])
        earlier = [c for c in v.consents if c.ts < cut]
        v.consents = earlier[-1:] + [c for c in v.consents if c.ts >= cut]
    return True


def rooms_attended(v: ViewerState) -> int:
    return len(v.rooms) + (sum(v.past_nos[1::2]) if v.past_nos else 0)


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
    rel: int = 0  # 1 in the packed form only: its ts are relative to first (see ``pack``)
    # the shop clock of a follow-up sent to the viewer before its task could be made: the task may
    # be made only past that send's cooldown (7 days) (-1: none; absolute, and left out of the
    # packed form when none)
    held_by: int = -1


class TaskRec(msgspec.Struct, array_like=True):
    """One follow-up task, packed in one field of the room's task hash (``keys.tasks``).

    The Lua scripts (``scoring/lua/apply.lua``, ``fanops/lua/task.lua``) read and write it by position:
    ``TASK_FIELDS`` gives each field's 1-based index; keep the order (append only). Trailing
    fields at their default are left out of the packed array (the operator's, until one acts):
    ``task.lua`` fills them back in before it writes one."""

    state: str
    made_at: int = 0  # shop clock when the scorer made it
    task_at: int = -1  # the shop-clock value it belongs to (spec: t0)
    # what the operator sees, copied from the viewer's records when made and while pending; the
    # scorer leaves name, country, lang and tz empty (read from the viewer's state when shown:
    # fanops.read.fill_profiles); tasks of earlier versions have them filled
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
    # v1.1 (fanops.channels): the channel a sent task went out on and the provider's message id
    # ("" for dm, sent by hand on the platform)
    channel: str = ""
    message_id: str = ""
    # v1.1 follow-up kinds: "" is lingered (its room is in its id); the others' room
    kind: str = ""
    room: str = ""


TASK_FIELDS = {name: i + 1 for i, name in enumerate(TaskRec.__struct_fields__)}
_TASK_DEFAULTS = {f: d for f, d in zip(TaskRec.__struct_fields__[-len(TaskRec.__struct_defaults__):],
                                       TaskRec.__struct_defaults__, strict=True)}


_enc = msgspec.msgpack.Encoder()
_dec_viewer = msgspec.msgpack.Decoder(ViewerState)
_dec_rv = msgspec.msgpack.Decoder(RoomViewer)


# Packed, a state keeps its timestamps relative to one of them (a viewer's ``first_seen``, a
# room record's ``first``), every other one at or after it: ``ts - base + 1``, and "none" (-1)
# as 0. A ts within ~49 days of the base packs in 5 bytes instead of 9, within a minute in 3:
# ~20% less Redis for the two records every viewer of a live show has. ``rel`` (the last field)
# is 1 in that form; a state with a ts before its base (never from the scorer) packs as it is,
# and so do states packed by earlier versions, which had no ``rel``.
# ...and the tier and follow-up state as one letter, a gift value of 0.0 as the integer 0
_TIER_CODE = {"new_fan": "n", "first_buyer": "f", "active": "a", "dormant": "d"}
_TIER_NAME = {c: t for t, c in _TIER_CODE.items()}
_TASK_CODE = {"pending": "p", "converted": "c", "withdrawn": "w"}
_TASK_NAME = {c: t for t, c in _TASK_CODE.items()}


# _viewer_out and _rv_out build the packed arrays field by field: they must follow the structs
if ViewerState.__struct_fields__[-4:] != ("rel", "due_day", "reach", "fol") \
        or len(ViewerState.__struct_fields__) != 20 \
        or RoomViewer.__struct_fields__[-2:] != ("rel", "held_by") or len(RoomViewer.__struct_fields__) != 23:
    raise ImportError("fanops.state: a struct's fields changed: update _viewer_out/_rv_out")


def _viewer_out(v: ViewerState) -> tuple[object, ...] | ViewerState:
    """The packed form's fields, in order (a tuple packs as the struct's array), or the state as it is."""
    b = v.first_seen
    la, pt, pl = v.last_active, v.profile_ts, v.past_last
    if v.rel or b < 0 or la < b or (pt != -1 and pt < b) or (pl != -1 and pl < b):
        return v
    d = b - 1
    rooms = {}
    for rm, (f, last) in v.rooms.items():
        if f < b or last < b:
            return v
        rooms[rm] = [f - d, last - d]
    consents = v.consents
    if consents:
        if min(c.ts for c in consents) < b:
            return v
        consents = [Consent(c.ts - d, c.id, c.dm) for c in consents]
    past = v.past
    if past:
        if past[0] < b:
            return v
        past = [past[0] - d, *past[1:]]
    out = (b, la - d, rooms, v.orders, v.spend, consents, v.name, v.country, v.lang, v.tz,
           0 if pt == -1 else pt - d, _TIER_CODE.get(v.tier, v.tier), v.seq, past, 0 if pl == -1 else pl - d,
           v.past_nos, 1, v.due_day)
    if v.fol:
        return (*out, v.reach, v.fol)
    return (*out, v.reach) if v.reach else out


def _viewer_in(v: ViewerState) -> ViewerState:
    if v.rel != 1:
        return v
    d = v.first_seen - 1
    v.last_active += d
    v.profile_ts = -1 if v.profile_ts == 0 else v.profile_ts + d
    v.past_last = -1 if v.past_last == 0 else v.past_last + d
    for fl in v.rooms.values():
        fl[0] += d
        fl[1] += d
    if v.consents:
        v.consents = [Consent(c.ts + d, c.id, c.dm) for c in v.consents]
    if v.past:
        v.past[0] += d
    v.tier = _TIER_NAME.get(v.tier, v.tier)
    v.rel = 0
    return v


def _rv_out(rv: RoomViewer) -> tuple[object, ...] | RoomViewer:
    b = rv.first
    lo, ll, fo, af, ta = rv.last_other, rv.last_leave, rv.first_order, rv.after, rv.task_at
    if rv.rel or b < 0 or rv.last < b or (lo < b and lo != -1) or (ll < b and ll != -1) or (fo < b and fo != -1) \
            or (af < b and af != -1) or (ta < b and ta != -1):
        return rv
    d = b - 1
    early = rv.early
    if early:
        if early[0][0] < b:  # sorted by ts: the first is the smallest
            return rv
        early = [[t - d, leave] for t, leave in early]
    out = (b, rv.last - d, 0 if lo == -1 else lo - d, 0 if ll == -1 else ll - d, rv.comments, rv.likes,
           rv.shares, rv.follows, rv.views, rv.carts, 0 if rv.gift_value == 0 else rv.gift_value, rv.orders,
           rv.amount, rv.skus_viewed, rv.skus_carted, rv.said, 0 if fo == -1 else fo - d, early,
           0 if af == -1 else af - d, _TASK_CODE.get(rv.task, rv.task), 0 if ta == -1 else ta - d, 1)
    return out if rv.held_by == -1 else (*out, rv.held_by)


def _rv_in(rv: RoomViewer) -> RoomViewer:
    if rv.rel != 1:
        return rv
    d = rv.first - 1
    rv.last += d
    rv.last_other = -1 if rv.last_other == 0 else rv.last_other + d
    rv.last_leave = -1 if rv.last_leave == 0 else rv.last_leave + d
    rv.first_order = -1 if rv.first_order == 0 else rv.first_order + d
    rv.after = -1 if rv.after == 0 else rv.after + d
    rv.task_at = -1 if rv.task_at == 0 else rv.task_at + d
    for e in rv.early:
        e[0] += d
    rv.task = _TASK_NAME.get(rv.task, rv.task)
    rv.rel = 0
    return rv


def pack(obj: ViewerState | RoomViewer) -> bytes:
    return _enc.encode(_rv_out(obj) if type(obj) is RoomViewer else _viewer_out(obj))  # type: ignore[arg-type]


def unpack_viewer(b: bytes) -> ViewerState:
    return _viewer_in(_dec_viewer.decode(b))


# a packed state's ``past_nos`` (absolute in both forms: ``_viewer_out`` keeps it as it is), the
# fields before it skipped undecoded, those after it ignored
_BEFORE_PAST_NOS = ViewerState.__struct_fields__.index("past_nos")  # the packed fields keep the struct's order
_PastNos = msgspec.defstruct("_PastNos", [*((f"f{i}", msgspec.Raw, msgspec.Raw()) for i in range(_BEFORE_PAST_NOS)),
                                         ("past_nos", list[int], [])], array_like=True)  # a short (old) state: none
_dec_past_nos = msgspec.msgpack.Decoder(_PastNos)


def packed_past_numbers(b: bytes) -> list[int]:
    """``past_numbers`` of a packed state, read without unpacking the rest (a few times faster)."""
    runs = _dec_past_nos.decode(b).past_nos  # type: ignore[attr-defined]
    return unpack_runs(runs) if runs else []


class _First(msgspec.Struct, array_like=True):
    first: int  # the first field of a packed room record, absolute in both forms


_dec_first = msgspec.msgpack.Decoder(_First)


def room_viewer_first(b: bytes) -> int:
    """A packed room record's first ts, read without decoding the rest (5x cheaper)."""
    return _dec_first.decode(b).first


def room_viewer_may_be_held(b: bytes) -> bool:
    """Can the packed room record have a ``held_by``?  (Its array has all 23 fields: a record with
    none leaves it out, so most records are told apart by their first 3 bytes, with no decoding.)"""
    return b[:3] == b"\xdc\x00\x17"


def unpack_room_viewer(b: bytes) -> RoomViewer:
    return _rv_in(_dec_rv.decode(b))


_dec_task = msgspec.msgpack.Decoder(TaskRec)


_TASK_TIER = TASK_FIELDS["tier"] - 1


def tier_code(tier: str) -> str:
    """The tier as packed records keep it: one letter (other text as it is)."""
    return _TIER_CODE.get(tier, tier)


def pack_task(t: TaskRec) -> bytes:
    vals = list(msgspec.structs.astuple(t))
    vals[_TASK_TIER] = tier_code(vals[_TASK_TIER])
    n = len(vals)
    while n > _OPERATOR_FROM and vals[n - 1] == _TASK_DEFAULTS[TaskRec.__struct_fields__[n - 1]]:
        n -= 1  # trailing operator fields still at their default are left out (task.lua fills them in)
    return _enc.encode(vals[:n])


def pack_scored_task(state: str, made_at: int, shown: list[Any]) -> bytes:
    """A task as the scorer makes it: ``pack_task(TaskRec(state, made_at, *shown))`` with ``shown``
    the fields from ``task_at`` to ``product`` as packed (the tier as its letter) and no operator
    field yet, packed without building the record (it is made for every new task of a batch)."""
    return _enc.encode([state, made_at, *shown])


def unpack_task(b: bytes) -> TaskRec:
    t = _dec_task.decode(b)
    t.tier = _TIER_NAME.get(t.tier, t.tier)
    return t


def task_fields(b: bytes) -> dict[str, str]:
    """A packed task as text fields by name (see ``record_fields``)."""
    return record_fields(unpack_task(b))


def record_fields(t: TaskRec) -> dict[str, str]:
    """A task as text fields by name (lists as JSON, booleans as "0"/"1"); operator fields that
    were never set are left out."""
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
_OPERATOR_FROM = TASK_FIELDS["holder"] - 1  # 0-based index of the first operator field
