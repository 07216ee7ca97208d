"""``python -m scoring fans`` and ``python -m scoring tasks`` (spec/cli.md v1.1), run as commands
against a real Redis filled by the real consumer and scorer."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanops import queue
from fanops.read import status
from tests.scoring.test_scoring_scenarios import SHOP, Story, at

ROOT = Path(__file__).resolve().parents[2]
FANS_COLUMNS = ["viewer_id", "name", "tier", "country", "lang", "tz", "first_seen", "last_active", "orders",
                "spend", "dm_consent", "channels"]  # spec/cli.md v1.1, as written there
TASK_FIELDS = {"id", "kind", "state", "viewer_id", "room", "tier", "priority", "lang", "channels"}


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "scoring", *args, "--redis", redis_url], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)


@pytest.fixture
def shop(r, cfg) -> Story:
    s = Story(r, cfg)
    anna = s.say("anna", "join", "r-1", at(minutes=0))
    anna["viewer"].update(name="=HYPERLINK(\"x\")", country="US", lang="en", tz="America/Chicago")
    s.submit(anna, s.say("bo", "join", "r-1", at(minutes=0)), s.say("cy", "join", "r-1", at(minutes=0)),
             s.say("dee", "join", "r-1", at(minutes=0)), s.say("cy", "comment", "r-1", at(minutes=1), text="blue?"))
    s.submit(s.say("anna", "order", "r-1", at(minutes=1), order_id="o-1", amount=12.5, currency="USD"),
             s.say("bo", "consent", "r-1", at(minutes=1), dm=False))
    s.advance(at(minutes=4))  # cy (who commented) and dee lingered: tasks; bo refused DMs: none
    return s


def test_fans_csv_has_exactly_the_columns_of_the_contract(shop, redis_url, tmp_path):
    out = tmp_path / "fans.csv"
    p = cli(redis_url, "fans", "--shop", SHOP, "--out", str(out))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == FANS_COLUMNS
    by = {x["viewer_id"]: x for x in rows}
    assert set(by) == {"anna", "bo", "cy", "dee", "someone-else"}
    assert by["anna"]["name"] == "'=HYPERLINK(\"x\")"  # read as text by a spreadsheet
    assert (by["anna"]["tier"], by["anna"]["orders"], by["anna"]["spend"]) == ("first_buyer", "1", "12.50 USD")
    assert (by["anna"]["country"], by["anna"]["tz"]) == ("US", "America/Chicago")
    assert (by["bo"]["dm_consent"], by["bo"]["channels"]) == ("false", "")
    assert (by["cy"]["dm_consent"], by["cy"]["channels"]) == ("", "dm")


def test_fans_jsonl_filtered_by_tier(shop, redis_url):
    p = cli(redis_url, "fans", "--shop", SHOP, "--tier", "first_buyer", "--format", "jsonl")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert [list(x) for x in rows] == [FANS_COLUMNS]
    assert rows[0]["viewer_id"] == "anna" and rows[0]["spend"] == {"USD": 12.5} and rows[0]["channels"] == ["dm"]
    assert rows[0]["first_seen"] == at(minutes=0) and rows[0]["last_active"] == at(minutes=1)


def test_fans_refuses_an_unknown_tier_with_a_reason(shop, redis_url):
    p = cli(redis_url, "fans", "--shop", SHOP, "--tier", "vip")
    assert p.returncode != 0 and "invalid choice: 'vip'" in p.stderr and p.stdout == ""


def test_tasks_lists_the_queue_by_priority_as_json_lines(shop, redis_url, r):
    p = cli(redis_url, "tasks", "--shop", SHOP)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert {x["viewer_id"] for x in rows if x["kind"] == "lingered"} == {"cy", "dee"}
    assert [(x["viewer_id"], x["state"]) for x in rows if x["kind"] == "thank_first_order"] == [("anna", "pending")]
    assert all(TASK_FIELDS <= set(x) for x in rows)
    assert [x["priority"] for x in rows] == sorted((x["priority"] for x in rows), reverse=True)
    cy = next(x for x in rows if x["viewer_id"] == "cy")
    assert (cy["kind"], cy["state"], cy["room"], cy["tier"], cy["channels"]) == ("lingered", "pending", "r-1",
                                                                                 "new_fan", ["dm"])
    assert rows[0]["viewer_id"] == "cy"  # a comment: the higher priority
    assert rows[-1]["kind"] == "thank_first_order"  # priority 0, no dwell: after every lingered task
    queue.Operator(r, SHOP, "ana").skip(cy["id"], "spam")
    skipped = [json.loads(x) for x in cli(redis_url, "tasks", "--shop", SHOP, "--state", "skipped").stdout.splitlines()]
    assert [x["viewer_id"] for x in skipped] == ["cy"] and skipped[0]["channels"] == []
    one = cli(redis_url, "tasks", "--shop", SHOP, "--limit", "1", "--kind", "lingered").stdout.splitlines()
    assert [json.loads(x)["viewer_id"] for x in one] == ["dee"]
    assert cli(redis_url, "tasks", "--shop", SHOP, "--kind", "win_back").stdout == ""  # no such task yet
    thank = cli(redis_url, "tasks", "--shop", SHOP, "--kind", "thank_first_order").stdout.splitlines()
    thank = [json.loads(x) for x in thank]
    assert [(x["viewer_id"], x["room"]) for x in thank] == [("anna", "r-1")]


def test_tasks_refuses_bad_input_with_one_line(shop, redis_url):
    p = cli(redis_url, "tasks", "--shop", SHOP, "--limit", "0")
    assert p.returncode == 1 and p.stderr.strip() == "error: --limit must be at least 1, not 0"
    p = cli(redis_url, "tasks", "--shop", SHOP, "--state", "lost")
    assert p.returncode != 0 and "invalid choice: 'lost'" in p.stderr


def test_fans_and_tasks_list_every_channel_a_viewer_agreed_to_and_has_an_address_for(shop, redis_url, cfg, tmp_path):
    """spec/cli.md v1.1: fans lists "the channels each can be reached on", tasks "those the viewer can
    be sent on now": email, WhatsApp and SMS where the viewer's consent is true and the address is
    known (spec/events.md v1.1), dm where it is not false; what a history import said counts too."""
    from scoring.importer_run import import_file

    shop.submit(shop.say("dee", "contact", "r-1", at(minutes=2), email="dee@example.com", phone="+14155550123"),
                shop.say("dee", "consent", "r-1", at(minutes=2), dm=True, email=True, sms=False))
    customers = tmp_path / "customers.csv"
    customers.write_text("viewer_id,phone,orders,accepts_whatsapp\ncy,+4915123456789,0,true\n", encoding="utf-8")
    assert import_file(cfg, customers, SHOP, progress=False)["imported"] == 1
    p = cli(redis_url, "fans", "--shop", SHOP, "--format", "jsonl")
    assert p.returncode == 0, p.stderr
    fans = {x["viewer_id"]: x["channels"] for x in map(json.loads, p.stdout.splitlines())}
    assert fans == {"anna": ["dm"], "bo": [], "cy": ["dm", "whatsapp"], "dee": ["dm", "email"], "someone-else": ["dm"]}
    rows = {x["viewer_id"]: x["channels"] for x in csv.DictReader(io.StringIO(cli(redis_url, "fans", "--shop",
                                                                                      SHOP).stdout))}
    assert (rows["dee"], rows["cy"], rows["bo"]) == ("dm;email", "dm;whatsapp", "")
    tasks = {x["viewer_id"]: x["channels"] for x in map(json.loads, cli(redis_url, "tasks", "--shop",
                                                                         SHOP).stdout.splitlines())}
    assert (tasks["dee"], tasks["cy"], tasks["anna"]) == (["dm", "email"], ["dm", "whatsapp"], ["dm"])


@pytest.mark.parametrize("args,says", [
    (["scoring", "fans", "--shop", SHOP, "--tier", "vip"], "invalid choice: 'vip'"),
    (["scoring", "status"], "the following arguments are required: --shop"),
    (["scoring", "tasks", "send", "--shop", SHOP, "--id", "r-1/cy"], "required: --operator"),
    (["realtime", "replay"], "required: file"),
    # values no command can run with (each was a Python traceback)
    (["realtime", "consume", "--url", "http://feed.example"], "not a WebSocket URL: scheme isn't ws or wss"),
    (["realtime", "replay", "feed.jsonl", "--url", "feed.example"], "not a WebSocket URL"),
    (["realtime", "simulate", "--port", "99999"], "99999 is not a port (0-65535)"),
    (["realtime", "orders", "--port", "-1"], "-1 is not a port"),
    (["realtime", "simulate", "--port", "0", "--rate", "0"], "--rate: 0 is not above 0"),
    (["realtime", "simulate", "--port", "0", "--viewers", "-3"], "--viewers: -3 is not above 0"),
    (["realtime", "replay", "feed.jsonl", "--port", "0", "--speed", "nan"], "nan is not a finite number"),
    (["realtime", "consume", "--url", "ws://x", "--max-frame-bytes", "0"], "--max-frame-bytes: 0 is not above 0"),
    (["scoring", "status", "--shop", ""], "a shop is 1-128 characters, not 0"),
    (["scoring", "import", "x.csv", "--shop", "s" * 129], "a shop is 1-128 characters, not 129"),
])
def test_a_command_line_it_cannot_run_is_refused_in_one_line(args, says):
    """spec/cli.md: a command that cannot do its job exits non-zero with a one-line reason on stderr
    (argparse's usage text would make it several)."""
    p = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and says in p.stderr, p.stderr


def test_a_command_that_fails_midway_says_why_in_one_line(shop, redis_url, r, tmp_path):
    """A file that cannot be written, or a Redis server that answers with an error mid-way: exit 1 and
    one line on stderr, not a traceback (spec/cli.md)."""
    from fanops import keys

    (tmp_path / "a-file").write_text("x")
    p = cli(redis_url, "fans", "--shop", SHOP, "--out", str(tmp_path / "a-file" / "fans.csv"))
    assert p.returncode == 1 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and "Not a directory" in p.stderr, p.stderr
    r.set(keys.stats("broken"), "not a hash")  # what no product code writes: the server answers WRONGTYPE
    p = cli(redis_url, "status", "--shop", "broken")
    assert p.returncode == 1 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and "WRONGTYPE" in p.stderr, p.stderr


def test_fans_shows_what_an_import_said_of_a_viewer_their_own_events_leave_unsaid(shop, redis_url, cfg, tmp_path):
    """spec/tiers.md v1.1: a row with 0 orders "keeps the viewer's name, contact and consents for when
    they first appear"; the viewer's own events win where they say it too (anna's country)."""
    from scoring.importer_run import import_file

    customers = tmp_path / "customers.csv"
    customers.write_text("viewer_id,name,country,lang,tz,orders\ncy,Cy Lee,SG,zh,Asia/Singapore,0\n"
                         "anna,Anna Import,DE,,,0\nnew-1,Not Yet,US,,,0\n", encoding="utf-8")
    assert import_file(cfg, customers, SHOP, progress=False)["imported"] == 3
    p = cli(redis_url, "fans", "--shop", SHOP, "--format", "jsonl")
    assert p.returncode == 0, p.stderr
    fans = {x["viewer_id"]: x for x in map(json.loads, p.stdout.splitlines())}
    assert [fans["cy"][k] for k in ("name", "country", "lang", "tz")] == ["Cy Lee", "SG", "zh", "Asia/Singapore"]
    assert (fans["anna"]["name"], fans["anna"]["country"]) == ('=HYPERLINK("x")', "US")  # her own events'
    assert "new-1" not in fans  # not known until they first appear


def test_tasks_and_viewer_name_a_viewer_as_their_customer_history_row_did_where_their_events_do_not(
        shop, redis_url, cfg, tmp_path):
    """cy joined with no name: the task's card, `tasks` and `viewer` take the name, country and language of
    cy's customer-history row (a row with 0 orders keeps them "for when they first appear")."""
    from scoring.importer_run import import_file

    customers = tmp_path / "customers.csv"
    customers.write_text("viewer_id,name,country,lang,tz,orders\ncy,Cy Lee,SG,zh,Asia/Singapore,0\n",
                         encoding="utf-8")
    assert import_file(cfg, customers, SHOP, progress=False)["imported"] == 1
    p = cli(redis_url, "tasks", "--shop", SHOP)
    assert p.returncode == 0, p.stderr
    by = {x["viewer_id"]: x for x in map(json.loads, p.stdout.splitlines())}
    assert (by["cy"]["name"], by["cy"]["country"], by["cy"]["lang"]) == ("Cy Lee", "SG", "zh")
    assert (by["dee"]["name"], by["dee"]["country"]) == ("", "")  # no row, no name of their own
    p = cli(redis_url, "viewer", "--shop", SHOP, "--id", "cy")
    assert p.returncode == 0, p.stderr
    assert [json.loads(p.stdout)[k] for k in ("name", "country", "lang", "tz")] == ["Cy Lee", "SG", "zh",
                                                                                   "Asia/Singapore"]


def test_fans_of_a_shop_with_no_viewers_is_an_empty_list_not_an_error(redis_url, tmp_path):
    """A new shop (or a name typed before its first show) exports the header alone; it was a polars
    schema error (the channel columns had no type) and a .tmp file left beside --out."""
    p = cli(redis_url, "fans", "--shop", "no-show-yet")
    assert (p.returncode, p.stderr) == (0, "") and p.stdout.splitlines() == [
        "viewer_id,name,tier,country,lang,tz,first_seen,last_active,orders,spend,dm_consent,channels"]
    p = cli(redis_url, "fans", "--shop", "no-show-yet", "--format", "jsonl")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    out = tmp_path / "fans.csv"
    p = cli(redis_url, "fans", "--shop", "no-show-yet", "--out", str(out))
    assert p.returncode == 0 and out.read_text().startswith("viewer_id,") and list(tmp_path.iterdir()) == [out]


def test_tasks_lists_the_whole_queue_unless_limited(r, cfg, redis_url):
    """A script counting the queue gets every open task; it got the first 100 and no word of the rest."""
    s = Story(r, cfg)
    s.submit(*[s.say(f"v{i:03}", "join", "r-1", at(minutes=0)) for i in range(130)])
    s.advance(at(minutes=4))
    assert status(r, SHOP, "r-1")["room"]["followups"]["pending"] == 130
    p = cli(redis_url, "tasks", "--shop", SHOP)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 130, p.stderr
    assert len(cli(redis_url, "tasks", "--shop", SHOP, "--limit", "7").stdout.splitlines()) == 7


def test_tasks_send_takes_the_shop_given_before_send_and_fans_out_dash_is_standard_output(shop, redis_url, tmp_path):
    p = subprocess.run([sys.executable, "-m", "scoring", "tasks", "--shop", SHOP, "send", "--id", "nope",
                        "--operator", "Mei", "--redis", redis_url], capture_output=True, text=True, cwd=ROOT,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 1 and "'nope' is not a task id" in p.stderr  # the shop was read: the id is what fails
    out = cli(redis_url, "fans", "--shop", SHOP, "--out", "-")
    assert out.returncode == 0 and out.stdout.startswith("viewer_id,") and not (ROOT / "-").exists()
    (tmp_path / "exports").mkdir()
    folder = cli(redis_url, "fans", "--shop", SHOP, "--out", str(tmp_path / "exports"))
    assert folder.returncode == 1 and "is a folder" in folder.stderr
    assert not (tmp_path / "exports.tmp").exists() and list((tmp_path / "exports").iterdir()) == []


def test_a_reader_that_goes_away_is_no_error(shop, redis_url):
    """`fans | head -1`: the rest of the output has nowhere to go; no "Broken pipe" error line. (`true`
    reads nothing and is gone long before the export is written: the write meets a closed pipe.)"""
    p = subprocess.run(f"{sys.executable} -m scoring fans --shop {SHOP} --redis {redis_url} | true",
                       shell=True, capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stderr == "", p.stderr
