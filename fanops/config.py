"""Process settings: one frozen object built once per process from the environment.

The table ``SETTINGS`` is the one place that names each setting, its
environment variable, default and help: ``Config`` takes its defaults from it,
``Config.from_env`` its variables, the CLIs their options' help (``cli_help``)
and the README its settings table (``fanops.docs``).  Rule thresholds (tiers, follow-ups) are not here: they live in
Redis so that every process sees a change at once (see ``fanops.rules_settings``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from fanops.errors import FanopsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("redis_url", "REDIS_URL", "",
            "Redis server to use (redis://, rediss://, with password; a Redis Cluster: redis+cluster://, "
            "rediss+cluster://); empty: the embedded server"),
    Setting("data_dir", "FANOPS_DATA_DIR", str(PROJECT_ROOT / "data"),
            "where the embedded server keeps its data, the applied-event log and the archived shows"),
    Setting("max_frame_bytes", "FANOPS_MAX_FRAME_BYTES", str(1 << 20),
            "largest WebSocket frame the consumer accepts; a larger one is bad input"),
    Setting("stream_maxlen", "FANOPS_STREAM_MAXLEN", "200000",
            "the most entries each of a shop's event streams holds not yet applied (applied ones leave at "
            "once): at the cap the consumer holds its events and stops reading the feed, an order webhook "
            "and an import wait, until the scorers catch up; nothing is dropped"),
    Setting("flush_events", "FANOPS_FLUSH_EVENTS", "500",
            "the consumer writes to Redis once it holds this many events"),
    Setting("flush_ms", "FANOPS_FLUSH_MS", "20",
            "... or once its oldest held event is this many milliseconds old"),
    Setting("future_skew_ms", "FANOPS_FUTURE_SKEW_MS", str(24 * 3600 * 1000),
            "an event whose ts is further ahead of the consumer's clock is bad input"),
    Setting("dedupe_ttl_s", "FANOPS_DEDUPE_TTL_S", str(7 * 24 * 3600),
            "how long the consumer remembers a room's event ids after the room's last event"),
    Setting("worker_batch", "FANOPS_WORKER_BATCH", "200",
            "most stream entries a scorer reads per partition per call (it reads about two batches' events)"),
    Setting("worker_batch_events", "FANOPS_WORKER_BATCH_EVENTS", "100000",
            "most events a scorer applies in one script call"),
    Setting("worker_apply_ms", "FANOPS_WORKER_APPLY_MS", "250",
            "a scorer sizes a shop's batches so that one apply call takes about this long (its round trip; bigger "
            "batches cost less an event, but Redis serves no other client while it applies one)"),
    Setting("latency_window_s", "FANOPS_LATENCY_WINDOW_S", "60",
            "a scorer reports its receipt -> applied latency (p50, p99 over events) for entries received in this "
            "last window"),
    Setting("claim_idle_ms", "FANOPS_CLAIM_IDLE_MS", "30000",
            "a scorer takes over another's unacknowledged entries after this idle time"),
    Setting("heartbeat_ttl_s", "FANOPS_HEARTBEAT_TTL_S", "10",
            "a process is shown as down when its heartbeat is older than this"),
    Setting("board_refresh_ms", "FANOPS_BOARD_REFRESH_MS", "1000",
            "how often the live board redraws itself in each open browser (the host screen: twice this, "
            "the follow-up queue: three times)"),
    Setting("archive_idle_min", "FANOPS_ARCHIVE_IDLE_MIN", "30",
            "a room with no event for this many minutes of shop clock is archived under data_dir/archive "
            "and its raw events leave Redis"),
    Setting("archive_idle_wall_h", "FANOPS_ARCHIVE_IDLE_WALL_H", "24",
            "a room that has received no event for this many hours of wall time is archived too (its shop "
            "clock may never move on: a shop's only show); must stay under dedupe_ttl_s, so that a resend "
            "of the room is still known as one"),
    Setting("archive_every_s", "FANOPS_ARCHIVE_EVERY_S", "60",
            "how often a running scorer looks for idle rooms to archive (a late event of an archived room "
            "opens it again; the next look archives it again)"),
    Setting("tiktok_diamonds_per_usd", "FANOPS_TIKTOK_DIAMONDS_PER_USD", "200",
            "TikTok LIVE: diamonds that make one US dollar of a gift's value (200: a diamond is half a cent)"),
    Setting("tiktok_offline_poll_s", "FANOPS_TIKTOK_OFFLINE_POLL_S", "60",
            "TikTok LIVE: seconds between checks while the creator is not live (or after the live ended)"),
    Setting("retention_days", "FANOPS_RETENTION_DAYS", "90",
            "a scorer drops the comment text and contact details of viewers with no event for this many days "
            "of shop clock (their other records stay; `python -m scoring forget` erases a viewer)"),
    Setting("kind_tasks_keep_days", "FANOPS_KIND_TASKS_KEEP_DAYS", "30",
            "a settled follow-up task of a kind besides lingered (sent, skipped, withdrawn, expired) leaves Redis "
            "this many days of wall time after it was settled, for the shop's ledger under data_dir/kind_tasks "
            "(the fan's page still lists it; 0: at the next pass)"),
    Setting("password_operator", "FANOPS_PASSWORD_OPERATOR", "",
            "once this or the admin password is set, every screen asks for a password first; this one opens "
            "the live board, host screen, queue and review (also `password_operator` in .streamlit/secrets.toml "
            "[fanops])"),
    Setting("password_admin", "FANOPS_PASSWORD_ADMIN", "",
            "the admin password: every screen, the settings included (also `password_admin` in secrets.toml)"),
    Setting("host_token", "FANOPS_HOST_TOKEN", "",
            "`/host?token=...` with this token opens the host screen alone, read-only, with no password "
            "(also `host_token` in secrets.toml)"),
    Setting("session_hours", "FANOPS_SESSION_HOURS", "12",
            "a browser stays signed in this long (across reloads), or until Sign out"),
    Setting("oidc_admins", "FANOPS_OIDC_ADMINS", "",
            "with st.login (an [auth] section in secrets.toml): e-mail addresses given the admin role"),
    Setting("oidc_operators", "FANOPS_OIDC_OPERATORS", "",
            "with st.login: e-mail addresses given the operator role; anyone else is turned away"),
    Setting("webhook_secret", "FANOPS_WEBHOOK_SECRET", "",
            "order webhooks: the secret of the generic form's X-Signature (HMAC-SHA256); empty: refused (401)"),
    Setting("shopify_webhook_secret", "SHOPIFY_WEBHOOK_SECRET", "",
            "order webhooks: the Shopify app's client secret, which signs X-Shopify-Hmac-Sha256; empty: refused"),
    Setting("shop", "FANOPS_SHOP", "default", "order webhooks: the shop a Shopify order belongs to"),
    Setting("shopify_viewer_attr", "FANOPS_SHOPIFY_VIEWER_ATTR", "viewer_id",
            "order webhooks: the Shopify order's note attribute that names the viewer"),
    Setting("shopify_room_attr", "FANOPS_SHOPIFY_ROOM_ATTR", "room",
            "order webhooks: the Shopify order's note attribute that names the room (the show)"),
    Setting("orders_poll_ms", "FANOPS_ORDERS_POLL_MS", "1000",
            "order webhooks: how often kept orders are matched again (an operator's link, a new contact)"),
    # providers (fanops.channels); each also read from .streamlit/secrets.toml [fanops] by its name
    Setting("smtp_url", "FANOPS_SMTP_URL", "",
            "email: the SMTP server, smtp://user:pass@host:port (STARTTLS where the server offers it) or "
            "smtps://... (TLS from the start); empty: email is not set up"),
    Setting("smtp_from", "FANOPS_SMTP_FROM", "",
            "email: the From address, e.g. Shop <hello@shop.example>"),
    Setting("unsubscribe_mailto", "FANOPS_UNSUBSCRIBE_MAILTO", "",
            "email: the address of the List-Unsubscribe mailto link (empty: the From address)"),
    Setting("unsubscribe_url", "FANOPS_UNSUBSCRIBE_URL", "",
            "email: the https page of the List-Unsubscribe link (one-click, RFC 8058), given ?t=TOKEN; "
            "needs unsubscribe_secret; empty: the mailto link only"),
    Setting("unsubscribe_secret", "FANOPS_UNSUBSCRIBE_SECRET", "",
            "email: the key that signs unsubscribe links' tokens (HMAC-SHA256)"),
    Setting("whatsapp_token", "FANOPS_WHATSAPP_TOKEN", "",
            "WhatsApp Cloud API: the access token; empty: WhatsApp is not set up"),
    Setting("whatsapp_phone_id", "FANOPS_WHATSAPP_PHONE_ID", "",
            "WhatsApp Cloud API: the sending phone number's id"),
    Setting("whatsapp_api", "FANOPS_WHATSAPP_API", "https://graph.facebook.com/v21.0",
            "WhatsApp Cloud API: base URL"),
    Setting("whatsapp_template", "FANOPS_WHATSAPP_TEMPLATE", "fanops_followup",
            "WhatsApp: the approved template sent outside the 24-hour service window (its one body "
            "parameter: the viewer's name), in the viewer's language"),
    Setting("whatsapp_verify_token", "FANOPS_WHATSAPP_VERIFY_TOKEN", "",
            "WhatsApp webhook: the verify token typed in the Meta app dashboard beside the callback URL (the "
            "orders server's /webhooks/whatsapp); empty: the dashboard's verification is refused"),
    Setting("whatsapp_app_secret", "FANOPS_WHATSAPP_APP_SECRET", "",
            "WhatsApp webhook: the Meta app's secret, which signs X-Hub-Signature-256 (HMAC-SHA256 of the body); "
            "empty: every POST is refused (401)"),
    Setting("twilio_sid", "FANOPS_TWILIO_SID", "",
            "SMS (Twilio): the account SID; empty: SMS is not set up"),
    Setting("twilio_token", "FANOPS_TWILIO_TOKEN", "", "SMS (Twilio): the auth token"),
    Setting("twilio_from", "FANOPS_TWILIO_FROM", "",
            "SMS (Twilio): the sending number (E.164) or messaging service SID (MG...)"),
    Setting("twilio_api", "FANOPS_TWILIO_API", "https://api.twilio.com", "SMS (Twilio): base URL"),
    Setting("twilio_webhook_url", "FANOPS_TWILIO_WEBHOOK_URL", "",
            "SMS (Twilio): the public URL set as the number's incoming-message webhook, which Twilio "
            "signs (the orders server's /webhooks/twilio/sms behind your proxy); empty: STOP replies are refused"),
    Setting("send_timeout_s", "FANOPS_SEND_TIMEOUT_S", "15",
            "a provider that has not answered a send in this many seconds has failed it"),
)


_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The row of ``SETTINGS`` named ``name`` (KeyError for an unknown one)."""
    return _BY_NAME[name]


def cli_help(name: str) -> str:
    """The help of a command-line option that sets ``name``: the table's text, its variable and default."""
    s = _BY_NAME[name]
    return f"{s.help} (default: ${s.env}, else {s.default})" if s.default else f"{s.help} (default: ${s.env})"


def _int(name: str) -> int:
    return int(_BY_NAME[name].default)


@dataclass(frozen=True)
class Config:
    """The process settings; each field's default is its row's in ``SETTINGS``, parsed by the field's type."""

    redis_url: str = _BY_NAME["redis_url"].default
    data_dir: Path = field(default_factory=lambda: Path(_BY_NAME["data_dir"].default))
    max_frame_bytes: int = _int("max_frame_bytes")
    stream_maxlen: int = _int("stream_maxlen")
    flush_events: int = _int("flush_events")
    flush_ms: int = _int("flush_ms")
    future_skew_ms: int = _int("future_skew_ms")
    dedupe_ttl_s: int = _int("dedupe_ttl_s")
    worker_batch: int = _int("worker_batch")
    worker_batch_events: int = _int("worker_batch_events")
    worker_apply_ms: int = _int("worker_apply_ms")
    latency_window_s: int = _int("latency_window_s")
    claim_idle_ms: int = _int("claim_idle_ms")
    heartbeat_ttl_s: int = _int("heartbeat_ttl_s")
    archive_idle_min: int = _int("archive_idle_min")
    archive_idle_wall_h: int = _int("archive_idle_wall_h")
    archive_every_s: int = _int("archive_every_s")
    board_refresh_ms: int = _int("board_refresh_ms")
    tiktok_diamonds_per_usd: int = _int("tiktok_diamonds_per_usd")
    tiktok_offline_poll_s: int = _int("tiktok_offline_poll_s")
    retention_days: int = _int("retention_days")
    kind_tasks_keep_days: int = _int("kind_tasks_keep_days")
    # secrets: never in a repr (a logged Config)
    password_operator: str = field(default=_BY_NAME["password_operator"].default, repr=False)
    password_admin: str = field(default=_BY_NAME["password_admin"].default, repr=False)
    host_token: str = field(default=_BY_NAME["host_token"].default, repr=False)
    session_hours: int = _int("session_hours")
    oidc_admins: str = _BY_NAME["oidc_admins"].default
    oidc_operators: str = _BY_NAME["oidc_operators"].default
    webhook_secret: str = field(default=_BY_NAME["webhook_secret"].default, repr=False)
    shopify_webhook_secret: str = field(default=_BY_NAME["shopify_webhook_secret"].default, repr=False)
    shop: str = _BY_NAME["shop"].default
    shopify_viewer_attr: str = _BY_NAME["shopify_viewer_attr"].default
    shopify_room_attr: str = _BY_NAME["shopify_room_attr"].default
    orders_poll_ms: int = _int("orders_poll_ms")
    smtp_url: str = field(default=_BY_NAME["smtp_url"].default, repr=False)  # may hold a password
    smtp_from: str = _BY_NAME["smtp_from"].default
    unsubscribe_mailto: str = _BY_NAME["unsubscribe_mailto"].default
    unsubscribe_url: str = _BY_NAME["unsubscribe_url"].default
    unsubscribe_secret: str = field(default=_BY_NAME["unsubscribe_secret"].default, repr=False)
    whatsapp_token: str = field(default=_BY_NAME["whatsapp_token"].default, repr=False)
    whatsapp_phone_id: str = _BY_NAME["whatsapp_phone_id"].default
    whatsapp_api: str = _BY_NAME["whatsapp_api"].default
    whatsapp_template: str = _BY_NAME["whatsapp_template"].default
    whatsapp_verify_token: str = field(default=_BY_NAME["whatsapp_verify_token"].default, repr=False)
    whatsapp_app_secret: str = field(default=_BY_NAME["whatsapp_app_secret"].default, repr=False)
    twilio_sid: str = _BY_NAME["twilio_sid"].default
    twilio_token: str = field(default=_BY_NAME["twilio_token"].default, repr=False)
    twilio_from: str = _BY_NAME["twilio_from"].default
    twilio_api: str = _BY_NAME["twilio_api"].default
    twilio_webhook_url: str = _BY_NAME["twilio_webhook_url"].default
    send_timeout_s: int = _int("send_timeout_s")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Config:
        """Build the settings from ``environ`` (default ``os.environ``), then ``overrides`` (None: not given)."""
        env = os.environ if environ is None else environ
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for s in SETTINGS:
            raw = env.get(s.env, s.default)
            kind = types[s.name]
            try:
                if kind in ("int", int):
                    values[s.name] = int(raw)
                elif kind in ("Path", Path):
                    values[s.name] = Path(raw)
                else:
                    values[s.name] = raw
            except ValueError as e:
                raise FanopsError(f"{s.env}={raw!r} is not a valid value: {s.help}") from e
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)  # type: ignore[arg-type]  # values were converted per field type above
        if cfg.archive_idle_wall_h * 3600 >= cfg.dedupe_ttl_s:
            # a room idle that long would forget its event ids before it is archived: a resend applied twice
            raise FanopsError(f"FANOPS_ARCHIVE_IDLE_WALL_H={cfg.archive_idle_wall_h} must stay under "
                              f"FANOPS_DEDUPE_TTL_S={cfg.dedupe_ttl_s} ({cfg.dedupe_ttl_s / 3600:g} h): a room "
                              "must be archived before the consumer forgets its event ids")
        for name in ("worker_batch", "worker_batch_events", "worker_apply_ms"):
            if getattr(cfg, name) < 1:
                s = _BY_NAME[name]
                raise FanopsError(f"{s.env}={getattr(cfg, name)} is not a valid value: give 1 or more; {s.help}")
        if cfg.kind_tasks_keep_days < 0:
            raise FanopsError(f"FANOPS_KIND_TASKS_KEEP_DAYS={cfg.kind_tasks_keep_days} is not a valid value: "
                              "give 0 or more days (0: settled kind tasks leave Redis at the next pass)")
        return cfg
