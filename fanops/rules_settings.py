"""Rule settings: the thresholds of spec/tiers.md, their defaults, bounds and help, in one table.

The table is read by the scorer, the settings screen, the CLI and the README.
Values live in Redis per shop (versioned); ``RuleSettings.from_mapping``
validates a whole change and raises ``BadSettings`` listing every problem, so
that nothing is half-applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from fanops.errors import BadSettings

DAY = 86_400_000
MINUTE = 60_000


RULE_GROUPS = ("tiers", "followups", "kinds", "priority")  # as the settings screen shows them, in order


@dataclass(frozen=True)
class Rule:
    name: str
    group: str  # one of RULE_GROUPS
    default: float
    lo: float
    hi: float
    unit: str
    help: str
    integer: bool = True


RULES: tuple[Rule, ...] = (
    Rule("dormant_days", "tiers", 30, 1, 3650, "days", "a viewer with no event for this long is dormant"),
    Rule("active_orders", "tiers", 2, 1, 1000, "orders", "this many distinct orders make a viewer active"),
    Rule("active_rooms", "tiers", 3, 1, 20, "rooms",
         "... or attending this many distinct rooms within the window"),
    Rule("active_window_days", "tiers", 30, 1, 3650, "days", "the window for counting rooms attended"),
    Rule("reactivated_days", "tiers", 30, 1, 3650, "days",
         "a viewer back after this long away counts as reactivated in the room"),
    Rule("present_minutes", "tiers", 10, 1, 1440, "minutes",
         "a viewer counts as present this long after their last event in the room"),
    Rule("followup_dwell_minutes", "followups", 3, 0, 1440, "minutes", "dwell that makes a follow-up task"),
    Rule("followup_cooldown_days", "followups", 7, 0, 365, "days",
         "no new task for a viewer who was sent a follow-up this recently"),
    Rule("claim_lease_minutes", "followups", 5, 1, 240, "minutes (wall time)",
         "an operator's claim on a task lapses after this"),
    Rule("followup_expire_hours", "followups", 72, 1, 8760, "hours (wall time)",
         "a task still pending this long after it was made expires (a final state, like skipped)"),
    Rule("decent_hour_start", "followups", 9, 0, 23, "hour", "earliest local hour to send a DM"),
    Rule("decent_hour_end", "followups", 21, 1, 24, "hour", "local hour from which a DM waits for the next day"),
    Rule("after_sales_days", "kinds", 7, 1, 365, "days",
         "an after_sales task is due this long (shop clock) after a viewer's first order"),
    Rule("on_thank_first_order", "kinds", 1, 0, 1, "on (1) / off (0)", "make thank_first_order tasks"),
    Rule("on_after_sales", "kinds", 1, 0, 1, "on (1) / off (0)", "make after_sales tasks"),
    Rule("on_win_back", "kinds", 1, 0, 1, "on (1) / off (0)", "make win_back tasks"),
    Rule("prio_thank_first_order", "kinds", 0, 0, 100, "points",
         "priority of a thank_first_order task (a lingered task with the same priority comes first)", False),
    Rule("prio_after_sales", "kinds", 0, 0, 100, "points", "priority of an after_sales task", False),
    Rule("prio_win_back", "kinds", 0, 0, 100, "points", "priority of a win_back task", False),
    Rule("w_comment", "priority", 3, 0, 100, "points", "priority per comment in the room", False),
    Rule("w_cart_add", "priority", 5, 0, 100, "points", "priority per cart add", False),
    Rule("w_product_view", "priority", 2, 0, 100, "points", "priority per product view", False),
    Rule("w_share", "priority", 1, 0, 100, "points", "priority per share", False),
    Rule("w_follow", "priority", 2, 0, 100, "points", "priority per follow", False),
    Rule("likes_cap", "priority", 100, 0, 100000, "likes", "likes counted towards priority at most"),
    Rule("likes_per_point", "priority", 20, 1, 100000, "likes", "likes for one priority point"),
    Rule("bonus_reactivated", "priority", 5, 0, 100, "points", "priority bonus for a reactivated viewer", False),
    Rule("bonus_first_buyer", "priority", 3, 0, 100, "points", "priority bonus for a first buyer", False),
    Rule("bonus_active", "priority", 2, 0, 100, "points", "priority bonus for an active fan", False),
    Rule("bonus_new_fan", "priority", 0, 0, 100, "points", "priority bonus for a new fan", False),
)
_BY_NAME = {r.name: r for r in RULES}


def clamp_to_bounds(values: dict[str, Any]) -> dict[str, Any]:
    """Stored values brought into today's ranges (settings saved when a range was wider); values
    that are not numbers or name no setting are left for ``RuleSettings.from_mapping`` to refuse."""
    out: dict[str, Any] = {}
    for k, raw in values.items():
        rule = _BY_NAME.get(k)
        try:
            v = float(raw.decode() if isinstance(raw, bytes) else raw)
        except (TypeError, ValueError):
            out[k] = raw
            continue
        out[k] = min(max(v, rule.lo), rule.hi) if rule is not None and v == v else raw
    return out


@dataclass(frozen=True)
class RuleSettings:
    dormant_days: float = 30
    active_orders: float = 2
    active_rooms: float = 3
    active_window_days: float = 30
    reactivated_days: float = 30
    present_minutes: float = 10
    followup_dwell_minutes: float = 3
    followup_cooldown_days: float = 7
    claim_lease_minutes: float = 5
    followup_expire_hours: float = 72
    decent_hour_start: float = 9
    decent_hour_end: float = 21
    after_sales_days: float = 7
    on_thank_first_order: float = 1
    on_after_sales: float = 1
    on_win_back: float = 1
    prio_thank_first_order: float = 0
    prio_after_sales: float = 0
    prio_win_back: float = 0
    w_comment: float = 3
    w_cart_add: float = 5
    w_product_view: float = 2
    w_share: float = 1
    w_follow: float = 2
    likes_cap: float = 100
    likes_per_point: float = 20
    bonus_reactivated: float = 5
    bonus_first_buyer: float = 3
    bonus_active: float = 2
    bonus_new_fan: float = 0

    # --- derived, in ms (worked out once: the scorer reads them for every record) ---
    @cached_property
    def dormant_ms(self) -> int:
        return int(self.dormant_days * DAY)

    @cached_property
    def active_window_ms(self) -> int:
        return int(self.active_window_days * DAY)

    @cached_property
    def reactivated_ms(self) -> int:
        return int(self.reactivated_days * DAY)

    @cached_property
    def present_ms(self) -> int:
        return int(self.present_minutes * MINUTE)

    @cached_property
    def dwell_ms(self) -> int:
        return int(self.followup_dwell_minutes * MINUTE)

    @cached_property
    def cooldown_ms(self) -> int:
        return int(self.followup_cooldown_days * DAY)

    @cached_property
    def expire_ms(self) -> int:
        return int(self.followup_expire_hours * 3_600_000)

    @cached_property
    def after_sales_ms(self) -> int:
        return int(self.after_sales_days * DAY)

    def kind_on(self, kind: str) -> bool:
        """Does the shop make tasks of ``kind`` (spec/tiers.md v1.1: switched off per shop)?"""
        return kind == "lingered" or bool(getattr(self, f"on_{kind}", 0))

    def kind_priority(self, kind: str) -> float:
        return float(getattr(self, f"prio_{kind}", 0.0))

    def to_mapping(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: dict[str, Any], base: RuleSettings | None = None) -> RuleSettings:
        """Validate ``values`` (a partial change over ``base``); raise BadSettings listing every problem."""
        merged = (base or cls()).to_mapping()
        problems: list[str] = []
        for k, raw in values.items():
            rule = _BY_NAME.get(k)
            if rule is None:
                problems.append(f"unknown setting {k!r}")
                continue
            try:
                if isinstance(raw, bool):
                    raise ValueError
                v = float(raw.decode() if isinstance(raw, bytes) else raw)
            except (TypeError, ValueError):
                problems.append(f"{k}: {raw!r} is not a number")
                continue
            if v != v or v in (float("inf"), float("-inf")):
                problems.append(f"{k}: {raw!r} is not a number")
                continue
            if rule.integer and v != int(v):
                problems.append(f"{k}: must be a whole number of {rule.unit}, not {raw!r}")
                continue
            if not rule.lo <= v <= rule.hi:
                problems.append(f"{k}: {v:g} is out of range ({rule.lo:g} to {rule.hi:g} {rule.unit})")
                continue
            merged[k] = v
        if not problems and merged["decent_hour_start"] >= merged["decent_hour_end"]:
            problems.append("decent_hour_start must be before decent_hour_end")
        if problems:
            raise BadSettings(problems)
        return cls(**merged)
