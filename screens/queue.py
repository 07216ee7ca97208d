"""Follow-up queue (operators working DMs): tasks by priority, claim, mark sent, skip, release.

Every action is one atomic call in ``fanops.queue`` (two operators never hold
one task); it runs in a button callback, so the list drawn after it is fresh.
Filters sit outside the refreshing fragment and survive refreshes and page switches.
During a show the queue opens on the live room's tasks, then the other rooms'; a toggle drops the
live room's precedence.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from fanops import channels, queue, read
from fanops.config import Config
from fanops.errors import ChannelRefused, SendError, TaskClaimedByOther, TaskError, TaskStateError
from fanops.i18n import language_name
from fanops.state import TASK_KINDS, TASK_STATES, TIERS
from fanops.templates import LANGUAGES, clean_text
from screens import _ui
from screens.access import secrets_section
from screens.reads import tasks as task_reads

tr = _ui.translator()
r = _ui.client()
shop = _ui.shop()
PAGE_SIZES = [10, 20, 50]  # cards a page; every card is redrawn at each refresh, so the default is small

st.title(tr("queue.title"))
state = _ui.sticky("segmented", tr("queue.state"), list(task_reads.STATE_FILTERS), "q_state",
                   format_func=lambda s: tr(f"state.{s}"))
f = st.columns([2, 2, 2, 2, 2, 1], vertical_alignment="bottom")
tier = _ui.sticky("select", tr("queue.tier"), ["", *TIERS], "q_tier", where=f[0],
                  format_func=lambda x: tr(f"tier.{x}") if x else tr("all"))
lang = _ui.sticky("select", tr("queue.lang"), ["", *LANGUAGES], "q_lang", where=f[1],
                  format_func=lambda x: language_name(x) if x else tr("all"))
kind = _ui.sticky("select", tr("queue.kind"), ["", *TASK_KINDS], "q_kind", where=f[4],
                  format_func=lambda x: tr(f"kind.{x}") if x else tr("all"))
page = _ui.sticky("select", tr("queue.page"), PAGE_SIZES, "q_page", where=f[5], translated=False)
live_first = f[3].toggle(tr("queue.live_first"), value=True, key="q_live_first", help=tr("queue.live_first_help"),
                         persist_state="session")
sendable = f[2].toggle(tr("queue.sendable"), key="q_sendable", help=tr("queue.sendable_help"),
                       persist_state="session")
me = _ui.operator()
if not me:
    st.info(tr("queue.need_name"), icon=":material/badge:")


SEND_ON = ("email", "whatsapp", "sms")  # the providers' channels; dm is "Mark sent"


def providers() -> Config:
    """The provider settings: the environment, else ``[fanops]`` of secrets.toml (read at each send,
    so a changed setting needs no restart)."""
    return channels.with_secrets(Config.from_env(), secrets_section())


def send(tid: str, channel: str) -> None:
    """A send button's callback: send the task on ``channel`` through its provider, record it."""
    name = tr(f"send.channel.{channel}")
    try:
        done = channels.send_task(r, providers(), shop, tid, _ui.operator(), channel)
        _ui.flash("success", tr("send.done", channel=name), done.message_id or "")
    except ChannelRefused as e:
        _ui.flash("error", tr("send.refused", channel=name), e.reason)
    except SendError as e:
        _ui.flash("error", tr("send.failed", channel=name), e.reason)
    except TaskError as e:
        _ui.flash("error", tr("queue.err_other"), str(e))


def act(action: str, tid: str, key: str) -> None:
    """A button's callback: do the action as this operator; the outcome shows on the next draw."""
    try:
        op = queue.Operator(r, shop, _ui.operator())
        if action == "claim":
            op.claim(tid)
        elif action == "sent":
            op.mark_sent(tid)
        elif action == "release":
            op.release(tid)
        elif action == "skip":
            reason = str(st.session_state.get(f"reason-{key}") or "").strip()
            if not reason:
                _ui.flash("error", tr("queue.err_reason"))
                return
            op.skip(tid, reason)
        _ui.flash("success", tr(f"queue.done_{action}"))
    except TaskClaimedByOther as e:
        _ui.flash("warning", tr("queue.err_claimed"), clean_text(e.holder, 64))
    except TaskStateError as e:
        _ui.flash("warning", tr("queue.err_state", state=tr(f"state.{e.state}") if e.state in TASK_STATES
                                else tr("queue.err_not_yours")))
    except TaskError as e:
        _ui.flash("error", tr("queue.err_other"), str(e))


def activity(t: queue.Task) -> str:
    parts = [tr("queue.comments", n=t.comments), tr("queue.likes", n=t.likes)]
    if t.skus_viewed:
        parts.append(tr("queue.viewed") + " " + ", ".join(clean_text(s, 40) for s in t.skus_viewed))
    if t.skus_carted:
        parts.append(tr("queue.carted") + " " + ", ".join(clean_text(s, 40) for s in t.skus_carted))
    return " · ".join(parts)


def badges(t: queue.Task, mine: bool) -> str:
    """The card's badges as one Markdown line. Only the app's own words go in it (tier, state, hour),
    never the viewer's text, so nothing from the feed is read as Markdown."""
    out = [f":violet-badge[{tr(f'tier.{t.tier}') if t.tier in TIERS else tr('tier.unknown')}]"]
    if t.kind in TASK_KINDS:  # the follow-up's kind (spec/tiers.md v1.1); an unknown one is not echoed
        out.append(f":{'gray' if t.kind == 'lingered' else 'orange'}-badge[{tr(f'kind.{t.kind}')}]")
    if t.reactivated:
        out.append(f":green-badge[{tr('queue.reactivated')}]")
    if mine:
        out.append(f":green-badge[:material/person: {tr('queue.yours')}]")
    else:
        # a state this version does not know (the task record is data) is named as unknown, never echoed
        label = tr(f"state.{t.state}") if t.state in TASK_STATES else tr("state.unknown")
        out.append(f":{'blue' if t.state == 'pending' else 'gray'}-badge[{label}]")
    if t.decent_hour is True:
        out.append(f":green-badge[:material/schedule: {tr('queue.decent')}]")
    elif t.decent_hour is False:
        out.append(f":orange-badge[:material/bedtime: {tr('queue.not_decent')}]")
    return " ".join(out)


def details(t: queue.Task, mine: bool) -> str:
    """Everything else the operator reads about the viewer, one line each, as plain text."""
    where = " · ".join(x for x in (clean_text(t.country, 8), clean_text(t.lang, 16)) if x) or "—"
    local = tr("queue.local", time=clean_text(t.local, 60)) if t.local else tr("queue.local_unknown")
    lines = [f"{where} · {local}",
             (tr("queue.dwell", d=_ui.ago(t.dwell_ms)) + " · " if t.kind == "lingered" else "")  # kinds: no dwell
             + tr("queue.priority", p=f"{t.priority:g}") + " · " + tr("queue.room") + " " + clean_text(t.room, 40),
             activity(t)]
    lines += ["“" + clean_text(x, task_reads.TEXT_CHARS) + "”" for x in t.said]
    if t.state == "claimed" and not mine:
        lines.append(tr("queue.held_by") + " " + clean_text(t.holder, 64))
    if t.state == "skipped" and t.skip_reason:
        lines.append(tr("queue.skip_reason") + " " + clean_text(t.skip_reason, 200))
    if t.state == "sent" and t.sent_by:
        how = tr(f"send.channel.{t.channel}") if t.channel in channels.compose.SEND_CHANNELS else "—"
        lines.append(tr("send.sent_line", who=clean_text(t.sent_by, 64), channel=how)
                     + (f" · {tr('send.message_id')} {clean_text(t.message_id, 200)}" if t.message_id else ""))
    return "\n".join(lines)


def send_buttons(row: Any, t: queue.Task, k: str, reach: dict[str, Any] | None, cfg: Config) -> None:
    """A send button per provider's channel; one the fan cannot be reached on is disabled, its
    reason in the button's help."""
    for ch in SEND_ON:
        why = channels.why_not(cfg, reach, ch)
        row.button(tr(f"send.{ch}"), key=f"send-{ch}-{k}", disabled=bool(why),
                   help=f"{tr('send.unavailable')} {why}" if why else None, on_click=send, args=(t.id, ch))


def task_card(t: queue.Task, reach: dict[str, Any] | None = None, cfg: Config | None = None) -> None:
    """One task. A refresh redraws every card, and each element is a message to the browser, so a
    card is kept to a few elements: the name, one line of badges, one text block, the message,
    and the buttons its state allows."""
    k = _ui.task_key(t.id)
    mine = t.state == "claimed" and t.holder == me
    with st.container(border=True, key=f"task-{k}"):
        left, right = st.columns([3, 2])
        _ui.text(clean_text(t.name, 40) or tr("queue.no_name"), key=f"name-{k}", where=left)
        left.markdown(badges(t, mine))
        left.text(details(t, mine))
        right.code(t.message, language=None, wrap_lines=True)
        if t.state not in ("pending", "claimed") or (t.state == "claimed" and not mine):
            return
        no_op = not me
        row = right.container(horizontal=True, vertical_alignment="bottom")
        if t.state == "pending":
            row.button(tr("queue.claim"), key=f"claim-{k}", type="primary", disabled=no_op,
                       on_click=act, args=("claim", t.id, k))
        else:
            send_buttons(row, t, k, reach, cfg or providers())
            row.button(tr("queue.sent"), key=f"sent-{k}", type="primary", on_click=act, args=("sent", t.id, k))
            row.button(tr("queue.release"), key=f"release-{k}", on_click=act, args=("release", t.id, k))
        row.text_input(tr("queue.reason"), key=f"reason-{k}", max_chars=200, disabled=no_op,
                       placeholder=tr("queue.reason_hint"), label_visibility="collapsed")
        row.button(tr("queue.skip"), key=f"skip-{k}", disabled=no_op, on_click=act, args=("skip", t.id, k))


@st.fragment(run_every=_ui.refresh_s(3))
def tasks() -> None:
    with _ui.redis_guard():
        counts = queue.counts(r, shop)
        cols = st.columns(len(TASK_STATES))
        for col, s in zip(cols, TASK_STATES, strict=True):
            col.metric(tr(f"state.{s}"), _ui.number(counts[s]))
        _ui.show_flash()
        live = task_reads.live_room(r, shop) if live_first else None
        if live is not None:
            st.caption(tr("queue.live_room"))
            _ui.text(clean_text(live, 60), key="q-live-room")
        want = {"tier": tier or None, "lang": lang or None, "sendable_now": sendable, "limit": page,
                "kind": kind or None}
        rows = task_reads.task_page(r, shop, state or queue.OPEN, **want, room=live)  # type: ignore[arg-type]
        if live is not None and len(rows) < page:  # the live room's first, then the other rooms'
            rows += [t for t in task_reads.task_page(r, shop, state or queue.OPEN, **want)  # type: ignore[arg-type]
                     if t.room != live][:page - len(rows)]
        if not rows:
            st.info(tr("queue.empty" if sum(counts.values()) == 0 else "queue.empty_filtered"))
            return
        rows.sort(key=lambda t: not (t.state == "claimed" and t.holder == me))  # mine first, stable (live room next)
        mine = [t.viewer for t in rows if t.state == "claimed" and t.holder == me]
        reach = read.viewer_reach(r, shop, mine) if mine else {}
        cfg = providers() if mine else None  # the send buttons are on my claimed tasks only
        for t in rows:
            task_card(t, reach.get(t.viewer), cfg)
        if len(rows) == page:
            st.caption(tr("queue.more", n=page))


tasks()
