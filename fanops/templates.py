"""Suggested 1-on-1 DM follow-ups: default templates by tier and language, and safe rendering.

The operator's follow-up queue (spec/tiers.md, "Follow-up queue") shows a
suggested message for each task, chosen by the viewer's tier and language and
falling back to English.  The default wording is data, ``fanops/tables/templates.toml``
(read once at import); this module holds the pure functions that pick and fill a
template and does no other I/O.

Templates are shaped ``{key: {lang: {"with_product": str, "no_product": str}}}``
where ``key`` is a tier (``new_fan``, ``first_buyer``, ``active``,
``dormant``) or ``reactivated`` (a fan back after 30+ days away, preferred over
the tier when the room says so), and ``lang`` is a base language tag (``es``,
not ``es-MX``).  A template may use only two placeholders, ``{name}`` and
``{product}``; every other character is literal.  Viewer names and product
titles are untrusted text: they are cleaned and substituted in a single literal
pass (never ``str.format``), so a name such as ``{product}`` or ``{0.__class__}``
shows up as typed.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from importlib import resources

from fanops.state import TASK_KINDS, TIERS

REACTIVATED = "reactivated"
"""The template key used for a fan back after 30+ days away (a room fact, not a tier)."""

TEMPLATE_KEYS: tuple[str, ...] = (*TIERS, REACTIVATED)
"""Every top-level key a templates object may have."""

VARIANTS: tuple[str, ...] = ("with_product", "no_product")
"""The two texts of each tier and language: one naming ``{product}``, one for when there is none."""

PLACEHOLDERS: tuple[str, ...] = ("name", "product")
"""The only placeholders a tier's template may use, written ``{name}`` and ``{product}``."""

KINDS: tuple[str, ...] = TASK_KINDS[1:]
"""spec/tiers.md v1.1's follow-up kinds besides lingered: each has its own texts, under the kind's
key (every tier) or ``<kind>/<tier>`` (one tier, preferred), with ``{coupon}`` besides the two
placeholders, and an optional ``coupon_line`` added after the text when a coupon code is set."""

KIND_TEMPLATE_KEYS: tuple[str, ...] = (*KINDS, *(f"{k}/{t}" for k in KINDS for t in TIERS))
COUPON_LINE = "coupon_line"
COUPONS = "coupons"
"""The templates object's key for the coupon codes: ``{kind: {tier: code}}``."""
MAX_COUPON_CHARS = 40

LANGUAGES: tuple[str, ...] = ("en", "es", "pt", "ar", "de", "id", "ja", "zh", "fr")
"""Languages of the default templates (base BCP-47 tags); ``zh`` is Simplified Chinese."""

DEFAULT_LANG = "en"
MAX_TEMPLATE_CHARS = 500
MAX_NAME_CHARS = 40
MAX_PRODUCT_CHARS = 80
ELLIPSIS = "\u2026"



def _load_defaults() -> dict[str, dict[str, dict[str, str]]]:
    """The default wording, ``fanops/tables/templates.toml`` (see the notes at the top of that file)."""
    with (resources.files("fanops") / "tables" / "templates.toml").open("rb") as f:
        loaded: dict[str, dict[str, dict[str, str]]] = tomllib.load(f)
    for kind in KINDS:  # a kind's text names no product (an order's, a dormant spell's)
        for entry in loaded[kind].values():
            entry.setdefault("with_product", entry["no_product"])
    return loaded


DEFAULT_TEMPLATES: dict[str, dict[str, dict[str, str]]] = _load_defaults()
"""The default texts, every key, language and variant: read once, at import."""


# --- language ---------------------------------------------------------------

# Older or three-letter codes some devices and APIs still send, mapped to the
# base tag used as a template key ("in" is what older Android reports for Indonesian).
_LANG_ALIASES: dict[str, str] = {
    "in": "id", "ind": "id", "iw": "he", "ji": "yi",
    "eng": "en", "spa": "es", "por": "pt", "ara": "ar", "deu": "de", "ger": "de",
    "jpn": "ja", "zho": "zh", "chi": "zh", "cmn": "zh", "fra": "fr", "fre": "fr",
}


def resolve_lang(tag: str | None, available: Iterable[str]) -> str:
    """Return the template language that best fits a viewer's language tag.

    ``tag`` is a BCP-47 tag such as ``es-MX``, ``pt_BR`` or ``zh-Hans-CN``
    (case-insensitive, ``_`` accepted for ``-``), or an Accept-Language style
    list (``"es-MX,es;q=0.9,en"``), whose entries are tried in the order given.
    For each entry the longest matching prefix among ``available`` wins
    (``zh-Hans-CN`` -> ``zh-hans`` if available, else ``zh``), then common
    legacy and three-letter codes (``in`` -> ``id``, ``spa`` -> ``es``).
    The result is spelled exactly as in ``available``.  ``None``, a blank or
    malformed tag, or a language not available gives ``"en"``.
    """
    by_lower: dict[str, str] = {}
    for key in available:
        if isinstance(key, str):
            by_lower.setdefault(key.strip().lower().replace("_", "-"), key)
    if not isinstance(tag, str):
        return DEFAULT_LANG
    for entry in tag.split(","):
        code = entry.split(";", 1)[0].strip().lower().replace("_", "-")
        parts = [p for p in code.split("-") if p]
        if not parts or not parts[0].isalpha():
            continue
        for n in range(len(parts), 0, -1):
            found = by_lower.get("-".join(parts[:n]))
            if found is not None:
                return found
        alias = _LANG_ALIASES.get(parts[0])
        if alias is not None and alias in by_lower:
            return by_lower[alias]
    return DEFAULT_LANG


# --- rendering --------------------------------------------------------------

_PLACEHOLDER_RE = re.compile(r"\{(name|product|coupon)\}")
_ANY_BRACED_RE = re.compile(r"\{[^{}]*\}")
# Dropping an empty name: the placeholder, one space before it and a Japanese
# honorific glued after it; then a separator left dangling before another one
# or end punctuation ("Welcome back, !" -> "Welcome back!", "Oi, , que" ->
# "Oi, que") or at the very start ("{name}さん、今日は" -> "今日は").
_EMPTY_NAME_RE = re.compile(r" ?\{name\}(?:さん|様|さま|ちゃん)?")
_DANGLING_SEP_RE = re.compile(r"[,，、،](?=\s*[,，、،!?.！？。])")
_LEADING_SEP_RE = re.compile(r"^[\s,，、،]+")

_BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # LRE RLE PDF LRO RLO
    "\u2066\u2067\u2068\u2069"  # LRI RLI FSI PDI
    "\u200e\u200f\u061c"  # LRM RLM ALM
)
_ZWJ = "\u200d"


def _clean_char(ch: str) -> str:
    if ch in _BIDI_CONTROLS:
        return ""
    cat = unicodedata.category(ch)
    if cat == "Cc":
        return " " if ch.isspace() else ""
    if cat == "Cs":  # lone surrogate: cannot be encoded for sending
        return ""
    return ch


def _joins_previous(ch: str) -> bool:
    """True if ``ch`` belongs to the grapheme before it (a mark, joiner, selector or modifier)."""
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or ch == _ZWJ
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # emoji tag sequences
    )


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = limit - 1  # keep room for the ellipsis
    # Never split a grapheme: back off over combining marks, joiners, modifiers.
    while cut > 0 and (_joins_previous(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    # Flags are pairs of regional indicators: do not keep half of one.
    run = 0
    while run < cut and _is_regional_indicator(text[cut - 1 - run]):
        run += 1
    if run % 2:
        cut -= 1
    return text[:cut].rstrip() + ELLIPSIS


def clean_text(text: str | None, limit: int) -> str:
    """Make untrusted display text (a viewer name, a product title) safe to put in a DM.

    Removes bidi controls (U+202A-U+202E, U+2066-U+2069, LRM, RLM, ALM), other
    control characters (category Cc; line breaks and tabs become spaces) and
    lone surrogates, collapses runs of whitespace, strips the ends, and cuts
    text longer than ``limit`` characters to at most ``limit`` characters ending
    in "…" without splitting an emoji or accented letter.  ``None`` gives ``""``.
    Braces and every other character are kept as they are.
    """
    if not text:
        return ""
    cleaned = " ".join("".join(_clean_char(ch) for ch in text).split())
    return _truncate(cleaned, limit)


def render(template: str, name: str | None, product: str | None, fallback_name: str = "",
           coupon: str = "") -> str:
    """Fill ``{name}`` and ``{product}`` in ``template``, treating both values as literal text.

    Only those two placeholders are replaced, in one pass over the template:
    text substituted in is never looked at again, so a name of ``{product}``
    or ``{0.__class__}`` appears exactly as typed, and any other ``{...}`` in
    the template is left as written.  The name and product are cleaned with
    :func:`clean_text` (names cut to 40 characters, products to 80).  A blank
    name is replaced by ``fallback_name``; if that is blank too, the
    ``{name}`` placeholder is dropped together with the space before it (and a
    Japanese honorific such as さん right after it), so "Hi {name}!" reads
    "Hi!" rather than "Hi !".  A missing product renders as empty text.
    """
    clean_name = clean_text(name, MAX_NAME_CHARS) or clean_text(fallback_name, MAX_NAME_CHARS)
    clean_product = clean_text(product, MAX_PRODUCT_CHARS)
    if not clean_name:
        template = _EMPTY_NAME_RE.sub("", template)
        template = _DANGLING_SEP_RE.sub("", template)
        template = _LEADING_SEP_RE.sub("", template)
    values = {"name": clean_name, "product": clean_product, "coupon": clean_text(coupon, MAX_COUPON_CHARS)}
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


# --- choosing a template ----------------------------------------------------

def _pick_variant(entry: object, has_product: bool) -> str | None:
    """The text to use from one ``{variant: text}`` entry, or None if it has none that fits."""
    if not isinstance(entry, Mapping):
        return None
    with_p = entry.get("with_product")
    no_p = entry.get("no_product")
    with_p = with_p if isinstance(with_p, str) and with_p.strip() else None
    no_p = no_p if isinstance(no_p, str) and no_p.strip() else None
    if has_product:
        return with_p or no_p
    # A with-product text read with an empty product leaves a hole: not a fit.
    if no_p is not None:
        return no_p
    if with_p is not None and "{product}" not in with_p:
        return with_p
    return None


def _by_lang(tier_map: Mapping[object, object]) -> dict[str, object]:
    """A tier's entries keyed by normalised language tag (lower case, ``-``)."""
    out: dict[str, object] = {}
    for lang, entry in tier_map.items():
        if isinstance(lang, str):
            out.setdefault(lang.strip().lower().replace("_", "-"), entry)
    return out


def _find(sources: list[object], keys: list[str], lang_tag: str | None, has_product: bool) -> str | None:
    """The first fitting text: viewer's language then English; per language, sources then keys in order."""
    tiers = [
        _by_lang(tier_map)
        for source in sources if isinstance(source, Mapping)
        for key in keys if isinstance(tier_map := source.get(key), Mapping)
    ]
    lang = resolve_lang(lang_tag, [code for t in tiers for code in t])
    for candidate in dict.fromkeys((lang.lower().replace("_", "-"), DEFAULT_LANG)):
        for t in tiers:
            text = _pick_variant(t.get(candidate), has_product)
            if text is not None:
                return text
    return None


def suggest(
    templates: Mapping[str, Mapping[str, Mapping[str, str]]] | None,
    tier: str,
    lang_tag: str | None,
    name: str | None,
    product: str | None,
    reactivated: bool = False,
    fallback_name: str = "",
    kind: str = "lingered",
) -> str:
    """Return the suggested DM for one follow-up task, rendered for the viewer.

    The viewer's language (see :func:`resolve_lang`, over the languages of
    ``templates`` and :data:`DEFAULT_TEMPLATES`) is tried before English.
    Within a language, ``templates`` (the operator's, possibly partial or
    malformed; ``None`` for none) is tried before the defaults, and the
    ``reactivated`` text before the tier's when ``reactivated`` is set.  So a
    Spanish viewer gets the operator's Spanish text, else the default Spanish
    one, and English only when no Spanish text exists.  A non-blank
    ``product`` uses the ``with_product`` text (the ``no_product`` one if that
    is missing), otherwise the ``no_product`` text.  A ``tier`` of
    ``"reactivated"`` is the same as ``reactivated=True``; an unknown tier is
    treated as ``new_fan``.  So a non-empty message is always returned.
    The result is rendered with :func:`render`.  ``kind`` (spec/tiers.md v1.1) other than
    lingered takes the kind's texts (``<kind>/<tier>``, then ``<kind>``) and the shop's coupon
    code for it (``coupon_for``): ``{coupon}``, or the kind's ``coupon_line`` added after a text
    that does not name it.
    """
    if kind in KINDS:
        keys = [f"{kind}/{tier}", kind]
    else:
        keys = [REACTIVATED] if reactivated or tier == REACTIVATED else []
        keys.append(tier if tier in TIERS else "new_fan")
    has_product = bool(clean_text(product, MAX_PRODUCT_CHARS))
    # The defaults have every key, language and variant, so a text is always found.
    text = _find([templates, DEFAULT_TEMPLATES], keys, lang_tag, has_product) or ""
    code = coupon_for(templates, kind, tier)
    if code and "{coupon}" not in text:
        text += _coupon_line([templates, DEFAULT_TEMPLATES], keys, lang_tag)
    return render(text, name, product if has_product else None, fallback_name, code)


def coupon_for(templates: Mapping[str, object] | None, kind: str, tier: str) -> str:
    """The shop's coupon code for a kind's tasks to a tier ("" none)."""
    codes = templates.get(COUPONS) if isinstance(templates, Mapping) else None
    by_tier = codes.get(kind) if isinstance(codes, Mapping) else None
    code = by_tier.get(tier) if isinstance(by_tier, Mapping) else None
    return code.strip() if isinstance(code, str) else ""


def _coupon_line(sources: list[object], keys: list[str], lang_tag: str | None) -> str:
    """The kind's ``coupon_line`` in the viewer's language, else English ("" none)."""
    maps = [_by_lang(m) for src in sources if isinstance(src, Mapping)
            for k in keys if isinstance(m := src.get(k), Mapping)]
    lang = resolve_lang(lang_tag, [code for m in maps for code in m])
    for candidate in dict.fromkeys((lang.lower().replace("_", "-"), DEFAULT_LANG)):
        for m in maps:
            entry = m.get(candidate)
            line = entry.get(COUPON_LINE) if isinstance(entry, Mapping) else None
            if isinstance(line, str) and line.strip():
                return line
    return ""


# --- validation -------------------------------------------------------------

_LANG_KEY_RE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def validate_templates(obj: object) -> list[str]:
    """List every problem in a user-edited templates object; an empty list means it is fine.

    The object must be ``{key: {lang: {"with_product": str, "no_product": str}}}``.
    Each problem is one human-readable line naming where it is, e.g.
    ``"new_fan/es/with_product: unknown placeholder {nmae} ..."``.  Reported:
    a key that is not a tier or ``reactivated``; a key with no English (``en``)
    entry; a language key that is not a language tag; a variant other than
    ``with_product``/``no_product``, or one missing; a text that is not a
    string, is empty or blank, or is longer than 500 characters; any
    ``{...}`` other than ``{name}`` and ``{product}`` (``{nmae}``, ``{0}``,
    ``{}``, ``{ name }``); and ``{product}`` in a ``no_product`` text, where it
    would always be empty.  Tiers left out are not a problem (the defaults
    apply).
    """
    if not isinstance(obj, Mapping):
        return [f"templates must be a mapping of tier -> language -> texts, got {type(obj).__name__}"]
    problems: list[str] = []
    for key, langs in obj.items():
        if key == COUPONS:
            problems += _coupon_problems(langs)
            continue
        if key in KIND_TEMPLATE_KEYS:
            problems += _kind_problems(key, langs)
            continue
        if key not in TEMPLATE_KEYS:
            problems.append(f"{key!r}: unknown tier (expected one of {', '.join(TEMPLATE_KEYS)})")
            continue
        if not isinstance(langs, Mapping):
            problems.append(f"{key}: must be a mapping of language -> texts")
            continue
        if DEFAULT_LANG not in langs:
            problems.append(f"{key}: no English ('en') template; English is the fallback for every language")
        for lang, variants in langs.items():
            where = f"{key}/{lang}"
            if not isinstance(lang, str) or not _LANG_KEY_RE.fullmatch(lang):
                problems.append(f"{key}/{lang!r}: not a language tag (use a base tag such as 'es')")
                continue
            if not isinstance(variants, Mapping):
                problems.append(f"{where}: must be a mapping with 'with_product' and 'no_product' texts")
                continue
            for variant in variants:
                if variant not in VARIANTS:
                    problems.append(f"{where}: unknown variant {variant!r} (expected with_product, no_product)")
            for variant in VARIANTS:
                if variant not in variants:
                    problems.append(f"{where}: missing the {variant!r} text")
                    continue
                problems.extend(_text_problems(f"{where}/{variant}", variant, variants[variant]))
    return problems


def _kind_problems(key: str, langs: object) -> list[str]:
    """A kind's texts: ``no_product`` required, ``with_product`` and ``coupon_line`` optional,
    ``{coupon}`` allowed besides ``{name}`` and ``{product}``; no English needed (the defaults
    have it)."""
    if not isinstance(langs, Mapping):
        return [f"{key}: must be a mapping of language -> texts"]
    problems: list[str] = []
    for lang, variants in langs.items():
        where = f"{key}/{lang}"
        if not isinstance(lang, str) or not _LANG_KEY_RE.fullmatch(lang):
            problems.append(f"{key}/{lang!r}: not a language tag (use a base tag such as 'es')")
        elif not isinstance(variants, Mapping) or "no_product" not in variants:
            problems.append(f"{where}: must be a mapping with a 'no_product' text")
        else:
            for variant, text in variants.items():
                if variant not in (*VARIANTS, COUPON_LINE):
                    problems.append(f"{where}: unknown variant {variant!r} (expected with_product, no_product, "
                                    f"{COUPON_LINE})")
                else:
                    problems += _text_problems(f"{where}/{variant}", variant, text, ("coupon",))
    return problems


def _coupon_problems(codes: object) -> list[str]:
    if not isinstance(codes, Mapping):
        return [f"{COUPONS}: must be a mapping of kind -> tier -> code"]
    problems: list[str] = []
    for kind, by_tier in codes.items():
        if kind not in KINDS or not isinstance(by_tier, Mapping):
            problems.append(f"{COUPONS}/{kind}: expected one of {', '.join(KINDS)}, each a mapping of tier -> code")
            continue
        for tier, code in by_tier.items():
            where = f"{COUPONS}/{kind}/{tier}"
            if tier not in TIERS:
                problems.append(f"{where}: unknown tier (expected one of {', '.join(TIERS)})")
            elif not isinstance(code, str) or len(code) > MAX_COUPON_CHARS or _ANY_BRACED_RE.search(code):
                problems.append(f"{where}: a code is text of at most {MAX_COUPON_CHARS} characters, no {{...}}")
    return problems


def _text_problems(where: str, variant: str, text: object, extra: tuple[str, ...] = ()) -> list[str]:
    if not isinstance(text, str):
        return [f"{where}: must be text, got {type(text).__name__}"]
    if not text.strip():
        return [f"{where}: text is empty"]
    problems: list[str] = []
    if len(text) > MAX_TEMPLATE_CHARS:
        problems.append(f"{where}: text is {len(text)} characters, more than {MAX_TEMPLATE_CHARS}")
    for m in _ANY_BRACED_RE.finditer(text):
        if m.group(0)[1:-1] not in (*PLACEHOLDERS, *extra):
            allowed = " and ".join(f"{{{p}}}" for p in (*PLACEHOLDERS, *extra))
            problems.append(f"{where}: unknown placeholder {m.group(0)} (only {allowed} are allowed)")
    if variant == "no_product" and "{product}" in text:
        problems.append(f"{where}: {{product}} is always empty in the no_product text")
    return problems
