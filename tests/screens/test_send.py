"""The queue screen's send buttons (AppTest, real Redis, an SMTP server on loopback): claim, send by email,
see "sent" with the provider's message id on the card; a channel the fan cannot be reached on is
disabled with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fanops import keys
from fanops.state import task_fields
from screens._ui import task_key
from tests.pipeline import drain, ingest_frames
from tests.scoring.test_channels import STORY, mailbox, tid  # noqa: F401 (a fixture)

APP = str(Path(__file__).resolve().parents[2] / "app.py")
SHOP = "default"


@pytest.fixture
def queue_app(redis_url, cfg, r, monkeypatch, mailbox):  # noqa: F811
    _, port = mailbox
    ingest_frames(cfg, [json.dumps(STORY)])
    drain(r, cfg)
    for k, v in {"REDIS_URL": redis_url, "FANOPS_SMTP_URL": f"smtp://127.0.0.1:{port}",
                 "FANOPS_SMTP_FROM": "Tienda Luz <hola@luz.example>"}.items():
        monkeypatch.setenv(k, v)
    for k in ("FANOPS_TWILIO_SID", "FANOPS_WHATSAPP_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["operator"] = "Mei"
    at.run()
    at.switch_page("screens/queue.py").run()
    assert not at.exception, at.exception
    return at


def k(viewer: str) -> str:
    return task_key(tid(viewer))


def card_lines(at: AppTest, viewer: str) -> list[str]:
    return [line for t in at.get_by_key(f"task-{k(viewer)}").text for line in t.value.split("\n")]


def test_claim_send_by_email_and_see_it_sent_with_the_message_id(queue_app, r, mailbox):  # noqa: F811
    at, (box, _) = queue_app, mailbox
    assert not [b for b in at.button if b.key.startswith("send-")]  # nothing to send before a claim
    at.button(key=f"claim-{k('v1')}").click().run()
    at.button(key=f"claim-{k('v3')}").click().run()
    email = at.button(key=f"send-email-{k('v1')}")
    assert not email.disabled
    cy = at.button(key=f"send-email-{k('v3')}")
    assert cy.disabled and cy.help == "Not available: the viewer has not agreed to email messages"
    sms = at.button(key=f"send-sms-{k('v1')}")
    assert sms.disabled and sms.help.startswith("Not available: sms is not set up: set FANOPS_TWILIO_SID")
    email.click().run()
    assert not at.exception, at.exception
    assert len(box.got) == 1 and box.got[0][1] == ["ana@example.com"]
    message_id = box.got[0][2]["Message-ID"]
    assert at.success[0].value == "Sent by email. The provider's message id:"
    assert message_id in [t.value for t in at.main.text]
    h = task_fields(r.hget(keys.tasks(SHOP, "r1"), "v1"))
    assert (h["state"], h["message_id"]) == ("sent", message_id)
    at.segmented_control(key="q_state__en").set_value("sent").run()
    assert f"Sent by Mei · email · message id {message_id}" in card_lines(at, "v1")
    assert any("Sent" in m.value for m in at.get_by_key(f"task-{k('v1')}").markdown)
    # the fan's page lists the message sent, with its channel and the provider's id
    at.query_params["fan"] = "v1"
    at.switch_page("screens/fans.py").run()
    assert not at.exception, at.exception
    sent = at.dataframe[3].value  # shows, tier changes, tasks, messages sent
    assert (list(sent["by"]), list(sent["channel"]), list(sent["message_id"])) == (["Mei"], ["email"], [message_id])


def test_a_refusal_of_the_mail_server_is_shown_and_the_task_stays_claimed(queue_app, r, mailbox):  # noqa: F811
    at, (box, _) = queue_app, mailbox
    box.rcpt_answer = "550 5.1.1 <ana@example.com>: mailbox unavailable"
    at.button(key=f"claim-{k('v1')}").click().run()
    at.button(key=f"send-email-{k('v1')}").click().run()
    assert at.error[0].value == "Not sent by email; the task is still yours. The provider said:"
    assert any("mailbox unavailable (status 550)" in t.value for t in at.main.text)
    h = task_fields(r.hget(keys.tasks(SHOP, "r1"), "v1"))
    assert (h["state"], h["holder"]) == ("claimed", "Mei")
    assert not at.button(key=f"send-email-{k('v1')}").disabled  # try again
