"""A credit check from the console: a form (works on a phone, without JavaScript) and the result page.

The form becomes the core's ``Subject`` and one call of ``services.credit.check_credit`` (channel ``web``,
the login as the user who asks); the answer is shown at ``/credit/<check id>`` (post, redirect, get), which
only the client's own users can open. Only users with role ``submit`` may ask: a check is a paid query.
"""

from __future__ import annotations

import logging
from datetime import date

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.credit import Subject, SubjectKind
from gateway.entrypoints.web.pages import post, redirect, render
from gateway.entrypoints.web.security import client_user, field
from gateway.errors import NotFound
from gateway.services import credit

log = logging.getLogger("gateway.web")
FIELDS = ("kind", "first_name", "last_name", "company", "birth_date", "street", "house_number", "postal_code",
          "city", "country", "interest")
_STATUS = {"rate_limited": 429, "not_enabled": 403}


def _subject(v: dict[str, str]) -> tuple[Subject | None, list[str]]:
    """The subject of the form, or the fields that cannot be read."""
    try:
        birth = date.fromisoformat(v["birth_date"]) if v["birth_date"] else None
    except ValueError:
        return None, ["birth_date"]
    kind = SubjectKind.BUSINESS if v["kind"] == "business" else SubjectKind.CONSUMER
    return Subject(kind=kind, first_name=v["first_name"] or None, last_name=v["last_name"] or None,
                   company=v["company"] or None, birth_date=birth, street=v["street"] or None,
                   house_number=v["house_number"] or None, postal_code=v["postal_code"] or None,
                   city=v["city"] or None, country=(v["country"] or "DE").upper()[:2]), []


def _form(request: Request, client: str, values: dict[str, str], errors: list[str], refusal: str | None,
          status: int = 200) -> Response:
    app = request.app.state.gateway
    settings = app.config.client(client).credit
    return render(request, "credit_form.html", {
        "v": values, "errors": set(errors), "refusal": refusal,
        "interests": settings.interests if settings else [], "enabled": settings is not None}, status=status)


async def form(request: Request) -> Response:
    _, client = client_user(request, submit=True)
    return _form(request, client, {"kind": "consumer", "country": "DE", "interest": "contract_initiation"}, [], None)


async def check(request: Request, data: FormData) -> Response:
    user, client = client_user(request, submit=True)
    values = {k: field(data, k, 200).strip() for k in FIELDS}
    subject, unreadable = _subject(values)
    if subject is None:
        return _form(request, client, values, unreadable, "subject", status=422)
    try:
        answer = await run_in_threadpool(credit.check_credit, request.app.state.gateway, client, subject,
                                         interest=values["interest"], user=user.login, channel="web")
    except credit.CreditRefused as exc:
        log.info("web.credit_refused login=%s reason=%s", user.login, exc.code)
        return _form(request, client, values, exc.fields, exc.code, status=_STATUS.get(exc.code, 422))
    return redirect(f"/credit/{answer.check_id}")


async def result(request: Request) -> Response:
    _, client = client_user(request)
    try:
        check_id = int(request.path_params["check_id"])
        answer = await run_in_threadpool(credit.get_check, request.app.state.gateway, client, check_id)
    except (ValueError, NotFound):
        return render(request, "error.html", {"message": "not_found"}, status=404)
    verdicts = {v.bureau: v for v in (answer.verdict.bureaus if answer.verdict else [])}
    rows = [(o, verdicts.get(o.bureau)) for o in answer.outcomes]
    return render(request, "credit_result.html", {"a": answer, "rows": rows})


ROUTES = [
    Route("/credit", form, methods=["GET"]),
    post("/credit", check),
    Route("/credit/{check_id:id}", result, methods=["GET"]),
]
