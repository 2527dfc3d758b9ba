"""A client's collection runs (submissions): the list, one run with the release of its held claims, and the
upload of a file, ingested like a file dropped in the client's inbox and answered with its ack as a table.

An upload is held to the client's SFTP limits (``clients.<id>.sftp.max_file_bytes`` / ``quota_bytes``, else the
server's ``sftp.*``; the console's own ``web.max_upload_bytes`` too): the console is another door to the same
ingest, not a way around what the client may send. A request that is too large by its ``Content-Length`` is
refused before its body is read; the file's exact size is checked again before it is written to the spool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import GatewayConfig
from gateway.entrypoints.web.pages import PAGE_SIZE, client_uploads, flash, int_param, lang_of, post, redirect, render
from gateway.entrypoints.web.pages import size_text
from gateway.entrypoints.web.routes_claims import REFUSED
from gateway.entrypoints.web.security import client_user, current_user, field, recalled, remember, text_field
from gateway.errors import InputError
from gateway.services import claim_ops, console
from gateway.services.ingest import ingest_file
from gateway.services.node import LeaseBusy

log = logging.getLogger("gateway.web")
UPLOAD_LEASE_WAIT = 30.0  # seconds an upload waits while another file of the client is being ingested
ACK_ROWS_SHOWN = 1000
SPOOL = "web-uploads"  # under var/: an upload's file while it is ingested (ingest reads a path)
MAX_INGESTS = 4  # uploads in worker threads at once (ingesting, or waiting there for their client's lease)
FORM_OVERHEAD = 64 * 1024  # what a file form carries besides the file (boundaries, headers, the CSRF field)


class UploadSlots:
    """Which clients have an upload in a worker thread now: at most one per client, ``MAX_INGESTS`` in all.

    An upload waits for its turn here, on the event loop, not in a worker thread: the threads are shared by every
    page of every user (each reads the database in one), and a client's uploads all waiting there for its ingest
    lease (one ingest per client) held them all: one login's 45 uploads stalled the operator's pages for 27 s.
    One event loop, no ``await`` between the test and the taking: no lock needed.
    """

    def __init__(self) -> None:
        self.clients: set[str] = set()

    async def take(self, client: str, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while client in self.clients or len(self.clients) >= MAX_INGESTS:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        self.clients.add(client)
        return True

    def give(self, client: str) -> None:
        self.clients.discard(client)


def clear_spool(var_dir: Path) -> int:
    """Delete what uploads left in the spool: a process killed or crashed while it ingested one never reached
    its ``finally``, and the file (the client's debtor data, in plain) would stay under var/ for good. Called
    when the console is built, before any upload of this process; the number of folders removed."""
    spool = var_dir / SPOOL
    try:
        left = [p for p in spool.iterdir() if p.is_dir() and not p.is_symlink()]
    except FileNotFoundError:
        return 0
    for folder in left:
        shutil.rmtree(folder, ignore_errors=True)
    if left:
        log.info("web.upload_spool_cleared folders=%d", len(left))
    return len(left)


async def runs_list(request: Request) -> Response:
    user, client = client_user(request)
    page = int_param(request, "page")
    rows = await run_in_threadpool(console.submissions, request.app.state.gateway, client, limit=PAGE_SIZE,
                                   offset=page * PAGE_SIZE)
    return render(request, "runs.html", {"pg": rows, "page": page, "page_size": PAGE_SIZE, "base": "/runs"})


async def _run_search(request: Request, ref: str) -> str | None:
    """The search text of this run's page (kept for the session on the server, like the claims list's: it
    may be a name)."""
    kept = await recalled(request, "run_q")
    return str(kept[1]) if isinstance(kept, list) and len(kept) == 2 and kept[0] == ref else None


async def run_page(request: Request) -> Response:
    user, client = client_user(request)
    ref = request.path_params["ref"]
    text = await _run_search(request, ref)
    run = await run_in_threadpool(lambda: console.run_page(request.app.state.gateway, client, ref, text=text))
    return render(request, "run.html", {"r": run, "can_submit": user.can_submit, "claim_base": "/claims",
                                        "search_action": f"/runs/{ref}/search", "searching": bool(text)})


async def run_search(request: Request, form: FormData) -> Response:
    client_user(request)
    ref = request.path_params["ref"]
    text = text_field(form, "q", 128)
    await remember(request, "run_q", [ref, text] if text else None)
    return redirect(f"/runs/{ref}#claims")


async def release(request: Request, form: FormData) -> Response:
    user, client = client_user(request, submit=True)
    ref = request.path_params["ref"]
    ids = [int(v) for v in form.getlist("claim") if isinstance(v, str) and v.isdigit()][:5000]
    if not ids:
        flash(request, "release_none", "error")
        return redirect(f"/runs/{ref}")
    run = await run_in_threadpool(console.run_page, request.app.state.gateway, client, ref)  # 404 if not its own
    chosen = [c for c in ids if c in {int(r["id"]) for r in run.held}]
    reason = field(form, "reason") or None  # needed for time-barred claims; recorded in their history
    try:
        result = await run_in_threadpool(lambda: claim_ops.release(request.app.state.gateway, client,
                                                                   claim_ids=chosen, reason=reason))
    except REFUSED as exc:
        flash(request, "refused", "error", detail=str(exc))
        return redirect(f"/runs/{ref}")
    log.info("web.release login=%s submission=%s released=%d", user.login, ref, len(result.released))
    flash(request, "released", n=len(result.released))
    if result.skipped:
        flash(request, "skipped", "error", n=len(result.skipped), why=result.skipped[0][1])
    return redirect(f"/runs/{ref}")


def upload_limits(cfg: GatewayConfig, client: str) -> tuple[int, int]:
    """(largest file, quota) of ``client``'s uploads: its SFTP limits, else the SFTP server's; the file also
    within ``web.max_upload_bytes``."""
    own, server = cfg.client(client).sftp, cfg.sftp
    largest = own.max_file_bytes if own.max_file_bytes is not None else server.max_file_bytes
    quota = own.quota_bytes if own.quota_bytes is not None else server.quota_bytes
    return min(largest, cfg.web.max_upload_bytes), quota


def waiting_bytes(cfg: GatewayConfig, client: str) -> int:
    """Bytes of the files in the client's ``upload/`` (waiting for their ingest): they count against its quota,
    as the SFTP server counts them."""
    total = 0
    try:
        with os.scandir(cfg.inbox_dir / client / "upload") as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    except (FileNotFoundError, NotADirectoryError):
        pass
    return total


def _refused(request: Request, size: int, largest: int, quota: int, waiting: int, login: str) -> Response | None:
    """The upload page with why a file of ``size`` bytes is not taken (413), or None when it fits."""
    lang = lang_of(request)
    if size > largest:
        code = "upload_too_large"
        flash(request, code, "error", limit=size_text(largest, lang))
    elif waiting + size > quota:
        code = "upload_quota"
        flash(request, code, "error", size=size_text(size, lang), quota=size_text(quota, lang),
              waiting=size_text(waiting, lang))
    else:
        return None
    log.warning("web.upload_refused login=%s code=%s bytes=%d limit=%d waiting=%d quota=%d", login, code, size,
                largest, waiting, quota)
    return render(request, "upload.html", status=413)


def _file_size(sent: UploadFile) -> int:
    end = sent.file.seek(0, os.SEEK_END)
    sent.file.seek(0)
    return end


async def upload_room(request: Request) -> Response | None:
    """Before the body is read: refuses an upload whose ``Content-Length`` already says it is over the client's
    limits (the form around the file may add up to ``FORM_OVERHEAD``). Anyone but a client's login that may submit
    passes on to the CSRF check and the route's own refusal."""
    user = current_user(request)
    if user is None or user.client_id is None or not user.can_submit:
        return None
    client = user.client_id
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return None  # refused by checked_form (411)
    cfg = request.app.state.gateway.config
    largest, quota = upload_limits(cfg, client)
    size = max(0, int(length) - FORM_OVERHEAD)  # the smallest the file can be
    if size == 0:
        return None
    waiting = await run_in_threadpool(waiting_bytes, cfg, client) if size <= largest else 0
    return _refused(request, size, largest, quota, waiting, user.login)


async def upload_page(request: Request) -> Response:
    client_user(request, submit=True)
    return render(request, "upload.html")


def _safe_name(name: str) -> str:
    """The uploaded file's own name without any folder, with only harmless characters."""
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name.replace("\\", "/")).name).strip(" .")
    return base[:120] or "upload"


async def upload(request: Request, form: FormData) -> Response:
    user, client = client_user(request, submit=True)
    sent = form.get("file")
    if not isinstance(sent, UploadFile) or not sent.filename:
        flash(request, "upload_missing", "error")
        return redirect("/upload")
    app = request.app.state.gateway
    largest, quota = upload_limits(app.config, client)
    size = sent.size if sent.size is not None else await run_in_threadpool(_file_size, sent)
    refused = _refused(request, size, largest, quota, await run_in_threadpool(waiting_bytes, app.config, client),
                       user.login)
    if refused is not None:
        return refused
    slots: UploadSlots = request.app.state.upload_slots
    started = time.monotonic()
    if not await slots.take(client, UPLOAD_LEASE_WAIT):
        flash(request, "upload_busy", "error")
        return redirect("/upload")
    folder: Path | None = None
    # the rest of the wait, for the lease another node (or the SFTP inbox) may hold for this client
    wait = max(1.0, UPLOAD_LEASE_WAIT - (time.monotonic() - started))
    try:  # from here on the slot is given back whatever happens, the spool's folder failing to be made included
        spool = app.config.var_dir / SPOOL
        spool.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=spool))
        path = folder / _safe_name(sent.filename)
        with open(path, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, sent.file, out)
        result = await run_in_threadpool(lambda: ingest_file(app, path, client, channel="web", lease_wait=wait))
    except LeaseBusy:
        flash(request, "upload_busy", "error")
        return redirect("/upload")
    except InputError as exc:
        flash(request, "ack_failed", "error", error=str(exc))
        return redirect("/upload")
    finally:
        slots.give(client)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    log.info("web.upload login=%s submission=%s status=%s rows=%d", user.login,
             result.submission or result.duplicate_of, result.status, result.rows)
    return render(request, "ack.html", {"r": result, "rows": result.results[:ACK_ROWS_SHOWN],
                                        "cut": result.results_truncated or len(result.results) > ACK_ROWS_SHOWN})


ROUTES = [
    Route("/runs", runs_list, methods=["GET"]),
    Route("/runs/{ref}", run_page, methods=["GET"]),
    post("/runs/{ref}/release", release),
    post("/runs/{ref}/search", run_search),
    Route("/upload", upload_page, methods=["GET"]),
    post("/upload", upload, files=client_uploads, precheck=upload_room),
]
