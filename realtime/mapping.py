"""Another platform's WebSocket feed, read through a declarative mapping file
(``python -m realtime consume --url URL --mapping FILE``; examples in ``realtime/mappings/``).

A mapping is a TOML file: where a frame's events are, how to tell their type, and for each of our
fields (spec/events.md) the path of the platform's field it comes from, with a conversion::

    [frame]
    events = "items"                 # dotted path to the list (or one object) of events; "" the frame
    when = { path = "metadata.message_type", in = ["notification"] }   # other frames: ignored

    [type]
    path = "snippet.type"            # the platform's type of an event
    ignore = ["tombstone"]           # platform types that are no event of ours (counted, not bad)
    [type.map]                       # platform type -> our type; an unlisted one is a dead letter
    textMessageEvent = "comment"

    [event]                          # every type: our field = a path, or a table
    id = "id"                        # or { hash = ["a.b", "c"] } when the platform gives no id
    room = { const = "my-show" }
    ts = { path = "snippet.publishedAt", as = "iso" }
    "viewer.id" = "authorDetails.channelId"   # path = [a, b]: the first present

    [types.comment]                  # per our type
    text = "snippet.displayMessage"

A path is dotted names, with a number for a list's element (``items.0.id``); one starting with
``$frame.`` is read from the whole frame (its metadata) rather than the event. A ``[types.X]``
table may also set a common field for that type (another platform field for its viewer). Conversions
(``as``): ``ms``, ``s`` (seconds to ms), ``iso`` (ISO 8601 to ms), ``int``, ``float``, ``str``,
``micros`` (millionths to units). A field whose path is missing in an event is left out (the
event is then checked as any event: a required one missing makes it a dead letter with the
reason). Every mapped event goes through the same validation, dedupe and dead letters as a
native frame: a mapping is a translation, never a second way in.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fanops.errors import BadSettings
from fanops.schema import EVENT_TYPES, BadInput, Event, parse_frame

RAW_CUT = 4096
CONVERSIONS = ("ms", "s", "iso", "int", "float", "str", "micros")
COMMON = ("id", "room", "shop", "ts", "viewer.id", "viewer.name", "viewer.country", "viewer.lang", "viewer.tz")
REQUIRED = ("id", "room", "ts", "viewer.id")
BY_TYPE = {"comment": ("text",), "like": ("count",), "gift": ("gift", "count", "value"), "product_view": ("sku",),
           "cart_add": ("sku", "qty"), "order": ("order_id", "amount", "currency"),
           "consent": ("dm", "email", "whatsapp", "sms"), "contact": ("email", "phone")}
MISSING = object()


@dataclass(frozen=True)
class Rule:
    """One of our fields: from a path (converted), a constant, or a hash of paths."""

    path: tuple[str, ...] = ()
    conv: str = ""
    alternatives: tuple[tuple[str, ...], ...] = ()  # further paths, tried in order when ``path`` is missing
    const: Any = MISSING
    hash: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Mapping:
    name: str
    events_path: tuple[str, ...]
    when_path: tuple[str, ...]
    when_in: frozenset[str]
    type_path: tuple[str, ...]
    type_map: dict[str, str]
    ignore: frozenset[str]
    common: dict[str, Rule]
    per_type: dict[str, dict[str, Rule]] = field(default_factory=dict)

    def parse(self, text: str | bytes, now_ms: int, future_skew_ms: int) -> tuple[list[Event | BadInput], int]:
        """A frame -> its events (checked as a native frame's) and how many platform events were
        ignored (``[type] ignore``, or a frame ``[frame] when`` leaves out)."""
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        try:
            frame = json.loads(raw)
        except (ValueError, RecursionError) as e:
            return [BadInput(f"bad JSON: {e}", raw[:RAW_CUT])], 0
        if self.when_path and str(get(frame, self.when_path)) not in self.when_in:
            return [], 1
        got = get(frame, self.events_path) if self.events_path else frame
        items = got if isinstance(got, list) else [] if got is MISSING else [got]
        out: list[Event | BadInput] = []
        ignored = 0
        for item in items:
            ev = self.event(item, frame)
            if ev is None:
                ignored += 1
            elif isinstance(ev, BadInput):
                out.append(ev)
            else:
                out.extend(parse_frame(json.dumps(ev, ensure_ascii=False), now_ms, future_skew_ms))
        return out, ignored

    def event(self, item: Any, frame: Any = None) -> dict[str, Any] | BadInput | None:
        """One platform event (of ``frame``) -> our event's JSON object; None if its type is ignored."""
        raw = json.dumps(item, ensure_ascii=False).encode("utf-8", "surrogatepass")[:RAW_CUT]
        src = {"$frame": frame, **item} if isinstance(item, dict) else item
        kind = get(src, self.type_path)
        if kind is MISSING or not isinstance(kind, str | int):
            return BadInput(f"{self.name}: no platform type at {'.'.join(self.type_path)}", raw)
        if str(kind) in self.ignore:
            return None
        ours = self.type_map.get(str(kind))
        if ours is None:
            return BadInput(f"{self.name}: platform type {str(kind)[:100]!r} is not in the mapping's [type.map]", raw)
        out: dict[str, Any] = {"type": ours}
        try:
            for name, rule in {**self.common, **self.per_type.get(ours, {})}.items():
                value = resolve(src, rule)
                if value is not MISSING:
                    put(out, name, value)
        except (ValueError, TypeError) as e:
            return BadInput(f"{self.name}: {e}", raw)
        return out


def get(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(obj, dict):
            obj = obj.get(part, MISSING)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return MISSING
        if obj is MISSING:
            return MISSING
    return obj


def put(out: dict[str, Any], name: str, value: Any) -> None:
    if name.startswith("viewer."):
        out.setdefault("viewer", {})[name.removeprefix("viewer.")] = value
    else:
        out[name] = value


def convert(value: Any, conv: str, where: str) -> Any:
    """``value`` converted by ``conv``; ValueError naming ``where`` when it cannot be."""
    try:
        if conv in ("ms", "int"):
            return int(value) if not isinstance(value, float) or value.is_integer() else int(round(value))
        if conv == "s":
            return int(round(float(value) * 1000))
        if conv == "iso":  # fractions past microseconds (Twitch sends nanoseconds) cut to six digits
            text = re.sub(r"(\.\d{6})\d+", r"\1", str(value).replace("Z", "+00:00"))
            return int(datetime.fromisoformat(text).timestamp() * 1000)
        if conv == "float":
            return float(value)
        if conv == "micros":
            return int(value) / 1_000_000
        if conv == "str":
            return str(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{where}: {str(value)[:100]!r} is not {conv} ({e})") from e
    return value


def resolve(item: Any, rule: Rule) -> Any:
    if rule.const is not MISSING:
        return rule.const
    if rule.hash:
        parts = [get(item, p) for p in rule.hash]
        if all(p is MISSING for p in parts):
            return MISSING
        blob = json.dumps([None if p is MISSING else p for p in parts], sort_keys=True, ensure_ascii=False)
        return "h:" + hashlib.sha256(blob.encode()).hexdigest()[:32]
    value = get(item, rule.path)
    for alt in rule.alternatives:
        if value is not MISSING and value is not None:
            break
        value = get(item, alt)
    if value is MISSING or value is None:
        return MISSING
    return convert(value, rule.conv, ".".join(rule.path)) if rule.conv else value


# --- reading and checking a mapping file ---------------------------------------------------------
def _path(text: Any, where: str) -> tuple[str, ...]:
    if not isinstance(text, str) or (text and any(not p for p in text.split("."))):
        raise ValueError(f"{where}: {text!r} is not a dotted path (names, or numbers for list elements)")
    return tuple(text.split(".")) if text else ()


def _rule(spec: Any, where: str) -> Rule:
    if isinstance(spec, str):
        return Rule(path=_path(spec, where))
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a path, or a table with path/as, const or hash")
    unknown = set(spec) - {"path", "as", "const", "hash"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}: path, as, const or hash")
    if "const" in spec:
        return Rule(const=spec["const"])
    if "hash" in spec:
        if not isinstance(spec["hash"], list) or not spec["hash"]:
            raise ValueError(f"{where}: hash is a list of paths")
        return Rule(hash=tuple(_path(p, where) for p in spec["hash"]))
    conv = spec.get("as", "")
    if conv and conv not in CONVERSIONS:
        raise ValueError(f"{where}: as = {conv!r}: one of {', '.join(CONVERSIONS)}")
    paths = spec.get("path")
    paths = paths if isinstance(paths, list) and paths else [paths]
    first, *rest = (_path(x, where) for x in paths)
    return Rule(path=first, conv=conv, alternatives=tuple(rest))


def _fields(table: Any, allowed: tuple[str, ...], where: str) -> dict[str, Rule]:
    if not isinstance(table, dict):
        raise ValueError(f"[{where}] must be a table")
    out = {}
    for name, spec in table.items():
        if name not in allowed:
            raise ValueError(f"[{where}] {name}: not a field of ours here (one of {', '.join(allowed)})")
        out[name] = _rule(spec, f"[{where}] {name}")
    return out


def load(path: str | Path) -> Mapping:
    """Read and check a mapping file; BadSettings naming the file, section and key otherwise."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
        return _build(doc, p.name)
    except OSError as e:
        raise BadSettings([f"--mapping {p}: cannot read it ({e.strerror or e})"]) from e
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise BadSettings([f"--mapping {p}: {e}"]) from e


def _build(doc: dict[str, Any], name: str) -> Mapping:
    frame, typ = doc.get("frame", {}), doc.get("type")
    if not isinstance(typ, dict) or "path" not in typ or not isinstance(typ.get("map"), dict):
        raise ValueError("[type] needs path and a [type.map] table (platform type = our type)")
    type_path = _path(typ["path"], "[type] path")
    bad = {k: v for k, v in typ["map"].items() if v not in EVENT_TYPES}
    if bad:
        k, v = next(iter(bad.items()))
        raise ValueError(f"[type.map] {k} = {v!r}: not one of our types ({', '.join(EVENT_TYPES)})")
    common = _fields(doc.get("event", {}), COMMON, "event")
    missing = [f for f in REQUIRED if f not in common]
    if missing:
        raise ValueError(f"[event] has no {', '.join(missing)}: every event needs them (spec/events.md)")
    per_type = {}
    for ours, table in (doc.get("types") or {}).items():
        if ours not in EVENT_TYPES:
            raise ValueError(f"[types.{ours}]: not one of our types ({', '.join(EVENT_TYPES)})")
        per_type[ours] = _fields(table, (*COMMON, *BY_TYPE.get(ours, ())), f"types.{ours}")
    when = frame.get("when") or {}
    if when and (not isinstance(when.get("in"), list) or "path" not in when):
        raise ValueError("[frame] when: a table with path and in (a list of values)")
    return Mapping(name=name, events_path=_path(frame.get("events", ""), "[frame] events"),
                   when_path=_path(when.get("path", ""), "[frame] when.path"),
                   when_in=frozenset(str(v) for v in when.get("in", [])),
                   type_path=type_path, type_map=dict(typ["map"]),
                   ignore=frozenset(str(v) for v in typ.get("ignore", [])), common=common, per_type=per_type)
