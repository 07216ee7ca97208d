"""Send one follow-up task on a channel, and record it: the one path of the CLI and the queue screen.

    check consent and address (spec/events.md v1.1)  -> ChannelRefused, nothing claimed
    check the provider is set up                     -> ChannelRefused, nothing claimed
    claim the task (or keep one's own claim)         -> TaskClaimedByOther / TaskStateError
    send through the provider                        -> ProviderError: the task stays claimed
    mark it sent with channel, message id, operator and time (fanops/lua/task.lua)

``dm`` goes through no provider: the operator sent it by hand on the platform, and it is recorded.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from fanops import keys, read
from fanops.channels import compose, smtp, web
from fanops.config import Config
from fanops.errors import ChannelRefused, TaskError, TaskNotFound
from fanops.queue import Operator, Task, get_task, split_task_id

# the settings each provider needs, by channel
NEEDS: dict[str, tuple[str, ...]] = {
    "email": ("smtp_url", "smtp_from"),
    "whatsapp": ("whatsapp_token", "whatsapp_phone_id", "whatsapp_api", "whatsapp_template"),
    "sms": ("twilio_sid", "twilio_token", "twilio_from", "twilio_api"),
}
PROVIDER_FIELDS = tuple(dict.fromkeys(f for fs in NEEDS.values() for f in fs)) + (
    "unsubscribe_mailto", "unsubscribe_url", "unsubscribe_secret")


@dataclass(frozen=True)
class Sent:
    id: str
    channel: str
    message_id: str | None  # None for dm

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "message_id": self.message_id}


def with_secrets(cfg: Config, secrets: Mapping[str, object] | None) -> Config:
    """``cfg`` with each provider setting left empty in the environment taken from ``secrets`` (the
    ``[fanops]`` section of ``.streamlit/secrets.toml``, lower-case names without the prefix)."""
    extra: dict[str, Any] = {f: str(secrets[f]) for f in PROVIDER_FIELDS
             if secrets and secrets.get(f) and not getattr(cfg, f)}
    return dataclasses.replace(cfg, **extra) if extra else cfg


def not_set_up(cfg: Config, channel: str) -> str:
    """Why ``channel``'s provider cannot be used (its missing settings), or ""."""
    missing = [f"FANOPS_{f.upper()}" for f in NEEDS.get(channel, ()) if not getattr(cfg, f)]
    return f"{channel} is not set up: set {', '.join(missing)}" if missing else ""


def why_not(cfg: Config, reach: dict[str, Any] | None, channel: str) -> str:
    """Why a task cannot go out on ``channel`` to a viewer of this reach (consent, address, provider), or ""."""
    return compose.refusal(reach, channel) or (not_set_up(cfg, channel) if channel != "dm" else "")


def send_task(r: redis.Redis, cfg: Config, shop: str, tid: str, operator: str, channel: str, *,
              now_ms: int | None = None, http: httpx.Client | None = None) -> Sent:
    """Claim (or keep claiming) task ``tid`` as ``operator``, send it on ``channel`` and record it sent."""
    op = Operator(r, shop, operator)
    try:
        split_task_id(tid)
    except ValueError as e:
        raise TaskNotFound(f"{tid!r} is not a task id (the id as `python -m scoring tasks` prints it)") from e
    task = get_task(r, shop, tid, now_ms)
    reach = read.viewer_reach(r, shop, [task.viewer]).get(task.viewer)
    why = why_not(cfg, reach, channel)
    if why:
        raise ChannelRefused(channel, why)
    op.claim(tid, now_ms)
    if channel == "dm":
        op.mark_sent(tid, now_ms, channel="dm")
        return Sent(tid, "dm", None)
    assert reach is not None  # why_not refuses a viewer with no reach on every channel but dm
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    message_id = deliver(r, cfg, shop, task, reach, channel, now, http)
    try:
        op.mark_sent(tid, now_ms, channel=channel, message_id=message_id)
    except TaskError as e:  # the claim lapsed and someone took it while the provider answered
        raise TaskError(f"sent on {channel} (message id {message_id}) but not recorded: {e}") from e
    return Sent(tid, channel, message_id)


def last_inbound(r: redis.Redis, cfg: Config, shop: str, viewer: str) -> int:
    """When the viewer last wrote to the shop on WhatsApp (wall ms; -1: never): with the inbound webhook
    set up (``FANOPS_WHATSAPP_APP_SECRET``) exactly that; without it, the viewer's latest event (a
    comment, a join...) stands in. A session message the API finds outside its window goes again as
    the template all the same."""
    if cfg.whatsapp_app_secret:
        got = r.zscore(keys.wa_inbound(shop), viewer)
        return int(got) if got is not None else -1
    v = read.viewer_state(r, shop, viewer)
    return v.last_active if v else -1


def deliver(r: redis.Redis, cfg: Config, shop: str, task: Task, reach: dict[str, Any], channel: str,
            now_ms: int, http: httpx.Client | None = None) -> str:
    """Put the task's message on the wire; the provider's message id."""
    if channel == "email":
        token = compose.make_token(cfg.unsubscribe_secret, shop, task.viewer, "email")
        links = compose.unsubscribe_links(cfg.unsubscribe_mailto or cfg.smtp_from, cfg.unsubscribe_url, token)
        msg = compose.email_message(task.message, cfg.smtp_from, str(reach["email"]), links)
        smtp.send_email(cfg.smtp_url, msg, cfg.send_timeout_s)
        return str(msg["Message-ID"])
    client = http or httpx.Client(timeout=cfg.send_timeout_s)
    try:
        if channel == "whatsapp":
            session = compose.in_service_window(last_inbound(r, cfg, shop, task.viewer), now_ms)
            return web.send_whatsapp(client, cfg.whatsapp_api, cfg.whatsapp_phone_id, cfg.whatsapp_token,
                                     str(reach["phone"]), task.message, task.name, task.lang or None,
                                     cfg.whatsapp_template, session)
        return web.send_sms(client, cfg.twilio_api, cfg.twilio_sid, cfg.twilio_token, cfg.twilio_from,
                            str(reach["phone"]), task.message)
    finally:
        if http is None:
            client.close()
