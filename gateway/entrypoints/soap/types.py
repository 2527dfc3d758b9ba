"""SOAP types of the contract (namespace ``TNS``), mirroring the canonical model field by field.

They are mapped onto ``gateway.domain.model`` in ``translate``; the canonical model stays the one
definition. Required elements are ``min_occurs=1``; everything else may be left out.
"""

from __future__ import annotations

from typing import Any

from spyne import (
    Array,
    Boolean,
    ByteArray,
    ComplexModel,
    Date,
    DateTime,
    Decimal,
    Integer,
    Long,
    Unicode,
)

TNS = "urn:inkasso-gateway:soap:v1"


def req(t: Any, **kw: Any) -> Any:
    """A required, non-nillable element."""
    return t.customize(min_occurs=1, nillable=False, **kw)


def opt(t: Any, **kw: Any) -> Any:
    return t.customize(min_occurs=0, **kw)


class _Base(ComplexModel):  # type: ignore[misc]
    __namespace__ = TNS


def _enum(*values: str) -> Any:
    return Unicode(values=list(values))


# Named item types, so arrays read <emails><Email>..</Email></emails> rather than spyne's generated names.
Email = Unicode(max_len=254, type_name="Email", __namespace__=TNS)
Phone = Unicode(max_len=40, type_name="Phone", __namespace__=TNS)
Label = Unicode(max_len=64, type_name="Label", __namespace__=TNS)
Reference = Unicode(max_len=128, type_name="Reference", __namespace__=TNS)


class Address(_Base):
    _type_info = [("street", opt(Unicode, max_len=200)), ("house_number", opt(Unicode, max_len=20)),
                  ("postal_code", opt(Unicode, max_len=20)), ("city", opt(Unicode, max_len=100)),
                  ("country", opt(Unicode, max_len=2)), ("kind", opt(_enum("home", "business", "billing", "other"))),
                  ("address_extra", opt(Unicode, max_len=200)), ("valid_from", opt(Date))]


class BankAccount(_Base):
    _type_info = [("iban", req(Unicode, max_len=34)), ("bic", opt(Unicode, max_len=11)),
                  ("holder", opt(Unicode, max_len=200))]


class Debtor(_Base):
    _type_info = [("kind", opt(_enum("consumer", "business"))),
                  ("salutation", opt(_enum("mr", "ms", "diverse", "company"))),
                  ("title", opt(Unicode, max_len=50)), ("first_name", opt(Unicode, max_len=100)),
                  ("last_name", opt(Unicode, max_len=100)), ("company", opt(Unicode, max_len=200)),
                  ("legal_form", opt(Unicode, max_len=50)), ("representative", opt(Unicode, max_len=200)),
                  ("contact_person", opt(Unicode, max_len=200)), ("birth_date", opt(Date)),
                  ("customer_number", opt(Unicode, max_len=64)),
                  ("addresses", opt(Array(Address))), ("phones", opt(Array(Phone))),
                  ("emails", opt(Array(Email))), ("bank_accounts", opt(Array(BankAccount)))]


class Fee(_Base):
    _type_info = [("kind", req(_enum("dunning", "return_debit", "other"))), ("amount", req(Decimal)),
                  ("date", opt(Date)), ("description", opt(Unicode, max_len=200))]


class Interest(_Base):
    _type_info = [("kind", req(_enum("statutory_b2c", "statutory_b2b", "fixed"))), ("from_date", req(Date)),
                  ("rate", opt(Decimal))]


class Payment(_Base):
    _type_info = [("amount", req(Decimal)), ("date", req(Date)), ("reference", opt(Unicode, max_len=128))]


DOCUMENT_KINDS = ("invoice", "dunning_letter", "image", "contract", "other")


class DocumentUpload(_Base):
    """A document sent with a claim; ``content`` is base64 in the XML."""

    _type_info = [("name", req(Unicode, max_len=255)), ("media_type", req(Unicode, max_len=128)),
                  ("kind", opt(_enum(*DOCUMENT_KINDS))), ("content", req(ByteArray))]


class DocumentInfo(_Base):
    _type_info = [("name", Unicode), ("media_type", Unicode), ("kind", Unicode), ("sha256", Unicode),
                  ("size", Long)]


_CLAIM_FIELDS: list[tuple[str, Any]] = [
    ("creditor_reference", req(Unicode, max_len=128)), ("principal_amount", req(Decimal)), ("debtor", req(Debtor)),
    ("currency", opt(Unicode, max_len=3)), ("invoice_number", opt(Unicode, max_len=128)),
    ("claim_type", opt(_enum("goods", "goods_prepaid", "service", "other"))), ("reason", opt(Unicode, max_len=500)),
    ("fees", opt(Array(Fee))), ("interest", opt(Interest)), ("payments_received", opt(Array(Payment))),
    ("contract_date", opt(Date)), ("invoice_date", opt(Date)), ("due_date", opt(Date)),
    ("first_dunning_date", opt(Date)), ("last_dunning_date", opt(Date)), ("default_date", opt(Date)),
    ("disputed", opt(Boolean)), ("memo", opt(Unicode, max_len=2000)), ("labels", opt(Array(Label))),
    ("partner_id", opt(Unicode, max_len=64)),
    # the limitation rule's own dates (gateway/domain/limitation.py), last so older requests stay valid
    ("acknowledgement_date", opt(Date)), ("last_payment_date", opt(Date)), ("dunning_order_date", opt(Date)),
    ("dunning_order_end_date", opt(Date)), ("negotiation_start_date", opt(Date)),
    ("negotiation_end_date", opt(Date)),
]


class ClaimInput(_Base):
    _type_info = [*_CLAIM_FIELDS, ("documents", opt(Array(DocumentUpload)))]


class ClaimData(_Base):
    _type_info = [*_CLAIM_FIELDS, ("total_open_amount", Decimal), ("documents", Array(DocumentInfo))]


class Finding(_Base):
    _type_info = [("code", Unicode), ("severity", Unicode), ("field", Unicode), ("message", Unicode)]


class ClaimResult(_Base):
    # outcome: accepted, held, rejected, conflict; differing_fields: a conflict's canonical field names
    _type_info = [("index", Integer), ("creditor_reference", Unicode), ("outcome", Unicode), ("claim_id", Long),
                  ("existing", Boolean), ("state", Unicode), ("findings", Array(Finding)),
                  ("differing_fields", Array(Unicode))]


class SubmitResult(_Base):
    _type_info = [("submission", Unicode), ("status", Unicode), ("accepted", Integer), ("held", Integer),
                  ("rejected", Integer), ("total_amount", Decimal), ("currency", Unicode),
                  ("results", Array(ClaimResult))]


class Skipped(_Base):
    _type_info = [("claim_id", Long), ("reason", Unicode)]


class ReleaseResult(_Base):
    _type_info = [("run", Unicode), ("released", Array(Long)), ("skipped", Array(Skipped))]


class SubmissionFinding(_Base):
    _type_info = [("index", Integer), ("creditor_reference", Unicode), ("outcome", Unicode), ("code", Unicode),
                  ("severity", Unicode), ("field", Unicode), ("message", Unicode)]


class SubmissionInfo(_Base):
    # handover: processing until the partner confirmed every claim sent, then handed_over
    _type_info = [("reference", Unicode), ("channel", Unicode), ("status", Unicode), ("handover", Unicode),
                  ("received_at", DateTime), ("completed_at", DateTime), ("claims", Integer), ("accepted", Integer), ("held", Integer),
                  ("rejected", Integer), ("total_amount", Decimal), ("currency", Unicode),
                  ("findings", Array(SubmissionFinding))]


class CaseAccount(_Base):
    """The claim's account now: open = principal + fees + interest + agency_costs - paid_direct - paid_agency
    - written_off, never below 0 (beyond it: overpaid). Payouts are what the agency passed on to the creditor."""

    _type_info = [("currency", Unicode), ("principal", Decimal), ("fees", Decimal), ("interest", Decimal),
                  ("agency_costs", Decimal), ("paid_direct", Decimal), ("paid_agency", Decimal),
                  ("payouts", Decimal), ("written_off", Decimal), ("open", Decimal), ("overpaid", Decimal),
                  ("partner_file_number", Unicode), ("stage", Unicode), ("closing_reason", Unicode)]


class ClaimInfo(_Base):
    # unread: the claim changed (partner, gateway or operator) since the client last marked it seen
    _type_info = [("claim_id", Long), ("state", Unicode), ("state_since", DateTime), ("received_at", DateTime),
                  ("submission", Unicode), ("labels", Array(Label)), ("claim", ClaimData),
                  ("account", CaseAccount), ("unread", Boolean)]


class ClaimSummary(_Base):
    _type_info = [("claim_id", Long), ("creditor_reference", Unicode), ("invoice_number", Unicode),
                  ("state", Unicode), ("last_change", DateTime), ("received_at", DateTime),
                  ("invoice_date", Date), ("due_date", Date), ("principal_amount", Decimal),
                  ("open_amount", Decimal), ("currency", Unicode), ("partner_id", Unicode),
                  ("stage", Unicode), ("partner_file_number", Unicode), ("overpaid_amount", Decimal),
                  ("unread", Boolean)]


class ClaimStatus(_Base):
    # found false: no claim of this client has the reference (every other field is then left out)
    _type_info = [("creditor_reference", Unicode), ("found", Boolean), ("claim_id", Long), ("state", Unicode),
                  ("state_since", DateTime), ("stage", Unicode), ("partner_id", Unicode),
                  ("partner_file_number", Unicode), ("currency", Unicode), ("open_amount", Decimal),
                  ("overpaid_amount", Decimal), ("unread", Boolean)]


class ClaimPage(_Base):
    # total_exact false: at least ``total`` claims match (counting stops 10,000 past the page); page on
    _type_info = [("total", Integer), ("offset", Integer), ("claims", Array(ClaimSummary)),
                  ("total_exact", Boolean)]


class ListFilter(_Base):
    _type_info = [("states", opt(Array(Unicode))), ("label", opt(Unicode, max_len=64)),
                  ("date_field", opt(_enum("received", "last_change", "invoice_date", "due_date"))),
                  ("date_from", opt(Date)), ("date_to", opt(Date)), ("text", opt(Unicode, max_len=128)),
                  ("unread", opt(Boolean)), ("sort", opt(Unicode, max_len=32)), ("descending", opt(Boolean)),
                  ("offset", opt(Integer)), ("limit", opt(Integer))]


class Event(_Base):
    _type_info = [("event_id", Long), ("claim_id", Long), ("creditor_reference", Unicode), ("state", Unicode),
                  ("from_state", Unicode), ("actor", Unicode), ("kind", Unicode), ("data", Unicode),
                  ("at", DateTime), ("unread", Boolean),
                  # change: state_change, client_request, partner_update or gateway_note (claim_queries.CHANGES)
                  ("change", Unicode)]


class ChangeFeed(_Base):
    _type_info = [("events", Array(Event)), ("next_cursor", Long), ("more", Boolean)]


class Reason(_Base):
    _type_info = [("code", Unicode), ("field", Unicode), ("message", Unicode), ("fix", Unicode)]


class Explanation(_Base):
    _type_info = [("claim_id", Long), ("state", Unicode), ("summary", Unicode), ("reasons", Array(Reason))]


class OperationResult(_Base):
    _type_info = [("claim_id", Long), ("state", Unicode), ("event_id", Long), ("forwarded", Boolean),
                  ("message_id", Long)]


class Message(_Base):
    _type_info = [("message_id", Long), ("direction", Unicode), ("text", Unicode), ("at", DateTime)]
