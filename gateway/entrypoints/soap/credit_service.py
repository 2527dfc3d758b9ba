"""The SOAP operation ``CheckCredit``: a credit check across the client's bureaus (docs/credit.md).

A service class of its own, registered next to ``GatewayService`` in the same application (one WSDL,
one namespace), thin like it: translate the subject, call ``services.credit.check_credit``, translate back.
The client and the login come from the request gate (the authenticated SOAP username, never from the
request): the audit log records the login as who asked, with the stated ``interest``. The optional ``user``
element (required in earlier versions of the contract) may name the person at the client behind the login;
it is recorded after the login (``login: user``) and can never replace it. Refusals keep the contract's stable fault codes:
``Client.Validation`` (interest, user, missing subject fields: the message starts with the reason code),
``Client.Throttled`` (the client's hourly limit), ``Client.Authorization`` (credit checks not enabled).
"""

from __future__ import annotations

from typing import Any

from spyne import Array, Boolean, Date, DateTime, Fault, Integer, Long, ServiceBase, Unicode, rpc

from gateway.domain.credit import INTERESTS, Subject, SubjectKind
from gateway.entrypoints.soap import faults
from gateway.entrypoints.soap.auth import ENV_LOGIN
from gateway.entrypoints.soap.service import ENV_CLIENT, ENV_READ_ONLY
from gateway.entrypoints.soap.types import TNS, _Base, _enum, opt, req
from gateway.services import credit

_REFUSAL_FAULT = {"rate_limited": faults.THROTTLED, "not_enabled": faults.AUTHORIZATION}


class CreditSubject(_Base):
    _type_info = [("kind", opt(_enum("consumer", "business"))), ("first_name", opt(Unicode, max_len=100)),
                  ("last_name", opt(Unicode, max_len=100)), ("company", opt(Unicode, max_len=200)),
                  ("birth_date", opt(Date)), ("street", opt(Unicode, max_len=200)),
                  ("house_number", opt(Unicode, max_len=20)), ("postal_code", opt(Unicode, max_len=20)),
                  ("city", opt(Unicode, max_len=100)), ("country", opt(Unicode, max_len=2))]


class CreditReason(_Base):
    _type_info = [("code", req(Unicode)), ("colour", opt(Unicode)), ("detail", opt(Unicode))]


class CreditEntry(_Base):
    _type_info = [("kind", req(Unicode)), ("date", opt(Date)), ("amount", opt(Unicode))]


class CreditBureauAnswer(_Base):
    _type_info = [("bureau", req(Unicode)), ("status", req(_enum("answered", "timeout", "error"))),
                  ("colour", opt(_enum("green", "yellow", "red"))), ("found", opt(Boolean)), ("score", opt(Integer)),
                  ("reference", opt(Unicode)), ("error", opt(Unicode)),
                  ("reasons", Array(CreditReason)), ("entries", Array(CreditEntry))]


class CreditCheckResult(_Base):
    _type_info = [("check_id", req(Long)), ("colour", req(_enum("green", "yellow", "red"))),
                  ("incomplete", req(Boolean)), ("cached", req(Boolean)), ("source_check_id", opt(Long)),
                  ("checked_at", req(DateTime)), ("bureaus", Array(CreditBureauAnswer))]


def result(answer: credit.CreditAnswer) -> CreditCheckResult:
    """The SOAP result of a check."""
    verdicts = {v.bureau: v for v in (answer.verdict.bureaus if answer.verdict else [])}
    bureaus = []
    for o in answer.outcomes:
        v, r = verdicts.get(o.bureau), o.result
        bureaus.append(CreditBureauAnswer(
            bureau=o.bureau, status=o.status, colour=v.colour if v else None, found=r.found if r else None,
            score=r.score if r else None, reference=r.reference if r else None, error=o.error,
            reasons=[CreditReason(code=x.code, colour=x.colour, detail=x.detail or None)
                     for x in (v.reasons if v else [])],
            entries=[CreditEntry(kind=e.kind, date=e.date, amount=e.amount) for e in (r.entries if r else [])]))
    return CreditCheckResult(check_id=answer.check_id, colour=answer.colour, incomplete=answer.incomplete,
                             cached=answer.cached, source_check_id=answer.source_check_id,
                             checked_at=answer.checked_at, bureaus=bureaus)


def subject_of(s: Any) -> Subject:
    """The core's subject from the SOAP one (absent elements stay None)."""
    return Subject(kind=SubjectKind(s.kind or "consumer"), first_name=s.first_name, last_name=s.last_name,
                   company=s.company, birth_date=s.birth_date, street=s.street, house_number=s.house_number,
                   postal_code=s.postal_code, city=s.city, country=s.country or "DE")


class CreditService(ServiceBase):  # type: ignore[misc]
    """Credit checks for creditor systems (SOAP 1.1)."""

    @rpc(req(CreditSubject), req(_enum(*INTERESTS)), opt(Unicode, max_len=128), _returns=CreditCheckResult)
    def CheckCredit(ctx, subject, interest, user):  # type: ignore[no-untyped-def]
        """Check a person or company with the client's bureaus; the answer is a traffic light with reasons."""
        if ctx.transport.req_env.get(ENV_READ_ONLY):  # a check is a paid query written to the audit log
            raise faults.AuthorizationFault("this client's SOAP access is read-only")
        client_id, login = ctx.transport.req_env[ENV_CLIENT], ctx.transport.req_env[ENV_LOGIN]
        named = " ".join((user or "").split())
        try:
            answer = credit.check_credit(ctx.app.gateway_app, client_id, subject_of(subject), interest=interest,
                                         user=f"{login}: {named}" if named else login, channel="soap")
        except credit.CreditRefused as exc:
            raise Fault(faultcode=_REFUSAL_FAULT.get(exc.code, faults.VALIDATION),
                        faultstring=f"{exc.code}: {exc}") from None
        return result(answer)


__all__ = ["TNS", "CreditService"]
