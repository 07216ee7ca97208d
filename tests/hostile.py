"""Hostile text for the tests of issue 17 item 5: what a feed, a webhook or an operator may send.

Every string holds the marker ``xq7``, which the app's own words never do: a browser test finds
what the page made of the data by it.  None may run, fetch, style or link anything where it is shown.
"""

from __future__ import annotations

from realtime.simulator import HOSTILE_NAMES

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
NAMES: tuple[str, ...] = OWN + tuple(HOSTILE_NAMES)  # display names (at most 256 characters)
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
