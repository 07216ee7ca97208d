"""Suggested follow-up DMs: default templates, language choice, safe rendering, validation."""

from __future__ import annotations

import copy
import string
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanops.templates import (
    DEFAULT_TEMPLATES,
    LANGUAGES,
    TEMPLATE_KEYS,
    TIERS,
    render,
    resolve_lang,
    suggest,
    validate_templates,
)

ALL = [(key, lang) for key in TEMPLATE_KEYS for lang in LANGUAGES]
ALL_LANGS = list(LANGUAGES)


def fill(template: str, name: str, product: str = "") -> str:
    return template.replace("{name}", name).replace("{product}", product)


# --- the default templates --------------------------------------------------

def test_defaults_cover_every_tier_and_language() -> None:
    assert set(DEFAULT_TEMPLATES) == {"new_fan", "first_buyer", "active", "dormant", "reactivated",
                                      "thank_first_order", "after_sales", "win_back"}  # v1.1 kinds
    assert set(LANGUAGES) == {"en", "es", "pt", "ar", "de", "id", "ja", "zh", "fr"}
    for key in (*TEMPLATE_KEYS, "thank_first_order", "after_sales", "win_back"):
        assert set(DEFAULT_TEMPLATES[key]) == set(LANGUAGES), key


@pytest.mark.parametrize(("key", "lang"), ALL)
def test_each_default_has_both_variants_with_the_right_placeholders(key: str, lang: str) -> None:
    entry = DEFAULT_TEMPLATES[key][lang]
    assert set(entry) == {"with_product", "no_product"}
    with_p, no_p = entry["with_product"], entry["no_product"]
    assert with_p.count("{name}") == 1 and with_p.count("{product}") == 1
    assert no_p.count("{name}") == 1 and "{product}" not in no_p
    for text in (with_p, no_p):
        assert text == text.strip() and "  " not in text
        assert len(text) <= 200  # a short DM, not a letter
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        assert fields <= {"name", "product"}


@pytest.mark.parametrize(("key", "lang"), ALL)
def test_variants_differ_and_languages_are_not_copies_of_english(key: str, lang: str) -> None:
    entry = DEFAULT_TEMPLATES[key][lang]
    assert entry["with_product"] != entry["no_product"]
    if lang != "en":
        assert entry["with_product"] != DEFAULT_TEMPLATES[key]["en"]["with_product"]


@pytest.mark.parametrize(("lang", "marker"), [
    ("ja", "さん"),  # polite address
    ("ja", "ます"),  # です/ます form
    ("id", "Kak "),
    ("de", "du"),  # informal, as in social commerce
    ("zh", "你"),
    ("ar", "أهلاً"),
])
def test_register_of_each_culture(lang: str, marker: str) -> None:
    texts = [DEFAULT_TEMPLATES[k][lang][v] for k in TEMPLATE_KEYS for v in ("with_product", "no_product")]
    assert sum(marker in t for t in texts) >= len(texts) // 2, (lang, marker)


def test_defaults_pass_validation() -> None:
    assert validate_templates(DEFAULT_TEMPLATES) == []


# --- language ---------------------------------------------------------------

@pytest.mark.parametrize(("tag", "expected"), [
    ("es-MX", "es"),
    ("es-419", "es"),
    ("pt-BR", "pt"),
    ("pt_BR", "pt"),
    ("zh-Hans-CN", "zh"),
    ("zh-Hant-TW", "zh"),
    ("ZH-cn", "zh"),
    ("EN-us", "en"),
    ("ar-SA", "ar"),
    ("de-AT", "de"),
    ("fr-CA", "fr"),
    ("ja-JP", "ja"),
    ("id-ID", "id"),
    ("in-ID", "id"),  # older Android reports Indonesian as "in"
    ("spa", "es"),
    ("  Es-mx  ", "es"),
    ("es-MX,es;q=0.9,en;q=0.8", "es"),
    ("ko-KR,pt;q=0.5", "pt"),
    ("ko-KR", "en"),
    ("xx", "en"),
    ("*", "en"),
    ("", "en"),
    ("-", "en"),
    ("{0}", "en"),
    (None, "en"),
])
def test_resolve_lang_default_languages(tag: str | None, expected: str) -> None:
    assert resolve_lang(tag, LANGUAGES) == expected


@pytest.mark.parametrize(("tag", "available", "expected"), [
    ("pt-PT", ["en", "pt", "pt-PT"], "pt-PT"),  # a more specific template wins
    ("pt-BR", ["en", "pt", "pt-PT"], "pt"),
    ("es-MX", ["en", "ES"], "ES"),  # spelled as the templates spell it
    ("es-MX", ["en"], "en"),
    ("es-MX", [], "en"),
    ("ja", iter(["ja", "en"]), "ja"),  # any iterable
])
def test_resolve_lang_custom_available(tag: str, available: object, expected: str) -> None:
    assert resolve_lang(tag, available) == expected  # type: ignore[arg-type]


# --- rendering --------------------------------------------------------------

HOSTILE_NAMES = [
    "{product}<script>",
    "{name}",
    "{0}",
    "{}",
    "{name.__class__}",
    "{product.__init__.__globals__}",
    "{{name}}",
    "}{",
    "%s %(name)s",
    r"\1 \g<0>",
    "$name ${product}",
    "<img src=x onerror=alert(1)>",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_rendered_literally_once(name: str) -> None:
    out = render("Hi {name}, about {product}!", name, "Lamp")
    assert out == f"Hi {name}, about Lamp!"


def test_a_name_that_looks_like_a_placeholder_is_not_expanded() -> None:
    assert render("{name}: {product}", "{product}<script>", "Lamp") == "{product}<script>: Lamp"
    assert render("{product} for {name}", "Ana", "{name}") == "{name} for Ana"


def test_only_the_two_placeholders_are_replaced() -> None:
    assert render("{name} {nmae} {0} {} {{name}}", "Ana", None) == "Ana {nmae} {0} {} {Ana}"


INVISIBLE = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def is_control(ch: str) -> bool:
    return ch in INVISIBLE or unicodedata.category(ch) in ("Cc", "Cs")


@given(st.text(max_size=80), st.text(max_size=120))
def test_any_name_and_product_render_as_plain_text(name: str, product: str) -> None:
    out = render("<{name}|{product}>", name, product)
    assert out.startswith("<") and out.endswith(">")
    assert not any(is_control(ch) for ch in out)
    ordinary = 0 < len(name) <= 40 and " ".join(name.split()) == name and not any(map(is_control, name))
    if ordinary:
        assert out.startswith(f"<{name}|")  # shown exactly as typed, braces and all


@pytest.mark.parametrize(("name", "shown"), [
    ("María", "María"),
    ("  Ana   Lú ", "Ana Lú"),
    ("\u202eevil\u202c", "evil"),  # RLO ... PDF
    ("\u2066Ali\u2069", "Ali"),  # LRI ... PDI
    ("\u202a\u202b\u202c\u202d\u202eX", "X"),
    ("\u200fنور\u200e", "نور"),  # RLM, LRM
    ("Ana\nMaria", "Ana Maria"),
    ("Ana\r\n\tMaria", "Ana Maria"),
    ("A\x00B\x07C\x1b[31m", "ABC[31m"),
    ("\x7fZoe\x85", "Zoe"),
    ("👩\u200d👩\u200d👧 Mom", "👩\u200d👩\u200d👧 Mom"),  # joiners inside emoji are kept
])
def test_names_are_cleaned_of_controls(name: str, shown: str) -> None:
    assert render("[{name}]", name, None) == f"[{shown}]"


@pytest.mark.parametrize(("name", "shown"), [
    ("A" * 40, "A" * 40),
    ("A" * 41, "A" * 39 + "…"),
    ("B" * 500, "B" * 39 + "…"),
    ("a" * 38 + "🇯🇵🇯🇵", "a" * 38 + "…"),  # never half a flag
    ("a" * 38 + "e\u0301xyz", "a" * 38 + "…"),  # never an accent without its letter
    ("a" * 38 + "👍🏽xyz", "a" * 38 + "…"),  # never a skin tone without its emoji
    ("a" * 37 + "👩\u200d👧xyz", "a" * 37 + "…"),  # never half a ZWJ sequence
    ("a" * 36 + "👩\u200d👧xyz", "a" * 36 + "👩\u200d👧…"),  # a whole one that fits is kept
    ("word " * 20, ("word " * 8).rstrip() + "…"),
])
def test_long_names_are_truncated_to_40_characters(name: str, shown: str) -> None:
    out = render("{name}", name, None)
    assert out == shown
    assert len(out) <= 40


@pytest.mark.parametrize("blank", ["", "   ", None, "\u202e\u202c", "\x00\t"])
def test_blank_name_uses_fallback(blank: str | None) -> None:
    assert render("Hi {name}!", blank, None, fallback_name="there") == "Hi there!"


@pytest.mark.parametrize(("template", "expected"), [
    ("Hi {name}! Thanks", "Hi! Thanks"),
    ("Welcome back, {name}! So", "Welcome back! So"),
    ("Coucou {name} ! Merci", "Coucou ! Merci"),
    ("Oi, {name}, que saudade!", "Oi, que saudade!"),
    ("{name}さん、今日は", "今日は"),
    ("亲爱的{name}，谢谢", "亲爱的，谢谢"),
    ("欢迎回来，{name}！很开心", "欢迎回来！很开心"),
    ("Halo Kak {name}!", "Halo Kak!"),
])
def test_blank_name_without_fallback_reads_naturally(template: str, expected: str) -> None:
    assert render(template, "  ", None) == expected


@pytest.mark.parametrize(("key", "lang"), ALL)
def test_every_default_reads_well_without_a_name(key: str, lang: str) -> None:
    for variant in ("with_product", "no_product"):
        out = render(DEFAULT_TEMPLATES[key][lang][variant], "", "Lamp")
        assert "{" not in out and "  " not in out
        assert out[0] not in " ,，、،さ"
        for bad in (",,", ", !", ",!", "，！", "、！", " !", "،!") if lang != "fr" else (",,", ", !"):
            assert bad not in out, (out, bad)


def test_missing_product_renders_as_empty() -> None:
    assert render("[{product}]", "Ana", None) == "[]"
    assert render("[{product}]", "Ana", "  Red\u202e  Lamp\n") == "[Red Lamp]"


def test_long_product_is_truncated() -> None:
    out = render("{product}", "Ana", "P" * 200)
    assert out == "P" * 79 + "…"


# --- suggest ----------------------------------------------------------------

def test_spanish_viewer_from_mexico_gets_spanish_with_name_and_product() -> None:
    out = suggest(DEFAULT_TEMPLATES, "new_fan", "es-MX", "María", "Sérum Glow")
    assert out == fill(DEFAULT_TEMPLATES["new_fan"]["es"]["with_product"], "María", "Sérum Glow")
    assert "María" in out and "Sérum Glow" in out and out.startswith("¡Hola")


@pytest.mark.parametrize(("tier", "tag", "reactivated", "product", "key", "lang", "variant"), [
    ("new_fan", "es-MX", False, "Sérum", "new_fan", "es", "with_product"),
    ("first_buyer", "pt-BR", False, "Tênis", "first_buyer", "pt", "with_product"),
    ("active", "ja-JP", False, None, "active", "ja", "no_product"),
    ("dormant", "ar-SA", False, "", "dormant", "ar", "no_product"),
    ("dormant", "de-DE", False, "   ", "dormant", "de", "no_product"),
    ("active", "zh-Hans-CN", False, "口红", "active", "zh", "with_product"),
    ("first_buyer", "fr-FR", False, "Robe", "first_buyer", "fr", "with_product"),
    ("new_fan", "in-ID", False, "Hijab", "new_fan", "id", "with_product"),
    ("new_fan", "ko-KR", False, "Lamp", "new_fan", "en", "with_product"),  # unknown language: English
    ("new_fan", None, False, None, "new_fan", "en", "no_product"),
    ("active", "es", True, "Gorra", "reactivated", "es", "with_product"),  # reactivated wins over the tier
    ("dormant", "ja", True, None, "reactivated", "ja", "no_product"),
    ("reactivated", "fr", False, None, "reactivated", "fr", "no_product"),
    ("vip", "de", False, None, "new_fan", "de", "no_product"),  # unknown tier: the neutral new_fan text
])
def test_suggest_picks_tier_language_and_variant(
    tier: str, tag: str | None, reactivated: bool, product: str | None, key: str, lang: str, variant: str,
) -> None:
    out = suggest(DEFAULT_TEMPLATES, tier, tag, "Ana", product, reactivated=reactivated)
    assert out == fill(DEFAULT_TEMPLATES[key][lang][variant], "Ana", (product or "").strip())
    assert "Ana" in out


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("lang", ALL_LANGS)
def test_suggest_never_leaves_a_placeholder(tier: str, lang: str) -> None:
    for product in ("Lamp", None):
        for reactivated in (False, True):
            out = suggest(DEFAULT_TEMPLATES, tier, lang, "Ana", product, reactivated=reactivated)
            assert "{name}" not in out and "{product}" not in out and "Ana" in out


def test_suggest_hostile_name_rendered_literally_once() -> None:
    out = suggest(DEFAULT_TEMPLATES, "new_fan", "en", "{product}<script>", "Lamp")
    assert out.count("{product}<script>") == 1
    assert out.count("Lamp") == 1


CUSTOM_EN = {"with_product": "Yo {name}, {product}?", "no_product": "Yo {name}!"}


@pytest.mark.parametrize(("templates", "tier", "tag", "product", "expected"), [
    # the operator's own text is used
    ({"new_fan": {"en": CUSTOM_EN}}, "new_fan", "en", "Lamp", "Yo Ana, Lamp?"),
    ({"new_fan": {"en": CUSTOM_EN}}, "new_fan", "en-GB", None, "Yo Ana!"),
    # a viewer's language with no custom text gets the default text in that language, not custom English
    ({"new_fan": {"en": CUSTOM_EN}}, "new_fan", "es", None,
     fill(DEFAULT_TEMPLATES["new_fan"]["es"]["no_product"], "Ana")),
    # a language only the operator wrote
    ({"new_fan": {"en": CUSTOM_EN, "ko": {"with_product": "{name}님 {product}", "no_product": "{name}님"}}},
     "new_fan", "ko-KR", "Lamp", "Ana님 Lamp"),
    # with a product but only a no_product text: the no_product text
    ({"active": {"en": {"no_product": "Hey {name}"}}}, "active", "en", "Lamp", "Hey Ana"),
    # no product and only a with_product text: that text would have a hole, so the default
    ({"active": {"en": {"with_product": "Hey {name}, {product}"}}}, "active", "en", None,
     fill(DEFAULT_TEMPLATES["active"]["en"]["no_product"], "Ana")),
    # malformed or empty entries are skipped
    ({"dormant": {"en": {"with_product": "", "no_product": 5}}}, "dormant", "en", None,
     fill(DEFAULT_TEMPLATES["dormant"]["en"]["no_product"], "Ana")),
    ({"dormant": "oops"}, "dormant", "en", None, fill(DEFAULT_TEMPLATES["dormant"]["en"]["no_product"], "Ana")),
    (None, "dormant", "en", None, fill(DEFAULT_TEMPLATES["dormant"]["en"]["no_product"], "Ana")),
    ({}, "first_buyer", "pt-BR", "Tênis", fill(DEFAULT_TEMPLATES["first_buyer"]["pt"]["with_product"], "Ana", "Tênis")),
])
def test_suggest_with_operator_templates(
    templates: object, tier: str, tag: str, product: str | None, expected: str,
) -> None:
    assert suggest(templates, tier, tag, "Ana", product) == expected  # type: ignore[arg-type]


def test_suggest_blank_name_uses_fallback() -> None:
    out = suggest(DEFAULT_TEMPLATES, "new_fan", "en", "  ", None, fallback_name="there")
    assert out.startswith("Hi there!")
    assert suggest(DEFAULT_TEMPLATES, "new_fan", "en", "", None).startswith("Hi! ")


def test_suggest_does_not_change_the_templates() -> None:
    before = copy.deepcopy(DEFAULT_TEMPLATES)
    suggest(DEFAULT_TEMPLATES, "active", "es", "{name}", "{product}", reactivated=True)
    assert before == DEFAULT_TEMPLATES


# --- validation -------------------------------------------------------------

def good() -> dict[str, dict[str, dict[str, str]]]:
    return {"new_fan": {"en": {"with_product": "Hi {name}, {product}?", "no_product": "Hi {name}!"},
                        "es": {"with_product": "Hola {name}, ¿{product}?", "no_product": "¡Hola {name}!"}}}


def with_text(text: object, variant: str = "with_product", lang: str = "es") -> dict[str, object]:
    t: dict[str, object] = copy.deepcopy(good())  # type: ignore[arg-type]
    t["new_fan"][lang][variant] = text  # type: ignore[index]
    return t


@pytest.mark.parametrize("obj", [
    good(),
    {},
    with_text("x" * 500),
    with_text("Hola {name} :-} {"),  # lone braces are text, not placeholders
    with_text("¡Hola!"),  # not using the name is allowed
    {"reactivated": {"en": {"with_product": "Welcome back {name}: {product}", "no_product": "Welcome back"}}},
    {"active": {"en": good()["new_fan"]["en"], "pt-BR": good()["new_fan"]["en"]}},
])
def test_validate_accepts_good_templates(obj: object) -> None:
    assert validate_templates(obj) == []


@pytest.mark.parametrize(("obj", "expected"), [
    ({"vip": good()["new_fan"]}, "unknown tier"),
    ({"New_Fan": good()["new_fan"]}, "unknown tier"),
    (with_text(""), "empty"),
    (with_text("   \n"), "empty"),
    (with_text("x" * 501), "more than 500"),
    (with_text("Hola {nmae}"), "{nmae}"),
    (with_text("Hola {0}"), "{0}"),
    (with_text("Hola {}"), "{}"),
    (with_text("Hola { name }"), "{ name }"),
    (with_text("Hola {name.__class__}"), "{name.__class__}"),
    (with_text("Hola {NAME}"), "{NAME}"),
    (with_text(42), "must be text"),
    (with_text(None), "must be text"),
    (with_text("¡Hola {name}! {product}", "no_product"), "always empty"),
    ({"new_fan": {"es": good()["new_fan"]["es"]}}, "English"),
    ({"new_fan": {"en": {"with_product": "Hi {name} {product}"}}}, "missing the 'no_product'"),
    ({"new_fan": {"en": {**good()["new_fan"]["en"], "with_prodcut": "x"}}}, "unknown variant"),
    ({"new_fan": {"en": good()["new_fan"]["en"], "español": good()["new_fan"]["en"]}}, "not a language tag"),
    ({"new_fan": {"en": good()["new_fan"]["en"], 7: good()["new_fan"]["en"]}}, "not a language tag"),
    ({"new_fan": {"en": "Hi {name}"}}, "must be a mapping"),
    ({"new_fan": ["en"]}, "must be a mapping"),
    (["new_fan"], "must be a mapping"),
    ("Hi {name}", "must be a mapping"),
    (None, "must be a mapping"),
])
def test_validate_flags_each_kind_of_problem(obj: object, expected: str) -> None:
    problems = validate_templates(obj)
    assert problems, obj
    assert any(expected in p for p in problems), problems


def test_validate_reports_every_problem_with_its_place() -> None:
    bad = {
        "vip": {},
        "active": {"es": {"with_product": "{nmae} {product}", "no_product": ""}},
    }
    problems = validate_templates(bad)
    assert len(problems) == 4, problems
    assert any(p.startswith("'vip'") for p in problems)
    assert any(p.startswith("active:") and "English" in p for p in problems)
    assert any(p.startswith("active/es/with_product:") and "{nmae}" in p for p in problems)
    assert any(p.startswith("active/es/no_product:") and "empty" in p for p in problems)


def test_validate_flags_an_unknown_placeholder_each_time() -> None:
    problems = validate_templates(with_text("{a} {b} {name} {product}"))
    assert len(problems) == 2 and "{a}" in problems[0] and "{b}" in problems[1]
