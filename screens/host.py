"""Host screen (glanced at from a few metres while on air): two big numbers and three short lists.

No controls.  Point a side screen or a phone at ``/host?room=ROOM`` (and
``&lang=zh-Hans``); without ``room`` it follows the room live now.  Names and
questions are viewer text: shown with ``st.text``, never as Markdown or HTML.
"""

from __future__ import annotations

import streamlit as st

from screens import _ui
from screens.reads import host, rooms

tr = _ui.translator()
r = _ui.client()
shop = _ui.shop()

# Static style, no data in it: large type, high contrast, fits 1280x720 and a phone.
st.markdown(
    """<style>
.stApp, [data-testid="stAppViewContainer"], [data-testid="stMain"] {background:#000; color:#fff}
[data-testid="stMainBlockContainer"] {padding-top:0.8rem; padding-bottom:0.5rem; max-width:100%}
.st-key-host [data-testid="stColumn"] [data-testid="stVerticalBlock"] {gap:0.45rem}
.st-key-host [data-testid="stText"], .st-key-host [data-testid="stText"] span {color:#fff;
  font-size:clamp(1.25rem,2.2vw,2rem); line-height:1.15; font-weight:600; overflow-wrap:anywhere}
.st-key-host [data-testid="stMetricLabel"] p {font-size:clamp(1rem,1.8vw,1.5rem); color:#ffd60a}
.st-key-host [data-testid="stMetricValue"] {font-size:clamp(2.4rem,5vw,4.5rem); color:#fff; line-height:1}
.st-key-host h3 {color:#ffd60a; font-size:clamp(1.2rem,2vw,1.8rem); line-height:1.4;
  padding:0 0 0.2rem; margin-bottom:0.5rem; border-bottom:3px solid #ffd60a}
.st-key-host [class*="st-key-tag"] [data-testid="stText"],
.st-key-host [class*="st-key-tag"] [data-testid="stText"] span {font-size:clamp(0.9rem,1.4vw,1.2rem);
  color:#8ecae6; font-weight:500}
.st-key-host [class*="st-key-tag-first"] [data-testid="stText"] span {color:#80ed99}
.st-key-host [class*="st-key-quiet"] [data-testid="stText"] span {color:#999; font-weight:400;
  font-size:clamp(1rem,1.6vw,1.4rem)}
</style>""",
    unsafe_allow_html=True,
)


def item(i: int, kind: str, it: host.HostItem) -> None:
    """One entry: the name big with a short tag under it; for a question, the question big, the asker under it."""
    name = it.name or tr("host.no_name")
    with st.container(gap=None, key=f"row-{kind}-{i}"):
        if kind == "questions":
            _ui.text(it.text, key=f"q-{i}")
            _ui.text(name, key=f"tag-q-{i}")
            return
        _ui.text(name, key=f"{kind}-{i}")
        tag = {"vip": tr("host.vip"), "back": tr("host.back"), "first": tr("host.first")}.get(it.tag, "")
        if tag:
            _ui.text(tag, key=f"tag-{'first' if it.tag == 'first' else kind}-{i}")


@st.fragment(run_every=_ui.refresh_s(2))
def screen() -> None:
    with st.container(key="host"), _ui.redis_guard():
        ref = _ui.current_room(r, shop)
        if ref is None:
            st.subheader(tr("host.no_room"))
            _ui.text(tr("host.no_room_how", cmd=_ui.RUN_COMMAND), key="quiet-empty")
            return
        h = host.read_host(r, shop, ref.id)
        c1, c2 = st.columns(2)
        c1.metric(tr("host.viewers"), _ui.number(h.present))
        c2.metric(tr("host.orders"), _ui.number(h.orders))
        if not ref.live:
            _ui.text(tr("host.ended", ago=_ui.ago(rooms.wall_clock() * 1000 - ref.last_ts)), key="quiet-ended")
        cols = st.columns(3, gap="large")
        for col, kind in zip(cols, ("greet", "thank", "questions"), strict=True):
            with col:
                st.subheader(tr(f"host.{kind}"))
                items = getattr(h, kind)
                if not items:
                    _ui.text(tr("host.none_yet"), key=f"quiet-{kind}")
                for i, it in enumerate(items):
                    item(i, kind, it)


screen()
