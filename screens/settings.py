"""Settings: rule thresholds and DM templates, validated, with a what-if before saving and a reset.

A save is one validated, versioned write (``fanops.rules_store``); a running scorer
sees the new version at its next round and recounts the shop's tiers under it
(``scoring.recompute.rebuild``, in the scorer, never in the app); the page says so
until it is done, and says plainly when no scorer is running to do it.  The editor
remembers the version it started from: saving over someone else's newer save
is refused.
"""

from __future__ import annotations

import copy
from typing import Any

import streamlit as st

from fanops import read, rules_store
from fanops.errors import BadSettings
from fanops.i18n import language_name
from fanops.rules_settings import RULE_GROUPS, RULES, RuleSettings
from fanops.state import TIERS
from fanops.templates import (
    COUPON_LINE,
    COUPONS,
    DEFAULT_TEMPLATES,
    KINDS,
    LANGUAGES,
    REACTIVATED,
    TEMPLATE_KEYS,
    VARIANTS,
    clean_text,
    coupon_for,
    suggest,
)
from scoring.recompute import what_if
from screens import _ui

tr = _ui.translator()
r = _ui.client()
shop = _ui.shop()
GROUPS = tuple((f"settings.group_{g}", [rule for rule in RULES if rule.group == g]) for g in RULE_GROUPS)

st.title(tr("settings.title"))
current, version = rules_store.load(r, shop)
stored_templates = rules_store.load_templates(r, shop)
base = st.session_state.get("set_base")
if not base or base["shop"] != shop:
    base = st.session_state["set_base"] = {"shop": shop, "version": version}
    st.session_state["tpl_draft"] = copy.deepcopy(stored_templates)
bv = base["version"]


def restart_editor(new_version: int) -> None:
    st.session_state["set_base"] = {"shop": shop, "version": new_version}
    st.session_state["tpl_draft"] = copy.deepcopy(rules_store.load_templates(r, shop))
    st.session_state.pop("whatif", None)


changed_by, changed_at = rules_store.last_change(r, shop)
line = tr("settings.version", v=version)
if changed_at:
    line += " · " + tr("settings.changed_at", at=_ui.clock_time(changed_at, with_date=True))
if changed_by:
    line += " · " + tr("settings.changed_by") + " " + clean_text(changed_by, 64)
_ui.text(line, key="set-version")
if version != bv:
    st.warning(tr("settings.changed_meanwhile"))
    st.button(tr("settings.reload"), on_click=restart_editor, args=(version,), key="reload")
if version and read.rules_applied(r, shop) != version:
    if read.heartbeats(r, "scorer"):
        st.info(tr("settings.recounting", v=version))
    else:
        st.warning(tr("settings.no_scorer", v=version, cmd="python -m scoring run"))

# --- thresholds -------------------------------------------------------------
values: dict[str, Any] = {}
for title, rules in GROUPS:
    st.subheader(tr(title))
    cols = st.columns(3)
    for i, rule in enumerate(rules):
        v = getattr(current, rule.name)
        help_text = tr(f"rule_help.{rule.name}") + " " + tr(
            "settings.rule_range", default=f"{rule.default:g}", lo=f"{rule.lo:g}", hi=f"{rule.hi:g}",
            unit=tr(f"u.{rule.unit}"))
        label = tr(f"rule.{rule.name}") + f" ({tr(f'u.{rule.unit}')})"
        with cols[i % 3]:
            if rule.integer:
                values[rule.name] = st.number_input(label, value=int(v), step=1, help=help_text,
                                                    key=f"rule-{rule.name}-{bv}")
            else:
                values[rule.name] = st.number_input(label, value=float(v), step=0.5, format="%.2f",
                                                    help=help_text, key=f"rule-{rule.name}-{bv}")

# --- templates ----------------------------------------------------------------
st.subheader(tr("settings.templates"))
st.caption(tr("settings.templates_help"))
draft: dict[str, Any] = st.session_state["tpl_draft"]
c1, c2 = st.columns(2)
tkey = _ui.sticky("select", tr("settings.tpl_tier"), [*TEMPLATE_KEYS, *KINDS], "tpl_key", where=c1,
                  format_func=lambda k: tr("queue.reactivated") if k == REACTIVATED
                  else tr(f"kind.{k}") if k in KINDS else tr(f"tier.{k}"))
tlang = c2.selectbox(tr("settings.tpl_lang"), LANGUAGES, key="tpl_lang", format_func=language_name)


def keep_draft(key: str, lang: str, variant: str, widget: str) -> None:
    d = st.session_state["tpl_draft"]
    entry = d.setdefault(key, {}).setdefault(lang, dict(DEFAULT_TEMPLATES.get(key, {}).get(lang, {})))
    entry[variant] = st.session_state[widget]


entry = draft.get(tkey, {}).get(tlang) or DEFAULT_TEMPLATES.get(tkey, {}).get(tlang, {})
for variant in (("no_product", COUPON_LINE) if tkey in KINDS else VARIANTS):
    wk = f"tpl-{tkey}-{tlang}-{variant}-{bv}"
    st.text_area(tr(f"settings.{variant}"), value=str(entry.get(variant, "")), key=wk, height=90,
                 on_change=keep_draft, args=(tkey, tlang, variant, wk))


def keep_coupon(kind: str, tier: str, widget: str) -> None:
    codes = st.session_state["tpl_draft"].setdefault(COUPONS, {}).setdefault(kind, {})
    codes[tier] = st.session_state[widget].strip()


if tkey in KINDS:  # spec/tiers.md v1.1: a coupon code per kind and tier, {coupon} in the texts
    cc = st.columns(len(TIERS))
    for col, t in zip(cc, TIERS, strict=True):
        wk = f"coupon-{tkey}-{t}-{bv}"
        col.text_input(tr("settings.coupon", tier=tr(f"tier.{t}")), value=coupon_for(draft, tkey, t), key=wk,
                       max_chars=40, on_change=keep_coupon, args=(tkey, t, wk))
tier_for_preview = "new_fan" if tkey == REACTIVATED else "first_buyer" if tkey in KINDS else tkey
st.caption(tr("settings.preview"))
for product in ("Silk Scarf", None):
    st.text(suggest(draft, tier_for_preview, tlang, "Anna", product, reactivated=tkey == REACTIVATED,
                    kind=tkey if tkey in KINDS else "lingered"))

# --- what-if, save, reset ---------------------------------------------------------
st.divider()
templates_changed = draft != stored_templates
b1, b2, b3 = st.columns(3)
do_whatif = b1.button(tr("settings.whatif"), key="whatif_btn", icon=":material/science:")
do_save = b2.button(tr("settings.save"), key="save_btn", type="primary", icon=":material/save:")
do_reset = b3.button(tr("settings.reset"), key="reset_btn", icon=":material/restart_alt:",
                     help=tr("settings.reset_help"))


def show_problems(e: BadSettings) -> None:
    st.error(tr("settings.bad", n=len(e.problems)))
    for p in e.problems:
        st.text("• " + p)


if do_whatif:
    try:
        candidate = RuleSettings.from_mapping(values, current)
        with st.spinner(tr("settings.whatif_running")):
            st.session_state["whatif"] = what_if(r, shop, candidate)
    except BadSettings as e:
        st.session_state.pop("whatif", None)
        show_problems(e)
if do_save:
    try:
        _, new_version = rules_store.save(r, shop, values, templates=draft if templates_changed else None,
                                          expected_version=bv, by=_ui.operator())
    except BadSettings as e:
        show_problems(e)
    else:
        restart_editor(new_version)
        _ui.flash("success", tr("settings.saved", v=new_version))
        st.rerun()
if do_reset:
    _, new_version = rules_store.reset(r, shop, by=_ui.operator())
    restart_editor(new_version)
    _ui.flash("success", tr("settings.was_reset", v=new_version))
    st.rerun()

_ui.show_flash()
wi = st.session_state.get("whatif")
if wi:
    st.subheader(tr("settings.whatif_title"))
    st.dataframe({tr("col.tier"): [tr(f"tier.{t}") for t in TIERS],
                  tr("col.today"): [wi["today"].get(t, 0) for t in TIERS],
                  tr("col.new"): [wi["new"].get(t, 0) for t in TIERS],
                  tr("col.diff"): [wi["new"].get(t, 0) - wi["today"].get(t, 0) for t in TIERS]},
                 hide_index=True, key="whatif_table")
if templates_changed:
    st.caption(tr("settings.templates_unsaved"))
