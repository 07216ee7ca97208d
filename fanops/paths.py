"""Where the product keeps its files: one escaping of shop and room ids into folder names."""

from __future__ import annotations

import hashlib
import urllib.parse


def fs_name(part: str) -> str:
    """A shop or room id as one safe folder name: percent-escaped, never ``.``/``..``, at most 120 chars."""
    s = urllib.parse.quote(part, safe="-_.").replace("~", "%7E")
    if s.startswith("."):
        s = "%2E" + s[1:]
    if not s:
        s = "%00empty"
    if len(s) > 120:
        s = s[:100] + "~" + hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return s
