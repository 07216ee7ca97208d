"""Kept orders: shop orders from the webhooks that matched no viewer or room, with why, and a link
to apply one as a viewer's in a room (``screens.reads.orders``). Applied by the orders server; a
kept order is never dropped."""

from __future__ import annotations

import streamlit as st

from fanops.templates import clean_text
from screens import _ui
from screens.reads import orders as reads

tr = _ui.translator()
r = _ui.client()
shop = _ui.shop()

st.title(tr("orders.title"))
st.caption(tr("orders.caption"))
_ui.show_flash()


def do_link(event_id: str, key: str) -> None:
    """A button's callback: ask for the order to be applied; the outcome shows on the next draw."""
    why = reads.link(r, shop, event_id, str(st.session_state.get(f"v-{key}") or ""),
                     str(st.session_state.get(f"r-{key}") or ""), _ui.operator())
    if why is None:
        _ui.flash("success", tr("orders.linked"))
    else:
        _ui.flash("error", tr(f"orders.err_{why}"))


with _ui.redis_guard():
    kept = reads.kept_orders(r, shop)
    if not kept:
        st.info(tr("orders.none"), icon=":material/check_circle:")
    for k in kept:
        key = _ui.task_key(k.event_id)
        with st.container(border=True, key=f"order-{key}"):
            # the order's own fields are the sender's text: shown as text, never Markdown
            _ui.text(f"{clean_text(k.order_id, 64)} · {_ui.money(k.amount)} {clean_text(k.currency, 3)}"
                     f" · {clean_text(k.source, 10)} · {_ui.clock_time(k.ts, with_date=True)}", key=f"head-{key}")
            _ui.text(tr("orders.why") + " " + clean_text(k.why, 300), key=f"why-{key}")
            if k.linked:
                st.caption(tr("orders.pending"))
                continue
            c = st.columns([2, 2, 1], vertical_alignment="bottom")
            c[0].text_input(tr("orders.viewer"), value=k.viewer or "", key=f"v-{key}")
            c[1].text_input(tr("orders.room"), value=k.room or "", key=f"r-{key}")
            c[2].button(tr("orders.link"), key=f"link-{key}", on_click=do_link, args=(k.event_id, key))
