"""Viewer local time: country zones, the viewer's clock, and decent hours to send a DM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fanops.geo import COUNTRY_TZ, is_decent_hour, local_time


def ms(iso_utc: str) -> int:
    """Milliseconds since the epoch for an ISO time in UTC."""
    return int(datetime.fromisoformat(iso_utc).replace(tzinfo=UTC).timestamp() * 1000)


# --- the country table ------------------------------------------------------

def test_country_table_is_large_and_well_formed() -> None:
    assert len(COUNTRY_TZ) >= 120
    for code, zone in COUNTRY_TZ.items():
        assert len(code) == 2 and code.isascii() and code.isupper(), code
        assert ZoneInfo(zone) is not None, (code, zone)


@pytest.mark.parametrize("region", [
    # the Americas
    "US CA MX GT BZ SV HN NI CR PA CU DO HT JM PR TT BR AR CL CO PE VE EC BO PY UY GY SR",
    # the EU
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE",
    # rest of Europe
    "GB NO CH IS UA RS TR RU",
    # Middle East
    "SA AE QA KW BH OM IQ IL JO LB EG IR",
    # South, Southeast and East Asia
    "IN PK BD LK NP ID MY SG TH VN PH MM KH LA BN CN HK MO TW JP KR MN",
    # Oceania
    "AU NZ FJ PG",
    # major Africa
    "NG ZA KE MA DZ TN GH CI SN ET TZ UG CM AO",
])
def test_country_table_covers_cross_border_markets(region: str) -> None:
    missing = [c for c in region.split() if c not in COUNTRY_TZ]
    assert missing == []


@pytest.mark.parametrize(("country", "zone"), [
    ("US", "America/New_York"),
    ("CA", "America/Toronto"),
    ("MX", "America/Mexico_City"),
    ("BR", "America/Sao_Paulo"),
    ("AR", "America/Argentina/Buenos_Aires"),
    ("ES", "Europe/Madrid"),
    ("PT", "Europe/Lisbon"),
    ("RU", "Europe/Moscow"),
    ("SA", "Asia/Riyadh"),
    ("AE", "Asia/Dubai"),
    ("IN", "Asia/Kolkata"),
    ("ID", "Asia/Jakarta"),
    ("VN", "Asia/Ho_Chi_Minh"),
    ("CN", "Asia/Shanghai"),
    ("JP", "Asia/Tokyo"),
    ("AU", "Australia/Sydney"),
    ("NZ", "Pacific/Auckland"),
    ("NG", "Africa/Lagos"),
    ("ZA", "Africa/Johannesburg"),
])
def test_main_zone_is_where_most_people_live(country: str, zone: str) -> None:
    assert COUNTRY_TZ[country] == zone


# --- local_time -------------------------------------------------------------

MAY_1_20H_UTC = ms("2024-05-01T20:00:00")


@pytest.mark.parametrize(("ts", "tz", "country", "expected"), [
    # a Riyadh viewer: by zone, by country, and by country when the zone is junk
    (MAY_1_20H_UTC, "Asia/Riyadh", None, "2024-05-01T23:00:00+03:00"),
    (MAY_1_20H_UTC, None, "SA", "2024-05-01T23:00:00+03:00"),
    (MAY_1_20H_UTC, "Mars/Olympus", "SA", "2024-05-01T23:00:00+03:00"),
    (MAY_1_20H_UTC, "", "sa", "2024-05-01T23:00:00+03:00"),
    (MAY_1_20H_UTC, "../../etc/passwd", "SA", "2024-05-01T23:00:00+03:00"),
    (MAY_1_20H_UTC, "/etc/localtime", "SA", "2024-05-01T23:00:00+03:00"),
    (MAY_1_20H_UTC, "Asia", "SA", "2024-05-01T23:00:00+03:00"),  # a directory, not a zone
    (MAY_1_20H_UTC, "Asia/Riyadh\x00", "SA", "2024-05-01T23:00:00+03:00"),
    (MAY_1_20H_UTC, "X" * 500, "SA", "2024-05-01T23:00:00+03:00"),
    # the viewer's own zone wins over the country's main one
    (MAY_1_20H_UTC, "America/Los_Angeles", "US", "2024-05-01T13:00:00-07:00"),
    (MAY_1_20H_UTC, "Asia/Makassar", "ID", "2024-05-02T04:00:00+08:00"),
    # spelling people use
    (MAY_1_20H_UTC, " asia/TOKYO ", None, "2024-05-02T05:00:00+09:00"),
    (MAY_1_20H_UTC, None, " br ", "2024-05-01T17:00:00-03:00"),
    (MAY_1_20H_UTC, None, "UK", "2024-05-01T21:00:00+01:00"),
    (MAY_1_20H_UTC, "UTC", "JP", "2024-05-01T20:00:00+00:00"),
    # fixed offsets as devices report them
    (MAY_1_20H_UTC, "+05:30", None, "2024-05-02T01:30:00+05:30"),
    (MAY_1_20H_UTC, "UTC+8", None, "2024-05-02T04:00:00+08:00"),
    (MAY_1_20H_UTC, "GMT-03:00", None, "2024-05-01T17:00:00-03:00"),
    (MAY_1_20H_UTC, "+25:00", "MX", "2024-05-01T14:00:00-06:00"),  # impossible offset: the country
    # daylight saving
    (ms("2024-01-15T14:00:00"), None, "US", "2024-01-15T09:00:00-05:00"),
    (ms("2024-07-15T14:00:00"), None, "US", "2024-07-15T10:00:00-04:00"),
    (ms("2024-01-15T00:00:00"), None, "AU", "2024-01-15T11:00:00+11:00"),
    (ms("2024-07-15T00:00:00"), None, "AU", "2024-07-15T10:00:00+10:00"),
    # half- and quarter-hour zones
    (MAY_1_20H_UTC, None, "IN", "2024-05-02T01:30:00+05:30"),
    (MAY_1_20H_UTC, None, "NP", "2024-05-02T01:45:00+05:45"),
])
def test_local_time(ts: int, tz: str | None, country: str | None, expected: str) -> None:
    local = local_time(ts, tz, country)
    assert local is not None
    assert local.isoformat() == expected
    assert local == datetime.fromisoformat(expected)  # the same instant


@pytest.mark.parametrize(("tz", "country"), [
    (None, None),
    ("", ""),
    ("Mars/Olympus", None),
    (None, "XX"),
    ("Mars/Olympus", "ZZ"),
    ("not a zone", "not a country"),
])
def test_local_time_unknown_is_none(tz: str | None, country: str | None) -> None:
    assert local_time(MAY_1_20H_UTC, tz, country) is None


def test_local_time_keeps_milliseconds() -> None:
    local = local_time(MAY_1_20H_UTC + 123, "Asia/Riyadh", None)
    assert local is not None and local.microsecond == 123_000


def test_local_time_out_of_range_is_none() -> None:
    assert local_time(10**20, "UTC", None) is None


def test_local_time_across_a_dst_change_is_exact() -> None:
    # US clocks go forward at 02:00 local on 2024-03-10: 06:59 UTC is 01:59 EST, 07:00 UTC is 03:00 EDT.
    before = local_time(ms("2024-03-10T06:59:00"), None, "US")
    after = local_time(ms("2024-03-10T07:00:00"), None, "US")
    assert before is not None and after is not None
    assert (before.hour, before.minute, after.hour) == (1, 59, 3)
    assert after.astimezone(UTC) - before.astimezone(UTC) == timedelta(minutes=1)
    assert (before.utcoffset(), after.utcoffset()) == (timedelta(hours=-5), timedelta(hours=-4))


# --- is_decent_hour ---------------------------------------------------------

def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, 1, hour, minute, tzinfo=ZoneInfo("Asia/Riyadh"))


@pytest.mark.parametrize(("local", "start", "end", "expected"), [
    (at(8, 59), 9, 21, False),
    (at(9, 0), 9, 21, True),
    (at(13, 30), 9, 21, True),
    (at(20, 59), 9, 21, True),
    (at(21, 0), 9, 21, False),
    (at(23, 0), 9, 21, False),
    (at(0, 0), 9, 21, False),
    (at(7, 0), 7, 22, True),
    (at(21, 30), 7, 22, True),
    (at(22, 0), 7, 22, False),
    (at(23, 59), 0, 24, True),
    (at(12, 0), 12, 12, False),  # an empty window
    (at(23, 0), 22, 2, True),  # a window past midnight
    (at(1, 0), 22, 2, True),
    (at(2, 0), 22, 2, False),
    (at(12, 0), 22, 2, False),
    (None, 9, 21, None),
])
def test_is_decent_hour(local: datetime | None, start: int, end: int, expected: bool | None) -> None:
    assert is_decent_hour(local, start, end) is expected


def test_is_decent_hour_defaults_are_9_to_21() -> None:
    assert is_decent_hour(at(9)) is True
    assert is_decent_hour(at(21)) is False
    assert is_decent_hour(None) is None


@pytest.mark.parametrize(("start", "end"), [(-1, 21), (9, 25), (30, 2)])
def test_is_decent_hour_rejects_impossible_hours(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        is_decent_hour(at(12), start, end)


@pytest.mark.parametrize(("country", "decent"), [
    ("SA", False),  # Riyadh: 23:00
    ("AE", False),  # Dubai: 00:00
    ("GB", False),  # London: 21:00 BST, the end of the window
    ("BR", True),  # São Paulo: 17:00
    ("MX", True),  # Mexico City: 14:00
    ("US", True),  # New York: 16:00
    ("ID", False),  # Jakarta: 03:00
    ("JP", False),  # Tokyo: 05:00
])
def test_same_instant_decent_in_some_countries_not_others(country: str, decent: bool) -> None:
    assert is_decent_hour(local_time(MAY_1_20H_UTC, None, country)) is decent


def test_riyadh_viewer_at_23_is_not_a_decent_hour() -> None:
    local = local_time(MAY_1_20H_UTC, "Asia/Riyadh", "SA")
    assert local is not None and local.hour == 23
    assert is_decent_hour(local) is False
