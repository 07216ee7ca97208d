"""The WhatsApp Cloud API and Twilio senders against a local HTTP server that answers with the payloads
of the providers' documentation (success and errors: 401, 429 with Retry-After, 400 invalid number).
There is no network here: this is the closest to the real services these tests can get."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import pytest

from fanops.channels import web
from fanops.errors import ProviderError, ProviderRateLimited

WAMID = "wamid.HBgLMTY1MDUxNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
WA_OK = {"messaging_product": "whatsapp", "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
         "messages": [{"id": WAMID}]}
WA_401 = {"error": {"message": "Error validating access token: Session has expired on Friday, 04-Dec-26.",
                    "type": "OAuthException", "code": 190, "error_subcode": 463,
                    "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"}}
WA_429 = {"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
                    "error_data": {"messaging_product": "whatsapp",
                                   "details": "Cloud API message throughput has been reached."},
                    "fbtrace_id": "AgP2h6Cz9xPG_xqAcl4OLmw"}}
WA_400 = {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100,
                    "error_data": {"messaging_product": "whatsapp",
                                   "details": "Parameter 'to' is not a valid WhatsApp phone number"},
                    "fbtrace_id": "AW2l_v4-6vW0WjN0SJdK8yE"}}
WA_WINDOW = {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047,
                       "error_data": {"messaging_product": "whatsapp",
                                      "details": "Message failed to send because more than 24 hours have passed "
                                                 "since the customer last replied to this number."}}}
SMS_SID = "SM1234567890abcdef1234567890abcdef"
TW_OK = {"account_sid": "AC123", "api_version": "2010-04-01", "body": "hi", "direction": "outbound-api",
         "error_code": None, "error_message": None, "from": "+14155552345", "num_segments": "1", "sid": SMS_SID,
         "status": "queued", "to": "+14155552344", "uri": f"/2010-04-01/Accounts/AC123/Messages/{SMS_SID}.json"}
TW_401 = {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
          "status": 401}
TW_429 = {"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429",
          "status": 429}
TW_400 = {"code": 21211, "message": "Invalid 'To' Phone Number: +1555000", "more_info":
          "https://www.twilio.com/docs/errors/21211", "status": 400}


@dataclass
class Provider:
    """A local server: each request gets the next scripted (status, body, headers) and is recorded."""

    url: str
    answers: list[tuple[int, dict, dict]] = field(default_factory=list)
    got: list[dict] = field(default_factory=list)


def _handler(p: Provider) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            p.got.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, payload, headers = p.answers.pop(0)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    return H


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider("")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(p))
    p.url = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield p
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def wa(client: httpx.Client, p: Provider, session: bool) -> str:
    return web.send_whatsapp(client, p.url + "/v21.0", "1055", "TOKEN", "+16505551234", "¡Hola Ana!", "Ana",
                             "es-MX", "fanops_followup", session)


def test_whatsapp_session_message_inside_the_window(provider, client):
    provider.answers.append((200, WA_OK, {}))
    assert wa(client, provider, session=True) == WAMID
    req = provider.got[0]
    assert req["path"] == "/v21.0/1055/messages" and req["headers"]["Authorization"] == "Bearer TOKEN"
    assert json.loads(req["body"]) == {"messaging_product": "whatsapp", "recipient_type": "individual",
                                       "to": "+16505551234", "type": "text",
                                       "text": {"preview_url": False, "body": "¡Hola Ana!"}}


def test_whatsapp_template_outside_the_window_in_the_viewers_language(provider, client):
    provider.answers.append((200, WA_OK, {}))
    assert wa(client, provider, session=False) == WAMID
    sent = json.loads(provider.got[0]["body"])
    assert sent["type"] == "template"
    assert sent["template"] == {"name": "fanops_followup", "language": {"code": "es"},
                                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}


def test_whatsapp_session_refused_as_outside_the_window_goes_again_as_the_template(provider, client):
    provider.answers += [(400, WA_WINDOW, {}), (200, WA_OK, {})]
    assert wa(client, provider, session=True) == WAMID
    assert [json.loads(g["body"])["type"] for g in provider.got] == ["text", "template"]


@pytest.mark.parametrize(("status", "payload", "headers", "words", "wait"), [
    (401, WA_401, {}, "Error validating access token: Session has expired", None),
    (429, WA_429, {"Retry-After": "30"}, "Cloud API message throughput has been reached", 30.0),
    (400, WA_429, {}, "Rate limit hit", 60.0),  # the code says slow down, no header: a minute
    (400, WA_400, {}, "Parameter 'to' is not a valid WhatsApp phone number", None),
])
def test_whatsapp_errors_carry_the_providers_reason(provider, client, status, payload, headers, words, wait):
    provider.answers.append((status, payload, headers))
    with pytest.raises(ProviderError) as e:
        wa(client, provider, session=False)
    assert words in str(e.value) and e.value.status == status
    assert isinstance(e.value, ProviderRateLimited) == (wait is not None)
    if wait is not None:
        assert e.value.retry_after_s == wait and f"try again in {wait:g} s" in str(e.value)
    assert len(provider.got) == 1  # a refusal is not retried behind the operator's back


def sms(client: httpx.Client, p: Provider, sender: str = "+14155552345") -> str:
    return web.send_sms(client, p.url, "AC123", "secret-token", sender, "+14155552344", "Hi Ana, ¿talla M?")


def test_twilio_sms_posts_the_form_with_basic_auth_and_returns_the_sid(provider, client):
    provider.answers.append((201, TW_OK, {}))
    assert sms(client, provider) == SMS_SID
    req = provider.got[0]
    assert req["path"] == "/2010-04-01/Accounts/AC123/Messages.json"
    assert req["headers"]["Authorization"] == "Basic " + base64.b64encode(b"AC123:secret-token").decode()
    assert parse_qs(req["body"]) == {"To": ["+14155552344"], "From": ["+14155552345"], "Body": ["Hi Ana, ¿talla M?"]}


def test_twilio_from_a_messaging_service(provider, client):
    provider.answers.append((201, TW_OK, {}))
    sms(client, provider, sender="MG0123456789abcdef0123456789abcdef")
    form = parse_qs(provider.got[0]["body"])
    assert form["MessagingServiceSid"] == ["MG0123456789abcdef0123456789abcdef"] and "From" not in form


@pytest.mark.parametrize(("status", "payload", "headers", "words", "wait"), [
    (401, TW_401, {}, "Twilio: Authenticate (code 20003)", None),
    (429, TW_429, {"Retry-After": "5"}, "Twilio: Too Many Requests (code 20429)", 5.0),
    (400, TW_400, {}, "Twilio: Invalid 'To' Phone Number: +1555000 (code 21211)", None),
])
def test_twilio_errors_carry_the_providers_reason(provider, client, status, payload, headers, words, wait):
    provider.answers.append((status, payload, headers))
    with pytest.raises(ProviderError) as e:
        sms(client, provider)
    assert words in str(e.value) and e.value.status == status
    assert isinstance(e.value, ProviderRateLimited) == (wait is not None)
    if wait is not None:
        assert e.value.retry_after_s == wait


def test_a_provider_that_never_answers_fails_after_the_timeout():
    with socket.socket() as s:  # listens, never answers
        s.bind(("127.0.0.1", 0))
        s.listen()
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with httpx.Client(timeout=0.3) as c, pytest.raises(ProviderError) as e:
            web.send_sms(c, url, "AC123", "t", "+14155552345", "+14155552344", "hi")
    assert "no answer from 127.0.0.1 in time" in str(e.value) and e.value.status == 0


def test_a_provider_that_cannot_be_reached():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with httpx.Client(timeout=2) as c, pytest.raises(ProviderError) as e:
        web.send_whatsapp(c, f"http://127.0.0.1:{port}", "1", "t", "+16505551234", "hi", "Ana", "en", "x", True)
    assert "cannot reach 127.0.0.1" in str(e.value)
