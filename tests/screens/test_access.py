"""The app's door with passwords set (AppTest, a real Redis): nothing before sign-in, the lock-out,
roles, the name on claims, Sign out.  The browser's side (cookies, reloads, the host token, requests)
is ``test_access_browser.py``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fanops import access, keys
from fanops.config import Config
from fanops.errors import FanopsError
from fanops.runtime import launcher

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
OP_PW, ADMIN_PW = "op-pass-1", "admin-pass-1"


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FANOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FANOPS_PASSWORD_OPERATOR", OP_PW)
    monkeypatch.setenv("FANOPS_PASSWORD_ADMIN", ADMIN_PW)

    def make() -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30)
        at.run()
        assert not at.exception, at.exception
        return at

    return make


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_pw").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def shown(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("title", "subheader", "metric", "text", "error", "info", "caption",
                                             "markdown") for e in getattr(at, kind))


@pytest.fixture
def failures_log() -> list[str]:
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    h = Keep()
    logging.getLogger("fanops.access").addHandler(h)
    yield got  # type: ignore[misc]
    logging.getLogger("fanops.access").removeHandler(h)


def test_before_sign_in_only_the_form_shows(app, r) -> None:  # type: ignore[no-untyped-def]
    r.hset(keys.rules("default"), "v", 1)  # a shop exists: nothing of it may show
    at = app()
    assert [t.value for t in at.subheader] == ["Sign in"]
    assert not at.metric and not at.selectbox and not at.sidebar.radio  # no screen, no sidebar pickers
    assert [w.key for w in at.text_input] == ["signin_name", "signin_pw"]


def test_wrong_passwords_lock_the_address_out_and_are_logged_without_the_password(app, r, failures_log) -> None:  # type: ignore[no-untyped-def]
    at = app()
    for i in range(access.FREE_FAILURES):
        sign_in(at, "Mei", f"guess-{i}")
        assert at.error[0].value.startswith("Wrong password."), at.error[0].value
    assert "try again in 30 s" in at.error[0].value
    # the record survives a reload (a new session) and the right password waits too
    at = app()
    sign_in(at, "Mei", OP_PW)
    assert "Too many wrong passwords" in at.error[0].value and at.subheader[0].value == "Sign in"
    assert int(r.hget(keys.access_failures("unknown"), "n")) == access.FREE_FAILURES
    assert len([m for m in failures_log if "sign-in refused" in m]) == access.FREE_FAILURES
    assert not any("guess" in m or OP_PW in m for m in failures_log)
    # after the wait, the right password opens and forgets the failures
    r.hset(keys.access_failures("unknown"), "last", 0)
    sign_in(at, "Mei", OP_PW)
    assert not at.error and "Sign in" not in [t.value for t in at.subheader] and at.session_state["_token"]
    assert not r.exists(keys.access_failures("unknown"))


def test_an_operator_gets_no_settings_and_claims_under_the_sign_in_name(app, r) -> None:  # type: ignore[no-untyped-def]
    at = sign_in(app(), " Mei (A) ", OP_PW)
    assert at.session_state["operator"] == "Mei (A)"
    assert not [w for w in at.sidebar.text_input if w.key and w.key.startswith("operator")]  # no free name field
    assert "Mei (A)" in [t.value for t in at.sidebar.text]
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in an operator's navigation
        at.switch_page("screens/settings.py")
    at.switch_page("screens/queue.py").run()
    assert not at.exception and "Follow-up queue" in [t.value for t in at.title]
    assert not at.info or "Enter your name" not in shown(at)  # the name is the sign-in's
    at = app()
    sign_in(at, "Root", ADMIN_PW)
    at.switch_page("screens/settings.py").run()
    assert not at.exception, at.exception
    assert "Settings" in [t.value for t in at.title]


def test_sign_out_ends_the_session_everywhere(app, r) -> None:  # type: ignore[no-untyped-def]
    at = sign_in(app(), "Mei", OP_PW)
    token = at.session_state["_token"]
    rec = r.hgetall(keys.access_session(access.token_hash(token)))
    assert rec[b"role"] == b"operator" and rec[b"name"] == b"Mei"
    assert 0 < r.ttl(keys.access_session(access.token_hash(token))) <= 12 * 3600
    assert token.encode() not in b"".join(k for k in r.keys("fo:{!access}:*"))  # only its hash is kept
    at.sidebar.button(key="sign-out").click().run()
    assert at.subheader[0].value == "Sign in"
    assert not r.exists(keys.access_session(access.token_hash(token)))


# --- safe defaults: the launcher's --public -----------------------------------------------------

def test_public_is_refused_without_a_password_in_one_line_before_anything_starts(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOPS_PASSWORD") and k != "REDIS_URL"}
    env.update(FANOPS_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "fanops.runtime.launcher", "--public"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [launcher.PUBLIC_REFUSED]
    assert not (tmp_path / "data").exists()  # no server, no child, no log


def test_public_binds_every_interface_only_with_a_password(tmp_path: Path) -> None:
    args = argparse.Namespace(feed="ws://127.0.0.1:1", workers=1, app_port=8599, public=True)
    (app_child,) = [c for c in launcher.plan(args) if c.name == "app"]
    assert app_child.args[app_child.args.index("--server.address") + 1] == "0.0.0.0"
    none = tmp_path / "absent.toml"
    assert launcher.listening_note(args, Config.from_env({})) is None  # (no secrets file in the repo)
    assert launcher.access_settings(Config.from_env({}), none).sign_in is False
    with_pw = Config.from_env({"FANOPS_PASSWORD_ADMIN": "x"})
    assert launcher.access_settings(with_pw, none).sign_in
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('[fanops]\npassword_operator = "from-file"\n')
    assert launcher.access_settings(Config.from_env({}), secrets_file).password_operator == "from-file"
    secrets_file.write_text("[fanops\n")
    with pytest.raises(FanopsError, match="cannot read .*secrets.toml"):
        launcher.access_settings(Config.from_env({}), secrets_file)
