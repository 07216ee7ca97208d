"""The door in headless Chromium (issue 17): one app with passwords and a host token, started once.

Without a password no screen shows the shop's data; an operator cannot open the settings, stays
signed in across a reload and is out after "Sign out"; an admin opens the settings; the host token
opens the host screen alone.  Every context fails on a console error and on any request that
leaves 127.0.0.1 (``Watch.assert_clean``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from fanops.config import Config
from fanops.runtime import server
from tests.conftest import wait_for
from tests.feeds import ev, frame
from tests.pipeline import drain, ingest_frames
from tests.screens.app_process import app_process
from tests.screens.test_browser import new_context, open_screen

ROOT = Path(__file__).resolve().parents[2]
OP_PW, ADMIN_PW, TOKEN = "op-browser-pw", "admin-browser-pw", "host-token-abc123"
ROOM = "room-private-7"  # shown on every screen once signed in: never before
SCREENS = ("", "host", "queue", "settings")  # the door runs before any screen: a few paths stand for all


@dataclass
class App:
    url: str
    log: Path


@pytest.fixture(scope="module")
def app(redis_server: server.ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    d = tmp_path_factory.mktemp("access-browser")
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = Config.from_env({}, redis_url=redis_server.url, data_dir=d / "data", flush_ms=5)
    now = int(time.time() * 1000)
    ingest_frames(cfg, [frame(*[ev(i, room=ROOM, ts=now - 60_000 + i, viewer=f"v{i % 4}") for i in range(12)])])
    drain(r, cfg)
    log = d / "app.log"
    try:
        with app_process(redis_server.url, d / "data", log, FANOPS_PASSWORD_OPERATOR=OP_PW,
                         FANOPS_PASSWORD_ADMIN=ADMIN_PW, FANOPS_HOST_TOKEN=TOKEN) as url:
            yield App(url, log)
    finally:
        r.close()
    assert OP_PW not in log.read_text() and "wrong-pw" not in log.read_text()  # failures logged, passwords not


def idle(page: Any) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=30_000)


def sign_in(page: Any, name: str, password: str) -> None:
    idle(page)
    page.get_by_label("Your name (shown to other operators)").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def has_cookie(ctx: Any) -> bool:
    """The browser holds the session cookie (set by a script the app sends on sign-in, a moment later)."""
    return any(c["name"] == "fanops_session" and c["value"] for c in ctx.cookies())


def nav_links(page: Any) -> list[str]:
    """The navigation's links by name (each link's text is its icon's name, then the screen's)."""
    return [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def test_without_a_password_no_screen_shows_data(app: App, browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        for s in SCREENS:
            open_screen(page, f"{app.url}/{s}", "Sign in")
            page.get_by_role("button", name="Sign in").wait_for()
            body = page.inner_text("body")
            assert ROOM not in body and page.locator('[data-testid="stMetric"]').count() == 0, (s, body[:400])
            assert nav_links(page) == [], s
        sign_in(page, "Mei", "wrong-pw")
        page.get_by_text("Wrong password.").wait_for(timeout=15_000)
        assert ROOM not in page.inner_text("body")
        w.assert_clean()
    finally:
        ctx.close()


def test_an_operator_stays_signed_in_across_a_reload_cannot_open_settings_and_signs_out(app: App,
                                                                                         browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, app.url + "/", "Sign in")
        sign_in(page, "Mei (A)", OP_PW)
        page.get_by_text(f"Room: {ROOM}").wait_for(timeout=30_000)  # the live board, with the room's data
        assert nav_links(page) == ["Live board", "Host screen", "Follow-up queue", "Fans", "Post-show review",
                                   "Kept orders"]
        wait_for(lambda: has_cookie(ctx), 15, "the session cookie")
        page.reload()
        page.get_by_text(f"Room: {ROOM}").wait_for(timeout=30_000)  # a new session, still signed in
        assert page.get_by_role("button", name="Sign in").count() == 0
        page.get_by_text("Mei (A)").first.wait_for()
        open_screen(page, app.url + "/settings", "This screen is not open to you.")  # not this role's
        assert page.get_by_text("Follow-up priority").count() == 0 and page.get_by_text("What if?").count() == 0
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for(timeout=15_000)
        page.reload()  # the cookie opens nothing any more
        page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
        assert ROOM not in page.inner_text("body")
        w.assert_clean()
    finally:
        ctx.close()


def test_an_admin_opens_the_settings(app: App, browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, app.url + "/settings", "Sign in")
        sign_in(page, "Root", ADMIN_PW)
        page.get_by_text(f"Room: {ROOM}").wait_for(timeout=30_000)
        assert "Settings" in nav_links(page)
        wait_for(lambda: has_cookie(ctx), 15, "the session cookie")
        open_screen(page, app.url + "/settings", "Follow-up priority", "Message templates")
        w.assert_clean()
    finally:
        ctx.close()


def test_the_host_token_opens_the_host_screen_alone(app: App, browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, f"{app.url}/host?token={TOKEN}", "Viewers now", "Orders this show", "Say hi to")
        assert page.locator('[data-testid="stSidebar"]').is_hidden() and nav_links(page) == []
        assert page.locator("button:visible").count() == 0  # read-only: nothing to press
        for other in ("settings", ""):  # the token's session reaches no other screen
            open_screen(page, f"{app.url}/{other}?token={TOKEN}", "This screen is not open to you.")
            body = page.inner_text("body")
            assert ROOM not in body and "Follow-up priority" not in body and nav_links(page) == [], (other, body[:300])
        w.assert_clean()
    finally:
        ctx.close()
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, f"{app.url}/host?token={TOKEN}x", "Sign in")  # a wrong token opens nothing
        assert page.locator('[data-testid="stMetric"]').count() == 0
        w.assert_clean()
    finally:
        ctx.close()
