"""The live board's TikTok LIVE tile: from the TikTok source's heartbeat (as ``TikTokSource`` writes it)
to what an operator reads on the page (AppTest against a real Redis)."""

from __future__ import annotations

from fanops import keys
from screens.reads.tiktok import tiles
from tests.screens.test_app import NOW, SHOP, app, beat, metrics, texts, write_live_room  # noqa: F401 (fixture)

TT = {"source": "tiktok", "shop": SHOP, "unique_id": "creator", "state": "connected", "room": "tiktok-73",
      "viewers": 1234, "viewers_total": 5678, "last_error": None, "last_error_at": None, "connected": True,
      "frames": 10, "at": NOW}


def test_tiles_are_the_shops_tiktok_sources_only() -> None:
    other_shop = {**TT, "shop": "elsewhere", "unique_id": "b"}
    plain_feed = {"connected": True, "frames": 5}
    odd = {**TT, "unique_id": "a", "state": "teleporting", "viewers": None, "last_error": "x" * 900,
           "last_error_at": "soon"}
    got = tiles([TT, other_shop, plain_feed, odd], SHOP)
    assert [(t.unique_id, t.state, t.viewers) for t in got] == [("a", "unknown", None), ("creator", "connected", 1234)]
    assert len(got[0].last_error or "") == 200 and got[0].last_error_at is None
    assert tiles([plain_feed], SHOP) == []


def test_the_live_board_shows_the_connection_the_viewers_and_the_last_error(app, r) -> None:  # noqa: F811
    write_live_room(r)
    beat(r, "consumer", "tt1", {**TT, "state": "rate_limited", "last_error_at": NOW - 180,
                                "last_error": "SignatureRateLimitError: Too many connections <b>started</b>"})
    at = app()
    tile = at.get_by_key("tiktok-creator")
    assert metrics(tile) == {"TikTok LIVE @creator": "Sign server rate limit", "Watching now": "1,234",
                             "Viewers so far": "5,678"}
    assert [c.value for c in tile.caption] == ["Last error, 3 min ago:"]
    assert texts(at.get_by_key("tiktok-creator-error")) == [
        "SignatureRateLimitError: Too many connections <b>started</b>"]  # shown as text, not markup
    assert "TikTok LIVE @creator" in metrics(at)
    r.delete(keys.heartbeat("consumer", "tt1"))  # the source stopped and its beat expired: no tile
    assert "TikTok LIVE @creator" not in metrics(at.run())
