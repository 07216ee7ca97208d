"""Order webhooks, the pure part: signatures, and a webhook body -> ``ShopOrder`` or ``BadInput``.

Two forms (spec/cli.md v1.1 "Order webhooks"): the generic JSON object, signed ``X-Signature:
sha256=<hex>``, and Shopify's ``orders/create`` payload, signed ``X-Shopify-Hmac-Sha256: <base64>``;
both HMAC-SHA256 of the raw body, compared in constant time.  A ``ShopOrder`` becomes events.md
events (``order_events``): the ``order``, and a ``contact`` where the order carries an address.
Its marketing flags carry no answer about direct messages, and a ``consent`` event needs one
(``dm`` is required): they are kept as channel marks beside the viewer (``consent_marks``), the way
a customer history import keeps its consents (``keys.imported``).

The event id comes from the order id (``generic:<order_id>``, ``shopify:<id>``): a replayed body
is a repeat of the same event, not a second order.  No I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from fanops.schema import BadInput
from fanops.state import Mark

RAW_LIMIT = 4096
_E164 = re.compile(r"^\+[0-9]{8,15}$")
_PHONE_PUNCT = str.maketrans("", "", " -().\u00a0")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Shopify's marketing consent states (customer.email_marketing_consent.state, sms_...): only these
# two say yes or no; "pending", "invalid", "redacted" and anything new leave the channel unknown
_SHOPIFY_STATES = {"subscribed": True, "unsubscribed": False, "not_subscribed": False}
CHANNEL_FLAGS = (("accepts_email", "email"), ("accepts_sms", "sms"), ("accepts_whatsapp", "whatsapp"))


@dataclass
class ShopOrder:
    """One webhook order, checked; ``viewer``/``room`` None where the order names none."""

    source: str  # "generic" or "shopify"
    event_id: str
    shop: str
    order_id: str
    amount: float
    currency: str
    ts: int
    viewer: str | None = None
    room: str | None = None
    email: str | None = None
    phone: str | None = None
    flags: dict[str, bool] = field(default_factory=dict)  # channel (email, sms, whatsapp) -> consent


def signature_ok(body: bytes, header: str | None, secret: str, form: str) -> bool:
    """Whether ``header`` is the HMAC-SHA256 of ``body`` under ``secret``: ``sha256=<hex>`` (generic)
    or ``<base64>`` (shopify). False with no secret configured: nothing unsigned is ever taken."""
    if not secret or not header:
        return False
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    want = "sha256=" + digest.hex() if form == "generic" else base64.b64encode(digest).decode()
    return hmac.compare_digest(want.encode(), header.strip().encode("utf-8", "replace"))


def _bad(reason: str, body: bytes) -> BadInput:
    return BadInput(reason, body[:RAW_LIMIT])


def _id(value: Any, name: str) -> str | None:
    """An id field: a string (or an integer, as Shopify sends) of 1-128 chars; None if absent or empty."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    s = str(value).strip()
    if len(s) > 128:
        raise ValueError(f"{name}: longer than 128 characters")
    return s or None


def _phone(value: Any, strict: bool) -> str | None:
    if value in (None, ""):
        return None
    p = str(value).translate(_PHONE_PUNCT)
    if p.startswith("00"):
        p = "+" + p[2:]
    if _E164.match(p):
        return p
    if strict:
        raise ValueError(f"phone: {str(value)[:30]!r} is not E.164 (+ and 8-15 digits)")
    return None  # a shop's free-text phone that is no number: the order stands without it


def _email(value: Any) -> str | None:
    if value in (None, ""):
        return None
    e = str(value).strip()
    if not (3 <= len(e) <= 254 and e.count("@") == 1):
        raise ValueError(f"email: {e[:60]!r} is not an address (3-254 characters with one @)")
    return e


def _amount(value: Any) -> float:
    try:
        x = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        raise ValueError(f"amount: {str(value)[:20]!r} is not a number") from None
    if not x >= 0 or x == float("inf"):
        raise ValueError(f"amount: {str(value)[:20]} is negative or not finite")
    return x


def _currency(value: Any) -> str:
    c = str(value or "").strip().upper()
    if not _CURRENCY.match(c):
        raise ValueError(f"currency: {str(value)[:10]!r} is not an ISO 4217 code")
    return c


def _object(body: bytes) -> dict[str, Any]:
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    return doc


def parse_generic(body: bytes, default_shop: str) -> ShopOrder | BadInput:
    """The generic form: ``{"shop", "room", "viewer_id", "order_id", "amount", "currency", "ts"}``
    (optional ``email``, ``phone``, ``accepts_email``, ``accepts_sms``, ``accepts_whatsapp``).
    ``room``/``viewer_id`` may be missing (the order is kept until matched)."""
    try:
        d = _object(body)
        oid = _id(d.get("order_id"), "order_id")
        if oid is None:
            raise ValueError("order_id: missing")
        ts = d.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            raise ValueError("ts: expected milliseconds since the epoch (an integer >= 0)")
        if "amount" not in d:
            raise ValueError("amount: missing")
        flags: dict[str, bool] = {}
        for name, channel in CHANNEL_FLAGS:
            v = d.get(name)
            if v is not None and not isinstance(v, bool):
                raise ValueError(f"{name}: expected true or false")
            if v is not None:
                flags[channel] = v
        return ShopOrder("generic", f"generic:{oid}", _id(d.get("shop"), "shop") or default_shop, oid,
                         _amount(d["amount"]), _currency(d.get("currency")), ts,
                         _id(d.get("viewer_id"), "viewer_id"), _id(d.get("room"), "room"),
                         _email(d.get("email")), _phone(d.get("phone"), strict=True), flags)
    except ValueError as e:
        return _bad(str(e), body)


def _iso_ms(text: Any) -> int:
    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"created_at: {str(text)[:40]!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _attributes(d: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in d.get("note_attributes") or []:
        if isinstance(a, dict) and isinstance(a.get("name"), str) and a.get("value") is not None:
            out.setdefault(a["name"], str(a["value"]))
    return out


def _shopify_flags(d: dict[str, Any]) -> dict[str, bool]:
    cust: dict[str, Any] = d["customer"] if isinstance(d.get("customer"), dict) else {}
    flags: dict[str, bool] = {}
    for channel in ("email", "sms"):
        c = cust.get(f"{channel}_marketing_consent")
        state = c.get("state") if isinstance(c, dict) else None
        if state in _SHOPIFY_STATES:
            flags[channel] = _SHOPIFY_STATES[state]
    if not isinstance(cust.get("email_marketing_consent"), dict) and isinstance(d.get("buyer_accepts_marketing"), bool):
        flags["email"] = d["buyer_accepts_marketing"]  # older payloads: the checkout's email box
    return flags


def parse_shopify(body: bytes, shop: str, viewer_attr: str = "viewer_id",
                  room_attr: str = "room") -> ShopOrder | BadInput:
    """Shopify's ``orders/create`` payload: ``id``, ``created_at``, ``total_price``, ``currency``,
    the buyer's ``email``/``phone`` (or the customer's), the customer's email and SMS marketing
    consent; the viewer and room from ``note_attributes`` named ``viewer_attr`` and ``room_attr``."""
    try:
        d = _object(body)
        oid = _id(d.get("id"), "id")
        if oid is None:
            raise ValueError("id: missing (the order's id)")
        cust: dict[str, Any] = d["customer"] if isinstance(d.get("customer"), dict) else {}
        bill: dict[str, Any] = d["billing_address"] if isinstance(d.get("billing_address"), dict) else {}
        attrs = _attributes(d)
        email = d.get("email") or d.get("contact_email") or cust.get("email")
        phone = d.get("phone") or cust.get("phone") or bill.get("phone")
        return ShopOrder("shopify", f"shopify:{oid}", shop, oid, _amount(d.get("total_price")),
                         _currency(d.get("currency")), _iso_ms(d.get("created_at")),
                         _id(attrs.get(viewer_attr), viewer_attr), _id(attrs.get(room_attr), room_attr),
                         _email(email), _phone(phone, strict=False), _shopify_flags(d))
    except ValueError as e:
        return _bad(str(e), body)


def order_events(o: ShopOrder, viewer: str, room: str) -> list[dict[str, Any]]:
    """The events.md events of an order bought by ``viewer`` in ``room``: the order, and a contact
    where it carries an address (the same ts: the address was given with the order)."""
    base = {"room": room, "shop": o.shop, "ts": o.ts, "viewer": {"id": viewer}}
    out: list[dict[str, Any]] = [{"id": o.event_id, "type": "order", **base, "order_id": o.order_id,
                                  "amount": o.amount, "currency": o.currency}]
    reach = {k: v for k, v in (("email", o.email), ("phone", o.phone)) if v}
    if reach:
        out.append({"id": f"{o.event_id}:contact", "type": "contact", **base, **reach})
    return out


def consent_marks(o: ShopOrder) -> list[Mark]:
    """The order's channel consents as the marks ``fanops.state.reach_of`` reads (latest wins)."""
    return [Mark("c:" + ch, o.ts, f"{o.event_id}:consent", flag) for ch, flag in sorted(o.flags.items())]


def to_record(o: ShopOrder) -> bytes:
    return msgspec.json.encode(o)


def from_record(b: bytes) -> ShopOrder:
    return msgspec.json.decode(b, type=ShopOrder)
