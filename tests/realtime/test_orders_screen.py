"""The Kept orders screen (``screens/orders.py``), with AppTest against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fanops import keys

ROOT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)

    def make(**state) -> AppTest:
        at = AppTest.from_file(str(ROOT_DIR / "app.py"), default_timeout=30)
        for k, v in state.items():
            at.session_state[k] = v
        at.run()
        at.switch_page("screens/orders.py").run()
        assert not at.exception, at.exception
        return at

    return make


def keep(r, order_id: str, why: str, **order) -> str:
    eid = f"generic:{order_id}"
    o = {"source": "generic", "event_id": eid, "shop": "default", "order_id": order_id, "amount": 12.5,
         "currency": "EUR", "ts": 1_763_856_000_000, "viewer": None, "room": None, "email": "a@b.c",
         "phone": None, "flags": {}, **order}
    r.hset(keys.orders_waiting("default"), eid, json.dumps({"order": o, "why": why, "received": 1}))
    return eid


def test_kept_orders_are_listed_with_why_and_an_operators_link_is_handed_to_the_server(app, r):
    at = app()
    assert at.title[0].value == "Kept shop orders" and at.info  # none kept: it says so
    eid = keep(r, "<b>o-1</b>", "no viewer: the order names none, and no viewer has given its email or phone",
               room="live-7")
    at = app(operator="Mia")
    shown = [t.value for t in at.text]
    assert any(t.startswith("<b>o-1</b> · 12.50 EUR · generic") for t in shown)  # as text, never markup
    assert any("no viewer: the order names none" in t for t in shown)
    assert at.text_input[1].value == "live-7"  # the room it named, ready to keep
    at.text_input[0].input("u-42")
    at.button[0].click().run()
    assert json.loads(r.hget(keys.orders_links("default"), eid)) == {"viewer": "u-42", "room": "live-7",
                                                                      "operator": "Mia"}
    assert at.success[0].value.startswith("Linked.")
    assert [c.value for c in at.caption][-1].startswith("Linked: the orders server applies it")  # no second link


def test_a_link_without_a_viewer_is_refused_and_nothing_is_written(app, r):
    keep(r, "o-2", "no viewer")
    at = app()
    at.button[0].click().run()
    assert at.error and "viewer id" in at.error[0].value
    assert r.hlen(keys.orders_links("default")) == 0
