"""The app's screens, driven with AppTest against a real Redis that each test fills.

Each test writes known state (through the real consumer and scorer, or
straight into the keys of ``fanops.keys``) and asserts what the screen shows
against that state, never against the app's own read functions.  AppTest
never fires ``run_every`` timers: every refresh here is an explicit ``run()``.
The board's clock is pinned (``rooms.wall_clock``) so that rates and ages are exact.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from streamlit.testing.v1 import AppTest

import tests.reference as reference
from fanops import keys, queue
from fanops.rules_settings import RuleSettings
from scoring.worker import Worker
from screens.reads import rooms
from tests.conftest import SAMPLES
from tests.pipeline import drain, ingest_frames, read_lines

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
NOW = (int(time.time()) // 60) * 60 + 30.0  # half way through a minute, near the wall clock
NOW_MS = int(NOW * 1000)
MIN = 60_000
SHOP = "default"
EVIL = "<script>alert(1)</script>"


def beat(r, kind: str, name: str, body: dict) -> None:
    """Write a process heartbeat as the consumer and the scorer do (the key and its index entry)."""
    r.set(keys.heartbeat(kind, name), json.dumps(body))
    r.zadd(keys.heartbeat_index(kind), {name: time.time()})


@pytest.fixture
def app(redis_url, monkeypatch, tmp_path):
    """``app(page, **session_state)``: a fresh browser session, run once, on ``page``."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FANOPS_DATA_DIR", str(tmp_path / "data"))  # the fans page reads archives
    monkeypatch.setattr(rooms, "wall_clock", lambda: NOW)

    def make(page: str | None = None, **state) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30)
        for k, v in state.items():
            at.session_state[k] = v
        at.run()
        if page:
            at.switch_page(f"screens/{page}.py").run()
        assert not at.exception, at.exception
        return at

    return make


def texts(node) -> list[str]:
    return [t.value for t in node.text]


def lines(node) -> list[str]:
    """Every line of the plain-text elements under ``node`` (a card draws its details as one block)."""
    return [line for t in texts(node) for line in t.split("\n")]


def metrics(node) -> dict[str, str]:
    return {m.label: m.value for m in node.metric}


def deltas(node) -> dict[str, str]:
    return {m.label: m.delta for m in node.metric}


# --- smoke --------------------------------------------------------------------
PAGES = ["live", "host", "queue", "fans", "settings"]


@pytest.mark.parametrize("lang", ["en", "zh-Hans"])
def test_every_page_opens_on_the_sample_and_on_an_empty_database(app, cfg, r, lang):
    for page in PAGES:  # empty: every page says what to do
        at = app(page, lang=lang)
        assert not at.exception
    at = app("live", lang=lang)
    assert "python3 dev.py up" in [c.value for c in at.code]
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    for page in PAGES:
        at = app(page, lang=lang)
        assert not at.exception, page
    assert at.title[0].value == ("Settings" if lang == "en" else "设置")


# --- live board -----------------------------------------------------------------
def write_live_room(r, room="live-1"):
    """A room in mid-show, written counter by counter."""
    r.sadd(keys.shops(), SHOP)
    r.hset(keys.stats(SHOP), mapping={"clock": NOW_MS - 1000, "accepted": 1000, "applied": 990})
    r.zadd(keys.rooms(SHOP), {room: NOW_MS - 1000, "old-show": NOW_MS - 3 * 86_400_000})
    r.hset(keys.room(SHOP, room), mapping={
        "unique": 40, "new": 25, "orders": 7, "buyers": 5, "gmv:USD": "123.5", "gmv:EUR": "99.25",
        "t:new_fan": 30, "t:first_buyer": 5, "t:active": 4, "t:dormant": 1, "n:join": 40, "n:comment": 60})
    r.hset(keys.tiers(SHOP), mapping={"new_fan": 300, "first_buyer": 50, "active": 20, "dormant": 100})
    r.zadd(keys.present(SHOP, room), {f"p{i}": NOW_MS - 5000 for i in range(12)})
    r.zadd(keys.present(SHOP, room), {f"gone{i}": NOW_MS - 11 * MIN for i in range(3)})  # past 10 min
    minute = int(NOW // 60)
    r.hset(keys.room_minutes(SHOP, room), mapping={f"p:{NOW_MS // MIN}": 12, f"o:{NOW_MS // MIN}": 2})  # as the scorer
    r.set(keys.dead_minute(minute), 4)
    beat(r, "consumer", "c1", {"connected": True, "frames": 500, "at": NOW})
    beat(r, "scorer", "s1", {"running": True, "at": NOW})
    # the board's own history: 5 minutes ago, and 10 s ago
    r.lpush(keys.board_room_snaps(SHOP, room), json.dumps(
        {"at": NOW - 300, "ev": 40, "t": {"new_fan": 20, "first_buyer": 3, "active": 4, "dormant": 1}}))
    r.lpush(keys.board_room_snaps(SHOP, room), json.dumps({"at": NOW - 10, "ev": 70, "t": {}}))
    r.lpush(keys.board_snaps(SHOP), json.dumps(
        {"at": NOW - 300, "lag": 10, "frames": 100,
         "tiers": {"new_fan": 290, "first_buyer": 50, "active": 25, "dormant": 100}}))
    for frm, to, cause, name, rm in [
        ("new_fan", "first_buyer", "order", EVIL, room), ("active", "dormant", "time", "Sleepy", ""),
        ("dormant", "new_fan", "join", "Elsewhere", "old-show"), ("first_buyer", "active", "order", "Mia", room),
    ]:
        r.xadd(keys.transitions(SHOP), {"viewer": f"v-{name}", "room": rm, "from": frm, "to": to,
                                        "ts": NOW_MS - 2000, "cause": cause, "rules_version": 0, "name": name})


def test_live_board_shows_the_rooms_counters(app, r):
    write_live_room(r)
    at = app()
    assert texts(at.get_by_key("live-room")) == ["Room: live-1"]
    head = metrics(at.get_by_key("headline"))
    assert head == {"Viewers present": "12", "Unique viewers": "40", "New viewers": "25", "Orders": "7",
                    "Buyers": "5", "Conversion": "12.5%", "Events/s": "3.0"}  # (100 - 70) events / 10 s
    assert metrics(at.get_by_key("gmv")) == {"GMV USD": "123.50", "GMV EUR": "99.25"}
    room = at.get_by_key("tiers-room")
    assert metrics(room) == {"New fan": "30", "First buyer": "5", "Active": "4", "Dormant": "1"}
    assert deltas(room) == {"New fan": "10", "First buyer": "2", "Active": "0", "Dormant": "0"}
    shop = at.get_by_key("tiers-shop")
    assert metrics(shop) == {"New fan": "300", "First buyer": "50", "Active": "20", "Dormant": "100"}
    assert deltas(shop) == {"New fan": "10", "First buyer": "0", "Active": "-5", "Dormant": "0"}
    assert "last 5 min" in at.caption[0].value
    assert metrics(at.get_by_key("health")) == {"Feed reader": "Connected", "Scorer lag (events)": "10",
                                                "Scorers running": "1", "Bad events (last min)": "4"}
    assert not at.warning
    feed = at.dataframe[0].value
    assert list(feed["Name"]) == ["Mia", EVIL]  # newest first; time-driven and other rooms' left out
    assert list(feed["Change"]) == ["→ Active", "New fan → first buyer"]
    # The chart's first minute: a 10-minute time axis in minutes, never sub-second ticks.
    (chart,) = at.get("plotly_chart")
    xaxis = json.loads(chart.proto.spec)["layout"]["xaxis"]
    assert (xaxis["tickformat"], xaxis["dtick"]) == ("%H:%M", 60_000)
    # orders are whole numbers: whole-number ticks, at least one apart
    y2 = json.loads(chart.proto.spec)["layout"]["yaxis2"]
    assert y2["tickformat"] == ",d" and y2["dtick"] >= 1
    lo, hi = (datetime.fromisoformat(t) for t in xaxis["range"])
    assert (hi - lo).total_seconds() == 10 * 60


def test_a_refresh_keeps_the_operators_choices_and_writes_history_once_per_10_s(app, r):
    write_live_room(r)
    at = app(operator="Mei")
    at.selectbox(key="room__en").set_value("old-show").run()
    assert texts(at.get_by_key("live-room")) == ["Room: old-show"]
    n = r.llen(keys.board_snaps(SHOP))
    at.run()
    at.run()
    assert texts(at.get_by_key("live-room")) == ["Room: old-show"]
    assert at.session_state["operator"] == "Mei"
    assert r.llen(keys.board_snaps(SHOP)) == n  # the first run wrote it; the next two within 10 s did not
    newest = json.loads(r.lindex(keys.board_snaps(SHOP), 0))
    assert newest["at"] == NOW and newest["tiers"]["dormant"] == 100 and newest["lag"] == 10
    at.switch_page("screens/queue.py").run()
    at.switch_page("screens/live.py").run()
    assert texts(at.get_by_key("live-room")) == ["Room: old-show"]
    assert (at.session_state["room"], at.session_state["operator"]) == ("old-show", "Mei")


def test_health_warnings_in_plain_words(app, r):
    write_live_room(r)
    r.hset(keys.stats(SHOP), mapping={"accepted": 2000, "applied": 1000})  # lag 1000 ...
    r.delete(keys.board_snaps(SHOP))
    for age, lag in [(30, 100), (20, 400), (10, 700)]:  # ... and growing, with the feed silent for 30 s
        r.lpush(keys.board_snaps(SHOP), json.dumps({"at": NOW - age, "lag": lag, "frames": 500, "tiers": {}}))
    r.set(keys.board_guard(SHOP), 1, px=10_000)
    warnings = [w.value for w in app().warning]
    assert warnings == ["The feed has sent nothing for 30 s. Is the show still on?",
                        "The scorer is falling behind (1000 events waiting, and growing): start another with "
                        "`python -m scoring run`."]
    r.delete(keys.heartbeat("consumer", "c1"), keys.heartbeat("scorer", "s1"))
    r.set(keys.dead_minute(int(NOW // 60)), 40)
    warnings = [w.value for w in app().warning]
    assert warnings[0].startswith("No feed reader is running")
    assert warnings[1].startswith("No scorer is running: 1000 events wait")
    assert warnings[2] == "40 bad events in the last minute: the feed sends malformed data."


def test_live_board_matches_the_spec_for_the_sample(app, cfg, r):
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    want = json.loads((SAMPLES / "weeks-small.expected.json").read_text())["status_by_room"]["show-1-7"]
    at = app()
    assert texts(at.get_by_key("live-room")) == ["Room: show-1-7"]  # the most recent room
    assert at.info[0].value.startswith("No room is live now")
    room = want["room"]
    head = metrics(at.get_by_key("headline"))
    assert [head["Viewers present"], head["Unique viewers"], head["New viewers"], head["Orders"],
            head["Buyers"]] == [str(room[k]) for k in ("present", "unique_viewers", "new_viewers", "orders",
                                                       "buyers")]
    assert head["Events/s"] == "0.0"  # the show is over
    names = {"New fan": "new_fan", "First buyer": "first_buyer", "Active": "active", "Dormant": "dormant"}
    assert {names[k]: int(v) for k, v in metrics(at.get_by_key("tiers-room")).items()} == room["tiers"]
    assert {names[k]: int(v) for k, v in metrics(at.get_by_key("tiers-shop")).items()} == want["tiers"]


# --- host screen ---------------------------------------------------------------------
def test_host_screen_two_numbers_and_three_short_lists(app, r):
    room = "live-1"
    write_live_room(r, room)
    clock = NOW_MS - 1000

    def push(kind, **e):
        r.lpush(keys.room_feed(SHOP, room, kind), json.dumps(e))

    long_name = "\u202e" + "A" * 100
    push("greet", viewer="old", name="Too Old", tier="active", why="active", ts=clock - 6 * MIN)
    for i, (vid, name, tier) in enumerate([("g1", "Mia", "active"), ("g2", EVIL, "new_fan"),
                                           ("g3", "**b** [x](y) :red[z]", "first_buyer"),
                                           ("g4", long_name, "active"), ("g5", "Zoë 🦊", "new_fan"),
                                           ("g6", "Sixth", "new_fan")]):
        push("greet", viewer=vid, name=name, tier=tier, why="x", ts=clock - 60_000 + i * 1000)
    push("greet", viewer="g1", name="Mia", tier="active", why="active", ts=clock - 90_000)  # older repeat
    push("thank", viewer="t1", name="Ana", amount=20, currency="USD", first_time=True, ts=clock - 5000)
    push("thank", viewer="t2", name="Bo", amount=30, currency="USD", first_time=False, ts=clock - 1000)
    push("questions", viewer="q1", name="Cy", text="does it come in blue?", lang="en", ts=clock - 3000)
    push("questions", viewer="q2", name="", text="¿hay talla M? <img src=x onerror=alert(1)>", lang="es",
         ts=clock - 2000)
    at = app("host")
    assert metrics(at.get_by_key("host")) == {"Viewers now": "12", "Orders this show": "7"}
    greet = [texts(at.get_by_key(f"row-greet-{i}")) for i in range(5)]
    assert greet == [["Sixth", "back again"], ["Zoë 🦊", "back again"], ["A" * 21 + "…", "VIP fan"],
                     ["**b** [x](y) :red[z]", "back again"], [EVIL[:21] + "…", "back again"]]
    with pytest.raises(KeyError):
        at.get_by_key("row-greet-5")  # five at most; Mia's join is the sixth newest, "Too Old" is too old
    assert [texts(at.get_by_key(f"row-thank-{i}")) for i in range(2)] == [["Bo"], ["Ana", "first order!"]]
    assert [texts(at.get_by_key(f"row-questions-{i}")) for i in range(2)] == [
        ["¿hay talla M? <img src=x onerror=alert(1)>", "(no name)"], ["does it come in blue?", "Cy"]]
    main = at.main
    assert not (main.button or main.text_input or main.selectbox or main.radio)  # no controls
    assert all(EVIL not in m.value and "onerror" not in m.value for m in at.markdown)


def test_host_screen_with_no_room(app):
    at = app("host")
    assert at.subheader[0].value == "No room live"
    assert "python3 dev.py up" in texts(at)[0]


# --- follow-up queue --------------------------------------------------------------------
T0 = NOW_MS - 10 * MIN
S = 1000
ANA = {"name": "Ana", "country": "MX", "lang": "es-MX", "tz": "America/Mexico_City"}


def ev(i, vid, dt, typ, viewer=None, **kw):
    return {"id": f"e{i}", "room": "r1", "ts": T0 + dt, "type": typ, "viewer": {"id": vid, **(viewer or {})}, **kw}


SCRIPT = [
    # v1 Ana: comments, views, carts, stays 4 min: a task, first by priority
    ev(1, "v1", 0, "join", ANA), ev(2, "v1", 60 * S, "comment", text="¿tienen talla M?"),
    ev(3, "v1", 90 * S, "product_view", sku="hoodie-m"), ev(4, "v1", 100 * S, "cart_add", sku="hoodie-m"),
    ev(5, "v1", 240 * S, "like", count=3),
    # v2 hostile name and comment: a task
    ev(6, "v2", 0, "join", {"name": EVIL, "country": "DE", "lang": "de"}),
    ev(7, "v2", 30 * S, "comment", text="<b>hi</b> **there**"), ev(8, "v2", 300 * S, "like"),
    # v3 stays, then refuses DMs: withdrawn;  v4 stays, then orders: converted
    ev(9, "v3", 0, "join", {"name": "Bo", "country": "US", "lang": "en"}), ev(10, "v3", 10 * S, "share"),
    ev(11, "v3", 210 * S, "like"), ev(12, "v3", 360 * S, "consent", dm=False),
    ev(13, "v4", 0, "join", {"name": "Cy", "country": "GB", "lang": "en"}),
    ev(14, "v4", 10 * S, "comment", text="nice"), ev(15, "v4", 210 * S, "like"),
    ev(16, "v4", 360 * S, "order", order_id="o1", amount=20, currency="GBP"),
]


@pytest.fixture
def tasks(cfg, r):
    ingest_frames(cfg, [json.dumps(SCRIPT)])
    drain(r, cfg)
    return cfg


def tid(viewer: str) -> str:
    return queue.task_id("r1", viewer)


def k(viewer: str) -> str:
    from screens._ui import task_key

    return task_key(tid(viewer))


def task_hash(r, viewer: str) -> dict[str, str]:
    from fanops.state import task_fields

    b = r.hget(keys.tasks(SHOP, "r1"), viewer)
    return task_fields(b) if b else {}


def keyed(node, prefix: str) -> list:
    """Containers whose key starts with ``prefix``, in the order they are drawn."""
    out = []

    def walk(n) -> None:
        key = getattr(n, "key", None)
        if isinstance(key, str) and key.startswith(prefix):
            out.append(n)
        for child in getattr(n, "children", {}).values():
            walk(child)

    walk(node)
    return out


def card_names(at) -> list[str]:
    return [texts(b)[0] for b in keyed(at.main, "name-")]


def test_queue_lists_open_tasks_by_priority_with_what_the_operator_needs(app, r, tasks):
    at = app("queue", operator="Mei")
    assert metrics(at.main) == {"Pending": "3", "Claimed": "0", "Sent": "0", "Skipped": "0", "Converted": "1",
                                "Withdrawn": "1", "Expired": "0"}
    # converted and withdrawn are not in the open list; Cy's order made a thank-you task (v1.1 kinds)
    assert card_names(at) == ["Ana", EVIL, "Cy"]
    from screens._ui import task_key

    cy = at.get_by_key(f"task-{task_key('thank_first_order:0:v4')}")
    assert "Thank-you, first order" in " ".join(m.value for m in cy.markdown)
    assert lines(cy)[2] == "priority 0 · room r1"  # no dwell: the order is the occasion, not a stay
    assert [c.value for c in cy.code] == [
        "Hi Cy! Thank you so much for your first order with us 💛 If you have any question about it, just message me."]
    card = at.get_by_key(f"task-{k('v1')}")
    local = datetime.fromtimestamp(NOW, UTC).astimezone(ZoneInfo("America/Mexico_City"))
    assert lines(card) == [
        "Ana", f"MX · es-MX · their time {local:%H:%M} (CST)",
        f"stayed {int(task_hash(r, 'v1')['dwell_ms']) // MIN} min · "
        f"priority {task_hash(r, 'v1')['priority']} · room r1",
        "1 comments · 3 likes · viewed: hoodie-m · carted: hoodie-m", "“¿tienen talla M?”"]
    decent = "Good time to message" if 9 <= local.hour < 21 else "Night there: wait"
    assert any(decent in m.value for m in card.markdown)
    assert [c.value for c in card.code] == [
        "¡Hola Ana! Gracias por acompañarnos en el live de hoy 💛 Vi que te interesó hoodie-m, "
        "¿quieres que te pase el link?"]
    evil = at.get_by_key(f"task-{k('v2')}")
    assert texts(evil)[0] == EVIL and "“<b>hi</b> **there**”" in lines(evil)
    assert all("<script" not in m.value and "<b>" not in m.value for m in at.markdown)


def test_a_task_state_this_version_does_not_know_is_not_echoed_as_markdown(app, r, tasks):
    from fanops.state import pack_task, unpack_task

    tk = keys.tasks(SHOP, "r1")
    rec = unpack_task(r.hget(tk, "v1"))
    rec.state = "**[x](javascript:alert(1))** <img src=x>"
    r.hset(tk, "v1", pack_task(rec))
    at = app("queue", operator="Mei")
    card = at.get_by_key(f"task-{k('v1')}")
    badges = " ".join(m.value for m in card.markdown)
    assert "Unknown state" in badges and "javascript" not in badges and "<img" not in badges


def test_claim_sent_skip_release_and_two_operators(app, r, tasks):
    mei = app("queue", operator="Mei")
    lin = app("queue", operator="Lin")  # drawn before Mei's claim: Ana's Claim button is there
    mei.button(key=f"claim-{k('v1')}").click().run()
    assert mei.success[0].value.startswith("Claimed")
    assert task_hash(r, "v1")["state"] == "claimed" and task_hash(r, "v1")["holder"] == "Mei"
    lin.button(key=f"claim-{k('v1')}").click().run()  # too late
    assert lin.warning[0].value == "Another operator claimed this task first:"
    assert "Mei" in texts(lin)
    assert task_hash(r, "v1")["holder"] == "Mei"
    card = lin.get_by_key(f"task-{k('v1')}")
    assert "Claimed by Mei" in lines(card) and not card.button  # shown as Mei's, nothing to press
    assert texts(mei.get_by_key(f"name-{k('v1')}")) == ["Ana"] and card_names(mei)[0] == "Ana"
    mei.button(key=f"sent-{k('v1')}").click().run()
    assert task_hash(r, "v1")["state"] == "sent"
    assert r.zscore(keys.sent_log(SHOP), "v1") is not None
    assert card_names(mei) == [EVIL, "Cy"]
    # skip needs a reason
    mei.button(key=f"skip-{k('v2')}").click().run()
    assert mei.error[0].value.startswith("Say why")
    assert task_hash(r, "v2")["state"] == "pending"
    # claim and release
    mei.button(key=f"claim-{k('v2')}").click().run()
    assert task_hash(r, "v2")["state"] == "claimed"
    mei.button(key=f"release-{k('v2')}").click().run()
    assert task_hash(r, "v2")["state"] == "pending" and "holder" not in task_hash(r, "v2")
    mei.text_input(key=f"reason-{k('v2')}").input("spam account").run()
    mei.button(key=f"skip-{k('v2')}").click().run()
    h = task_hash(r, "v2")
    assert (h["state"], h["skip_reason"], h["skipped_by"]) == ("skipped", "spam account", "Mei")
    assert metrics(mei.main) == {"Pending": "1", "Claimed": "0", "Sent": "1", "Skipped": "1",
                                 "Converted": "1", "Withdrawn": "1", "Expired": "0"}
    assert card_names(mei) == ["Cy"]  # the thank-you for Cy's order


def test_no_operator_name_no_actions(app, r, tasks):
    at = app("queue")
    assert at.info[0].value == "Enter your name in the sidebar to claim tasks."
    assert at.button(key=f"claim-{k('v1')}").disabled


def test_queue_filters_survive_refreshes(app, r, tasks):
    at = app("queue", operator="Mei")
    at.selectbox(key="q_lang__en").set_value("es").run()
    assert card_names(at) == ["Ana"]
    at.run()
    assert card_names(at) == ["Ana"] and at.selectbox(key="q_lang__en").value == "es"
    at.selectbox(key="q_lang__en").set_value("").run()
    at.selectbox(key="q_tier__en").set_value("first_buyer").run()
    assert card_names(at) == ["Cy"]  # the thank-you for the order that made Cy a first buyer
    at.selectbox(key="q_tier__en").set_value("new_fan").run()
    at.selectbox(key="q_kind__en").set_value("thank_first_order").run()
    assert card_names(at) == [] and at.info[-1].value == "No task matches these filters."
    at.selectbox(key="q_tier__en").set_value("").run()
    assert card_names(at) == ["Cy"]
    at.selectbox(key="q_kind__en").set_value("lingered").run()
    assert card_names(at) == ["Ana", EVIL]
    at.selectbox(key="q_kind__en").set_value("").run()
    at.segmented_control(key="q_state__en").set_value("withdrawn").run()
    assert card_names(at) == ["Bo"] and not at.get_by_key(f"task-{k('v3')}").button
    at.segmented_control(key="q_state__en").set_value("converted").run()
    assert card_names(at) == ["Cy"]


def test_queue_shows_ten_cards_a_page_by_default_and_more_on_request(app, r, cfg):
    # 25 viewers who each stay 4 minutes: 25 pending tasks, by comments (i % 5), ties by viewer id
    frames = []
    for i in range(25):
        frames += [ev(100 + 3 * i, f"v-{i:02d}", 0, "join", {"name": f"N{i:02d}"}),
                   *[ev(1000 + 30 * i + j, f"v-{i:02d}", (10 + j) * S, "comment", text="hi") for j in range(i % 5)],
                   ev(101 + 3 * i, f"v-{i:02d}", 240 * S, "like")]
    ingest_frames(cfg, [json.dumps(frames)])
    drain(r, cfg)
    at = app("queue", operator="Mei")
    assert metrics(at.main)["Pending"] == "25"
    names = card_names(at)
    assert len(names) == 10 and names[:7] == ["N04", "N09", "N14", "N19", "N24", "N03", "N08"]
    assert at.caption[-1].value == "Showing the first 10 tasks by priority."
    at.selectbox(key="q_page__w").set_value(50).run()
    assert len(card_names(at)) == 25 and card_names(at)[:10] == names
    at.run()  # the choice survives a refresh
    assert len(card_names(at)) == 25


def test_a_task_that_converts_leaves_the_list_at_the_next_refresh(app, r, cfg, tasks):
    at = app("queue", operator="Mei")
    assert card_names(at) == ["Ana", EVIL, "Cy"]
    ingest_frames(cfg, [json.dumps(ev(99, "v2", 400 * S, "order", order_id="o2", amount=5, currency="EUR"))])
    drain(r, cfg)
    at.run()
    from screens._ui import task_key

    # the lingered task converted; the order makes a thank-you task instead (v1.1), after Ana's by priority
    assert card_names(at) == ["Ana", EVIL, "Cy"]
    assert not keyed(at.main, f"task-{k('v2')}") and keyed(at.main, f"task-{task_key('thank_first_order:0:v2')}")
    assert metrics(at.main)["Converted"] == "2"


# --- settings ---------------------------------------------------------------------------
def test_a_bad_value_is_refused_and_nothing_is_saved(app, r):
    at = app("settings", operator="Mei")
    at.number_input(key="rule-dormant_days-0").set_value(0)
    at.number_input(key="rule-active_orders-0").set_value(-1)
    at.button(key="save_btn").click().run()
    assert at.error[0].value == "Nothing was saved: 2 problem(s)."
    assert "• dormant_days: 0 is out of range (1 to 3650 days)" in texts(at)
    assert r.hgetall(keys.rules(SHOP)) == {}


def test_a_bad_template_is_refused(app, r):
    at = app("settings")
    at.text_area(key="tpl-new_fan-en-with_product-0").input("Hi {nmae}, see {product}").run()
    assert "Template edits are not saved yet." in [c.value for c in at.caption]
    at.button(key="save_btn").click().run()
    assert any("unknown placeholder {nmae}" in t for t in texts(at))
    assert r.hgetall(keys.rules(SHOP)) == {}


def test_what_if_then_save_then_reset(app, r, cfg):
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    # what the oracle says the tiers are with a 5-day dormancy
    ref = reference.Reference()
    ref.feed(read_lines(SAMPLES / "weeks-small.jsonl"), int(time.time() * 1000))
    today = ref.status(SHOP)["tiers"]
    old = reference.DORMANT_AFTER
    reference.DORMANT_AFTER = 5 * 86_400_000
    try:
        new = ref.status(SHOP)["tiers"]
    finally:
        reference.DORMANT_AFTER = old
    at = app("settings", operator="Mei")
    at.number_input(key="rule-dormant_days-0").set_value(5)
    at.button(key="whatif_btn").click().run()
    table = at.dataframe[0].value
    tiers = ["new_fan", "first_buyer", "active", "dormant"]
    assert list(table["Today"]) == [today[t] for t in tiers]
    assert list(table["New thresholds"]) == [new[t] for t in tiers]
    assert r.hgetall(keys.rules(SHOP)) == {}  # a what-if saves nothing
    at.button(key="save_btn").click().run()
    assert at.success[0].value.startswith("Saved (version 1)")
    assert float(r.hget(keys.rules(SHOP), "dormant_days")) == 5 and r.hget(keys.rules(SHOP), "changed_by") == b"Mei"
    # the app does not recount (it would hold a page for the whole shop): a scorer does, at its next
    # round; until then the page says who will do it
    assert at.warning[0].value.startswith("No scorer is running")
    Worker(r, cfg).time_pass()
    assert {t: int(v) for t, v in r.hgetall(keys.tiers(SHOP)).items() if t.decode() in tiers} == {
        t.encode(): new[t] for t in tiers}  # recounted by the scorer's round
    at.switch_page("screens/live.py").run()
    shop = metrics(at.get_by_key("tiers-shop"))
    assert shop["Dormant"] == str(new["dormant"])  # the live board shows it
    at.switch_page("screens/settings.py").run()
    assert at.number_input(key="rule-dormant_days-1").value == 5
    at.button(key="reset_btn").click().run()
    assert at.success[0].value.startswith("Back to the defaults (version 2)")
    assert float(r.hget(keys.rules(SHOP), "dormant_days")) == RuleSettings().dormant_days
    assert r.hget(keys.rules(SHOP), "templates") is None
    assert at.number_input(key="rule-dormant_days-2").value == 30
    Worker(r, cfg).time_pass()
    assert {t: int(v) for t, v in r.hgetall(keys.tiers(SHOP)).items() if t.decode() in tiers} == {
        t.encode(): today[t] for t in tiers}


def test_a_template_edit_is_saved_and_used_for_suggestions(app, r, tasks):
    at = app("settings", operator="Mei")
    at.selectbox(key="tpl_lang").set_value("es").run()
    at.text_area(key="tpl-new_fan-es-with_product-0").input("Hola {name}, ¿te paso el link de {product}?").run()
    at.button(key="save_btn").click().run()
    saved = json.loads(r.hget(keys.rules(SHOP), "templates"))
    assert saved["new_fan"]["es"]["with_product"] == "Hola {name}, ¿te paso el link de {product}?"
    at.switch_page("screens/queue.py").run()
    assert [c.value for c in at.get_by_key(f"task-{k('v1')}").code] == ["Hola Ana, ¿te paso el link de hoodie-m?"]


def test_a_coupon_code_for_a_kind_and_tier_is_saved_and_offered_in_that_kinds_message(app, r, tasks):
    from screens._ui import task_key

    at = app("settings", operator="Mei")
    at.selectbox(key="tpl_key__en").set_value("thank_first_order").run()
    at.text_input(key="coupon-thank_first_order-first_buyer-0").input("THANKS10").run()
    at.button(key="save_btn").click().run()
    saved = json.loads(r.hget(keys.rules(SHOP), "templates"))
    assert saved["coupons"] == {"thank_first_order": {"first_buyer": "THANKS10"}}
    at.switch_page("screens/queue.py").run()
    cy = at.get_by_key(f"task-{task_key('thank_first_order:0:v4')}")  # Cy, a first buyer
    assert [c.value for c in cy.code][0].endswith("A little thank-you for next time: code THANKS10 🎁")
    assert "THANKS10" not in at.get_by_key(f"task-{k('v1')}").code[0].value  # a lingered task has none


def test_a_stale_editor_cannot_save_over_a_newer_save(app, r):
    at = app("settings")
    from fanops import rules_store

    rules_store.save(r, SHOP, {"dormant_days": 20}, by="Lin")
    at.run()
    assert at.warning[0].value.startswith("Someone saved new settings")
    at.number_input(key="rule-active_orders-0").set_value(3)
    at.button(key="save_btn").click().run()
    assert "changed meanwhile" in " ".join(texts(at))
    assert float(r.hget(keys.rules(SHOP), "active_orders")) == 2
    at.button(key="reload").click().run()
    assert at.number_input(key="rule-dormant_days-1").value == 20


# --- language -------------------------------------------------------------------------------
def test_chinese_ui_from_the_sidebar_survives_page_switches(app, r):
    write_live_room(r)
    at = app()
    at.radio(key="lang__w").set_value("zh-Hans").run()
    assert at.title[0].value == "直播看板"
    assert "在线观众" in metrics(at.get_by_key("headline"))
    at.switch_page("screens/queue.py").run()
    assert at.title[0].value == "私信跟进队列" and at.session_state["lang"] == "zh-Hans"


def test_html_is_only_ever_a_fixed_style_block_never_viewer_text():
    """``unsafe_allow_html`` renders its text as HTML: every such call in the app takes a string
    written in the source (a style block), never a value built at run time from data."""
    import ast

    calls = []
    for path in [ROOT / "app.py", *sorted((ROOT / "screens").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and any(
                    k.arg == "unsafe_allow_html" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords):
                arg = node.args[0] if node.args else None
                calls.append((f"{path.name}:{node.lineno}", isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                              and arg.value.lstrip().startswith("<style>") and arg.value.rstrip().endswith("</style>")))
    assert calls and all(ok for _, ok in calls), calls


# --- Redis away -------------------------------------------------------------------
def test_the_live_board_says_plainly_since_when_redis_is_unreachable_and_recovers(tmp_path, monkeypatch):
    import redis

    from fanops.runtime import server

    d, port = tmp_path / "redis", server.free_port()
    url = server.ensure_running(d, port=port).url
    try:
        monkeypatch.setenv("REDIS_URL", url)
        monkeypatch.setattr(rooms, "wall_clock", lambda: NOW)
        write_live_room(redis.Redis.from_url(url))
        at = AppTest.from_file(APP, default_timeout=30)
        at.run()
        assert not at.exception and not at.error
        server.stop(d)
        at.run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert any(e.startswith("Redis unreachable since ") and "retrying on every refresh" in e
                   for e in errors), errors
        server.ensure_running(d, port=port)
        at.run()
        assert not at.exception and not at.error
        assert metrics(at)  # the board is back
    finally:
        server.stop(d)


def test_after_a_save_the_settings_page_says_the_scorer_recounts_until_it_has(app, r, cfg):
    from fanops import rules_store

    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    beat(r, "scorer", "s1", {"name": "s1", "running": True, "at": time.time()})
    rules_store.save(r, SHOP, {"dormant_days": 20}, by="Lin")
    at = app("settings")
    assert [i.value for i in at.info] == ["The scorer is recounting every fan's tier under version 1…"]
    Worker(r, cfg).time_pass()  # the running scorer's next round
    at = app("settings")
    assert not at.info and not at.warning
