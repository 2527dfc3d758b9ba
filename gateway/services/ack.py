"""Acknowledgement files: one entry per source row, in the client's own column names.

Written to a temporary name while the file is processed and renamed into place at the end, so a
client never reads half an ack. Two forms, picked by the ack file's name: CSV (``*.ack.csv``; cells
that a spreadsheet would run as a formula are defused) and XML (``*.ack.xml``, valid against
``schemas/ack.xsd``). Rejected rows beyond the error cap are counted, not listed; the ack then
ends with a ``truncated`` entry saying how many more there were. A sandbox client's ack says so
(docs/sandbox.md): a first CSV row with the outcome ``sandbox``, or ``sandbox="true"`` on the XML root.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import secrets
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from lxml import etree

from gateway.domain.findings import Finding, Outcome
from gateway.errors import ConfigError
from gateway.faults import is_transient
from gateway.domain.sandbox import SANDBOX_SUFFIX

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ACK_NS = "urn:inkasso-gateway:ack:1"
DEFAULT_ERROR_CAP = 1000
SANDBOX_NOTE = "SANDBOX: test data, handed to the simulated agency only, never to a real one"


def safe_cell(value: str) -> str:
    """Defuse CSV formula injection: a cell starting like a formula gets a leading quote."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def describe(f: Finding) -> str:
    """A finding as a person reads it, naming the client's column where there is one."""
    where = f.column or f.field
    return f"{where}: {f.for_client()}" if where else f.for_client()


def ack_suffix(ack_format: str, input_name: str) -> str:
    """``.ack.xml`` for XML acks (``auto``: for XML inputs), else ``.ack.csv``."""
    xml = ack_format == "xml" or (ack_format == "auto" and input_name.lower().endswith(".xml"))
    return ".ack.xml" if xml else ".ack.csv"


class AckTargetError(ValueError):
    """An ack target someone named cannot be written; the message says why."""


def ack_target(given: str, input_name: str, ack_format: str = "auto") -> Path:
    """Where an ack named on the command line goes, checked before anything is stored.

    A folder (an existing one, or a name ending in ``/``) gets ``<folder>/<file>.ack.csv`` (suffix as
    ``ack_suffix``); the folder must exist and take a new file, since the ack is written beside it first.
    """
    path = Path(given)
    if path.is_dir() or given.endswith(("/", os.sep)):
        if not path.is_dir():
            raise AckTargetError(f"folder {given} does not exist")
        path = path / f"{input_name}{ack_suffix(ack_format, input_name)}"
    if path.is_dir():
        raise AckTargetError(f"{path} is a folder")
    folder = path.parent
    if not folder.is_dir():
        raise AckTargetError(f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ack-probe-", dir=folder)
    except OSError as exc:
        raise AckTargetError(f"cannot write in {folder}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)
    return path


_HOST = "".join(c if c.isalnum() else "_" for c in socket.gethostname())


NAME_MAX = 255  # bytes in one file name (ext4, xfs, tmpfs)
# the temp name adds a dot, the host, a pid, a random part and ".tmp" to the final name
ACK_NAME_MAX = NAME_MAX - len(f"..{_HOST}-{2 ** 22}-{'0' * 8}.tmp")


def fit_name(name: str, room: int) -> str:
    """``name`` if it takes at most ``room`` bytes, else a shorter one that is still unique for it: its start,
    ``~``, a digest of the whole name, its extension. A client's file may be named up to the file system's limit,
    and the names the gateway derives from it (ack, set-aside copy) add to it."""
    if len(name.encode()) <= room:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    ext = Path(name).suffix if len(Path(name).suffix.encode()) <= 16 else ""
    keep = max(0, room - len(digest) - 1 - len(ext.encode()))
    stem = name[:len(name) - len(ext)].encode()[:keep].decode("utf-8", errors="ignore")
    return f"{stem}~{digest}{ext}"


def sibling(path: Path, suffix: str) -> Path | None:
    """``path`` with ``suffix`` added to its name (a client's ``.done`` marker), or None when that name would be
    longer than a file name can be: no such file can exist, and asking for it fails (ENAMETOOLONG)."""
    return path.with_name(path.name + suffix) if len((path.name + suffix).encode()) <= NAME_MAX else None


def private_temp_name(final_name: str) -> str:
    """A dot-file temp name no other writer shares (several nodes may answer into one shared inbox)."""
    return f".{final_name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def remove_stale_temps(final: Path) -> None:
    """Temp files of ``final`` left by a writer on this host that is gone (killed mid-file)."""
    for tmp in final.parent.glob(f".{glob.escape(final.name)}.{_HOST}-*.tmp"):
        try:
            pid = int(tmp.name[:-len(".tmp")].rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, IndexError, PermissionError):
            continue  # not ours to judge, or the writer is alive under another user


class AckUnwritable(ConfigError):
    """The client's ack folder stopped taking the ack (removed, replaced, a failing mount): the gateway's storage,
    not the file. A ConfigError, so that it is not counted against the file (its retries, its resumes) and the
    file waits until the folder can be used; a full disk stays the OSError it is (transient: waited out)."""


class AckWriter:
    """Streams ack entries to ``.<final>.tmp`` and moves the file into place on ``commit``.

    Its own I/O errors other than a full disk are raised as ``AckUnwritable``."""

    HEADER = ("row", "reference", "outcome", "claim_id", "codes", "messages")

    def __init__(self, final: Path, *, delimiter: str = ";", reference_column: str | None = None,
                 error_cap: int | None = None, source: str | None = None, sandbox: bool | None = None) -> None:
        self.final = final
        self.error_cap = error_cap
        self.rejected = self.omitted = 0
        try:
            self._open(final, delimiter, reference_column, source, sandbox)
        except OSError as exc:
            raise self._unwritable(exc) from None

    def _unwritable(self, exc: OSError) -> OSError | AckUnwritable:
        if is_transient(exc):
            return exc
        return AckUnwritable(f"the ack could not be written ({exc.strerror or type(exc).__name__}); the file waits "
                             "until the ack folder can be used", file=str(self.final.parent))

    def _open(self, final: Path, delimiter: str, reference_column: str | None, source: str | None,
              sandbox: bool | None) -> None:
        if sandbox is None:  # inbox/<client>.sandbox/ack/<file>: every ack a sandbox client gets is marked
            sandbox = final.parent.parent.name.endswith(SANDBOX_SUFFIX)
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(final)
        self._tmp = final.with_name(private_temp_name(final.name))
        self.xml = final.name.lower().endswith(".xml")
        self._fh = open(self._tmp, "wb" if self.xml else "w", **({} if self.xml else  # type: ignore[call-overload]
                                                                   {"encoding": "utf-8", "newline": ""}))
        if self.xml:
            self._xml_file = etree.xmlfile(self._fh, encoding="utf-8")
            self._xf = self._xml_file.__enter__()
            self._xf.write_declaration()
            attrs = {"referenceColumn": reference_column} if reference_column else {}
            if source:
                attrs["file"] = source
            if sandbox:
                attrs["sandbox"] = "true"
            self._root = self._xf.element("ack", attrs, nsmap={None: ACK_NS})
            self._root.__enter__()
        else:
            self._csv = csv.writer(self._fh, delimiter=delimiter, lineterminator="\r\n")
            header = list(self.HEADER)
            if reference_column:
                header[1] = reference_column  # the client's own name for its reference
            self._csv.writerow(header)
            if sandbox:
                self._csv.writerow(("", "", "sandbox", "", "sandbox", SANDBOX_NOTE))

    def row(self, row: int | None, reference: str | None, outcome: Outcome | str, claim_id: int | None,
            findings: list[Finding], *, sheet: str | None = None, xpath: str | None = None) -> None:
        """One source row's answer (a rejected row past the error cap is only counted)."""
        try:
            self._row(row, reference, outcome, claim_id, findings, sheet, xpath)
        except OSError as exc:
            raise self._unwritable(exc) from None

    def _row(self, row: int | None, reference: str | None, outcome: Outcome | str, claim_id: int | None,
             findings: list[Finding], sheet: str | None, xpath: str | None) -> None:
        outcome_text = outcome.value if isinstance(outcome, Outcome) else outcome
        if outcome_text in ("rejected", "conflict"):  # a conflicting resend is a rejected row
            self.rejected += 1
            if self.error_cap is not None and self.rejected > self.error_cap:
                self.omitted += 1
                return
        if self.xml:
            attrs = {k: str(v) for k, v in (("number", row), ("reference", reference), ("outcome", outcome_text),
                                            ("claimId", claim_id), ("sheet", sheet), ("xpath", xpath))
                     if v is not None}
            el = etree.Element(f"{{{ACK_NS}}}row", attrs)
            for f in findings:
                fa = {k: v for k, v in (("code", f.code), ("severity", f.severity.value), ("column", f.column),
                                        ("field", f.field)) if v is not None}
                etree.SubElement(el, f"{{{ACK_NS}}}finding", fa).text = _xml_text(f.for_client())
            self._xf.write(el)
            return
        if not findings:
            self._csv.writerow((row if row is not None else "", safe_cell(reference or ""), outcome_text,
                                claim_id if claim_id is not None else "", "", ""))
            return
        codes = ",".join(dict.fromkeys(f.code for f in findings))
        messages = " | ".join(describe(f) for f in findings)
        self._csv.writerow((row if row is not None else "", safe_cell(reference or ""), outcome_text,
                            claim_id if claim_id is not None else "", codes, safe_cell(messages)))

    def plain_rows(self, entries: list[tuple[int, str | None, str, int | None]]) -> None:
        """``row`` for many rows without findings, sheet or xpath: (row, reference, outcome, claim id)."""
        if self.xml or any(outcome in ("rejected", "conflict") for _, _, outcome, _ in entries):
            for row, reference, outcome, claim_id in entries:
                self.row(row, reference, outcome, claim_id, [])
            return
        try:
            self._csv.writerows((row, safe_cell(reference or ""), outcome, claim_id if claim_id is not None else "",
                                 "", "") for row, reference, outcome, claim_id in entries)
        except OSError as exc:
            raise self._unwritable(exc) from None

    def _trailer(self) -> None:
        if not self.omitted:
            return
        message = (f"cut short: {self.omitted} more rejected rows are not listed "
                   f"(the ack lists the first {self.error_cap})")
        if self.xml:
            el = etree.Element(f"{{{ACK_NS}}}truncated", {"cap": str(self.error_cap), "more": str(self.omitted)})
            el.text = message
            self._xf.write(el)
        else:
            self._csv.writerow(("", "", "truncated", "", "error_cap", message))

    def seal(self) -> None:
        """Finish the file under its temporary name, on disk: ``commit`` then only renames it (a caller that
        renames under a lock, a lease's fence, holds it for the rename alone, not for the write and fsync)."""
        if self._fh.closed:
            return
        try:
            self._trailer()
            if self.xml:
                self._root.__exit__(None, None, None)
                self._xml_file.__exit__(None, None, None)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            raise self._unwritable(exc) from None

    def commit(self) -> Path:
        """Finish the file and move it into place."""
        self.seal()
        try:
            os.replace(self._tmp, self.final)
        except OSError as exc:
            raise self._unwritable(exc) from None
        return self.final

    def abort(self) -> None:
        try:
            if not self._fh.closed:
                self._fh.close()  # flushes what is buffered: fails again on a full disk
        except OSError:
            pass
        finally:
            try:
                self._tmp.unlink(missing_ok=True)
            except OSError:  # its folder is gone or replaced: nothing left to clean; a stale temp is swept later
                pass

    def __enter__(self) -> AckWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._fh.closed:
            self.abort()


def _xml_text(text: str) -> str:
    """XML 1.0 cannot carry most control characters: show them as code points."""
    return "".join(c if c >= " " or c in "\t\n\r" else f"\\x{ord(c):02x}" for c in text)


def ack_schema() -> Any:
    """The XSD the XML ack follows (``schemas/ack.xsd``)."""
    return etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[2] / "schemas" / "ack.xsd")))
