"""What fans send back, on the orders server (``realtime.inbound``): the unsubscribe link's page and
Twilio's inbound SMS webhook, on a real HTTP server on loopback, into a real Redis, applied by the
real scorer."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest

from fanops import read
from fanops.channels.compose import make_token
from fanops.config import Config
from realtime.inbound import twilio_signature_ok
from tests.pipeline import drain, ingest_frames
from tests.realtime.test_orders import Running, running

SECRET, TOKEN = "unsub-secret-1", "twilio-auth-token-1"
HOOK = "https://shop.example/webhooks/twilio/sms"
PHONE, EMAIL = "+14155550123", "ana@example.com"
TS = 1_763_856_090_000


@pytest.fixture
def inbound(cfg: Config) -> Iterator[Running]:
    yield from running(dataclasses.replace(cfg, unsubscribe_secret=SECRET, twilio_token=TOKEN,
                                           twilio_webhook_url=HOOK))


@pytest.fixture
def fan(r, cfg) -> str:
    """A viewer who gave an email and a phone and said yes to DMs, email and SMS."""
    v = {"id": "u-5", "name": "<b>Ana</b>"}
    ingest_frames(cfg, [json.dumps([
        {"id": "c1", "room": "r-1", "ts": TS, "type": "contact", "email": EMAIL, "phone": PHONE, "viewer": v},
        {"id": "k1", "room": "r-1", "ts": TS + 1, "type": "consent", "dm": True, "email": True, "sms": True,
         "viewer": v}])])
    drain(r, cfg)
    return "u-5"


def request(srv: Running, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read().decode()
    finally:
        conn.close()


def consent(r, viewer: str) -> dict[str, bool | None]:
    return read.viewer_reach(r, "default", [viewer])[viewer]["consent"]


def test_twilios_documented_signature_example_checks():
    """Twilio's own example (its security docs): token 12345, the URL and the five fields."""
    form = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"), ("Digits", "1234"),
            ("From", "+14158675310"), ("To", "+18005551212")]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature_ok("12345", url, form, "GvWf1cFY/Q7PnoempGyD5oXAezc=")
    assert not twilio_signature_ok("12345", url, form[:-1], "GvWf1cFY/Q7PnoempGyD5oXAezc=")
    assert not twilio_signature_ok("", url, form, "GvWf1cFY/Q7PnoempGyD5oXAezc=")  # no token set: nothing taken


def test_the_unsubscribe_link_asks_first_then_turns_email_off_and_keeps_the_rest(inbound, fan, r, cfg):
    path = "/unsubscribe?t=" + quote(make_token(SECRET, "default", fan, "email"))
    status, kind, text = request(inbound, "GET", path)
    assert status == 200 and kind.startswith("text/html") and 'method="post"' in text
    drain(r, cfg)
    assert consent(r, fan)["email"] is True  # a mail scanner's GET unsubscribes nobody

    status, _kind, text = request(inbound, "POST", path, b"List-Unsubscribe=One-Click",
                                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and "You are unsubscribed" in text
    drain(r, cfg)
    assert consent(r, fan) == {"dm": True, "email": False, "sms": True, "whatsapp": None}
    assert not read.can_send(read.viewer_reach(r, "default", [fan])[fan], "email")


@pytest.mark.parametrize("token", ["", "garbage", make_token("another-secret", "default", "u-5", "email")])
def test_an_unsubscribe_link_we_did_not_sign_is_refused_and_writes_nothing(inbound, fan, r, cfg, token):
    before = read.status(r, "default")
    for method in ("GET", "POST"):
        status, kind, text = request(inbound, method, "/unsubscribe?t=" + quote(token))
        assert status == 400 and kind.startswith("text/html") and "does not work" in text
    drain(r, cfg)
    after = read.status(r, "default")  # no event written: applied, repeats and dead letters as they were
    assert consent(r, fan)["email"] is True
    assert [after[k] for k in ("events_applied", "duplicates", "lag")] == [
        before[k] for k in ("events_applied", "duplicates", "lag")]


def sms(srv: Running, body: str, sender: str = PHONE, token: str = TOKEN) -> tuple[int, str, str]:
    form = [("MessageSid", "SM0123456789abcdef0123456789abcdef"), ("AccountSid", "AC0123"), ("From", sender),
            ("To", "+18005551212"), ("Body", body), ("NumMedia", "0")]
    sig = base64.b64encode(hmac.new(token.encode(), (HOOK + "".join(k + v for k, v in sorted(form))).encode(),
                                    hashlib.sha1).digest()).decode()
    return request(srv, "POST", "/webhooks/twilio/sms", urlencode(form).encode(),
                   {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig})


def test_a_stop_reply_by_sms_turns_sms_off_for_the_viewer_of_that_number(inbound, fan, r, cfg):
    status, kind, text = sms(inbound, "thanks, see you next live!")  # no opt-out: nothing changes
    assert status == 200 and kind.startswith("text/xml") and "<Response></Response>" in text
    drain(r, cfg)
    assert consent(r, fan)["sms"] is True

    status, _kind, _text = sms(inbound, " Stop ")
    assert status == 200
    drain(r, cfg)
    assert consent(r, fan) == {"dm": True, "email": True, "sms": False, "whatsapp": None}


def test_an_sms_webhook_with_a_bad_signature_is_refused_and_writes_nothing(inbound, fan, r, cfg, caplog):
    status, _kind, _text = sms(inbound, "STOP", token="not-the-token")
    assert status == 401
    drain(r, cfg)
    assert consent(r, fan)["sms"] is True
    assert any("bad or missing signature" in m for m in caplog.messages)


def test_a_stop_from_a_number_no_viewer_named_is_answered_and_recorded_nowhere(inbound, fan, r, cfg, caplog):
    status, _kind, _text = sms(inbound, "STOP", sender="+14155559999")
    assert status == 200
    drain(r, cfg)
    assert consent(r, fan)["sms"] is True
    assert any("no one viewer named" in m for m in caplog.messages)
