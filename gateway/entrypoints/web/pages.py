"""What every page needs: the template environment, the language, rendering, flash notes, POST routes.

``post(path, handler)`` is the only way a route takes a POST: it checks the CSRF token (``checked_form``)
and passes the form to the handler, so no state-changing route can skip the check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from gateway.domain.model import from_minor
from gateway.entrypoints.web.security import FORM_MAX_BYTES, checked_form, csrf_token, current_user
from gateway.entrypoints.web.texts import DEFAULT, LANGS, state_name, translator
from gateway.entrypoints.web.users import WebUser
from gateway.services.console import run_colour

HERE = Path(__file__).resolve().parent
LANG_COOKIE = "lang"
PAGE_SIZE = 50
MAX_PAGE = 10_000_000  # a page number beyond: the last of these (its offset still fits the database's integer)


class IdConvertor(Convertor[int]):
    """``{name:id}``: a row id in a path, digits that fit the database's 64-bit integer. A longer number matches
    no route (404, like an unknown id) instead of reaching the database, which refuses it (a 500)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


def _money(value: Decimal | int | None, currency: str = "EUR") -> str:
    if value is None:
        return ""
    text = f"{Decimal(value):,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
    return f"{text} {currency}"


def size_text(n: int, lang: str = DEFAULT) -> str:
    """A byte count for people, rounded down: "97 KB", "1,5 MB", "200 MB" (KB and MB of 1,024 and 1,048,576 bytes,
    as the config's limits are given)."""
    if n < 1024 * 1024:
        return f"{n // 1024} KB"
    tenths = n * 10 // (1024 * 1024)
    text = str(tenths // 10) if tenths % 10 == 0 or tenths >= 1000 else f"{tenths // 10}.{tenths % 10}"
    return f"{text.replace('.', ',') if lang == 'de' else text} MB"


def _minor(value: int | None, currency: str = "EUR") -> str:
    return "" if value is None else _money(from_minor(int(value), currency), currency)


def _when(value: datetime | date | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:16].replace("T", " ")
    if isinstance(value, datetime):
        return value.strftime("%d.%m.%Y %H:%M")
    return value.strftime("%d.%m.%Y")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    templates.env.filters.update(money=_money, minor=_minor, when=_when)
    templates.env.globals["run_colour"] = run_colour
    return templates


def lang_of(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return str(asked)
    cookie = request.cookies.get(LANG_COOKIE)
    return cookie if cookie in LANGS else DEFAULT


def flash(request: Request, key: str, kind: str = "ok", **values: object) -> None:
    """A note shown once on the next page (text key and values; rendered in the reader's language)."""
    # Assigned, not appended in place: the session saves only what it sees assigned (a second note before
    # the next page would be lost).
    note = [kind, key, {k: str(v) for k, v in values.items()}]
    request.session["flash"] = [*request.session.get("flash", []), note]


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200) -> Response:
    lang = lang_of(request)
    t = translator(lang)
    notes = [(kind, t(key, **values)) for kind, key, values in request.session.pop("flash", [])]
    ctx = {"t": t, "lang": lang, "state_name": lambda s: state_name(lang, s), "user": current_user(request),
           "csrf": csrf_token(request), "notes": notes, "path": request.url.path, **(context or {})}
    response = request.app.state.templates.TemplateResponse(request, template, ctx, status_code=status)
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, secure=True, httponly=True, samesite="lax")
    assert isinstance(response, Response)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


FormHandler = Callable[[Request, FormData], Awaitable[Response]]
# Looks at a file form's request before its body is read: a Response refuses it (nothing is parsed or spooled)
Precheck = Callable[[Request], Awaitable[Response | None]]


def client_uploads(user: WebUser) -> bool:
    """A client's login that may submit: its upload and hand-over forms take files."""
    return user.client_id is not None and user.can_submit


def operator_uploads(user: WebUser) -> bool:
    """An operator: the mapping workshop's sample takes a file."""
    return user.operator


def post(path: str, handler: FormHandler, *, files: Callable[[WebUser], bool] | None = None,
         precheck: Precheck | None = None) -> Route:
    """A POST route whose handler gets the form only after its CSRF token was checked.

    ``files``: the form carries files, up to ``web.max_upload_bytes`` (``app.state.max_body``), but only from a
    logged-in user for whom ``files(user)`` is true, the users the route is for (``client_uploads``,
    ``operator_uploads``); anyone else (an outsider with the login page's token, a read-only login, an operator at
    a client's form or a client at an operator's) is held to ``FORM_MAX_BYTES``, as every other form: a form is
    parsed into memory (or spooled) before its token is checked, and the route's own 404 comes only after that.
    ``precheck`` (file forms of such a user only) may refuse the request by its headers before its body is read."""
    async def endpoint(request: Request) -> Response:
        user = current_user(request) if files is not None else None
        may_send_files = user is not None and files is not None and files(user)
        if may_send_files and precheck is not None:
            refused = await precheck(request)
            if refused is not None:
                return refused
        limit = request.app.state.max_body if may_send_files else FORM_MAX_BYTES
        form = await checked_form(request, limit)
        try:
            return await handler(request, form)
        finally:
            await form.close()
    return Route(path, endpoint, methods=["POST"], name=getattr(handler, "__name__", None))


def int_param(request: Request, name: str, default: int = 0) -> int:
    try:
        return min(max(0, int(request.query_params.get(name, default))), MAX_PAGE)
    except ValueError:
        return default
