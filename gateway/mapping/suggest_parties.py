"""Persons and companies in a ``mapping suggest`` draft: told apart by a flag column or by legal forms.

A person/company flag column (Privat/Firma, P/F, private/business) becomes ``debtor.kind`` with a ``map``
of its values, and a single name column is the company's name where the flag says company and the
person's elsewhere (``when``). Without a flag, names carrying a legal form (GmbH, AG, e.K., ...) are
companies; that guess is flagged, since a company without one in its name is read as a person.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.mapping.suggest_profile import LEGAL_FORM, is_party_type, legal_share

if TYPE_CHECKING:
    from gateway.mapping.suggest import Draft, _Column

_NOT_LEGAL = f"(?i)^(?!.*{LEGAL_FORM.removeprefix('(?i)')})"


def parties(d: Draft, cols: list[_Column]) -> None:
    """Persons and companies: a flag column decides, else a legal form in the name."""
    by_name = {c.name: c for c in cols}
    flag = d.fields.get("debtor.kind", {}).get("column")
    name = d.fields.get("debtor.last_name", {}).get("column")
    if flag:
        values = sorted(set(by_name[flag].values))
        d.fields["debtor.kind"] = {"column": flag, "map": {v: is_party_type(v) or "consumer" for v in values}}
        business = [v for v in values if is_party_type(v) == "business"]
        persons = [v for v in values if is_party_type(v) == "consumer"]
        if name and "debtor.company" not in d.fields and business:
            # one name column for both: the company's name where the flag says company
            d.fields["debtor.company"] = {"column": name, "when": {"column": flag, "in": business}}
            d.why["debtor.company"] = f"'{name}' where '{flag}' says company"
            for target in ("debtor.last_name", "debtor.first_name"):
                if target in d.fields and d.fields[target].get("column") == name and persons:
                    d.fields[target]["when"] = {"column": flag, "in": persons}
        return
    source = name or d.fields.get("debtor.company", {}).get("column")
    if not source:
        return
    legal = legal_share(by_name[source].values)
    if legal == 0:
        return
    if name and d.fields.get("debtor.company", {}).get("column") not in (None, name):
        return  # the company has its own column
    d.fields["debtor.kind"] = {"const": "business", "when": {"column": source, "matches": LEGAL_FORM},
                               "else": {"const": "consumer"}}
    d.why["debtor.kind"] = "a company where the name carries a legal form (GmbH, AG, e.K., ...)"
    d.fields["debtor.company"] = {"column": source, "when": {"column": source, "matches": LEGAL_FORM}}
    d.why["debtor.company"] = "names with a legal form"
    guess = "a company without a legal form in its name is read as a person"
    d.unsure["debtor.kind"] = d.unsure["debtor.company"] = guess
    for target in ("debtor.last_name", "debtor.first_name"):
        if target in d.fields and d.fields[target].get("column") == source:
            d.fields[target]["when"] = {"column": source, "matches": _NOT_LEGAL}
    d.used.add(by_name[source].index)
