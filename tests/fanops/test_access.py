"""The access rules (``fanops.access``): passwords to roles, roles to screens, the lock-out's waits."""

from __future__ import annotations

import pytest

from fanops import access
from fanops.access import ADMIN, OPERATOR, AccessSettings

BOTH = AccessSettings(password_operator="op-pass", password_admin="admin-pass", host_token="tok-123")


@pytest.mark.parametrize(("given", "s", "role"), [
    ("op-pass", BOTH, OPERATOR),
    ("admin-pass", BOTH, ADMIN),
    ("op-pass ", BOTH, None),  # exact, not trimmed
    ("OP-PASS", BOTH, None),
    ("", BOTH, None),
    ("", AccessSettings(password_admin="x"), None),  # an unset operator password opens nothing
    ("x", AccessSettings(password_admin="x"), ADMIN),
    ("same", AccessSettings(password_operator="same", password_admin="same"), ADMIN),
    ("密码", AccessSettings(password_operator="密码"), OPERATOR),
    ("anything", AccessSettings(), None),
])
def test_a_password_gives_its_role(given: str, s: AccessSettings, role: str | None) -> None:
    assert access.check_password(given, s) == role


@pytest.mark.parametrize(("role", "screen", "ok"), [
    (OPERATOR, "live", True), (OPERATOR, "host", True), (OPERATOR, "queue", True), (OPERATOR, "fans", True),
    (OPERATOR, "review", True), (OPERATOR, "settings", False),
    (ADMIN, "settings", True), (ADMIN, "live", True), (ADMIN, "review", True),
    ("stranger", "live", False), ("stranger", "settings", False),
    (None, "settings", True),  # no sign-in set up: this machine only, every screen
])
def test_a_role_opens_its_screens(role: str | None, screen: str, ok: bool) -> None:
    assert access.allowed(role, screen) is ok


@pytest.mark.parametrize(("failures", "wait"), [
    (0, 0), (1, 0), (4, 0), (5, 30), (6, 60), (7, 120), (9, 480), (10, 900), (11, 900), (10_000, 900),
])
def test_the_lockout_doubles_after_five_failures_up_to_15_minutes(failures: int, wait: int) -> None:
    assert access.lockout_s(failures) == wait


def test_the_wait_counts_from_the_last_failure() -> None:
    last = 1_000_000
    assert access.wait_s(5, last, last) == 30
    assert access.wait_s(5, last, last + 29_500) == 0.5
    assert access.wait_s(5, last, last + 30_000) == 0
    assert access.wait_s(4, last, last) == 0


@pytest.mark.parametrize(("given", "ok"), [("tok-123", True), ("tok-12", False), ("", False), (None, False),
                                           ("TOK-123", False)])
def test_the_host_token(given: str | None, ok: bool) -> None:
    assert access.host_token_ok(given, BOTH) is ok
    assert access.host_token_ok(given, AccessSettings()) is False  # no token set: no token opens it


def test_settings_come_from_the_environment_else_the_secrets_file() -> None:
    s = access.settings_from({"password_operator": "", "password_admin": "env-admin"},
                             {"password_operator": "file-op", "password_admin": "file-admin", "host_token": "t"})
    assert (s.password_operator, s.password_admin, s.host_token) == ("file-op", "env-admin", "t")
    assert s.sign_in and not access.settings_from({}, {"host_token": "t"}).sign_in
    assert "env-admin" not in repr(s) and "file-op" not in repr(s)


@pytest.mark.parametrize(("email", "role"), [
    ("boss@shop.example", ADMIN), ("Boss@Shop.Example ", ADMIN), ("mei@shop.example", OPERATOR),
    ("lin@shop.example", OPERATOR), ("eve@elsewhere.example", None), ("", None), (None, None),
])
def test_the_oidc_allow_list_gives_the_role(email: str | None, role: str | None) -> None:
    s = access.settings_from({"oidc_admins": "boss@shop.example",
                              "oidc_operators": "Mei@shop.example, lin@shop.example"})
    assert access.role_for_email(email, s) == role


@pytest.mark.parametrize(("raw", "name"), [
    ("  Mei  ", "Mei"), ("Mei\x00\u202e(B)", "Mei(B)"), ("a\nb\tc", "a b c"), ("x" * 100, "x" * 64), ("\u200b", ""),
])
def test_the_name_given_at_sign_in_is_cleaned(raw: str, name: str) -> None:
    assert access.clean_name(raw) == name
