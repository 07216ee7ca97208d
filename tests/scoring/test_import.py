"""``python -m scoring import``: customer history (spec/tiers.md v1.1, spec/cli.md "Generic import CSV").

Bad rows are skipped with their reason and the rest imported; the imported history gives what
the independent reference gives for the events the spec says a row stands for (written out by
hand here); a second import changes nothing but ``duplicates``; a crash mid-file resumes; the
Shopify customers export with its orders export beside it; and what a row says beyond orders
reaches the viewer when they first appear.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fanops import keys
from fanops.imported import Imported, latest_marks, pack_imported, unpack_imported
from fanops.read import status, viewer_reach, viewer_state
from fanops.state import Mark
from scoring import importer_run
from scoring.importer_run import import_file
from scoring.worker import Worker
from tests.reference import Reference
from tests.scoring.test_scoring_properties import ingest

SHOP = "s1"
HEADER = ("viewer_id,name,email,phone,country,lang,tz,orders,spend,currency,first_order_at,last_order_at,"
          "accepts_email,accepts_sms,accepts_whatsapp")
ROWS = [
    "u1,Anna K,anna@example.com,+4915123456789,DE,de,Europe/Berlin,3,100,EUR,2025-01-05T10:00:00Z,"
    "2025-06-01 12:00:00,true,false,",
    "u2,Bo,bo@example.com,,,,,0,,,,,true,,",
    "u3,Cy,not-an-email,,,,,1,5,USD,2025-02-01,,,,",
    "u4,Di,,,,,,2,10,USD,yesterday,,,,",
    "u5,Ed,,,,,,-1,0,USD,,,,,",
    "u1,Anna again,,,,,,1,1,USD,2025-01-01,,,,",
    'u6,"Fa, Jr.",,+1 (202) 555-0143,US,,,1,9.99,usd,2025-03-01T08:00:00+02:00,,,true,true',
]
SKIPPED = [
    {"row": 3, "reason": "email: 'not-an-email' is not an address (3-254 characters with one @)"},
    {"row": 4, "reason": "first_order_at: bad date 'yesterday' (ISO 8601 wanted, e.g. 2025-03-01T10:00:00Z)"},
    {"row": 5, "reason": "orders: negative count (-1)"},
    {"row": 6, "reason": "duplicate viewer_id 'u1' (first at row 1)"},
]
JAN5, JUN1, MAR1 = 1736071200000, 1748779200000, 1740808800000


def _hist(vid: str, n: int, ts: int, amount: float, currency: str, **viewer: str) -> dict[str, Any]:
    oid = f"hist:{vid}:{n}"
    return {"id": oid, "room": "history", "shop": SHOP, "ts": ts, "type": "order", "order_id": oid,
            "amount": amount, "currency": currency, "viewer": {"id": vid, **viewer}}


# the events spec/tiers.md says the good rows stand for, by hand
HISTORY = [_hist("u1", 1, JAN5, 33.33, "EUR"), _hist("u1", 2, JUN1, 33.33, "EUR"), _hist("u1", 3, JUN1, 33.34, "EUR"),
           _hist("u6", 1, MAR1, 9.99, "USD")]
SHOW = [{"id": f"e{i}", "room": "live-1", "shop": SHOP, "ts": JUN1 + 40 * 86_400_000 + i * 60_000, "type": t,
         "viewer": {"id": v}} for i, (v, t) in enumerate([("u1", "join"), ("u2", "join"), ("u7", "join"),
                                                          ("u1", "comment"), ("u7", "like"), ("u2", "share")])]


def _csv(tmp_path: Path, rows: list[str], name: str = "customers.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return p


def _apply(r, cfg) -> None:
    Worker(r, cfg, name="w").drain(timeout=30)


def test_bad_rows_are_skipped_each_with_its_reason_and_the_rest_imported(tmp_path, cfg):
    got = import_file(cfg, _csv(tmp_path, ROWS), SHOP, dry_run=True, progress=False)
    assert got == {"rows": 7, "imported": 3, "skipped": SKIPPED}


def test_imported_history_is_what_the_reference_gives_for_the_rows_events(r, cfg, tmp_path):
    summary = import_file(cfg, _csv(tmp_path, ROWS), SHOP, progress=False)
    assert summary["imported"] == 3
    ingest(cfg, [json.dumps(e) for e in SHOW])
    _apply(r, cfg)
    ref = Reference()
    ref.feed([json.dumps(e) for e in HISTORY + SHOW], JUN1 + 100 * 86_400_000)
    assert status(r, SHOP) == ref.status(SHOP)
    room = status(r, SHOP, "live-1")["room"]
    assert room == ref.status(SHOP, "live-1")["room"]
    assert room["new_viewers"] == 2 and room["reactivated"] == 0  # u2 and u7: u1 is a customer already
    assert status(r, SHOP, "history")["room"]["unique_viewers"] == 0  # never a show
    for vid in ("u1", "u6", "u7"):
        assert viewer_state(r, SHOP, vid).tier == ref.viewer(SHOP, vid)["tier"]  # type: ignore[union-attr,index]


def test_a_second_import_changes_nothing_but_duplicates(r, cfg, tmp_path):
    """spec/tiers.md: importing the same file again changes nothing but ``duplicates``, which counts
    its 4 history events again, each time (as a resent feed's repeats)."""
    path = _csv(tmp_path, ROWS)
    import_file(cfg, path, SHOP, progress=False)
    _apply(r, cfg)
    before = status(r, SHOP)
    for n in (1, 2):
        again = import_file(cfg, path, SHOP, progress=False)
        _apply(r, cfg)
        after = status(r, SHOP)
        assert again == {"rows": 7, "imported": 3, "skipped": SKIPPED}
        assert after["duplicates"] == before["duplicates"] + 4 * n
        assert {k: v for k, v in after.items() if k != "duplicates"} == {
            k: v for k, v in before.items() if k != "duplicates"}
    assert not list((cfg.data_dir / "imports").iterdir())  # no note left once a file is in


def test_an_import_that_crashed_midway_resumes_where_it_stopped(r, cfg, tmp_path, monkeypatch):
    rows = [f"c{i},,,,,,,2,20,USD,2025-01-0{1 + i % 9},2025-02-01,,," for i in range(25)]
    path = _csv(tmp_path, rows)
    monkeypatch.setattr(importer_run, "CHUNK_ROWS", 10)
    real, calls = importer_run._write, []

    async def dies_at_the_third_chunk(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is killed
        await real(*args)

    monkeypatch.setattr(importer_run, "_write", dies_at_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        import_file(cfg, path, SHOP, progress=False)
    monkeypatch.setattr(importer_run, "_write", real)
    assert import_file(cfg, path, SHOP, progress=False) == {"rows": 25, "imported": 25, "skipped": []}
    _apply(r, cfg)
    st = status(r, SHOP)
    assert st["events_applied"] == 50 and st["duplicates"] == 0 and st["tiers"]["dormant"] + st["tiers"]["active"] == 25


def test_what_a_row_says_beyond_orders_reaches_the_viewer_when_they_appear(r, cfg, tmp_path):
    import_file(cfg, _csv(tmp_path, ROWS), SHOP, progress=False)
    _apply(r, cfg)
    assert status(r, SHOP)["events_applied"] == 4  # u2 has 0 orders: no event, not a known viewer yet
    assert viewer_reach(r, SHOP, ["u2"]) == {}
    later = {"id": "k1", "room": "live-1", "shop": SHOP, "ts": JUN1 + 86_400_000, "type": "consent",
             "viewer": {"id": "u1"}, "dm": True, "sms": True}
    ingest(cfg, [json.dumps(e) for e in SHOW] + [json.dumps(later)])
    _apply(r, cfg)
    reach = viewer_reach(r, SHOP, ["u1", "u2", "u6"])
    assert reach["u2"] == {"email": "bo@example.com", "phone": None,
                           "consent": {"dm": None, "email": True, "whatsapp": None, "sms": None}}
    assert reach["u1"]["consent"] == {"dm": True, "email": True, "whatsapp": None, "sms": True}  # the later event wins
    assert reach["u6"]["phone"] == "+12025550143" and reach["u6"]["consent"]["whatsapp"] is True


SHOPIFY_CUSTOMERS = """Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,\
Default Address Address1,Default Address Address2,Default Address City,Default Address Province Code,\
Default Address Country Code,Default Address Zip,Default Address Phone,Phone,Accepts SMS Marketing,Total Spent,\
Total Orders,Note,Tax Exempt,Tags
'7012345678901,Anna,Kowalski,anna@example.com,yes,,Main St 1,,Berlin,BE,DE,10115,,+49 151 23456789,no,120.50,2,,no,vip
'7012345678902,Bo,,bo@example.com,no,,,,,,US,,,,no,0.00,0,,no,
'7012345678903,Cy,,cy@example.com,no,,,,,,US,,,,no,15.00,1,,no,
"""
SHOPIFY_ORDERS = """Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,\
Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,Lineitem quantity,Lineitem name
#1001,anna@example.com,paid,2025-01-05 10:00:00 +0100,fulfilled,,yes,EUR,60.00,0,0,60.00,,0,,\
2025-01-05 10:00:00 +0100,1,Serum
#1001,,,,,,,,,,,,,,,,1,Lip tint
#1002,anna@example.com,paid,2025-06-01 12:00:00 +0200,fulfilled,,yes,EUR,60.50,0,0,60.50,,0,,\
2025-06-01 12:00:00 +0200,1,Serum
"""


def test_shopify_customers_export_with_its_orders_export_beside_it(r, cfg, tmp_path):
    (tmp_path / "orders_export_1.csv").write_text(SHOPIFY_ORDERS, encoding="utf-8")
    path = tmp_path / "customers_export.csv"
    path.write_text(SHOPIFY_CUSTOMERS, encoding="utf-8")
    got = import_file(cfg, path, SHOP, fmt="shopify", progress=False)
    assert got == {"rows": 3, "imported": 2, "skipped": [
        {"row": 3, "reason": "first_order_at: empty (needed with orders; no order of this customer in "
                             "orders_export_1.csv)"}]}
    _apply(r, cfg)
    v = viewer_state(r, SHOP, "7012345678901")
    assert v is not None and v.orders == ["hist:7012345678901:1", "hist:7012345678901:2"]
    assert v.spend == {"EUR": 120.5} and v.first_seen == JAN5 - 3_600_000 and v.name == "Anna Kowalski"
    assert viewer_reach(r, SHOP, ["7012345678901"])["7012345678901"] == {
        "email": "anna@example.com", "phone": "+4915123456789",
        "consent": {"dm": None, "email": True, "whatsapp": None, "sms": False}}


def test_the_command_prints_one_json_summary_and_refuses_a_file_it_cannot_read(tmp_path):
    path = _csv(tmp_path, ROWS)
    out = subprocess.run([sys.executable, "-m", "scoring", "import", str(path), "--shop", SHOP, "--dry-run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"rows": 7, "imported": 3, "skipped": SKIPPED}
    (tmp_path / "bad.csv").write_text("name,orders\nx,1\n")
    out = subprocess.run([sys.executable, "-m", "scoring", "import", str(tmp_path / "bad.csv"), "--shop", SHOP,
                          "--dry-run"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and out.stdout == "" and "no viewer_id column" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_row_whose_event_the_feed_would_reject_is_skipped_and_dead_lettered(r, cfg, tmp_path):
    rows = ["f0,,,,,,,2,5,USD,2025-01-01T00:00:00Z,2025-01-02,,,", "f1,,,,,,,2,5,USD,2025-01-01,2099-01-01,,,",
            "f2,,,,,,,3,5,USD,2025-01-01T00:00:00Z,2025-01-03,,,"]
    got = import_file(cfg, _csv(tmp_path, rows), SHOP, progress=False)
    assert got["imported"] == 2 and [s["row"] for s in got["skipped"]] == [2]
    assert got["skipped"][0]["reason"].startswith("event rejected: ts ") and "ahead" in got["skipped"][0]["reason"]
    _apply(r, cfg)
    st = status(r, SHOP)
    assert st["dead_letters"] == 1 and st["events_applied"] == 5  # f0's 2 and f2's 3; none of f1's
    assert viewer_state(r, SHOP, "f1") is None


def test_a_row_whose_language_or_time_zone_is_not_one_is_skipped_with_its_reason(r, cfg, tmp_path):
    rows = ["g0,Ana,,,MX,es-MX,America/Mexico_City,1,5,USD,2025-01-01,,,,", "g1,Bo,,,DE,de_DE,,1,5,USD,2025-01-01,,,,",
            "g2,Cy,,,GB,en,Mars/Base,1,5,USD,2025-01-01,,,,"]
    got = import_file(cfg, _csv(tmp_path, rows), SHOP, progress=False)
    assert got["imported"] == 1
    assert got["skipped"] == [{"row": 2, "reason": "lang: 'de_DE' is not a BCP 47 language tag"},
                              {"row": 3, "reason": "tz: 'Mars/Base' is not an IANA time zone"}]


def test_a_rejected_row_is_skipped_again_by_a_second_import_but_dead_lettered_once(r, cfg, tmp_path):
    """spec/tiers.md: importing the same file again changes nothing but ``duplicates``: the row the feed's
    check rejects is reported again (``skipped``) but not counted again in ``dead_letters``."""
    # f2's name is past events.md's 256 characters, and past the 4 KiB of raw text a dead letter keeps
    rows = ["f0,,,,,,,2,5,USD,2025-01-01T00:00:00Z,2025-01-02,,,", "f1,,,,,,,2,5,USD,2025-01-01,2099-01-01,,,",
            "f2," + "N" * 5000 + ",,,,,,1,5,USD,2025-01-01,,,,"]
    path = _csv(tmp_path, rows)
    first = import_file(cfg, path, SHOP, progress=False)
    _apply(r, cfg)
    before = status(r, SHOP)
    assert before["dead_letters"] == 2 and len(r.xrange(keys.dead_stream())) == 2
    again = import_file(cfg, path, SHOP, progress=False)
    _apply(r, cfg)
    after = status(r, SHOP)
    assert again == first and [s["row"] for s in again["skipped"]] == [2, 3]
    assert after["duplicates"] == before["duplicates"] + 2  # f0's two history orders
    del after["duplicates"], before["duplicates"]
    assert after == before
    assert len(r.xrange(keys.dead_stream())) == 2
    # another shop's import of the same rows is its own rejection
    import_file(cfg, path, "other", progress=False)
    assert status(r, "other")["dead_letters"] == 4


def test_an_import_keeps_the_consents_a_webhook_order_added_to_the_viewer_since(r, cfg, tmp_path):
    """The order webhooks merge a buyer's marketing flags into the imported record (a later consent
    than the row's); importing a newer export must not write over them."""
    import_file(cfg, _csv(tmp_path, ROWS), SHOP, progress=False)
    later = [Mark("c:sms", JUN1 + 86_400_000, "wh-9", True), Mark("c:email", JUN1 + 86_400_000, "wh-9", False)]
    k = keys.imported(SHOP)
    rec = unpack_imported(r.hget(k, "u1"))
    r.hset(k, "u1", pack_imported(Imported(rec.ts, rec.id, rec.name, reach=latest_marks(rec.reach, later))))

    newer = [ROWS[0].replace("Anna K", "Anna Kowalski"), *ROWS[1:]]  # a newer export: another file
    import_file(cfg, _csv(tmp_path, newer, name="newer.csv"), SHOP, progress=False)

    _apply(r, cfg)
    ingest(cfg, [json.dumps(e) for e in SHOW])
    _apply(r, cfg)
    reach = viewer_reach(r, SHOP, ["u1"])["u1"]
    assert reach["consent"]["sms"] is True and reach["consent"]["email"] is False  # the order's, later than the row
    assert reach["email"] == "anna@example.com" and unpack_imported(r.hget(k, "u1")).name == "Anna Kowalski"


def test_empty_lines_are_no_rows_and_take_no_row_number(tmp_path, cfg):
    """An editor's or a spreadsheet's empty last line, or an empty line between rows, is not a data
    row: it was counted in ``rows`` and skipped as "viewer_id: empty", and shifted later numbers."""
    p = tmp_path / "customers.csv"
    p.write_text("\n".join([HEADER, ROWS[0], "", ROWS[2], "", ""]) + "\n", encoding="utf-8")
    got = import_file(cfg, p, SHOP, dry_run=True, progress=False)
    assert got == {"rows": 2, "imported": 1, "skipped": [{**SKIPPED[0], "row": 2}]}
