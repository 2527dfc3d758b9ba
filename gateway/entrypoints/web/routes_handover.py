"""Hand over one claim with a form: the fields a person fills in (amounts, fees, interest, the debtor with
address and bank account) and documents (several; on a phone the camera).

The form becomes the same plain data a SOAP ``ClaimInput`` becomes, goes through the translation SOAP uses
too (``services.drafts.draft_of``: document checks, type errors as findings) and the same use case
(``submit.submit_claims``, channel ``web``): the same rules as every channel. Findings are shown at the form's
fields; an accepted or held claim is stored (its documents encrypted, as SOAP stores documents) and opened.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.findings import Finding
from gateway.entrypoints.web.pages import client_uploads, flash, post, redirect, render
from gateway.entrypoints.web.routes_claims import amount_text
from gateway.entrypoints.web.security import MAX_FILES, clean, client_user, text_field
from gateway.services import drafts, submit
from gateway.services import labels as label_service

log = logging.getLogger("gateway.web")
FEES = (("fee_dunning", "dunning"), ("fee_return_debit", "return_debit"), ("fee_other", "other"))
INTEREST_KINDS = ("statutory_b2c", "statutory_b2b", "fixed")
TEXT_FIELDS = ("reference", "invoice_number", "amount", "invoice_date", "due_date", *(f for f, _ in FEES),
               "interest_kind", "interest_from", "interest_rate", "kind", "first_name", "last_name", "company",
               "birth_date", "street", "house_number", "postal_code", "city", "country", "email", "iban", "bic")
# A finding's canonical field path (its start) -> the form field (or group: fees, interest) it is shown at.
AT = (("creditor_reference", "reference"), ("principal_amount", "amount"), ("documents", "document"),
      ("fees", "fees"), ("interest.from_date", "interest_from"), ("interest.rate", "interest_rate"),
      ("interest", "interest_kind"), ("debtor.emails", "email"), ("debtor.bank_accounts", "iban"),
      ("debtor.addresses[0].", ""), ("debtor.", ""))


def form_field(path: str | None) -> str:
    """The form field a finding belongs to ('' for the form as a whole)."""
    if not path:
        return ""
    for prefix, name in AT:
        if path.startswith(prefix):
            rest = path[len(prefix):] if not name else name
            name = re.split(r"[.\[]", rest)[0]
            return name if name in (*TEXT_FIELDS, "document", "fees") else ""
    return path if path in TEXT_FIELDS else ""


def plain_claim(values: dict[str, str], documents: list[tuple[str, str, bytes]],
                labels: list[str] | None = None) -> dict[str, Any]:
    """The form as the plain data of a SOAP claim (empty fields left out, like SOAP's absent elements)."""
    v = {k: x for k, x in values.items() if x}
    address = {k: v[k] for k in ("street", "house_number", "postal_code", "city", "country") if k in v}
    debtor: dict[str, Any] = {k: v[k] for k in ("kind", "first_name", "last_name", "company", "birth_date")
                              if k in v}
    if address:
        debtor["addresses"] = [address]
    if "email" in v:
        debtor["emails"] = [v["email"]]
    if "iban" in v:
        debtor["bank_accounts"] = [{"iban": v["iban"].replace(" ", "").upper(),
                                    **({"bic": v["bic"].replace(" ", "").upper()} if "bic" in v else {})}]
    plain: dict[str, Any] = {"creditor_reference": v.get("reference"), "debtor": debtor,
                             **{k: v[k] for k in ("invoice_number", "invoice_date", "due_date") if k in v}}
    if "amount" in v:
        plain["principal_amount"] = amount_text(v["amount"])
    fees = [{"kind": kind, "amount": amount_text(v[name])} for name, kind in FEES if name in v]
    if fees:
        plain["fees"] = fees
    if "interest_kind" in v:
        plain["interest"] = {"kind": v["interest_kind"], "from_date": v.get("interest_from"),
                             **({"rate": amount_text(v["interest_rate"])} if "interest_rate" in v else {})}
    if labels:
        plain["labels"] = labels
    if documents:  # the first is the invoice, the others its attachments
        plain["documents"] = [{"name": name, "media_type": media, "kind": "invoice" if i == 0 else "other",
                               "content": [content]} for i, (name, media, content) in enumerate(documents)]
    return {k: x for k, x in plain.items() if x is not None}


async def _form(request: Request, client: str, values: dict[str, str], chosen: list[str],
                errors: dict[str, list[str]], outcome: str | None = None) -> Response:
    labels = await run_in_threadpool(label_service.catalogue, request.app.state.gateway, client)
    return render(request, "handover.html", {"v": values, "errors": errors, "outcome": outcome,
                                             "interest_kinds": INTEREST_KINDS, "fees": FEES, "labels": labels,
                                             "chosen": chosen}, status=422 if outcome else 200)


async def new_form(request: Request) -> Response:
    user, client = client_user(request, submit=True)
    return await _form(request, client, {"country": "DE", "kind": "consumer"}, [], {})


async def handover(request: Request, form: FormData) -> Response:
    user, client = client_user(request, submit=True)
    app = request.app.state.gateway
    values = {k: text_field(form, k, 255) for k in TEXT_FIELDS}
    if values["interest_kind"] not in INTEREST_KINDS:
        values["interest_kind"] = ""
    documents = []
    for upload in form.getlist("document")[:MAX_FILES]:
        if isinstance(upload, UploadFile) and upload.filename:
            content = await upload.read(app.config.soap.max_document_bytes + 1)
            documents.append((clean(upload.filename)[-255:], upload.content_type or "application/octet-stream",
                              content))
    # labels of the client's catalogue only (ticked boxes); others are attached on the claim's page
    known = {x.name for x in await run_in_threadpool(label_service.catalogue, app, client)}
    chosen = [x for x in dict.fromkeys(form.getlist("labels")) if isinstance(x, str) and x in known]
    draft = drafts.draft_of(client, plain_claim(values, documents, chosen), app.config.soap.max_document_bytes)
    result = await run_in_threadpool(submit.submit_claims, app, client, [draft], channel="web")
    answer = result.results[0]
    if answer.outcome in ("accepted", "held") and answer.claim_id is not None:
        log.info("web.handover login=%s claim=%d outcome=%s", user.login, answer.claim_id, answer.outcome)
        flash(request, "handover_" + answer.outcome)
        return redirect(f"/claims/{answer.claim_id}")
    errors: dict[str, list[str]] = {}
    for f in answer.findings or [Finding(code="conflict", field="creditor_reference", message=answer.outcome)]:
        errors.setdefault(form_field(f.field), []).append(f.for_client())
    log.info("web.handover login=%s outcome=%s findings=%s", user.login, answer.outcome,
             ",".join(f.code for f in answer.findings))
    return await _form(request, client, values, chosen, errors, answer.outcome)


ROUTES = [
    Route("/claims/new", new_form, methods=["GET"]),
    post("/claims/new", handover, files=client_uploads),
]
