"""The whole product as processes, on a feed whose frames arrive out of order over the show while
the scorer archives idle shows every second (``FANOPS_ARCHIVE_EVERY_S=1``): the shows archived
before their last frames came are opened again by them, and the final state equals the one of an
undisturbed in-order run (spec/events.md: no accepted event is ever dropped for arriving late)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from fanops.runtime import server
from tests.conftest import wait_for
from tests.pipeline import differences
from tests.scoring.test_outage import (  # noqa: F401 (fixture)
    Product,
    _accepted,
    _archived,
    _listening,
    _settled,
    feed_file,
)
from tests.scoring.test_scorer_crash import FEED, SHOP, frames, snapshot, uninterrupted  # noqa: F401 (fixtures)


class Shuffled(Product):
    def env(self) -> dict[str, str]:
        return {**super().env(), "FANOPS_ARCHIVE_EVERY_S": "1"}


@pytest.fixture
def shuffled_feed(tmp_path: Path, feed_file: tuple[Path, int]) -> tuple[Path, Path, int]:  # noqa: F811
    """The feed with its frames in a random order, in two parts: the second (a fifth of the frames,
    of every show) comes once the earlier shows have been archived."""
    lines = feed_file[0].read_text(encoding="utf-8").splitlines()
    random.Random(5).shuffle(lines)
    cut = len(lines) * 4 // 5
    first, late = tmp_path / "first.jsonl", tmp_path / "late.jsonl"
    first.write_text("\n".join(lines[:cut]) + "\n", encoding="utf-8")
    late.write_text("\n".join(lines[cut:]) + "\n", encoding="utf-8")
    return first, late, len(lines)


def test_an_out_of_order_feed_with_archiving_every_second_equals_the_undisturbed_run(
        tmp_path: Path, shuffled_feed: tuple[Path, Path, int], uninterrupted: dict[str, Any]) -> None:  # noqa: F811
    first, late, n_frames = shuffled_feed
    p = Shuffled(tmp_path, first, n_frames * 4 // 5)
    try:
        p.start_all()
        wait_for(lambda: _archived(p) >= 3, 180, "the earlier shows archived (the shop clock is on the last one)")
        # the rest of every show's frames, late: through a second feed and consumer
        port = server.free_port()
        p.start("feed2", "realtime", "replay", str(late), "--port", str(port), "--speed", "2000")
        wait_for(lambda: _listening(port), 30, "the second feed server")
        p.start("consumer2", "realtime", "consume", "--url", f"ws://127.0.0.1:{port}", "--redis", p.url)
        wait_for(lambda: _accepted(p) >= uninterrupted["shop"]["events_applied"], 180,
                 "every event of the feed accepted")
        got = wait_for(lambda: _settled(p), 120, "lag 0")
        assert sorted(p.alive()) == ["consumer", "consumer2", "feed", "feed2", "scorer"], p.logs()
        diff = differences(got, uninterrupted)
        assert not diff, f"{len(diff)} differences from the undisturbed run:\n" + "\n".join(diff[:30]) + p.logs()
        scorer_log = (tmp_path / "scorer.log").read_text(errors="replace")
        assert "opened again by a late event" in scorer_log, p.logs()
        assert "dropped" not in scorer_log.lower(), p.logs()
    finally:
        p.close()


def test_random_kills_of_scorers_during_the_feed_leave_the_state_of_an_undisturbed_run(
        tmp_path: Path, feed_file: tuple[Path, int], uninterrupted: dict[str, Any]) -> None:  # noqa: F811
    """Two scorers share the feed; every couple of seconds one of them, at random, is killed with
    SIGKILL mid-batch and started again under its name (its pending entries are its own again, or
    the other's by claim): nothing applied twice, nothing lost."""
    p = Shuffled(tmp_path, *feed_file)
    rng = random.Random(11)
    try:
        p.start_all()  # the feed, the consumer and scorer "s1"
        p.start("scorer2", "scoring", "run", "--name", "s2", "--redis", p.url)
        kills = 0
        while _accepted(p) < uninterrupted["shop"]["events_applied"] and kills < 12:
            time.sleep(rng.uniform(1.0, 2.5))
            name, sid = rng.choice([("scorer", "s1"), ("scorer2", "s2")])
            p.procs[name].kill()
            p.procs[name].wait(timeout=10)
            p.start(name, "scoring", "run", "--name", sid, "--redis", p.url)
            kills += 1
        assert kills >= 3, "the feed ended before the scorers were killed a few times"
        wait_for(lambda: _accepted(p) >= uninterrupted["shop"]["events_applied"], 180,
                 "every event of the feed accepted")
        got = wait_for(lambda: _settled(p), 180, "lag 0")
        assert sorted(p.alive()) == ["consumer", "feed", "scorer", "scorer2"], p.logs()
        diff = differences(got, uninterrupted)
        assert not diff, f"{len(diff)} differences from the undisturbed run:\n" + "\n".join(diff[:30]) + p.logs()
    finally:
        p.close()
