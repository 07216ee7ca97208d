"""Post-show review (the team, after the show): headline, charts, viewers, downloads, HTML report.

Reads only the archive (``review.archive_files``) and the pure analysis (``review.analysis``);
Redis is touched only when someone asks to update the follow-up outcomes from the live
queue, through the app's one client (``screens._ui``).  Runs inside the app (``st.navigation``)
or alone: ``streamlit run screens/review.py`` (``?lang=zh-Hans`` in the URL for Chinese).
Viewer names and other feed text are shown only in data grids and as plain text, never
as Markdown or HTML.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # run alone with `streamlit run screens/review.py`
    sys.path.insert(0, _ROOT)

import polars as pl  # noqa: E402
import streamlit as st  # noqa: E402
from streamlit.delta_generator import DeltaGenerator  # noqa: E402

from fanops.config import Config  # noqa: E402
from fanops.errors import ArchiveError, FanopsError  # noqa: E402
from fanops.paths import fs_name  # noqa: E402
from fanops.state import TIERS  # noqa: E402
from fanops.templates import clean_text  # noqa: E402
from review import analysis, archive_files, report  # noqa: E402
from scoring.archive import refresh_followups  # noqa: E402
from screens import _ui  # noqa: E402

NONE = "—"
TABLES = ("viewers", "headlines", "funnel", "conversion_tier", "conversion_country", "conversion_lang", "sankey",
          "followups", "attributed", "gmv", "top_products", "top_fans", "presence", "events", "followup_tasks",
          "transitions")  # the downloads, each named by ``review.t.<table>`` in fanops.i18n

_ui.init_from_query()  # alone, the language comes from the URL; in the app, app.py did this already
tr = _ui.translator()


@st.cache_resource(show_spinner=False, max_entries=4)
def _review(_cfg: Config, shop: str, generations: tuple[tuple[str, int], ...]) -> analysis.Review:
    """The analysis of the shop's archived shows; a new generation of any (follow-ups refreshed) is a new one."""
    shows = [archive_files.read_room(_cfg, shop, room) for room, _ in generations]
    return analysis.analyse(analysis.load(shows))


def _label(info: archive_files.ArchiveInfo) -> str:
    when = datetime.fromtimestamp(info.first_ts / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    return f"{when} · {clean_text(info.room, 60)}"  # no bidi override of the feed's reorders the label


def _metrics(rv: analysis.Review, room: str, compare: str | None) -> None:
    h = analysis.headline(rv, room)
    c = analysis.headline(rv, compare) if compare else None
    items = analysis.HEADLINE_METRICS
    for i in range(0, len(items), 7):
        cols = st.columns(7)
        for col, (m, _) in zip(cols, items[i:i + 7], strict=False):
            v = h.get(m)
            delta = None
            if c is not None and v is not None and c.get(m) is not None:
                d = v - c[m]
                delta = f"{d:+.1%}" if m == "conversion" else f"{d:+,.1f}" if isinstance(d, float) else f"{d:+,}"
            col.metric(tr(f"review.m.{m}"), report.fmt(v, m), delta=delta)
    gmv = "; ".join(f"{cur} {amt:,.2f}" for cur, amt in h["gmv"].items()) or NONE
    st.text(f"{tr('review.gmv')} {gmv}")


def _tiers_filter(where: DeltaGenerator, label: str, name: str) -> list[str]:
    """A multiselect of tiers, named in the reader's language; the choice lives in
    ``st.session_state[name]`` and so survives a language switch (the widget's key carries it)."""
    wkey = f"{name}__{_ui.lang()}"
    if wkey not in st.session_state:
        st.session_state[wkey] = list(st.session_state.get(name, []))
    chosen: list[str] = where.multiselect(label, TIERS, format_func=lambda x: tr(f"tier.{x}"), key=wkey)
    st.session_state[name] = chosen
    return chosen


def _viewer_table(shows: dict[str, archive_files.RoomArchive], room: str) -> pl.DataFrame:
    v = shows[room].viewers().collect()
    with st.expander(tr("review.filters"), expanded=False):
        a, b, c = st.columns(3)
        te = _tiers_filter(a, tr("review.tier_entry"), "f_te")
        tc = _tiers_filter(a, tr("review.tier_close"), "f_tc")
        countries = sorted(v["country"].fill_null(analysis.UNKNOWN).unique().to_list())
        langs = sorted(v.select(l=pl.col("lang").str.split("-").list.first().str.to_lowercase()
                                .fill_null(analysis.UNKNOWN))["l"].unique().to_list())
        co = b.multiselect(tr("review.country"), countries, key="f_co")
        la = b.multiselect(tr("review.lang"), langs, key="f_la")
        buyers = c.checkbox(tr("review.buyers_only"), key="f_buy")
        dwell = c.number_input(tr("review.min_dwell"), min_value=0.0, value=0.0, step=1.0, key="f_dw")
        q = c.text_input(tr("review.search"), key="f_q")
    out = analysis.filter_viewers(v, tiers_entry=te, tiers_close=tc, countries=co, langs=la, buyers_only=buyers,
                                  min_dwell_min=dwell, search=q)
    st.caption(tr("review.shown", n=f"{out.height:,}", total=f"{v.height:,}"))
    st.dataframe(analysis.readable(out.drop("room")), hide_index=True, height=380)
    return out


def _downloads(rv: analysis.Review, shows: dict[str, archive_files.RoomArchive], room: str, compare: str | None,
               viewers: pl.DataFrame) -> None:
    lazy = {"events": shows[room].events, "followup_tasks": shows[room].followups,
            "transitions": shows[room].transitions}

    def table(name: str) -> pl.DataFrame:
        if name == "viewers":
            return viewers
        if name in lazy:
            return lazy[name]().collect()
        return rv.headlines if name == "headlines" else rv.table(name, room)

    safe = fs_name(room)[:60]
    pick = _ui.sticky("select", tr("review.table"), list(TABLES), "dl_table",
                      format_func=lambda n: tr(f"review.t.{n}"))
    a, b, c = st.columns(3)
    a.download_button(tr("review.csv"), data=lambda: analysis.to_csv(table(pick)), file_name=f"{safe}-{pick}.csv",
                      mime="text/csv", on_click="ignore", icon=":material/download:", key="dl_csv")
    b.download_button(tr("review.parquet"), data=lambda: analysis.to_parquet(table(pick)),
                      file_name=f"{safe}-{pick}.parquet", mime="application/vnd.apache.parquet", on_click="ignore",
                      icon=":material/download:", key="dl_parquet")
    c.download_button(tr("review.html"), data=lambda: report.render_html(rv, room, compare).encode("utf-8"),
                      file_name=f"{safe}-report.html", mime="text/html", on_click="ignore",
                      icon=":material/description:", key="dl_html", type="primary")


def _refresh(cfg: Config, shop: str) -> None:
    try:
        changed = refresh_followups(_ui.client(), cfg, shop)
    except FanopsError as e:  # its message names rooms: text, never Markdown
        st.session_state["review_msg"] = ("error", tr("queue.err_other"), str(e))
        return
    _review.clear()
    st.session_state["review_msg"] = ("success", tr("review.refreshed", n=len(changed)), "")


def _charts(rv: analysis.Review, room: str, compare: str | None) -> None:
    figs = report.figures(rv, room, compare, _ui.lang())
    for pair in (("presence", "dwell"), ("funnel", "sankey"), ("conversion_tier", "followups"),
                 ("conversion_country", "conversion_lang")):
        cols = st.columns(2)
        for col, name in zip(cols, pair, strict=True):
            col.plotly_chart(figs[name], key=f"fig_{name}")
    st.plotly_chart(figs["products"], key="fig_products")
    if "trends" in figs:
        st.plotly_chart(figs["trends"], key="fig_trends")


def main() -> None:
    st.set_page_config(page_title=tr("nav.review"), page_icon=str(Path(__file__).resolve().parent / "icon.png"),
                       layout="wide")  # the icon from the repo: a ":material/...:" one comes from a font CDN
    cfg = _ui._settings()  # the app's one Config (screens._ui has no public name for it yet)
    st.title(tr("nav.review"))
    shops = archive_files.list_shops(cfg)
    if not shops:
        st.info(tr("review.empty"))
        return
    want = st.session_state.get("shop")
    shop = st.selectbox(tr("sidebar.shop"), shops, index=shops.index(want) if want in shops else 0, key="review_shop")
    infos = archive_files.list_archived(cfg, shop)
    by_room = {i.room: i for i in infos}
    order = [i.room for i in reversed(infos)]  # newest first
    left, right, btn = st.columns([3, 3, 2], vertical_alignment="bottom")
    room = left.selectbox(tr("review.show"), order, format_func=lambda rm: _label(by_room[rm]), key="review_room")
    compare = right.selectbox(tr("review.compare"), [NONE, *[rm for rm in order if rm != room]],
                              format_func=lambda rm: rm if rm == NONE else _label(by_room[rm]), key="review_cmp")
    compare = None if compare in (None, NONE) else compare
    btn.button(tr("review.refresh"), on_click=_refresh, args=(cfg, shop), help=tr("review.refresh_help"))
    kind, msg, detail = st.session_state.pop("review_msg", (None, None, None))
    if kind:
        _ui.problem(kind, msg, detail)
    try:
        with st.spinner(tr("review.reading")):
            rv = _review(cfg, shop, tuple((i.room, i.generation) for i in infos))
        shows = {i.room: archive_files.read_room(cfg, shop, i.room, verify=False) for i in infos}
    except ArchiveError as e:
        _ui.problem("error", tr("review.unreadable"), str(e))
        return
    if not by_room[room].complete:
        st.warning(tr("review.partial"))
    _metrics(rv, room, compare)
    _charts(rv, room, compare)
    st.subheader(tr("review.t.top_fans"))
    fans = rv.table("top_fans", room).drop("room")
    st.dataframe(analysis.readable(fans.select("score", *[c for c in fans.columns if c != "score"])), hide_index=True)
    st.subheader(tr("review.viewers"))
    viewers = _viewer_table(shows, room)
    st.subheader(tr("review.downloads"))
    _downloads(rv, shows, room, compare, viewers)


main()
