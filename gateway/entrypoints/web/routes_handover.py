"""Hand over one claim with a form: the fields a person fills in, an optional document (a phone's camera).

The form becomes the same plain data a SOAP ``ClaimInput`` becomes, goes through SOAP's translation
(``soap.translate.draft_of``: document checks, partner_id refused, type errors as findings) and SOAP's use
case (``submit.submit_claims``): the same rules as every channel. Findings are shown at the form's fields;
an accepted or held claim is stored (with its document encrypted, as SOAP stores documents) and opened.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.findings import Finding
from gateway.entrypoints.soap.translate import draft_of
from gateway.entrypoints.web.pages import flash, post, redirect, render
from gateway.entrypoints.web.routes_claims import amount_text
from gateway.entrypoints.web.security import client_user, field
from gateway.services import submit

log = logging.getLogger("gateway.web")
TEXT_FIELDS = ("reference", "invoice_number", "amount", "invoice_date", "due_date", "kind", "first_name",
               "last_name", "company", "birth_date", "street", "house_number", "postal_code", "city", "country",
               "email")
# A finding's canonical field path (its start) -> the form field it is shown at.
AT = (("creditor_reference", "reference"), ("principal_amount", "amount"), ("documents", "document"),
      ("debtor.emails", "email"), ("debtor.addresses[0].", ""), ("debtor.", ""))


def form_field(path: str | None) -> str:
    """The form field a finding belongs to ('' for the form as a whole)."""
    if not path:
        return ""
    for prefix, name in AT:
        if path.startswith(prefix):
            rest = path[len(prefix):] if not name else name
            name = re.split(r"[.\[]", rest)[0]
            return name if name in (*TEXT_FIELDS, "document") else ""
    return path if path in TEXT_FIELDS else ""


def plain_claim(values: dict[str, str], document: tuple[str, str, bytes] | None) -> dict[str, Any]:
    """The form as the plain data of a SOAP claim (empty fields left out, like SOAP's absent elements)."""
    v = {k: x for k, x in values.items() if x}
    address = {k: v[k] for k in ("street", "house_number", "postal_code", "city", "country") if k in v}
    debtor: dict[str, Any] = {k: v[k] for k in ("kind", "first_name", "last_name", "company", "birth_date")
                              if k in v}
    if address:
        debtor["addresses"] = [address]
    if "email" in v:
        debtor["emails"] = [v["email"]]
    plain: dict[str, Any] = {"creditor_reference": v.get("reference"), "debtor": debtor,
                             **{k: v[k] for k in ("invoice_number", "invoice_date", "due_date") if k in v}}
    if "amount" in v:
        plain["principal_amount"] = amount_text(v["amount"])
    if document:
        name, media, content = document
        plain["documents"] = [{"name": name, "media_type": media, "kind": "invoice", "content": [content]}]
    return {k: x for k, x in plain.items() if x is not None}


async def new_form(request: Request) -> Response:
    client_user(request, submit=True)
    return render(request, "handover.html", {"v": {"country": "DE", "kind": "consumer"}, "errors": {}})


async def handover(request: Request, form: FormData) -> Response:
    user, client = client_user(request, submit=True)
    app = request.app.state.gateway
    values = {k: field(form, k, 255).strip() for k in TEXT_FIELDS}
    upload, document = form.get("document"), None
    if isinstance(upload, UploadFile) and upload.filename:
        content = await upload.read(app.config.soap.max_document_bytes + 1)
        document = (upload.filename[-255:], upload.content_type or "application/octet-stream", content)
    # SOAP's translation of a plain claim: it takes what to_plain makes of a spyne object, which a dict is.
    draft = draft_of(client, cast(Any, plain_claim(values, document)), app.config.soap.max_document_bytes)
    result = await run_in_threadpool(submit.submit_claims, app, client, [draft])
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
    return render(request, "handover.html", {"v": values, "errors": errors, "outcome": answer.outcome}, status=422)


ROUTES = [
    Route("/claims/new", new_form, methods=["GET"]),
    post("/claims/new", handover),
]
