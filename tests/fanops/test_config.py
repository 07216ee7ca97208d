"""The process settings: one table (``fanops.config.SETTINGS``) gives every name, variable, default and help."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fanops.config import PROJECT_ROOT, SETTINGS, Config, cli_help, setting
from fanops.errors import FanopsError

# the defaults as they have always been: the table must not drift from them
DEFAULTS = {"redis_url": "", "data_dir": PROJECT_ROOT / "data", "max_frame_bytes": 1 << 20, "stream_maxlen": 200_000,
            "flush_events": 500, "flush_ms": 20, "future_skew_ms": 24 * 3600 * 1000, "dedupe_ttl_s": 7 * 24 * 3600,
            "worker_batch": 200, "worker_batch_events": 100_000, "latency_window_s": 60, "claim_idle_ms": 30_000,
            "heartbeat_ttl_s": 10, "archive_idle_min": 30, "archive_idle_wall_h": 24, "archive_every_s": 60,
            "board_refresh_ms": 1000}
DEFAULTS |= {"tiktok_diamonds_per_usd": 200, "tiktok_offline_poll_s": 60}  # issue 15: TikTok LIVE
DEFAULTS |= {"worker_apply_ms": 250}  # issue 18: batches sized by Redis's time (were 50 entries, 20,000 events)
DEFAULTS |= {"retention_days": 90}  # issue 17: forget and retention
DEFAULTS |= {"kind_tasks_keep_days": 30}  # issue 16 follow-up: settled kind tasks leave Redis for a ledger
DEFAULTS |= {"password_operator": "", "password_admin": "", "host_token": "", "session_hours": 12,
             "oidc_admins": "", "oidc_operators": ""}  # issue 17: access
DEFAULTS |= {"webhook_secret": "", "shopify_webhook_secret": "", "shop": "default", "shopify_viewer_attr": "viewer_id",
             "shopify_room_attr": "room", "orders_poll_ms": 1000}  # issue 15: order webhooks
DEFAULTS |= {"smtp_url": "", "smtp_from": "", "unsubscribe_mailto": "", "unsubscribe_url": "", "unsubscribe_secret": "",
             "whatsapp_token": "", "whatsapp_phone_id": "", "whatsapp_api": "https://graph.facebook.com/v21.0",
             "whatsapp_template": "fanops_followup", "twilio_sid": "", "twilio_token": "", "twilio_from": "",
             "twilio_api": "https://api.twilio.com", "twilio_webhook_url": "",
             "send_timeout_s": 15}  # issue 16: channels
DEFAULTS |= {"whatsapp_verify_token": "", "whatsapp_app_secret": ""}  # issue 16: WhatsApp opt-outs webhook
TEXT = {f.name for f in dataclasses.fields(Config) if f.type in ("str", str)} - {"redis_url"}


def test_every_field_has_one_row_and_every_row_one_field() -> None:
    names = [s.name for s in SETTINGS]
    assert len(set(names)) == len(names) and len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert set(names) == {f.name for f in dataclasses.fields(Config)}
    assert all(s.help for s in SETTINGS)


def test_the_defaults_are_the_tables_and_unchanged() -> None:
    assert dataclasses.asdict(Config()) == DEFAULTS
    assert Config.from_env({}) == Config()


def test_each_variable_sets_its_field() -> None:
    big = {"dedupe_ttl_s": 70_000}  # over archive_idle_wall_h's 7 hours (checked together)
    env = {s.env: "/tmp/x" if s.name == "data_dir" else "redis://h:1" if s.name == "redis_url"
           else str(big.get(s.name, 7)) for s in SETTINGS}
    cfg = Config.from_env(env)
    for s in SETTINGS:
        want = (Path("/tmp/x") if s.name == "data_dir" else "redis://h:1" if s.name == "redis_url"
                else "7" if s.name in TEXT else big.get(s.name, 7))
        assert getattr(cfg, s.name) == want, s.env


def test_overrides_win_and_none_means_not_given() -> None:
    cfg = Config.from_env({"FANOPS_FLUSH_MS": "9"}, flush_ms=3, flush_events=None)
    assert (cfg.flush_ms, cfg.flush_events) == (3, 500)


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(FanopsError, match="FANOPS_FLUSH_MS='soon'"):
        Config.from_env({"FANOPS_FLUSH_MS": "soon"})


def test_a_room_must_be_archived_before_the_consumer_forgets_its_ids() -> None:
    """Else a resend of a room idle past the dedupe TTL and not archived yet would be applied twice."""
    with pytest.raises(FanopsError, match="FANOPS_ARCHIVE_IDLE_WALL_H=48 must stay under FANOPS_DEDUPE_TTL_S"):
        Config.from_env({"FANOPS_ARCHIVE_IDLE_WALL_H": "48", "FANOPS_DEDUPE_TTL_S": str(24 * 3600)})
    assert Config.from_env({"FANOPS_ARCHIVE_IDLE_WALL_H": "23", "FANOPS_DEDUPE_TTL_S": str(24 * 3600)})


def test_a_negative_keep_time_of_settled_kind_tasks_is_refused() -> None:
    with pytest.raises(FanopsError, match="FANOPS_KIND_TASKS_KEEP_DAYS=-1 is not a valid value: give 0 or more"):
        Config.from_env({"FANOPS_KIND_TASKS_KEEP_DAYS": "-1"})
    assert Config.from_env({"FANOPS_KIND_TASKS_KEEP_DAYS": "0"}).kind_tasks_keep_days == 0


@pytest.mark.parametrize("env", ["FANOPS_WORKER_BATCH", "FANOPS_WORKER_BATCH_EVENTS", "FANOPS_WORKER_APPLY_MS"])
def test_a_scorer_batch_of_nothing_is_refused(env: str) -> None:
    """A scorer that may apply no event in a call would never apply one: refused at start, by its variable."""
    with pytest.raises(FanopsError, match=f"{env}=0 is not a valid value: give 1 or more"):
        Config.from_env({env: "0"})


def test_cli_help_is_the_tables() -> None:
    s = setting("max_frame_bytes")
    assert cli_help("max_frame_bytes") == f"{s.help} (default: $FANOPS_MAX_FRAME_BYTES, else {1 << 20})"
    assert cli_help("redis_url").endswith("(default: $REDIS_URL)")


def test_a_config_never_shows_its_secrets() -> None:
    cfg = Config.from_env({"FANOPS_PASSWORD_OPERATOR": "op-secret", "FANOPS_PASSWORD_ADMIN": "ad-secret",
                           "FANOPS_HOST_TOKEN": "tok-secret"})
    assert (cfg.password_operator, cfg.password_admin, cfg.host_token) == ("op-secret", "ad-secret", "tok-secret")
    assert "secret" not in repr(cfg)
