"""What fans send back, served beside the order webhooks (``python -m realtime orders``): an
unsubscribe link's page, Twilio's inbound SMS webhook and WhatsApp's. Each opt-out becomes a
``consent`` event (``fanops.channels.unsubscribe.consent_event``) written through the same path as
an order.

- ``GET /unsubscribe?t=TOKEN`` (the ``List-Unsubscribe`` https link, FANOPS_UNSUBSCRIBE_URL): a page
  that asks to confirm, so that a mail scanner following links unsubscribes nobody;
  ``POST /unsubscribe?t=TOKEN`` (that page's button, or a mail client's one-click POST, RFC 8058):
  the consent event, and a page saying it is done. A token this shop did not sign: 400.
- ``POST /webhooks/twilio/sms`` (the number's "A message comes in" webhook): checked against
  ``X-Twilio-Signature`` (HMAC-SHA1 under FANOPS_TWILIO_TOKEN of FANOPS_TWILIO_WEBHOOK_URL and the
  sorted form fields, as Twilio documents it); a reply that is one of Twilio's opt-out words
  (STOP, UNSUBSCRIBE ...) from a number one viewer named in a ``contact`` event: ``sms`` false for
  that viewer. Answered with an empty TwiML response (no reply is sent; Twilio's own opt-out
  answer stands). A bad signature: 401, logged, nothing written.
- ``GET /webhooks/whatsapp`` (the Meta app dashboard's verification: the challenge back, with
  FANOPS_WHATSAPP_VERIFY_TOKEN; else 403) and ``POST /webhooks/whatsapp`` (WhatsApp Cloud API's
  ``messages`` notifications, checked against ``X-Hub-Signature-256`` under
  FANOPS_WHATSAPP_APP_SECRET): an opt-out (``realtime.inbound_whatsapp``) from a number one viewer
  named: ``whatsapp`` false for that viewer, the event's id made of the message's wamid, so that a
  resent notification is a duplicate. Statuses (sent, delivered, read, failed) are acknowledged and
  not kept: nothing here records deliveries. 200 to every signed notification, 401 a bad signature,
  400 a body that is no JSON notification (a dead letter), 503 Redis away (Meta sends it again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import time
from typing import Any, cast
from urllib.parse import parse_qsl

import msgspec
import redis.asyncio as aredis

from fanops import keys, read
from fanops.channels.compose import read_token
from fanops.channels.unsubscribe import consent_event, is_stop
from fanops.config import Config
from fanops.schema import RAW_LIMIT, BadInput
from realtime import inbound_whatsapp as wa
from realtime.inbound_whatsapp import WHATSAPP

log = logging.getLogger(__name__)
UNSUBSCRIBE, TWILIO_SMS = "/unsubscribe", "/webhooks/twilio/sms"
PATHS = (UNSUBSCRIBE, TWILIO_SMS, WHATSAPP)
GET_PATHS = (UNSUBSCRIBE, WHATSAPP)  # the others are POST only
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
CHANNEL_WORDS = {"email": "emails", "sms": "text messages", "whatsapp": "WhatsApp messages", "dm": "messages"}


def twilio_signature_ok(token: str, url: str, form: list[tuple[str, str]], header: str | None) -> bool:
    """Whether ``header`` is Twilio's signature of a POST to ``url`` with ``form``: base64 of the
    HMAC-SHA1, under the account's auth token, of the URL followed by each field's name and value,
    sorted by name. False with no token or URL configured: nothing unsigned is ever taken."""
    if not token or not url or not header:
        return False
    data = url + "".join(k + v for k, v in sorted(form))
    want = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest())
    return hmac.compare_digest(want, header.strip().encode("utf-8", "replace"))


def page(title: str, text: str, form_action: str | None = None) -> bytes:
    """A small HTML page, every string escaped; with a confirm button posting to ``form_action``."""
    button = (f'<form method="post" action="{html.escape(form_action, quote=True)}">'
              '<button type="submit">Unsubscribe</button></form>') if form_action else ""
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            '<meta name="viewport" content="width=device-width"></head><body style="font-family:sans-serif;'
            f'max-width:32em;margin:3em auto"><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{button}'
            '</body></html>').encode()


async def dm_answer(r: aredis.Redis, shop: str, viewer: str) -> bool | None:
    """The viewer's current dm consent (None: unknown), which an unsubscribe event carries on:
    ``fanops.read.reach_from`` of the two records ``fanops.read.viewer_reach`` reads."""
    state = cast("bytes | None", await r.hget(keys.viewers(shop), viewer))
    seed = cast("bytes | None", await r.hget(keys.imported(shop), viewer))
    reach = read.reach_from(state, seed)
    return reach["consent"]["dm"] if reach is not None else None


async def consent_dict(r: aredis.Redis, shop: str, viewer: str, channel: str,
                       event_id: str | None = None) -> dict[str, Any]:
    """The consent event (events.md JSON) of ``viewer``'s refusal of ``channel``, now; with
    ``event_id`` as its id (a provider's message id: a resent webhook is a duplicate)."""
    ev = consent_event(shop, viewer, channel, await dm_answer(r, shop, viewer), int(time.time() * 1000))
    if event_id is not None:
        ev = msgspec.structs.replace(ev, id=event_id)
    return msgspec.to_builtins(ev)  # type: ignore[no-any-return]


def _json(status: int, body: dict[str, Any]) -> tuple[int, bytes, str]:
    return status, json.dumps(body).encode(), "application/json"


class Inbound:
    """The endpoints; ``source`` writes events the way the order webhooks do (its ``submit``: None
    when written, ``submit_bad``: a dead letter)."""

    def __init__(self, r: aredis.Redis, cfg: Config, source: Any) -> None:
        self.r, self.cfg, self.source = r, cfg, source

    async def handle(self, path: str, method: str, query: str, body: bytes, headers: dict[str, str],
                     client: Any) -> tuple[int, bytes, str]:
        """The answer (status, body, content type) to a request on one of ``PATHS``; a Redis error
        is the caller's (503)."""
        if path == UNSUBSCRIBE:
            return await self.unsubscribe(method, query)
        if path == TWILIO_SMS:
            return await self.twilio_sms(body, headers, client)
        if method == "GET":
            return self.whatsapp_verify(query, client)
        return await self.whatsapp(body, headers, client)

    async def phone_owner(self, number: str, what: str, quiet: bool = False) -> str | None:
        """The viewer whose ``contact`` event named the phone ``number`` (E.164), if exactly one did;
        else None, logged unless ``quiet`` (an opt-out from it is recorded nowhere)."""
        field = keys.contact_owner_field("phone", number)
        owner = cast("bytes | None", await self.r.hget(keys.contact_owners(self.cfg.shop), field))
        if owner is None or owner == b"*":
            if not quiet:
                log.warning("an opt-out by %s of %s came from a number no one viewer named (%s): not recorded",
                            what, self.cfg.shop, "several viewers" if owner else "unknown")
            return None
        return owner.decode("utf-8", "surrogateescape")

    async def note_inbound(self, inbound: list[tuple[str, int]]) -> None:
        """Note, for each viewer who wrote on WhatsApp, when they last did (it opens the 24-hour service
        window in which a session message may go: ``fanops.channels.send``); never later than now."""
        latest: dict[str, int] = {}
        for number, at in inbound:
            latest[number] = max(at, latest.get(number, 0))
        now = int(time.time() * 1000)
        for number, at in latest.items():
            viewer = await self.phone_owner(number, "WhatsApp", quiet=True)
            if viewer is not None:
                await self.r.zadd(keys.wa_inbound(self.cfg.shop), {viewer: min(at, now)}, gt=True)

    async def unsubscribe(self, method: str, query: str) -> tuple[int, bytes, str]:
        token = dict(parse_qsl(query)).get("t", "")
        got = read_token(self.cfg.unsubscribe_secret, token)
        if got is None:
            return 400, page("This link does not work", "This unsubscribe link is not one of ours, "
                             "or it has changed. Reply to the message to ask us to stop."), "text/html"
        shop, viewer, channel = got
        what = CHANNEL_WORDS[channel]
        if method == "GET":
            return 200, page(f"Unsubscribe from {shop}", f"Stop receiving {what} from {shop}?",
                             f"{UNSUBSCRIBE}?{query}"), "text/html"
        bad = await self.source.submit([await consent_dict(self.r, shop, viewer, channel)])
        if bad is not None:
            log.warning("an unsubscribe of %s was refused: %s", shop, bad.reason)
            return 500, page("Something went wrong", "Please try again in a minute."), "text/html"
        log.info("a viewer of %s unsubscribed from %s by link", shop, channel)
        return 200, page("You are unsubscribed", f"You will get no more {what} from {shop}."), "text/html"

    async def twilio_sms(self, body: bytes, headers: dict[str, str], client: Any) -> tuple[int, bytes, str]:
        form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        cfg = self.cfg
        if not twilio_signature_ok(cfg.twilio_token, cfg.twilio_webhook_url, form, headers.get("x-twilio-signature")):
            log.warning("Twilio SMS webhook from %s refused: bad or missing signature (%d bytes)",
                        client[0] if client else "?", len(body))
            return 401, b'{"error": "bad or missing signature"}', "application/json"
        fields = dict(form)
        if not is_stop(fields.get("Body", "")):
            return 200, EMPTY_TWIML, "text/xml"  # a reply that is no opt-out: nothing to record
        viewer = await self.phone_owner(fields.get("From", ""), "SMS")
        if viewer is None:
            return 200, EMPTY_TWIML, "text/xml"
        bad = await self.source.submit([await consent_dict(self.r, cfg.shop, viewer, "sms")])
        if bad is not None:
            log.warning("an SMS opt-out of %s was refused: %s", cfg.shop, bad.reason)
            return 500, b'{"error": "not recorded, retry"}', "application/json"
        log.info("a viewer of %s opted out of SMS by a STOP reply", cfg.shop)
        return 200, EMPTY_TWIML, "text/xml"

    def whatsapp_verify(self, query: str, client: Any) -> tuple[int, bytes, str]:
        status, text = wa.verify(query, self.cfg.whatsapp_verify_token)
        if status == 200:
            log.info("the WhatsApp webhook was verified (the Meta app dashboard's subscription)")
        else:
            log.warning("a WhatsApp webhook verification from %s was refused: wrong hub.mode or hub.verify_token%s",
                        client[0] if client else "?", "" if self.cfg.whatsapp_verify_token else
                        " (FANOPS_WHATSAPP_VERIFY_TOKEN is not set)")
        return status, text, "text/plain"

    async def whatsapp(self, body: bytes, headers: dict[str, str], client: Any) -> tuple[int, bytes, str]:
        cfg = self.cfg
        if not wa.signature_ok(cfg.whatsapp_app_secret, body, headers.get("x-hub-signature-256")):
            log.warning("WhatsApp webhook from %s refused: bad or missing signature (%d bytes)",
                        client[0] if client else "?", len(body))
            return _json(401, {"error": "bad or missing signature"})
        got = wa.read_webhook(body)
        if isinstance(got, str):
            log.warning("a signed WhatsApp webhook of %s refused: %s", cfg.shop, got)
            await self.source.submit_bad(BadInput(f"WhatsApp webhook: {got}", body[:RAW_LIMIT]))
            return _json(400, {"error": got})
        for why in got.skipped:
            log.warning("a WhatsApp webhook of %s: skipped %s", cfg.shop, why)
        events = []
        await self.note_inbound(got.inbound)
        for opt in got.opt_outs:
            viewer = await self.phone_owner(opt.number, "WhatsApp")
            if viewer is not None:
                events.append(await consent_dict(self.r, cfg.shop, viewer, "whatsapp", wa.event_id(opt.message_id)))
        if events:
            bad = await self.source.submit(events)
            if bad is not None:
                log.warning("a WhatsApp opt-out of %s was refused: %s", cfg.shop, bad.reason)
                return _json(500, {"error": "not recorded, retry"})
            log.info("%d viewer(s) of %s opted out of WhatsApp", len(events), cfg.shop)
        return _json(200, {"opt_outs": len(events), "messages": got.messages, "statuses": got.statuses})
