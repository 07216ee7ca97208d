"""Retention (FANOPS_RETENTION_DAYS): the comment text of viewers inactive that long leaves Redis,
the applied-event log and the archives, by the scorer's periodic pass; what they did stays."""

from __future__ import annotations

import json
from pathlib import Path

from fanops import keys, queue
from fanops.imported import Imported, pack_imported, unpack_imported
from fanops.read import status
from fanops.state import Mark, ViewerState, pack
from review import archive_files
from scoring import idle, retention
from scoring.worker import Worker
from tests.pipeline import drain, ingest_frames
from tests.scoring.test_forget import hits

SHOP = "default"
DAY = keys.DAY_MS
T0 = 1760000000000
OLD_SAID = "is the old teapot still for sale?"
KEPT_SAID = "does the kettle come in blue?"


def _frames() -> list[str]:
    """Show r-old at T0: a viewer who never comes back (a question, a dwell that makes a task) and one
    who does; show r-new 95 days later with the second one (their last event)."""
    old = {"id": "gone-1", "name": "Olga Oldtimer", "country": "FR"}
    kept = {"id": "back-1", "name": "Ben Back"}
    r_old = [{"id": "o1", "room": "r-old", "ts": T0, "type": "join", "viewer": old},
             {"id": "o2", "room": "r-old", "ts": T0 + 60_000, "type": "comment", "text": OLD_SAID, "viewer": old},
             {"id": "o3", "room": "r-old", "ts": T0 + 300_000, "type": "product_view", "sku": "S1", "viewer": old},
             {"id": "o4", "room": "r-old", "ts": T0 + 1000, "type": "comment", "text": KEPT_SAID, "viewer": kept}]
    r_new = [{"id": "n1", "room": "r-new", "ts": T0 + 95 * DAY, "type": "comment", "text": "back again",
              "viewer": kept}]
    return [json.dumps(r_old), json.dumps(r_new)]


def test_comment_text_of_viewers_inactive_past_retention_goes_on_the_scorers_pass(cfg, r):
    ingest_frames(cfg, _frames())
    drain(r, cfg)
    now = [0.0]
    w = Worker(r, cfg, name="w1", monotonic=lambda: now[0])
    w.archive_idle()  # r-old is archived; the prune schedule has not come round yet
    assert r.hexists(keys.room(SHOP, "r-old"), "archived")
    folders = [Path(cfg.data_dir)]
    said = {t.viewer: t.said for t in queue.list_tasks(r, SHOP, room="r-old", limit=10)}
    assert said["gone-1"] == [OLD_SAID] and said["back-1"] == [KEPT_SAID]
    assert any("/archive/" in h for h in hits(r, folders, (OLD_SAID,)))
    assert any("/eventlog/" in h for h in hits(r, folders, (OLD_SAID,)))
    before = {rm: status(r, SHOP, rm) for rm in ("r-old", "r-new")}

    # 50 days after their last event (an injected clock): within retention, nothing goes
    assert retention.retention_pass(r, cfg, SHOP, clock=T0 + 50 * DAY) == {}
    assert hits(r, folders, (OLD_SAID,)) != []

    now[0] += idle.PRUNE_EVERY_S + 1  # the scorer's pass comes round: the shop clock is 95 days on
    w.archive_idle()
    assert hits(r, folders, (OLD_SAID,)) == []
    # the returning viewer's words stay, and so does everything else of the one who left
    assert any("/archive/" in h for h in hits(r, folders, (KEPT_SAID,)))
    assert hits(r, folders, ("Olga Oldtimer",)) != []
    said = {t.viewer: t.said for t in queue.list_tasks(r, SHOP, room="r-old", limit=10)}
    assert said["gone-1"] == [] and said["back-1"] == [KEPT_SAID]
    a = archive_files.read_room(cfg, SHOP, "r-old")
    ev = a.events().collect()
    assert ev.height == a.info.events and ev.filter(ev["type"] == "comment").height == 2
    assert {rm: status(r, SHOP, rm) for rm in ("r-old", "r-new")} == before
    # a second pass finds nothing left to drop
    assert retention.retention_pass(r, cfg, SHOP) == {}


def test_retention_clears_the_addresses_a_viewer_state_has_and_keeps_their_answers():
    """A contact event's email and phone go; the channel consents (the viewer's answer, no way to
    reach them) and the name stay."""
    v = ViewerState(first_seen=1, last_active=2, rooms={}, name="Ann",
                    reach=[Mark("email", 5, "c1", "ann@example.com"), Mark("phone", 5, "c1", "+33612345678"),
                           Mark("c:sms", 6, "k1", True)])
    assert retention.clear_contact(v) is True
    assert [m.what for m in v.reach] == ["c:sms"] and v.name == "Ann"
    assert retention.clear_contact(v) is False  # nothing left to clear


def test_retention_also_drops_the_addresses_a_history_row_gave_and_the_address_owners_entries(cfg, r):
    """An inactive viewer's email and phone leave their imported record (their consents stay) and the
    table that matches kept webhook orders to viewers; an active viewer's stay."""
    def put(vid: str, last: int, email: str) -> None:
        r.hset(keys.viewers(SHOP), vid, pack(ViewerState(first_seen=last, last_active=last, rooms={})))
        rec = Imported(last, f"hist:{vid}", name=vid, reach=[Mark("email", last, f"hist:{vid}", email),
                                                             Mark("c:email", last, f"hist:{vid}", True)])
        r.hset(keys.imported(SHOP), vid, pack_imported(rec))
        r.hset(keys.contact_owners(SHOP), keys.contact_owner_field("email", email), vid)

    put("gone-2", T0, "gone@example.com")
    put("here-2", T0 + 95 * DAY, "here@example.com")
    r.hset(keys.stats(SHOP), "clock", T0 + 95 * DAY)

    got = retention.retention_pass(r, cfg, SHOP)

    assert got == {"contact_details": 1, "address_owners": 1}
    gone, here = (unpack_imported(r.hget(keys.imported(SHOP), v)) for v in ("gone-2", "here-2"))
    assert [(m.what, m.value) for m in gone.reach] == [("c:email", True)] and gone.name == "gone-2"
    assert [m.what for m in here.reach] == ["email", "c:email"]
    assert r.hgetall(keys.contact_owners(SHOP)) == {keys.contact_owner_field("email", "here@example.com"): b"here-2"}
    assert hits(r, [], ("gone@example.com",)) == [] and hits(r, [], ("here@example.com",)) != []
    assert retention.retention_pass(r, cfg, SHOP) == {}
