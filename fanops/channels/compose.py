"""What goes out, as pure functions: who may be sent to, the email, the WhatsApp and Twilio payloads,
the 24-hour service window, a provider's Retry-After, and the signed unsubscribe token.

No I/O here: the senders (``smtp``, ``http``) put these on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

SEND_CHANNELS: tuple[str, ...] = ("dm", "email", "whatsapp", "sms")
SERVICE_WINDOW_MS = 24 * 3600 * 1000  # WhatsApp's customer service window
DEFAULT_RETRY_S = 60.0  # when a provider asks to wait and says not how long
SUBJECT_CHARS = 78

# WhatsApp template language codes for the template languages (fanops.templates.LANGUAGES)
_WA_LANG = {"pt": "pt_BR", "zh": "zh_CN"}


def refusal(reach: dict[str, Any] | None, channel: str) -> str:
    """Why ``channel`` may not carry a message to a viewer with this ``fanops.read.viewer_reach``
    entry (spec/events.md v1.1), or "" when it may: email, WhatsApp and SMS need consent True and an
    address, dm consent not False."""
    if channel not in SEND_CHANNELS:
        return f"unknown channel {channel!r}: one of {', '.join(SEND_CHANNELS)}"
    consent = (reach or {}).get("consent", {}).get(channel)
    if channel == "dm":
        return "the viewer refused direct messages" if consent is False else ""
    if consent is False:
        return f"the viewer refused {channel} messages"
    if consent is not True:
        return f"the viewer has not agreed to {channel} messages"
    address = (reach or {}).get("email" if channel == "email" else "phone")
    if not address:
        return "no email address is known for the viewer" if channel == "email" else \
            "no phone number is known for the viewer"
    return ""


def subject(message: str) -> str:
    """The email's subject: the message's first sentence, cut to ``SUBJECT_CHARS``."""
    first = re.split(r"(?<=[.!?。！？])\s*", message.strip(), maxsplit=1)[0] or message.strip()
    first = " ".join(first.split())
    return first if len(first) <= SUBJECT_CHARS else first[:SUBJECT_CHARS - 1] + "\u2026"


def unsubscribe_links(mailto: str, url: str, token: str) -> list[str]:
    """The List-Unsubscribe links: a mailto (always) and an https page given ``?t=token`` (when set)."""
    links = [f"mailto:{parseaddr(mailto)[1]}?subject={quote('unsubscribe ' + token if token else 'unsubscribe')}"]
    if url and token:
        links.append(f"{url}{'&' if '?' in url else '?'}t={quote(token)}")
    return links


def html_body(message: str, links: list[str]) -> str:
    """The HTML part: the message with every character of it escaped (it holds the viewer's name),
    and the unsubscribe link."""
    paras = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in message.split("\n\n"))
    web = next((x for x in links if x.startswith("https://") or x.startswith("http://")), links[0])
    return (f'<!doctype html><html><body>{paras}<p style="font-size:small;color:#666">'
            f'<a href="{html.escape(web, quote=True)}">Unsubscribe</a></p></body></html>')


def email_message(message: str, sender: str, to: str, links: list[str]) -> EmailMessage:
    """The email: From, To, Subject, a Message-ID on the sender's domain, List-Unsubscribe (and
    List-Unsubscribe-Post for a one-click https link), a plain-text and an HTML part."""
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject(message)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    m["Message-ID"] = make_msgid(domain=domain)
    m["List-Unsubscribe"] = ", ".join(f"<{x}>" for x in links)
    if any(x.startswith("https://") for x in links):
        m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    footer = "\n\n--\nUnsubscribe: " + links[-1]
    m.set_content(message + footer)
    m.add_alternative(html_body(message, links), subtype="html")
    return m


def in_service_window(last_inbound_ms: int, now_ms: int) -> bool:
    """Whether a WhatsApp session (free-form) message may go out: the viewer wrote within 24 hours."""
    return last_inbound_ms >= 0 and 0 <= now_ms - last_inbound_ms < SERVICE_WINDOW_MS


def wa_lang(lang: str | None) -> str:
    """The WhatsApp template language code for a viewer's language tag (English when unknown)."""
    base = (lang or "en").replace("_", "-").split("-")[0].lower() or "en"
    return _WA_LANG.get(base, base)


def whatsapp_payload(to: str, message: str, name: str, lang: str | None, template: str,
                     session: bool) -> dict[str, Any]:
    """The Cloud API's /messages body: a text (session) message, or the approved ``template`` with the
    viewer's name as its one body parameter."""
    base: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if session:
        return {**base, "type": "text", "text": {"preview_url": False, "body": message}}
    params = [{"type": "text", "text": name or "-"}]
    return {**base, "type": "template",
            "template": {"name": template, "language": {"code": wa_lang(lang)},
                         "components": [{"type": "body", "parameters": params}]}}


def retry_after_s(value: str | None, now_s: float, default: float = DEFAULT_RETRY_S) -> float:
    """A Retry-After header (seconds, or an HTTP date) as seconds from ``now_s``; ``default`` if absent
    or unreadable."""
    if not value:
        return default
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        return max(0.0, parsedate_to_datetime(v).timestamp() - now_s)
    except (TypeError, ValueError, IndexError):
        return default


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _sig(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16])


def make_token(secret: str, shop: str, viewer: str, channel: str) -> str:
    """A signed token naming the viewer and channel to unsubscribe ("" without a secret)."""
    if not secret:
        return ""
    payload = _b64(json.dumps([shop, viewer, channel], ensure_ascii=False).encode())
    return f"{payload}.{_sig(secret, payload)}"


def read_token(secret: str, token: str) -> tuple[str, str, str] | None:
    """(shop, viewer, channel) of a token this secret signed; None for any other string."""
    payload, _, sig = token.strip().partition(".")
    if not secret or not payload or not hmac.compare_digest(sig, _sig(secret, payload)):
        return None
    try:
        got = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if (not isinstance(got, list) or len(got) != 3 or not all(isinstance(x, str) for x in got)
            or got[2] not in SEND_CHANNELS):
        return None
    return got[0], got[1], got[2]
