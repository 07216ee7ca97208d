"""Fans: every known viewer of the shop, filtered, sorted and paged; a fan's page; exports; the
shop's tiers over time.

The list is one polars frame per shop kept by the app process (``screens.reads.fans.FanCache``);
each rerun filters it and sorts one page.  ``?fan=ID`` (or a click on a row) opens a fan's page.
Viewer text goes to the page as a dataframe cell or ``st.text``, never as Markdown.
"""

from __future__ import annotations

from datetime import UTC, datetime

import plotly.express as px
import polars as pl
import streamlit as st

from fanops import fans
from fanops.state import TIERS
from fanops.templates import clean_text
from screens import _ui
from screens.reads import fans as fan_reads
from screens.reads import rooms

tr = _ui.translator()
r = _ui.client()
shop = _ui.shop()
cfg = _ui._settings()
PAGE_ROWS = 50
SHOWN = ("viewer_id", "name", "tier", "country", "lang", "last_active", "orders", "spend", "channels")


@st.cache_resource(show_spinner=False)
def cache() -> fan_reads.FanCache:
    return fan_reads.FanCache()


@st.cache_data(ttl=300, show_spinner=False)
def history(shop_id: str) -> pl.DataFrame:
    return fan_reads.tier_history(_ui.client(), _ui._settings(), shop_id)


def when(ts: int | None) -> str:
    return _ui.clock_time(int(ts), with_date=True) if ts else "—"


def fan_page(vid: str) -> None:
    if st.button(tr("fans.back"), icon=":material/arrow_back:"):
        st.query_params.pop("fan", None)
        st.rerun()
    rec = fan_reads.fan_record(r, cfg, shop, vid)
    if rec is None:
        st.warning(tr("fans.not_found"))
        return
    _ui.text(clean_text(rec["name"] or "", 60) or vid, key="fan-name")
    _ui.text(vid, key="fan-id")
    c = st.columns(4)
    c[0].metric(tr("fans.col.tier"), tr(f"tier.{rec['tier']}") if rec["tier"] in TIERS else rec["tier"])
    c[1].metric(tr("fans.col.orders"), _ui.number(rec["orders"]))
    c[2].metric(tr("fans.col.first_seen"), when(rec["first_seen"]))
    c[3].metric(tr("fans.col.last_active"), when(rec["last_active"]))
    consent = {True: "fan.consent_yes", False: "fan.consent_no"}.get(rec["dm_consent"], "fan.consent_unknown")
    st.caption(tr(consent))
    st.subheader(tr("fan.rule"))
    st.text(rec["rule"])
    st.subheader(tr("fan.shows"))
    shows = [{"room": s["room"], "first": when(s.get("first_ts")), "last": when(s.get("last_ts")),
              "orders": s.get("orders"), "spend": s.get("spend") or "", "archived": bool(s.get("archived")),
              "task": (s.get("task") or {}).get("state", "")} for s in rec["shows"]]
    st.dataframe(pl.DataFrame(shows) if shows else None, hide_index=True, key="fan-shows")
    st.subheader(tr("fan.orders"))
    st.text(", ".join(clean_text(o, 40) for o in rec["order_ids"]) or tr("fan.none"))
    st.subheader(tr("fan.tier_changes"))
    ch = [{**t, "ts": when(t["ts"])} for t in rec["tier_changes"]]
    st.dataframe(pl.DataFrame(ch) if ch else None, hide_index=True, key="fan-changes")
    st.subheader(tr("fan.tasks"))
    tasks = [{k: t.get(k, "") for k in ("kind", "room", "state", "priority", "sent_by", "skip_reason")}
             | {"kind": tr(f"kind.{t.get('kind') or 'lingered'}")} for t in rec["tasks"]]
    st.dataframe(pl.DataFrame(tasks) if tasks else None, hide_index=True, key="fan-tasks")
    st.subheader(tr("fan.sent"))
    sent = [{"room": t["room"], "by": t.get("sent_by", ""), "at": when(int(t.get("sent_at") or 0)),
             "channel": t.get("channel") or "dm", "message_id": t.get("message_id", "")} for t in rec["sent"]]
    st.dataframe(pl.DataFrame(sent) if sent else None, hide_index=True, key="fan-sent")


def filters(df: pl.DataFrame) -> fans.FanFilter:
    a = st.columns(4)
    tiers = a[0].multiselect(tr("fans.tier"), list(TIERS), key="f_tier", format_func=lambda x: tr(f"tier.{x}"))
    countries = a[1].multiselect(tr("fans.country"), fans.values(df, "country"), key="f_country")
    chans = a[2].multiselect(tr("fans.channel"), list(fans.CHANNELS), key="f_channel",
                             format_func=lambda c: tr(f"channel.{c}"))
    lang = a[3].text_input(tr("fans.lang"), key="f_lang", max_chars=16)
    b = st.columns(5)
    spend_min = b[0].number_input(tr("fans.spend_min"), min_value=0.0, value=0.0, key="f_spend_min")
    spend_max = b[1].number_input(tr("fans.spend_max"), min_value=0.0, value=0.0, key="f_spend_max")
    within = b[2].number_input(tr("fans.seen_within"), min_value=0, value=0, step=1, key="f_within")
    away = b[3].number_input(tr("fans.away_for"), min_value=0, value=0, step=1, key="f_away")
    text = b[4].text_input(tr("fans.search"), key="f_text", max_chars=64)
    now_ms = int(rooms.wall_clock() * 1000)
    return fans.FanFilter(tiers=tuple(tiers), countries=tuple(countries), lang=lang.strip(), channels=tuple(chans),
                          spend_min=spend_min or None, spend_max=spend_max or None,
                          seen_since=now_ms - int(within) * fan_reads.DAY_MS if within else None,
                          seen_before=now_ms - int(away) * fan_reads.DAY_MS if away else None, text=text.strip())


def fan_list() -> None:
    c = cache().get(r, shop, fresh=bool(st.session_state.pop("f_fresh", False)))
    df = c.frame
    if df.height == 0:
        st.info(tr("fans.none"))
        return
    flt = filters(df)
    hit = fans.filtered(df, flt)
    s = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
    sort = s[0].selectbox(tr("fans.sort"), list(fans.SORTABLE), key="f_sort",
                          format_func=lambda x: tr(f"fans.col.{x}"))
    desc = s[1].toggle(tr("fans.desc"), value=True, key="f_desc")
    pages = max(1, -(-hit.height // PAGE_ROWS))
    pg = s[2].number_input(tr("fans.page"), min_value=1, max_value=pages, value=1, step=1, key="f_page")
    s[3].metric(tr("fans.count"), _ui.number(hit.height), help=tr("fans.known") + f": {df.height:,}")
    if hit.height == 0:
        st.info(tr("fans.empty"))
        return
    rows = fans.export_frame(fans.page(hit, sort, desc, (int(pg) - 1) * PAGE_ROWS, PAGE_ROWS))
    rows = rows.with_columns(pl.col("last_active").map_elements(when, return_dtype=pl.String)).select(SHOWN)
    ev = st.dataframe(rows, hide_index=True, key="f_table", on_select="rerun", selection_mode="single-row",
                      column_config={k: tr(f"fans.col.{k}") for k in SHOWN})
    picked = ev.selection.rows if ev is not None and hasattr(ev, "selection") else []
    if picked:
        st.query_params["fan"] = rows["viewer_id"][picked[0]]
        st.rerun()
    st.caption(tr("fans.open_hint"))
    e = st.columns([1, 1, 3], vertical_alignment="center")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    e[0].download_button(tr("fans.csv"), lambda: fans.to_csv(hit), file_name=f"fans-{shop}-{stamp}.csv",
                         mime="text/csv", key="f_csv", icon=":material/download:")
    e[1].download_button(tr("fans.parquet"), lambda: fans.to_parquet(hit), file_name=f"fans-{shop}-{stamp}.parquet",
                         mime="application/vnd.apache.parquet", key="f_parquet", icon=":material/download:")
    if e[2].button(tr("fans.rebuild"), key="f_rebuild", type="tertiary"):
        st.session_state["f_fresh"] = True
        st.rerun()
    st.caption(tr("fans.built", at=_ui.clock_time(int(c.built_at * 1000)), s=f"{c.build_s:.1f}",
                  every=int(cache().max_age_s)))


def summary() -> None:
    st.subheader(tr("fans.summary"))
    h = history(shop)
    if h.height == 0:
        st.caption(tr("fans.summary_empty"))
        return
    h = h.with_columns(day=pl.from_epoch("day", time_unit="ms"),
                       tier=pl.col("tier").replace_strict({t: tr(f"tier.{t}") for t in TIERS}))
    fig = px.area(h, x="day", y="viewers", color="tier", labels={"day": tr("fans.day"), "viewers": tr("fans.viewers"),
                                                                "tier": tr("fans.tier")})
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig, key="f_summary")


st.title(tr("fans.title"))
with _ui.redis_guard():
    fan = st.query_params.get("fan")
    if fan:
        fan_page(str(fan))
    else:
        fan_list()
        summary()
