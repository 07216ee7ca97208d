"""Every screen in headless Chromium, against the whole product started as the README says.

One launcher (``python -m fanops.runtime.launcher``: embedded Valkey, simulated room, consumer, scorer,
Streamlit app) per module, on free ports with a private data folder; one browser per module.
Each test opens screens, fails on any browser console error or page error, and on any
traceback or error line in the app's log.  Screenshots go to ``artifacts/browser/<screen>.png``.

The follow-up tasks come from the real pipeline: the simulator first sends the shop's earlier
shows (past timestamps, fast), the scorer queues their lingering viewers and archives those shows,
so the queue and the review have content within seconds, with the default thresholds.

The first session after the start is a side screen opening ``/host?lang=zh-Hans`` directly
(``test_deep_link_as_first_visit_runs_the_app``): it must run the app (``app.py``: language from
the URL, no sidebar), not the screen alone.  Streamlit does the latter for a legacy multipage app,
which it assumes when a folder named ``pages/`` sits next to ``app.py``: the screens are in
``screens/``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from fanops import i18n, queue
from fanops.config import Config
from fanops.errors import TaskClaimedByOther
from fanops.runtime import server
from review import archive_files
from screens._ui import task_key
from screens.reads import tasks
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "browser"
SHOP = "default"
OP_A, OP_B = "Mei (A)", "Lin (B)"
VIEWPORT = {"width": 1400, "height": 1000}
START_TIMEOUT = 60.0
# A line of the app's log that means something went wrong in the app (Python tracebacks, logged
# exceptions, Streamlit's own error lines).
BAD_LOG = re.compile(r"Traceback|Error|Exception|CRITICAL")


# --- the product ------------------------------------------------------------------------------

@dataclass
class Product:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    url: str  # the app
    redis_url: str
    room: str  # the simulated live room
    log_seen: dict[str, int] = field(default_factory=dict)  # log file -> bytes already checked

    @property
    def app_log(self) -> Path:
        return self.data_dir / "logs" / "app.log"

    def r(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def status(self, room: bool = True) -> dict[str, Any]:
        """``python -m scoring status`` (the CLI contract, spec/cli.md), on the launcher's server."""
        args = [sys.executable, "-m", "scoring", "status", "--shop", SHOP, "--redis", self.redis_url]
        if room:
            args += ["--room", self.room]
        res = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=30,
                             env=_env(self.data_dir))
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    def assert_alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"the launcher exited with code {code}:\n{_tail(self.data_dir / 'launcher.out')}"


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # no REDIS_URL: the embedded server
    env["FANOPS_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return f"({path} unreadable)"


def _wait(cond: Callable[[], Any], what: str, product: Product | None = None, timeout: float = START_TIMEOUT) -> Any:
    """``wait_for``, failing at once if the product has died; polls slowly (conditions run commands)."""
    def check() -> Any:
        if product is not None:
            product.assert_alive()
        return cond()

    return wait_for(check, timeout, what, poll=0.25)


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except OSError:
        return False


def _room_from_log(data_dir: Path) -> str | None:
    m = re.search(r"simulated room (\S+) ", _tail(data_dir / "logs" / "simulator.log", 100_000))
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    data_dir = tmp_path_factory.mktemp("browser-data")
    app_port, sim_port = server.free_port(), server.free_port()
    while sim_port == app_port:
        sim_port = server.free_port()
    out = open(data_dir / "launcher.out", "wb")
    # The README's run command (python3 dev.py up = python -m fanops.runtime.launcher), with a small room.
    proc = subprocess.Popen(
        [sys.executable, "-m", "fanops.runtime.launcher", "--app-port", str(app_port), "--sim-port", str(sim_port),
         "--rate", "50", "--viewers", "1000", "--seed", "7"],
        cwd=ROOT, env=_env(data_dir), stdout=out, stderr=subprocess.STDOUT)
    p = Product(proc, data_dir, f"http://127.0.0.1:{app_port}", "", "")
    try:
        info = _wait(lambda: server.running(data_dir), "the embedded server", p)
        p.redis_url = info.url
        p.room = _wait(lambda: _room_from_log(data_dir), "the simulator's room", p)
        _wait(lambda: _health(p.url), "the app's /_stcore/health", p)
        # The scorer has applied events of the live room, and queued follow-ups (earlier shows).
        _wait(lambda: p.status()["room"]["unique_viewers"] > 0 and p.status(room=False)["events_applied"] > 0,
              "the scorer to apply the live room's events", p)
        with p.r() as r:
            _wait(lambda: queue.counts(r, SHOP)["pending"] >= 5, "pending follow-up tasks", p)
        # ... and archived the earlier shows, which the review screen shows
        cfg = Config(data_dir=data_dir)
        _wait(lambda: archive_files.list_archived(cfg, SHOP), "an earlier show archived", p)
        yield p
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the launcher stops its children, then the embedded server
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            server.stop(data_dir)
            raise
        finally:
            out.close()
        assert proc.returncode == 0, _tail(data_dir / "launcher.out")
        assert server.running(data_dir) is None, "the embedded server outlived the launcher"


def assert_app_log_clean(p: Product) -> None:
    """No traceback or error line in the app's log since the last check."""
    text = p.app_log.read_bytes().decode("utf-8", "replace")
    start = p.log_seen.get("app", 0)
    p.log_seen["app"] = len(text)
    bad = [line for line in text[start:].splitlines() if BAD_LOG.search(line)]
    assert not bad, "the app logged errors:\n" + text[start:][-4000:]


# --- the browser ------------------------------------------------------------------------------

@dataclass
class Watch:
    """What one browser context reported: console errors, page errors, blocked requests."""

    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.errors, "browser errors:\n" + "\n".join(self.errors)
        assert not self.blocked, "requests that left 127.0.0.1:\n" + "\n".join(self.blocked)


def _is_local(url: str) -> bool:
    u = urlsplit(url)
    return u.scheme in ("data", "blob", "about") or u.hostname in ("127.0.0.1", "localhost")


_PROBE = re.compile(r"http://127\.0\.0\.1:\d+/(?:live|host|queue|settings|review|fans|orders)/_stcore/(?:health|host-config)")


def new_context(browser: Any) -> tuple[Any, Any, Watch]:
    """A fresh context (a new Streamlit session: its own operator name) with one page, watched."""
    ctx = browser.new_context(viewport=VIEWPORT, timezone_id="Europe/Paris", locale="en-US")
    w = Watch()

    def route(rt: Any) -> None:
        # The machine has no internet: anything not served by the app is refused, and noted.
        if _is_local(rt.request.url):
            rt.continue_()
        else:
            w.blocked.append(rt.request.url)
            rt.abort()

    ctx.route("**/*", route)
    page = ctx.new_page()

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url", "")
        # Forgiven, and only these: (1) the failed load of a request refused above (assert_clean
        # fails on the request itself: no page may ask a host other than 127.0.0.1);
        # (2) Streamlit's frontend, opened at a page's own URL (/queue), first probes
        # /queue/_stcore/health and /queue/_stcore/host-config, gets a 404, then uses
        # /_stcore/... (streamlit/streamlit#7074, open): not the app's doing.
        if url in w.blocked or _PROBE.fullmatch(url):
            return
        w.errors.append(f"console: {msg.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda e: w.errors.append(f"pageerror: {e}"))
    return ctx, page, w


def open_screen(page: Any, url: str, *texts: str) -> None:
    """Go to a screen and wait until Streamlit has drawn it (the app, then each of ``texts``)."""
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
    for t in texts:
        page.get_by_text(t, exact=False).first.wait_for(state="visible", timeout=30_000)


def shoot(page: Any, name: str, max_height: int = 6000) -> Path:
    """A screenshot of the whole screen.  Streamlit scrolls inside its own container, so a
    "full page" shot is the viewport: the viewport is made as tall as the content (at most
    ``max_height``) for the shot."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("""() => Math.max(...['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]',
        '[data-testid="stMainBlockContainer"]'].map(s => document.querySelector(s)?.scrollHeight || 0))""")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, max_height))})
    try:
        page.wait_for_timeout(600)  # the re-layout (charts redraw at the new size)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    assert path.stat().st_size > 20_000, f"{path} looks blank"
    return path


def settle(page: Any) -> None:
    """Wait for the end of a script run: while Streamlit reruns, the previous run's elements stay
    on the page (marked stale) beside the new ones, so a task card can briefly show twice."""
    page.wait_for_function("""() => !document.querySelector('[data-stale="true"]') && (ks =>
        new Set(ks).size === ks.length)([...document.querySelectorAll('[class*="st-key-task-"]')].map(
        e => [...e.classList].find(c => c.startsWith('st-key-task-'))))""", timeout=15_000)


def set_operator(page: Any, name: str) -> None:
    box = page.get_by_label("Your name (shown to other operators)")
    box.fill(name)
    box.press("Enter")
    page.get_by_text("Enter your name in the sidebar to claim tasks.").wait_for(state="detached", timeout=15_000)
    settle(page)


@dataclass
class FirstVisit:
    nav: list[str]  # the sidebar's navigation links (hidden or not)
    sidebar_hidden: bool
    text: str
    watch: Watch


@pytest.fixture(scope="module", autouse=True)
def first_visit(product: Product, browser: Any) -> FirstVisit:
    """The app's first session after the start: a side screen opening ``/host?lang=zh-Hans``
    (autouse, so that it comes before any test's session; see the module docstring)."""
    ctx, page, w = new_context(browser)
    try:
        page.goto(product.url + f"/host?room={product.room}&lang=zh-Hans", wait_until="domcontentloaded")
        page.locator('[data-testid="stMetric"]').first.wait_for(timeout=30_000)
        page.wait_for_timeout(1_000)
        seen = FirstVisit(page.locator('[data-testid="stSidebarNav"] a').all_text_contents(),
                          page.locator('[data-testid="stSidebar"]').is_hidden(), page.inner_text("body"), w)
        shoot(page, "host-first-visit")
    finally:
        ctx.close()
    return seen


# --- the tests --------------------------------------------------------------------------------

def _number(text: str) -> int:
    t = text.strip().replace(",", "")
    assert re.fullmatch(r"\d+", t), f"not a whole number: {text!r}"
    return int(t)


def _headline(page: Any) -> dict[str, str]:
    """The live board's headline tiles, label -> value, read from one DOM snapshot."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '.st-key-headline [data-testid="stMetric"]')].map(m => [
        m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
        m.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))""")


def test_live_board_numbers_match_scoring_status(product: Product, browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, product.url + "/", "Live board", "Unique viewers", "Pipeline health")
        page.get_by_text(f"Room: {product.room}").wait_for(timeout=15_000)
        page.locator('[data-testid="stMetric"]').filter(has_text="Unique viewers").wait_for()
        start = product.status()
        # The room keeps moving, so each page reading is bracketed by two status readings taken
        # around it: status before <= page <= status after.  The board redraws every second; a
        # drawing older than the "before" reading (a slow redraw) is retried, never forgiven.
        names = {"Unique viewers": "unique_viewers", "New viewers": "new_viewers", "Orders": "orders",
                 "Buyers": "buyers"}
        for _ in range(4):
            before = product.status()["room"]
            page.wait_for_timeout(3_500)  # at least two redraws after the "before" reading
            shown = {k: _number(v) for k, v in _headline(page).items() if k in names}
            after = product.status()["room"]
            assert set(shown) == set(names), _headline(page)
            for label, key in names.items():
                assert shown[label] <= after[key], (label, before[key], shown[label], after[key])
            if all(before[key] <= shown[label] for label, key in names.items()):
                break
        else:
            raise AssertionError(f"the board stayed behind the status: {before} / {shown}")
        assert shown["Unique viewers"] > 0
        end = product.status()
        assert end["events_applied"] > start["events_applied"], "the simulated room stopped moving"
        badges = page.locator(".stMarkdownBadge").all_inner_texts()
        assert any(b.strip().endswith(" Live") for b in badges), badges  # the room is live, not ended
        shoot(page, "live")
        w.assert_clean()
    finally:
        ctx.close()
    assert_app_log_clean(product)


def test_deep_link_as_first_visit_runs_the_app(first_visit: FirstVisit) -> None:
    first_visit.watch.assert_clean()
    assert "在线观众" in first_visit.text, first_visit.text[:300]  # lang=zh-Hans taken from the URL
    assert first_visit.sidebar_hidden  # the host screen hides the sidebar (app.py does)
    # The app's screens by their names (st.navigation), not the folder's files.
    names = [i18n.t(f"nav.{s}", "zh-Hans") for s in ("live", "host", "queue", "fans", "settings", "review", "orders")]
    assert len(first_visit.nav) == len(names), first_visit.nav
    assert all(a.endswith(n) for a, n in zip(first_visit.nav, names, strict=True)), first_visit.nav


def test_host_settings_and_review_screens_render(product: Product, browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, product.url + "/host", "Viewers now", "Orders this show", "Say hi to", "Thank", "Answer")
        assert page.locator('[data-testid="stSidebar"]').is_hidden()  # glanced at from metres away: no sidebar
        shoot(page, "host")
        # A side screen pointed at one room in Chinese (the URL form app.py documents).
        open_screen(page, product.url + f"/host?room={product.room}&lang=zh-Hans", "在线观众", "本场订单", "回答提问")
        shoot(page, "host-zh")
        open_screen(page, product.url + "/settings", "Settings", "Follow-up priority", "Message templates", "What if?")
        shoot(page, "settings")
        open_screen(page, product.url + "/review", "Post-show review", "Top fans", "Downloads")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8",
                               timeout=30_000)
        shoot(page, "review")
        w.assert_clean()
    finally:
        ctx.close()
    assert_app_log_clean(product)


def _claimable(page: Any) -> str:
    """The widget key of the first task card with an enabled Claim button (the top pending task)."""
    btn = page.locator('[class*="st-key-claim-"] button:not([disabled])').first
    btn.wait_for(timeout=15_000)
    cls = btn.evaluate("b => b.closest('[class*=\"st-key-claim-\"]').className")
    m = re.search(r"st-key-claim-([0-9a-f]{12})", cls)
    assert m, cls
    return m.group(1)


def _screen_order(r: redis.Redis, limit: int = 200) -> list[Any]:
    """The pending tasks in the queue screen's order: the live room's first (issue 16: during a show
    the queue opens on its tasks; a first order there makes a thank-you at once), then the others."""
    live = tasks.live_room(r, SHOP)
    first = tasks.task_page(r, SHOP, "pending", limit=limit, room=live) if live else []
    return first + [t for t in tasks.task_page(r, SHOP, "pending", limit=limit) if t.room != live or not live]


def _task_by_key(r: redis.Redis, k: str) -> str:
    for t in _screen_order(r):
        if task_key(t.id) == k:
            return t.id
    raise AssertionError(f"no pending task with widget key {k}")


def _task_hash(r: redis.Redis, tid: str) -> dict[str, str]:
    """The task's stored fields, of any kind (``queue.where`` knows its hash and field)."""
    from fanops.state import task_fields

    hk, _ck, fld, _v = queue.where(SHOP, tid)
    b = r.hget(hk, fld)
    return task_fields(b) if b else {}


def claim_top(page: Any, r: redis.Redis, operator: str) -> tuple[str, str]:
    """Claim the top pending task on the page; return (task id, widget key)."""
    for _ in range(3):
        settle(page)
        k = _claimable(page)
        tid = _task_by_key(r, k)
        # the first Claim is the screen's top task (the running show makes new ones meanwhile: one
        # made since the page was drawn may come before it)
        assert tid in [t.id for t in _screen_order(r, limit=5)], "the first Claim is not the top task"
        page.locator(f'.st-key-claim-{k} button').click()
        page.locator(f'.st-key-sent-{k} button').or_(page.get_by_text("Not possible any more")).first.wait_for(
            timeout=15_000)
        h = _task_hash(r, tid)
        if h.get("state") in ("withdrawn", "converted"):
            continue  # the scorer settled it (the viewer ordered or refused DMs) just before the click
        assert h.get("state") == "claimed" and h.get("holder") == operator, h
        page.get_by_text("Claimed: it is yours for 5 minutes.").wait_for(timeout=10_000)
        settle(page)  # the claimed card moves to the top ("mine first")
        return tid, k
    raise AssertionError("three top tasks in a row were settled by the scorer under the click")


def test_queue_claim_then_mark_sent(product: Product, browser: Any) -> None:
    ctx, page, w = new_context(browser)
    try:
        open_screen(page, product.url + "/queue", "Follow-up queue", "Enter your name in the sidebar")
        # Without a name nothing can be claimed.
        page.locator('[class*="st-key-task-"]').first.wait_for(timeout=15_000)
        assert page.locator('[class*="st-key-claim-"] button:not([disabled])').count() == 0
        set_operator(page, OP_A)
        with product.r() as r:
            sent_before = queue.counts(r, SHOP)["sent"]
            tid, k = claim_top(page, r, OP_A)
            card = page.locator(f'.st-key-task-{k}')
            assert card.get_by_text("Yours: send it").count() == 1
            shoot(page, "queue-claimed", max_height=2400)
            settle(page)
            card.locator(f'.st-key-sent-{k} button').click()
            page.get_by_text("Marked as sent.").wait_for(timeout=15_000)
            page.locator(f'.st-key-task-{k}').wait_for(state="detached", timeout=15_000)  # off the open list
            h = _task_hash(r, tid)
            assert h["state"] == "sent" and h["sent_by"] == OP_A, h
            assert queue.get_task(r, SHOP, tid).state == "sent"
            assert queue.counts(r, SHOP)["sent"] == sent_before + 1
        shoot(page, "queue", max_height=2400)
        w.assert_clean()
    finally:
        ctx.close()
    assert_app_log_clean(product)


def test_task_claimed_by_one_operator_cannot_be_claimed_by_another(product: Product, browser: Any) -> None:
    ctx_a, page_a, w_a = new_context(browser)
    ctx_b, page_b, w_b = new_context(browser)
    try:
        open_screen(page_a, product.url + "/queue", "Follow-up queue")
        set_operator(page_a, OP_A)
        with product.r() as r:
            tid, k = claim_top(page_a, r, OP_A)

            open_screen(page_b, product.url + "/queue", "Follow-up queue")
            set_operator(page_b, OP_B)
            card = page_b.locator(f'.st-key-task-{k}')
            card.wait_for(timeout=15_000)
            card.get_by_text(f"Claimed by {OP_A}").wait_for(timeout=10_000)
            assert card.get_by_text("Claimed", exact=True).count() == 1  # the state badge
            # B gets no action on A's task, while B can claim the other tasks.
            for action in ("claim", "sent", "release", "skip"):  # (the message's copy icon is a button too)
                assert card.locator(f'[class*="st-key-{action}-"]').count() == 0, action
            assert page_b.locator('[class*="st-key-claim-"] button:not([disabled])').count() >= 1
            shoot(page_b, "queue-other-operator", max_height=2400)
            # And the one atomic action says no to B, naming the holder.
            with pytest.raises(TaskClaimedByOther) as e:
                queue.Operator(r, SHOP, OP_B).claim(tid)
            assert e.value.holder == OP_A
            h = _task_hash(r, tid)
            assert h["state"] == "claimed" and h["holder"] == OP_A, h
        w_a.assert_clean()
        w_b.assert_clean()
    finally:
        ctx_a.close()
        ctx_b.close()
    assert_app_log_clean(product)
