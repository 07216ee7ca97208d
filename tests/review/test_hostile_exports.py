"""Hostile text in the downloads (issue 17 item 5): every table of the review and the fans export as
CSV (formula injection guarded) and Parquet (the text exactly as given), and the HTML report (no
element, handler or link made from the data).

One shop's show of hostile names, comments, SKUs (one of 10,000 characters), order ids and
operator names and skip reasons (``tests.hostile``) goes through the real consumer and scorer, an
operator works its tasks, the show is archived and analysed.
"""

from __future__ import annotations

import csv
import html
import io
from html.parser import HTMLParser

import polars as pl
import pytest
import redis

from fanops import fans, queue
from fanops.config import Config
from review import analysis, archive_files, report
from scoring.archive import archive_room
from screens.reads import tasks
from tests import hostile as H
from tests.feeds import frame
from tests.pipeline import drain, ingest_frames

SHOP = f"<i>{H.MARK}shop</i> =1+2"
ROOM = f"![{H.MARK}](http://{H.OUTSIDE}/r.png) <b>room</b>"
FAN = f"=HYPERLINK(\"http://{H.OUTSIDE}\",\"{H.MARK}\")"  # a viewer id
OPERATOR = f"@SUM(1) <img src=x onerror=alert(1) alt={H.MARK}op>"
REASON = f"-2+3 {H.SCRIPT}"
BASE = 1_763_856_000_000
# the review screen's downloads (screens/review.py TABLES): the analysis' tables, and the archive's own
ANALYSIS_TABLES = ("headlines", "funnel", "conversion_tier", "conversion_country", "conversion_lang", "sankey",
                   "followups", "attributed", "gmv", "top_products", "top_fans", "presence", "transitions",
                   "skip_reasons", "dwell")


@pytest.fixture
def shown(r: redis.Redis, cfg: Config) -> tuple[analysis.Review, archive_files.RoomArchive]:
    ingest_frames(cfg, [frame(*H.show(ROOM, SHOP, BASE, BASE + 20 * H.MIN, FAN))])
    drain(r, cfg)
    ids = [t.id for t in tasks.task_page(r, SHOP, queue.OPEN, limit=4)]
    assert len(ids) >= 2, ids
    op = queue.Operator(r, SHOP, OPERATOR)
    op.claim(ids[0])
    op.mark_sent(ids[0], message_id=H.MD_IMAGE)
    op.claim(ids[1])
    op.skip(ids[1], REASON)
    archive_room(r, cfg, SHOP, ROOM)
    show = archive_files.read_room(cfg, SHOP, ROOM)
    return analysis.analyse(analysis.load([show])), show


def _cells(data: bytes) -> list[str]:
    return [c for row in csv.reader(io.StringIO(data.decode("utf-8"), newline="")) for c in row]


def _assert_guarded(data: bytes, what: str) -> list[str]:
    """No CSV cell a spreadsheet would run; returns the cells."""
    cells = _cells(data)
    risky = [c for c in cells if c.startswith(H.FORMULA_STARTS)]
    assert not risky, (what, risky[:5])
    return cells


def _tables(rv: analysis.Review, show: archive_files.RoomArchive) -> dict[str, pl.DataFrame]:
    out = {n: rv.table(n, ROOM) for n in ANALYSIS_TABLES}
    out |= {"viewers": show.viewers().collect(), "events": show.events().collect(),
            "followup_tasks": show.followups().collect(), "archived_transitions": show.transitions().collect()}
    return out


def test_every_review_download_guards_formulas_in_csv_and_keeps_the_text_in_parquet(shown) -> None:
    rv, show = shown
    tables = _tables(rv, show)
    everything: list[str] = []
    for name, df in tables.items():
        cells = _assert_guarded(analysis.to_csv(df), name)
        everything += cells
        back = pl.read_parquet(io.BytesIO(analysis.to_parquet(df)))
        assert back.equals(df), name  # Parquet keeps every value as it came
    # what the feed and the operator wrote is in the CSVs, each formula behind an apostrophe
    for text in (*[f"'{f}" for f in H.FORMULAS], f"'{FAN}", f"'{OPERATOR}", f"'{REASON}", H.IMG, H.LONG):
        assert text in everything, text[:40]
    names = tables["viewers"]["name"].to_list()
    assert set(H.NAMES) - {""} <= set(names)  # RTL, zero-width and the rest, exactly as given


def test_the_fans_export_guards_formulas_and_keeps_names_exactly(shown, r: redis.Redis) -> None:
    df = fans.fans_frame(r, SHOP)
    cells = _assert_guarded(fans.to_csv(df), "fans")
    assert f"'{FAN}" in cells and all(f"'{f}" in cells for f in H.FORMULAS)
    assert H.RTL in cells and H.ZERO_WIDTH in cells and H.IMG in cells
    back = pl.read_parquet(io.BytesIO(fans.to_parquet(df)))
    assert set(H.NAMES) - {""} <= set(back["name"].to_list()) and FAN in back["viewer_id"].to_list()


class _Elements(HTMLParser):
    """The report's elements and its text outside scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if not self._in_script:
            self.text.append(data)


def test_the_html_report_makes_no_element_from_the_data(shown) -> None:
    rv, _ = shown
    page = report.render_html(rv, ROOM)
    p = _Elements()
    p.feed(page)
    made = [(t, a) for t, a in p.tags if H.MARK in str(a) or t in ("img", "iframe", "object", "embed")]
    assert not made, made[:3]
    handlers = [(t, k) for t, a in p.tags for k, v in a if k.startswith("on") or "javascript:" in (v or "")]
    assert not handlers, handlers[:3]
    assert not [a for t, a in p.tags if t == "a" and any(k == "href" for k, _ in a)]  # no link at all
    text = "".join(p.text)
    assert f"![{H.MARK}](http://{H.OUTSIDE}/r.png)" in text  # the room, shown as text
    assert H.BOLD in text or H.BOLD[:20] in text
    for s in (H.IMG, H.SCRIPT, H.IFRAME, H.HTML_LINK):
        assert s not in page  # never raw, anywhere (plotly's JSON escapes "<" too)


def test_chart_labels_use_only_entities_plotly_reads(shown) -> None:
    """plotly shows a label's ``&quot;`` as typed (it reads &lt; &gt; &amp; and numeric ones)."""
    rv, _ = shown
    skus = list(report.figures(rv, ROOM)["products"].data[0].y)
    assert any(H.MARK in s for s in skus)
    assert not [s for s in skus if "&quot;" in s or "<" in s], skus
    assert any(html.unescape(s).startswith('=HYPERLINK("http') for s in skus), skus
