"""The review's outputs: ``python -m scoring report`` opened offline in headless Chromium (screenshot
in artifacts/), and the Streamlit review page (AppTest)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from review import analysis, archive_files
from review.report import figures
from tests.review.test_analysis import SHOP, Story, story  # noqa: F401  (the four-show story fixture)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"


def _report(st: Story, room: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "FANOPS_DATA_DIR": str(st.cfg.data_dir), "FANOPS_LOG": "WARNING"}
    return subprocess.run([sys.executable, "-m", "scoring", "report", "--shop", SHOP, "--room", room,
                           "--out", str(out), *extra], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_report_opens_offline_in_chromium_with_every_chart_drawn(story: Story, tmp_path: Path) -> None:  # noqa: F811
    if not CHROMIUM.exists():
        pytest.fail("Chromium is needed for this test: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    room, other = story.rooms[-1], story.rooms[-2]
    out = tmp_path / "report.html"
    res = _report(story, room, out, "--compare", other, "--offline")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["out"] == str(out)
    page_html = out.read_text(encoding="utf-8")
    assert story.hostile not in page_html and "<script>window.__xss" not in page_html  # escaped everywhere
    shows = [archive_files.read_room(story.cfg, SHOP, i.room) for i in archive_files.list_archived(story.cfg, SHOP)]
    n_figs = len(figures(analysis.analyse(analysis.load(shows)), room, other))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            dialogs: list[str] = []
            errors: list[str] = []
            page.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()
                                              if route.request.url.startswith("file://") else route.abort()))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(out.as_uri())
            page.wait_for_function(
                "n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n "
                "&& [...document.querySelectorAll('.js-plotly-plot')].every(d => d.querySelector('.main-svg'))",
                arg=n_figs, timeout=30_000)
            drawn: dict[str, Any] = page.evaluate("""() => ({
                plots: document.querySelectorAll('.js-plotly-plot').length,
                bars: document.querySelectorAll('.js-plotly-plot .bars .point').length,
                lines: document.querySelectorAll('.js-plotly-plot .scatterlayer .js-line').length,
                sankey: document.querySelectorAll('.js-plotly-plot .sankey-link').length,
                xss: window.__xss || null})""")
            text = page.inner_text("body")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert drawn["plots"] == n_figs
    assert drawn["bars"] > 0 and drawn["lines"] > 0 and drawn["sankey"] > 0, drawn
    assert drawn["xss"] is None and not dialogs and not errors, (drawn, dialogs, errors)
    assert [u for u in requests if not u.startswith("file://")] == []  # nothing fetched: self-contained
    assert story.hostile in text  # the hostile name is shown, as text
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def _numbers(fig: Any) -> list[list[float]]:
    out = []
    for tr in fig.data:
        for attr in ("x", "y"):
            v = getattr(tr, attr, None)
            if v is not None:
                out.append([x for x in v if isinstance(x, int | float)])
    return out


def test_charts_speak_chinese_with_the_same_numbers(story: Story) -> None:  # noqa: F811
    from fanops import i18n

    shows = [archive_files.read_room(story.cfg, SHOP, i.room) for i in archive_files.list_archived(story.cfg, SHOP)]
    rv = analysis.analyse(analysis.load(shows))
    room, other = story.rooms[-1], story.rooms[-2]
    en, zh = figures(rv, room, other), figures(rv, room, other, "zh-Hans")
    assert list(en) == list(zh)
    for name in en:
        assert _numbers(en[name]) == _numbers(zh[name]), name
        assert en[name].layout.title.text != zh[name].layout.title.text, name
    assert zh["presence"].layout.title.text == i18n.t("review.c.presence", "zh-Hans")
    assert list(zh["sankey"].data[0].node.label)[0] == i18n.t("review.c.at_entry", "zh-Hans",
                                                              tier=i18n.t("tier.new_fan", "zh-Hans"))
    assert list(en["sankey"].data[0].node.label)[0] == "new_fan (entry)"  # the report's English as it was
    assert list(zh["funnel"].data[0].y) == [i18n.t(f"review.c.step.{s}", "zh-Hans")
                                            for s in ("join", "product_view", "cart_add", "order")]


def test_report_of_a_show_not_archived_fails_with_one_line(story: Story, tmp_path: Path) -> None:  # noqa: F811
    res = _report(story, "no-such-show", tmp_path / "x.html", "--offline")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "close-room" in res.stderr
    assert not (tmp_path / "x.html").exists()


@pytest.fixture
def app_caches() -> Iterator[None]:
    """The app builds its settings once per process (``st.cache_resource``, as a real app process
    has one environment); each page test here points FANOPS_DATA_DIR at its own folder."""
    import streamlit as st

    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def test_review_page_shows_the_archived_show(story: Story, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                             app_caches: None) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FANOPS_DATA_DIR", str(story.cfg.data_dir))
    at = AppTest.from_file(str(ROOT / "screens" / "review.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    room = story.rooms[-1]
    assert at.selectbox(key="review_room").value == room  # the newest show first
    shows = [archive_files.read_room(story.cfg, SHOP, i.room) for i in archive_files.list_archived(story.cfg, SHOP)]
    h = analysis.headline(analysis.analyse(analysis.load(shows)), room)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Unique viewers"] == f"{h['unique_viewers']:,}"
    assert metrics["Orders"] == f"{h['orders']:,}"
    at.selectbox(key="review_cmp").set_value(story.rooms[0]).run()
    assert not at.exception, at.exception
    assert any(m.delta for m in at.metric)
    at.checkbox(key="f_buy").check().run()
    assert not at.exception, at.exception
    assert any("viewers" in c.value and f"of {h['unique_viewers']:,}" in c.value for c in at.caption)


def test_review_page_speaks_chinese_and_keeps_its_filters_across_a_language_switch(
        story: Story, monkeypatch: pytest.MonkeyPatch, app_caches: None) -> None:  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from fanops import i18n

    monkeypatch.setenv("FANOPS_DATA_DIR", str(story.cfg.data_dir))
    at = AppTest.from_file(str(ROOT / "screens" / "review.py"), default_timeout=60)
    at.session_state["lang"] = "zh-Hans"
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == i18n.t("nav.review", "zh-Hans")
    shows = [archive_files.read_room(story.cfg, SHOP, i.room) for i in archive_files.list_archived(story.cfg, SHOP)]
    h = analysis.headline(analysis.analyse(analysis.load(shows)), story.rooms[-1])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[i18n.t("review.m.unique_viewers", "zh-Hans")] == f"{h['unique_viewers']:,}"
    assert [s.value for s in at.subheader] == [i18n.t(k, "zh-Hans") for k in
                                               ("review.t.top_fans", "review.viewers", "review.downloads")]
    at.checkbox(key="f_buy").check().run()
    at.multiselect(key="f_te__zh-Hans").set_value(["new_fan"]).run()
    shown = [c.value for c in at.caption]
    at.session_state["lang"] = "en"
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="f_te__en").value == ["new_fan"]  # the tier filter survives the switch ...
    n = at.caption[-1].value.split()[0]
    assert at.caption[-1].value == f"{n} of {h['unique_viewers']:,} viewers"
    assert shown[-1] == i18n.t("review.shown", "zh-Hans", n=n, total=f"{h['unique_viewers']:,}")  # ... and its count


def test_review_page_without_archive_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         app_caches: None) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FANOPS_DATA_DIR", str(tmp_path / "empty"))
    at = AppTest.from_file(str(ROOT / "screens" / "review.py"), default_timeout=30).run()
    assert not at.exception
    assert "close-room" in at.info[0].value
