"""WhatsApp Cloud API's webhook, the pure part: the dashboard's verification, the signature, and
which messages of a ``messages`` webhook are opt-outs (``realtime.inbound`` serves them).

As Meta documents it (developers.facebook.com/documentation/business-messaging/whatsapp/webhooks):
- verification: ``GET /webhooks/whatsapp?hub.mode=subscribe&hub.challenge=N&hub.verify_token=T``,
  answered with the challenge as the body when T is the token typed in the app dashboard;
- notifications: ``POST`` of ``{"object": "whatsapp_business_account", "entry": [{"changes":
  [{"field": "messages", "value": {"messages": [...], "statuses": [...]}}]}]}``, signed with
  ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under the app secret>``.

An opt-out is a text message whose body is one of the SMS opt-out words
(``fanops.channels.unsubscribe.is_stop``: STOP, UNSUBSCRIBE, STOPALL, CANCEL, END, QUIT ...), or a
reply button whose *payload* is one of them or "Stop promotions" (Meta's marketing opt-out quick
reply): a template's quick reply (``type: button``, ``button.payload``) or an interactive reply
(``interactive.button_reply.id`` / ``list_reply.id``). A button's visible title is not read: a shop's
"Cancel" button under an appointment is no opt-out; its payload says what it means.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fanops.channels.unsubscribe import is_stop

WHATSAPP = "/webhooks/whatsapp"
# the quick reply of Meta's marketing-messages opt-out ("Stop promotions"), letters only, upper case
BUTTON_OPT_OUTS = frozenset({"STOPPROMOTIONS"})
EVENT_ID_PREFIX = "unsub:whatsapp:"
ID_MAX = 128  # fanops.schema.Id


@dataclass(frozen=True)
class OptOut:
    message_id: str  # the wamid: a resent webhook carries the same one
    number: str  # the sender, E.164 with its '+'


@dataclass
class Webhook:
    """What one notification holds: the opt-outs, and how many other messages and statuses."""

    opt_outs: list[OptOut] = field(default_factory=list)
    inbound: list[tuple[str, int]] = field(default_factory=list)  # (sender E.164, sent at ms) of each message
    messages: int = 0
    statuses: int = 0
    skipped: list[str] = field(default_factory=list)  # why an item could not be read


def verify(query: str, token: str) -> tuple[int, bytes]:
    """The answer to the dashboard's verification GET: 200 with ``hub.challenge`` when ``hub.mode``
    is subscribe and ``hub.verify_token`` is ``token`` (never with no token set); else 403."""
    q = dict(parse_qsl(query, keep_blank_values=True))
    given = q.get("hub.verify_token", "")
    if (token and q.get("hub.mode") == "subscribe" and "hub.challenge" in q
            and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())):
        return 200, q["hub.challenge"].encode("utf-8", "replace")
    return 403, b"verification refused: wrong hub.mode or hub.verify_token"


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``sha256=`` and the hex HMAC-SHA256 of ``body`` under the app secret.
    False with no secret set: nothing unsigned is ever taken."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want.encode(), header[7:].strip().lower().encode("ascii", "replace"))


def event_id(message_id: str) -> str:
    """The consent event's id for the opt-out message ``message_id``: the same for a resend, so the
    ingest writer counts the second one a duplicate. A wamid too long for an event id is hashed."""
    out = EVENT_ID_PREFIX + message_id
    if len(out) > ID_MAX:
        out = EVENT_ID_PREFIX + hashlib.sha256(message_id.encode()).hexdigest()
    return out


def _letters(s: Any) -> str:
    return re.sub(r"[^A-Za-z]", "", s).upper() if isinstance(s, str) else ""


def is_opt_out(msg: dict[str, Any]) -> bool:
    """Whether one entry of ``value.messages`` asks to stop (see the module's docstring)."""
    kind = msg.get("type")
    if kind == "text":
        text = msg.get("text")
        return isinstance(text, dict) and isinstance(text.get("body"), str) and is_stop(text["body"])
    payloads: list[Any] = []
    if kind == "button" and isinstance(msg.get("button"), dict):
        payloads.append(msg["button"].get("payload"))
    if kind == "interactive" and isinstance(msg.get("interactive"), dict):
        inter = msg["interactive"]
        for k in ("button_reply", "list_reply"):
            if isinstance(inter.get(k), dict):
                payloads.append(inter[k].get("id"))
    return any(isinstance(p, str) and (is_stop(p) or _letters(p) in BUTTON_OPT_OUTS) for p in payloads)


def _dicts(x: Any) -> list[dict[str, Any]]:
    return [d for d in x if isinstance(d, dict)] if isinstance(x, list) else []


def _read_message(msg: dict[str, Any], out: Webhook) -> None:
    out.messages += 1
    sender, wamid, ts = msg.get("from"), msg.get("id"), msg.get("timestamp")
    if isinstance(sender, str) and sender.isdigit() and isinstance(ts, str | int) and str(ts).isdigit():
        out.inbound.append(("+" + sender, int(ts) * 1000))  # the Cloud API's timestamp: unix seconds
    if not is_opt_out(msg):
        return
    if not (isinstance(sender, str) and sender.isdigit() and isinstance(wamid, str) and wamid):
        out.skipped.append("an opt-out message without a sender number or a message id")
        return
    out.opt_outs.append(OptOut(wamid, "+" + sender))


def read_webhook(body: bytes) -> Webhook | str:
    """The opt-outs and counts of a notification's body; a str: why it is no notification (not
    JSON, or not an object with an ``entry`` list). Items of an unexpected shape inside are
    skipped with a reason, the rest read."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return f"the body is not JSON ({e})"
    if not isinstance(doc, dict) or not isinstance(doc.get("entry"), list):
        return "the body is not a WhatsApp notification: a JSON object with an \"entry\" list"
    out = Webhook()
    for entry in _dicts(doc["entry"]):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if not isinstance(value, dict):
                out.skipped.append(f"a change of field {str(change.get('field'))[:40]!r} without a value")
                continue
            for msg in _dicts(value.get("messages")):
                _read_message(msg, out)
            out.statuses += len(_dicts(value.get("statuses")))
    return out
