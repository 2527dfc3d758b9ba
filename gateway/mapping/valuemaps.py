"""Built-in value maps a mapping names instead of listing values: ``map: country``.

Keys are matched case-insensitively after trimming; values are canonical (ISO 3166-1 alpha-2,
model enum values). A client value missing from a built-in map is passed to the field's parser
as written (so "DE" still works for ``country``), which then says what was expected.
"""

from __future__ import annotations

from gateway.domain.countries import COUNTRIES

# German and English names (with common spellings) of the countries clients' debtors live in.
_COUNTRY_NAMES: dict[str, tuple[str, ...]] = {
    "DE": ("Deutschland", "Germany", "Bundesrepublik Deutschland", "BRD", "D", "DEU", "Allemagne"),
    "AT": ("Österreich", "Oesterreich", "Osterreich", "Austria", "A", "AUT"),
    "CH": ("Schweiz", "Switzerland", "Suisse", "Svizzera", "CHE"),
    "NL": ("Niederlande", "Netherlands", "The Netherlands", "Holland", "Nederland", "NLD"),
    "BE": ("Belgien", "Belgium", "Belgique", "België", "B", "BEL"),
    "LU": ("Luxemburg", "Luxembourg", "L", "LUX"),
    "FR": ("Frankreich", "France", "F", "FRA"),
    "IT": ("Italien", "Italy", "Italia", "I", "ITA"),
    "ES": ("Spanien", "Spain", "España", "E", "ESP"),
    "PT": ("Portugal", "P", "PRT"),
    "PL": ("Polen", "Poland", "Polska", "PL", "POL"),
    "CZ": ("Tschechien", "Tschechische Republik", "Czech Republic", "Czechia", "CZE"),
    "DK": ("Dänemark", "Daenemark", "Denmark", "DK", "DNK"),
    "SE": ("Schweden", "Sweden", "S", "SWE"),
    "NO": ("Norwegen", "Norway", "N", "NOR"),
    "FI": ("Finnland", "Finland", "FIN"),
    "GB": ("Großbritannien", "Grossbritannien", "Vereinigtes Königreich", "United Kingdom", "UK", "England",
           "GBR"),
    "IE": ("Irland", "Ireland", "IRL"),
    "US": ("USA", "Vereinigte Staaten", "United States", "United States of America"),
    "LI": ("Liechtenstein", "FL", "LIE"),
    "HU": ("Ungarn", "Hungary", "H", "HUN"),
    "SK": ("Slowakei", "Slovakia", "SVK"),
    "SI": ("Slowenien", "Slovenia", "SLO", "SVN"),
    "HR": ("Kroatien", "Croatia", "HRV"),
    "RO": ("Rumänien", "Rumaenien", "Romania", "ROU"),
    "BG": ("Bulgarien", "Bulgaria", "BGR"),
    "GR": ("Griechenland", "Greece", "GRC"),
    "TR": ("Türkei", "Tuerkei", "Turkey", "Türkiye", "TUR"),
    "RU": ("Russland", "Russia", "Russische Föderation", "RUS"),
    "UA": ("Ukraine", "UKR"),
    "LT": ("Litauen", "Lithuania", "LTU"),
    "LV": ("Lettland", "Latvia", "LVA"),
    "EE": ("Estland", "Estonia", "EST"),
}

_SALUTATIONS: dict[str, tuple[str, ...]] = {
    "mr": ("Herr", "Herrn", "Hr", "Hr.", "Mr", "Mr.", "m", "männlich", "maennlich", "male"),
    "ms": ("Frau", "Fr", "Fr.", "Mrs", "Mrs.", "Ms", "Ms.", "w", "weiblich", "female"),
    "diverse": ("Divers", "Diverse", "d", "x", "Mx", "Mx."),
    "company": ("Firma", "Fa", "Fa.", "Company", "Unternehmen"),
}

_CLAIM_TYPES: dict[str, tuple[str, ...]] = {
    "goods": ("Ware", "Waren", "Warenlieferung", "Lieferung", "Kauf", "goods"),
    "goods_prepaid": ("Vorkasse", "Ware Vorkasse", "goods_prepaid", "prepaid"),
    "service": ("Dienstleistung", "Leistung", "Beitrag", "Mitgliedsbeitrag", "Vertrag", "Abo", "Abonnement",
                "service", "Honorar", "Miete"),
    "other": ("Sonstige", "Sonstiges", "other"),
}


def _table(names: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {alias.casefold(): code for code, aliases in names.items() for alias in (code, *aliases)}


BUILTIN_MAPS: dict[str, dict[str, str]] = {
    "country": {**{c.casefold(): c for c in COUNTRIES}, **_table(_COUNTRY_NAMES)},
    "salutation": _table(_SALUTATIONS),
    "claim_type": _table(_CLAIM_TYPES),
}

# Which canonical fields each built-in map fits (checked when the mapping loads).
BUILTIN_TARGETS: dict[str, tuple[str, ...]] = {
    "country": ("debtor.country",), "salutation": ("debtor.salutation",), "claim_type": ("claim_type",),
}
