"""Post-show review (the team, after the show): headline, charts, viewers, downloads, HTML report.

Reads only the archive (``review.archive_files``) and the pure analysis (``review.analysis``);
Redis is touched only when someone asks to update the follow-up outcomes from the live
queue.  Runs inside the app (``st.navigation``) or alone: ``streamlit run screens/review.py``.
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

from fanops.config import Config  # noqa: E402
from fanops.errors import ArchiveError, FanopsError  # noqa: E402
from fanops.paths import fs_name  # noqa: E402
from fanops.runtime import db  # noqa: E402
from fanops.state import TIERS  # noqa: E402
from review import analysis, archive_files, report  # noqa: E402
from scoring.archive import refresh_followups  # noqa: E402

NONE = "—"
TABLES = (("viewers", "Viewers (filtered)"), ("headlines", "Headline per show"), ("funnel", "Funnel"),
          ("conversion_tier", "Conversion by tier at entry"), ("conversion_country", "Conversion by country"),
          ("conversion_lang", "Conversion by language"), ("sankey", "Tiers entry → close"),
          ("followups", "Follow-up outcomes"), ("attributed", "Orders after a DM"), ("gmv", "GMV per currency"),
          ("top_products", "Top products"), ("top_fans", "Top fans"), ("presence", "Present per minute"),
          ("events", "Raw events"), ("followup_tasks", "Follow-up tasks"), ("transitions", "Tier transitions"))


@st.cache_resource(show_spinner="Reading the archive…", max_entries=4)
def _review(data_dir: str, shop: str, generations: tuple[tuple[str, int], ...]) -> analysis.Review:
    cfg = Config.from_env(data_dir=Path(data_dir))
    shows = [archive_files.read_room(cfg, shop, room) for room, _ in generations]
    return analysis.analyse(analysis.load(shows))


def _label(info: archive_files.ArchiveInfo) -> str:
    when = datetime.fromtimestamp(info.first_ts / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    return f"{when} · {info.room[:60]}"


def _metrics(rv: analysis.Review, room: str, compare: str | None) -> None:
    h = analysis.headline(rv, room)
    c = analysis.headline(rv, compare) if compare else None
    items = analysis.HEADLINE_METRICS
    for i in range(0, len(items), 7):
        cols = st.columns(7)
        for col, (m, label) in zip(cols, items[i:i + 7], strict=False):
            v = h.get(m)
            delta = None
            if c is not None and v is not None and c.get(m) is not None:
                d = v - c[m]
                delta = f"{d:+.1%}" if m == "conversion" else f"{d:+,.1f}" if isinstance(d, float) else f"{d:+,}"
            col.metric(label, report.fmt(v, m), delta=delta)
    gmv = "; ".join(f"{cur} {amt:,.2f}" for cur, amt in h["gmv"].items()) or NONE
    st.text(f"GMV: {gmv}")


def _viewer_table(rv: analysis.Review, shows: dict[str, archive_files.RoomArchive], room: str) -> pl.DataFrame:
    v = shows[room].viewers().collect()
    with st.expander("Filters", expanded=False):
        a, b, c = st.columns(3)
        te = a.multiselect("Tier at entry", TIERS, key="f_te")
        tc = a.multiselect("Tier at close", TIERS, key="f_tc")
        countries = sorted(v["country"].fill_null(analysis.UNKNOWN).unique().to_list())
        langs = sorted(v.select(l=pl.col("lang").str.split("-").list.first().str.to_lowercase()
                                .fill_null(analysis.UNKNOWN))["l"].unique().to_list())
        co = b.multiselect("Country", countries, key="f_co")
        la = b.multiselect("Language", langs, key="f_la")
        buyers = c.checkbox("Buyers only", key="f_buy")
        dwell = c.number_input("Dwell at least (min)", min_value=0.0, value=0.0, step=1.0, key="f_dw")
        q = c.text_input("Name or id contains", key="f_q")
    out = analysis.filter_viewers(v, tiers_entry=te, tiers_close=tc, countries=co, langs=la, buyers_only=buyers,
                                  min_dwell_min=dwell, search=q)
    st.caption(f"{out.height:,} of {v.height:,} viewers")
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
    pick = st.selectbox("Table", [n for n, _ in TABLES], format_func=dict(TABLES).get, key="dl_table")
    a, b, c = st.columns(3)
    a.download_button("CSV", data=lambda: analysis.to_csv(table(pick)), file_name=f"{safe}-{pick}.csv",
                      mime="text/csv", on_click="ignore", icon=":material/download:", key="dl_csv")
    b.download_button("Parquet", data=lambda: analysis.to_parquet(table(pick)), file_name=f"{safe}-{pick}.parquet",
                      mime="application/vnd.apache.parquet", on_click="ignore", icon=":material/download:",
                      key="dl_parquet")
    c.download_button("HTML report", data=lambda: report.render_html(rv, room, compare).encode("utf-8"),
                      file_name=f"{safe}-report.html", mime="text/html", on_click="ignore",
                      icon=":material/description:", key="dl_html", type="primary")


def _refresh(cfg: Config, shop: str) -> None:
    try:
        changed = refresh_followups(db.connect(cfg), cfg, shop)
    except FanopsError as e:
        st.session_state["review_msg"] = ("error", str(e))
        return
    _review.clear()
    st.session_state["review_msg"] = ("success", f"Follow-up outcomes updated for {len(changed)} show(s).")


def main() -> None:
    st.set_page_config(page_title="Post-show review", page_icon=":material/analytics:", layout="wide")
    cfg = Config.from_env()
    st.title("Post-show review")
    shops = archive_files.list_shops(cfg)
    if not shops:
        st.info("No archived show yet. A show is archived 30 minutes (shop clock) after its last event, or with "
                "`python -m scoring close-room --shop SHOP --room ROOM`.")
        return
    want = st.session_state.get("shop")
    shop = st.selectbox("Shop", shops, index=shops.index(want) if want in shops else 0, key="review_shop")
    infos = archive_files.list_archived(cfg, shop)
    by_room = {i.room: i for i in infos}
    order = [i.room for i in reversed(infos)]  # newest first
    left, right, btn = st.columns([3, 3, 2], vertical_alignment="bottom")
    room = left.selectbox("Show", order, format_func=lambda rm: _label(by_room[rm]), key="review_room")
    compare = right.selectbox("Compare with", [NONE, *[rm for rm in order if rm != room]],
                              format_func=lambda rm: rm if rm == NONE else _label(by_room[rm]), key="review_cmp")
    compare = None if compare in (None, NONE) else compare
    btn.button("Update follow-ups from the queue", on_click=_refresh, args=(cfg, shop),
               help="operators keep sending DMs after the show: read their outcomes from Redis")
    kind, msg = st.session_state.pop("review_msg", (None, None))
    if kind:
        getattr(st, kind)(msg)
    try:
        rv = _review(str(cfg.data_dir), shop, tuple((i.room, i.generation) for i in infos))
        shows = {i.room: archive_files.read_room(cfg, shop, i.room, verify=False) for i in infos}
    except ArchiveError as e:
        st.error(str(e))
        return
    if not by_room[room].complete:
        st.warning("Some of this show's events had left Redis before it was archived: event counts are partial.")
    _metrics(rv, room, compare)
    figs = report.figures(rv, room, compare)
    order_2col = [("presence", "dwell"), ("funnel", "sankey"), ("conversion_tier", "followups"),
                  ("conversion_country", "conversion_lang")]
    for pair in order_2col:
        cols = st.columns(2)
        for col, name in zip(cols, pair, strict=True):
            col.plotly_chart(figs[name], key=f"fig_{name}")
    st.plotly_chart(figs["products"], key="fig_products")
    if "trends" in figs:
        st.plotly_chart(figs["trends"], key="fig_trends")
    st.subheader("Top fans")
    fans = rv.table("top_fans", room).drop("room")
    st.dataframe(analysis.readable(fans.select("score", *[c for c in fans.columns if c != "score"])), hide_index=True)
    st.subheader("Viewers")
    viewers = _viewer_table(rv, shows, room)
    st.subheader("Downloads")
    _downloads(rv, shows, room, compare, viewers)


main()
