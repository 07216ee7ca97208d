"""Sending a follow-up by email in headless Chromium (issue 16): one app on the test server, an SMTP
server on loopback. Claim, send by email, see "sent" with the provider's message id on the card and
on the fan's page; a fan who has not agreed to email has the button disabled, with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller

from fanops import keys
from fanops.config import Config
from fanops.runtime import server
from fanops.state import task_fields
from screens._ui import task_key
from tests.pipeline import drain, ingest_frames
from tests.scoring.test_channels import STORY, Mailbox, tid
from tests.screens.app_process import app_process
from tests.screens.test_browser import new_context, open_screen, set_operator, settle

ROOT = Path(__file__).resolve().parents[2]
SHOP = "default"


@dataclass
class App:
    url: str
    box: Mailbox
    r: redis.Redis


@pytest.fixture(scope="module")
def app(redis_server: server.ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    d = tmp_path_factory.mktemp("send-browser")
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = Config.from_env({}, redis_url=redis_server.url, data_dir=d / "data", flush_ms=5)
    ingest_frames(cfg, [json.dumps(STORY)])
    drain(r, cfg)
    box, smtp_port = Mailbox(), server.free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        with app_process(redis_server.url, d / "data", d / "app.log", FANOPS_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
                         FANOPS_SMTP_FROM="Tienda Luz <hola@luz.example>") as url:
            yield App(url, box, r)
    finally:
        smtp.stop()
        r.close()


def claim(page: Any, viewer: str) -> str:
    k = task_key(tid(viewer))
    settle(page)
    page.locator(f".st-key-claim-{k} button").click()
    page.get_by_text("Claimed: it is yours for 5 minutes.").first.wait_for(timeout=15_000)
    settle(page)
    # (a disabled button with a reason is drawn twice by Streamlit, under its tooltip and not)
    page.locator(f".st-key-send-email-{k} button").first.wait_for(timeout=15_000)
    return k


def test_claim_send_by_email_see_the_message_id_on_the_card_and_the_fans_page(app: App, browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, app.url + "/queue", "Follow-up queue")
        set_operator(page, "Mei")
        k1, k3 = claim(page, "v1"), claim(page, "v3")
        # v3 has not agreed to email: the button is there, disabled, and says why
        no = page.locator(f".st-key-send-email-{k3} button").first
        assert no.is_disabled()
        no.hover(force=True)
        page.get_by_text("the viewer has not agreed to email messages").first.wait_for(timeout=10_000)

        page.locator(f".st-key-send-email-{k1} button").click()
        page.get_by_text("Sent by email. The provider's message id:").wait_for(timeout=20_000)
        assert len(app.box.got) == 1 and app.box.got[0][1] == ["ana@example.com"]
        message_id = app.box.got[0][2]["Message-ID"]
        page.get_by_text(message_id).first.wait_for(timeout=10_000)
        assert task_fields(app.r.hget(keys.tasks(SHOP, "r1"), "v1"))["message_id"] == message_id

        # the sent list: the card says who sent it, on which channel, with the id
        page.get_by_text("Sent", exact=True).first.click()
        page.get_by_text(f"Sent by Mei · email · message id {message_id}").wait_for(timeout=15_000)

        # the fan's page lists the message with its channel and id
        open_screen(page, app.url + "/fans?fan=v1", "Messages sent")
        grid = page.locator('[data-testid="stDataFrame"]').last
        grid.wait_for(timeout=15_000)
        page.get_by_text(message_id).first.wait_for(state="attached", timeout=15_000)
        w.assert_clean()
    finally:
        ctx.close()
