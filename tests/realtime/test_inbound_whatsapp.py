"""WhatsApp Cloud API's webhook on the orders server (``realtime.inbound``, ``realtime.inbound_whatsapp``):
the dashboard's verification and the opt-outs, on a real HTTP server on loopback, into a real
Redis, applied by the real scorer. The bodies are the payload examples of Meta's documentation."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from fanops import keys, read
from fanops.config import Config
from fanops.runtime import server
from realtime.inbound_whatsapp import event_id, is_opt_out, read_webhook, signature_ok, verify
from tests.conftest import wait_for
from tests.pipeline import drain, ingest_frames
from tests.realtime.test_inbound import consent, request
from tests.realtime.test_orders import Running, running

APP_SECRET, VERIFY = "meta-app-secret-1", "meatyhamhock"
PHONE = "+16505551234"  # the sender of Meta's example, with its '+'
TS = 1_763_856_090_000
PATH = "/webhooks/whatsapp"

# Meta's example of a text message webhook, verbatim:
# https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
TEXT_EXAMPLE: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [{
        "id": "102290129340398",
        "changes": [{
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                "messages": [{
                    "from": "16505551234",
                    "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                    "timestamp": "1749416383",
                    "type": "text",
                    "text": {"body": "Does it come in another color?"},
                }],
            },
            "field": "messages",
        }],
    }],
}

# A status webhook in the syntax of Meta's status reference, its placeholders given the example's
# values (a "delivered" status of a message the shop sent that number):
# https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status
STATUS_EXAMPLE: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [{
        "id": "102290129340398",
        "changes": [{
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "statuses": [{
                    "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA",
                    "status": "delivered",
                    "timestamp": "1750263773",
                    "recipient_id": "16505551234",
                    "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"},
                }],
            },
            "field": "messages",
        }],
    }],
}


def with_message(msg: dict[str, Any]) -> dict[str, Any]:
    """Meta's text example carrying ``msg`` in place of its message."""
    out = copy.deepcopy(TEXT_EXAMPLE)
    out["entry"][0]["changes"][0]["value"]["messages"] = [msg]
    return out


def text(body: str, wamid: str, sender: str = "16505551234") -> dict[str, Any]:
    msg = copy.deepcopy(TEXT_EXAMPLE["entry"][0]["changes"][0]["value"]["messages"][0])
    msg.update({"from": sender, "id": wamid, "text": {"body": body}})
    return with_message(msg)


STOP = text("STOP", "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUVCMDFGRjhBRDQ2RkM0NUJBMAA=")


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(srv: Running, payload: dict[str, Any] | bytes, signature: str | None = "good") -> tuple[int, str]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = sign(body) if signature == "good" else signature
    status, _kind, out = request(srv, "POST", PATH, body, headers)
    return status, out


def configured(cfg: Config) -> Config:
    return dataclasses.replace(cfg, whatsapp_app_secret=APP_SECRET, whatsapp_verify_token=VERIFY)


@pytest.fixture
def hook(cfg: Config) -> Iterator[Running]:
    yield from running(configured(cfg))


def add_fan(r: redis.Redis, cfg: Config, viewer: str = "u-7", phone: str = PHONE) -> str:
    """A viewer who gave that phone and said yes to DMs, WhatsApp and SMS."""
    v = {"id": viewer, "name": "Sheena"}
    ingest_frames(cfg, [json.dumps([
        {"id": f"c-{viewer}", "room": "r-1", "ts": TS, "type": "contact", "phone": phone, "viewer": v},
        {"id": f"k-{viewer}", "room": "r-1", "ts": TS + 1, "type": "consent", "dm": True, "whatsapp": True,
         "sms": True, "viewer": v}])])
    drain(r, cfg)
    return viewer


@pytest.fixture
def fan(r, cfg) -> str:
    return add_fan(r, cfg)


def counts(r: redis.Redis) -> tuple[int, int, int]:
    st = read.status(r, "default")
    return st["events_applied"], st["duplicates"], st["dead_letters"]


# --- verification (the app dashboard's "Verify and save") ---

def test_the_dashboards_verification_gets_its_challenge_back_with_the_right_token_only(hook):
    good = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY}
    status, kind, out = request(hook, "GET", f"{PATH}?{urlencode(good)}")
    assert (status, out) == (200, "1158201444") and kind.startswith("text/plain")
    for bad in ({**good, "hub.verify_token": "not-it"}, {**good, "hub.mode": "unsubscribe"},
                {k: v for k, v in good.items() if k != "hub.verify_token"}):
        status, _kind, out = request(hook, "GET", f"{PATH}?{urlencode(bad)}")
        assert status == 403 and "1158201444" not in out


def test_no_verify_token_set_refuses_every_verification():
    query = urlencode({"hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": ""})
    assert verify(query, "")[0] == 403
    assert verify(query.replace("token=", "token=x"), "x") == (200, b"42")


# --- opt-outs ---

def test_metas_text_example_changes_nothing_and_a_stop_turns_whatsapp_off(hook, fan, r, cfg):
    status, out = post(hook, TEXT_EXAMPLE)
    assert status == 200 and json.loads(out)["opt_outs"] == 0
    drain(r, cfg)
    assert consent(r, fan)["whatsapp"] is True

    status, out = post(hook, STOP)
    assert status == 200 and json.loads(out)["opt_outs"] == 1
    drain(r, cfg)
    assert consent(r, fan) == {"dm": True, "email": None, "whatsapp": False, "sms": True}
    assert not read.can_send(read.viewer_reach(r, "default", [fan])[fan], "whatsapp")


def test_a_message_notes_when_its_viewer_last_wrote_which_opens_the_service_window(hook, fan, r, cfg):
    """Any message of a known number (not only an opt-out) says when the viewer last wrote: the send
    path's 24-hour service window (fanops.channels.send.last_inbound). An older one never moves it back."""
    sent_at = 1749416383 * 1000  # Meta's example's timestamp
    assert post(hook, TEXT_EXAMPLE)[0] == 200
    assert r.zscore(keys.wa_inbound("default"), fan) == sent_at
    older = text("and in blue?", "wamid.older", sender="16505551234")
    older["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(sent_at // 1000 - 60)
    assert post(hook, older)[0] == 200
    assert r.zscore(keys.wa_inbound("default"), fan) == sent_at
    assert post(hook, text("hi", "wamid.stranger", sender="4915112345678"))[0] == 200
    assert r.zcard(keys.wa_inbound("default")) == 1  # a number no viewer named: nothing noted
    from fanops.channels.send import last_inbound
    assert last_inbound(r, configured(cfg), "default", fan) == sent_at
    assert last_inbound(r, configured(cfg), "default", "u-who-never-wrote") == -1


def test_a_resent_stop_is_counted_once(hook, fan, r, cfg):
    applied, dups, _dead = counts(r)
    for _ in range(3):  # Meta sends a notification again when it thinks the answer was lost
        assert post(hook, STOP)[0] == 200
    drain(r, cfg)
    assert counts(r)[:2] == (applied + 1, dups + 2)
    assert consent(r, fan)["whatsapp"] is False


def test_a_status_notification_is_acknowledged_and_writes_nothing(hook, fan, r, cfg):
    before = counts(r)
    status, out = post(hook, STATUS_EXAMPLE)
    assert status == 200 and json.loads(out) == {"opt_outs": 0, "messages": 0, "statuses": 1}
    drain(r, cfg)
    assert counts(r) == before and consent(r, fan)["whatsapp"] is True


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "wrong-secret", "tampered"])
def test_a_bad_or_missing_signature_is_refused_logged_and_writes_nothing(hook, fan, r, cfg, caplog, signature):
    caplog.set_level(logging.WARNING, logger="realtime")
    body = json.dumps(STOP).encode()
    if signature == "wrong-secret":
        signature = sign(body, "another-app-secret")
    elif signature == "tampered":  # signed, then one character changed
        signature, body = sign(body), body.replace(b"STOP", b"SToP")
    before = counts(r)
    status, _out = post(hook, body, signature)
    assert status == 401
    drain(r, cfg)
    assert counts(r) == before and consent(r, fan)["whatsapp"] is True
    assert any("WhatsApp webhook" in m and "bad or missing signature" in m for m in caplog.messages)


def test_a_stop_from_a_number_no_viewer_or_two_viewers_named_is_answered_and_recorded_nowhere(hook, fan, r, cfg,
                                                                                               caplog):
    caplog.set_level(logging.WARNING, logger="realtime")
    add_fan(r, cfg, "u-8", "+4915112345678")
    add_fan(r, cfg, "u-9", "+4915112345678")  # the same phone: no certain match
    before = counts(r)
    for sender in ("16505559999", "4915112345678"):
        status, out = post(hook, text("stop", f"wamid.from-{sender}", sender))
        assert status == 200 and json.loads(out)["opt_outs"] == 0
    drain(r, cfg)
    assert counts(r) == before
    assert [consent(r, v)["whatsapp"] for v in (fan, "u-8", "u-9")] == [True, True, True]
    said = [m for m in caplog.messages if "opt-out by WhatsApp" in m and "no one viewer named" in m]
    assert len(said) == 2 and "unknown" in said[0] and "several viewers" in said[1]


def test_the_opt_out_quick_reply_of_a_template_turns_whatsapp_off(hook, fan, r, cfg):
    # the shape of Meta's quick-reply button webhook (messages reference, "button" type): the
    # payload of the template's button, which is its text unless the send gave another
    button = {"context": {"from": "15550783881", "id": "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1QjJGRjI1RDY0RkE4Nzg4QzcA"},
              "from": "16505551234", "id": "wamid.HBgLMTY0NjcwNDM1OTUVAgASGBQzQUE0RkY3QkUxMjBGRjU4ODkyNwA=",
              "timestamp": "1749854575", "type": "button",
              "button": {"payload": "Stop promotions", "text": "Stop promotions"}}
    assert post(hook, with_message(button))[0] == 200
    drain(r, cfg)
    assert consent(r, fan)["whatsapp"] is False


def test_a_body_that_is_no_json_is_refused_with_its_reason_and_dead_lettered(hook, fan, r, cfg):
    before = counts(r)
    status, out = post(hook, b"entry=1&object=whatsapp_business_account")
    assert status == 400 and "not JSON" in json.loads(out)["error"]
    status, out = post(hook, b"[1, 2]")
    assert status == 400 and '"entry" list' in json.loads(out)["error"]
    drain(r, cfg)
    assert counts(r) == (before[0], before[1], before[2] + 2)


def test_a_stop_while_redis_is_away_is_503_then_recorded_when_meta_sends_it_again(cfg, tmp_path, caplog):
    own = tmp_path / "own-redis"  # a server of this test alone, stopped mid-way
    port = server.free_port()
    cfg = dataclasses.replace(cfg, redis_url=server.ensure_running(own, port=port).url)
    sync = redis.Redis.from_url(cfg.redis_url)
    caplog.set_level(logging.WARNING, logger="realtime")
    gen = running(configured(cfg))
    srv = next(gen)
    try:
        fan = add_fan(sync, cfg)
        server.stop(own)
        status, out = post(srv, STOP)
        assert status == 503 and "retry" in out
        assert any("Redis unavailable" in m for m in caplog.messages)
        server.ensure_running(own, port)
        wait_for(lambda: post(srv, STOP)[0] == 200, 20, "the resend to be taken once Redis is back")
        drain(sync, cfg)
        assert consent(sync, fan)["whatsapp"] is False
    finally:
        next(gen, None)
        sync.close()
        server.stop(own)


# --- the pure part ---

@pytest.mark.parametrize(("msg", "stop"), [
    ({"type": "text", "text": {"body": "STOP"}}, True),
    ({"type": "text", "text": {"body": " unsubscribe. "}}, True),
    ({"type": "text", "text": {"body": "Quit"}}, True),
    ({"type": "text", "text": {"body": "please stop sending me the red one"}}, False),
    ({"type": "button", "button": {"payload": "Stop promotions", "text": "Stop promotions"}}, True),
    ({"type": "button", "button": {"payload": "STOP", "text": "No more messages"}}, True),
    ({"type": "button", "button": {"payload": "yes-interested", "text": "Stop"}}, False),  # the payload decides
    ({"type": "interactive", "interactive": {"type": "button_reply",
                                             "button_reply": {"id": "unsubscribe", "title": "No thanks"}}}, True),
    ({"type": "interactive", "interactive": {"type": "button_reply",
                                             "button_reply": {"id": "reschedule-2", "title": "Cancel"}}}, False),
    ({"type": "interactive", "interactive": {"type": "list_reply",
                                             "list_reply": {"id": "STOPALL", "title": "Nothing more"}}}, True),
    ({"type": "image", "image": {"id": "1", "caption": "STOP"}}, False),
    ({"type": "text", "text": "STOP"}, False),  # not Meta's shape: read as no opt-out
])
def test_what_is_an_opt_out(msg, stop):
    assert is_opt_out(msg) is stop


def test_a_notification_is_read_as_opt_outs_and_counts():
    got = read_webhook(json.dumps(STOP).encode())
    assert not isinstance(got, str)
    assert [(o.message_id, o.number) for o in got.opt_outs] == [(STOP["entry"][0]["changes"][0]["value"]
                                                                  ["messages"][0]["id"], PHONE)]
    odd = {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": None}]},
                                                             "junk", {"changes": [STOP["entry"][0]["changes"][0]]}]}
    got = read_webhook(json.dumps(odd).encode())
    assert not isinstance(got, str) and len(got.opt_outs) == 1 and len(got.skipped) == 1
    assert isinstance(read_webhook(b"\xff\xfe"), str) and isinstance(read_webhook(b"{"), str)


def test_the_event_id_is_the_message_ids_and_fits_an_event_id():
    assert event_id("wamid.ABC=") == "unsub:whatsapp:wamid.ABC="
    long = event_id("wamid." + "A" * 200)
    assert len(long) <= 128 and long == event_id("wamid." + "A" * 200) != event_id("wamid." + "A" * 199)


def test_metas_signature_is_checked_over_the_raw_body():
    body = json.dumps(TEXT_EXAMPLE).encode()
    assert signature_ok(APP_SECRET, body, sign(body))
    assert signature_ok(APP_SECRET, body, sign(body).upper().replace("SHA256=", "sha256="))  # hex in capitals
    assert not signature_ok(APP_SECRET, body + b" ", sign(body))
    assert not signature_ok(APP_SECRET, body, sign(body)[7:])  # without its "sha256="
    assert not signature_ok("", body, sign(body, ""))  # no secret set: nothing taken
