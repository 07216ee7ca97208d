"""What the seller's customer list says of a viewer (``keys.imported``), and a viewer's reach: the
addresses and channel consents of their own events and of that list, merged by one rule."""

from __future__ import annotations

from typing import Protocol

import msgspec

from fanops.state import REACH_CHANNELS, Consent, Mark

_enc = msgspec.msgpack.Encoder()


class Imported(msgspec.Struct, array_like=True, omit_defaults=True):
    """What a customer history row says of a viewer beyond its orders (spec/tiers.md v1.1: kept
    "for when they first appear"), in ``keys.imported``. Its addresses and consents count as an
    event at ``ts`` (the row's last order, -1 with none) with id ``hist:<viewer>``: a later event
    of the viewer's own wins (``reach_of``)."""

    ts: int
    id: str
    name: str | None = None
    country: str | None = None
    lang: str | None = None
    tz: str | None = None
    reach: list[Mark] = []


_dec_imported = msgspec.msgpack.Decoder(Imported)


def pack_imported(x: Imported) -> bytes:
    return _enc.encode(x)


def unpack_imported(b: bytes) -> Imported:
    return _dec_imported.decode(b)


def latest_marks(*lists: list[Mark]) -> list[Mark]:
    """One mark per ``what``, the one of the largest ``(ts, id)`` (the rule of consent events: the
    same result whatever order the lists come in), sorted by ``what``."""
    have: dict[str, Mark] = {}
    for m in (m for marks in lists for m in marks):
        old = have.get(m.what)
        if old is None or (m.ts, m.id) > (old.ts, old.id):
            have[m.what] = m
    return sorted(have.values(), key=lambda m: m.what)


def merge_imported(current: bytes | None, new: Imported) -> Imported:
    """``new`` (a customer-history row, imported again or for the first time) over the viewer's
    ``keys.imported`` record: its profile and time, with the marks of both (``latest_marks``; the
    row's on a tie), so that a consent a webhook order added since is not lost."""
    if current:
        new.reach = latest_marks(new.reach, unpack_imported(current).reach)
    return new


class Reachable(Protocol):
    """What ``reach_of`` reads of a viewer: a ``fanops.state.ViewerState``, or the few fields of
    one that the fans list decodes (``fanops.fans``)."""

    @property
    def consents(self) -> list[Consent]: ...

    @property
    def reach(self) -> list[Mark]: ...


def reach_of(v: Reachable, imported: Imported | None = None) -> dict[str, object]:
    """The viewer's addresses and consents: ``{"email", "phone", "consent": {channel: flag}}``,
    None where unknown; ``dm`` is the dm consent at the latest event (``consents``). What an
    import said (``imported``) counts as one more event naming its fields."""
    got = {m.what: m.value for m in latest_marks(v.reach, imported.reach if imported is not None else [])}
    consent: dict[str, bool | None] = {"dm": v.consents[-1].dm if v.consents else None}
    for c in REACH_CHANNELS:
        f = got.get("c:" + c)
        consent[c] = f if isinstance(f, bool) else None
    return {"email": got.get("email"), "phone": got.get("phone"), "consent": consent}


class Profiled(Protocol):
    """What ``profile_of`` reads of a viewer: a ``fanops.state.ViewerState`` or the fans list's few fields."""

    @property
    def name(self) -> str | None: ...

    @property
    def country(self) -> str | None: ...

    @property
    def lang(self) -> str | None: ...

    @property
    def tz(self) -> str | None: ...


def profile_of(v: Profiled, imported: Imported | None) -> tuple[str | None, str | None, str | None, str | None]:
    """The viewer's (name, country, lang, tz): each their own events' value, else what their customer
    history row said (spec/tiers.md v1.1: a row keeps them "for when they first appear")."""
    if imported is None:
        return v.name, v.country, v.lang, v.tz
    return (v.name if v.name is not None else imported.name, v.country if v.country is not None else imported.country,
            v.lang if v.lang is not None else imported.lang, v.tz if v.tz is not None else imported.tz)
