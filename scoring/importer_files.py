"""Reading customer files into generic rows: the generic CSV of spec/cli.md, and Shopify's
customers export with its orders export beside it (README "Customer history import").

Shopify's customers export has the totals (``Total Orders``, ``Total Spent``) but no dates and no
currency: those come from the orders export (one row per line item; an order's own fields on its
first line), matched by email: the first and last ``Created at`` of the customer's orders and
their ``Currency``. A customer with orders and no order in the orders export is skipped with
that reason.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from fanops.errors import ImportFileError
from scoring.importer import COLUMNS, RowError, parse_time

# Shopify column -> generic column (current export names first, then those of older exports)
SHOPIFY_CUSTOMER = {
    "Customer ID": "viewer_id", "ID": "viewer_id", "Email": "email", "Phone": "phone",
    "Default Address Phone": "phone_2", "Default Address Country Code": "country", "Country Code": "country",
    "Total Orders": "orders", "Total Spent": "spend", "Accepts Email Marketing": "accepts_email",
    "Accepts Marketing": "accepts_email", "Accepts SMS Marketing": "accepts_sms",
}
ORDERS_GLOBS = ("orders_export*.csv", "orders*.csv")


def open_csv(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """The header and the data rows of a UTF-8 CSV file (a BOM is allowed)."""
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise ImportFileError(f"cannot read {path}: {e.strerror or e}") from e
    reader = csv.reader(f)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ImportFileError(f"{path} is empty: a header row is needed") from None
    except UnicodeDecodeError as e:
        raise ImportFileError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    return header, _rows(reader, path)


def _rows(reader: Iterator[list[str]], path: Path) -> Iterator[list[str]]:
    """The data rows: an empty line (the one an editor or a spreadsheet leaves at the end) is none,
    so it is neither counted nor numbered."""
    try:
        yield from (row for row in reader if row)
    except UnicodeDecodeError as e:
        raise ImportFileError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e


def generic_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number from 1 after the header, fields by generic column name)."""
    header, rows = open_csv(path)
    if "viewer_id" not in header:
        raise ImportFileError(f"{path}: no viewer_id column (the generic format's columns: {', '.join(COLUMNS)})")
    idx = [(c, header.index(c)) for c in COLUMNS if c in header]
    for no, row in enumerate(rows, 1):
        yield no, {c: row[i] if i < len(row) else "" for c, i in idx}


def _orders_file(customers: Path) -> Path | None:
    for pattern in ORDERS_GLOBS:
        found = sorted(p for p in customers.parent.glob(pattern) if p != customers)
        if found:
            return found[0]
    return None


def shopify_order_dates(path: Path) -> dict[str, tuple[int, int, str]]:
    """Orders export -> email (lower case) -> (first created ms, last created ms, currency)."""
    header, rows = open_csv(path)
    need = ("Email", "Created at", "Currency")
    if any(c not in header for c in need):
        raise ImportFileError(f"{path}: a Shopify orders export needs the columns {', '.join(need)}")
    ie, ic, ik = (header.index(c) for c in need)
    out: dict[str, tuple[int, int, str]] = {}
    for row in rows:
        if len(row) <= max(ie, ic, ik) or not row[ic].strip() or not row[ie].strip():
            continue  # a line item after an order's first line: the order's fields are empty
        try:
            ts = parse_time(row[ic], "Created at")
        except RowError:
            continue
        email = row[ie].strip().lower()
        got = out.get(email)
        out[email] = (ts, ts, row[ik].strip()) if got is None else (min(got[0], ts), max(got[1], ts), got[2])
    return out


def shopify_rows(path: Path, orders: Path | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Shopify's customers export (and its orders export, by default the ``orders_export*.csv``
    beside it) as generic rows."""
    header, rows = open_csv(path)
    if "Customer ID" not in header and "ID" not in header:
        raise ImportFileError(f"{path}: no Customer ID column: is it Shopify's customers export?")
    orders = orders or _orders_file(path)
    dates = shopify_order_dates(orders) if orders else {}
    cols = [(SHOPIFY_CUSTOMER[h], i) for i, h in enumerate(header) if h in SHOPIFY_CUSTOMER]
    i_first = header.index("First Name") if "First Name" in header else -1
    i_last = header.index("Last Name") if "Last Name" in header else -1
    for no, row in enumerate(rows, 1):
        f = {c: row[i].strip().lstrip("'") for c, i in cols if i < len(row)}  # '123: kept as text by Excel
        if not f.get("phone"):
            f["phone"] = f.get("phone_2", "")
        name = " ".join(row[i].strip() for i in (i_first, i_last) if 0 <= i < len(row) and row[i].strip())
        f["name"] = name
        got = dates.get(f.get("email", "").lower())
        if got is not None:
            f["first_order_at"], f["last_order_at"] = (datetime.fromtimestamp(t / 1000, UTC).isoformat()
                                                       for t in got[:2])
            f["currency"] = got[2]
        else:
            where = orders.name if orders else "an orders export beside it"
            f["why_no_dates"] = f"no order of this customer in {where}"
        yield no, f
