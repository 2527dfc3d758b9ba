"""Synthetic German client files for the benchmarks: the demo client's 21 columns, any number of rows."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

HEADER = ["Rechnungsnr", "Kundennr", "Anrede", "Vorname", "Nachname", "Firma", "Geburtsdatum", "Strasse",
          "Hausnr", "PLZ", "Ort", "Land", "E-Mail", "Telefon", "IBAN", "Rechnungsdatum", "Faellig", "Betrag",
          "Mahngebuehr", "Mahndatum", "Bemerkung"]
_FIRST = ["Jürgen", "Anna", "Max", "Sophie", "Lukas", "Marie", "Jörg", "Käthe", "Paul", "Lena"]
_LAST = ["Müller", "Schäfer", "Meier", "Schmidt", "Weiß", "Groß", "Becker", "Hoffmann", "Köhler", "Wagner"]
_CITY = [("10115", "Berlin"), ("50667", "Köln"), ("80331", "München"), ("20095", "Hamburg"), ("04109", "Leipzig")]
_STREET = ["Hauptstraße", "Gartenweg", "Bahnhofstr.", "Lindenallee", "Am Markt"]


def _iban(n: int) -> str:
    bban = f"37040044{n % 10_000_000_000:010d}"
    check = 98 - int(bban + "131400") % 97
    return f"DE{check:02d}{bban}"


def rows(n: int, seed: int = 7) -> Iterator[list[str]]:
    """``n`` valid rows (unique references), deterministic for a seed."""
    rnd = random.Random(seed)
    ibans = [_iban(rnd.randrange(10**9)) for _ in range(997)]
    for i in range(n):
        plz, city = _CITY[i % len(_CITY)]
        cents = rnd.randrange(1000, 500_000)
        euros = f"{cents // 100:,}".replace(",", ".")
        yield [f"RE-{i:08d}", f"K-{i % 50_000:06d}", "Herr" if i % 2 else "Frau", _FIRST[i % 10], _LAST[(i // 10) % 10],
               "", f"{1 + i % 28:02d}.{1 + i % 12:02d}.{1950 + i % 50}", _STREET[i % 5], str(1 + i % 120), plz, city,
               "DE", f"kunde{i}@example.de", "", ibans[i % 997], f"{1 + i % 28:02d}.01.2025",
               f"{1 + i % 28:02d}.02.2025",
               f"{euros},{cents % 100:02d}", "5,00" if i % 3 == 0 else "", "01.03.2025" if i % 3 == 0 else "",
               "Mitgliedsbeitrag; Januar" if i % 7 == 0 else "Beitrag"]


def write_csv(path: Path, n: int) -> Path:
    """A semicolon CSV in Windows-1252 with CRLF line ends, like a German ERP export."""
    with open(path, "w", encoding="cp1252", newline="") as fh:
        fh.write(";".join(HEADER) + "\r\n")
        for r in rows(n):
            fh.write(";".join(f'"{v}"' if ";" in v else v for v in r) + "\r\n")
    return path
