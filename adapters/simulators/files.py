"""A file-based agency: opens the encrypted batches that land in a folder and writes status files back.

The directory simulator watches the folder the directory adapter writes to; the SFTP simulator
serves the same layout over SFTP (a moving partner takes arrivals into ``processed/``, which is read
too). The agency decrypts each batch with its private key (as a real one would with ``openssl cms
-decrypt``) to learn which claims arrived and what each one is to collect. Instruction documents
(``instructions/<id>.xml.p7m``: cancel, direct payment, message, monitoring, refresh) are opened the
same way and applied to the books once per instruction id; the receipt goes into the status files.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs7

from decimal import Decimal
from typing import Any

from lxml import etree

from adapters.base import encode_updates
from adapters.simulators.agency import Agency
from adapters.statusfiles import INSTRUCTION_DIR, STATUS_DIR, status_name
from gateway.domain.sandbox import scenario_for

_CLAIM_ID = re.compile(rb"<claimId>(\d+)</claimId>")
_CLAIM_OPEN = re.compile(rb"<claimId>(\d+)</claimId>.*?<totalOpenAmount[^>]*>([0-9.]+)</totalOpenAmount>", re.S)
_INSTRUCTION = re.compile(rb"<\?xml.*?</instruction>", re.S)
_CLAIM = re.compile(rb"<claim>(.*?)</claim>", re.S)
_REFERENCE = re.compile(rb"<creditorReference>([^<]*)</creditorReference>")
_MEMO = re.compile(rb"<memo>([^<]*)</memo>")
_NS = "{urn:inkasso-gateway:partner-instruction:1}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
# instruction element -> the agency's operation
_OPERATIONS = {"cancel": "cancel", "directPayment": "report_payment", "message": "send_message",
               "longTermMonitoring": "request_monitoring", "refresh": "refresh"}
_STATUS_FILE = re.compile(r"status-\d{10}-(\d{10})\.json")
PROCESSED = "processed"  # where a partner that moves files away on arrival puts them


def load_partner_keys(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """The agency's own certificate and private key (the demo ones from ``gateway keys init``)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{key_path}: expected an RSA key")
    return cert, key


def claim_ids_of(envelope: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> list[int]:
    """Claim ids inside an encrypted, signed partner batch."""
    signed = pkcs7.pkcs7_decrypt_der(envelope, cert, key, [])
    # The XML sits verbatim inside the SignedData (Binary option); the simulator trusts it unverified.
    return [int(m) for m in _CLAIM_ID.findall(signed)]


def open_amounts_of(envelope: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> dict[int, Decimal]:
    """Each claim's total open amount inside an encrypted, signed partner batch."""
    signed = pkcs7.pkcs7_decrypt_der(envelope, cert, key, [])
    return {int(c): Decimal(a.decode()) for c, a in _CLAIM_OPEN.findall(signed)}


def scenarios_of(envelope: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey, default: str) -> dict[int, str]:
    """The sandbox scenario of each claim inside a batch: its reference prefix or memo keyword (docs/sandbox.md)."""
    signed = pkcs7.pkcs7_decrypt_der(envelope, cert, key, [])
    out: dict[int, str] = {}
    for block in _CLAIM.findall(signed):
        cid, ref, memo = _CLAIM_ID.search(block), _REFERENCE.search(block), _MEMO.search(block)
        if cid is not None:
            out[int(cid.group(1))] = scenario_for(ref.group(1).decode() if ref else "",
                                                  memo.group(1).decode() if memo else None, default)
    return out


def instruction_of(envelope: bytes, cert: x509.Certificate,
                   key: rsa.RSAPrivateKey) -> tuple[str, str, int, dict[str, Any]]:
    """(instruction id, operation, claim id, data) of an encrypted, signed instruction document."""
    signed = pkcs7.pkcs7_decrypt_der(envelope, cert, key, [])
    found = _INSTRUCTION.search(signed)
    if found is None:
        raise ValueError("no instruction document inside the envelope")
    doc = etree.fromstring(found.group(0), _PARSER)
    what = doc[-1]
    kind = etree.QName(what).localname
    data: dict[str, Any] = {}
    for child in what:
        data[etree.QName(child).localname] = child.text or ""
        if child.get("currency"):
            data["currency"] = child.get("currency")
    if kind == "message":
        data = {"message_id": data.get("messageId", ""), "text": data.get("text", "")}
    return (str(doc.findtext(f"{_NS}instructionId")), _OPERATIONS[kind], int(doc.findtext(f"{_NS}claimId") or 0),
            data)


class FolderAgency:
    """Processes ``<root>/*.p7m`` once each and mirrors the agency journal into ``<root>/status/``."""

    def __init__(self, agency: Agency, root: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey,
                 partner_id: str, scenarios: str | None = None) -> None:
        self.agency, self.root, self.cert, self.key, self.partner_id = agency, root, cert, key, partner_id
        self.scenarios = scenarios  # a sandbox agency: the default scenario; claims may choose another
        self._seen: set[str] = set()  # batches already read are read again after a restart, and folded
        self._written = self._written_before()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scan(self) -> int:
        """Take in new batch files and write new status files; returns how many batches were new."""
        new = 0
        for folder in (self.root, self.root / PROCESSED):
            for path in sorted(folder.glob("*.p7m")) if folder.is_dir() else []:
                seen = str(path.relative_to(self.root))
                if seen in self._seen:
                    continue
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue  # moved into processed/ while we looked: read there
                amounts = open_amounts_of(data, self.cert, self.key)
                batch_id = path.name.removesuffix(".xml.p7m").removesuffix(".p7m")
                chosen = (scenarios_of(data, self.cert, self.key, self.scenarios) if self.scenarios is not None
                          else None)
                self.agency.receive_batch(batch_id, [(c, f"{c}:{self.partner_id}:deliver") for c in amounts],
                                          amounts=amounts, scenarios=chosen)
                self._seen.add(seen)
                new += 1
        self.take_instructions()
        self.write_status()
        return new

    def take_instructions(self) -> int:
        """Apply new instruction documents to the books (once per instruction id); returns how many."""
        new = 0
        folder = self.root / INSTRUCTION_DIR
        for path in sorted(folder.glob("*.p7m")) if folder.is_dir() else []:
            seen = str(path.relative_to(self.root))
            if seen in self._seen:
                continue
            iid, operation, claim_id, data = instruction_of(path.read_bytes(), self.cert, self.key)
            self.agency.instruct(iid, operation, claim_id, data)
            self._seen.add(seen)
            new += 1
        return new

    def _written_before(self) -> int:
        """Journal entries already in status files (an agency that keeps its books continues after them)."""
        last = 0
        folder = self.root / STATUS_DIR
        for name in os.listdir(folder) if folder.is_dir() else []:
            if m := _STATUS_FILE.fullmatch(name):
                last = max(last, int(m.group(1)))
        return last

    def write_status(self) -> None:
        """Journal entries not yet in a status file go into one new file, written atomically."""
        self.agency.advance()
        with self.agency.lock:
            entries = self.agency.journal[self._written:]
        if not entries:
            return
        folder = self.root / STATUS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = status_name(self._written + 1, self._written + len(entries))
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(encode_updates(list(entries)))
        os.replace(tmp, folder / name)
        self._written += len(entries)

    def start(self, every: float = 0.2) -> None:
        """Scan in a background thread until ``stop``."""
        def loop() -> None:
            while not self._stop.wait(every):
                self.scan()
        self._thread = threading.Thread(target=loop, name=f"folder-agency-{self.partner_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
