"""Viewer local time: a country's main time zone, and whether it is a decent hour to send a DM.

A follow-up DM should land in the viewer's daytime (spec/tiers.md, "Follow-up
queue"; the ``decent_hour_start``/``decent_hour_end`` rule settings).  The
viewer's own IANA zone is used when the platform gives one; otherwise the main
zone of their country.  Pure functions over ``zoneinfo`` (backed by the
``tzdata`` package), no other I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# ISO 3166-1 alpha-2 code -> the IANA zone where most of the country's people
# live (for one-zone countries, its only zone).  Multi-zone countries, by
# population: US Eastern, CA Ontario/Quebec, BR Brasília time, MX Central, RU
# Moscow, AU New South Wales, ID Western (Java, Sumatra), KZ Almaty, CD east
# (Kasai, Katanga, Kivu), CL mainland, EC mainland, ES peninsula, PT mainland.
COUNTRY_TZ: dict[str, str] = {
    # North America
    "US": "America/New_York",
    "CA": "America/Toronto",
    "MX": "America/Mexico_City",
    "GL": "America/Nuuk",
    "BM": "Atlantic/Bermuda",
    "PM": "America/Miquelon",
    # Central America
    "GT": "America/Guatemala",
    "BZ": "America/Belize",
    "SV": "America/El_Salvador",
    "HN": "America/Tegucigalpa",
    "NI": "America/Managua",
    "CR": "America/Costa_Rica",
    "PA": "America/Panama",
    # Caribbean
    "CU": "America/Havana",
    "DO": "America/Santo_Domingo",
    "HT": "America/Port-au-Prince",
    "JM": "America/Jamaica",
    "PR": "America/Puerto_Rico",
    "TT": "America/Port_of_Spain",
    "BS": "America/Nassau",
    "BB": "America/Barbados",
    "AW": "America/Aruba",
    "CW": "America/Curacao",
    "SX": "America/Lower_Princes",
    "BQ": "America/Kralendijk",
    "MF": "America/Marigot",
    "BL": "America/St_Barthelemy",
    "GP": "America/Guadeloupe",
    "MQ": "America/Martinique",
    "LC": "America/St_Lucia",
    "VC": "America/St_Vincent",
    "GD": "America/Grenada",
    "AG": "America/Antigua",
    "DM": "America/Dominica",
    "KN": "America/St_Kitts",
    "AI": "America/Anguilla",
    "MS": "America/Montserrat",
    "KY": "America/Cayman",
    "TC": "America/Grand_Turk",
    "VG": "America/Tortola",
    "VI": "America/St_Thomas",
    # South America
    "BR": "America/Sao_Paulo",
    "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago",
    "CO": "America/Bogota",
    "PE": "America/Lima",
    "VE": "America/Caracas",
    "EC": "America/Guayaquil",
    "BO": "America/La_Paz",
    "PY": "America/Asuncion",
    "UY": "America/Montevideo",
    "GY": "America/Guyana",
    "SR": "America/Paramaribo",
    "GF": "America/Cayenne",
    "FK": "Atlantic/Stanley",
    # European Union
    "AT": "Europe/Vienna",
    "BE": "Europe/Brussels",
    "BG": "Europe/Sofia",
    "HR": "Europe/Zagreb",
    "CY": "Asia/Nicosia",
    "CZ": "Europe/Prague",
    "DK": "Europe/Copenhagen",
    "EE": "Europe/Tallinn",
    "FI": "Europe/Helsinki",
    "FR": "Europe/Paris",
    "DE": "Europe/Berlin",
    "GR": "Europe/Athens",
    "HU": "Europe/Budapest",
    "IE": "Europe/Dublin",
    "IT": "Europe/Rome",
    "LV": "Europe/Riga",
    "LT": "Europe/Vilnius",
    "LU": "Europe/Luxembourg",
    "MT": "Europe/Malta",
    "NL": "Europe/Amsterdam",
    "PL": "Europe/Warsaw",
    "PT": "Europe/Lisbon",
    "RO": "Europe/Bucharest",
    "SK": "Europe/Bratislava",
    "SI": "Europe/Ljubljana",
    "ES": "Europe/Madrid",
    "SE": "Europe/Stockholm",
    # Rest of Europe
    "GB": "Europe/London",
    "NO": "Europe/Oslo",
    "CH": "Europe/Zurich",
    "IS": "Atlantic/Reykjavik",
    "LI": "Europe/Vaduz",
    "MC": "Europe/Monaco",
    "SM": "Europe/San_Marino",
    "VA": "Europe/Vatican",
    "AD": "Europe/Andorra",
    "GI": "Europe/Gibraltar",
    "JE": "Europe/Jersey",
    "GG": "Europe/Guernsey",
    "IM": "Europe/Isle_of_Man",
    "FO": "Atlantic/Faroe",
    "UA": "Europe/Kyiv",
    "BY": "Europe/Minsk",
    "MD": "Europe/Chisinau",
    "RU": "Europe/Moscow",
    "RS": "Europe/Belgrade",
    "BA": "Europe/Sarajevo",
    "ME": "Europe/Podgorica",
    "MK": "Europe/Skopje",
    "AL": "Europe/Tirane",
    "TR": "Europe/Istanbul",
    "GE": "Asia/Tbilisi",
    "AM": "Asia/Yerevan",
    "AZ": "Asia/Baku",
    # Middle East
    "SA": "Asia/Riyadh",
    "AE": "Asia/Dubai",
    "QA": "Asia/Qatar",
    "KW": "Asia/Kuwait",
    "BH": "Asia/Bahrain",
    "OM": "Asia/Muscat",
    "YE": "Asia/Aden",
    "IQ": "Asia/Baghdad",
    "IR": "Asia/Tehran",
    "IL": "Asia/Jerusalem",
    "PS": "Asia/Hebron",
    "JO": "Asia/Amman",
    "LB": "Asia/Beirut",
    "SY": "Asia/Damascus",
    # Central Asia
    "KZ": "Asia/Almaty",
    "UZ": "Asia/Tashkent",
    "KG": "Asia/Bishkek",
    "TJ": "Asia/Dushanbe",
    "TM": "Asia/Ashgabat",
    "AF": "Asia/Kabul",
    # South Asia
    "IN": "Asia/Kolkata",
    "PK": "Asia/Karachi",
    "BD": "Asia/Dhaka",
    "LK": "Asia/Colombo",
    "NP": "Asia/Kathmandu",
    "BT": "Asia/Thimphu",
    "MV": "Indian/Maldives",
    # Southeast Asia
    "ID": "Asia/Jakarta",
    "MY": "Asia/Kuala_Lumpur",
    "SG": "Asia/Singapore",
    "TH": "Asia/Bangkok",
    "VN": "Asia/Ho_Chi_Minh",
    "PH": "Asia/Manila",
    "MM": "Asia/Yangon",
    "KH": "Asia/Phnom_Penh",
    "LA": "Asia/Vientiane",
    "BN": "Asia/Brunei",
    "TL": "Asia/Dili",
    # East Asia
    "CN": "Asia/Shanghai",
    "HK": "Asia/Hong_Kong",
    "MO": "Asia/Macau",
    "TW": "Asia/Taipei",
    "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul",
    "KP": "Asia/Pyongyang",
    "MN": "Asia/Ulaanbaatar",
    # Oceania
    "AU": "Australia/Sydney",
    "NZ": "Pacific/Auckland",
    "FJ": "Pacific/Fiji",
    "PG": "Pacific/Port_Moresby",
    "NC": "Pacific/Noumea",
    "PF": "Pacific/Tahiti",
    "WS": "Pacific/Apia",
    "TO": "Pacific/Tongatapu",
    "VU": "Pacific/Efate",
    "SB": "Pacific/Guadalcanal",
    "GU": "Pacific/Guam",
    "MP": "Pacific/Saipan",
    "AS": "Pacific/Pago_Pago",
    "KI": "Pacific/Tarawa",
    "FM": "Pacific/Chuuk",
    "MH": "Pacific/Majuro",
    "PW": "Pacific/Palau",
    "NR": "Pacific/Nauru",
    "TV": "Pacific/Funafuti",
    "CK": "Pacific/Rarotonga",
    # North Africa
    "EG": "Africa/Cairo",
    "MA": "Africa/Casablanca",
    "DZ": "Africa/Algiers",
    "TN": "Africa/Tunis",
    "LY": "Africa/Tripoli",
    "SD": "Africa/Khartoum",
    "EH": "Africa/El_Aaiun",
    # West Africa
    "NG": "Africa/Lagos",
    "GH": "Africa/Accra",
    "CI": "Africa/Abidjan",
    "SN": "Africa/Dakar",
    "ML": "Africa/Bamako",
    "BF": "Africa/Ouagadougou",
    "NE": "Africa/Niamey",
    "BJ": "Africa/Porto-Novo",
    "TG": "Africa/Lome",
    "GN": "Africa/Conakry",
    "SL": "Africa/Freetown",
    "LR": "Africa/Monrovia",
    "GM": "Africa/Banjul",
    "GW": "Africa/Bissau",
    "MR": "Africa/Nouakchott",
    "CV": "Atlantic/Cape_Verde",
    # Central Africa
    "CM": "Africa/Douala",
    "CD": "Africa/Lubumbashi",
    "CG": "Africa/Brazzaville",
    "GA": "Africa/Libreville",
    "GQ": "Africa/Malabo",
    "CF": "Africa/Bangui",
    "TD": "Africa/Ndjamena",
    "AO": "Africa/Luanda",
    "ST": "Africa/Sao_Tome",
    # East Africa
    "KE": "Africa/Nairobi",
    "ET": "Africa/Addis_Ababa",
    "TZ": "Africa/Dar_es_Salaam",
    "UG": "Africa/Kampala",
    "RW": "Africa/Kigali",
    "BI": "Africa/Bujumbura",
    "SO": "Africa/Mogadishu",
    "DJ": "Africa/Djibouti",
    "ER": "Africa/Asmara",
    "SS": "Africa/Juba",
    "MG": "Indian/Antananarivo",
    "MU": "Indian/Mauritius",
    "RE": "Indian/Reunion",
    "YT": "Indian/Mayotte",
    "SC": "Indian/Mahe",
    "KM": "Indian/Comoro",
    # Southern Africa
    "ZA": "Africa/Johannesburg",
    "MZ": "Africa/Maputo",
    "ZM": "Africa/Lusaka",
    "ZW": "Africa/Harare",
    "MW": "Africa/Blantyre",
    "BW": "Africa/Gaborone",
    "NA": "Africa/Windhoek",
    "LS": "Africa/Maseru",
    "SZ": "Africa/Mbabane",
}

# Codes people use that are not ISO 3166-1: the UK and (in EU usage) Greece.
_COUNTRY_ALIASES: dict[str, str] = {"UK": "GB", "EL": "GR"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A fixed offset as devices sometimes report it: "+08:00", "UTC+8", "GMT-0330".
_OFFSET_RE = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)


@lru_cache(maxsize=1)
def _zones_by_lower() -> dict[str, str]:
    return {key.lower(): key for key in available_timezones()}


def _zone(name: str) -> tzinfo | None:
    """The zone an IANA key or fixed offset names, or None if it names none."""
    name = name.strip()
    if not name or len(name) > 64:
        return None
    m = _OFFSET_RE.fullmatch(name)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes >= 60:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        return timezone(-offset if m.group(1) == "-" else offset)
    key = _zones_by_lower().get(name.lower())  # IANA keys are case-sensitive; people's spelling is not
    if key is None:
        return None
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def viewer_zone(tz: str | None, country: str | None) -> tzinfo | None:
    """The viewer's time zone: ``tz`` if it names one, else their country's main zone, else None.

    ``tz`` is an IANA key (``"Asia/Riyadh"``, case-insensitive, surrounding
    spaces ignored) or a fixed UTC offset (``"+08:00"``, ``"UTC+8"``,
    ``"GMT-03:30"``); anything else (garbage, a path, an unknown zone) is
    ignored.  ``country`` is an ISO 3166-1 alpha-2 code looked up in
    :data:`COUNTRY_TZ` (case-insensitive; ``UK`` is accepted for ``GB``).
    """
    if isinstance(tz, str):
        zone = _zone(tz)
        if zone is not None:
            return zone
    if isinstance(country, str):
        code = country.strip().upper()
        key = COUNTRY_TZ.get(_COUNTRY_ALIASES.get(code, code))
        if key is not None:
            return ZoneInfo(key)
    return None


def local_time(ts_ms: int, tz: str | None, country: str | None) -> datetime | None:
    """The viewer's local wall-clock time at ``ts_ms`` (milliseconds since the Unix epoch, UTC).

    Returns an aware datetime in the zone chosen by :func:`viewer_zone` (the
    viewer's ``tz`` if valid, else their country's main zone), exact to the
    millisecond and correct across daylight-saving changes; None when neither
    names a zone or ``ts_ms`` is outside the years datetime can represent.
    """
    zone = viewer_zone(tz, country)
    if zone is None:
        return None
    try:
        return (_EPOCH + timedelta(milliseconds=ts_ms)).astimezone(zone)
    except OverflowError:
        return None


def is_decent_hour(local: datetime | None, start_hour: int = 9, end_hour: int = 21) -> bool | None:
    """Whether ``local`` falls in the hours when a DM may be sent; None if the local time is unknown.

    True iff ``start_hour <= local.hour < end_hour`` (so 9 and 21 allow 09:00
    to 20:59).  If ``start_hour > end_hour`` the window wraps past midnight
    (22 and 2 allow 22:00 to 01:59); equal hours allow no time at all.  Hours
    must be within 0..24, else ValueError.
    """
    if not (0 <= start_hour <= 24 and 0 <= end_hour <= 24):
        raise ValueError(f"hours must be within 0..24, got start={start_hour} end={end_hour}")
    if local is None:
        return None
    if start_hour <= end_hour:
        return start_hour <= local.hour < end_hour
    return local.hour >= start_hour or local.hour < end_hour
