"""Draft a mapping for an unseen file: match headers (German and English, abbreviations) and values.

Each column is profiled by its sampled values (``suggest_profile``: IBAN, e-mail, date, amount, currency,
country, phone, "Name, Vorname", street with number, postcode with city, person/company flag, text) and
matched to canonical fields by its normalised header ("Geb.-Datum" -> "gebdatum") against the alias table,
best match first: exact alias, then a header starting with one, then one containing one; a field only takes
a column whose values fit it. Columns no header placed are placed by their values. Persons and companies are
told apart by a flag column or by legal forms in the name. The draft is then run over the sample: a field
whose values do not parse is flagged, or dropped if most do not. It always fills the required fields so it
passes ``mapping check``; what it is unsure of, and what it could not place, it says in YAML comments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from gateway.mapping.sample import Sample
from gateway.mapping.suggest_aliases import ALIASES, COMPOSITE_NAME, DATE_FORMATS
from gateway.mapping.suggest_fixed import place_headerless
from gateway.mapping.suggest_parties import parties
from gateway.mapping.suggest_profile import PLZ_CITY, STREET_NO, classify, fits, share
from gateway.mapping.valuemaps import BUILTIN_MAPS

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_REQUIRED = ("creditor_reference", "principal_amount")
_IBAN_LIKE = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9 ]{10,}$")


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


def _date_formats(vals: list[str], serials: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """The formats (in DATE_FORMATS order) that read the sampled values, or [] if fewer than 70% are dates.

    ``serials``: spreadsheet date serials (a number in a cell without a date format) count as dates.
    """
    used: list[str] = []
    dates = 0
    for v in vals:
        if re.fullmatch(r"0{1,2}[./-]?0{1,2}[./-]?0{2,4}", v) or (serials and re.fullmatch(r"[1-6]\d{4}", v)):
            dates += 1
            continue  # "no date" as some exports write it, or a serial the reader converts
        for fmt in DATE_FORMATS + extra:
            try:
                parsed = datetime.strptime(v, fmt)
            except ValueError:
                continue
            if not 1900 <= parsed.year < 2100:
                continue
            dates += 1
            if fmt not in used:
                used.append(fmt)
            break
    return used if used and dates >= 0.7 * len(vals) else []


@dataclass
class Draft:
    """Placed fields (target -> YAML mapping of options), why, what is unsure, the columns used, notes."""

    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    unsure: dict[str, str] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _keys(name: str, nested: bool) -> list[str]:
    if not nested:
        return [normalize(name)]
    steps = [normalize(s) for s in name.split(".")]  # XML: "Debitor.Anschrift.PLZ"; the last step names it best
    keys = [steps[-1]] + ([steps[-2] + steps[-1]] if len(steps) > 1 else []) + [normalize(name)]
    return list(dict.fromkeys(keys))


def draft_mapping(sample: Sample) -> tuple[Draft, list[_Column]]:
    """Place the sample's columns on canonical fields."""
    sheet = sample.format.get("type") in ("xlsx", "xls", "ods")
    extra = ("%d%m%Y",) if sample.format.get("type") == "fixed_width" else ()
    cols = [_Column(i, h, normalize(h), [r[i].strip() for r in sample.rows if i < len(r) and r[i].strip()])
            for i, h in enumerate(sample.header)]
    for col in cols:
        col.keys = _keys(col.name, sample.nested)
        col.kind, _ = classify(col.values, col.key, lambda v: _date_formats(v, sheet, extra))
        if col.name in sample.repeated:
            col.kind = "repeated"  # several per record: the first one alone would be wrong
        if sample.header.count(col.name) > 1:
            col.kind = "duplicate"  # a name the header has twice cannot be named in a mapping
        if col.kind == "date":
            col.date_formats = _date_formats(col.values, sheet, extra)
        described = sample.date_formats.get(col.name)
        if described and col.values:  # the record description names the notation
            col.kind, col.date_formats = "date", [described]
    d = Draft()
    d.notes += [f"the header has '{name}' {sample.header.count(name)} times: a mapping cannot name such a column "
                "(rename it in the export)" for name in dict.fromkeys(sample.header) if sample.header.count(name) > 1]
    candidates: list[tuple[int, int, int, str, _Column]] = []
    for prio, (target, aliases) in enumerate(ALIASES):
        for col in cols:
            found = [((0 if key == alias else 1 if len(alias) >= 3 and key.startswith(alias) else 2), rank)
                     for key in col.keys for rank, alias in enumerate(aliases)
                     if key == alias or (len(alias) >= 3 and key.startswith(alias))
                     or (len(alias) >= 5 and alias in key)]
            if found and fits(target, col.kind, col.values, col.keys, sheet=sheet):
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
        if level == 2:
            d.unsure[target] = "only part of the header matched"
        d.used.add(col.index)
    _summed_columns(d, cols, sheet)
    for target, opts in d.fields.items():
        if opts.get("column") in sample.summed:
            d.why[target] += "; the sum over all its elements in a record"
    _by_values(d, cols)
    _composites(d, cols, sheet)
    parties(d, cols)
    _required(d, cols, sheet)
    return d, cols


_FEES = ("fees.dunning", "fees.return_debit", "fees.other", "payments.amount")


def _summed_columns(d: Draft, cols: list[_Column], sheet: bool) -> None:
    """Fees spread over numbered columns ("Mahngebühr 1", "Mahngebühr 2"): one field adding them up."""
    for target in _FEES:
        column = d.fields.get(target, {}).get("column")
        first = next((c for c in cols if c.name == column), None)
        if first is None:
            continue
        stem = re.sub(r"\d+$", "", first.key)
        if stem == first.key:
            continue
        more = [c for c in cols if c.index not in d.used and re.sub(r"\d+$", "", c.key) == stem and c.key != stem
                and fits(target, c.kind, c.values, c.keys, sheet=sheet)]
        if more:
            d.fields[target] = {"columns": [first.name, *(c.name for c in more)], "sum": True}
            d.why[target] += f"; the sum of {len(more) + 1} numbered columns"
            d.used.update(c.index for c in more)


def _place(d: Draft, target: str, col: _Column, why: str, **options: Any) -> None:
    d.fields[target] = {"column": col.name, **options}
    d.why[target] = why
    d.used.add(col.index)


_BY_KIND = {"iban": ("debtor.iban", "values are IBANs"),
            "email": ("debtor.email", "values are e-mail addresses"),
            "phone": ("debtor.phone", "values are phone numbers"),
            "currency": ("currency", "values are currency codes"),
            "country": ("debtor.country", "values are countries"),
            "partytype": ("debtor.kind", "values say person or company")}


def _by_values(d: Draft, cols: list[_Column]) -> None:
    for col in cols:
        if col.index in d.used:
            continue
        if col.kind in _BY_KIND and _BY_KIND[col.kind][0] not in d.fields:
            _place(d, *_BY_KIND[col.kind][:1], col, _BY_KIND[col.kind][1])
        elif col.kind == "fullname" and "debtor.last_name" not in d.fields:
            _place(d, "debtor.last_name", col, "values are 'Nachname, Vorname'")
        elif col.kind == "street_no" and "debtor.street" not in d.fields:
            _place(d, "debtor.street", col, "values are streets with a house number")
        elif col.kind == "plz_city" and "debtor.city" not in d.fields and "debtor.postal_code" not in d.fields:
            _place(d, "debtor.city", col, "values are postcode and city")
        elif col.kind == "address" and "debtor.street" not in d.fields:
            _place(d, "debtor.street", col, "values are whole addresses")


def _composites(d: Draft, cols: list[_Column], sample_is_sheet: bool) -> None:
    by_name = {c.name: c for c in cols}
    for col in cols:  # "Name, Vorname" in one column
        if col.index not in d.used and col.key in COMPOSITE_NAME and "debtor.last_name" not in d.fields \
                and col.kind in ("text", "fullname"):
            _place(d, "debtor.last_name", col, "header names a full name")
    last = d.fields.get("debtor.last_name")
    if last and "debtor.first_name" not in d.fields and "column" in last:
        col = by_name[last["column"]]
        if col.values and share(col.values, lambda v: "," in v or " " in v) >= 0.5:
            last["split"] = "last_name"
            d.fields["debtor.first_name"] = {"column": col.name, "split": "first_name"}
            d.why["debtor.first_name"] = d.why["debtor.last_name"] = "'Nachname, Vorname' in one column"
            if share(col.values, lambda v: "," in v) < 0.5:
                d.unsure["debtor.first_name"] = d.unsure["debtor.last_name"] = \
                    "no comma: the last word is taken as the last name"
    if "debtor.company" not in d.fields and "debtor.last_name" in d.fields:
        # a second name column beside the person's name is, in practice, the company's
        other = next((c for c in cols if c.index not in d.used and c.kind in ("text", "empty")
                      and c.keys[0] in ("name", "name1", "firma", "bezeichnung")), None)
        if other is not None:
            _place(d, "debtor.company", other, "a name column beside the person's name")
    _whole_address(d, by_name)
    street = d.fields.get("debtor.street")
    if street and "debtor.house_number" not in d.fields:
        col = by_name[street["column"]]
        if col.values and share(col.values, lambda v: bool(STREET_NO.search(v))) >= 0.6:
            street["split"] = "street"
            d.fields["debtor.house_number"] = {"column": col.name, "split": "house_number"}
            d.why["debtor.house_number"] = d.why["debtor.street"] = "street and house number in one column"
    city = d.fields.get("debtor.city")
    if city and "debtor.postal_code" not in d.fields:
        col = by_name[city["column"]]
        if col.values and share(col.values, lambda v: bool(PLZ_CITY.match(v))) >= 0.6:
            city["split"] = "city"
            d.fields["debtor.postal_code"] = {"column": col.name, "split": "postal_code"}
            d.why["debtor.postal_code"] = d.why["debtor.city"] = "postcode and city in one column"
    title = d.fields.get("debtor.title")
    if title and "debtor.salutation" not in d.fields:  # "Title: Mr/Mrs" is a salutation, not a title
        vals = by_name[title["column"]].values
        if vals and sum(v.casefold() in BUILTIN_MAPS["salutation"] for v in vals) >= 0.8 * len(vals):
            d.fields["debtor.salutation"] = d.fields.pop("debtor.title")
            d.why["debtor.salutation"] = "values are salutations"
    _postcode(d, by_name, sample_is_sheet)
    if "debtor.salutation" in d.fields:
        d.fields["debtor.salutation"]["map"] = "salutation"
    if "debtor.country" in d.fields:
        d.fields["debtor.country"].update({"map": "country", "default": "DE"})
    if "claim_type" in d.fields:
        d.fields["claim_type"].update({"map": "claim_type", "map_default": "other"})
    for target in ("principal_amount", "fees.dunning", "fees.return_debit", "fees.other", "payments.amount"):
        opts = d.fields.get(target)  # "Betrag in Cent", "amount_cents": integers in minor units
        if opts and "column" in opts and "cent" in normalize(opts["column"]) and by_name[opts["column"]].kind in (
                "integer", "empty"):
            opts["implied_decimals"] = 2
    email = d.fields.get("debtor.email")
    if email and "column" in email and any(v != v.lower() for v in by_name[email["column"]].values):
        email["case"] = "lower"  # addresses are compared in lower case
    for target in ("debtor.last_name", "debtor.first_name", "debtor.city", "debtor.company"):
        opts = d.fields.get(target) or {}
        vals = by_name[opts["column"]].values if "column" in opts else []
        caps = share(vals, lambda v: v.isupper() and len(v) > 3)
        if vals and target != "debtor.company" and caps > 0:
            opts["case"] = "title"  # MÜLLER -> Müller (von, van, der, de, zu stay lower case)
            if caps < 0.5:
                d.unsure[target] = "some values in capitals: title case also turns McDonald into Mcdonald"
    birth = d.fields.get("debtor.birth_date")
    if birth and any("%y" in f for f in by_name[birth["column"]].date_formats):
        birth["year_pivot"] = (date.today().year + 1) % 100  # a two-digit birth year is never in the future


def _whole_address(d: Draft, by_name: dict[str, _Column]) -> None:
    """"Musterstr. 12a, 12345 Musterstadt" in one column: the part before the comma is street and number,
    the part after it postcode and city (``regex`` picks the part, ``split`` the piece)."""
    column = d.fields.get("debtor.street", d.fields.get("debtor.city", {})).get("column")
    if column is None or by_name[column].kind != "address" or any(
            t in d.fields and d.fields[t].get("column") != column for t in _ADDRESS_PARTS):
        return
    why = "street, number, postcode and city in one column"
    for target, regex in _ADDRESS_PARTS.items():
        d.fields[target] = {"column": column, "regex": regex, "split": target.removeprefix("debtor.")}
        d.why[target] = why


_ADDRESS_PARTS = {"debtor.street": "^([^,]+),", "debtor.house_number": "^([^,]+),",
                  "debtor.postal_code": ",\\s*(.+)$", "debtor.city": ",\\s*(.+)$"}


def _postcode(d: Draft, by_name: dict[str, _Column], sample_is_sheet: bool) -> None:
    postcode = d.fields.get("debtor.postal_code")
    if not (postcode and list(postcode) == ["column"] and sample_is_sheet):
        return
    vals = by_name[postcode["column"]].values
    if not (vals and all(v.isdigit() and len(v) in (4, 5) for v in vals) and any(len(v) == 5 for v in vals)):
        return
    country = d.fields.get("debtor.country", {}).get("column")
    countries = by_name[country].values if country else []
    german = sorted({v for v in countries if BUILTIN_MAPS["country"].get(v.casefold(), v) == "DE"})
    if country and german and len(german) < len(set(countries)):
        # a four-digit postcode abroad (Wien 1070) is no German one that lost its leading zero
        postcode.update({"zero_pad": 5, "when": {"column": country, "in": german},
                         "else": {"column": postcode["column"]}})
        d.why["debtor.postal_code"] += "; German ones stored as numbers (01067 became 1067)"
    else:
        postcode["zero_pad"] = 5  # a spreadsheet stored 01067 as the number 1067


def _required(d: Draft, cols: list[_Column], sheet: bool) -> None:
    free = [c for c in cols if c.index not in d.used]
    if "principal_amount" not in d.fields:
        col = next((c for c in free if c.kind == "amount" and fits("principal_amount", c.kind, c.values, c.keys,
                                                                   sheet=sheet)), None) or (
            next((c for c in free if c.kind == "integer" and sheet and len(set(c.values)) > 1
                  and fits("principal_amount", c.kind, c.values, c.keys, sheet=sheet)), None))
        if col is not None:
            _place(d, "principal_amount", col, "the first amount column")
            d.unsure["principal_amount"] = "no header named the amount: the first amount column"
    if "creditor_reference" not in d.fields:
        by_name = {c.name: c for c in cols}
        customer = by_name.get(d.fields.get("debtor.customer_number", {}).get("column", ""))
        col = next((c for c in free if c.values and len(set(c.values)) == len(c.values)
                    and fits("creditor_reference", c.kind, c.values, c.keys, sheet=sheet)
                    and not any(_IBAN_LIKE.match(v) for v in c.values)), None)
        if col is not None:
            _place(d, "creditor_reference", col, "the first column whose values are all different")
            d.unsure["creditor_reference"] = "no header named the reference: the first column of distinct values"
        elif customer is not None and customer.values and len(set(customer.values)) == len(customer.values):
            _place(d, "creditor_reference", customer, "the account number, one per row")
            d.unsure["creditor_reference"] = "no header named the reference: the account number, distinct per row"
    ref = d.fields.get("creditor_reference", {}).get("column")
    values = next((c.values for c in cols if c.name == ref), [])
    if values and len(set(values)) < len(values) and "creditor_reference" not in d.unsure:
        d.unsure["creditor_reference"] = ("values repeat in the sample: rows sharing one are refused as duplicates "
                                          "unless they form one claim (group)")
    named = [c for c in cols if c.kind != "duplicate"] or cols
    for target in _REQUIRED:
        if target not in d.fields and cols:
            d.fields[target] = {"column": named[0].name}
            d.why[target] = "TODO: nothing fitted; replace this column"
            d.unsure[target] = "nothing fitted"


# ---------------------------------------------------------------- YAML text

def _q(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_q(k) if k not in _PLAIN_KEYS else k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _q(value)


_PLAIN_KEYS = frozenset({"column", "columns", "sum", "split", "map", "default", "when", "else", "const", "in",
                         "matches", "zero_pad",
                         "implied_decimals", "year_pivot", "map_default", "format", "case", "equals"})


def _formats(sample: Sample, cols: list[_Column], d: Draft) -> dict[str, Any]:
    fmt = dict(sample.format)
    if sample.headerless:
        return fmt
    used = [c for c in cols if c.index in d.used]
    if "decimal_separator" not in fmt:
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


@dataclass
class Suggestion:
    """A drafted mapping: its YAML text and, per canonical field, where it comes from and how sure it is."""

    text: str
    fields: dict[str, dict[str, Any]]
    why: dict[str, str]
    unsure: dict[str, str]          # canonical field -> why it may be wrong
    unplaced: dict[str, str]        # client column -> its kind, for columns no field took
    missing: list[str]              # core fields not found in the file
    format: dict[str, Any]


def suggest(sample: Sample, *, client: str) -> Suggestion:
    """The structured draft for ``sample``; ``.text`` loads with ``load_mapping`` as it is."""
    if sample.headerless:
        d, cols = Draft(), [_Column(i, h, h, []) for i, h in enumerate(sample.header)]
        d.fields, d.why = place_headerless(sample)
        d.unsure = {t: "placed by position and value only (no header)" for t in d.fields}
        for target in _REQUIRED:  # the loader needs both: a placeholder says what to replace
            if target not in d.fields and sample.header:
                d.fields[target] = {"column": sample.header[0]}
                d.why[target], d.unsure[target] = "TODO: nothing fitted; replace this column", "nothing fitted"
        d.used = {i for i, h in enumerate(sample.header) if any(o.get("column") == h for o in d.fields.values())}
    else:
        d, cols = draft_mapping(sample)
    fmt = _formats(sample, cols, d)
    from gateway.mapping.suggest_verify import verify
    verify(sample, fmt, d, client)
    out = ["# Draft made by `gateway mapping suggest`: check each line against the file, then run",
           "# `gateway mapping check --file <this file>` and `gateway mapping preview`. Reference: docs/mapping.md",
           "# Lines marked UNSURE are guesses: check them first.",
           "version: 1", f"client: {_q(client)}", "", "format:"]
    for key, value in fmt.items():
        if isinstance(value, dict):
            out.append(f"  {key}:")
            out.extend(f"    {_q(k)}: {_flow(v)}" for k, v in value.items())
        elif isinstance(value, list):
            out.append(f"  {key}: [{', '.join(_q(v) for v in value)}]")
        else:
            out.append(f"  {key}: {_q(value)}")
    out += ["", "fields:"]
    order = {t: i for i, (t, _) in enumerate(ALIASES)}
    for target in sorted(d.fields, key=lambda t: order.get(t, len(order))):
        opts = d.fields[target]
        body = _q(opts["column"]) if list(opts) == ["column"] else _flow(opts)
        note = d.why.get(target, "")
        if target in d.unsure:
            note = f"UNSURE: {d.unsure[target]}" + (f" ({note})" if note else "")
        out.append(f"  {target}: {body}  # {note}")
    unplaced = {c.name: (c.name.split("_")[0] if sample.headerless else c.kind if c.kind != "empty"
                         else "empty in the sample") for c in cols if c.index not in d.used}
    if unplaced:
        out += ["", "# Columns not placed (map them by hand if they matter):"]
        out += [f"#   {_q(name)}: {kind}" for name, kind in unplaced.items()]
    missing = [t for t in ("debtor.last_name", "debtor.street", "debtor.postal_code", "debtor.city",
                           "invoice_date", "due_date") if t not in d.fields
               and not (t == "debtor.last_name" and "debtor.company" in d.fields)]
    if missing:
        out.append(f"# Fields not found in the file: {', '.join(missing)}")
    out += [f"# {n}" for n in d.notes]
    return Suggestion("\n".join(out) + "\n", d.fields, d.why, d.unsure, unplaced, missing, fmt)


def suggest_mapping(sample: Sample, *, client: str) -> str:
    """The YAML draft for ``sample``; it loads with ``load_mapping`` as it is."""
    return suggest(sample, client=client).text
