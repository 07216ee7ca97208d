"""The fans screen with AppTest, its read model and exports, against a real Redis filled by the
real consumer and scorer (a small story: four viewers, one show)."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fanops import fans, keys
from fanops.read import status
from fanops.state import Consent, ViewerState, pack
from screens.reads import fans as fan_reads
from tests.conftest import wait_for
from tests.scoring.test_scoring_scenarios import SHOP, Story, at

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def _with(e: dict, **viewer) -> dict:
    e["viewer"].update(viewer)
    return e


@pytest.fixture
def shop(r, cfg) -> Story:
    """anna buys (first buyer, US), bo refuses DMs (CN), "=cmd" is named like a formula, dee lingers."""
    s = Story(r, cfg)
    s.submit(_with(s.say("anna", "join", "r-1", at(minutes=0)), name="Anna K", country="US", lang="en-US"),
             _with(s.say("bo", "join", "r-1", at(minutes=0)), name="Bo", country="CN", lang="zh"),
             _with(s.say("evil", "join", "r-1", at(minutes=0)), name="=cmd|'/c calc'!A1", country="US"),
             s.say("dee", "join", "r-1", at(minutes=0)))
    s.submit(s.say("anna", "order", "r-1", at(minutes=1), order_id="o-1", amount=39.9, currency="USD"),
             s.say("bo", "consent", "r-1", at(minutes=1), dm=False))
    s.advance(at(minutes=4))  # dee lingered: a task
    return s


@pytest.fixture
def app(redis_url, cfg, monkeypatch):
    st.cache_resource.clear()  # the fans frame and the tier history are kept per process: not from another test
    st.cache_data.clear()
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FANOPS_DATA_DIR", str(cfg.data_dir))

    def make(**query) -> AppTest:
        t = AppTest.from_file(APP, default_timeout=30)
        t.run()
        for k, v in query.items():
            t.query_params[k] = v
        t.switch_page("screens/fans.py").run()
        assert not t.exception, t.exception
        return t

    return make


def test_the_list_shows_every_known_viewer_and_filters_by_tier_and_channel(shop, app):
    t = app()
    table = t.dataframe[0].value
    assert sorted(table["viewer_id"]) == ["anna", "bo", "dee", "evil", "someone-else"]
    assert t.get("plotly_chart")  # the tiers over time
    t.multiselect(key="f_tier").select("first_buyer").run()
    assert list(t.dataframe[0].value["viewer_id"]) == ["anna"]
    assert t.metric[0].value == "1"
    t.multiselect(key="f_tier").unselect("first_buyer").run()
    t.multiselect(key="f_channel").select("dm").run()
    assert "bo" not in set(t.dataframe[0].value["viewer_id"])  # refused DMs: not reachable
    t.multiselect(key="f_country").select("CN").run()  # bo, the one fan in CN, refused DMs
    assert [x.value for x in t.info] == ["No fan matches these filters."] and not t.dataframe


def test_sorting_by_spend_puts_the_buyer_first_and_the_spend_filter_keeps_only_buyers(shop, app):
    t = app()
    t.selectbox(key="f_sort").select("spend_total").run()
    assert t.dataframe[0].value["viewer_id"].iloc[0] == "anna"
    t.number_input(key="f_spend_min").set_value(10.0).run()
    assert list(t.dataframe[0].value["viewer_id"]) == ["anna"]
    assert list(t.dataframe[0].value["spend"]) == ["39.90 USD"]


def test_a_fans_page_has_the_show_the_order_the_tier_change_and_the_task(shop, app):
    t = app(fan="anna")
    assert "anna" in [x.value for x in t.text]
    shows = t.dataframe[0].value  # shows, tier changes, tasks, messages sent
    assert list(shows["room"]) == ["r-1"] and list(shows["orders"]) == [1]
    assert "o-1" in [x.value for x in t.text]
    changes = t.dataframe[1].value
    assert list(changes["to"])[-1] == "first_buyer"
    tasks = t.dataframe[2].value  # anna's order made a thank-you task (v1.1 kinds)
    assert list(zip(tasks["kind"], tasks["room"], tasks["state"], strict=True)) == [
        ("Thank-you, first order", "r-1", "pending")]
    t2 = app(fan="dee")
    tasks = t2.dataframe[2].value
    assert list(tasks["state"]) == ["pending"] and list(tasks["room"]) == ["r-1"]
    assert list(tasks["kind"]) == ["Lingered"]
    t3 = app(fan="nobody")
    assert t3.warning and "No such viewer" in t3.warning[0].value


def test_the_page_reads_in_simplified_chinese(shop, redis_url, cfg, monkeypatch):
    st.cache_resource.clear()
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FANOPS_DATA_DIR", str(cfg.data_dir))
    t = AppTest.from_file(APP, default_timeout=30)
    t.session_state["lang"] = "zh-Hans"
    t.run()
    t.switch_page("screens/fans.py").run()
    assert not t.exception, t.exception
    assert t.title[0].value == "粉丝" and t.metric[0].label == "符合条件的粉丝"


def test_the_csv_export_guards_formulas_and_parquet_keeps_the_rows(shop, r):
    df = fans.fans_frame(r, SHOP)
    text = fans.to_csv(df).decode()
    header, *rows = text.splitlines()
    assert header.split(",") == list(fans.EXPORT_COLUMNS)
    evil = next(x for x in rows if x.startswith("evil,"))
    assert "'=cmd" in evil
    for bad in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        one = pl.DataFrame({"name": [bad]})
        assert fans.guard_formulas(one)["name"][0] == "'" + bad
    assert fans.guard_formulas(pl.DataFrame({"name": ["Anna"]}))["name"][0] == "Anna"
    back = pl.read_parquet(io.BytesIO(fans.to_parquet(df)))
    assert back.columns == list(fans.EXPORT_COLUMNS) and back.height == 5
    assert back.filter(pl.col("viewer_id") == "bo")["channels"][0] == ""  # refused DMs


def test_the_frame_reads_packed_states_in_both_forms(r):
    rel = ViewerState(1_000, 9_000, {"r": [1_000, 9_000]}, ["o"], {"USD": 5.0, "EUR": 2.0},
                      [Consent(2_000, "c", True)], name="A", tier="first_buyer")
    plain = ViewerState(-5, 7, {}, tier="new_fan")  # a ts before its base: packed as it is
    r.hset(keys.viewers("s"), mapping={"a": pack(rel), "p": pack(plain)})
    df = fans.fans_frame(r, "s").sort("viewer_id")
    assert df["last_active"].to_list() == [9_000, 7]
    assert df["tier"].cast(pl.String).to_list() == ["first_buyer", "new_fan"]
    assert df["spend"][0] == "2.00 EUR; 5.00 USD" and df["spend_total"][0] == 7.0
    assert fans.spend_dict(df["spend"][0]) == {"EUR": 2.0, "USD": 5.0}
    assert df["dm_consent"].to_list() == [True, None]


def test_a_page_is_the_sorted_slice(r):
    df = pl.DataFrame({"viewer_id": [f"v{i:03}" for i in range(300)], "last_active": [i % 7 for i in range(300)]})
    want = df.sort(["last_active", "viewer_id"], descending=[True, False]).slice(50, 50)
    assert fans.page(df, "last_active", True, 50, 50).equals(want)
    with pytest.raises(ValueError, match="cannot sort"):
        fans.page(df, "password")
    with pytest.raises(ValueError, match="unknown channel"):
        fans.filtered(df, fans.FanFilter(channels=("pigeon",)))


def test_the_cache_keeps_the_frame_while_the_shop_is_unchanged(shop, r):
    c = fan_reads.FanCache(max_age_s=0, background=False)
    first = c.get(r, SHOP, now=1000.0)
    assert c.get(r, SHOP, now=2000.0) is first  # old, but nothing changed
    shop.event("newcomer", "join", "r-1", at(minutes=5))
    again = c.get(r, SHOP, now=3000.0)
    assert again is not first and "newcomer" in again.frame["viewer_id"].to_list()


def test_a_changed_shop_is_read_again_in_the_background_while_the_old_list_shows(shop, r):
    c = fan_reads.FanCache(max_age_s=0)
    first = c.get(r, SHOP, now=1000.0)
    shop.event("newcomer", "join", "r-1", at(minutes=5))
    assert c.get(r, SHOP, now=2000.0) is first  # the list as it was, while the new one is built
    newer = wait_for(lambda: c.shops[SHOP] if c.shops[SHOP] is not first else None, what="the new frame")
    assert "newcomer" in newer.frame["viewer_id"].to_list() and c.get(r, SHOP, now=2001.0) is newer


def test_the_tier_history_walks_back_from_todays_counts(shop, r, cfg):
    shop.advance(at(days=31))  # a month on: everyone but someone-else falls dormant that day
    h = fan_reads.tier_history(r, cfg, SHOP)
    days = sorted(h["day"].unique().to_list())
    assert len(days) == 2
    by_day = {d: dict(zip(g["tier"], g["viewers"], strict=True)) for (d,), g in h.group_by("day")}
    assert by_day[days[1]] == status(r, SHOP)["tiers"] == {"new_fan": 1, "first_buyer": 0, "active": 0,
                                                             "dormant": 4}
    assert by_day[days[0]] == {"new_fan": 4, "first_buyer": 1, "active": 0, "dormant": 0}


def test_a_fans_page_reads_an_archived_show_from_its_archive(shop, r, cfg):
    from fanops import queue
    from scoring.archive import archive_room

    queue.Operator(r, SHOP, "ana").claim(queue.task_id("r-1", "dee"))
    queue.Operator(r, SHOP, "ana").mark_sent(queue.task_id("r-1", "dee"))
    shop.event("anna", "join", "r-2", at(days=1))  # the shop clock moves a day on: r-1 is over
    archive_room(r, cfg, SHOP, "r-1")
    anna = fan_reads.fan_record(r, cfg, SHOP, "anna")
    first = anna["shows"][0]
    assert (first["room"], first["archived"], first["orders"]) == ("r-1", True, 1)
    assert [s["room"] for s in anna["shows"]] == ["r-1", "r-2"]
    assert [c["to"] for c in anna["tier_changes"]][-1] == "first_buyer"
    dee = fan_reads.fan_record(r, cfg, SHOP, "dee")
    assert [(t["room"], t["state"], t["sent_by"]) for t in dee["sent"]] == [("r-1", "sent", "ana")]
    h = fan_reads.tier_history(r, cfg, SHOP)
    last = h.filter(pl.col("day") == h["day"].max())
    assert dict(zip(last["tier"], last["viewers"], strict=True)) == status(r, SHOP)["tiers"]  # today's counts
    assert h["day"].n_unique() == 1  # every change on one day (the shop clock's): one point
