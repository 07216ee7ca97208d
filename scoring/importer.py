"""Customer history rows -> events (spec/tiers.md v1.1, spec/cli.md "Generic import CSV"). Pure.

A row of ``orders`` N > 0 becomes N ``order`` events in the room ``history`` with event ids and
order ids ``hist:<viewer_id>:1..N``, amounts splitting ``spend`` (in cents; the last takes the
rest), the first at ``first_order_at`` and the others at ``last_order_at``. The events go through
the feed's own validation (``fanops.schema.parse_frame``) before anything is written. What the
row says beyond orders (name, country, language, time zone, email, phone, channel consents) is
an ``Imported`` record, kept for the viewer whether or not they have appeared yet: a row with 0
orders makes no event. A bad row is skipped with its reason; the others are imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from fanops.imported import Imported
from fanops.schema import HISTORY_ROOM, BadInput, Event, is_language_tag, is_time_zone, parse_frame
from fanops.state import Mark

COLUMNS = ("viewer_id", "name", "email", "phone", "country", "lang", "tz", "orders", "spend", "currency",
           "first_order_at", "last_order_at", "accepts_email", "accepts_sms", "accepts_whatsapp")
CONSENT_COLUMNS = (("accepts_email", "email"), ("accepts_sms", "sms"), ("accepts_whatsapp", "whatsapp"))
MAX_ORDERS = 100_000  # more in one row is a typo, not a customer

_EMAIL = re.compile(r"^[^@]{1,253}@[^@]{1,253}$")
_PHONE = re.compile(r"^\+[0-9]{8,15}$")
_PHONE_PUNCT = str.maketrans("", "", " -().")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_OFFSET_SPACE = re.compile(r"\s+([+-]\d{2}):?(\d{2})$")  # "2024-01-05 10:11:12 -0500" (Shopify)
_json = msgspec.json.Encoder()


class RowError(ValueError):
    """A row's fault: its message is the reason the summary gives."""


@dataclass
class Row:
    """One valid row: its events and what it says beyond orders."""

    no: int  # the data row's number, from 1 after the header
    viewer_id: str
    events: list[Event]
    imported: Imported


@dataclass
class Parsed:
    rows: int = 0
    good: list[Row] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    dead: list[BadInput] = field(default_factory=list)  # events the feed's validation rejected


def parse_time(text: str, column: str) -> int:
    """ISO 8601 -> ms since the epoch; UTC where no offset is given."""
    s = text.strip()
    if " +" in s or " -" in s:
        s = _OFFSET_SPACE.sub(r"\1:\2", s)
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        raise RowError(f"{column}: bad date {text[:40]!r} (ISO 8601 wanted, e.g. 2025-03-01T10:00:00Z)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    ms = int(d.timestamp() * 1000)
    if ms < 0:
        raise RowError(f"{column}: date {text[:40]!r} is before 1970")
    return ms


def _bool(text: str, column: str) -> bool | None:
    t = text.strip().lower()
    if t in ("", "unknown"):
        return None
    if t in ("true", "yes", "1"):
        return True
    if t in ("false", "no", "0"):
        return False
    raise RowError(f"{column}: {text[:20]!r} is not true or false")


def _count(text: str) -> int:
    t = text.strip()
    if not t:
        return 0
    try:
        n = int(t)
    except ValueError:
        raise RowError(f"orders: {t[:20]!r} is not a whole number") from None
    if n < 0:
        raise RowError(f"orders: negative count ({n})")
    if n > MAX_ORDERS:
        raise RowError(f"orders: {n} is more than {MAX_ORDERS}")
    return n


def _money(text: str) -> int:
    """Spend in cents."""
    t = text.strip().replace(",", "")
    if not t:
        return 0
    try:
        x = float(t)
    except ValueError:
        raise RowError(f"spend: {t[:20]!r} is not a number") from None
    if not x >= 0 or x == float("inf"):
        raise RowError(f"spend: negative or not finite ({t[:20]})")
    return round(x * 100)


def _profile(f: dict[str, str]) -> dict[str, str]:
    """The viewer object's optional fields from the row (the schema checks them again)."""
    out: dict[str, str] = {}
    name = f.get("name", "")
    if name:
        out["name"] = name
    country = f.get("country", "").strip().upper()
    if country:
        if not _COUNTRY.match(country):
            raise RowError(f"country: {country[:10]!r} is not an ISO 3166-1 alpha-2 code")
        out["country"] = country
    for k, ok, what in (("lang", is_language_tag, "a BCP 47 language tag"), ("tz", is_time_zone, "an IANA time zone")):
        v = f.get(k, "").strip()
        if v:
            if not ok(v):
                raise RowError(f"{k}: {v[:40]!r} is not {what}")
            out[k] = v
    return out


def _reach(f: dict[str, str], ts: int, mid: str) -> list[Mark]:
    marks: list[Mark] = []
    for col, channel in CONSENT_COLUMNS:
        flag = _bool(f.get(col, ""), col)
        if flag is not None:
            marks.append(Mark("c:" + channel, ts, mid, flag))
    email = f.get("email", "").strip()
    if email:
        if not (3 <= len(email) <= 254 and _EMAIL.match(email)):
            raise RowError(f"email: {email[:60]!r} is not an address (3-254 characters with one @)")
        marks.append(Mark("email", ts, mid, email))
    phone = f.get("phone", "").strip().translate(_PHONE_PUNCT)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if phone:
        if not _PHONE.match(phone):
            raise RowError(f"phone: {f.get('phone', '')[:30]!r} is not E.164 (+ and 8-15 digits)")
        marks.append(Mark("phone", ts, mid, phone))
    return marks  # in the order of their names (CONSENT_COLUMNS first)


def row_events(f: dict[str, str], shop: str) -> tuple[list[dict[str, Any]], Imported]:
    """A row's fields -> its order events (as events.md objects) and its ``Imported`` record;
    ``RowError`` with the reason for a bad row."""
    vid = f.get("viewer_id", "").strip()
    if not vid:
        raise RowError("viewer_id: empty")
    if len(vid) > 128:
        raise RowError("viewer_id: longer than 128 characters")
    n, cents = _count(f.get("orders", "")), _money(f.get("spend", ""))
    profile = _profile(f)
    events: list[dict[str, Any]] = []
    ts_last = -1
    if n:
        if not f.get("first_order_at", "").strip():
            raise RowError(f"first_order_at: empty (needed with orders; {f.get('why_no_dates', 'give the date')})")
        currency = f.get("currency", "").strip().upper()
        if not _CURRENCY.match(currency):
            raise RowError(f"currency: {currency[:10]!r} is not an ISO 4217 code (needed with orders)")
        first = parse_time(f["first_order_at"], "first_order_at")
        last_text = f.get("last_order_at", "").strip()
        ts_last = parse_time(last_text, "last_order_at") if last_text and n > 1 else first
        if ts_last < first:
            raise RowError("last_order_at: before first_order_at")
        viewer = {"id": vid, **profile}
        each, rest = divmod(cents, n)
        for i in range(1, n + 1):
            oid = f"hist:{vid}:{i}"
            events.append({"id": oid, "room": HISTORY_ROOM, "shop": shop, "ts": first if i == 1 else ts_last,
                           "type": "order", "viewer": viewer, "order_id": oid,
                           "amount": (each + (rest if i == n else 0)) / 100, "currency": currency})
    imported = Imported(ts_last, f"hist:{vid}", profile.get("name"), profile.get("country"),
                        profile.get("lang"), profile.get("tz"), _reach(f, ts_last, f"hist:{vid}"))
    return events, imported


def parse_rows(rows: list[tuple[int, dict[str, str]]], shop: str, now_ms: int, seen: dict[str, int]) -> Parsed:
    """Rows (number, fields) -> valid rows with their validated events, and the skipped ones with
    their reasons. ``seen``: viewer id -> the row that first named it (kept across calls): a
    repeated viewer id keeps its first row. The rows' events are checked as one frame (the
    feed's ``parse_frame``): a row with an event it rejects is skipped."""
    out = Parsed(rows=len(rows))
    ok: list[tuple[int, str, int, Imported]] = []  # (row, viewer, its events' count, imported)
    events: list[dict[str, Any]] = []
    for no, f in rows:
        vid = f.get("viewer_id", "").strip()
        if vid in seen:
            out.skipped.append({"row": no, "reason": f"duplicate viewer_id {vid[:60]!r} (first at row {seen[vid]})"})
            continue
        if vid:
            seen[vid] = no
        try:
            evs, imported = row_events(f, shop)
        except RowError as e:
            out.skipped.append({"row": no, "reason": str(e)})
            continue
        ok.append((no, vid, len(evs), imported))
        events += evs
    checked = parse_frame(_json.encode(events), now_ms) if events else []
    bad_at = [i for i, x in enumerate(checked) if type(x) is BadInput]  # rare: one pass, then by index
    at = 0
    for no, vid, n, imported in ok:
        mine = checked[at:at + n]
        if bad_at and bad_at[0] < at + n:
            bad = [x for x in mine if isinstance(x, BadInput)]
            bad_at = [i for i in bad_at if i >= at + n]
            out.skipped.append({"row": no, "reason": f"event rejected: {bad[0].reason}"})
            out.dead += bad
        else:
            out.good.append(Row(no, vid, mine, imported))  # type: ignore[arg-type]  # no BadInput in it
        at += n
    out.skipped.sort(key=lambda x: x["row"])
    return out
