"""The app's door (the rules are ``fanops.access``): the host token, the sign-in form, the session, Sign out.

Not a page.  ``door()`` runs first in ``app.py``, before anything reads shop data:

- ``/host?token=...`` with ``FANOPS_HOST_TOKEN``: the session becomes host-only (``Who.host_only``);
  ``app.py`` then lists the host screen alone, with no navigation and no sidebar.
- With a password set, a session that is not signed in gets the sign-in form and nothing else.
  A failed attempt is counted per client address in Redis (so reloading the page does not reset
  it) and logged without the password; after ``access.FREE_FAILURES`` the address waits.
- A sign-in makes a random session token: Redis keeps its hash with the role and the name
  (``keys.access_session``, expiring after ``FANOPS_SESSION_HOURS``), the browser keeps the token
  in a cookie (set by a line of script: Streamlit reads cookies, ``st.context.cookies``, but has
  no call to set one).  A reload opens a new Streamlit session, which finds the cookie and the
  record.  "Sign out" deletes the record, so the cookie is worthless even if it stays.
- With ``st.login`` set up (an ``[auth]`` section in secrets.toml) and an allow-list, the
  identity provider's user gets the role the list gives their e-mail (README "Access").
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import streamlit as st

from fanops import access, keys
from fanops.config import PROJECT_ROOT, Config
from screens import _ui

COOKIE = "fanops_session"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]{16,128}")  # secrets.token_urlsafe
SECRETS_FILES = (PROJECT_ROOT / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml")

log = logging.getLogger("fanops.access")
if not log.handlers:  # Streamlit configures its own loggers only: one line per sign-in event in the app's log
    _h = logging.StreamHandler()
    _h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(_h)
    log.setLevel(logging.INFO)
    log.propagate = False


@dataclass(frozen=True)
class Who:
    role: str | None  # None: no sign-in is set up (every screen)
    name: str = ""
    host_only: bool = False


def secrets_section() -> dict[str, Any]:
    """``[fanops]`` of .streamlit/secrets.toml ({} with no file: st.secrets without one complains in the log)."""
    if not any(f.is_file() for f in SECRETS_FILES):
        return {}
    try:
        return dict(st.secrets.get("fanops", {}))
    except (FileNotFoundError, ValueError):
        return {}


def settings() -> access.AccessSettings:
    """The access settings: the environment, else ``[fanops]`` of secrets.toml."""
    cfg = Config.from_env()
    return access.settings_from({n: getattr(cfg, n) for n in access.SECRET_NAMES}, secrets_section())


def _oidc_ready() -> bool:
    try:
        return any(f.is_file() for f in SECRETS_FILES) and "auth" in st.secrets
    except (FileNotFoundError, ValueError):
        return False


def client_id() -> str:
    """The client's address as the server saw it (not X-Forwarded-For, which any client can write);
    Streamlit gives none for a browser on this machine: those share one record, "unknown"."""
    ip = getattr(st.context, "ip_address", None)
    return ip if isinstance(ip, str) and ip else "unknown"


def door(r: redis.Redis) -> Who:
    """Who this session is; stops the run with the sign-in form when someone must sign in first."""
    s = settings()
    if st.session_state.get("_host_only") or access.host_token_ok(st.query_params.get("token"), s):
        st.session_state["_host_only"] = True
        return Who(None, host_only=True)
    if s.allow_list and _oidc_ready():
        return _oidc_door(s)
    if not s.sign_in:
        return Who(None, _ui.operator())
    who = _session(r)
    if who is not None:
        _cookie_script(r)
        st.session_state["operator"] = who.name
        return who
    _sign_in_form(r, s)
    st.stop()
    raise AssertionError("unreachable: st.stop raises")


def _str(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else "" if v is None else str(v)


def _session(r: redis.Redis) -> Who | None:
    """The signed-in user of this browser: the session's token, else the cookie's, if Redis still has it."""
    token = st.session_state.get("_token") or st.context.cookies.get(COOKIE)
    if not token:
        return None
    rec = r.hgetall(keys.access_session(access.token_hash(str(token))))
    role = _str(rec.get(b"role"))
    if role not in access.ROLES:
        st.session_state.pop("_token", None)
        return None
    st.session_state["_token"] = token
    return Who(role, _str(rec.get(b"name")))


def _cookie_script(r: redis.Redis) -> None:
    """Hand the browser its cookie, on every full run of a signed-in session (a run that is replaced
    before the browser draws it never runs its script).  The token is URL-safe base64: nothing to escape."""
    token = st.session_state["_token"]
    if not _TOKEN_CHARS.fullmatch(token):  # it goes into a script: never anything but the token's alphabet
        return
    ttl = max(60, int(r.ttl(keys.access_session(access.token_hash(token)))))
    secure = "; Secure" if str(getattr(st.context, "url", "") or "").startswith("https:") else ""
    st.sidebar.html(f"<script>document.cookie='{COOKIE}={token}; path=/; max-age={ttl}; SameSite=Strict{secure}'"
                    "</script>", unsafe_allow_javascript=True)


def _failures(r: redis.Redis, client: str) -> tuple[int, int]:
    rec = r.hgetall(keys.access_failures(client))
    return int(rec.get(b"n", 0)), int(rec.get(b"last", 0))


def _failed(r: redis.Redis, client: str, now_ms: int) -> int:
    k = keys.access_failures(client)
    with r.pipeline(transaction=True) as p:
        p.hincrby(k, "n", 1)
        p.hset(k, "last", now_ms)
        p.expire(k, access.FAILURE_MEMORY_S)
        n = int(p.execute()[0])
    log.warning("sign-in refused for client %s: wrong password (%d in a row)", client, n)
    return n


def _attempt(r: redis.Redis, s: access.AccessSettings) -> None:
    """The form's callback: check the name and password; on success make the session."""
    client, now_ms = client_id(), int(time.time() * 1000)
    n, last = _failures(r, client)
    wait = access.wait_s(n, last, now_ms)
    if wait > 0:
        st.session_state["_signin_msg"] = _ui.tr("access.locked", s=math.ceil(wait))
        return
    name = access.clean_name(str(st.session_state.get("signin_name") or ""))
    password = str(st.session_state.get("signin_pw") or "")
    st.session_state["signin_pw"] = ""
    role = access.check_password(password, s)
    if role is None:
        n = _failed(r, client, now_ms)
        locked = access.lockout_s(n)
        st.session_state["_signin_msg"] = _ui.tr("access.wrong") + (
            " " + _ui.tr("access.locked", s=locked) if locked else "")
        return
    if not name:
        st.session_state["_signin_msg"] = _ui.tr("access.need_name")
        return
    token = secrets.token_urlsafe(32)
    k = keys.access_session(access.token_hash(token))
    with r.pipeline(transaction=True) as p:
        p.hset(k, mapping={"role": role, "name": name, "since": now_ms})
        p.expire(k, max(1, Config.from_env().session_hours) * 3600)
        p.delete(keys.access_failures(client))
        p.execute()
    st.session_state.update({"_token": token, "operator": name})
    st.session_state.pop("_signin_msg", None)
    log.info("signed in as %s from client %s", role, client)


def _sign_in_form(r: redis.Redis, s: access.AccessSettings) -> None:
    if st.session_state.pop("_clear_cookie", False):
        st.html(f"<script>document.cookie='{COOKIE}=; path=/; max-age=0; SameSite=Strict'</script>",
                unsafe_allow_javascript=True)
    _, mid, _ = st.columns([1, 2, 1])
    with mid:
        st.title("LiveFans")
        st.subheader(_ui.tr("access.title"))
        with st.form("sign-in", border=True):
            st.text_input(_ui.tr("access.name"), key="signin_name", max_chars=access.NAME_CHARS,
                          value=st.session_state.get("operator") or "")
            st.text_input(_ui.tr("access.password"), key="signin_pw", type="password")
            st.form_submit_button(_ui.tr("access.sign_in"), type="primary", on_click=_attempt, args=(r, s))
        msg = st.session_state.get("_signin_msg")
        if msg:
            st.error(msg)


def closed_page(screen: str) -> Callable[[], None]:
    """The page standing in for a screen this session may not open (no data, one line)."""

    def closed() -> None:
        st.warning(_ui.tr("access.closed"), icon=":material/lock:")

    closed.__name__ = f"closed_{screen}"  # Streamlit names a callable page by its function
    return closed


def sign_out(r: redis.Redis) -> None:
    """The sidebar button's callback: the session record goes, so the cookie opens nothing any more."""
    token = st.session_state.pop("_token", None)
    if token:
        r.delete(keys.access_session(access.token_hash(str(token))))
    for k in ("operator", "_signin_msg"):
        st.session_state.pop(k, None)
    st.session_state["_clear_cookie"] = True
    log.info("signed out: client %s", client_id())


def sidebar(r: redis.Redis, who: Who) -> None:
    """Who is signed in, and the Sign out button (in the sidebar)."""
    if who.role is None:
        return
    st.caption(_ui.tr("access.as", role=_ui.tr(f"access.role.{who.role}")))
    _ui.text(who.name or "—", key="signed-in-name")
    st.button(_ui.tr("access.sign_out"), key="sign-out", on_click=_oidc_logout if st.session_state.get("_oidc")
              else sign_out, args=() if st.session_state.get("_oidc") else (r,))


def _oidc_door(s: access.AccessSettings) -> Who:
    """``st.login`` (OIDC): the provider says who, the allow-list says which role."""
    user: Any = st.user
    if not user.is_logged_in:
        _, mid, _ = st.columns([1, 2, 1])
        mid.title("LiveFans")
        mid.button(_ui.tr("access.oidc"), type="primary", on_click=st.login)
        st.stop()
    role = access.role_for_email(str(user.get("email") or ""), s)
    if role is None:
        st.error(_ui.tr("access.not_listed"))
        st.button(_ui.tr("access.sign_out"), on_click=st.logout)
        st.stop()
    st.session_state["_oidc"] = True
    name = access.clean_name(str(user.get("name") or user.get("email") or ""))
    st.session_state["operator"] = name
    return Who(role, name)


def _oidc_logout() -> None:
    st.logout()
