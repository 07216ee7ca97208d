"""Post-show analysis: pure polars over archived shows (``review.archive_files`` frames).

Every function takes ``Frames`` (one or more shows, lazily concatenated; each row
carries its ``room``) and answers per show, so the same code gives one show's
review and the trend across thirty.  ``analyse`` builds every query and runs them
together (``pl.collect_all``: one pass over the files, in parallel).  No Redis, no
Streamlit, no clock: the shop clock at close comes from each show's facts.

Definitions (each a choice, written down here once):

- present at minute m: as the live board would have said at the end of that minute
  (at the close clock for the last one): the viewer's latest event so far is not a
  leave, and is at most ``present_minutes`` old.  Peak and average are over the
  minutes from the show's first to its last event.
- funnel: viewers who joined; of them, those who also viewed a product; of those,
  who also added to cart; of those, who also ordered (in the room, in any order).
- conversion: buyers / viewers, where a buyer has at least one order in the room.
- follow-up attribution: for each task marked ``sent``, the viewer's orders in any
  of the given shows with ``sent_clock < ts <= sent_clock + 7 days`` (the DM went out
  at shop clock ``sent_clock``); each (viewer, order id) once, its earliest ts.
- top fans score: ``10 * orders`` + the follow-up engagement weights of spec/tiers.md
  (``3*comments + 5*cart_adds + 2*product_views + shares + 2*follows +
  min(likes, 100)/20``) + gift value in USD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from fanops import i18n
from fanops.state import TASK_STATES, TIERS

# the funnel's steps: (name, event type); the names are English (``fanops.i18n`` ``review.c.step.<type>``)
FUNNEL = tuple((i18n.t(f"review.c.step.{typ}"), typ) for typ in ("join", "product_view", "cart_add", "order"))
MINUTE = 60_000
DAY = 86_400_000
ATTRIBUTION_MS = 7 * DAY
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Frames:
    """Archived shows as lazy frames (``room`` in every row) and each show's facts."""

    events: pl.LazyFrame
    viewers: pl.LazyFrame
    followups: pl.LazyFrame
    transitions: pl.LazyFrame
    facts: dict[str, dict[str, Any]]  # room -> facts.json

    @property
    def rooms(self) -> list[str]:
        """The shows, oldest first."""
        return sorted(self.facts, key=lambda r: (self.facts[r]["first_ts"], r))


def load(archives: list[Any]) -> Frames:
    """Frames over ``review.archive_files.RoomArchive`` objects (anything with the same four lazy readers)."""
    if not archives:
        raise ValueError("no show to analyse")
    return Frames(
        events=pl.concat([a.events() for a in archives], how="vertical"),
        viewers=pl.concat([a.viewers() for a in archives], how="vertical"),
        followups=pl.concat([a.followups() for a in archives], how="vertical"),
        transitions=pl.concat([a.transitions() for a in archives], how="vertical"),
        facts={a.room: a.facts for a in archives},
    )


def _params(f: Frames) -> pl.LazyFrame:
    rooms = f.rooms
    return pl.LazyFrame({
        "room": rooms,
        "clock": [int(f.facts[r]["clock"]) for r in rooms],
        "first_ts": [int(f.facts[r]["first_ts"]) for r in rooms],
        "last_ts": [int(f.facts[r]["last_ts"]) for r in rooms],
        "present_ms": [int(float(f.facts[r]["rules"]["present_minutes"]) * MINUTE) for r in rooms],
    }, schema={"room": pl.String, "clock": pl.Int64, "first_ts": pl.Int64, "last_ts": pl.Int64,
               "present_ms": pl.Int64})


def _lang() -> pl.Expr:
    return pl.col("lang").str.split("-").list.first().str.to_lowercase().fill_null(UNKNOWN)


# --- per-show queries (lazy) ---------------------------------------------------------------------
def presence_per_minute(f: Frames) -> pl.LazyFrame:
    """room, minute (UTC datetime), present: viewers present at the end of each minute (see module doc)."""
    p = _params(f)
    ev = (f.events.select("room", "viewer", "ts", other=pl.col("type") != "leave")
          .group_by("room", "viewer", "ts").agg(pl.col("other").any())
          .sort("room", "viewer", "ts")
          .with_columns(nxt=pl.col("ts").shift(-1).over("room", "viewer")))
    iv = (ev.filter("other").join(p, on="room")
          .with_columns(end=pl.min_horizontal(pl.col("nxt").fill_null(pl.col("ts") + pl.col("present_ms") + 1),
                                              pl.col("ts") + pl.col("present_ms") + 1))
          .select("room",
                  start=pl.col("ts") // MINUTE,
                  stop=pl.when(pl.col("end") > pl.col("clock")).then(pl.col("clock") // MINUTE + 1)
                  .otherwise(pl.col("end") // MINUTE)))
    delta = (pl.concat([iv.select("room", m="start", d=pl.lit(1, pl.Int64)),
                        iv.select("room", m="stop", d=pl.lit(-1, pl.Int64))])
             .group_by("room", "m").agg(pl.col("d").sum()))
    span = (p.select("room", lo=pl.col("first_ts") // MINUTE,
                     hi=pl.min_horizontal(pl.col("clock"), pl.col("last_ts") + pl.col("present_ms")) // MINUTE + 1)
            .with_columns(m=pl.int_ranges("lo", "hi")).explode("m").select("room", "m"))
    return (span.join(delta, on=["room", "m"], how="left").sort("room", "m")
            .with_columns(present=pl.col("d").fill_null(0).cum_sum().over("room"))
            .select("room", minute=(pl.col("m") * MINUTE).cast(pl.Datetime("ms", "UTC")), present="present"))


def presence_stats(f: Frames, per_minute: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """room, peak_present, avg_present (over the minutes from the first to the last event)."""
    pm = per_minute if per_minute is not None else presence_per_minute(f)
    p = _params(f)
    return (pm.join(p, on="room")
            .filter(pl.col("minute").dt.epoch("ms") // MINUTE <= pl.col("last_ts") // MINUTE)
            .group_by("room").agg(peak_present=pl.col("present").max(), avg_present=pl.col("present").mean()))


def viewer_stats(f: Frames) -> pl.LazyFrame:
    """Per show, from the viewers: the room facts of spec/cli.md, dwell, tiers at entry and close."""
    v = f.viewers
    return v.group_by("room").agg(
        unique_viewers=pl.len(),
        new_viewers=pl.col("new_viewer").sum(),
        reactivated=pl.col("reactivated").sum(),
        present_at_close=pl.col("present").sum(),
        buyers=(pl.col("orders") > 0).sum(),
        orders=pl.col("orders").sum(),
        dwell_median_s=pl.col("dwell_ms").median() / 1000,
        dwell_p90_s=pl.col("dwell_ms").quantile(0.9, interpolation="linear") / 1000,
        dwell_mean_s=pl.col("dwell_ms").mean() / 1000,
        **{f"tier_close_{t}": (pl.col("tier_close") == t).sum() for t in TIERS},
        **{f"tier_entry_{t}": (pl.col("tier_entry") == t).sum() for t in TIERS},
    ).with_columns(conversion=pl.col("buyers") / pl.col("unique_viewers"))


def dwell_histogram(f: Frames, cap_min: int = 120) -> pl.LazyFrame:
    """room, minutes (whole minutes of dwell, the last bin holds ``cap_min`` and more), viewers."""
    return (f.viewers.group_by("room", minutes=(pl.col("dwell_ms") // MINUTE).clip(upper_bound=cap_min))
            .agg(viewers=pl.len()).sort("room", "minutes"))


def event_counts(f: Frames) -> pl.LazyFrame:
    t = pl.col("type")
    return f.events.group_by("room").agg(
        events=pl.len(),
        joins=(t == "join").sum(),
        comments=(t == "comment").sum(),
        likes=pl.col("count").filter(t == "like").sum(),
        shares=(t == "share").sum(),
        follows=(t == "follow").sum(),
        gifts=(t == "gift").sum(),
        gift_value=pl.col("value").filter(t == "gift").sum(),
        product_views=(t == "product_view").sum(),
        cart_adds=(t == "cart_add").sum(),
    )


def orders(events: pl.LazyFrame) -> pl.LazyFrame:
    """Each (viewer, order id) once, at its earliest ts: room, viewer, order_id, ts, amount, currency."""
    return (events.filter(pl.col("type") == "order")
            .select("room", "viewer", "order_id", "ts", "amount", "currency")
            .sort("ts", "room").unique(["viewer", "order_id"], keep="first"))


def gmv(f: Frames) -> pl.LazyFrame:
    """room, currency, orders, amount."""
    return (orders(f.events).group_by("room", "currency")
            .agg(orders=pl.len(), amount=pl.col("amount").sum().round(2))
            .sort("room", "amount", descending=[False, True]))


def conversion_by(f: Frames, by: str) -> pl.LazyFrame:
    """room, <by>, viewers, buyers, orders, conversion; ``by`` is tier_entry, tier_close, country or lang
    (the primary language subtag, lower case)."""
    key = _lang().alias("lang") if by == "lang" else pl.col(by).cast(pl.String).fill_null(UNKNOWN)
    return (f.viewers.with_columns(key).group_by("room", by)
            .agg(viewers=pl.len(), buyers=(pl.col("orders") > 0).sum(), orders=pl.col("orders").sum())
            .with_columns(conversion=pl.col("buyers") / pl.col("viewers"))
            .sort(["room", "viewers", by], descending=[False, True, False]))


def funnel(f: Frames) -> pl.LazyFrame:
    """room, step, n (step index), viewers, of_previous, of_first (see the module doc)."""
    flags = (f.events.filter(pl.col("type").is_in([t for _, t in FUNNEL]))
             .group_by("room", "viewer").agg(**{t: (pl.col("type") == t).any() for _, t in FUNNEL}))
    cum = [pl.all_horizontal([pl.col(t) for _, t in FUNNEL[:i + 1]]) for i in range(len(FUNNEL))]
    wide = flags.group_by("room").agg(**{f"s{i}": c.sum() for i, c in enumerate(cum)})
    rooms = f.facts
    long = pl.concat([wide.select("room", step=pl.lit(name), n=pl.lit(i, pl.Int64),
                                  viewers=pl.col(f"s{i}").cast(pl.Int64)) for i, (name, _) in enumerate(FUNNEL)])
    long = pl.LazyFrame({"room": list(rooms)}, schema={"room": pl.String}).join(
        pl.LazyFrame({"step": [s for s, _ in FUNNEL], "n": list(range(len(FUNNEL)))},
                     schema={"step": pl.String, "n": pl.Int64}), how="cross").join(
        long, on=["room", "step", "n"], how="left").with_columns(pl.col("viewers").fill_null(0))
    return (long.sort("room", "n").with_columns(
        of_previous=pl.col("viewers") / pl.col("viewers").shift(1).over("room"),
        of_first=pl.col("viewers") / pl.col("viewers").first().over("room")))


def sankey(f: Frames) -> pl.LazyFrame:
    """room, tier_entry, tier_close, viewers."""
    return (f.viewers.group_by("room", "tier_entry", "tier_close").agg(viewers=pl.len())
            .sort("room", "tier_entry", "tier_close"))


def followup_outcomes(f: Frames) -> pl.LazyFrame:
    """room, made, one column per state, and ``converted_before_contact`` (= converted)."""
    return (f.followups.group_by("room").agg(made=pl.len(), **{s: (pl.col("state") == s).sum()
                                                                for s in TASK_STATES})
            .with_columns(converted_before_contact=pl.col("converted")))


def skip_reasons(f: Frames) -> pl.LazyFrame:
    return (f.followups.filter(pl.col("state") == "skipped")
            .group_by("room", reason=pl.col("skip_reason").fill_null("")).agg(tasks=pl.len())
            .sort(["room", "tasks"], descending=[False, True]))


def attributed_orders(f: Frames, all_orders: pl.LazyFrame | None = None,
                      window_ms: int = ATTRIBUTION_MS) -> pl.LazyFrame:
    """One row per order attributed to a sent follow-up: room (of the task), viewer, sent_clock,
    order_room, order_id, ts, amount, currency.  ``all_orders`` (``orders(...)`` of every show to
    look in) defaults to the orders of ``f``'s own shows."""
    o = all_orders if all_orders is not None else orders(f.events)
    sent = (f.followups.filter((pl.col("state") == "sent") & pl.col("sent_clock").is_not_null())
            .select("room", "viewer", "sent_clock"))
    return (sent.join(o.rename({"room": "order_room"}), on="viewer")
            .filter((pl.col("ts") > pl.col("sent_clock")) & (pl.col("ts") <= pl.col("sent_clock") + window_ms))
            .sort("room", "viewer", "ts"))


def attribution(f: Frames, attributed: pl.LazyFrame) -> pl.LazyFrame:
    """room, dm_sent, attributed_orders, attributed_buyers."""
    sent = f.followups.group_by("room").agg(dm_sent=(pl.col("state") == "sent").sum())
    got = attributed.group_by("room").agg(attributed_orders=pl.struct("viewer", "order_id").n_unique(),
                                           attributed_buyers=pl.col("viewer").n_unique())
    return (sent.join(got, on="room", how="left")
            .with_columns(pl.col("attributed_orders", "attributed_buyers").fill_null(0).cast(pl.Int64)))


def top_products(f: Frames, n: int = 10) -> pl.LazyFrame:
    """room, sku, views, viewers, cart_adds, qty, carters, ordered_after_cart (carters who ordered in
    the room after their first cart add of the sku: orders carry no sku)."""
    ev = f.events
    first_cart = (ev.filter(pl.col("type") == "cart_add").group_by("room", "sku", "viewer")
                  .agg(cart_ts=pl.col("ts").min(), qty=pl.col("qty").sum(), adds=pl.len()))
    last_order = (ev.filter(pl.col("type") == "order").group_by("room", "viewer").agg(order_ts=pl.col("ts").max()))
    carts = (first_cart.join(last_order, on=["room", "viewer"], how="left")
             .group_by("room", "sku").agg(cart_adds=pl.col("adds").sum(), qty=pl.col("qty").sum(), carters=pl.len(),
                                          ordered_after_cart=(pl.col("order_ts") > pl.col("cart_ts")).sum()))
    views = (ev.filter(pl.col("type") == "product_view").group_by("room", "sku")
             .agg(views=pl.len(), viewers=pl.col("viewer").n_unique()))
    return (views.join(carts, on=["room", "sku"], how="full", coalesce=True)
            .with_columns(pl.col("views", "viewers", "cart_adds", "qty", "carters", "ordered_after_cart").fill_null(0))
            .sort(["room", "cart_adds", "views", "sku"], descending=[False, True, True, False])
            .group_by("room", maintain_order=True).head(n))


def fan_score() -> pl.Expr:
    return (10 * pl.col("orders") + 3 * pl.col("comments") + 5 * pl.col("cart_adds") + 2 * pl.col("product_views")
            + pl.col("shares") + 2 * pl.col("follows") + pl.col("likes").clip(upper_bound=100) / 20
            + pl.col("gift_value")).round(2)


def top_fans(f: Frames, n: int = 20) -> pl.LazyFrame:
    cols = ["room", "viewer", "name", "country", "lang", "tier_entry", "tier_close", "orders", "spend", "comments",
            "likes", "shares", "follows", "product_views", "cart_adds", "gift_value", "dwell_ms"]
    return (f.viewers.select(cols).with_columns(score=fan_score())
            .sort(["room", "score", "viewer"], descending=[False, True, False])
            .group_by("room", maintain_order=True).head(n))


def transition_counts(f: Frames) -> pl.LazyFrame:
    return (f.transitions.group_by("room", "from", "to").agg(viewers=pl.col("viewer").n_unique(), moves=pl.len())
            .sort(["room", "moves"], descending=[False, True]))


# --- all at once ----------------------------------------------------------------------------
@dataclass
class Review:
    """Every table of the review, one or more shows, computed together."""

    rooms: list[str]
    headlines: pl.DataFrame  # one row per show, oldest first: the trend table
    presence: pl.DataFrame
    dwell: pl.DataFrame
    gmv: pl.DataFrame
    conversion_tier: pl.DataFrame
    conversion_country: pl.DataFrame
    conversion_lang: pl.DataFrame
    funnel: pl.DataFrame
    sankey: pl.DataFrame
    followups: pl.DataFrame
    skip_reasons: pl.DataFrame
    attributed: pl.DataFrame
    top_products: pl.DataFrame
    top_fans: pl.DataFrame
    transitions: pl.DataFrame
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def table(self, name: str, room: str | None = None) -> pl.DataFrame:
        df: pl.DataFrame = getattr(self, name)
        return df.filter(pl.col("room") == room) if room is not None and "room" in df.columns else df


def analyse(f: Frames, all_orders: pl.LazyFrame | None = None, top_n: int = 20) -> Review:
    """Every table for the shows in ``f``; ``all_orders`` (see ``attributed_orders``) may add later shows."""
    pm = presence_per_minute(f)
    att = attributed_orders(f, all_orders)
    head = (_params(f).select("room", "first_ts", "last_ts", "clock")
            .join(viewer_stats(f), on="room", how="left")
            .join(event_counts(f), on="room", how="left")
            .join(presence_stats(f, pm), on="room", how="left")
            .join(followup_outcomes(f), on="room", how="left")
            .join(attribution(f, att), on="room", how="left")
            .with_columns(duration_min=(pl.col("last_ts") - pl.col("first_ts")) / MINUTE,
                          start=pl.col("first_ts").cast(pl.Datetime("ms", "UTC")))
            .sort("first_ts", "room"))
    queries = {
        "headlines": head, "presence": pm, "dwell": dwell_histogram(f), "gmv": gmv(f),
        "conversion_tier": conversion_by(f, "tier_entry"), "conversion_country": conversion_by(f, "country"),
        "conversion_lang": conversion_by(f, "lang"), "funnel": funnel(f), "sankey": sankey(f),
        "followups": followup_outcomes(f), "skip_reasons": skip_reasons(f), "attributed": att,
        "top_products": top_products(f, top_n), "top_fans": top_fans(f, top_n), "transitions": transition_counts(f),
    }
    out = dict(zip(queries, pl.collect_all(list(queries.values())), strict=True))
    fill = [c for c, t in out["headlines"].schema.items()
            if t.is_integer() and c not in ("first_ts", "last_ts", "clock")]
    out["headlines"] = out["headlines"].with_columns(pl.col(fill).fill_null(0))
    return Review(rooms=f.rooms, facts=f.facts, **out)


def headline(rv: Review, room: str) -> dict[str, Any]:
    """One show's headline numbers, as plain Python values (the keys of ``status``'s room object
    where they overlap: unique_viewers, present, new_viewers, reactivated, buyers, orders, tiers,
    followups)."""
    rows = rv.headlines.filter(pl.col("room") == room).to_dicts()
    if not rows:
        raise KeyError(room)
    h = rows[0]
    h["present"] = h["present_at_close"]
    h["tiers"] = {t: h[f"tier_close_{t}"] for t in TIERS}
    h["tiers_entry"] = {t: h[f"tier_entry_{t}"] for t in TIERS}
    h["followups"] = {s: h[s] for s in TASK_STATES}
    g = rv.gmv.filter(pl.col("room") == room)
    h["gmv"] = dict(zip(g["currency"].to_list(), g["amount"].to_list(), strict=True))
    return h


# the headline's numbers, in the order shown, with their English names (``fanops.i18n``, key
# ``review.m.<metric>``, names them in every language)
HEADLINE_METRICS: tuple[tuple[str, str], ...] = tuple((m, i18n.t(f"review.m.{m}")) for m in (
    "unique_viewers", "peak_present", "avg_present", "new_viewers", "reactivated", "dwell_median_s", "dwell_p90_s",
    "comments", "likes", "shares", "follows", "orders", "buyers", "conversion", "made", "sent", "skipped",
    "converted_before_contact", "attributed_orders"))


def trends(rv: Review) -> pl.DataFrame:
    """The headline numbers per show, oldest first, long: room, start, metric, label, value."""
    h = rv.headlines
    cols = [m for m, _ in HEADLINE_METRICS if m in h.columns]
    labels = pl.DataFrame({"metric": [m for m, _ in HEADLINE_METRICS], "label": [lab for _, lab in HEADLINE_METRICS]})
    return (h.select("room", "start", *[pl.col(c).cast(pl.Float64) for c in cols])
            .unpivot(index=["room", "start"], variable_name="metric", value_name="value")
            .join(labels, on="metric").sort("metric", "start"))


def filter_viewers(viewers: pl.DataFrame, *, tiers_entry: list[str] | None = None,
                   tiers_close: list[str] | None = None, countries: list[str] | None = None,
                   langs: list[str] | None = None, buyers_only: bool = False, min_dwell_min: float = 0.0,
                   search: str = "") -> pl.DataFrame:
    """The review's viewer table, filtered (empty lists mean no filter; ``search`` matches name or id,
    case-insensitive, as plain text)."""
    cond = pl.lit(True)
    if tiers_entry:
        cond &= pl.col("tier_entry").is_in(tiers_entry)
    if tiers_close:
        cond &= pl.col("tier_close").is_in(tiers_close)
    if countries:
        cond &= pl.col("country").fill_null(UNKNOWN).is_in(countries)
    if langs:
        cond &= _lang().is_in(langs)
    if buyers_only:
        cond &= pl.col("orders") > 0
    if min_dwell_min > 0:
        cond &= pl.col("dwell_ms") >= int(min_dwell_min * MINUTE)
    if search.strip():
        q = search.strip().lower()
        cond &= (pl.col("name").fill_null("").str.to_lowercase().str.contains(q, literal=True)
                 | pl.col("viewer").str.to_lowercase().str.contains(q, literal=True))
    return viewers.filter(cond).with_columns(score=fan_score()).sort(["score", "viewer"], descending=[True, False])


def to_csv(df: pl.DataFrame) -> bytes:
    """CSV bytes of any review table.  Text that a spreadsheet would run as a formula (it starts
    with ``= + - @``, a tab or a carriage return: viewer names are anyone's) gets a leading ``'``;
    the Parquet download keeps the text as it is."""
    risky = r"^[=+\-@\t\r]"
    text = [c for c, t in df.schema.items() if t == pl.String]
    safe = df.with_columns(pl.when(pl.col(c).str.contains(risky)).then(pl.lit("'") + pl.col(c))
                           .otherwise(pl.col(c)).alias(c) for c in text)
    return safe.write_csv().encode("utf-8")


def to_parquet(df: pl.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


TIME_COLUMNS = ("ts", "first_ts", "last_ts", "last_leave_ts", "first_order_ts", "first_seen", "made_at", "sent_clock",
                "sent_at", "claimed_at", "skipped_at", "updated_at", "lease_until", "clock")


def readable(df: pl.DataFrame) -> pl.DataFrame:
    """A table for people: epoch-ms columns as UTC datetimes, ``dwell_ms`` as minutes."""
    times = [c for c in TIME_COLUMNS if c in df.columns and df.schema[c].is_integer()]
    out = df.with_columns(pl.col(times).cast(pl.Datetime("ms", "UTC")))
    if "dwell_ms" in out.columns:
        out = out.with_columns(dwell_min=(pl.col("dwell_ms") / MINUTE).round(1)).drop("dwell_ms")
    return out
