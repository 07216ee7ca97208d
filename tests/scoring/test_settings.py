"""Rule settings: every bad value is refused with a clear error and nothing half-applied;
a saved change applies to every viewer at once, as the what-if said it would."""

from __future__ import annotations

import json

import pytest

from fanops import keys, rules_store
from fanops.errors import BadSettings
from fanops.read import status
from fanops.rules_settings import RULES, RuleSettings
from fanops.templates import DEFAULT_TEMPLATES
from scoring.recompute import what_if
from tests.conftest import SAMPLES
from tests.pipeline import drain, ingest_frames, read_lines

BAD_VALUES = [
    ({"dormant_days": 0}, "out of range"),
    ({"dormant_days": -3}, "out of range"),
    ({"dormant_days": 10_000}, "out of range"),
    ({"active_orders": 1.5}, "whole number"),
    ({"active_rooms": "three"}, "not a number"),
    ({"present_minutes": None}, "not a number"),
    ({"present_minutes": True}, "not a number"),
    ({"followup_dwell_minutes": float("nan")}, "not a number"),
    ({"w_comment": -1}, "out of range"),
    ({"decent_hour_start": 22, "decent_hour_end": 9}, "before"),
    ({"no_such_setting": 3}, "unknown setting"),
]


@pytest.mark.parametrize("change,msg", BAD_VALUES, ids=[str(c) for c, _ in BAD_VALUES])
def test_a_bad_value_is_refused_and_nothing_changes(r, change, msg):
    before = r.hgetall(keys.rules("default"))
    with pytest.raises(BadSettings, match=msg):
        rules_store.save(r, "default", {"dormant_days": 20, **change})
    assert r.hgetall(keys.rules("default")) == before
    assert rules_store.load(r, "default") == (RuleSettings(), 0)


def test_every_problem_is_listed_at_once(r):
    with pytest.raises(BadSettings) as e:
        rules_store.save(r, "default", {"dormant_days": 0, "active_rooms": "x", "bogus": 1})
    assert len(e.value.problems) == 3


@pytest.mark.parametrize("templates,msg", [
    ({"new_fan": {"en": {"with_product": "Hi {nmae}", "no_product": "Hi"}}}, "nmae"),
    ({"new_fan": {"en": {"with_product": "", "no_product": "Hi"}}}, "empty"),
    ({"vip": {"en": {"with_product": "Hi", "no_product": "Hi"}}}, "vip"),
])
def test_bad_templates_are_refused(r, templates, msg):
    with pytest.raises(BadSettings, match=msg):
        rules_store.save(r, "default", {}, templates=templates)
    assert rules_store.load_templates(r, "default") == DEFAULT_TEMPLATES


def test_defaults_are_the_specs_and_the_table_covers_every_setting():
    s = RuleSettings()
    assert (s.dormant_days, s.active_orders, s.active_rooms, s.active_window_days) == (30, 2, 3, 30)
    assert (s.present_minutes, s.followup_dwell_minutes, s.followup_cooldown_days) == (10, 3, 7)
    assert {r.name for r in RULES} == set(s.to_mapping())
    for rule in RULES:
        assert getattr(s, rule.name) == rule.default


def test_a_stale_editor_cannot_overwrite_a_newer_save(r):
    _, v1 = rules_store.save(r, "default", {"dormant_days": 20})
    rules_store.save(r, "default", {"dormant_days": 25}, expected_version=v1)
    with pytest.raises(BadSettings, match="changed meanwhile"):
        rules_store.save(r, "default", {"dormant_days": 40}, expected_version=v1)
    assert rules_store.load(r, "default")[0].dormant_days == 25


def test_new_thresholds_apply_to_every_viewer_as_the_what_if_said(cfg, r):
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    before = status(r, "default", "show-1-7")
    new = RuleSettings(dormant_days=10, active_orders=3)
    wi = what_if(r, "default", new)
    assert wi["today"] == before["tiers"]
    assert wi["new"] != wi["today"] and sum(wi["new"].values()) == sum(wi["today"].values())
    rules_store.save(r, "default", {"dormant_days": 10, "active_orders": 3})
    # the next batch (here: one late event) makes a worker rebuild under the new settings
    ingest_frames(cfg, [json.dumps({"id": "late-1", "room": "show-1-7", "ts": before["clock"],
                                    "type": "like", "viewer": {"id": "v1-1"}})])
    drain(r, cfg)
    after = status(r, "default", "show-1-7")
    assert after["tiers"] == wi["new"]
    assert sum(after["room"]["tiers"].values()) == after["room"]["unique_viewers"]
    assert after["room"]["tiers"] != before["room"]["tiers"]
    assert r.hget(keys.stats("default"), "rules_applied") == b"1"


def test_reset_goes_back_to_the_defaults(r):
    rules_store.save(r, "default", {"dormant_days": 12},
                     templates={"new_fan": {"en": {"with_product": "Hi {name}, {product}?",
                                                   "no_product": "Hi {name}"}}})
    s, v = rules_store.reset(r, "default")
    assert s == RuleSettings() and v == 2
    assert rules_store.load_templates(r, "default") == DEFAULT_TEMPLATES
