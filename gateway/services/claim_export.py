"""Export claims as CSV or XLSX for operators (``gateway claims export``), safe to open in a spreadsheet.

Every text cell that a spreadsheet would take for a formula (starting with = + - @ tab or CR) gets a
leading apostrophe (``ack.safe_cell``), in both formats, so a file saved again as CSV stays safe. XLSX
cells are written as strings, never through xlsxwriter's formula detection. Amounts are decimal text
(no floats). Personal data (debtor name, birth date, address, e-mail, IBAN) is decrypted only when asked;
the XLSX then says so on its first sheet, and the caller says so on the terminal.
Claims are read a page at a time, so memory stays flat however many there are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import xlsxwriter  # type: ignore[import-untyped]

from gateway.bootstrap import App
from gateway.domain.model import from_minor
from gateway.services.ack import safe_cell
from gateway.store import claims as claim_store
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx

PAGE = 1000
COLUMNS = ("claim_id", "client_id", "creditor_reference", "invoice_number", "state", "claim_type", "currency",
           "principal_amount", "open_amount", "partner_id", "invoice_date", "due_date", "received_at")
PERSONAL = ("debtor_kind", "debtor_name", "birth_date", "street", "house_number", "postal_code", "city", "country",
            "email", "iban")


@dataclass
class ExportFilter:
    client_id: str | None = None
    state: str | None = None
    submission_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    sandbox: bool = False  # without a client: every client's sandbox instead of production (docs/sandbox.md)


def submission_id(app: App, reference: str) -> int:
    """The id of a submission by its reference (NotFound otherwise)."""
    with read_tx(app.engine) as conn:
        return int(sub_store.get(conn, reference)["id"])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def rows(app: App, f: ExportFilter, personal: bool) -> Iterator[list[str]]:
    """Formula-safe text rows, oldest page last (the store's order: newest first)."""
    offset = 0
    while True:
        with read_tx(app.engine) as conn:
            page = claim_store.listing(conn, client_id=f.client_id, state=f.state, submission_id=f.submission_id,
                                       since=f.since, until=f.until, limit=PAGE, offset=offset, sandbox=f.sandbox)
            full = {r["id"]: r for r in claim_store.rows_by_ids(conn, [r["id"] for r in page])} if personal else {}
        for r in page:
            cur = r["currency"]
            out = [r["id"], r["client_id"], r["creditor_reference"], r["invoice_number"], r["state"], r["claim_type"],
                   cur, from_minor(r["principal_minor"], cur), from_minor(r["open_minor"], cur), r["partner_id"],
                   r["invoice_date"], r["due_date"], r["created_at"]]
            if personal:
                d = claim_store.decode(full[r["id"]], app.cipher).debtor
                a = d.addresses[0] if d.addresses else None
                out += [d.kind.value, d.display_name(), d.birth_date, a and a.street, a and a.house_number,
                        a and a.postal_code, a and a.city, a and a.country, d.emails[0] if d.emails else None,
                        d.bank_accounts[0].iban if d.bank_accounts else None]
            yield [safe_cell(_text(v)) for v in out]
        if len(page) < PAGE:
            return
        offset += PAGE


def header(personal: bool) -> list[str]:
    return list(COLUMNS + PERSONAL) if personal else list(COLUMNS)


def write_csv(app: App, f: ExportFilter, personal: bool, out: IO[str], delimiter: str = ";") -> int:
    """CSV (UTF-8, ``;`` like the clients' own files); returns the number of claims."""
    w = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(header(personal))
    n = 0
    for row in rows(app, f, personal):
        w.writerow(row)
        n += 1
    return n


def write_xlsx(app: App, f: ExportFilter, personal: bool, path: Path, about: list[tuple[str, str]]) -> int:
    """XLSX with an ``about`` sheet first (what, when, whether personal data is in it), then ``claims``."""
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                           "strings_to_numbers": False, "strings_to_urls": False})
    try:
        info = book.add_worksheet("about")
        sheet = book.add_worksheet("claims")
        bold = book.add_format({"bold": True})
        for c, name in enumerate(header(personal)):
            sheet.write_string(0, c, name, bold)
        n = 0
        for n, row in enumerate(rows(app, f, personal), start=1):
            for c, value in enumerate(row):
                sheet.write_string(n, c, value)
        for i, (k, v) in enumerate([*about, ("claims", str(n))]):
            info.write_string(i, 0, k, bold)
            info.write_string(i, 1, safe_cell(v))
    finally:
        book.close()
    return n
