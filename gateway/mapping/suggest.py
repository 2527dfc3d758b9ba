"""Draft a mapping for an unseen file: match headers (German and English, abbreviations) and values.

Each column is classified by its sampled values (IBAN, e-mail, date, amount, postcode, text) and
matched to canonical fields by its normalised header ("Geb.-Datum" -> "gebdatum") against the alias
table, best match first: exact alias, then a header starting with one, then one containing one;
a date field only takes a date column, an amount field an amount column. Composite columns are
split ("Name, Vorname", "Musterstr. 12a", "12345 Berlin"). The draft always fills the required
fields so it passes ``mapping check``; what it could not place is listed as YAML comments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from gateway.domain.iban import iban_problem
from gateway.mapping.sample import Sample
from gateway.mapping.suggest_aliases import ALIASES, COMPOSITE_NAME, DATE_FORMATS
from gateway.mapping.suggest_fixed import place_headerless
from gateway.mapping.valuemaps import BUILTIN_MAPS

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_AMOUNT = re.compile(r"^[-+]?(?:€|EUR)?\s*\d{1,3}(?:[.,' ]?\d{3})*(?:[.,]\d{1,2})?\s*(?:€|EUR)?-?$", re.IGNORECASE)
_POSTCODE = re.compile(r"^\d{4,5}$")
_STREET_NO = re.compile(r"\D\s*\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?$")
_PLZ_CITY = re.compile(r"^(?:[A-Z]{1,2}-)?\d{4,5}\s+\S")
_REQUIRED = ("creditor_reference", "principal_amount")


def normalize(header: str) -> str:
    """Lower case, umlauts spelled out, only letters and digits: "Geb.-Datum" -> "gebdatum"."""
    return re.sub(r"[^a-z0-9]", "", header.lower().translate(_UMLAUTS))


@dataclass
class _Column:
    index: int
    name: str
    key: str
    values: list[str]
    kind: str = "empty"
    date_formats: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


def _classify(col: _Column, serials: bool = False) -> None:
    vals = col.values
    if not vals:
        return
    def share(pred: Any) -> float:
        return sum(1 for v in vals if pred(v)) / len(vals)
    if share(lambda v: len(v) >= 15 and iban_problem(v.replace(" ", "")) is None) >= 0.8:
        col.kind = "iban"
    elif share(_EMAIL.match) >= 0.8:
        col.kind = "email"
    elif (fmts := _date_formats(vals, serials)):
        col.kind, col.date_formats = "date", fmts
    elif share(_POSTCODE.match) >= 0.9 and normalize(col.name) in ("plz", "postleitzahl", "zip", "zipcode",
                                                                   "postcode", "postalcode"):
        col.kind = "postcode"
    elif share(_AMOUNT.match) >= 0.8 and share(lambda v: bool(re.search(r"[.,]\d{1,2}\s*(?:€|EUR)?-?$", v))) > 0:
        col.kind = "amount"
    elif share(str.isdigit) >= 0.9:
        col.kind = "integer"
    else:
        col.kind = "text"


def _date_formats(vals: list[str], serials: bool = False) -> list[str]:
    """The formats (in DATE_FORMATS order) that read the sampled values, or [] if fewer than 70% are dates.

    ``serials``: spreadsheet date serials (a number in a cell without a date format) count as dates.
    """
    used: list[str] = []
    dates = 0
    for v in vals:
        if re.fullmatch(r"0{1,2}[./-]0{1,2}[./-]0{2,4}", v) or (serials and re.fullmatch(r"[1-6]\d{4}", v)):
            dates += 1
            continue  # "no date" as some exports write it, or a serial the reader converts
        for fmt in DATE_FORMATS:
            try:
                datetime.strptime(v, fmt)
            except ValueError:
                continue
            dates += 1
            if fmt not in used:
                used.append(fmt)
            break
    return used if used and dates >= 0.7 * len(vals) else []


_FITS = {"date": ("date", "empty"), "amount": ("amount", "integer", "empty"), "iban": ("iban", "empty", "text"),
         "email": ("email", "empty", "text"), "postcode": ("postcode", "integer", "text", "empty")}


def _fits(target: str, col: _Column) -> bool:
    want = ("date" if target.endswith("date") else "amount" if target in _AMOUNTS else
            "iban" if target == "debtor.iban" else "email" if target == "debtor.email" else
            "postcode" if target == "debtor.postal_code" else "text")
    if want == "text":
        return col.kind not in ("date", "amount", "iban", "email") or (
            target in ("creditor_reference", "invoice_number") and col.kind != "date")
    return col.kind in _FITS[want]


_AMOUNTS = ("principal_amount", "fees.dunning", "fees.return_debit", "fees.other", "payments.amount",
            "interest.rate")


@dataclass
class Draft:
    """Placed fields (target -> YAML mapping of options), the columns left over, notes for comments."""

    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def draft_mapping(sample: Sample) -> tuple[Draft, list[_Column]]:
    """Place the sample's columns on canonical fields."""
    cols = [_Column(i, h, normalize(h), [r[i].strip() for r in sample.rows if i < len(r) and r[i].strip()])
            for i, h in enumerate(sample.header)]
    for col in cols:  # XML columns are paths ("Schuldner.Adresse.PLZ"): their last step names them best
        col.keys = [normalize(col.name.rsplit(".", 1)[-1]), col.key] if sample.nested else [col.key]
    for col in cols:
        _classify(col, serials=sample.format.get("type") in ("xlsx", "xls", "ods"))
    d = Draft()
    candidates: list[tuple[int, int, int, str, _Column]] = []
    for prio, (target, aliases) in enumerate(ALIASES):
        for col in cols:
            found = [((0 if key == alias else 1 if len(alias) >= 3 and key.startswith(alias) else 2), rank)
                     for key in col.keys for rank, alias in enumerate(aliases)
                     if key == alias or (len(alias) >= 3 and key.startswith(alias))
                     or (len(alias) >= 5 and alias in key)]
            if found and _fits(target, col):
                level, rank = min(found)
                candidates.append((level, prio, rank, target, col))
    for level, _, _, target, col in sorted(candidates, key=lambda c: c[:3]):
        if target in d.fields or (col.index in d.used and target != "invoice_number"):
            continue
        if target == "invoice_number" and col.index in d.used and d.fields.get("creditor_reference", {}).get(
                "column") != col.name:
            continue
        d.fields[target] = {"column": col.name}
        d.why[target] = ("header", "header starts like", "header contains")[level]
        d.used.add(col.index)
    _by_values(d, cols)
    _composites(d, cols, sample.format.get("type") in ("xlsx", "xls", "ods"))
    _required(d, cols)
    return d, cols


def _place(d: Draft, target: str, col: _Column, why: str, **options: Any) -> None:
    d.fields[target] = {"column": col.name, **options}
    d.why[target] = why
    d.used.add(col.index)


def _by_values(d: Draft, cols: list[_Column]) -> None:
    for col in cols:
        if col.index in d.used:
            continue
        if col.kind == "iban" and "debtor.iban" not in d.fields:
            _place(d, "debtor.iban", col, "values are IBANs")
        elif col.kind == "email" and "debtor.email" not in d.fields:
            _place(d, "debtor.email", col, "values are e-mail addresses")
        elif col.kind == "postcode" and "debtor.postal_code" not in d.fields:
            _place(d, "debtor.postal_code", col, "values are postcodes")


def _composites(d: Draft, cols: list[_Column], sample_is_sheet: bool) -> None:
    by_name = {c.name: c for c in cols}
    for col in cols:  # "Name, Vorname" in one column
        if col.index not in d.used and col.key in COMPOSITE_NAME and "debtor.last_name" not in d.fields:
            d.used.add(col.index)
            d.fields["debtor.last_name"] = {"column": col.name}
            d.why["debtor.last_name"] = "header names a full name"
    last = d.fields.get("debtor.last_name")
    if last and "debtor.first_name" not in d.fields and "column" in last:
        col = by_name[last["column"]]
        if col.values and sum("," in v or " " in v for v in col.values) / len(col.values) >= 0.5:
            last["split"] = "last_name"
            d.fields["debtor.first_name"] = {"column": col.name, "split": "first_name"}
            d.why["debtor.first_name"] = d.why["debtor.last_name"] = "'Nachname, Vorname' in one column"
    if "debtor.company" not in d.fields and "debtor.last_name" in d.fields:
        # a second name column beside the person's name is, in practice, the company's
        other = next((c for c in cols if c.index not in d.used and c.kind == "text"
                      and c.keys[0] in ("name", "name1", "firma", "bezeichnung")), None)
        if other is not None:
            _place(d, "debtor.company", other, "a name column beside the person's name")
    street = d.fields.get("debtor.street")
    if street and "debtor.house_number" not in d.fields:
        col = by_name[street["column"]]
        if col.values and sum(bool(_STREET_NO.search(v)) for v in col.values) / len(col.values) >= 0.6:
            street["split"] = "street"
            d.fields["debtor.house_number"] = {"column": col.name, "split": "house_number"}
            d.why["debtor.house_number"] = d.why["debtor.street"] = "street and house number in one column"
    city = d.fields.get("debtor.city")
    if city and "debtor.postal_code" not in d.fields:
        col = by_name[city["column"]]
        if col.values and sum(bool(_PLZ_CITY.match(v)) for v in col.values) / len(col.values) >= 0.6:
            city["split"] = "city"
            d.fields["debtor.postal_code"] = {"column": col.name, "split": "postal_code"}
            d.why["debtor.postal_code"] = d.why["debtor.city"] = "postcode and city in one column"
    title = d.fields.get("debtor.title")
    if title and "debtor.salutation" not in d.fields:  # "Title: Mr/Mrs" is a salutation, not a title
        vals = by_name[title["column"]].values
        if vals and sum(v.casefold() in BUILTIN_MAPS["salutation"] for v in vals) >= 0.8 * len(vals):
            d.fields["debtor.salutation"] = d.fields.pop("debtor.title")
            d.why["debtor.salutation"] = "values are salutations"
    postcode = d.fields.get("debtor.postal_code")
    if postcode and list(postcode) == ["column"] and sample_is_sheet:
        vals = by_name[postcode["column"]].values
        if vals and all(v.isdigit() and len(v) in (4, 5) for v in vals) and any(len(v) == 5 for v in vals):
            postcode["zero_pad"] = 5  # a spreadsheet stored 01067 as the number 1067
    if "debtor.salutation" in d.fields:
        d.fields["debtor.salutation"]["map"] = "salutation"
    if "debtor.country" in d.fields:
        d.fields["debtor.country"].update({"map": "country", "default": "DE"})
    if "claim_type" in d.fields:
        d.fields["claim_type"].update({"map": "claim_type", "map_default": "other"})
    for target in _AMOUNTS:  # "Betrag in Cent", "amount_cents": integers in minor units
        opts = d.fields.get(target)
        if opts and "column" in opts and "cent" in normalize(opts["column"]) and by_name[opts["column"]].kind in (
                "integer", "empty"):
            opts["implied_decimals"] = 2
    birth = d.fields.get("debtor.birth_date")
    if birth and any("%y" in f for f in by_name[birth["column"]].date_formats):
        birth["year_pivot"] = (date.today().year + 1) % 100  # a two-digit birth year is never in the future


def _required(d: Draft, cols: list[_Column]) -> None:
    free = [c for c in cols if c.index not in d.used]
    if "principal_amount" not in d.fields:
        col = next((c for c in free if c.kind == "amount"), None)
        if col is not None:
            _place(d, "principal_amount", col, "GUESS: the first amount column")
    if "creditor_reference" not in d.fields:
        col = next((c for c in free if c.kind in ("text", "integer") and c.values
                    and len(set(c.values)) == len(c.values)), None)
        if col is not None:
            _place(d, "creditor_reference", col, "GUESS: the first column whose values are all different")
    for target in _REQUIRED:
        if target not in d.fields and cols:
            d.fields[target] = {"column": cols[0].name}
            d.why[target] = "TODO: nothing fitted; replace this column"


# ---------------------------------------------------------------- YAML text

def _q(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else json.dumps(value)


def _formats(sample: Sample, cols: list[_Column], d: Draft) -> dict[str, Any]:
    fmt = dict(sample.format)
    if sample.headerless:
        return fmt
    used = [c for c in cols if c.index in d.used]
    amounts = [v for c in used if c.kind == "amount" for v in c.values]
    comma = sum(bool(re.search(r",\d{1,2}\s*(?:€|EUR)?-?$", v)) for v in amounts)
    point = sum(bool(re.search(r"\.\d{1,2}\s*(?:€|EUR)?-?$", v)) for v in amounts)
    # no evidence either way: a comma-separated file rarely writes decimal commas
    fmt["decimal_separator"] = "." if point > comma or (point == comma and fmt.get("delimiter") == ",") else ","
    dates: list[str] = []
    for c in used:
        dates.extend(f for f in c.date_formats if f not in dates)
    fmt["date_formats"] = dates or ["%d.%m.%Y", "%Y-%m-%d"]
    return fmt


def suggest_mapping(sample: Sample, *, client: str) -> str:
    """The YAML draft for ``sample``; it loads with ``load_mapping`` as it is."""
    if sample.headerless:
        d, cols = Draft(), [_Column(i, h, h, []) for i, h in enumerate(sample.header)]
        d.fields, d.why = place_headerless(sample)
        d.used = {i for i, h in enumerate(sample.header) if any(o.get("column") == h for o in d.fields.values())}
    else:
        d, cols = draft_mapping(sample)
    out = ["# Draft made by `gateway mapping suggest`: check each line against the file, then run",
           "# `gateway mapping check --file <this file>` and `gateway mapping preview`. Reference: docs/mapping.md",
           "version: 1", f"client: {_q(client)}", "", "format:"]
    for key, value in _formats(sample, cols, d).items():
        if isinstance(value, dict):
            out.append(f"  {key}:")
            out.extend(f"    {_q(k)}: {_q(v)}" for k, v in value.items())
        elif isinstance(value, list):
            out.append(f"  {key}: [{', '.join(_q(v) for v in value)}]")
        else:
            out.append(f"  {key}: {_q(value)}")
    out += ["", "fields:"]
    order = {t: i for i, (t, _) in enumerate(ALIASES)}
    for target in sorted(d.fields, key=lambda t: order.get(t, len(order))):
        opts = d.fields[target]
        body = (_q(opts["column"]) if list(opts) == ["column"]
                else "{" + ", ".join(f"{k}: {_q(v)}" for k, v in opts.items()) + "}")
        out.append(f"  {target}: {body}  # {d.why.get(target, '')}")
    left = [c for c in cols if c.index not in d.used]
    if left:
        out += ["", "# Columns not placed (map them by hand if they matter):"]
        out += [f"#   {_q(c.name)}: " + (c.name.split("_")[0] if sample.headerless else
                                                 c.kind if c.kind != "empty" else "empty in the sample") for c in left]
    missing = [t for t in ("debtor.last_name", "debtor.street", "debtor.postal_code", "debtor.city",
                           "invoice_date", "due_date") if t not in d.fields]
    if missing:
        out.append(f"# Fields not found in the file: {', '.join(missing)}")
    return "\n".join(out) + "\n"
