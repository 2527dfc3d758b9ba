"""The operator's clients and credentials: list and add clients, add and remove console logins, set or reset
the console, SOAP and SFTP passwords, authorize SSH keys, without editing YAML.

Every change goes through the admin CLI's use cases (``clients_admin``: the config file written back with
ruamel, validated, replaced atomically) and is then taken at once by the same reloader ``serve``'s config
watcher uses (``app.state.apply_config``). New passwords are random, shown once in the answer to the POST (never
in a redirect, a URL, the session cookie or a log) and stored only as scrypt hashes. Each change is logged as
``web.admin`` with the operator's login, the client, the kind of change and its target (a login name, a SOAP
username or a key fingerprint), never a password or a key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import GatewayConfig
from gateway.entrypoints.web.pages import flash, post, redirect, render
from gateway.entrypoints.web.security import field, operator_user
from gateway.entrypoints.web.users import WebUser
from gateway.errors import ConfigError, NotFound
from gateway.services import clients_admin as admin
from gateway.services import web_sessions
from gateway.services.clients_admin import AdminError

log = logging.getLogger("gateway.web")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_TARGET = re.compile(r"^[A-Za-z0-9._@:+/=-]{1,128}$")  # login names, usernames, fingerprints


def _config(request: Request) -> GatewayConfig:
    cfg: GatewayConfig = request.app.state.gateway.config
    return cfg


def _known(request: Request) -> str:
    client_id = str(request.path_params["client_id"])
    if client_id not in _config(request).clients:
        raise HTTPException(404)
    return client_id


def _shown(client_id: str) -> str:
    """A client id as typed, for the log only when it is one (a refused one could be any text)."""
    return client_id if _ID.match(client_id) else "(invalid)"


async def _change(request: Request, user: WebUser, client_id: str, kind: str, target: str,
                  write: Callable[[GatewayConfig], GatewayConfig]) -> bool:
    """Write the change, take it into the running gateway, log it; False (and a note) when refused, that is
    when nothing was written. A change written but not taken (the file as a whole does not apply, say a login
    added by hand names a missing password file) is True, with a note that says so: the file holds it."""
    try:
        new = await run_in_threadpool(write, _config(request))
    except (AdminError, ConfigError, NotFound, OSError) as exc:
        log.info("web.admin_refused login=%s client=%s change=%s", user.login, _shown(client_id), kind)
        detail = f"the config file cannot be written ({exc.strerror})" if isinstance(exc, OSError) else str(exc)
        flash(request, "admin_refused", "error", detail=detail[:500])
        return False
    shown = target if _TARGET.match(target) else "(other)"
    try:
        await run_in_threadpool(request.app.state.apply_config, new)
    except (ConfigError, NotFound, OSError) as exc:
        log.warning("web.admin_not_applied login=%s client=%s change=%s target=%s", user.login, client_id, kind,
                    shown)
        detail = f"{exc.strerror}" if isinstance(exc, OSError) else str(exc)
        flash(request, "admin_not_applied", "error", detail=detail[:500])
        return True
    log.info("web.admin login=%s client=%s change=%s target=%s", user.login, client_id, kind, shown)
    return True


async def clients(request: Request) -> Response:
    operator_user(request)
    cfg = _config(request)
    # in a thread: fingerprinting SSH keys imports asyncssh (~0.4 s) the first time
    rows = await run_in_threadpool(lambda: [admin.summary(cfg, cid) for cid in sorted(cfg.clients)])
    logins = {cid: 0 for cid in cfg.clients}
    for _, cid, _ in admin.web_logins(cfg):
        if cid is not None:
            logins[cid] = logins.get(cid, 0) + 1
    return render(request, "clients.html", {"rows": rows, "logins": logins, "partners": sorted(cfg.partners)})


async def client_page(request: Request) -> Response:
    operator_user(request)
    client_id = _known(request)
    cfg = _config(request)
    s = await run_in_threadpool(admin.summary, cfg, client_id)
    has_mapping = await run_in_threadpool(cfg.mapping_file(client_id).is_file)
    return render(request, "client_admin.html", {"s": s, "logins": admin.web_logins(cfg, client_id),
                                                 "has_mapping": has_mapping})


async def add_client(request: Request, form: FormData) -> Response:
    user = operator_user(request)
    client_id, name = field(form, "client_id", 64).strip(), field(form, "name", 200).strip()
    partner, mapping = field(form, "default_partner", 64).strip(), field(form, "mapping", 64).strip()
    hold_all = field(form, "hold_all", 8) == "on"
    if not name:
        flash(request, "admin_refused", "error", detail="name")
        return redirect("/operator/clients")
    done = await _change(request, user, client_id, "client_added", client_id, lambda cfg: admin.add_client(
        cfg, client_id, name=name, mapping=mapping or None, default_partner=partner or None, hold_all=hold_all))
    if not done or client_id not in _config(request).clients:  # refused, or in the file but not in effect
        return redirect("/operator/clients")
    flash(request, "client_added", id=client_id)
    return redirect(f"/operator/clients/{client_id}")


async def add_login(request: Request, form: FormData) -> Response:
    user = operator_user(request)
    client_id = _known(request)
    login, role = field(form, "login", 128).strip(), field(form, "role", 8)
    password = admin.new_password()
    done = await _change(request, user, client_id, "web_login_added", login, lambda cfg: admin.add_web_user(
        cfg, login, client_id=client_id, role="submit" if role == "submit" else "read", password=password))
    if not done:
        return redirect(f"/operator/clients/{client_id}")
    return _shown_once(request, client_id, "web", login, password)


async def remove_login(request: Request, form: FormData) -> Response:
    user = operator_user(request)
    client_id = _known(request)
    login = field(form, "login", 128)
    if await _change(request, user, client_id, "web_login_removed", login,
                     lambda cfg: admin.remove_web_user(cfg, login, client_id=client_id)):
        await run_in_threadpool(web_sessions.end_login, request.app.state.gateway, login)
        flash(request, "login_removed", login=login)
    return redirect(f"/operator/clients/{client_id}")


async def reset_password(request: Request, form: FormData) -> Response:
    user = operator_user(request)
    client_id = _known(request)
    kind = field(form, "kind", 8)
    password = admin.new_password()
    write: Callable[[GatewayConfig], GatewayConfig]
    if kind == "web":
        login = field(form, "login", 128)
        write = lambda cfg: admin.set_web_password(cfg, login, password, client_id=client_id)  # noqa: E731
    elif kind == "soap":
        login = field(form, "username", 128).strip() or _config(request).clients[client_id].soap.username or client_id
        write = lambda cfg: admin.set_password(cfg, client_id, "soap", password, username=login)  # noqa: E731
    elif kind == "sftp":
        login = client_id  # the SFTP login is the client id
        write = lambda cfg: admin.set_password(cfg, client_id, "sftp", password)  # noqa: E731
    else:
        raise HTTPException(404)
    if not await _change(request, user, client_id, f"{kind}_password_set", login, write):
        return redirect(f"/operator/clients/{client_id}")
    if kind == "web":  # whoever logged in with the old password is out now
        await run_in_threadpool(web_sessions.end_login, request.app.state.gateway, login)
    return _shown_once(request, client_id, kind, login, password)


async def add_key(request: Request, form: FormData) -> Response:
    user = operator_user(request)
    client_id = _known(request)
    line = " ".join(field(form, "key", 16_384).split())
    try:
        fp = await run_in_threadpool(admin.fingerprint, line)
    except AdminError as exc:
        log.info("web.admin_refused login=%s client=%s change=sftp_key_added", user.login, _shown(client_id))
        flash(request, "admin_refused", "error", detail=str(exc)[:300])
        return redirect(f"/operator/clients/{client_id}")
    if await _change(request, user, client_id, "sftp_key_added", fp,
                     lambda cfg: admin.add_key(cfg, client_id, line)[0]):
        flash(request, "key_added", fp=fp)
    return redirect(f"/operator/clients/{client_id}")


def _shown_once(request: Request, client_id: str, kind: str, login: str, password: str) -> Response:
    """The new password, in this answer only (the page is not cached: ``Cache-Control: no-store``)."""
    return render(request, "credential.html", {"client_id": client_id, "kind": kind, "login": login,
                                               "password": password})


ROUTES = [
    Route("/operator/clients", clients, methods=["GET"]),
    post("/operator/clients", add_client),
    Route("/operator/clients/{client_id}", client_page, methods=["GET"]),
    post("/operator/clients/{client_id}/logins", add_login),
    post("/operator/clients/{client_id}/logins/remove", remove_login),
    post("/operator/clients/{client_id}/password", reset_password),
    post("/operator/clients/{client_id}/keys", add_key),
]
