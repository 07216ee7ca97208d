"""The live-room event feed, wire format v1.1 (``spec/events.md``), as msgspec structs.

``parse_frame(data, now_ms)`` is the single implementation of the spec's
validation: it turns one WebSocket frame into the events it holds and a
``BadInput`` for each event that breaks a rule.  One bad event in a batch
does not spoil the good ones beside it.  Pure: no I/O, the clock is passed in.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from typing import Annotated, Literal, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

RAW_LIMIT = 4096  # raw text kept with a dead letter

Id = Annotated[str, Meta(min_length=1, max_length=128)]
Name = Annotated[str, Meta(max_length=256)]
# (patterns end in \Z: "$" would let a trailing newline through, "US\n" as a country)
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}\Z")]
Ts = Annotated[int, Meta(ge=0)]
# a well-formed BCP 47 tag (RFC 5646 section 2.1: language, extlang, script, region, variants,
# extensions, private use; a private-use tag; the irregular grandfathered ones), any case
_BCP47 = (r"^(?:(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
          r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
          r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?|[Xx](?:-[A-Za-z0-9]{1,8})+|[Ee][Nn]-GB-oed"
          r"|[Ii]-(?:ami|bnn|default|enochian|hak|klingon|lux|mingo|navajo|pwn|tao|tay|tsu)|sgn-(?:BE-FR|BE-NL|CH-DE))\Z")
_LANG = re.compile(_BCP47)
# Amounts and counts have a ceiling no real order or gift comes near (10^15 of any currency; 10^9
# gifts or items in one event), so that no sum of them can overflow a counter: a total that did
# would fail the scorer's script half-way through a batch, every time it was tried again
MAX_AMOUNT = 1e15
MAX_COUNT = 1_000_000_000
NonNeg = Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]
Count = Annotated[int, Meta(ge=1, le=MAX_COUNT)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}\Z")]
Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=r"^[^@]*@[^@]*$")]  # one @
Phone = Annotated[str, Meta(pattern=r"^\+[0-9]{8,15}\Z")]  # E.164
# spec/tiers.md v1.1: the room of imported customer history. Its events count for the viewer's
# state and the shop clock, but it is never a show: no room facts, no attendance, no task
HISTORY_ROOM = "history"
CHANNELS: tuple[str, ...] = ("dm", "email", "whatsapp", "sms")  # the channels a consent may name


class Viewer(msgspec.Struct, frozen=True, omit_defaults=True):
    # optional fields may be absent, never null: null is not a string
    id: Id
    name: Name | UnsetType = UNSET
    country: Country | UnsetType = UNSET
    # a BCP 47 tag and an IANA time zone: checked after decoding (``_also_bad``), to say so in plain words
    lang: str | UnsetType = UNSET
    tz: str | UnsetType = UNSET


class _Base(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", kw_only=True):
    id: Id
    room: Id
    ts: Ts
    viewer: Viewer
    shop: Id = "default"
    v: Literal[1] = 1


# msgspec passes frozen on to subclasses, type checkers do not: each one says it again
class Join(_Base, tag="join", frozen=True):
    pass


class Leave(_Base, tag="leave", frozen=True):
    pass


class Comment(_Base, tag="comment", frozen=True):
    text: Annotated[str, Meta(max_length=2000)] = ""


class Like(_Base, tag="like", frozen=True):
    count: Annotated[int, Meta(ge=1, le=10000)] = 1


class Share(_Base, tag="share", frozen=True):
    pass


class Follow(_Base, tag="follow", frozen=True):
    pass


class Gift(_Base, tag="gift", frozen=True):
    gift: str
    value: NonNeg
    count: Count = 1


class ProductView(_Base, tag="product_view", frozen=True):
    sku: str


class CartAdd(_Base, tag="cart_add", frozen=True):
    sku: str
    qty: Count = 1


class Order(_Base, tag="order", frozen=True):
    order_id: str
    amount: NonNeg
    currency: Currency


class Consent(_Base, tag="consent", frozen=True):
    # v1: dm (required, spec/events.md); v1.1 adds an optional flag per channel. A source that knows
    # no DM answer (an import, a shop order's marketing flags) does not make a consent event
    dm: bool
    email: bool | UnsetType = UNSET
    whatsapp: bool | UnsetType = UNSET
    sms: bool | UnsetType = UNSET


class Contact(_Base, tag="contact", frozen=True):
    """v1.1: the viewer's address on a channel (personal data); at least one of the two."""

    email: Email | UnsetType = UNSET
    phone: Phone | UnsetType = UNSET


Event = Union[  # noqa: UP007 (msgspec needs a runtime Union for its tagged decoder)
    Join, Leave, Comment, Like, Share, Follow, Gift, ProductView, CartAdd, Order, Consent, Contact
]
EVENT_TYPES: tuple[str, ...] = (
    "join", "leave", "comment", "like", "share", "follow", "gift",
    "product_view", "cart_add", "order", "consent", "contact",
)


class BadInput(msgspec.Struct, frozen=True):
    """One rejected event (or a whole frame that could not be read)."""

    reason: str
    raw: bytes  # cut at RAW_LIMIT


_event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_frame_decoder: msgspec.json.Decoder[list[Event]] = msgspec.json.Decoder(list[Event])
_msgpack_decoder = msgspec.msgpack.Decoder(list[Event])
_json_encoder = msgspec.json.Encoder()


def _cut(raw: bytes | memoryview) -> bytes:
    return bytes(raw[:RAW_LIMIT])


def _first_char(data: bytes) -> int:
    for b in data:
        if b not in b" \t\r\n":
            return b
    return 0


def _also_bad(ev: Event) -> str:
    """Why an event the schema took is bad input all the same ("" if it is not): a v1.1 event that
    names nothing, a time zone that is no IANA zone."""
    if type(ev) is Contact and ev.email is UNSET and ev.phone is UNSET:
        return "a contact event needs an email or a phone - at `$`"
    vw = ev.viewer
    if vw.lang is not UNSET and not is_language_tag(vw.lang):
        return f"{vw.lang[:64]!r} is not a BCP 47 language tag (en, es-MX, zh-Hant-TW) - at `$.viewer.lang`"
    if vw.tz is not UNSET and not is_time_zone(vw.tz):
        return f"{vw.tz[:64]!r} is not an IANA time zone (America/New_York) - at `$.viewer.tz`"
    return ""


_TAGS: dict[str, bool] = {}  # tags seen, and whether each is well formed: a feed repeats a few


def is_language_tag(tag: str) -> bool:
    """Is ``tag`` a well-formed BCP 47 language tag (spec/events.md ``viewer.lang``)?"""
    if len(tag) > 64:
        return False  # (not kept: a hostile feed's megabyte tags would stay in the cache)
    ok = _TAGS.get(tag)
    if ok is None:
        ok = _LANG.match(tag) is not None
        if len(_TAGS) < 10_000:
            _TAGS[tag] = ok
    return ok


@functools.cache
def _zones() -> frozenset[str]:
    names = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    return frozenset(n for n in names if n != "Factory")


def is_time_zone(name: str) -> bool:
    """Is ``name`` a zone of the IANA database: the ``tzdata`` package's list (its zones and links),
    the same on every host (``zoneinfo.available_timezones`` adds the host's files, ``localtime``
    among them: the server's own zone)?"""
    return name in _zones()


def consent_flags(ev: Consent) -> dict[str, bool]:
    """The channels a consent event names, with its flag for each."""
    return {c: f for c in CHANNELS if (f := getattr(ev, c)) is not UNSET}


def parse_event(raw: bytes, now_ms: int, future_skew_ms: int) -> Event | BadInput:
    """Validate one event object's JSON text."""
    if not raw.strip():
        return BadInput("bad JSON: an empty element (a stray comma in the array?)", b"")
    try:
        ev = _event_decoder.decode(raw)
    except msgspec.ValidationError as e:
        return BadInput(str(e), _cut(raw))
    except msgspec.DecodeError as e:
        return BadInput(f"bad JSON: {e}", _cut(raw))
    except (RecursionError, UnicodeDecodeError) as e:
        return BadInput(_unreadable(e), _cut(raw))
    why = _also_bad(ev)
    if why:
        return BadInput(why, _cut(raw))
    if ev.ts > now_ms + future_skew_ms:
        return BadInput(
            f"ts {ev.ts} is more than {future_skew_ms // 3_600_000} h ahead of the consumer's clock",
            _cut(raw),
        )
    return ev


def _unreadable(e: RecursionError | UnicodeDecodeError) -> str:
    # msgspec raises these two outside its own error types
    if isinstance(e, RecursionError):
        return "bad JSON: nested too deeply (arrays or objects inside each other past the decoder's depth limit)"
    return f"bad JSON: not valid UTF-8 ({e.reason} at byte {e.start})"


# a JSON string (closed or running to the end), a run of opening or of closing brackets, a comma
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[{]+|[\]}]+|,', re.DOTALL)


def split_array(data: bytes) -> list[bytes]:
    """The top-level elements of a JSON array that is not valid JSON as a whole, as slices of ``data``.

    So that one broken element (a ``NaN``, a truncated object) does not spoil the good ones
    beside it.  The cut is made at the commas outside strings and brackets; what follows the
    array's closing bracket, if anything, is one more piece; an array cut short ends with the
    piece it was cut in.  Each piece is then read as an event on its own.
    """
    start = data.index(b"[") + 1
    pieces: list[bytes] = []
    depth = 0
    for m in _TOKEN.finditer(data, start):
        c, n = data[m.start()], m.end() - m.start()
        if c in b"[{":
            depth += n
        elif c in b"]}" and depth >= n:
            depth -= n
        elif c in b"]}":  # the array's own closing bracket is in this run
            end = m.start() + depth
            last, rest = data[start:end].strip(), data[end + 1:].strip()
            if pieces or last:  # not an empty array
                pieces.append(last)
            if rest:
                pieces.append(rest)
            return pieces
        elif c == ord(",") and depth == 0:
            pieces.append(data[start:m.start()].strip())
            start = m.end()
    pieces.append(data[start:].strip())
    return pieces


def parse_frame(
    data: bytes | str, now_ms: int, future_skew_ms: int = 24 * 3600 * 1000
) -> list[Event | BadInput]:
    """One text frame -> its events in order, a ``BadInput`` in place of each bad one.

    A frame that is not JSON, or JSON that is neither an object nor an array,
    counts as one bad event; an array that is not valid JSON as a whole is cut
    into its elements (``split_array``) and each is read on its own.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    first = _first_char(data)
    if first == ord("["):
        good = _all_good(data, now_ms + future_skew_ms)
        if good is not None:
            return good  # type: ignore[return-value]
        try:
            items: list[bytes] = [bytes(item) for item in _batch_decoder.decode(data)]
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
            items = split_array(data)
        return [parse_event(item, now_ms, future_skew_ms) for item in items]
    if first == ord("{"):
        return [parse_event(data, now_ms, future_skew_ms)]
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        return [BadInput(f"bad JSON: {e}", _cut(data))]
    except (RecursionError, UnicodeDecodeError) as e:
        return [BadInput(_unreadable(e), _cut(data))]
    return [BadInput("a frame must hold an event object or an array of them", _cut(data))]


def _all_good(data: bytes, latest_ts: int) -> list[Event] | None:
    """A frame's events when every one of them is good (the common case, read in one call); None
    if any is not, for ``parse_frame`` to read them one by one and say which and why."""
    try:
        evs = _frame_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):  # ValidationError is a DecodeError
        return None
    for ev in evs:
        if ev.ts > latest_ts or _also_bad(ev):
            return None
    return evs


def unpack_events(data: bytes) -> list[Event]:
    """A stream entry's events (a msgpack array of them, as ``realtime.writer`` packs them)."""
    return _msgpack_decoder.decode(data)


def to_json(obj: object) -> bytes:
    return _json_encoder.encode(obj)


def event_type(ev: Event) -> str:
    return ev.__struct_config__.tag  # type: ignore[return-value]  # every event struct has a str tag
