"""The follow-up kinds' messages (spec/tiers.md v1.1): their own texts per language and tier,
and the shop's coupon code per kind and tier."""

from __future__ import annotations

import pytest

from fanops.templates import DEFAULT_TEMPLATES, KINDS, LANGUAGES, suggest, validate_templates


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_kind_has_a_text_and_a_coupon_line_in_every_language(kind, lang):
    entry = DEFAULT_TEMPLATES[kind][lang]
    assert "{name}" in entry["no_product"] and "{coupon}" not in entry["no_product"]
    assert "{coupon}" in entry["coupon_line"]
    out = suggest(DEFAULT_TEMPLATES, "first_buyer", lang, "Ana", None, kind=kind)
    assert "Ana" in out and "{" not in out
    assert out != suggest(DEFAULT_TEMPLATES, "first_buyer", lang, "Ana", None)  # not the lingered text


def test_a_kind_uses_the_viewers_language_and_the_coupon_for_their_tier():
    shop = {"coupons": {"win_back": {"dormant": "BACK10"}}}
    es = suggest(shop, "dormant", "es-MX", "Ana", None, kind="win_back")
    assert es.startswith("¡Hola Ana!") and "código BACK10" in es
    assert "BACK10" not in suggest(shop, "first_buyer", "es", "Ana", None, kind="win_back")  # other tier
    assert "BACK10" not in suggest(shop, "dormant", "es", "Ana", None, kind="after_sales")  # other kind


def test_a_shops_text_for_one_tier_of_a_kind_wins_and_may_place_the_coupon_itself():
    shop = {"thank_first_order/active": {"en": {"no_product": "Thanks again {name}! {coupon} is yours."}},
            "coupons": {"thank_first_order": {"active": "VIP5"}}}
    assert suggest(shop, "active", "en", "Bo", None, kind="thank_first_order") == "Thanks again Bo! VIP5 is yours."
    other = suggest(shop, "first_buyer", "en", "Bo", None, kind="thank_first_order")
    assert other.startswith("Hi Bo! Thank you so much for your first order")
    assert validate_templates(shop) == []


def test_bad_kind_texts_and_coupons_are_refused_with_where_they_are():
    problems = validate_templates({
        "win_back": {"en": {"no_product": "Hi {nmae}"}},
        "after_sales/vip": {"en": {"no_product": "x"}},
        "coupons": {"win_back": {"dormant": "{name}"}, "lingered": {"new_fan": "X"}},
        "new_fan": {"en": {"with_product": "{coupon}", "no_product": "Hi"}},
    })
    assert any(p.startswith("win_back/en/no_product: unknown placeholder {nmae}") for p in problems)
    assert any(p.startswith("'after_sales/vip': unknown tier") for p in problems)
    assert any(p.startswith("coupons/win_back/dormant:") for p in problems)
    assert any(p.startswith("coupons/lingered:") for p in problems)
    assert any(p.startswith("new_fan/en/with_product: unknown placeholder {coupon}") for p in problems)
