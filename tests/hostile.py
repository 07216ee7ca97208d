"""Hostile text for the tests of issue 17 item 5: what a feed, a webhook or an operator may send.

Every string holds the marker ``xq7``, which the app's own words never do: a browser test finds
what the page made of the data by it.  None may run, fetch, style or link anything where it is shown.
"""

from __future__ import annotations

from typing import Any

from realtime.simulator import HOSTILE_NAMES
from realtime.simulator.tables import HOSTILE_TEXT
from tests.feeds import ev

MARK = "xq7"
OUTSIDE = "198.51.100.7"  # TEST-NET-2: a host no page may ask for

IMG = f'<img src=x onerror="window.__pwned=1;alert(1)" alt={MARK}img>'
SCRIPT = f'<script>window.__pwned=1;alert("{MARK}")</script>'
IFRAME = f'<iframe src="javascript:alert(2)" name={MARK}if></iframe>'
MD_LINK = f"[{MARK} link](javascript:alert(3))"
MD_IMAGE = f"![{MARK}](http://{OUTSIDE}/{MARK}.png)"
ST_MARKDOWN = f":red[{MARK}red] :material/warning: ${MARK}^2$ **{MARK}bold**"
HTML_LINK = f'<a href="javascript:alert(4)">{MARK}a</a>'
BOLD = f"<b>{MARK}b</b> <i>it</i>"
RTL = f"\u202e{MARK}rtl\u202c"
ZERO_WIDTH = f"{MARK}\u200bzero\u200dwidth\ufeff"
FORMULA = f'=HYPERLINK("http://{OUTSIDE}","{MARK}")'
LONG = MARK + "L" * 9_997  # 10,000 characters
assert len(LONG) == 10_000

OWN: tuple[str, ...] = (IMG, SCRIPT, IFRAME, MD_LINK, MD_IMAGE, ST_MARKDOWN, HTML_LINK, BOLD, RTL, ZERO_WIDTH,
                        FORMULA)
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
FORMULAS: tuple[str, ...] = tuple(f"{c}1+2*{MARK}" if c != "@" else f"@SUM(1,{MARK})" for c in FORMULA_STARTS)
NAMES: tuple[str, ...] = OWN + FORMULAS + tuple(HOSTILE_NAMES)  # display names (at most 256 characters)
COMMENTS: tuple[str, ...] = OWN + FORMULAS + tuple(HOSTILE_TEXT)  # chat (at most 2,000 characters)
MIN = 60_000


def short_id(s: str) -> str:
    """A short pytest id for a hostile string."""
    return ascii(s[:24])


def show(room: str, shop: str, base: int, now: int, fan: str, late: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A show of ``shop`` starting at ``base``: every hostile name joins (the last one, as ``fan``,
    named with ST_MARKDOWN), asks a question (the simulator's hostile chat among them), views and
    carts a hostile SKU (one 10,000 characters long), gives a gift and lingers (a follow-up task);
    every fourth orders, with a hostile order id, 8 minutes before ``now``; the names ``late`` join
    a minute before ``now``."""
    out: list[dict[str, Any]] = []

    def add(viewer: str, ts: int, typ: str, info: dict[str, Any] | None = None, **kw: Any) -> None:
        e = ev(len(out) + 1, room=room, ts=ts, type=typ, viewer=viewer, shop=shop, **kw)
        e["viewer"].update(info or {})
        out.append(e)

    for i, name in enumerate((*NAMES, ST_MARKDOWN)):
        vid = fan if i == len(NAMES) else f"{MARK}-v{i}-<b>{i}</b>"
        # (a language is a BCP 47 tag, or the event is bad input: a hostile one never gets that far)
        info = {"name": name, "country": "US", "lang": "en-US" if i == 0 else "en"}
        add(vid, base + i, "join", info)
        add(vid, base + MIN + i, "comment", text=f"{COMMENTS[i % len(COMMENTS)]} ?")
        add(vid, base + 2 * MIN + i, "product_view", sku=LONG if i == 1 else OWN[(i + 1) % len(OWN)])
        add(vid, base + 3 * MIN + i, "cart_add", sku=FORMULAS[i % len(FORMULAS)] if i % 3 else OWN[(i + 2) % len(OWN)])
        add(vid, base + 6 * MIN + i, "like")
        if i % 4 == 0:
            add(vid, now - 8 * MIN + i, "order", order_id=f"{OWN[i % len(OWN)]}-{i}", amount=12.5, currency="USD")
        add(vid, base + 6 * MIN + 10 + i, "gift", gift=LONG if i == 2 else IMG, value=1.0)
    for i, name in enumerate(late):
        add(f"{MARK}-late-{i}", now - MIN + i, "join", {"name": name})
    return out
