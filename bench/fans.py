"""The fans screen at 1,000,000 known viewers: server time of a filter + one page, and exports.

    python -m bench.fans [--viewers 1000000] [--repeat 7]

A private embedded server is filled with ``--viewers`` packed viewer states (``fanops.state.pack``,
as the scorer writes them: names, countries, languages, tiers, orders for one in five, DM consent
refused by one in ten).  Then, in this process:

- build: ``fanops.fans.fans_frame``, one pass over the viewers hash (what the app does once per
  shop change, at most every ``screens.reads.fans.MAX_AGE_S``; the page shows its age);
- the product, per rerun of the screen: ``filtered`` + ``page`` on the cached frame, for the
  filters an operator uses (none; tier + country + channel; spend range sorted by spend; last
  seen + language; a text search), p50 and max over ``--repeat`` runs;
- baseline: the obvious way, a frame built per rerun (build + filter + page);
- ceiling: the filter alone (no sort: what a page costs beyond counting the matches);
- the whole screen: app.py + sidebar + the fans page run by ``AppTest`` on the warm frame (what a
  rerun costs the server, drawing the page's table and chart included), p50 over ``--repeat``;
- exports of every fan (1,000,000 rows): CSV (formula-guarded) and Parquet, as the download
  buttons and ``python -m scoring fans`` produce them.

Targets (issue 16): filter + one page < 100 ms; export of 1,000,000 fans < 10 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable

from bench._util import Report, fresh, machine_note, private_server, table, tree_note
from fanops import fans, keys
from fanops.state import TIERS, Consent, ViewerState, pack

SHOP = "bench"
T0 = 1_763_856_000_000
DAY = 86_400_000
CHUNK = 10_000
COUNTRIES = ["US", "MX", "BR", "ES", "DE", "ID", "JP", "CN", "FR", "GB"]
LANGS = ["en-US", "es-MX", "pt-BR", "es", "de", "id", "ja", "zh", "fr", "en-GB"]


def fill(r, n: int, seed: int = 7) -> float:
    """``n`` viewer states into the shop's viewers hash; returns the seconds it took."""
    rnd = random.Random(seed)
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        batch = {}
        for i in range(start, min(n, start + CHUNK)):
            c = rnd.randrange(len(COUNTRIES))
            first = T0 - rnd.randrange(365) * DAY
            last = min(T0, first + rnd.randrange(200) * DAY)
            buys = rnd.random() < 0.2
            orders = [f"o-{i}-{k}" for k in range(rnd.choice((1, 1, 2, 3)))] if buys else []
            v = ViewerState(first, last, {f"r-{rnd.randrange(60)}": [last - 60_000, last]}, orders,
                            {"USD": round(rnd.uniform(5, 300), 2)} if buys else {},
                            [Consent(first, f"c-{i}", False)] if rnd.random() < 0.1 else [],
                            name=f"viewer {i}", country=COUNTRIES[c], lang=LANGS[c],
                            tier=TIERS[(2 if len(orders) > 1 else 1 if orders else 0) if last > T0 - 30 * DAY else 3])
            batch[f"u-{i:07d}"] = pack(v)
        r.hset(keys.viewers(SHOP), mapping=batch)
    return time.perf_counter() - t0


CASES: list[tuple[str, fans.FanFilter, str]] = [
    ("no filter, last seen first", fans.FanFilter(), "last_active"),
    ("tier + country + DM reachable", fans.FanFilter(tiers=("first_buyer", "active"), countries=("US", "MX"),
                                                    channels=("dm",)), "last_active"),
    ("spend 50-200, by spend", fans.FanFilter(spend_min=50, spend_max=200), "spend_total"),
    ("seen in 30 days + lang es", fans.FanFilter(seen_since=T0 - 30 * DAY, lang="es"), "last_active"),
    ("name contains '12345'", fans.FanFilter(text="12345"), "name"),
]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """p50 and max of ``fn``'s wall time, in ms."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs), max(runs)


def screen_times(url: str, repeat: int) -> tuple[float, float, float]:
    """The fans page in AppTest: the first run (builds the frame) in s; warm reruns p50 and max in ms."""
    from streamlit.testing.v1 import AppTest

    from bench._util import ROOT

    os.environ["REDIS_URL"] = url
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state["shop"] = SHOP
    at.run()
    t0 = time.perf_counter()
    at.switch_page("screens/fans.py").run()
    first = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"the fans page raised: {at.exception}")
    p50, mx = timed(at.run, repeat)
    if at.exception or not at.dataframe:
        raise RuntimeError(f"the fans page raised: {at.exception}")
    return first, p50, mx


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fans", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    rep = Report()
    with private_server() as (info, _d):
        r = fresh(info.url)
        fill_s = fill(r, args.viewers)
        t0 = time.perf_counter()
        df = fans.fans_frame(r, SHOP)
        build_s = time.perf_counter() - t0
        assert df.height == args.viewers
        rows = []
        worst = 0.0
        for label, flt, sort in CASES:
            p50, mx = timed(lambda f=flt, s=sort: fans.page(fans.filtered(df, f), s, True, 0, 50), args.repeat)
            ceil, _ = timed(lambda f=flt: fans.filtered(df, f).height, args.repeat)
            hits = fans.filtered(df, flt).height
            worst = max(worst, p50)
            rows.append([label, hits, p50, mx, ceil])
        base_ms, _ = timed(lambda: fans.page(fans.filtered(fans.fans_frame(r, SHOP), CASES[1][1]), "last_active",
                                             True, 0, 50), 1)
        t0 = time.perf_counter()
        csv = fans.to_csv(df)
        csv_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        parquet = fans.to_parquet(df)
        pq_s = time.perf_counter() - t0
        mem = int(r.memory_usage(keys.viewers(SHOP)) or 0)
        r.sadd(keys.shops(), SHOP)
        first_s, screen_p50, screen_max = screen_times(info.url, args.repeat)
    print(f"{args.viewers:,} viewers ({tree_note()}; {machine_note()}); filled in {fill_s:.1f} s, "
          f"viewers hash {mem / 2**20:,.0f} MiB")
    print()
    print(table(["fans screen, one rerun (cached frame)", "matches", "filter+page p50 ms", "max ms",
                 "filter alone ms"], rows))
    print()
    print(table(["the whole fans screen (AppTest: app.py + sidebar + page)", "p50 ms", "max ms"],
                [["a rerun, frame cached (no filter: table, chart, export buttons)", screen_p50, screen_max]]))
    print()
    print(table(["once per shop change", "s"], [["build the frame (HSCAN + decode)", build_s],
                                                 ["the screen's first run in a process (builds it)", first_s],
                                                 ["baseline: build + filter + page per rerun", base_ms / 1000]]))
    print()
    print(table(["export of every fan", "s", "MiB"], [["CSV (formula-guarded)", csv_s, len(csv) / 2**20],
                                                     ["Parquet", pq_s, len(parquet) / 2**20]]))
    rep.target("filter + one page, worst p50 (ms)", worst, 100, worst < 100, lambda x: round(x, 1))
    rep.target("the whole fans screen, a rerun p50 (ms)", screen_p50, 100, screen_p50 < 100, lambda x: round(x, 1))
    rep.target("CSV export of every fan (s)", csv_s, 10, csv_s < 10, lambda x: round(x, 2))
    rep.target("Parquet export of every fan (s)", pq_s, 10, pq_s < 10, lambda x: round(x, 2))
    print()
    print(table(["target", "measured", "goal", "ratio", "verdict"], rep.targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
