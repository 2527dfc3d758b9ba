"""The generated row function: a mapping bound to a header, compiled into one Python function.

``RowMapper`` keeps its careful path (a getter closure per field, every problem turned into a
finding). For the common row, the one without any problem, this module writes a single function
for the mapping: each field's cell read, trimmed, looked up and parsed inline (dates and amounts
through their parser's memo), and the claim's structs built with keyword arguments straight from
local variables, without a dict per struct or a call per field. The moment anything would produce
a finding (a value that does not parse, an empty required field, an incomplete interest or payment,
bank details without an IBAN, a row of the wrong width) it hands the row to the careful path, which
maps it from the start: findings and error texts come from one place only. The one exception is the
policy's hold, a business outcome rather than a problem: its finding comes from the same
``CompiledPolicy.held`` both paths call.

The source is built from the mapping's structure only: positions are integers, and every value,
parser, table or name from the mapping or the file is bound as a global of the function, never
written into the source text.
"""

from __future__ import annotations

import keyword
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec

from gateway.domain.model import (Address, AddressKind, BankAccount, Claim, Debtor, DebtorKind, Fee, FeeKind,
                                  Interest, Payment, Salutation)
from gateway.mapping.conditions import CompiledPolicy
from gateway.mapping.getters import CellPlan, ConstPlan, Getter, Plan
from gateway.mapping.text import NOT_XML
from gateway.mapping.transforms import TransformError
from gateway.readers.base import SourceRow

RowFunction = Callable[[SourceRow, str], Any]  # -> MappedRow

# Where a target's value goes while a row is assembled (engine._destination): one struct per group.
CLAIM, DEBTOR, ADDRESS, BANK, INTEREST, PAYMENT, FEE_DUNNING, FEE_RETURN_DEBIT, FEE_OTHER = range(9)
FEE_GROUPS = ((FEE_DUNNING, FeeKind.DUNNING), (FEE_RETURN_DEBIT, FeeKind.RETURN_DEBIT), (FEE_OTHER, FeeKind.OTHER))


class Field(NamedTuple):
    """One mapped field as the generator sees it."""

    group: int
    attr: str
    get: Getter
    plan: Plan | None


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"TransformError": TransformError}
        self._ids: dict[int, str] = {}

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def bind(self, value: Any, hint: str = "b") -> str:
        """A global name for ``value`` in the generated function (one per object)."""
        key = id(value)
        if key not in self._ids:
            name = f"_{hint}{len(self.names)}"
            self.names[name] = value
            self._ids[key] = name
        return self._ids[key]


class _Unsupported(Exception):
    """A mapping shape the generator leaves to the careful path (every row)."""


def generate(fields: Sequence[Field], width: int, policy: CompiledPolicy, partner: str | None,
             careful: RowFunction, mapped_row: type[msgspec.Struct]) -> tuple[RowFunction, str] | None:
    """The row function for these fields and its source, or None if every row needs the careful path.

    A row whose cells hold a character XML cannot carry, or text not in the composed form (NFC), goes to the
    careful path whole (two checks per row on the joined cells, in C); that one composes the cells and decides
    whether a character XML cannot carry is in a cell a field reads.
    """
    try:
        source, names = _source(fields, width, policy, partner, careful, mapped_row)
    except _Unsupported:
        return None
    code = compile(source, "<mapping row function>", "exec")
    exec(code, names)  # noqa: S102 - source built from the mapping's structure only (see the module docstring)
    fn: RowFunction = names["map_row"]
    return fn, source


def _source(fields: Sequence[Field], width: int, policy: CompiledPolicy, partner: str | None,
            careful: RowFunction, mapped_row: type[msgspec.Struct]) -> tuple[str, dict[str, Any]]:
    w = _Writer()
    back = f"return {w.bind(careful, 'careful')}(src, client_id)"
    w.line(0, "def map_row(src, client_id):")
    # a formula without a saved value, a cell showing an error value, a hidden row: the careful path says so
    w.line(1, "if src.unsaved is not None or src.errors is not None or src.hidden:")
    w.line(2, back)
    # a percentage the interest rate reads (the cell holds 0.05 for 5 %): the careful path scales it
    rate = next((f for f in fields if f.group == INTEREST and f.attr == "rate"), None)
    if rate is not None and isinstance(rate.plan, CellPlan):
        w.line(1, f"if src.percent is not None and {int(rate.plan.position)} in src.percent:")
        w.line(2, back)
    elif rate is not None and not isinstance(rate.plan, ConstPlan):
        w.line(1, "if src.percent is not None:")
        w.line(2, back)
    w.line(1, "values = src.values")
    # isprintable and isascii clear the common row at once; a tab, a no-break space, an umlaut is looked at
    w.line(1, f"joined = {w.bind(''.join, 'join')}(values)")
    w.line(1, f"if not joined.isprintable() and {w.bind(NOT_XML.search, 'notxml')}(joined) is not None:")
    w.line(2, back)
    normalized, nfc = w.bind(unicodedata.is_normalized, "normalized"), w.bind("NFC", "form")
    w.line(1, f"if not joined.isascii() and not {normalized}({nfc}, joined):")
    w.line(2, back)
    w.line(1, f"if len(values) != {int(width)}:")
    # Trailing empty fields beyond the header (a delimiter at the end of every line) are harmless.
    w.line(2, f"if len(values) < {int(width)} or any(v.strip() for v in values[{int(width)}:]):")
    w.line(3, back)
    w.line(2, f"values = values[:{int(width)}]")
    w.line(1, "try:")
    stripped: set[int] = set()
    local: dict[tuple[int, str], str] = {}
    sure: set[str] = set()  # locals that are never None
    for n, field in enumerate(fields):
        if not (field.attr.isidentifier() and not keyword.iskeyword(field.attr)):
            raise _Unsupported(field.attr)
        if (field.group, field.attr) in local:
            raise _Unsupported(field.attr)  # two fields filling one attribute: the careful path decides
        name = f"f{n}"
        plan = field.plan
        if isinstance(plan, ConstPlan):
            if plan.value is None:
                continue  # never set, as the careful path never stores a None
            w.line(2, f"{name} = {w.bind(plan.value, 'const')}")
            sure.add(name)
        elif isinstance(plan, CellPlan):
            pos = int(plan.position)
            if not 0 <= pos < width:
                raise _Unsupported(field.attr)
            if pos not in stripped:
                w.line(2, f"s{pos} = values[{pos}].strip()")
                stripped.add(pos)
            if _cell(w, plan, name, f"s{pos}", back):
                sure.add(name)
        else:
            w.line(2, f"{name} = {w.bind(field.get, 'get')}(values)")
        local[(field.group, field.attr)] = name
    w.line(2, "pass")
    w.line(1, "except TransformError:")
    w.line(2, back)
    _assemble(w, local, sure | _BUILT, policy, partner, back, mapped_row)
    return "\n".join(w.lines) + "\n", w.names


def _cell(w: _Writer, plan: CellPlan, name: str, cell: str, back: str) -> bool:
    """``name`` = the field's value from the trimmed ``cell``, as ``getters.getter`` computes it.

    True if the value is never None (so the struct needs no default in its place).
    """
    from gateway.mapping import targets  # the identity parsers of plain kinds

    text = cell
    if plan.shape is None and plan.table is None and plan.default is None and not plan.required \
            and plan.parse is targets.text_value:
        w.line(2, f"{name} = {cell} or None")
        return False
    if plan.shape is not None:
        w.line(2, f"t = {cell}")
        w.line(2, "if t:")
        w.line(3, f"t = {w.bind(plan.shape, 'shape')}(t)")
        text = "t"
    w.line(2, f"if {text}:")
    if plan.table is not None:
        key = f"{text}.casefold()" if plan.fold else text
        w.line(3, f"{name} = {w.bind(plan.table.get, 'lookup')}({key})")
        w.line(3, f"if {name} is None:")
        if plan.map_default is not None:
            w.line(4, f"{name} = {w.bind(plan.map_default, 'const')}")
        else:
            _parse(w, plan, name, text, 4)
    else:
        _parse(w, plan, name, text, 3)
    w.line(2, "else:")
    if plan.default is not None:
        w.line(3, f"{name} = {w.bind(plan.default, 'const')}")
    elif plan.required:
        w.line(3, back)
    else:
        w.line(3, f"{name} = None")
        return False
    # a value from the table or map_default, or a plain kind's parse of a non-empty text, is never None
    return (plan.table is not None and plan.map_default is not None) or plan.parse in _NEVER_NONE


def _parse(w: _Writer, plan: CellPlan, name: str, text: str, depth: int) -> None:
    from gateway.mapping import targets  # the identity parsers of plain kinds

    parse = plan.parse
    if parse is targets.text_value:
        w.line(depth, f"{name} = {text}")
    elif parse is targets.code_value:
        w.line(depth, f"{name} = {text}.upper()")
    elif parse is targets.text_list_value:
        w.line(depth, f"{name} = [{text}]")
    elif plan.cache is not None:
        # The memo never holds None, so a miss is a None; a parser may return None itself (00.00.0000).
        w.line(depth, f"{name} = {w.bind(plan.cache.get, 'memo')}({text})")
        w.line(depth, f"if {name} is None:")
        w.line(depth + 1, f"{name} = {w.bind(parse, 'parse')}({text})")
    else:
        w.line(depth, f"{name} = {w.bind(parse, 'parse')}({text})")


def _never_none() -> frozenset[Callable[[str], Any]]:
    from gateway.mapping import targets
    return frozenset({targets.text_value, targets.code_value, targets.text_list_value})


_NEVER_NONE = _never_none()


def _assemble(w: _Writer, local: dict[tuple[int, str], str], sure: set[str], policy: CompiledPolicy,
              partner: str | None, back: str, mapped_row: type[msgspec.Struct]) -> None:
    """Policy, then the structs, in the order and with the rules of ``RowMapper._assemble``."""
    def get(group: int, attr: str) -> str | None:
        return local.get((group, attr))

    # Policy: the hold finding; partner rules fill partner_id if the row has none.
    partner_id = get(CLAIM, "partner_id")
    if policy.active or partner:
        if partner_id is None:
            partner_id = "partner_id"
            w.line(1, "partner_id = None")
            local[(CLAIM, "partner_id")] = partner_id
        if policy.hold is not None:  # a held row is no problem: its claim is built, with the hold finding
            w.line(1, f"findings = [{w.bind(policy.held, 'held')}(src.row)] if {w.bind(policy.hold, 'hold')}(values) "
                      "else []")
        if policy.partners:
            w.line(1, f"if {partner_id} is None:")
            w.line(2, f"for matches, chosen in {w.bind(policy.partners, 'partners')}:")
            w.line(3, "if matches(values):")
            w.line(4, f"{partner_id} = chosen")
            w.line(4, "break")
        if partner:
            w.line(1, f"if {partner_id} is None:")
            w.line(2, f"{partner_id} = {w.bind(partner, 'const')}")

    # Debtor kind: given, or business for a company without a person's name.
    kind = get(DEBTOR, "kind")
    salutation, company, last = get(DEBTOR, "salutation"), get(DEBTOR, "company"), get(DEBTOR, "last_name")
    business = w.bind(DebtorKind.BUSINESS, "enum")
    tests = []
    if salutation:
        tests.append(f"{salutation} is {w.bind(Salutation.COMPANY, 'enum')}")
    if company:
        tests.append(f"({company} and not {last})" if last else company)
    if tests and kind is None:
        kind = "debtor_kind"
        w.line(1, f"{kind} = {business} if {' or '.join(tests)} else {w.bind(DebtorKind.CONSUMER, 'enum')}")
        local[(DEBTOR, "kind")] = kind
        sure.add(kind)
    elif tests:
        w.line(1, f"if {kind} is None and ({' or '.join(tests)}):")
        w.line(2, f"{kind} = {business}")

    # Address: any part but a (default) country makes one.
    parts = sorted(a for g, a in local if g == ADDRESS)
    postcode = get(ADDRESS, "postal_code")
    if postcode is not None:  # a number cell of four digits may be a German postcode that lost its zero
        w.line(1, f"if src.whole4 is not None and {postcode} is not None and len({postcode}) == 4:")
        w.line(2, back)
    if [a for a in parts if a != "country"]:
        w.line(1, "if " + " or ".join(f"{local[(ADDRESS, a)]} is not None" for a in parts if a != "country") + ":")
        args = _kwargs(w, sure, Address, {a: local[(ADDRESS, a)] for a in parts})
        if kind is not None:
            args.append(f"kind=({w.bind(AddressKind.BUSINESS, 'enum')} if {kind} is {business} "
                        f"else {w.bind(AddressKind.HOME, 'enum')})")
        w.line(2, f"addresses = [{w.bind(Address, 'struct')}({', '.join(args)})]")
        w.line(1, "else:")
        w.line(2, "addresses = []")
        local[(DEBTOR, "addresses")] = "addresses"

    # Bank account: only with an IBAN (bank details without one are a warning: careful path).
    iban = get(BANK, "iban")
    others = [local[(BANK, a)] for a in ("bic", "holder") if (BANK, a) in local]
    if iban is not None:
        w.line(1, f"if {iban} is not None:")
        bank = {a: local[(BANK, a)] for a in ("iban", "bic", "holder") if (BANK, a) in local}
        args = _kwargs(w, sure, BankAccount, bank)
        w.line(2, f"bank_accounts = [{w.bind(BankAccount, 'struct')}({', '.join(args)})]")
        w.line(1, "else:")
        if others:
            w.line(2, f"if {' or '.join(f'{o} is not None' for o in others)}:")
            w.line(3, back)
        w.line(2, "bank_accounts = []")
        local[(DEBTOR, "bank_accounts")] = "bank_accounts"
    elif others:
        w.line(1, f"if {' or '.join(f'{o} is not None' for o in others)}:")
        w.line(2, back)

    # Fees: one per kind with a non-zero amount.
    fee_groups = [(g, k) for g, k in FEE_GROUPS if (g, "amount") in local]
    if fee_groups:
        w.line(1, "fees = []")
        for g, fee_kind in fee_groups:
            amount = local[(g, "amount")]
            w.line(1, f"if {amount}:")
            fee = {a: local[(g, a)] for a in ("amount", "date") if (g, a) in local}
            args = [f"kind={w.bind(fee_kind, 'enum')}", *_kwargs(w, sure, Fee, fee)]
            w.line(2, f"fees.append({w.bind(Fee, 'struct')}({', '.join(args)}))")
        local[(CLAIM, "fees")] = "fees"

    # Interest: kind and from_date both, or none of its fields (else the careful path says what is missing).
    interest = {a: local[(INTEREST, a)] for a in ("kind", "from_date", "rate") if (INTEREST, a) in local}
    if interest:
        w.line(1, f"if {' or '.join(f'{v} is not None' for v in interest.values())}:")
        needed = [interest.get("kind"), interest.get("from_date")]
        if None in needed:
            w.line(2, back)
        else:
            w.line(2, f"if {needed[0]} is None or {needed[1]} is None:")
            w.line(3, back)
            w.line(2, f"interest = {w.bind(Interest, 'struct')}({', '.join(_kwargs(w, sure, Interest, interest))})")
            w.line(1, "else:")
            w.line(2, "interest = None")
            local[(CLAIM, "interest")] = "interest"

    # Payment: amount and date both (else careful); an amount of 0 is no payment.
    payment = {a: local[(PAYMENT, a)] for a in ("amount", "date", "reference") if (PAYMENT, a) in local}
    given = [payment[a] for a in ("amount", "date") if a in payment]
    if given:
        w.line(1, "payments_received = []")
        w.line(1, f"if {' or '.join(given)}:")
        if len(given) < 2:
            w.line(2, back)
        else:
            w.line(2, f"if {payment['amount']} is None or {payment['date']} is None:")
            w.line(3, back)
            w.line(2, f"if {payment['amount']}:")
            args = _kwargs(w, sure, Payment, payment)
            w.line(3, f"payments_received.append({w.bind(Payment, 'struct')}({', '.join(args)}))")
        local[(CLAIM, "payments_received")] = "payments_received"

    debtor_attrs = {a: v for (g, a), v in local.items() if g == DEBTOR}
    claim_attrs = {a: v for (g, a), v in local.items() if g == CLAIM}
    for required in ("creditor_reference", "principal_amount"):
        if required not in claim_attrs:
            raise _Unsupported(required)  # Claim() itself refuses that: leave it to the careful path
        if claim_attrs[required] not in sure:
            w.line(1, f"if {claim_attrs[required]} is None:")
            w.line(2, back)
    w.line(1, f"debtor = {w.bind(Debtor, 'struct')}({', '.join(_kwargs(w, sure, Debtor, debtor_attrs))})")
    args = ["client_id=client_id", "debtor=debtor", *_kwargs(w, sure, Claim, claim_attrs)]
    findings = "findings" if policy.hold is not None else "[]"
    w.line(1, f"return {w.bind(mapped_row, 'struct')}(row=src.row, reference={claim_attrs['creditor_reference']}, "
              f"claim={w.bind(Claim, 'struct')}({', '.join(args)}), findings={findings})")


_BUILT = {"addresses", "bank_accounts", "fees", "payments_received"}  # lists the assembly builds


def _kwargs(w: _Writer, sure: set[str], struct: type[msgspec.Struct], attrs: dict[str, str]) -> list[str]:
    """Keyword arguments passing each local, or the struct's default where the local is None.

    The careful path leaves a None value out of the struct's arguments; passing the default instead
    builds an equal struct.
    """
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    args = []
    for attr, name in sorted(attrs.items()):
        info = fields.get(attr)
        if info is None:
            raise _Unsupported(attr)
        if info.required or info.default is None or name in sure:
            args.append(f"{attr}={name}")  # never None here, or None is the default
        elif info.default is not msgspec.NODEFAULT:
            args.append(f"{attr}=({name} if {name} is not None else {w.bind(info.default, 'default')})")
        else:
            args.append(f"{attr}=({name} if {name} is not None else {w.bind(info.default_factory, 'factory')}())")
    return args
