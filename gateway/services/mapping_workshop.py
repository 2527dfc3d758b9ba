"""The operator's mapping workshop: keep an uploaded sample, draft a mapping for it, check and preview an
edited mapping against it, install it.

The same use cases as ``gateway mapping suggest|check|preview``: ``suggest_mapping`` on the sample (read by
``read_sample`` in a limited child process, ``sample_isolated``), ``parse_mapping`` (every error with its line
and key), ``preview_file`` (the ingest's readers, with their isolation and ``limits``; nothing is stored).
Install writes ``mappings/<name>.yaml`` atomically (temp file, fsync, rename; the old file kept as
``.bak``) and refreshes the mapping registry, as the folder watcher of ``serve`` does on its own.

The sample holds debtor data: it is kept encrypted under the gateway's master key (``FieldCipher``, bound to
its token), written in plain only to a private temp file for the length of one read, usable for a day after
its upload and deleted at its next use or the next upload after that. Only its random token leaves this module (the console keeps it in the session).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import msgspec

from gateway.bootstrap import App
from gateway.errors import InputError, NotFound
from gateway.mapping.sample_isolated import read_sample_isolated
from gateway.mapping.spec import MappingSpec, parse_mapping
from gateway.mapping.suggest import suggest_mapping
from gateway.services.preview import Preview, preview_file

SAMPLE_TTL_SECONDS = 24 * 3600
PREVIEW_ROWS = 100
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")


class _Stored(msgspec.Struct):
    client: str
    name: str
    data: bytes


@dataclass
class SampleInfo:
    token: str
    client: str
    name: str  # the file name as uploaded (shown on the page only)
    size: int


def _folder(app: App) -> Path:
    folder = app.config.var_dir / "web-mapping-samples"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _sweep(folder: Path) -> None:
    cutoff = time.time() - SAMPLE_TTL_SECONDS
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass  # another request swept it


def store_sample(app: App, client_id: str, name: str, data: bytes) -> SampleInfo:
    """Keep an uploaded sample (encrypted) for the workshop; returns its info with the token to ask for it."""
    app.config.client(client_id)  # an unknown client is refused before anything is written
    if not data:
        raise InputError("the sample file is empty", file=name)
    folder = _folder(app)
    _sweep(folder)
    token = secrets.token_urlsafe(24)
    blob = app.cipher.encrypt(msgspec.msgpack.encode(_Stored(client_id, name, data)), aad=token.encode())
    tmp = folder / f".{token}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / token)
    return SampleInfo(token, client_id, name, len(data))


def _load(app: App, token: str, client_id: str) -> _Stored:
    if not _TOKEN.match(token):
        raise NotFound("no such sample")
    path = _folder(app) / token
    try:
        if path.stat().st_mtime < time.time() - SAMPLE_TTL_SECONDS:
            path.unlink(missing_ok=True)
            raise FileNotFoundError(token)
        blob = path.read_bytes()
    except FileNotFoundError:
        raise NotFound("the sample is gone (kept for a day): upload it again") from None
    stored = msgspec.msgpack.decode(app.cipher.decrypt(blob, aad=token.encode()), type=_Stored)
    if stored.client != client_id:
        raise NotFound("no such sample")
    return stored


def sample_info(app: App, token: str, client_id: str) -> SampleInfo:
    """What the page says about a kept sample; NotFound if it is gone or belongs to another client."""
    s = _load(app, token, client_id)
    return SampleInfo(token, s.client, s.name, len(s.data))


@contextmanager
def _plain(app: App, token: str, client_id: str) -> Iterator[Path]:
    """The sample as a private plain file for one read, deleted afterwards."""
    stored = _load(app, token, client_id)
    suffix = Path(stored.name).suffix.lower()
    path = _folder(app) / f".{secrets.token_hex(12)}{suffix if _SUFFIX.match(suffix) else ''}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(stored.data)
        yield path
    finally:
        path.unlink(missing_ok=True)


def draft(app: App, token: str, client_id: str) -> str:
    """The ``mapping suggest`` draft for the sample (YAML text); InputError if the sample cannot be read."""
    with _plain(app, token, client_id) as path:
        sample = read_sample_isolated(path, None, app.config.limits)
    return suggest_mapping(sample, client=client_id)


def check(app: App, client_id: str, text: str) -> MappingSpec:
    """The mapping in ``text`` as ``mapping check`` loads it; ConfigError names line, key and what was expected."""
    return parse_mapping(text, file=app.config.mapping_file(client_id).name)


def preview(app: App, token: str, client_id: str, text: str) -> Preview:
    """``mapping preview`` of the sample through the mapping in ``text``: claims and every finding, nothing stored."""
    spec = check(app, client_id, text)
    client = app.config.client(client_id)
    with _plain(app, token, client_id) as path:  # the client's own holds and limitation, as its ingest judges
        result = preview_file(path, spec, client_id, today=date.today(), limit=PREVIEW_ROWS,
                              hold_all=client.hold_all, limits=app.config.limits, limitation=client.limitation)
    result.file = _load(app, token, client_id).name
    return result


@dataclass
class Installed:
    file: Path
    generation: int
    shared_with: list[str]  # other clients whose config names the same mapping file


def sharing(app: App, client_id: str) -> list[str]:
    """Other clients reading the same mapping file as ``client_id``."""
    mine = app.config.mapping_file(client_id)
    return sorted(c for c in app.config.clients if c != client_id and app.config.mapping_file(c) == mine)


def install(app: App, client_id: str, text: str) -> Installed:
    """Check ``text``, write it as the client's mapping file (atomically, old one kept as .bak), load it now."""
    check(app, client_id, text)
    path = app.config.mapping_file(client_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    app.mappings.load(path)  # the registry takes it now; serve's folder watcher would on its own
    return Installed(path, app.mappings.state(path).generation, sharing(app, client_id))


def installed_text(app: App, client_id: str) -> str | None:
    """The client's installed mapping file as text, if there is one."""
    try:
        return app.config.mapping_file(client_id).read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


__all__ = ["Installed", "SampleInfo", "check", "draft", "install", "installed_text",
           "preview", "sample_info", "sharing", "store_sample"]
