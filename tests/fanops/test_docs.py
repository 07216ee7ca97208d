"""The README's settings tables are the ones the code has (one source of truth)."""

from __future__ import annotations

from pathlib import Path

from fanops.docs import process_table, rules_table
from fanops.i18n import TABLE
from fanops.rules_settings import RULE_GROUPS, RULES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting_as_the_code_defines_it():
    text = README.read_text()
    assert process_table() in text
    assert rules_table() in text


def test_readme_has_exactly_the_two_setup_commands():
    text = README.read_text()
    assert "python3 dev.py up" in text and "python3 dev.py test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python3 dev.py test" in ci


def test_every_rule_names_a_group_the_settings_screen_shows_under_a_title():
    assert {r.group for r in RULES} == set(RULE_GROUPS)
    assert all(f"settings.group_{g}" in TABLE for g in RULE_GROUPS)
