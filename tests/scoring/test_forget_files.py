"""Writing a viewer out of an applied-event log record in place: same length, the others untouched."""

from __future__ import annotations

import msgspec
import pytest

from fanops.schema import Comment, Order, Viewer
from scoring import eventlog
from scoring.forget_files import Scrub, scrub_payload

GONE = Viewer(id="gone-ü1", name="Zoë 🦊", country="MX", lang="es-MX", tz="America/Mexico_City")
OTHER = Viewer(id="stay-2", name="Sam", country="MX")


def _payload() -> bytes:
    """As the consumer's ingest script packs an entry: an array32 header, then each event as msgspec encodes it."""
    evs = [Comment(id="e1", room="r", ts=1, viewer=GONE, text="mi dirección es Calle 5"),
           Comment(id="e2", room="r", ts=2, viewer=OTHER, text="hola Zoë 🦊"),
           Order(id="e3", room="r", ts=3, viewer=GONE, order_id="o-1", amount=5.0, currency="USD")]
    return b"\xdd" + len(evs).to_bytes(4, "big") + b"".join(msgspec.msgpack.encode(e) for e in evs)


def test_forget_writes_over_every_text_of_the_viewer_and_keeps_every_other_byte():
    raw = _payload()
    new, n = scrub_payload(raw, Scrub(frozenset([GONE.id]), forget=True))
    assert n == 2 and new is not None and len(new) == len(raw)
    evs = msgspec.msgpack.decode(new)
    assert [e["id"] for e in evs] == ["e1", "e2", "e3"] and evs[2]["amount"] == 5.0 and evs[2]["order_id"] == "o-1"
    for e in (evs[0], evs[2]):
        assert set(e["viewer"]["id"]) == {"~"} and e["viewer"]["country"] == "ZZ"
        assert "Zoë" not in str(e)
    assert set(evs[0]["text"]) == {"~"}
    assert evs[1] == msgspec.msgpack.decode(raw)[1]  # another viewer's words about them are theirs
    assert scrub_payload(new, Scrub(frozenset([GONE.id]), forget=True)) == (None, 0)


def test_retention_writes_over_the_comment_text_only():
    raw = _payload()
    new, n = scrub_payload(raw, Scrub(frozenset([GONE.id]), forget=False))
    evs = msgspec.msgpack.decode(new)
    assert n == 1 and set(evs[0]["text"]) == {"~"} and evs[0]["viewer"] == msgspec.msgpack.decode(raw)[0]["viewer"]
    assert scrub_payload(new, Scrub(frozenset([GONE.id]), forget=False)) == (None, 0)


def test_a_rewrite_in_place_must_keep_each_records_length(tmp_path):
    w = eventlog.EventLogWriter(tmp_path, "t")
    w.write("s", [("fo:{s}:events", b"1-0", {b"e": _payload()})])
    w.close()
    (path,) = eventlog.LogReader(tmp_path, "s").files()
    before = path.read_bytes()
    with pytest.raises(ValueError, match="keep its length"):
        eventlog.rewrite_in_place(path, lambda rec: rec.payload + b"x")
    assert path.read_bytes() == before
    gone = Scrub(frozenset([GONE.id]), forget=True)
    assert eventlog.rewrite_in_place(path, lambda rec: scrub_payload(rec.payload, gone)[0]) == 1
    (rec,) = [rec for _p, rec in eventlog.LogReader(tmp_path, "s").read_new()]
    assert len(path.read_bytes()) == len(before) and GONE.id.encode() not in rec.payload
