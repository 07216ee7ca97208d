"""Rule settings and message templates in Redis: read, validate-and-save, versioned."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from fanops import keys, replies
from fanops.errors import BadSettings
from fanops.replies import to_int, to_str
from fanops.rules_settings import RuleSettings, clamp_to_bounds
from fanops.templates import DEFAULT_TEMPLATES, validate_templates

log = logging.getLogger(__name__)


def load(r: redis.Redis, shop: str) -> tuple[RuleSettings, int]:
    """The shop's rule settings and their version (0: never changed, the spec's defaults)."""
    raw = cast(replies.Hash, r.hgetall(keys.rules(shop)))
    if not raw:
        return RuleSettings(), 0
    d = {k.decode(): v for k, v in raw.items()}
    version = int(d.pop("version", b"0"))
    d.pop("templates", None)
    d.pop("changed_at", None)
    d.pop("changed_by", None)
    try:
        return RuleSettings.from_mapping(d), version
    except BadSettings:
        # saved under wider bounds by an earlier version (active_rooms went up to 1000, now 20):
        # each value is brought into its range, as a save would have required
        fixed = clamp_to_bounds(d)
        log.warning("rule settings of shop %r are outside today's bounds; using %s", shop, fixed)
        return RuleSettings.from_mapping(fixed), version


def last_change(r: redis.Redis, shop: str) -> tuple[str, int]:
    """Who saved the shop's rule settings last (operator text) and when (wall ms); ("", 0) if never."""
    res = cast("list[bytes | None]", r.hmget(keys.rules(shop), ["changed_by", "changed_at"]))
    return to_str(res[0]), to_int(res[1])


def load_templates(r: redis.Redis, shop: str) -> dict[str, Any]:
    raw = r.hget(keys.rules(shop), "templates")
    if not raw:
        return DEFAULT_TEMPLATES
    templates: dict[str, Any] = json.loads(raw)
    return templates


def save(r: redis.Redis, shop: str, changes: dict[str, Any], *, templates: dict[str, Any] | None = None,
         expected_version: int | None = None, by: str = "",
         clear_templates: bool = False) -> tuple[RuleSettings, int]:
    """Validate and store a change in one step; raise BadSettings with every problem, changing nothing.

    ``expected_version`` guards against two operators saving over each other.
    """
    current, version = load(r, shop)
    new = RuleSettings.from_mapping(changes, current)
    if templates is not None:
        problems = validate_templates(templates)
        if problems:
            raise BadSettings(problems)
    key = keys.rules(shop)
    with r.pipeline(transaction=True) as pipe:  # a cluster client's default is no transaction
        while True:
            try:
                pipe.watch(key)
                cur_version = int(pipe.hget(key, "version") or 0)
                if expected_version is not None and cur_version != expected_version:
                    raise BadSettings([f"the settings were changed meanwhile (version {cur_version}, "
                                       f"you edited {expected_version}): reload and try again"])
                pipe.multi()
                mapping: dict[FieldT, EncodableT] = {k: repr(v) for k, v in new.to_mapping().items()}
                mapping["version"] = cur_version + 1
                mapping["changed_at"] = int(time.time() * 1000)
                mapping["changed_by"] = by
                if templates is not None:
                    mapping["templates"] = json.dumps(templates, ensure_ascii=False)
                pipe.hset(key, mapping=mapping)
                if clear_templates:
                    pipe.hdel(key, "templates")
                pipe.execute()
                return new, cur_version + 1
            except redis.WatchError:
                continue


def reset(r: redis.Redis, shop: str, by: str = "") -> tuple[RuleSettings, int]:
    """Back to the spec's defaults (and the default templates), as a new version."""
    return save(r, shop, RuleSettings().to_mapping(), by=by, clear_templates=True)
