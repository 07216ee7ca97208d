"""What every page shares: the Redis client, the language, the shop and room picked in the sidebar.

Not a page itself (``st.navigation`` lists the pages).  Viewer text is never
passed to anything that reads Markdown or HTML: ``text()`` renders it with
``st.text``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis
import streamlit as st

from fanops import retry
from fanops.config import Config
from fanops.errors import FanopsError
from fanops.i18n import LANGS, t
from fanops.runtime import db
from screens.reads import rooms

AUTO = None  # the room choice "whichever room is live now"
RUN_COMMAND = "python3 dev.py up"


@st.cache_resource(show_spinner=False)
def _client(url: str) -> redis.Redis:
    return db.connect(Config.from_env(), url or None)


@st.cache_resource(show_spinner=False)
def _settings() -> Config:
    return Config.from_env()


def refresh_s(times: float = 1.0) -> float:
    """A screen's refresh period in seconds: ``times`` the board's (FANOPS_BOARD_REFRESH_MS, at least 0.25 s)."""
    return max(0.25, _settings().board_refresh_ms / 1000) * times


def client() -> redis.Redis:
    """The process's one Redis client (REDIS_URL, else the embedded server); stops the page if down."""
    try:
        return _client(os.environ.get("REDIS_URL", ""))
    except FanopsError as e:
        problem("error", "Redis:", str(e))
        st.stop()
        raise  # unreachable: st.stop raises


@st.cache_resource(show_spinner=False)
def _outage() -> retry.Outage:
    """Since when this app process has been failing to reach Redis (shared by its sessions)."""
    return retry.Outage()


def outage_line(o: retry.Outage, now: float, reason: str, full: bool = False) -> str:
    """The board's plain line for a Redis outage (``full``: Redis at its maxmemory): since when, for
    how long, why."""
    since = o.since if o.since is not None else now
    return tr("err.redis_full" if full else "err.redis", at=clock_time(int(since * 1000), with_date=False),
              ago=ago((now - since) * 1000), reason=reason)


def _await_redis() -> None:
    """Look again every refresh while Redis is away; run the whole page again once it is back."""

    @st.fragment(run_every=refresh_s(2))
    def look() -> None:
        try:
            client().ping()
        except redis.RedisError:
            return
        st.rerun(scope="app")

    look()


@contextmanager
def redis_guard(stop: bool = False) -> Iterator[None]:
    """Show a lost connection as one plain line, "Redis unreachable since ...", instead of a
    traceback (fanops.retry decides what a wait fixes).  A live tile tries again at its next
    refresh; with ``stop`` (what the rest of the page needs) the page stops there and runs again
    by itself once Redis answers."""
    o = _outage()
    try:
        yield
    except redis.RedisError as e:
        if not retry.is_retryable(e):
            raise
        o.failed(e)
        st.error(outage_line(o, time.time(), type(e).__name__, isinstance(e, redis.exceptions.OutOfMemoryError)))
        if stop:
            _await_redis()
            st.stop()
    else:
        o.ended()


def lang() -> str:
    v = st.session_state.get("lang", "en")
    return v if v in LANGS else "en"


def tr(key: str, **params: Any) -> str:
    return t(key, lang(), **params)


def translator() -> Callable[..., str]:
    """``tr`` bound to this run's language (for format functions, which may be called outside a run)."""
    bound = lang()

    def tr_bound(key: str, **params: Any) -> str:
        return t(key, bound, **params)

    return tr_bound


def init_from_query() -> None:
    """On a session's first run, take shop, room and language from the URL (``?shop=&room=&lang=``),
    so that a side screen or a phone can be pointed at one room once."""
    if st.session_state.get("_init"):
        return
    st.session_state["_init"] = True
    q = st.query_params
    if q.get("lang") in LANGS:
        st.session_state["lang"] = q["lang"]
    if q.get("shop"):
        st.session_state["shop"] = q["shop"]
    if q.get("room"):
        st.session_state["room"] = q["room"]


def shop() -> str:
    return str(st.session_state.get("shop") or "default")


def operator() -> str:
    return str(st.session_state.get("operator") or "").strip()


def current_room(r: redis.Redis, shop_id: str) -> rooms.RoomRef | None:
    """The room picked in the sidebar, or the most recently active one ("live now")."""
    now_ms = int(rooms.wall_clock() * 1000)
    choice = st.session_state.get("room", AUTO)
    if choice is not AUTO:
        ref = rooms.room_ref(r, shop_id, choice, now_ms)
        if ref is not None:
            return ref
    recent = rooms.room_list(r, shop_id, now_ms, limit=1)
    return recent[0] if recent else None


def sticky(kind: str, label: str, options: list[Any] | None, name: str, *, where: Any = None,
           format_func: Callable[[Any], str] = str, translated: bool = True, **kw: Any) -> Any:
    """A widget (``select``, ``segmented``, ``radio`` or ``text``) whose value lives in
    ``st.session_state[name]``, so that it survives refreshes, page switches and language switches.

    With ``translated`` the widget's key carries the language: its option labels are
    translated, and a widget whose labels changed under it would show a stale label.
    """
    wkey = f"{name}__{lang()}" if translated else f"{name}__w"
    target = where if where is not None else st

    def keep() -> None:
        st.session_state[name] = st.session_state.get(wkey)

    if kind == "text":
        if wkey not in st.session_state:
            st.session_state[wkey] = str(st.session_state.get(name) or "")
        value = target.text_input(label, key=wkey, on_change=keep, **kw)
    else:
        assert options is not None
        current = st.session_state.get(name, options[0])
        if current not in options:
            current = options[0]
        common = {"key": wkey, "format_func": format_func, "on_change": keep, **kw}
        if kind == "segmented":
            value = target.segmented_control(label, options, default=current, required=True, **common)
        elif kind == "radio":
            value = target.radio(label, options, index=options.index(current), **common)
        else:
            value = target.selectbox(label, options, index=options.index(current), **common)
    st.session_state[name] = value
    return value


def text(body: str, key: str | None = None, where: Any = None) -> None:
    """Untrusted text, shown as text (never Markdown or HTML), in ``where`` (default: the page)."""
    target = where if where is not None else st
    if key:
        target.container(key=key).text(body)
    else:
        target.text(body)


def problem(kind: str, lead: str, detail: str) -> None:
    """A message box (``st.error``, ``st.warning``...) holding only the app's own words (``lead``),
    then ``detail`` as text: an error's message quotes shop, room and viewer ids, which are
    anyone's text and must not be read as Markdown (a ``![..](http://..)`` would fetch an image)."""
    getattr(st, kind)(lead)
    if detail:
        st.text(detail)


def task_key(task_id: str) -> str:
    """A widget key for a task (task ids hold NUL and any characters the feed sent)."""
    return hashlib.sha1(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def tz() -> Any:
    name = getattr(st.context, "timezone", None)
    try:
        return ZoneInfo(name) if name else UTC
    except (KeyError, ValueError, OSError):
        return UTC


def clock_time(ts_ms: int, with_date: bool = False) -> str:
    if ts_ms <= 0:
        return "—"
    d = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(tz())
    return d.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M:%S")


def ago(ms: float) -> str:
    """A duration in the largest unit that fits: 45 s, 12 min, 3 h, 5 d."""
    s = max(0, int(ms / 1000))
    if s < 90:
        return tr("unit.s", n=s)
    if s < 90 * 60:
        return tr("unit.min", n=s // 60)
    if s < 48 * 3600:
        return tr("unit.h", n=s // 3600)
    return tr("unit.d", n=s // 86400)


FLASH_S = 8.0


def flash(kind: str, message: str, detail: str = "") -> None:
    """A message shown for a few seconds, across the fragment's refreshes (actions run in
    callbacks, before the page draws)."""
    st.session_state["_flash"] = [(kind, message, detail, time.monotonic() + FLASH_S)]


def show_flash() -> None:
    live = [f for f in st.session_state.get("_flash", []) if f[3] > time.monotonic()]
    st.session_state["_flash"] = live
    for kind, message, detail, _ in live:
        problem(kind, message, detail)


def number(n: float | int | None, digits: int = 0) -> str:
    if n is None:
        return "—"
    return f"{n:,.{digits}f}"


def money(amount: float) -> str:
    """An amount short enough for a tile: 123.45 / 12,345 / 123.4k / 3.09M (the exact figure goes in the help)."""
    a = abs(amount)
    if a >= 1_000_000:
        return f"{amount / 1_000_000:,.2f}M"
    if a >= 100_000:
        return f"{amount / 1_000:,.1f}k"
    if a >= 1_000:
        return f"{amount:,.0f}"
    return f"{amount:,.2f}"


def empty_no_room() -> None:
    st.info(tr("empty.no_room"))
    st.code(RUN_COMMAND, language="bash")
    st.caption(tr("empty.no_room_feed"))
    st.code("python -m realtime consume --url ws://HOST:PORT", language="bash")
