"""The fanops app: ``streamlit run app.py`` (or ``python3 dev.py up`` for the whole product).

Seven screens (``screens/``): the live board, the host screen, the follow-up
queue, the settings and the post-show review.  The folder is not named
``pages/``: Streamlit would take a ``pages/`` folder next to this file for a
legacy multipage app and run a deep-linked screen alone.  The sidebar holds
what every screen shares: the language, the shop and room, and the
operator's name; they live in ``st.session_state`` and so survive refreshes
and page switches.  A URL such as ``/host?room=ROOM&lang=zh-Hans`` points a
side screen at one room.

Access (``screens/access.py``, rules in ``fanops.access``) comes first, before any shop data is
read: with a password set, a session that has not signed in sees the sign-in form only, and a
signed-in one the screens of its role (the operator's name is the one given at sign-in);
``/host?token=...`` (``FANOPS_HOST_TOKEN``) opens the host screen alone, with no navigation.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fanops import access, read
from fanops.i18n import LANG_NAMES, LANGS
from fanops.templates import clean_text
from screens import _ui
from screens import access as access_ui
from screens.reads import rooms

# the page icon is a file of the repo: a ":material/...:" icon is fetched from a font CDN by every browser
st.set_page_config(page_title="LiveFans", page_icon=str(Path(__file__).resolve().parent / "screens" / "icon.png"),
                   layout="wide")
_ui.init_from_query()
tr = _ui.translator()

r = _ui.client()
with _ui.redis_guard(stop=True):
    who = access_ui.door(r)  # the sign-in form and a stop, when a password is set and nobody has signed in

SCREENS = [("live", ":material/monitoring:"), ("host", ":material/campaign:"), ("queue", ":material/forum:"),
           ("fans", ":material/groups:"), ("settings", ":material/tune:"), ("review", ":material/analytics:"),
           ("orders", ":material/receipt_long:")]
PAGES = [
    st.Page(f"screens/{name}.py", title=tr(f"nav.{name}"), icon=icon, url_path=name, default=name == "live")
    # a screen this session may not open is a hidden page that says so (an unknown path would be an error)
    if (name == "host" if who.host_only else access.allowed(who.role, name))
    else st.Page(access_ui.closed_page(name), title=tr(f"nav.{name}"), url_path=name, visibility="hidden",
                 default=name == "live")  # the default page answers "/" (its url_path does not): /host stays /host
    for name, icon in SCREENS
]
# /host?token=...: the host screen alone, with no navigation; every other path ("/" too) says it is closed
page = st.navigation(PAGES, position="hidden" if who.host_only else "sidebar")

# A static style block, no data in it: st.text (how viewer text is shown) in the app's font, a
# tighter top margin, and the queue's names a little heavier.
st.markdown(
    "<style>[data-testid='stText'],[data-testid='stText'] span{font-family:inherit}"
    "[data-testid='stMainBlockContainer']{padding-top:2.5rem}"
    "[class*='st-key-name-'] [data-testid='stText'] span{font-weight:600;font-size:1.1rem}</style>",
    unsafe_allow_html=True,
)

if page.url_path == "host":
    # The host screen is glanced at from metres away: no sidebar, no toolbar.
    st.markdown("<style>[data-testid='stSidebar'],[data-testid='stSidebarCollapsedControl'],"
                "[data-testid='stHeader']{display:none}</style>", unsafe_allow_html=True)

if who.host_only:
    page.run()  # read-only and alone: no sidebar, nothing to pick (shop, room and language come from the URL)
    st.stop()

with st.sidebar, _ui.redis_guard(stop=True):
    _ui.sticky("radio", "Language / 语言", list(LANGS), "lang", format_func=LANG_NAMES.__getitem__,
               translated=False, horizontal=True)
    shops = read.shops(r)
    shop_before = st.session_state.get("shop")
    if st.session_state.get("shop") and st.session_state["shop"] not in shops:
        shops.append(st.session_state["shop"])
    shop_now = _ui.sticky("select", tr("sidebar.shop"), shops or ["default"], "shop", translated=False)
    if shop_before is not None and shop_now != shop_before:
        st.session_state["room"] = _ui.AUTO
    now_ms = int(rooms.wall_clock() * 1000)
    ids = [rm.id for rm in rooms.room_list(r, _ui.shop(), now_ms)]
    choice = st.session_state.get("room", _ui.AUTO)
    if choice is not _ui.AUTO and choice not in ids:
        ids.append(choice)  # a room named in the URL, or one that dropped off the recent list
    # Labels never change for a room (its status shows on the page): a label that changed under
    # a chosen option would drop the choice.
    labels: dict[str | None, str] = {_ui.AUTO: tr("sidebar.room_auto")}
    labels.update((i, clean_text(i, 48)) for i in ids)
    _ui.sticky("select", tr("sidebar.room"), [_ui.AUTO, *ids], "room", format_func=labels.__getitem__)
    if who.role is None:  # no sign-in set up (this machine only): the name is asked here
        _ui.sticky("text", tr("sidebar.operator"), None, "operator", translated=False, max_chars=64,
                   placeholder=tr("sidebar.operator_hint"))
    else:  # the name given at sign-in
        access_ui.sidebar(r, who)

page.run()
