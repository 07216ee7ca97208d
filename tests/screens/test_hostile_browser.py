"""A hostile feed on every screen, in headless Chromium (issue 17 item 5): one app on the test
server. Names, comments, skus, order ids and a room id with markup, script, Markdown, Streamlit's
own colour and LaTeX syntax, RTL overrides, zero-width characters and 10,000-character strings
are shown as inert text: no dialog opens, the console has no error, no element or link comes from
the data, and no request leaves 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from fanops.config import Config
from fanops.runtime import server
from scoring import archive
from tests.conftest import wait_for
from tests.pipeline import drain, ingest_frames
from tests.screens.test_browser import BAD_LOG, _health, _tail, new_context, open_screen

ROOT = Path(__file__).resolve().parents[2]
SHOP = "default"
SCRIPT = "<script>alert('name')</script>"
IMG = '<img src="http://evil.example/x.png" onerror="alert(1)">'
LINK = "[click me](javascript:alert(1)) ![pic](http://evil.example/p.png)"
ST_MARKUP = ":red[RED] **bold** $x^2$ <iframe src=http://evil.example>"
RTL, ZW = "\u202eevil.exe\u202c", "zero\u200bwidth\u200d"
LONG = "L" * 10_000  # skus and order ids have no length limit (events.md): shown cut, never whole
NAMES = [SCRIPT, IMG, LINK, ST_MARKUP, RTL + " buyer", ZW, "N" * 256]  # a name is 0-256 characters
TEXTS = [*NAMES[:-1], "T" * 2000]  # a comment 0-2000
ROOM = "<b>room</b>\u202e-live"  # a hostile room id (1-128 characters, as events.md allows)
PAST = "past-<i>show</i>"


def _feed(now: int) -> list[str]:
    """Two shows: PAST (a day ago, archived for the review) and ROOM (live now). Every hostile
    viewer joins, comments with hostile text, views and carts a hostile sku (one of 10,000
    characters), stays past the dwell (a follow-up task); one orders with a 10,000-character order
    id. Every event is valid (events.md): none is a dead letter."""
    out = []
    for room, t0 in ((PAST, now - 86_400_000), (ROOM, now - 600_000)):
        evs = []
        for i, name in enumerate(NAMES):
            v = {"id": f"h{i}<x>", "name": name, "country": "US", "lang": "en"}
            evs += [{"id": f"{room}-{i}-j", "room": room, "ts": t0 + i, "type": "join", "viewer": v},
                    {"id": f"{room}-{i}-c", "room": room, "ts": t0 + 60_000 + i, "type": "comment",
                     "text": TEXTS[(i + 1) % len(TEXTS)], "viewer": {"id": v["id"]}},
                    {"id": f"{room}-{i}-v", "room": room, "ts": t0 + 120_000 + i, "type": "product_view",
                     "sku": SCRIPT, "viewer": {"id": v["id"]}},
                    {"id": f"{room}-{i}-a", "room": room, "ts": t0 + 130_000 + i, "type": "cart_add",
                     "sku": IMG if i % 2 else LONG, "viewer": {"id": v["id"]}},
                    {"id": f"{room}-{i}-l", "room": room, "ts": t0 + 240_000 + i, "type": "like", "count": 2,
                     "viewer": {"id": v["id"]}}]
        evs.append({"id": f"{room}-o", "room": room, "ts": t0 + 250_000, "type": "order", "order_id": LONG,
                    "amount": 9.5, "currency": "USD", "viewer": {"id": "h0<x>"}})
        out.append(json.dumps(evs))
    return out


@dataclass
class App:
    url: str


@pytest.fixture(scope="module")
def app(redis_server: server.ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    d = tmp_path_factory.mktemp("hostile-browser")
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = Config.from_env({}, redis_url=redis_server.url, data_dir=d / "data", flush_ms=5)
    c = ingest_frames(cfg, _feed(int(time.time() * 1000)))
    assert c.counters.bad == 0 and c.counters.accepted == 2 * (5 * len(NAMES) + 1)
    drain(r, cfg)
    archive.archive_room(r, cfg, SHOP, PAST)
    port = server.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOPS_")}
    env.update(REDIS_URL=redis_server.url, FANOPS_DATA_DIR=str(d / "data"), PYTHONPATH=str(ROOT))
    log = d / "app.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                              str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                             cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: p.poll() is not None or _health(f"http://127.0.0.1:{port}"), 60, "the app's health",
                 poll=0.25)
        assert p.poll() is None, _tail(log)
        yield App(f"http://127.0.0.1:{port}")
    finally:
        p.terminate()
        p.wait(timeout=30)
        r.close()
    bad = [ln for ln in log.read_text(errors="replace").splitlines() if BAD_LOG.search(ln)]
    assert not bad, _tail(log)


# every screen, and where the data shows (a screen's own words to wait for, a hostile text it shows)
# (the fans list and the charts draw on a canvas: their text is not in the page's text)
SCREENS = [
    (f"/?room={quote(ROOM)}", "Live board", "Room: <b>room</b>"),  # the RTL override taken out
    (f"/host?room={quote(ROOM)}", None, ZW),
    ("/queue", "Follow-up queue", SCRIPT),
    ("/fans", "Fans", None),
    (f"/fans?fan={quote('h1<x>')}", "Messages sent", IMG),
    ("/settings", "Settings", None),
    (f"/review?room={quote(PAST)}", "Post-show review", SCRIPT),
    ("/orders", "Kept orders", None),
]

# what the data must never become in the page: an element, a link, a request
INJECTED = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('img, iframe, script, a[href]')) {
    const src = el.getAttribute('src') || el.getAttribute('href') || '';
    if (src.includes('evil.example') || src.startsWith('javascript:') || (el.tagName === 'SCRIPT' &&
        el.textContent.includes('alert('))) bad.push(el.outerHTML.slice(0, 200));
  }
  for (const el of document.querySelectorAll('[onerror]')) bad.push(el.outerHTML.slice(0, 200));
  return bad;
}"""


def idle(page: Any) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=30_000)
    page.wait_for_timeout(500)  # the last deltas drawn


@pytest.mark.parametrize("path,title,shown", SCREENS, ids=[s[0].split("?")[0].strip("/") or "live" for s in SCREENS])
def test_a_hostile_feed_is_inert_text_on_every_screen(app: App, browser: Any, path: str, title: str | None,
                                                      shown: str | None) -> None:
    ctx, page, w = new_context(browser)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    requests: list[str] = []
    page.on("request", lambda rq: requests.append(rq.url))
    try:
        open_screen(page, app.url + path, *([title] if title else []))
        idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]
        if shown is not None:  # shown, as the characters it is made of (once the screen has drawn it)
            page.wait_for_function("t => document.body.innerText.includes(t)", arg=shown, timeout=30_000)
        assert page.evaluate(INJECTED) == []
        assert dialogs == []
        assert [u for u in requests if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))] == []
        w.assert_clean()
    finally:
        ctx.close()
