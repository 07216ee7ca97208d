"""The show review as plotly figures, and as one self-contained HTML file that opens offline.

``figures(review, room, compare=None)`` gives the charts the review page and the
report share; ``render_html`` lays them out with the headline and the tables.
plotly.js is inlined once (with the first figure), so the file needs no network.

Every string that comes from a feed or an operator (room ids, names, countries,
languages, SKUs, skip reasons) is passed through ``html.escape`` before it goes into
a figure or the page: plotly draws labels as a small subset of HTML, and the tables
are HTML.  plotly's own JSON is safe inside a ``<script>`` (it escapes ``<`` and ``/``).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.subplots import make_subplots

from fanops import i18n
from fanops.state import TASK_STATES, TIERS
from review.analysis import FUNNEL, HEADLINE_METRICS, Review, headline, trends

COLORS = {"new_fan": "#4c78a8", "first_buyer": "#f58518", "active": "#54a24b", "dormant": "#9d9d9d"}
SHOW_COLORS = ("#4c78a8", "#e45756")
TOP_CATEGORIES = 12


def esc(s: Any) -> str:
    """A value as text safe in HTML and in plotly labels.  A double quote becomes ``&#34;``, not
    ``&quot;``: plotly reads numeric entities but not that name, and would show it as typed."""
    return html.escape("" if s is None else str(s), quote=True).replace("&quot;", "&#34;")


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(title={"text": esc(title)}, height=height, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      template="plotly_white", legend={"orientation": "h", "y": -0.2})
    return fig


def _rooms(room: str, compare: str | None) -> list[str]:
    return [room] + ([compare] if compare and compare != room else [])


def _words(lang: str) -> Callable[..., str]:
    """``fanops.i18n.t`` in ``lang``."""

    def tr(key: str, **params: Any) -> str:
        return i18n.t(key, lang, **params)

    return tr


def _tier(tier: str, lang: str) -> str:
    """A tier in a chart: its name in Chinese; in English the id the report has always shown."""
    return tier if lang == "en" else i18n.t(f"tier.{tier}", lang)


def presence_figure(rv: Review, room: str, compare: str | None = None, lang: str = "en") -> go.Figure:
    tr = _words(lang)
    fig = go.Figure()
    rooms = _rooms(room, compare)
    for i, rm in enumerate(rooms):
        d = rv.table("presence", rm)
        if len(rooms) > 1:  # two shows on one axis: minutes since each show's start
            x: Any = ((d["minute"] - d["minute"].min()).dt.total_minutes()).to_list()
        else:
            x = d["minute"].to_list()
        fig.add_trace(go.Scatter(x=x, y=d["present"].to_list(), mode="lines", name=esc(_short(rm)),
                                 line={"color": SHOW_COLORS[i]}))
    fig.update_xaxes(title=tr("review.c.since_start") if len(rooms) > 1 else tr("review.c.time_utc"))
    fig.update_yaxes(title=tr("review.c.present"), rangemode="tozero")
    return _layout(fig, tr("review.c.presence"))


def dwell_figure(rv: Review, room: str, compare: str | None = None, lang: str = "en") -> go.Figure:
    tr = _words(lang)
    fig = go.Figure()
    for i, rm in enumerate(_rooms(room, compare)):
        d = rv.table("dwell", rm)
        fig.add_trace(go.Bar(x=d["minutes"].to_list(), y=d["viewers"].to_list(), name=esc(_short(rm)),
                             marker_color=SHOW_COLORS[i], opacity=0.8))
    h = headline(rv, room)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=tr("review.c.dwell_axis", median=f"{h['dwell_median_s'] / 60:.1f}",
                              p90=f"{h['dwell_p90_s'] / 60:.1f}"))
    fig.update_yaxes(title=tr("review.c.viewers"))
    return _layout(fig, tr("review.c.dwell"))


def funnel_figure(rv: Review, room: str, compare: str | None = None, lang: str = "en") -> go.Figure:
    tr = _words(lang)
    step_type = {name: typ for name, typ in FUNNEL}
    fig = go.Figure()
    for i, rm in enumerate(_rooms(room, compare)):
        d = rv.table("funnel", rm)
        steps = [tr(f"review.c.step.{step_type[s]}") if s in step_type else s for s in d["step"].to_list()]
        fig.add_trace(go.Funnel(y=steps, x=d["viewers"].to_list(), name=esc(_short(rm)),
                                textinfo="value+percent initial", marker={"color": SHOW_COLORS[i]}))
    return _layout(fig, tr("review.c.funnel"))


def sankey_figure(rv: Review, room: str, lang: str = "en") -> go.Figure:
    tr = _words(lang)
    d = rv.table("sankey", room)
    labels = ([tr("review.c.at_entry", tier=_tier(t, lang)) for t in TIERS]
              + [tr("review.c.at_close", tier=_tier(t, lang)) for t in TIERS])
    idx = {t: i for i, t in enumerate(TIERS)}
    src = [idx.get(t, 0) for t in d["tier_entry"].to_list()]
    dst = [len(TIERS) + idx.get(t, 0) for t in d["tier_close"].to_list()]
    fig = go.Figure(go.Sankey(
        node={"label": labels, "color": [COLORS[t] for t in TIERS] * 2, "pad": 18},
        link={"source": src, "target": dst, "value": d["viewers"].to_list(),
              "color": ["rgba(120,120,120,0.3)"] * len(src)}))
    return _layout(fig, tr("review.c.sankey"), height=420)


def conversion_figure(rv: Review, room: str, by: str, compare: str | None = None, lang: str = "en") -> go.Figure:
    tr = _words(lang)
    table = {"tier_entry": "conversion_tier", "country": "conversion_country", "lang": "conversion_lang"}[by]
    fig = go.Figure()
    base = rv.table(table, room).head(TOP_CATEGORIES)
    keys = base[by].to_list() if by != "tier_entry" else list(TIERS)
    shown = [_tier(k, lang) for k in keys] if by == "tier_entry" else [str(k) for k in keys]
    for i, rm in enumerate(_rooms(room, compare)):
        d = {k: (v, b, c) for k, v, b, c in rv.table(table, rm).select(by, "viewers", "buyers", "conversion").rows()}
        fig.add_trace(go.Bar(
            x=[esc(_short(k, 20)) for k in shown], y=[d.get(k, (0, 0, 0.0))[2] for k in keys],
            name=esc(_short(rm)), marker_color=SHOW_COLORS[i],
            customdata=[[d.get(k, (0, 0, 0))[0], d.get(k, (0, 0, 0))[1]] for k in keys],
            hovertemplate=tr("review.c.conversion_hover") + "<extra></extra>"))
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", title=tr("review.c.conversion_axis"))
    return _layout(fig, tr(f"review.t.{table}"), height=320)


def followups_figure(rv: Review, room: str, compare: str | None = None, lang: str = "en") -> go.Figure:
    tr = _words(lang)
    states = list(TASK_STATES) if lang == "en" else [tr(f"state.{s}") for s in TASK_STATES]
    fig = go.Figure()
    for i, rm in enumerate(_rooms(room, compare)):
        h = headline(rv, rm)
        x = [tr("review.c.made"), *states, tr("review.c.ordered_after_dm")]
        y = [h["made"], *[h["followups"][s] for s in TASK_STATES], h["attributed_orders"]]
        fig.add_trace(go.Bar(x=x, y=y, name=esc(_short(rm)), marker_color=SHOW_COLORS[i], text=y,
                             textposition="outside"))
    fig.update_yaxes(title=tr("review.c.tasks_axis"), rangemode="tozero")
    return _layout(fig, tr("review.c.followups"))


def products_figure(rv: Review, room: str, lang: str = "en") -> go.Figure:
    tr = _words(lang)
    d = rv.table("top_products", room).head(10)
    skus = [esc(_short(s or "", 30)) for s in d["sku"].to_list()][::-1]
    fig = go.Figure([go.Bar(y=skus, x=d["views"].to_list()[::-1], name=tr("review.c.product_views"), orientation="h"),
                     go.Bar(y=skus, x=d["cart_adds"].to_list()[::-1], name=tr("review.c.cart_adds"), orientation="h"),
                     go.Bar(y=skus, x=d["ordered_after_cart"].to_list()[::-1], name=tr("review.c.carters_ordered"),
                            orientation="h")])
    fig.update_layout(barmode="group")
    return _layout(fig, tr("review.t.top_products"), height=420)


def trends_figure(rv: Review, metrics: tuple[str, ...] = ("unique_viewers", "peak_present", "orders", "conversion",
                                                            "dwell_median_s", "attributed_orders"),
                  lang: str = "en") -> go.Figure:
    tr = _words(lang)
    t = trends(rv).filter(pl.col("metric").is_in(list(metrics)))
    fig = make_subplots(rows=2, cols=3, subplot_titles=[esc(tr(f"review.m.{m}")) for m in metrics])
    for i, m in enumerate(metrics):
        d = t.filter(pl.col("metric") == m).sort("start")
        fig.add_trace(go.Scatter(x=d["start"].to_list(), y=d["value"].to_list(), mode="lines+markers",
                                 text=[esc(r) for r in d["room"].to_list()],
                                 hovertemplate="%{text}: %{y}<extra></extra>", showlegend=False,
                                 line={"color": SHOW_COLORS[0]}), row=i // 3 + 1, col=i % 3 + 1)
    return _layout(fig, tr("review.c.trends"), height=520)


def figures(rv: Review, room: str, compare: str | None = None, lang: str = "en") -> dict[str, go.Figure]:
    """Every chart of the review, in page order, its words in ``lang`` (``fanops.i18n.LANGS``)."""
    out = {
        "presence": presence_figure(rv, room, compare, lang),
        "dwell": dwell_figure(rv, room, compare, lang),
        "funnel": funnel_figure(rv, room, compare, lang),
        "sankey": sankey_figure(rv, room, lang),
        "conversion_tier": conversion_figure(rv, room, "tier_entry", compare, lang),
        "conversion_country": conversion_figure(rv, room, "country", compare, lang),
        "conversion_lang": conversion_figure(rv, room, "lang", compare, lang),
        "followups": followups_figure(rv, room, compare, lang),
        "products": products_figure(rv, room, lang),
    }
    if len(rv.rooms) > 1:
        out["trends"] = trends_figure(rv, lang=lang)
    return out


# --- the HTML report -------------------------------------------------------------------------
def fmt(v: Any, metric: str = "") -> str:
    if v is None:
        return "–"
    if metric == "conversion":
        return f"{v:.1%}"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(df: pl.DataFrame, cols: list[str] | None = None, limit: int = 50) -> str:
    cols = cols or df.columns
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for row in df.select(cols).head(limit).iter_rows():
        body.append("<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in row) + "</tr>")
    return f"<div class='tbl'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def headline_table(rv: Review, room: str, compare: str | None = None) -> str:
    rooms = _rooms(room, compare)
    hs = [headline(rv, rm) for rm in rooms]
    head = "<th>metric</th>" + "".join(f"<th>{esc(_short(rm))}</th>" for rm in rooms)
    rows = []
    for m, label in HEADLINE_METRICS:
        rows.append(f"<tr><td>{esc(label)}</td>" + "".join(f"<td>{esc(fmt(h.get(m), m))}</td>" for h in hs) + "</tr>")
    for i, h in enumerate(hs):
        g = "; ".join(f"{c} {a:,.2f}" for c, a in h["gmv"].items()) or "–"
        rows.append(f"<tr><td>GMV ({esc(_short(rooms[i]))})</td><td colspan='{len(rooms)}'>{esc(g)}</td></tr>")
    return f"<table class='headline'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em;margin-bottom:0} .sub{color:#666;margin-top:4px}
h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4} td{unicode-bidi:plaintext} .grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.note{color:#666;font-size:12px} .tbl{overflow-x:auto;max-width:100%}
"""


def render_html(rv: Review, room: str, compare: str | None = None, *, generated_at: datetime | None = None) -> str:
    """A complete, self-contained HTML document for one show (optionally against another)."""
    figs = figures(rv, room, compare)
    divs = []
    for i, (name, fig) in enumerate(figs.items()):
        body = pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, div_id=f"fig-{name}",
                           config={"displaylogo": False, "responsive": True})
        divs.append(f"<div class='fig' data-name='{esc(name)}'>{body}</div>")
    facts = rv.facts.get(room, {})
    when = datetime.fromtimestamp(facts.get("first_ts", 0) / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    gen = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Show review: {room}" + (f" vs {compare}" if compare else "")
    note = "" if facts.get("complete", True) else (
        "<p class='note'>Some of this show's events had left Redis before it was archived: "
        "event counts are partial; viewer numbers are complete.</p>")
    fans = rv.table("top_fans", room).with_columns(dwell_min=(pl.col("dwell_ms") / 60_000).round(1))
    fan_cols = ["name", "viewer", "country", "lang", "tier_entry", "tier_close", "orders", "spend", "comments",
                "likes", "shares", "gift_value", "dwell_min", "score"]
    att = rv.table("attributed", room)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1><p class='sub'>shop {esc(facts.get('shop', ''))} · started {esc(when)} · "
        f"report made {esc(gen)}</p>", note,
        "<h2>Headline</h2>", headline_table(rv, room, compare),
        "<h2>Charts</h2>", *divs,
        "<h2>Top fans</h2>", _table(fans, fan_cols),
        "<h2>Top products</h2>", _table(rv.table("top_products", room).drop("room")),
        "<h2>Follow-ups</h2>", _table(rv.table("followups", room).drop("room")),
        "<h3>Skip reasons</h3>", _table(rv.table("skip_reasons", room).drop("room")),
        "<h3>Orders within 7 days after a DM</h3>",
        _table(att, ["viewer", "sent_clock", "order_room", "order_id", "ts", "amount", "currency"]),
        "<h2>GMV per currency</h2>", _table(rv.table("gmv", room).drop("room")),
        "<h2>Tier transitions during the show</h2>", _table(rv.table("transitions", room).drop("room")),
    ]
    if len(rv.rooms) > 1:
        parts += ["<h2>All shows</h2>", _table(rv.headlines.select(
            "room", "start", *[m for m, _ in HEADLINE_METRICS if m in rv.headlines.columns]), limit=200)]
    parts.append("</body></html>")
    return "\n".join(parts)
