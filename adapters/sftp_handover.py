"""The SFTP hand-over protocol: a batch reaches the partner's upload folder once, whatever answer is lost.

A partner may move a file away the moment it arrives (inbound processing into ``processed/``), so
"the final name exists" cannot prove an earlier delivery. Each batch therefore leaves a marker in a
folder of the gateway's own on the partner server, placed after the upload is whole and before the
rename that hands it over::

    1. upload   <upload_dir>/.<name>.<token>.part        (a fresh token per attempt)
    2. marker   <marker_dir>/<batch id>  ->  ".<name>.<token>.part"
    3. rename   .<name>.<token>.part  ->  <name>

The marker is written under a temp name and put in place with a plain SFTP rename, which never
overwrites (SFTP v3 ``SSH_FXP_RENAME``; OpenSSH uses link(2)): of two attempts at one batch only the
first marker counts, and only the upload it names is ever renamed. A retry reads the state back:

    final name exists                  -> delivered (a partner that keeps files)
    marker, its upload still there     -> finish the rename
    marker, its upload gone            -> delivered (renamed, then taken by the partner)
    no marker                          -> start at 1 (an upload left by a lost attempt is never renamed)

Assumption: the partner never touches dot names in its upload folder nor the marker folder.

The upload and the marker are flushed to the partner's disk (``fsync@openssh.com``, offered by OpenSSH and most
servers) before the steps that rely on them: a batch is reported handed over only once what the partner's server
renamed into place would survive its crash (OpenSSH's server does not flush a file when it is closed, and a file
renamed to a new name before its data reached the disk can come back empty). A server that does not offer the
extension is taken at its word on close, as before.
"""

from __future__ import annotations

import logging
import posixpath
import re
import secrets

import asyncssh

from gateway.errors import DeliveryError

log = logging.getLogger("gateway.adapters.sftp")

MARKER_DIR = ".gateway-sent"
_TEMP = re.compile(r"^\..+\.[0-9a-f]{16}\.part$")
DAY = 86400.0


def unsafe(name: str) -> bool:
    """A name that would leave its folder or hide itself (file names and batch ids come from our renderer)."""
    return not name or "/" in name or "\0" in name or name.startswith(".")


async def _rename_into_place(sftp: asyncssh.SFTPClient, old: str, new: str) -> None:
    try:
        await sftp.posix_rename(old, new)
    except asyncssh.SFTPOpUnsupported:
        await sftp.rename(old, new)


async def _remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> None:
    try:
        await sftp.remove(path)
    except (asyncssh.Error, OSError):
        pass  # a leftover temp name is pruned later; the delivery's outcome is what matters


async def _upload(sftp: asyncssh.SFTPClient, upload: str, payload: bytes, batch_id: str) -> None:
    """Write the upload and check that the server holds all of it; on any failure it is removed again.

    A server may take a write and keep less (a quota that truncates, a disk that fills, a file system that
    loses it on close): renamed into place, a short file would be reported handed over. And a partial upload
    left on a full disk keeps it full for the retry. No marker names the upload yet, so removing it is safe.
    """
    try:
        async with sftp.open(upload, "wb") as fh:
            await fh.write(payload)
            await _flush(fh)
        try:
            size: int | None = (await sftp.stat(upload)).size
        except asyncssh.SFTPNoSuchFile:
            size = -1
        # A server that reports no size (the attribute is optional in SFTP) cannot be checked: taken as whole.
        if size is not None and size != len(payload):
            held = "nothing" if size < 0 else f"{size} bytes"
            raise DeliveryError(f"batch {batch_id}: the partner's server holds {held} of the {len(payload)} bytes "
                                f"uploaded as {posixpath.basename(upload)} (a full disk or a quota there?); sent "
                                f"again", retryable=True)
    except Exception:
        await _remove_quietly(sftp, upload)
        raise


async def _flush(fh: asyncssh.SFTPClientFile) -> None:
    """The file's data on the server's disk, where the server offers ``fsync@openssh.com``."""
    try:
        await fh.fsync()
    except asyncssh.SFTPOpUnsupported:
        pass  # not offered: the server's close is all there is


async def _read_marker(sftp: asyncssh.SFTPClient, marker: str, batch_id: str) -> str | None:
    """The upload's name a batch's marker points at, or None without a marker."""
    try:
        async with sftp.open(marker, "rb") as fh:
            raw = await fh.read()
    except asyncssh.SFTPNoSuchFile:
        return None
    name = raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else str(raw).strip()
    if not _TEMP.match(name) or "/" in name:
        raise DeliveryError(f"batch {batch_id}: marker {marker} does not name an upload; something other than "
                            f"the gateway wrote to the marker folder", retryable=False)
    return name


async def _place_marker(sftp: asyncssh.SFTPClient, marker_dir: str, marker: str, batch_id: str,
                        token: str, upload: str) -> bool:
    """Put the marker in place unless one is there already; False when another attempt's marker won."""
    tmp = posixpath.join(marker_dir, f".{batch_id}.{token}.tmp")
    try:
        handle = await sftp.open(tmp, "wb")
    except asyncssh.SFTPNoSuchFile:
        await sftp.makedirs(marker_dir, exist_ok=True)
        handle = await sftp.open(tmp, "wb")
    async with handle as fh:
        await fh.write(upload.encode() + b"\n")
        await _flush(fh)
    try:
        await sftp.rename(tmp, marker)
    except asyncssh.SFTPError:
        await _remove_quietly(sftp, tmp)
        if await sftp.exists(marker):
            return False
        raise
    return True


async def _finish(sftp: asyncssh.SFTPClient, upload: str, final: str) -> bool:
    """Rename the upload a marker names; False when it was renamed before (it is gone)."""
    if not await sftp.exists(upload):
        return False
    try:
        await _rename_into_place(sftp, upload, final)
    except asyncssh.SFTPNoSuchFile:
        return False  # a concurrent attempt renamed it between our look and our rename
    return True


async def hand_over(sftp: asyncssh.SFTPClient, *, upload_dir: str, marker_dir: str, batch_id: str, name: str,
                    payload: bytes) -> str:
    """Deliver one batch by the protocol above; returns how (uploaded, or confirmed and why)."""
    final = posixpath.join(upload_dir, name)
    marker = posixpath.join(marker_dir, batch_id)
    if await sftp.exists(final):
        return "confirmed existing"
    pending = await _read_marker(sftp, marker, batch_id)
    if pending is not None:
        renamed = await _finish(sftp, posixpath.join(upload_dir, pending), final)
        return "renamed after a lost answer" if renamed else "confirmed by marker"
    token = secrets.token_hex(8)
    upload_name = f".{name}.{token}.part"
    upload = posixpath.join(upload_dir, upload_name)
    await _upload(sftp, upload, payload, batch_id)
    if not await _place_marker(sftp, marker_dir, marker, batch_id, token, upload_name):
        await _remove_quietly(sftp, upload)  # the other attempt's upload is the one handed over
        pending = await _read_marker(sftp, marker, batch_id)
        if pending is None:
            raise DeliveryError(f"batch {batch_id}: marker {marker} vanished while delivering", retryable=True)
        renamed = await _finish(sftp, posixpath.join(upload_dir, pending), final)
        return "renamed by a concurrent attempt's marker" if renamed else "confirmed by marker"
    return "uploaded" if await _finish(sftp, upload, final) else "confirmed by marker"


async def prune(sftp: asyncssh.SFTPClient, *, upload_dir: str, marker_dir: str, days: float, now: float) -> int:
    """Remove markers older than ``days`` and, a day later still, uploads no marker can name any more."""
    removed = 0
    # Markers go first and uploads a day later: an upload is never older than the marker naming it by
    # more than one delivery's timeout, so a pending rename never loses its upload alone.
    for folder, cutoff, pattern in ((marker_dir, now - days * DAY, None),
                                    (upload_dir, now - (days + 1) * DAY, _TEMP)):
        try:
            entries = await sftp.readdir(folder)
        except asyncssh.SFTPNoSuchFile:
            continue
        for entry in entries:
            mtime, kind = entry.attrs.mtime, entry.attrs.type
            if (kind == asyncssh.FILEXFER_TYPE_REGULAR and mtime is not None and mtime < cutoff
                    and (pattern is None or pattern.match(str(entry.filename)))):
                await _remove_quietly(sftp, posixpath.join(folder, str(entry.filename)))
                removed += 1
    return removed
