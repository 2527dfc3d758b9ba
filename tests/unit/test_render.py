"""Partner batch rendering: schema-valid output, exact money strings, streaming."""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from lxml import etree

from gateway.domain.model import (
    Address, AddressKind, BankAccount, Claim, ClaimType, Debtor, DebtorKind, Document, Fee, FeeKind,
    Interest, InterestKind, Payment, Salutation,
)
from gateway.services.render import NAMESPACE, BatchMeta, money, render_batch, render_claim, validate_batch
from tests.unit import render_reference

NS = {"b": NAMESPACE}
CREATED = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def rich_claim() -> Claim:
    return Claim(
        client_id="fitx", creditor_reference="R-2025-0001", invoice_number="RE 4711",
        claim_type=ClaimType.SERVICE, reason="Mitgliedsbeitrag März",
        principal_amount=Decimal("1E+2"),
        fees=[Fee(kind=FeeKind.DUNNING, amount=Decimal("5"), date=dt.date(2025, 1, 15)),
              Fee(kind=FeeKind.RETURN_DEBIT, amount=Decimal("3.5"), description="Rücklastschrift")],
        interest=Interest(kind=InterestKind.FIXED, from_date=dt.date(2025, 1, 1), rate=Decimal("5.12")),
        payments_received=[Payment(amount=Decimal("10.50"), date=dt.date(2025, 2, 1), reference="Teilz.")],
        invoice_date=dt.date(2024, 12, 1), due_date=dt.date(2024, 12, 15),
        first_dunning_date=dt.date(2025, 1, 2), last_dunning_date=dt.date(2025, 1, 20),
        disputed=False, memo="Schuldner ist umgezogen <neu> & \"erreichbar\"",
        labels=["vip", "b2c"],
        documents=[Document(name="rechnung.pdf", media_type="application/pdf", sha256="ab" * 32, size=1234)],
        debtor=Debtor(
            kind=DebtorKind.CONSUMER, salutation=Salutation.MS, title="Dr.", first_name="Jürgen",
            last_name="Müller-Lüdenscheidt", birth_date=dt.date(1980, 2, 29), customer_number="K-77",
            addresses=[Address(street="Königsallee", house_number="12a", postal_code="40212",
                               city="Düsseldorf", address_extra="c/o Weiß"),
                       Address(street="Hauptstraße", house_number="1", postal_code="1010", city="Wien",
                               country="AT", kind=AddressKind.BILLING, valid_from=dt.date(2024, 6, 1))],
            phones=["+49 211 123456"], emails=["j.mueller@example.de"],
            bank_accounts=[BankAccount(iban="DE89370400440532013000", bic="COBADEFFXXX", holder="Jürgen Müller")],
        ),
    )


def lean_claim(ref: str = "R-2", amount: str = "49.9") -> Claim:
    return Claim(client_id="fitx", creditor_reference=ref, principal_amount=Decimal(amount),
                 debtor=Debtor(kind=DebtorKind.BUSINESS, company="Bäckerei Groß GmbH", legal_form="GmbH"))


# every text: escaping, quotes, a CDATA end, whitespace XML keeps, non-BMP
ODD = "a&b <c> \"d\" 'e' ]]> &amp; \t\n\r ü € 😀 é"


def nasty_claim() -> Claim:
    return Claim(
        client_id="fitx", creditor_reference=f"R&<{ODD}>", invoice_number=ODD, claim_type=ClaimType.GOODS,
        reason=ODD, principal_amount=Decimal("12.3"), currency="EUR",
        fees=[Fee(kind=FeeKind.OTHER, amount=Decimal("0.01"), description=ODD)],
        interest=Interest(kind=InterestKind.FIXED, from_date=dt.date(2024, 2, 1), rate=Decimal("1E+1")),
        payments_received=[Payment(amount=Decimal("1"), date=dt.date(2025, 2, 1), reference=ODD)],
        contract_date=dt.date(2020, 1, 1), default_date=dt.date(2024, 1, 31), disputed=True, memo=ODD,
        labels=[ODD, "<>"],
        documents=[Document(name=f"{ODD}.pdf", media_type="application/pdf", sha256="cd" * 32, size=0, kind=ODD),
                   Document(name="b.txt", media_type="text/plain", sha256="ef" * 32)],
        debtor=Debtor(kind=DebtorKind.BUSINESS, salutation=Salutation.COMPANY, company=ODD, legal_form=ODD,
                      representative=ODD, contact_person=ODD, customer_number=ODD, title=ODD, first_name=ODD,
                      last_name=ODD,
                      addresses=[Address(street=ODD, house_number=ODD, postal_code=ODD, city=ODD, country="DE",
                                         kind=AddressKind.OTHER, address_extra=ODD)],
                      phones=[ODD], emails=[ODD],
                      bank_accounts=[BankAccount(iban=ODD, bic=ODD, holder=ODD)]),
    )


def meta(claims: list[Claim], currency: str = "EUR") -> BatchMeta:
    return BatchMeta(batch_id="B-1", created_at=CREATED, sender="gw-1", client_id="fitx",
                     partner_id="inkasso-nord", claim_count=len(claims),
                     total_amount=sum((c.total_open_amount for c in claims), Decimal(0)), currency=currency)


def render(claims: list[Claim], currency: str = "EUR") -> bytes:
    out = io.BytesIO()
    assert render_batch(out, meta(claims, currency), enumerate(claims, start=1001)) == len(claims)
    return out.getvalue()


def text(root: etree._Element, path: str) -> str:
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list) and len(found) == 1, path
    return str(found[0])


def test_rendered_batch_is_valid_and_carries_every_field() -> None:
    xml = render([rich_claim(), lean_claim()])
    assert validate_batch(xml) == []
    root = etree.fromstring(xml)
    assert text(root, "/b:batch/b:createdAt/text()") == "2025-03-01T08:30:00Z"
    assert text(root, "/b:batch/b:claimCount/text()") == "2"
    assert text(root, "/b:batch/b:totalAmount/text()") == "147.90"
    c = "/b:batch/b:claim[1]"
    assert text(root, f"{c}/b:claimId/text()") == "1001"
    assert text(root, f"{c}/b:principalAmount/text()") == "100.00"
    assert text(root, f"{c}/b:principalAmount/@currency") == "EUR"
    assert root.xpath(f"{c}/b:fees/b:fee/b:amount/text()", namespaces=NS) == ["5.00", "3.50"]
    assert text(root, f"{c}/b:payments/b:payment/b:amount/text()") == "10.50"
    assert text(root, f"{c}/b:totalOpenAmount/text()") == "98.00"
    assert text(root, f"{c}/b:interest/b:rate/text()") == "5.12"
    assert text(root, f"{c}/b:memo/text()") == "Schuldner ist umgezogen <neu> & \"erreichbar\""
    assert text(root, f"{c}/b:debtor/b:lastName/text()") == "Müller-Lüdenscheidt"
    assert text(root, f"{c}/b:debtor/b:addresses/b:address[2]/b:country/text()") == "AT"
    assert text(root, f"{c}/b:debtor/b:bankAccounts/b:bankAccount/b:bic/text()") == "COBADEFFXXX"
    assert text(root, f"{c}/b:documents/b:document/b:sha256/text()") == "ab" * 32
    assert text(root, "/b:batch/b:claim[2]/b:debtor/b:company/text()") == "Bäckerei Groß GmbH"
    # Empty lists are omitted with their wrapper, not written as empty elements.
    assert root.xpath("/b:batch/b:claim[2]/b:fees", namespaces=NS) == []
    assert "Müller".encode() in xml  # UTF-8, not character references


@pytest.mark.parametrize(("amount", "currency", "expected"), [
    (Decimal("1E+2"), "EUR", "100.00"), (Decimal("0.1"), "EUR", "0.10"), (Decimal("-0"), "EUR", "0.00"),
    (Decimal("1234567890.5"), "EUR", "1234567890.50"), (Decimal("1.5E+3"), "JPY", "1500"),
    (Decimal("2.5"), "KWD", "2.500"),
])
def test_money_is_plain_with_minor_digits(amount: Decimal, currency: str, expected: str) -> None:
    assert money(amount, currency) == expected


@pytest.mark.parametrize("amount", [Decimal("1.005"), Decimal("NaN"), Decimal("Infinity")])
def test_money_refuses_what_it_cannot_write_exactly(amount: Decimal) -> None:
    with pytest.raises(ValueError):
        money(amount, "EUR")


def test_yen_batch_validates() -> None:
    claim = Claim(client_id="fitx", creditor_reference="J-1", principal_amount=Decimal("1.5E+3"),
                  currency="JPY", debtor=Debtor(first_name="Ken", last_name="Sato"))
    xml = render([claim], currency="JPY")
    assert validate_batch(xml) == []
    assert b">1500</totalOpenAmount>" in xml


def test_header_that_disagrees_with_claims_is_refused() -> None:
    claims = [lean_claim()]
    wrong = BatchMeta(batch_id="B-1", created_at=CREATED, sender="gw-1", client_id="fitx",
                      partner_id="p", claim_count=2, total_amount=Decimal("49.90"))
    with pytest.raises(ValueError, match="header says 2 claims"):
        render_batch(io.BytesIO(), wrong, enumerate(claims))
    other_client = Claim(client_id="other", creditor_reference="X", principal_amount=Decimal(1), debtor=Debtor())
    with pytest.raises(ValueError, match="does not match batch"):
        render_batch(io.BytesIO(), meta(claims), [(1, other_client)])


def test_naive_created_at_is_refused() -> None:
    naive = BatchMeta(batch_id="B", created_at=dt.datetime(2025, 1, 1), sender="gw", client_id="fitx",
                      partner_id="p", claim_count=0, total_amount=Decimal(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        render_batch(io.BytesIO(), naive, [])


def test_control_character_names_the_claim() -> None:
    bad = Claim(client_id="fitx", creditor_reference="R\x01", principal_amount=Decimal(1), debtor=Debtor())
    with pytest.raises(ValueError, match="claim 7"):
        render_batch(io.BytesIO(), meta([bad]), [(7, bad)])


def test_output_streams_while_claims_are_still_being_produced() -> None:
    out = io.BytesIO()
    seen_while_generating: list[int] = []

    def claims() -> Iterator[tuple[int, Claim]]:
        for i in range(3000):
            if i == 2999:
                seen_while_generating.append(out.tell())
            yield i, lean_claim(ref=f"R-{i}", amount="1")

    many = BatchMeta(batch_id="B", created_at=CREATED, sender="gw", client_id="fitx", partner_id="p",
                     claim_count=3000, total_amount=Decimal(3000))
    assert render_batch(out, many, claims()) == 3000
    # Most of the document reached the sink before the last claim existed: nothing is held back.
    assert seen_while_generating[0] > len(out.getvalue()) // 2
    assert validate_batch(out.getvalue()) == []


def test_validate_reports_schema_errors_and_reads_paths(tmp_path: Path) -> None:
    xml = render([lean_claim()])
    path = tmp_path / "batch.xml"
    path.write_bytes(xml)
    assert validate_batch(path) == []
    broken = xml.replace(b">49.90</principalAmount>", b">4.99E1</principalAmount>")
    errors = validate_batch(broken)
    assert len(errors) == 1 and errors[0].startswith("line 3: ") and "'4.99E1' is not a valid value" in errors[0]
    assert validate_batch(b"<batch")[0].startswith("line 1: not well-formed")


def test_validate_refuses_doctype_and_entities() -> None:
    hostile = (b'<?xml version="1.0"?><!DOCTYPE batch [<!ENTITY a "aaaaaaaaaa">'
               b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
               b'<batch xmlns="urn:inkasso-gateway:partner-batch:1">&b;</batch>')
    assert validate_batch(hostile) == ["line 1: a DOCTYPE is not allowed in a partner batch"]


def test_grouped_invoices_are_rendered_and_valid() -> None:
    from gateway.domain.model import Invoice

    claim = msgspec.structs.replace(rich_claim(), principal_amount=Decimal("150.00"), invoices=[
        Invoice(amount=Decimal("100.00"), number="RE-1", date=dt.date(2025, 1, 1), due_date=dt.date(2025, 1, 15)),
        Invoice(amount=Decimal("50"), number="RE-2 <&>")])
    meta = BatchMeta(batch_id="B-inv", created_at=dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc), sender="gw",
                     client_id=claim.client_id, partner_id="p", claim_count=1, total_amount=claim.total_open_amount,
                     currency="EUR")
    buf = io.BytesIO()
    render_batch(buf, meta, [(1, claim)])
    assert validate_batch(buf.getvalue()) == []
    ns = "{urn:inkasso-gateway:partner-batch:1}"
    invoices = etree.fromstring(buf.getvalue()).findall(f"{ns}claim/{ns}invoices/{ns}invoice")
    assert [(i.findtext(f"{ns}number"), i.findtext(f"{ns}amount")) for i in invoices] == [
        ("RE-1", "100.00"), ("RE-2 <&>", "50.00")]


GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "render" / "batch-golden.xml"


def test_batch_bytes_are_the_golden_ones() -> None:
    """The bytes partners get, pinned: written by the renderer before claims were escaped all at once."""
    claims = [rich_claim(), lean_claim(), nasty_claim()]
    head = BatchMeta(batch_id="B-&<1>", created_at=CREATED, sender="gw-1", client_id="fitx",
                     partner_id="inkasso-nord", claim_count=3,
                     total_amount=sum((c.total_open_amount for c in claims), Decimal(0)))
    docs = {1001: {"ab" * 32: b"%PDF-1.4 \x00\xff rechnung"}, 1003: {"cd" * 32: b"<x>&", "ef" * 32: b""}}
    out = io.BytesIO()
    render_batch(out, head, enumerate(claims, start=1001), docs,
                 limitation=lambda c: dt.date(2027, 12, 31) if c.creditor_reference != "R-2" else None)
    assert out.getvalue() == GOLDEN.read_bytes()
    assert validate_batch(out.getvalue()) == []


def _texts(claim: Claim, value: str) -> list[Claim]:
    """The claim with ``value`` put into each text field in turn (the debtor's and an address's too)."""
    out = []
    for name in ("creditor_reference", "invoice_number", "reason", "memo", "currency"):
        out.append(msgspec.structs.replace(claim, **{name: value}))
    d = claim.debtor
    for name in ("first_name", "last_name", "company", "customer_number"):
        out.append(msgspec.structs.replace(claim, debtor=msgspec.structs.replace(d, **{name: value})))
    out.append(msgspec.structs.replace(claim, labels=["ok", value]))
    out.append(msgspec.structs.replace(claim, debtor=msgspec.structs.replace(
        d, addresses=[msgspec.structs.replace(d.addresses[0], city=value)])))
    out.append(msgspec.structs.replace(claim, fees=[Fee(kind=FeeKind.OTHER, amount=Decimal(1), description=value)]))
    return out


def _checked(claim_id: int, claim: Claim, **kw: Any) -> bytes:
    """The claim as the per-field writer (before claims were written in one pass) wrote it."""
    return render_reference.render_claim(claim_id, claim, kw.get("contents"), kw.get("limitation_on"))


@pytest.mark.parametrize("value", ["plain", "a & b", "<tag>", "]]>", "\"q\" 'a'", "tab\tnl\ncr\r", "😀 ü",
                                   "&amp;&lt;", ""])
def test_claims_written_at_once_are_the_bytes_written_text_by_text(value: str) -> None:
    for claim in (*_texts(rich_claim(), value), nasty_claim(), lean_claim()):
        contents = {"ab" * 32: b"%PDF", "cd" * 32: b"<&>"}
        fast = render_claim(5, claim, contents, dt.date(2030, 1, 1))
        assert fast == _checked(5, claim, contents=contents, limitation_on=dt.date(2030, 1, 1))


@pytest.mark.parametrize("value", ["\x00", "\x01", "\x02", "x\x08", "\x1f", "\ud800", "\uffff", "a\x0bb"])
def test_a_text_xml_cannot_carry_fails_with_the_same_error_as_before(value: str) -> None:
    for claim in _texts(rich_claim(), value):
        with pytest.raises(ValueError) as fast:
            render_claim(9, claim)
        with pytest.raises(ValueError) as checked:
            _checked(9, claim)
        assert str(fast.value) == str(checked.value)
        assert str(fast.value).startswith("claim 9: ") and "control character" in str(fast.value)
        assert value not in str(fast.value)


def test_the_first_failing_field_is_named_when_several_fail() -> None:
    # a text XML cannot carry comes before an amount with too many decimals: the text is named, as before
    claim = msgspec.structs.replace(rich_claim(), reason="bad\x01", principal_amount=Decimal("1.001"))
    with pytest.raises(ValueError, match="^claim 3: <reason>: a text holds a control character"):
        render_claim(3, claim)
    later = msgspec.structs.replace(rich_claim(), memo="bad\x01", principal_amount=Decimal("1.001"))
    with pytest.raises(ValueError, match="^claim 3: 1.001 has more decimals than EUR allows"):
        render_claim(3, later)


def _random_claim(rng: random.Random) -> Claim:
    """A claim with each optional part present or not and texts drawn from plain, odd and (rarely) forbidden."""
    alphabet = ["a", "Z", "9", " ", "&", "<", ">", "\"", "'", "ü", "😀", "\t", "\n", "\r", "]]>", "&amp;"]
    if rng.random() < 0.15:
        alphabet.append(rng.choice(["\x00", "\x01", "\x02", "\x1f", "\ud800", "\ufffe"]))

    def t() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    def o() -> str | None:
        return t() if rng.random() < 0.6 else None

    def d() -> dt.date | None:
        return dt.date(2024, rng.randint(1, 12), rng.randint(1, 28)) if rng.random() < 0.5 else None

    def amount() -> Decimal:
        return Decimal(rng.choice(["1", "0.5", "12.34", "1E+2", "0", "-0"] + (["1.001"] if rng.random() < 0.05 else [])))

    def some(make: Any, most: int = 2) -> list[Any]:
        return [make() for _ in range(rng.randint(0, most))]

    from gateway.domain.model import Invoice
    debtor = Debtor(kind=rng.choice(list(DebtorKind)), salutation=rng.choice([None, *Salutation]), title=o(),
                    first_name=o(), last_name=o(), company=o(), legal_form=o(), representative=o(),
                    contact_person=o(), birth_date=d(), customer_number=o(),
                    addresses=some(lambda: Address(street=o(), house_number=o(), postal_code=o(), city=o(),
                                                   country=rng.choice(["DE", "AT"]), kind=rng.choice(list(AddressKind)),
                                                   address_extra=o(), valid_from=d())),
                    phones=some(t), emails=some(t),
                    bank_accounts=some(lambda: BankAccount(iban=t(), bic=o(), holder=o())))
    return Claim(
        client_id="fitx", creditor_reference=t(), invoice_number=o(), claim_type=rng.choice(list(ClaimType)),
        reason=o(), principal_amount=amount(), currency=rng.choice(["EUR", "EUR", "JPY", "KWD"]),
        invoices=some(lambda: Invoice(amount=amount(), number=o(), due_date=d(), date=d(), description=o())),
        fees=some(lambda: Fee(kind=rng.choice(list(FeeKind)), amount=amount(), date=d(), description=o())),
        interest=rng.choice([None, Interest(kind=rng.choice(list(InterestKind)), from_date=dt.date(2024, 1, 1),
                                            rate=rng.choice([None, Decimal("5.12"), Decimal("1E+1")]))]),
        payments_received=some(lambda: Payment(amount=amount(), date=dt.date(2024, 2, 1), reference=o())),
        contract_date=d(), invoice_date=d(), due_date=d(), first_dunning_date=d(), last_dunning_date=d(),
        default_date=d(), disputed=rng.random() < 0.5, memo=o(), labels=some(t),
        documents=some(lambda: Document(name=t(), media_type=t(), sha256=rng.choice(["ab" * 32, "cd" * 32]),
                                        kind=t(), size=rng.choice([None, 0, 12]))),
        debtor=debtor)


def test_random_claims_render_as_the_per_field_writer_did() -> None:
    """Same bytes, or the same error, as the writer that checked and escaped each text where it wrote it."""
    rng = random.Random(15)
    outcomes = {"same bytes": 0, "same error": 0}
    for i in range(600):
        claim = _random_claim(rng)
        contents = {"ab" * 32: b"\x00<&>"}
        limit = dt.date(2030, 1, 1) if i % 2 else None
        try:
            expected: bytes | str = _checked(i, claim, contents=contents, limitation_on=limit)
        except ValueError as exc:
            expected = str(exc)
        try:
            got: bytes | str = render_claim(i, claim, contents, limit)
        except ValueError as exc:
            got = str(exc)
        assert got == expected, claim
        outcomes["same error" if isinstance(got, str) else "same bytes"] += 1
    assert min(outcomes.values()) > 50  # both kinds were really compared


def test_every_character_xml_forbids_is_not_printable() -> None:
    """The renderer skips its search for forbidden characters when the texts are all printable."""
    from gateway.services.render import _NOT_XML

    forbidden = [chr(i) for i in range(0x110000) if _NOT_XML.match(chr(i))]
    assert len(forbidden) > 2000 and not any(c.isprintable() for c in forbidden)


def test_direct_payments_are_rendered_after_the_claims_own_and_the_rest_is_untouched() -> None:
    """``render_each`` with the direct payments reported since intake: listed after the claim's own payments,
    the open amount net of them (never below 0); a claim without any is the same bytes as without the map."""
    from gateway.services.render import render_each, write_batch

    claims = [(1001, rich_claim()), (1002, lean_claim()), (1003, lean_claim("R-3", "20"))]
    direct = {1001: [Payment(amount=Decimal("7.5"), date=dt.date(2025, 3, 1))],
              1003: [Payment(amount=Decimal("15"), date=dt.date(2025, 3, 2)),
                     Payment(amount=Decimal("10"), date=dt.date(2025, 3, 3))]}  # 5.00 more than open: declared
    plain, failed = render_each(claims, client_id="fitx", currency="EUR")
    done, failed_too = render_each(claims, client_id="fitx", currency="EUR", direct=direct)
    assert failed == failed_too == {}
    assert done[1] == plain[1]  # no direct payments: byte for byte as before
    assert [(cid, amount) for cid, _, amount in done] == [(1001, Decimal("90.50")), (1002, Decimal("49.9")),
                                                          (1003, Decimal(0))]
    out = io.BytesIO()
    write_batch(out, BatchMeta(batch_id="b", created_at=CREATED, sender="gw", client_id="fitx", partner_id="p",
                               claim_count=3, total_amount=sum((a for _, _, a in done), Decimal(0))),
                ((element, amount) for _, element, amount in done))
    xml = out.getvalue()
    assert validate_batch(xml) == []
    root = etree.fromstring(xml)
    c1, c3 = "/b:batch/b:claim[1]", "/b:batch/b:claim[3]"
    assert root.xpath(f"{c1}/b:payments/b:payment/b:amount/text()", namespaces=NS) == ["10.50", "7.50"]
    assert root.xpath(f"{c1}/b:payments/b:payment/b:date/text()", namespaces=NS) == ["2025-02-01", "2025-03-01"]
    assert text(root, f"{c1}/b:totalOpenAmount/text()") == "90.50"
    assert root.xpath(f"{c3}/b:payments/b:payment/b:amount/text()", namespaces=NS) == ["15.00", "10.00"]
    assert text(root, f"{c3}/b:totalOpenAmount/text()") == "0.00"
