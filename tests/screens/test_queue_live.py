"""The follow-up queue during a show: it opens on the live room's tasks, a toggle shows every
room's, and it shows and filters expired tasks (AppTest, real Redis, real scorer)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from scoring.worker import Worker
from screens.reads import rooms
from tests.scoring.test_scoring_scenarios import Story, at

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


@pytest.fixture
def two_rooms(r, cfg) -> Story:
    """A lurker in an ended room (last event 6 minutes before now) and one in the live room."""
    s = Story(r, cfg)
    s.submit(s.say("old-fan", "join", "r-old", at(minutes=0)), s.say("live-fan", "join", "r-live", at(minutes=0)))
    s.advance(at(minutes=6), room="r-live")
    return s


@pytest.fixture
def queue_page(redis_url, cfg, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FANOPS_DATA_DIR", str(cfg.data_dir))
    monkeypatch.setattr(rooms, "wall_clock", lambda: at(minutes=6) / 1000)

    def make() -> AppTest:
        t = AppTest.from_file(APP, default_timeout=30)
        t.run()
        t.switch_page("screens/queue.py").run()
        assert not t.exception, t.exception
        return t

    return make


def rooms_shown(t: AppTest) -> set[str]:
    """The rooms named on the task cards (each card's details name its room)."""
    out = set()
    for x in t.text:
        for rm in ("r-old", "r-live"):
            if f"room {rm}" in x.value:
                out.add(rm)
    return out


def rooms_in_order(t: AppTest) -> list[str]:
    """The rooms of the task cards, top to bottom."""
    return [rm for x in t.text for rm in ("r-old", "r-live") if f"room {rm}" in x.value]


def test_during_a_show_the_queue_opens_on_the_live_rooms_tasks_first_then_the_others(two_rooms, queue_page):
    t = queue_page()
    order = rooms_in_order(t)
    assert set(order) == {"r-old", "r-live"}  # nothing hidden
    assert order == sorted(order, key=lambda rm: rm != "r-live")  # every live-room card before the others
    assert "The live room's tasks first:" in [c.value for c in t.caption]
    t.toggle(key="q_live_first").set_value(False).run()
    assert rooms_shown(t) == {"r-old", "r-live"}


def test_with_no_live_room_every_rooms_tasks_show(two_rooms, queue_page, monkeypatch):
    monkeypatch.setattr(rooms, "wall_clock", lambda: at(minutes=60) / 1000)
    t = queue_page()
    assert rooms_shown(t) == {"r-old", "r-live"}


def test_expired_tasks_are_counted_and_listed(two_rooms, queue_page, r, cfg):
    Worker(r, cfg, name="later", clock=lambda: time.time() + 73 * 3600).archive_idle()
    t = queue_page()
    assert {m.label: m.value for m in t.metric}["Expired"] == "2"
    assert rooms_shown(t) == set()
    t.segmented_control(key="q_state__en").set_value("expired").run()
    t.toggle(key="q_live_first").set_value(False).run()
    assert rooms_shown(t) == {"r-old", "r-live"}
