"""Sending a follow-up task on a channel (spec/cli.md v1.1 ``tasks send``, spec/events.md v1.1 consent):
email to an SMTP server on loopback (aiosmtpd), WhatsApp to a local server answering as the Cloud API,
refusals without consent or address, a provider's refusal leaving the task claimed, an unsubscribe link
becoming a consent event, and the command line."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from fanops import keys, queue, read
from fanops.channels import compose, send_task
from fanops.channels.unsubscribe import BadUnsubscribe, consent_event, is_stop, unsubscribe_link
from fanops.config import Config
from fanops.errors import ChannelRefused, ProviderError, ProviderRateLimited
from fanops.state import task_fields
from tests.pipeline import drain, ingest_frames
from tests.scoring.test_channels_http import WA_400, WA_OK, WAMID, provider  # noqa: F401 (a fixture)

SHOP = "default"
NOW_MS = int(time.time() * 1000)
T0 = NOW_MS - 10 * 60_000
S = 1000
EVIL = "<script>alert(1)</script> & Bo"


def ev(i: int, vid: str, dt: int, typ: str, viewer: dict | None = None, **kw: object) -> dict:
    return {"id": f"e{i}", "room": "r1", "ts": T0 + dt, "type": typ, "viewer": {"id": vid, **(viewer or {})}, **kw}


# v1 Ana: email, phone, consent on every channel; v2: a hostile name, email consent; v3 Cy: an email
# address and a dm answer, no email consent. Each stays 4-5 minutes without buying: a task each.
STORY = [
    ev(1, "v1", 0, "join", {"name": "Ana", "country": "MX", "lang": "es-MX"}),
    ev(2, "v1", 5 * S, "contact", email="ana@example.com", phone="+5215512345678"),
    ev(3, "v1", 6 * S, "consent", dm=True, email=True, whatsapp=True, sms=True),
    ev(4, "v1", 60 * S, "comment", text="¿tienen talla M?"), ev(5, "v1", 240 * S, "like", count=3),
    ev(6, "v2", 0, "join", {"name": EVIL, "country": "DE", "lang": "de"}),
    ev(7, "v2", 5 * S, "contact", email="bo@example.com"), ev(8, "v2", 6 * S, "consent", dm=True, email=True),
    ev(9, "v2", 300 * S, "like"),
    ev(10, "v3", 0, "join", {"name": "Cy", "country": "GB", "lang": "en"}),
    ev(11, "v3", 5 * S, "contact", email="cy@example.com"), ev(12, "v3", 6 * S, "consent", dm=True),
    ev(13, "v3", 300 * S, "like"),
]


def tid(viewer: str) -> str:
    return queue.task_id("r1", viewer)


def task(r, viewer: str) -> dict[str, str]:
    return task_fields(r.hget(keys.tasks(SHOP, "r1"), viewer))


class Mailbox:
    """What the loopback SMTP server received, and what it answers (scripted per test)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], EmailMessage]] = []
        self.rcpt_answer = "250 OK"
        self.data_answer = "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's)
        if self.rcpt_answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_answer

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.data_answer.startswith("250"):
            msg = message_from_bytes(envelope.original_content, policy=policy.default)
            self.got.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return self.data_answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    c = Controller(box, hostname="127.0.0.1", port=port)
    c.start()
    try:
        yield box, port
    finally:
        c.stop()


def story_cfg(cfg: Config, smtp_port: int = 1, api: str = "http://127.0.0.1:1") -> Config:
    return dataclasses.replace(
        cfg, smtp_url=f"smtp://127.0.0.1:{smtp_port}", smtp_from="Tienda Luz <hola@luz.example>",
        unsubscribe_url="https://luz.example/unsubscribe", unsubscribe_secret="s3cret", send_timeout_s=5,
        whatsapp_token="TOKEN", whatsapp_phone_id="1055", whatsapp_api=api)


@pytest.fixture
def story(cfg, r) -> Config:
    ingest_frames(cfg, [json.dumps(STORY)])
    drain(r, cfg)
    assert {task(r, v)["state"] for v in ("v1", "v2", "v3")} == {"pending"}
    return cfg


def test_an_email_goes_out_with_its_headers_and_both_parts_and_the_task_records_it(story, r, mailbox):
    box, port = mailbox
    cfg = story_cfg(story, port)
    sent = send_task(r, cfg, SHOP, tid("v1"), "Mei", "email")
    assert len(box.got) == 1
    mail_from, rcpt, msg = box.got[0]
    assert (mail_from, rcpt) == ("hola@luz.example", ["ana@example.com"])
    assert msg["From"] == "Tienda Luz <hola@luz.example>" and msg["To"] == "ana@example.com"
    assert msg["Subject"] == "¡Hola Ana!"
    assert msg["Message-ID"] == sent.message_id and msg["Message-ID"].endswith("@luz.example>")
    links = [x.strip(" <>") for x in msg["List-Unsubscribe"].split(",")]
    assert links[0].startswith("mailto:hola@luz.example?subject=unsubscribe%20")
    assert links[1].startswith("https://luz.example/unsubscribe?t=")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Ana" in plain and "Gracias" in plain and "Ana" in html and links[1] in html.replace("&amp;", "&")
    assert sent.to_json() == {"id": tid("v1"), "channel": "email", "message_id": msg["Message-ID"]}
    h = task(r, "v1")
    assert (h["state"], h["sent_by"], h["channel"], h["message_id"]) == ("sent", "Mei", "email", sent.message_id)
    assert abs(int(h["sent_at"]) - time.time() * 1000) < 60_000  # wall time, recorded at the send


def test_the_viewers_name_is_escaped_in_the_html_part(story, r, mailbox):
    box, port = mailbox
    send_task(r, story_cfg(story, port), SHOP, tid("v2"), "Mei", "email")
    html = box.got[0][2].get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Bo" in html
    assert "<script>alert(1)</script> & Bo" in box.got[0][2].get_body(("plain",)).get_content()


def test_no_consent_or_no_address_or_no_provider_is_refused_and_nothing_is_claimed(story, r):
    cfg = story_cfg(story)
    cases = [("v3", "email", "the viewer has not agreed to email messages"),
             ("v2", "sms", "the viewer has not agreed to sms messages"),
             ("v1", "sms", "sms is not set up: set FANOPS_TWILIO_SID, FANOPS_TWILIO_TOKEN, FANOPS_TWILIO_FROM")]
    for viewer, channel, why in cases:
        with pytest.raises(ChannelRefused) as e:
            send_task(r, cfg, SHOP, tid(viewer), "Mei", channel)
        assert e.value.reason == why
        assert task(r, viewer)["state"] == "pending" and "holder" not in task(r, viewer)


@pytest.mark.parametrize(("reach", "channel", "why"), [
    ({"email": "a@b.c", "phone": None, "consent": {"email": True}}, "email", ""),
    ({"email": None, "phone": None, "consent": {"email": True}}, "email", "no email address is known for the viewer"),
    ({"email": "a@b.c", "phone": None, "consent": {"email": False}}, "email", "the viewer refused email messages"),
    ({"email": None, "phone": "+441234567890", "consent": {"sms": True}}, "sms", ""),
    ({"email": None, "phone": None, "consent": {"whatsapp": True}}, "whatsapp",
     "no phone number is known for the viewer"),
    ({"email": None, "phone": None, "consent": {"dm": None}}, "dm", ""),
    ({"email": None, "phone": None, "consent": {"dm": False}}, "dm", "the viewer refused direct messages"),
    (None, "dm", ""), (None, "email", "the viewer has not agreed to email messages"),
    (None, "fax", "unknown channel 'fax': one of dm, email, whatsapp, sms"),
])
def test_who_may_be_sent_to(reach, channel, why):
    assert compose.refusal(reach, channel) == why


def test_a_mail_server_that_refuses_leaves_the_task_claimed_with_its_reason(story, r, mailbox):
    box, port = mailbox
    cfg = story_cfg(story, port)
    box.data_answer = "451 4.7.1 Too many messages, slow down"
    with pytest.raises(ProviderRateLimited) as e:
        send_task(r, cfg, SHOP, tid("v1"), "Mei", "email")
    assert "Too many messages, slow down" in str(e.value) and e.value.retry_after_s == 60
    assert (task(r, "v1")["state"], task(r, "v1")["holder"]) == ("claimed", "Mei")
    box.data_answer, box.rcpt_answer = "250 OK", "550 5.1.1 <ana@example.com>: mailbox unavailable"
    with pytest.raises(ProviderError) as e:
        send_task(r, cfg, SHOP, tid("v1"), "Mei", "email")
    assert not isinstance(e.value, ProviderRateLimited)
    assert "mailbox unavailable (status 550)" in str(e.value) and task(r, "v1")["state"] == "claimed"
    box.rcpt_answer = "250 OK"  # the operator tries again: it goes, once
    send_task(r, cfg, SHOP, tid("v1"), "Mei", "email")
    assert len(box.got) == 1 and task(r, "v1")["state"] == "sent"


def test_no_mail_server_listening_is_a_clear_failure(story, r):
    with pytest.raises(ProviderError, match=r"cannot reach the mail server 127\.0\.0\.1:\d+"):
        send_task(r, story_cfg(story, free_port()), SHOP, tid("v1"), "Mei", "email")
    assert task(r, "v1")["state"] == "claimed"


def test_the_unsubscribe_link_becomes_a_consent_event_that_keeps_the_dm_answer(story, r, mailbox):
    box, port = mailbox
    cfg = story_cfg(story, port)
    send_task(r, cfg, SHOP, tid("v1"), "Mei", "email")
    link = box.got[0][2]["List-Unsubscribe"].split(",")[1].strip(" <>")
    token = link.split("?t=", 1)[1]
    with pytest.raises(BadUnsubscribe):
        unsubscribe_link(r, cfg, token[:-2] + "xx")
    from urllib.parse import unquote

    ev = unsubscribe_link(r, cfg, unquote(token))
    assert (ev.viewer.id, ev.dm, ev.email, ev.room) == ("v1", True, False, "history")
    drain(r, cfg)
    consent = read.viewer_reach(r, SHOP, ["v1"])["v1"]["consent"]
    assert consent == {"dm": True, "email": False, "whatsapp": True, "sms": True}
    assert compose.refusal(read.viewer_reach(r, SHOP, ["v1"])["v1"], "email") == "the viewer refused email messages"


def test_an_unsubscribe_carries_the_dm_answer_it_finds():
    assert consent_event("s", "v", "sms", False, 5).dm is False  # a refusal of DMs stays one
    assert consent_event("s", "v", "sms", None, 5).dm is True  # unknown was "not refused": still so
    assert consent_event("s", "v", "dm", True, 5).dm is False
    assert [is_stop(x) for x in ("STOP", " stop ", "Unsubscribe.", "stop it", "")] == [True, True, True, False, False]


def test_whatsapp_through_send_task_records_the_wamid_or_leaves_the_task_claimed(story, r, provider):  # noqa: F811
    cfg = story_cfg(story, api=provider.url)
    provider.answers.append((400, WA_400, {}))
    with pytest.raises(ProviderError, match="not a valid WhatsApp phone number"):
        send_task(r, cfg, SHOP, tid("v1"), "Mei", "whatsapp")
    assert task(r, "v1")["state"] == "claimed"
    provider.answers.append((200, WA_OK, {}))
    assert send_task(r, cfg, SHOP, tid("v1"), "Mei", "whatsapp").message_id == WAMID
    # Ana's last event is minutes old: inside the 24-hour window, a session message
    body = json.loads(provider.got[-1]["body"])
    assert (body["type"], body["to"]) == ("text", "+5215512345678") and "Ana" in body["text"]["body"]
    assert (task(r, "v1")["channel"], task(r, "v1")["message_id"]) == ("whatsapp", WAMID)


def test_with_the_inbound_webhook_set_up_only_a_whatsapp_message_of_the_viewer_opens_the_session_window(
        story, r, provider):  # noqa: F811
    """WhatsApp opens its 24-hour window when the customer writes to the business, not when they comment
    in a live room: once the inbound webhook tells us who wrote (FANOPS_WHATSAPP_APP_SECRET), a viewer
    who never wrote gets the template at once (no refused session message first)."""
    cfg = dataclasses.replace(story_cfg(story, api=provider.url), whatsapp_app_secret="app-secret")
    provider.answers.append((200, WA_OK, {}))
    send_task(r, cfg, SHOP, tid("v1"), "Mei", "whatsapp")  # Ana's last event is minutes old, but she never wrote
    assert [json.loads(g["body"])["type"] for g in provider.got] == ["template"]

    r.zadd(keys.wa_inbound(SHOP), {"v2": NOW_MS - 3_600_000})  # as the webhook notes it: Bo wrote an hour ago
    ingest_frames(cfg, [json.dumps([ev(20, "v2", 7 * S, "contact", phone="+4915112345678"),
                                    ev(21, "v2", 8 * S, "consent", dm=True, email=True, whatsapp=True)])])
    drain(r, cfg)
    provider.answers.append((200, WA_OK, {}))
    send_task(r, cfg, SHOP, tid("v2"), "Mei", "whatsapp")
    assert [json.loads(g["body"])["type"] for g in provider.got] == ["template", "text"]


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scoring", "tasks", "send", "--shop", SHOP, "--operator", "Mei",
                           "--redis", redis_url, *args], capture_output=True, text=True, timeout=60)


def test_the_command_refuses_without_consent_and_records_a_dm_sent_by_hand(story, r, redis_url):
    p = cli(redis_url, "--id", tid("v3"), "--channel", "email")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "error: cannot send on email: the viewer has not agreed to email messages"]
    assert task(r, "v3")["state"] == "pending"
    p = cli(redis_url, "--id", tid("v3"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"id": tid("v3"), "channel": "dm", "message_id": None}
    assert (task(r, "v3")["state"], task(r, "v3")["sent_by"], task(r, "v3")["channel"]) == ("sent", "Mei", "dm")
    p = cli(redis_url, "--id", "not-a-task")
    assert p.returncode == 1 and "is not a task id" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_a_provider_that_refuses_is_one_line_on_stderr_and_the_task_stays_claimed(story, r, redis_url,
                                                                                    provider, monkeypatch):  # noqa: F811
    """spec/cli.md: refused in one line. The HTTP client's own log of the request (INFO) is not a second one."""
    for name, value in {"FANOPS_WHATSAPP_TOKEN": "TOKEN", "FANOPS_WHATSAPP_PHONE_ID": "1055",
                        "FANOPS_WHATSAPP_API": provider.url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FANOPS_LOG", raising=False)
    provider.answers.append((400, WA_400, {}))
    p = cli(redis_url, "--id", tid("v1"), "--channel", "whatsapp")
    assert p.returncode == 1 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a valid WhatsApp phone number" in lines[0], lines
    assert len(provider.got) == 1 and task(r, "v1")["state"] == "claimed"


def test_retry_after_in_seconds_or_as_a_date_and_the_service_window():
    assert compose.retry_after_s("120", 0) == 120
    assert compose.retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", 1445412450.0) == 30
    assert compose.retry_after_s("soon", 0) == compose.retry_after_s(None, 0) == 60
    day = 24 * 3600 * 1000
    assert [compose.in_service_window(t, day) for t in (1, 0, -1)] == [True, False, False]


def test_an_unsubscribe_token_names_what_it_was_made_for_and_nothing_else():
    t = compose.make_token("k", "shop", "v:1", "email")
    assert compose.read_token("k", t) == ("shop", "v:1", "email")
    assert compose.read_token("other", t) is None and compose.read_token("k", t + "x") is None
    assert compose.make_token("", "shop", "v", "email") == "" and compose.read_token("", t) is None
