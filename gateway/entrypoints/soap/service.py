"""The SOAP operations. Thin on purpose: each translates its arguments, calls one use case, translates back.

The caller's client id comes from the request gate (``app.RequestGate``), never from the message.
"""

from __future__ import annotations

import json
from typing import Any

from spyne import Array, Boolean, Date, Decimal, Integer, Long, ServiceBase, Unicode, rpc

from gateway.bootstrap import App
from gateway.domain.findings import MISSING_FIELD, Finding
from gateway.entrypoints.soap import translate as tr
from gateway.entrypoints.soap import types as t
from gateway.entrypoints.soap.faults import AuthorizationFault, ValidationFault
from gateway.entrypoints.soap.schema_check import ENV_SCHEMA_REJECTED
from gateway.entrypoints.soap.v2 import TNS_V2
from gateway.services import claim_ops, claim_queries, projection_ops, submit
from gateway.store.claim_search import ClaimFilter

ENV_CLIENT, ENV_READ_ONLY, ENV_BODY = "gateway.client_id", "gateway.read_only", "gateway.body"


def _app(ctx: Any) -> App:
    app: App = ctx.app.gateway_app
    return app


def _client(ctx: Any, *, write: bool = False) -> str:
    env = ctx.transport.req_env
    if write and env.get(ENV_READ_ONLY):
        raise AuthorizationFault("this client's SOAP access is read-only")
    client_id: str = env[ENV_CLIENT]
    return client_id


def _op(r: claim_ops.OpResult) -> t.OperationResult:
    return t.OperationResult(claim_id=r.claim_id, state=r.state, event_id=r.event_id, forwarded=r.forwarded,
                             message_id=r.message_id)


def _event(e: dict[str, Any]) -> t.Event:
    return t.Event(event_id=e["id"], claim_id=e["claim_id"], creditor_reference=e.get("creditor_reference"),
                   state=e["state"], from_state=e["from_state"], actor=e["actor"], kind=e["kind"],
                   data=json.dumps(e["data"], sort_keys=True) if e["data"] else None, at=e["created_at"],
                   unread=e.get("unread"), change=claim_queries.change_of(e))


def _draft(client_id: str, item: Any, max_document_bytes: int) -> submit.Draft:
    if item is None:  # <ClaimInput xsi:nil="true"/>: v1's schema lets it through
        return submit.Draft(reference=None, claim=None, findings=[
            Finding(code=MISSING_FIELD, message="the claim is empty (xsi:nil)")])
    return tr.draft_of(client_id, item, max_document_bytes)


def _claim_info(v: claim_queries.ClaimView) -> t.ClaimInfo:
    data = tr.claim_data(v.claim)
    data.total_open_amount = v.account.open  # what is open now, after payments and bookings
    a = v.account
    account = t.CaseAccount(**{k: getattr(a, k) for k in t.CaseAccount.get_flat_type_info(t.CaseAccount)})
    return t.ClaimInfo(claim_id=v.claim_id, state=v.state, state_since=v.state_since, received_at=v.created_at,
                       submission=v.submission, labels=v.labels, claim=data, account=account, unread=a.unread)


class GatewayService(ServiceBase):  # type: ignore[misc]
    """Operations for creditor ERP systems (SOAP 1.1)."""

    @rpc(Array(t.ClaimInput, min_occurs=1, nillable=False), Boolean(min_occurs=0), _returns=t.SubmitResult)
    def SubmitClaims(ctx, claims, release):  # type: ignore[no-untyped-def]
        app, client_id = _app(ctx), _client(ctx, write=True)
        limit = app.config.soap.max_claims_per_request
        # claims that broke the schema were taken out of the body (schema_check); they go back in their places
        unfit = {r.index: r for r in ctx.transport.req_env.get(ENV_SCHEMA_REJECTED, ())}
        count = len(claims or []) + len(unfit)
        if not count or count > limit:
            raise ValidationFault(f"send 1 to {limit} claims per request, got {count}")
        fit = iter(claims or [])
        drafts = [submit.Draft(reference=unfit[i].reference, claim=None, findings=unfit[i].findings) if i in unfit
                  else _draft(client_id, next(fit), app.config.soap.max_document_bytes)
                  for i in range(1, count + 1)]
        r = submit.submit_claims(app, client_id, drafts, release=release,
                                 raw=ctx.transport.req_env.get(ENV_BODY, b""))
        return tr.build(
            t.SubmitResult,
            submission=r.submission, status=r.status, accepted=r.accepted, held=r.held, rejected=r.rejected,
            total_amount=r.total_amount, currency=r.currency,
            results=[tr.build(t.ClaimResult, index=i, creditor_reference=a.reference, outcome=a.outcome,
                              claim_id=a.claim_id, existing=a.existing, state=a.state,
                              findings=[tr.finding(f) for f in a.findings],
                              differing_fields=a.differing_fields or None)
                     for i, a in enumerate(r.results, start=1)])

    @rpc(Array(Long, min_occurs=0), Unicode(min_occurs=0, max_len=32), Unicode(min_occurs=0, max_len=1000),
         _returns=t.ReleaseResult)
    def ReleaseClaims(ctx, claim_ids, submission, reason):  # type: ignore[no-untyped-def]
        # reason: recorded in each released claim's history; a time-barred claim is skipped without one
        r = claim_ops.release(_app(ctx), _client(ctx, write=True), claim_ids=list(claim_ids or []),
                              submission=submission, reason=reason)
        return t.ReleaseResult(run=r.run, released=r.released,
                               skipped=[t.Skipped(claim_id=c, reason=why) for c, why in r.skipped])

    @rpc(Unicode(min_occurs=1, nillable=False, max_len=32), _returns=t.SubmissionInfo)
    def GetSubmission(ctx, reference):  # type: ignore[no-untyped-def]
        sub, found, handover = claim_queries.get_submission(_app(ctx), _client(ctx), reference)
        currency = sub["currency"] or "EUR"
        return t.SubmissionInfo(
            reference=sub["reference"], channel=sub["channel"], status=sub["status"], handover=handover,
            received_at=sub["received_at"],
            completed_at=sub["completed_at"], claims=sub["rows"], accepted=sub["accepted"], held=sub["held"],
            rejected=sub["rejected"], total_amount=tr.money(sub["total_minor"], currency), currency=sub["currency"],
            findings=[t.SubmissionFinding(index=f["row"], creditor_reference=f["reference"], outcome=f["outcome"],
                                          code=f["code"], severity=f["severity"], field=f["field"],
                                          message=f["message"]) for f in found])

    @rpc(Long(min_occurs=1, nillable=False), _returns=t.ClaimInfo)
    def GetClaim(ctx, claim_id):  # type: ignore[no-untyped-def]
        return _claim_info(claim_queries.get_claim(_app(ctx), _client(ctx), claim_id))

    @rpc(Unicode(min_occurs=1, nillable=False, max_len=128), _returns=t.ClaimInfo)
    def GetClaimByReference(ctx, creditor_reference):  # type: ignore[no-untyped-def]
        """The claim by your own creditor_reference (as GetClaim); Client.UnknownClaim if you have none with it."""
        return _claim_info(claim_queries.claim_by_reference(_app(ctx), _client(ctx), tr.nfc(creditor_reference)))

    @rpc(Array(t.Reference, min_occurs=1, nillable=False), _returns=Array(t.ClaimStatus))
    def GetClaimStatuses(ctx, references):  # type: ignore[no-untyped-def]
        """Where up to 1,000 claims stand, by creditor_reference, in the order asked; found=false if unknown."""
        found = claim_queries.statuses(_app(ctx), _client(ctx), [tr.nfc(r or "") for r in references or []])
        return [t.ClaimStatus(**vars(x)) for x in found]

    @rpc(t.ListFilter.customize(min_occurs=0), _returns=t.ClaimPage)
    def ListClaims(ctx, filter):  # type: ignore[no-untyped-def]
        plain = tr.to_plain(filter) if filter is not None else {}
        f = ClaimFilter(**plain)
        rows, total, exact = claim_queries.list_claims(_app(ctx), _client(ctx), f)
        return t.ClaimPage(total=total, total_exact=exact, offset=f.offset, claims=[t.ClaimSummary(
            claim_id=r["claim_id"], creditor_reference=r["creditor_reference"], invoice_number=r["invoice_number"],
            state=r["state"], last_change=r["last_change"], received_at=r["received_at"],
            invoice_date=r["invoice_date"], due_date=r["due_date"], currency=r["currency"],
            principal_amount=tr.money(r["principal_minor"], r["currency"]),
            open_amount=tr.money(r["open_minor"], r["currency"]), partner_id=r["partner_id"], stage=r["stage"],
            partner_file_number=r["partner_file_number"],
            overpaid_amount=tr.money(r["overpaid_minor"], r["currency"]), unread=bool(r["unread"])) for r in rows])

    @rpc(Array(Long, min_occurs=0), Boolean(min_occurs=0), _returns=Integer)
    def MarkSeen(ctx, claim_ids, all_claims):  # type: ignore[no-untyped-def]
        """Mark claims (or, with all_claims, every claim of the client) as seen; returns how many were unread."""
        ids = None if all_claims else list(claim_ids or [])
        return projection_ops.mark_seen(_app(ctx), _client(ctx), ids)  # a read mark: read-only clients too

    @rpc(Long(min_occurs=1, nillable=False), _returns=Array(t.Event))
    def GetClaimHistory(ctx, claim_id):  # type: ignore[no-untyped-def]
        return [_event(e) for e in claim_queries.history(_app(ctx), _client(ctx), claim_id)]

    @rpc(Long(min_occurs=0), Integer(min_occurs=0), Boolean(min_occurs=0), _returns=t.ChangeFeed)
    def GetChanges(ctx, cursor, limit, from_now):  # type: ignore[no-untyped-def]
        """Changes after cursor, oldest first; from_now answers no changes and the head cursor to start from."""
        # v1 reads limit and cursor as it always did (its clients rely on it: 0 is the default, the limit is
        # brought into range, a cursor beyond the head answers nothing); v2 refuses what was never valid.
        strict = ctx.app.tns == TNS_V2
        events, nxt, more = claim_queries.changes(_app(ctx), _client(ctx), cursor or 0,
                                                  (100 if limit is None else limit) if strict else (limit or 100),
                                                  from_now=bool(from_now), strict=strict)
        return t.ChangeFeed(events=[_event(e) for e in events], next_cursor=nxt, more=more)

    @rpc(Long(min_occurs=1, nillable=False), _returns=t.Explanation)
    def ExplainClaim(ctx, claim_id):  # type: ignore[no-untyped-def]
        x = claim_queries.explain(_app(ctx), _client(ctx), claim_id)
        return t.Explanation(claim_id=x.claim_id, state=x.state, summary=x.summary, reasons=[
            t.Reason(code=r.code, field=r.field, message=r.message, fix=r.fix) for r in x.reasons])

    @rpc(Long(min_occurs=1, nillable=False), Unicode(min_occurs=0, max_len=1000), _returns=t.OperationResult)
    def CancelClaim(ctx, claim_id, reason):  # type: ignore[no-untyped-def]
        return _op(claim_ops.cancel(_app(ctx), _client(ctx, write=True), claim_id, reason))

    @rpc(Long(min_occurs=1, nillable=False), Decimal(min_occurs=1, nillable=False),
         Date(min_occurs=1, nillable=False), Unicode(min_occurs=0, max_len=3), Boolean(min_occurs=0),
         _returns=t.OperationResult)
    def ReportDirectPayment(ctx, claim_id, amount, date, currency, overpayment):  # type: ignore[no-untyped-def]
        # overpayment: the client means a payment above the open amount (refused without it)
        return _op(claim_ops.report_payment(_app(ctx), _client(ctx, write=True), claim_id, amount, date, currency,
                                            overpayment=bool(overpayment)))

    @rpc(Long(min_occurs=1, nillable=False), Unicode(min_occurs=1, nillable=False, max_len=10000),
         _returns=t.OperationResult)
    def SendMessage(ctx, claim_id, text):  # type: ignore[no-untyped-def]
        return _op(claim_ops.send_message(_app(ctx), _client(ctx, write=True), claim_id, text))

    @rpc(Long(min_occurs=1, nillable=False), Long(min_occurs=0), _returns=Array(t.Message))
    def GetMessages(ctx, claim_id, after_id):  # type: ignore[no-untyped-def]
        found = claim_ops.messages(_app(ctx), _client(ctx), claim_id, after_id or 0)
        return [t.Message(message_id=m["id"], direction=m["direction"], text=m["text"], at=m["created_at"])
                for m in found]

    @rpc(Long(min_occurs=1, nillable=False), _returns=t.OperationResult)
    def RefreshClaim(ctx, claim_id):  # type: ignore[no-untyped-def]
        return _op(claim_ops.refresh(_app(ctx), _client(ctx, write=True), claim_id))

    @rpc(Long(min_occurs=1, nillable=False), Array(t.Label, min_occurs=0), _returns=t.OperationResult)
    def SetLabels(ctx, claim_id, labels):  # type: ignore[no-untyped-def]
        return _op(claim_ops.set_labels(_app(ctx), _client(ctx, write=True), claim_id, list(labels or [])))

    @rpc(Long(min_occurs=1, nillable=False), _returns=t.OperationResult)
    def RequestLongTermMonitoring(ctx, claim_id):  # type: ignore[no-untyped-def]
        return _op(claim_ops.request_monitoring(_app(ctx), _client(ctx, write=True), claim_id))
