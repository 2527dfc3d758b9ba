"""The operator's mapping workshop: upload a sample file of a client, see the ``mapping suggest`` draft, edit it,
check it and preview it against the sample with every finding, install it (the running gateway takes it at once).

One page per client (``/operator/mappings/{client}``); the sample is kept encrypted by the use case and only its
token is kept in the session, so neither the file nor its name appears in a URL or a log. Logs: ``web.mapping_*``
with the operator's login, the client and counts.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.entrypoints.web.pages import flash, operator_uploads, post, redirect, render
from gateway.entrypoints.web.security import field, operator_user
from gateway.errors import ConfigError, InputError, NotFound
from gateway.services import mapping_workshop as workshop

log = logging.getLogger("gateway.web")
SESSION_KEY = "mapping_sample"  # client id -> token of the sample kept for it
MAX_MAPPING_CHARS = 60_000  # the form's text field holds at most 64 KiB (security.MAX_FIELD_BYTES)


def _known(request: Request) -> str:
    client_id = str(request.path_params["client_id"])
    if client_id not in request.app.state.gateway.config.clients:
        raise HTTPException(404)
    return client_id


def _token(request: Request, client_id: str) -> str | None:
    kept = request.session.get(SESSION_KEY)
    token = kept.get(client_id) if isinstance(kept, dict) else None
    return token if isinstance(token, str) else None


async def _page(request: Request, client_id: str, text: str | None, **extra: Any) -> Response:
    app = request.app.state.gateway
    token = _token(request, client_id)
    sample = None
    if token is not None:
        try:
            sample = await run_in_threadpool(workshop.sample_info, app, token, client_id)
        except NotFound:
            sample = None
    installed = await run_in_threadpool(workshop.installed_text, app, client_id)
    state = app.mappings.state(app.config.mapping_file(client_id))
    ctx = {"client_id": client_id, "file": app.config.mapping_file(client_id).name, "sample": sample,
           "text": installed if text is None else text, "installed": installed is not None, "state": state,
           "shared": workshop.sharing(app, client_id), "error": None, "preview": None, **extra}
    return render(request, "mapping.html", ctx)


async def mappings(request: Request) -> Response:
    operator_user(request)
    app = request.app.state.gateway
    rows = []
    for cid in sorted(app.config.clients):
        path = app.config.mapping_file(cid)
        rows.append({"client": cid, "file": path.name, "exists": path.is_file(), "state": app.mappings.state(path)})
    return render(request, "mappings.html", {"rows": rows})


async def mapping_page(request: Request) -> Response:
    operator_user(request)
    return await _page(request, _known(request), None)


async def upload_sample(request: Request, form: FormData) -> Response:
    user = operator_user(request)
    client_id = _known(request)
    sent = form.get("file")
    if not isinstance(sent, UploadFile) or not sent.filename:
        flash(request, "upload_missing", "error")
        return redirect(f"/operator/mappings/{client_id}")
    data = await sent.read()
    app = request.app.state.gateway
    try:
        info = await run_in_threadpool(workshop.store_sample, app, client_id, sent.filename[:200], data)
        text = await run_in_threadpool(workshop.draft, app, info.token, client_id)
    except InputError as exc:
        log.info("web.mapping_sample login=%s client=%s bytes=%d readable=false", user.login, client_id, len(data))
        flash(request, "sample_unreadable", "error", error=str(exc)[:500])
        return redirect(f"/operator/mappings/{client_id}")
    kept = request.session.get(SESSION_KEY)
    request.session[SESSION_KEY] = {**(kept if isinstance(kept, dict) else {}), client_id: info.token}
    log.info("web.mapping_sample login=%s client=%s bytes=%d readable=true", user.login, client_id, len(data))
    return await _page(request, client_id, text, drafted=True)


async def work(request: Request, form: FormData) -> Response:
    """One form, three buttons: check, preview against the kept sample, install."""
    user = operator_user(request)
    client_id = _known(request)
    app = request.app.state.gateway
    text, action = field(form, "mapping", MAX_MAPPING_CHARS + 1), field(form, "do", 16)
    token = _token(request, client_id)
    if len(text) > MAX_MAPPING_CHARS:  # never check, preview or install a cut-off mapping
        return await _page(request, client_id, None, error=("mapping_too_long", {"n": MAX_MAPPING_CHARS}))
    try:
        if action == "install":
            done = await run_in_threadpool(workshop.install, app, client_id, text)
            log.info("web.mapping_installed login=%s client=%s file=%s generation=%d", user.login, client_id,
                     done.file.name, done.generation)
            return await _page(request, client_id, text, installed_now=done)
        if action == "preview":
            if token is None:
                return await _page(request, client_id, text, error=("sample_missing", {}))
            result = await run_in_threadpool(workshop.preview, app, token, client_id, text)
            log.info("web.mapping_preview login=%s client=%s %s", user.login, client_id,
                     " ".join(f"{k}={v}" for k, v in result.counts.items()))
            return await _page(request, client_id, text, preview=result)
        spec = await run_in_threadpool(workshop.check, app, client_id, text)
        return await _page(request, client_id, text, checked=spec)
    except ConfigError as exc:  # the mapping: line, key and what was expected
        log.info("web.mapping_refused login=%s client=%s action=%s", user.login, client_id, action or "check")
        return await _page(request, client_id, text, error=("mapping_invalid", {"error": str(exc)[:2000]}))
    except InputError as exc:  # the sample: unreadable under this mapping's format
        return await _page(request, client_id, text, error=("sample_unreadable", {"error": str(exc)[:2000]}))
    except NotFound:
        return await _page(request, client_id, text, error=("sample_missing", {}))
    except OSError as exc:  # the mappings folder is not writable (mounted read-only)
        log.info("web.mapping_refused login=%s client=%s action=%s", user.login, client_id, action)
        return await _page(request, client_id, text, error=("install_failed", {"error": exc.strerror or "OSError"}))


ROUTES = [
    Route("/operator/mappings", mappings, methods=["GET"]),
    Route("/operator/mappings/{client_id}", mapping_page, methods=["GET"]),
    post("/operator/mappings/{client_id}/sample", upload_sample, files=operator_uploads),
    post("/operator/mappings/{client_id}", work),
]
