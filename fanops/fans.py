"""Every known viewer of a shop as one polars frame: the fans list, its filters and its exports.

One frame builder, ``fans_frame``, for every reader: the fans screen (which caches it, see
``screens.reads.fans``), ``python -m scoring fans`` (spec/cli.md v1.1) and the bench.  It reads
the viewers hash in chunks (HSCAN) and decodes only the fields a list needs.

The channels a fan can be reached on are one table, ``CHANNELS``: channel -> a function of the
viewer's reach (``fanops.read.viewer_reach``'s form: their addresses and channel consents, what a
customer history import said included).  ``dm`` is the platform's direct message, reachable
unless the viewer's latest consent says no; email, WhatsApp and SMS where the viewer agreed to
them and an address is known (spec/events.md v1.1, ``fanops.read.can_send``); every column,
filter and export follows from it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import msgspec
import polars as pl
import redis

from fanops import keys
from fanops.imported import Imported, profile_of, reach_of, unpack_imported
from fanops.read import can_send
from fanops.schema import CHANNELS as CHANNEL_NAMES
from fanops.state import TIERS, Consent, Mark

SCAN_COUNT = 20_000  # viewers per HSCAN call


class _Fan(msgspec.Struct, array_like=True):
    """The leading fields of a packed ``fanops.state.ViewerState`` a list needs (``Raw``: not decoded)."""

    first_seen: int
    last_active: int
    rooms: msgspec.Raw
    orders: list[str] = []
    spend: dict[str, float] = {}
    consents: list[Consent] = []
    name: str | None = None
    country: str | None = None
    lang: str | None = None
    tz: str | None = None
    profile_ts: int = -1
    tier: str = ""
    seq: int = 0
    past: msgspec.Raw = msgspec.Raw(b"\x90")
    past_last: int = -1
    past_nos: msgspec.Raw = msgspec.Raw(b"\x90")
    rel: int = 0
    due_day: int = -1
    reach: list[Mark] = []


_dec = msgspec.msgpack.Decoder(_Fan)
_TIER_NAME = {"n": "new_fan", "f": "first_buyer", "a": "active", "d": "dormant"}


def dm_consent(consents: list[Consent]) -> bool | None:
    """The DM consent of the latest consent event (kept oldest first), None if none arrived."""
    return consents[-1].dm if consents else None


def _can(channel: str) -> Callable[[dict[str, Any]], bool]:
    return lambda reach: can_send(reach, channel)


# channel -> can the fan be reached on it (from their reach); one place to add a channel
CHANNELS: dict[str, Callable[[dict[str, Any]], bool]] = {c: _can(c) for c in CHANNEL_NAMES}


def _reach(f: _Fan, imported: Imported | None) -> dict[str, Any]:
    """The viewer's reach from the decoded state and their customer-history record."""
    if not f.reach and imported is None:  # most viewers: no address and no channel consent
        return {"email": None, "phone": None, "consent": {"dm": dm_consent(f.consents)}}
    return reach_of(f, imported)


def channels_of(packed: bytes | None, seed: bytes | None = None) -> list[str]:
    """The channels a viewer (their packed state, None: unknown viewer; ``seed``: their
    ``keys.imported`` record) can be reached on."""
    if not packed:
        return []
    reach = _reach(_dec.decode(packed), unpack_imported(seed) if seed else None)
    return [c for c, fn in CHANNELS.items() if fn(reach)]


def write_export(df: pl.DataFrame, fmt: str, out: io.TextIOBase | Any) -> int:
    """Write the export of ``df`` as ``csv`` or ``jsonl`` to a text stream; returns the rows."""
    if fmt == "csv":
        out.write(guard_formulas(export_frame(df)).write_csv())
    elif fmt == "jsonl":
        for line in jsonl_lines(df):
            out.write(line + "\n")
    else:
        raise ValueError(f"unknown export format {fmt!r} (csv or jsonl)")
    return df.height


# the columns of ``python -m scoring fans`` (spec/cli.md v1.1), in order
EXPORT_COLUMNS: tuple[str, ...] = ("viewer_id", "name", "tier", "country", "lang", "tz", "first_seen",
                                   "last_active", "orders", "spend", "dm_consent", "channels")
SORTABLE: tuple[str, ...] = ("last_active", "first_seen", "spend_total", "orders", "name", "viewer_id", "tier")


def _spend_text(spend: dict[str, float]) -> str:
    return "; ".join(f"{amount:.2f} {cur}" for cur, amount in sorted(spend.items()))


def spend_dict(text: str) -> dict[str, float]:
    """``_spend_text`` back: "12.50 USD; 3.00 EUR" -> {"USD": 12.5, "EUR": 3.0}."""
    out = {}
    for part in filter(None, text.split("; ")):
        amount, cur = part.rsplit(" ", 1)
        out[cur] = float(amount)
    return out


def _scan(r: redis.Redis, shop: str) -> Iterator[dict[bytes, bytes]]:
    cursor = 0
    while True:
        cursor, chunk = cast("tuple[int, dict[bytes, bytes]]",
                             r.hscan(keys.viewers(shop), cursor, count=SCAN_COUNT))
        yield chunk
        if cursor == 0:
            return


def _raw_frame(items: Iterable[tuple[bytes | str, bytes]], seeds: dict[bytes, bytes] | None = None) -> pl.DataFrame:
    cols: dict[str, list[Any]] = {c: [] for c in ("viewer_id", "name", "tier", "country", "lang", "tz",
                                                  "first_seen", "last_active", "orders", "spend",
                                                  "spend_total", "dm_consent")}
    chans: dict[str, list[bool]] = {c: [] for c in CHANNELS}
    vid_, name, tier, country, lang, tz = (cols[c].append for c in ("viewer_id", "name", "tier", "country",
                                                                    "lang", "tz"))
    first, last, orders, spend, total, dm = (cols[c].append for c in ("first_seen", "last_active", "orders",
                                                                      "spend", "spend_total", "dm_consent"))
    checks = [(chans[c].append, fn) for c, fn in CHANNELS.items()]
    for vid, b in items:
        f = _dec.decode(b)
        key = vid if isinstance(vid, bytes) else vid.encode()
        vid_(vid.decode() if isinstance(vid, bytes) else vid)
        seed = seeds.get(key) if seeds else None
        imp = unpack_imported(seed) if seed else None
        p_name, p_country, p_lang, p_tz = profile_of(f, imp)
        name(p_name)
        tier(_TIER_NAME.get(f.tier, f.tier))
        country(p_country)
        lang(p_lang)
        tz(p_tz)
        first(f.first_seen)
        last(f.last_active + f.first_seen - 1 if f.rel == 1 else f.last_active)
        orders(len(f.orders))
        spend(_spend_text(f.spend) if f.spend else "")
        total(sum(f.spend.values()) if f.spend else 0.0)
        dm(dm_consent(f.consents))
        reach = _reach(f, imp)
        for append, fn in checks:
            append(fn(reach))
    return pl.DataFrame({**cols, **{f"ch_{c}": v for c, v in chans.items()}}, schema_overrides={
        "first_seen": pl.Int64, "last_active": pl.Int64, "orders": pl.Int32, "spend_total": pl.Float64,
        "dm_consent": pl.Boolean, "name": pl.String, "country": pl.String, "lang": pl.String, "tz": pl.String,
        "tier": pl.String, **{f"ch_{c}": pl.Boolean for c in chans}})  # typed when the shop has no viewer


def _finish(df: pl.DataFrame) -> pl.DataFrame:
    """Tier, country and language as enums (a filter on them compares integers), ``search``, and
    the rows in the list's default order: last seen first (ties: viewer id), marked sorted so that
    a page in that order is a slice."""
    enums = {c: pl.Enum(df[c].drop_nulls().unique().sort()) for c in ("country", "lang")}
    df = df.with_columns(pl.col("tier").cast(pl.Enum(TIERS)), *(pl.col(c).cast(e) for c, e in enums.items()))
    # ``search`` is made after the sort: a sorted string column points into its old buffers in the old
    # order, and a scan of it reads memory at random (5x slower)
    return df.sort(["last_active", "viewer_id"], descending=[True, False]).with_columns(
        pl.col("last_active").set_sorted(descending=True),
        search=pl.concat_str([pl.col("viewer_id"), pl.col("name").fill_null("")], separator="\n").str.to_lowercase())


def frame_from(items: Iterable[tuple[bytes | str, bytes]]) -> pl.DataFrame:
    """The fans frame of (viewer id, packed state) pairs: one row per viewer, the export's columns
    plus ``spend_total`` (all currencies added up, for filtering and sorting), one boolean column
    per channel ``ch_<name>`` and ``search`` (id and name in lower case, for the text filter);
    sorted by last seen, most recent first."""
    return _finish(_raw_frame(items))


def _seeds(r: redis.Redis, shop: str, vids: list[bytes]) -> dict[bytes, bytes]:
    """The customer-history records (``keys.imported``) of these viewers that have one."""
    got = cast("list[bytes | None]", r.hmget(keys.imported(shop), vids))
    return {v: b for v, b in zip(vids, got, strict=True) if b}


def fans_frame(r: redis.Redis, shop: str) -> pl.DataFrame:
    """Every known viewer of ``shop`` (see ``frame_from``), read in chunks (with their
    customer-history records, for the channels, when the shop imported any)."""
    imported = bool(r.exists(keys.imported(shop)))
    parts = [_raw_frame(chunk.items(), _seeds(r, shop, list(chunk)) if imported else None)
             for chunk in _scan(r, shop) if chunk]
    return _finish(pl.concat(parts, rechunk=True) if parts else _raw_frame([]))


@dataclass(frozen=True)
class FanFilter:
    """What the fans list is filtered by; empty fields filter nothing."""

    tiers: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    lang: str = ""  # a language tag prefix: "es" matches "es-MX"
    channels: tuple[str, ...] = ()  # reachable on every one of these
    spend_min: float | None = None
    spend_max: float | None = None
    seen_since: int | None = None  # last_active at or after (ms)
    seen_before: int | None = None  # last_active before (ms)
    text: str = ""  # a part of the viewer id or name

    def expr(self, langs: list[str] | None = None) -> pl.Expr:
        """The filter as one expression; ``langs``: the language values the prefix matches (else
        compared row by row)."""
        conds: list[pl.Expr] = []
        if self.tiers:
            conds.append(pl.col("tier").is_in(list(self.tiers)))
        if self.countries:
            conds.append(pl.col("country").cast(pl.String).is_in(list(self.countries)) if langs is None
                         else pl.col("country").is_in(list(self.countries)))
        if self.lang:
            conds.append(pl.col("lang").cast(pl.String).str.to_lowercase().str.starts_with(self.lang.lower())
                         if langs is None else pl.col("lang").is_in(langs))
        for c in self.channels:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r} (known: {', '.join(CHANNELS)})")
            conds.append(pl.col(f"ch_{c}"))
        if self.spend_min is not None:
            conds.append(pl.col("spend_total") >= self.spend_min)
        if self.spend_max is not None:
            conds.append(pl.col("spend_total") <= self.spend_max)
        if self.seen_since is not None:
            conds.append(pl.col("last_active") >= self.seen_since)
        if self.seen_before is not None:
            conds.append(pl.col("last_active") < self.seen_before)
        if self.text:
            conds.append(pl.col("search").str.contains(self.text.lower().replace("\n", " "), literal=True))
        return pl.all_horizontal(conds) if conds else pl.lit(True)


def filtered(df: pl.DataFrame, flt: FanFilter) -> pl.DataFrame:
    """The rows of a fans frame that ``flt`` keeps, in the frame's order.  On enum columns
    (``fans_frame``) the language prefix and the countries are matched against the column's few
    values once, not row by row."""
    lang_t, country_t = df.schema.get("lang"), df.schema.get("country")
    if not isinstance(lang_t, pl.Enum) or not isinstance(country_t, pl.Enum):
        return df.filter(flt.expr())
    known = set(country_t.categories.to_list())
    countries = tuple(c for c in flt.countries if c in known)
    if flt.countries and not countries:
        return df.clear()
    want = flt.lang.lower()
    langs = [x for x in lang_t.categories.to_list() if x.lower().startswith(want)]
    if flt.lang and not langs:
        return df.clear()
    return df.filter(replace(flt, countries=countries).expr(langs))


def values(df: pl.DataFrame, col: str) -> list[str]:
    """The distinct values of a text column, sorted (an enum column's: its categories, no scan)."""
    dt = df.schema[col]
    if isinstance(dt, pl.Enum):
        return dt.categories.to_list()
    return sorted(df[col].drop_nulls().unique().to_list())


def page(df: pl.DataFrame, sort: str = "last_active", descending: bool = True, offset: int = 0,
         limit: int = 50) -> pl.DataFrame:
    """One page of ``df`` sorted by ``sort`` (ties: viewer id).  A frame marked sorted by last
    seen (``fans_frame``) gives that order's pages as slices; any other order costs one partial
    sort (top-k) of the rows up to the page."""
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort fans by {sort!r} (one of: {', '.join(SORTABLE)})")
    if sort == "last_active" and descending and df["last_active"].flags["SORTED_DESC"]:
        return df.slice(offset, limit)
    by = [sort] if sort == "viewer_id" else [sort, "viewer_id"]
    k = offset + limit
    top = df.top_k(k, by=by, reverse=[not descending] + [True] * (len(by) - 1)) if k < df.height else df
    return top.sort(by, descending=[descending] + [False] * (len(by) - 1), nulls_last=True).slice(offset, limit)


# --- exports ------------------------------------------------------------------
_FORMULA = r"^[=+\-@\t\r]"


def export_frame(df: pl.DataFrame) -> pl.DataFrame:
    """The export's columns (spec/cli.md v1.1): ``channels`` joined with ";"."""
    chan = [pl.when(pl.col(f"ch_{c}")).then(pl.lit(c)).otherwise(pl.lit(None)) for c in CHANNELS]
    return df.with_columns(
        channels=pl.concat_list(chan).list.drop_nulls().list.join(";") if chan else pl.lit(""),
        tier=pl.col("tier").cast(pl.String), country=pl.col("country").cast(pl.String),
        lang=pl.col("lang").cast(pl.String),
    ).select(EXPORT_COLUMNS)


def guard_formulas(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells a spreadsheet would run as a formula (starting with = + - @ tab or CR) get a
    leading apostrophe, so that the CSV is read as text."""
    return df.with_columns(pl.when(pl.col(c).str.contains(_FORMULA)).then(pl.lit("'") + pl.col(c))
                           .otherwise(pl.col(c)).alias(c)
                           for c, t in df.schema.items() if t == pl.String)


def to_csv(df: pl.DataFrame) -> bytes:
    """The export as CSV (UTF-8, header row), guarded against formula injection."""
    return guard_formulas(export_frame(df)).write_csv().encode()


def to_parquet(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    export_frame(df).write_parquet(buf)
    return buf.getvalue()


def jsonl_lines(df: pl.DataFrame) -> Iterator[str]:
    """The export as JSON lines: ``spend`` as {currency: amount}, ``channels`` as a list."""
    for row in export_frame(df).iter_rows(named=True):
        row["spend"] = spend_dict(row["spend"] or "")
        row["channels"] = row["channels"].split(";") if row["channels"] else []
        yield json.dumps(row, ensure_ascii=False)
