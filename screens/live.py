"""Live board (operators, during the show): the room's numbers, tiers, chart, tier changes, health.

One fragment redraws the board every second (FANOPS_BOARD_REFRESH_MS) from a few pipelined counter reads
(``screens.reads.board``); the sidebar's choices are outside it, so nothing an
operator typed is lost on a refresh.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, tzinfo

import plotly.graph_objects as go
import streamlit as st

from fanops.i18n import t
from fanops.state import TIERS
from fanops.templates import clean_text
from screens import _ui
from screens.reads import board, rooms
from screens.reads.health import Health
from screens.reads.tiktok import TikTokTile

tr = _ui.translator()
r = _ui.client()
shop = _ui.shop()


def tier_metrics(counts: dict[str, int], change: dict[str, int] | None) -> None:
    cols = st.columns(len(TIERS))
    for col, tier in zip(cols, TIERS, strict=True):
        col.metric(tr(f"tier.{tier}"), _ui.number(counts[tier]), delta=None if change is None else change[tier],
                   delta_color="inverse" if tier == "dormant" else "normal")


def headline(b: board.Board) -> None:
    with st.container(key="headline"):
        c = st.columns(7)
        c[0].metric(tr("live.present"), _ui.number(b.present))
        c[1].metric(tr("live.unique"), _ui.number(b.unique))
        c[2].metric(tr("live.new"), _ui.number(b.new))
        c[3].metric(tr("live.orders"), _ui.number(b.orders))
        c[4].metric(tr("live.buyers"), _ui.number(b.buyers))
        c[5].metric(tr("live.conversion"), "—" if b.conversion is None else f"{b.conversion * 100:.1f}%",
                    help=tr("live.conversion_help"))
        c[6].metric(tr("live.events_s"), _ui.number(b.events_per_s, 1))
    with st.container(key="gmv"):
        gmv = list(b.gmv.items())[:7] or [("", 0.0)]
        c = st.columns(7)
        for col, (cur, amount) in zip(c, gmv, strict=False):
            col.metric(tr("live.gmv", cur=cur).strip(), _ui.money(amount) if cur else "—",
                       help=_ui.number(amount, 2) if cur else None)


def tiers(b: board.Board) -> None:
    st.subheader(tr("live.tiers"))
    if b.room_change is None:
        st.caption(tr("live.change_none"))
    else:
        st.caption(tr("live.change_span", span=_ui.ago(b.change_span_s * 1000)))
    left, right = st.columns(2, border=True)
    with left, st.container(key="tiers-room"):
        st.markdown("**" + tr("live.tiers_room") + "**")
        tier_metrics(b.room_tiers, b.room_change)
    with right, st.container(key="tiers-shop"):
        st.markdown("**" + tr("live.tiers_shop") + "**")
        tier_metrics(b.shop_tiers, b.shop_change)


@functools.lru_cache(maxsize=16)
def figure(minutes: tuple[int, ...], present: tuple[int | None, ...], orders: tuple[int | None, ...],
           zone: tzinfo, lang: str) -> go.Figure:
    """The chart's figure. Its data change once a minute at most, and building a plotly figure
    (every property validated) is a third of a board refresh: it is built once per change, per
    process (``st.plotly_chart`` only reads it)."""
    x = [datetime.fromtimestamp(m * 60, UTC).astimezone(zone).replace(tzinfo=None) for m in minutes]
    # One bar a minute, hours:minutes on the axis, and at least 10 minutes of it (filling from
    # the left): left alone, plotly spreads a show's first minute over the whole width, with
    # ticks a fraction of a millisecond apart.
    half = timedelta(seconds=30)
    end = max(x[-1], x[0] + timedelta(minutes=9))
    xaxis: dict[str, object] = {"tickformat": "%H:%M", "hoverformat": "%H:%M", "range": [x[0] - half, end + half]}
    if len(x) <= 15:  # a few minutes: one tick each (plotly would put some between them)
        xaxis |= {"tickmode": "linear", "tick0": x[0], "dtick": 60_000}
    fig = go.Figure()
    fig.add_bar(x=x, y=orders, name=t("live.chart_orders", lang), yaxis="y2", marker_color="#f4a261", opacity=0.85,
                width=45_000)  # ms, as the axis counts
    fig.add_scatter(x=x, y=present, name=t("live.chart_present", lang), mode="lines+markers",
                    line={"color": "#2a9d8f", "width": 3}, marker={"size": 4}, connectgaps=False)
    fig.update_layout(
        height=330, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="x unified",
        legend={"orientation": "h", "y": 1.12, "x": 0}, xaxis=xaxis,
        yaxis={"title": t("live.chart_present", lang), "rangemode": "tozero", "tickformat": ",d"},
        yaxis2={"title": t("live.chart_orders", lang), "overlaying": "y", "side": "right", "rangemode": "tozero",
                "showgrid": False, "tickformat": ",d",
                "dtick": max(1, max((o or 0 for o in orders), default=0) // 4)},
    )
    return fig


def chart(room: str, end_ts: int) -> None:
    st.subheader(tr("live.chart"))
    ch = board.read_chart(r, shop, room, end_ts)
    if not ch.minutes:
        st.caption(tr("live.chart_empty"))
        return
    fig = figure(tuple(ch.minutes), tuple(ch.present), tuple(ch.orders), _ui.tz(), _ui.lang())
    st.plotly_chart(fig, key="chart", config={"displayModeBar": False})
    if any(p is None for p in ch.present):
        st.caption(tr("live.chart_present_note"))


def transitions(room: str) -> None:
    st.subheader(tr("live.transitions"))
    rows = board.read_transitions(r, shop, room)
    if not rows:
        st.caption(tr("live.transitions_empty"))
        return
    st.dataframe(
        {tr("col.time"): [_ui.clock_time(x.ts) for x in rows],
         tr("col.name"): [x.name or x.viewer for x in rows],
         tr("col.change"): [tr(f"change.{x.kind}") for x in rows]},
        hide_index=True, key="transitions", height=min(470, 38 + 35 * len(rows)),
    )


def health(h: Health) -> None:
    st.subheader(tr("live.health"))
    with st.container(key="health"):
        c = st.columns(4)
        c[0].metric(tr("health.consumer"), tr("health.connected") if h.connected else tr("health.not_connected"))
        c[1].metric(tr("health.lag"), _ui.number(h.lag), help=tr("health.lag_help"))
        c[2].metric(tr("health.scorers"), h.scorers)
        c[3].metric(tr("health.dead_minute"), h.dead_last_minute)
    if h.ok:
        st.caption(tr("health.ok"))


def tiktok_user(unique_id: str) -> str:
    """A TikTok username for a metric's label, which reads Markdown: only the characters TikTok allows
    in one (letters, digits, ``_`` and ``.``), ``_`` escaped; the beat that carries it is anyone's JSON."""
    return re.sub(r"[^\w.]", "", unique_id)[:40].replace("_", "\\_") or "?"


def tiktok(tiles: list[TikTokTile]) -> None:
    """A small tile per TikTok LIVE source: its connection, the room's viewers, its last error."""
    for tile in tiles:
        key = "tiktok-" + re.sub(r"[^A-Za-z0-9_-]", "-", tile.unique_id)
        with st.container(key=key, border=True):
            c = st.columns([2, 1, 1])
            c[0].metric(tr("tiktok.title", user=tiktok_user(tile.unique_id)), tr(f"tiktok.state.{tile.state}"))
            c[1].metric(tr("tiktok.viewers"), _ui.number(tile.viewers))
            c[2].metric(tr("tiktok.viewers_total"), _ui.number(tile.viewers_total))
            if tile.last_error:
                when = _ui.ago(rooms.wall_clock() * 1000 - tile.last_error_at * 1000) if tile.last_error_at else "?"
                st.caption(tr("tiktok.last_error", ago=when))
                _ui.text(tile.last_error, key=key + "-error")


@st.fragment(run_every=_ui.refresh_s())
def live_board() -> None:
    with _ui.redis_guard():
        ref = _ui.current_room(r, shop)
        if ref is None:
            st.title(tr("live.title"))
            _ui.empty_no_room()
            return
        b = board.read_board(r, shop, ref.id)
        board.record_snapshots(r, b)
        head, status = st.columns([5, 1], vertical_alignment="bottom")
        with head:
            st.title(tr("live.title"))
            _ui.text(tr("live.room") + " " + clean_text(ref.id, 80), key="live-room")
        with status:
            if b.live:
                st.badge(tr("live.is_live"), icon=":material/radio_button_checked:", color="red")
            else:
                st.badge(tr("live.ended", ago=_ui.ago(rooms.wall_clock() * 1000 - ref.last_ts)), color="gray")
        if not b.live:
            st.info(tr("live.not_live"))
            st.code(_ui.RUN_COMMAND, language="bash")
        for key, params in b.health.problems:
            st.warning(tr(key, **params), icon=":material/warning:")
        headline(b)
        tiers(b)
        left, right = st.columns([3, 2])
        with left:
            chart(ref.id, ref.last_ts)
        with right:
            transitions(ref.id)
        health(b.health)
        tiktok(b.tiktok)


live_board()
