"""Schema errors as data: a claim that breaks the WSDL's facets is rejected alone, with code and field.

spyne validates the whole request body against the WSDL's schema (lxml). That stays the fast path: a
valid request costs nothing more. Only when it fails does ``Soap11PerClaim`` look at a ``SubmitClaims``
body claim by claim (each ``ClaimInput`` element against the same compiled schema), takes the failing
claims out of the body, records them as rejected (``ENV_SCHEMA_REJECTED``: their 1-based index,
reference and findings) and validates the rest again; the service puts them back in their places.
Whatever still fails outside the claims is a ``Client.Validation`` fault in a plain sentence.

Messages never quote the rejected value (it may be a debtor's name or birth date, and findings are
stored and shown to operators); the field and index say where it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from spyne import Fault
from spyne.protocol.soap import Soap11
from spyne.protocol.xml import SchemaValidationError

from gateway.domain import findings as codes
from gateway.domain.findings import Finding
from gateway.entrypoints.soap import faults

ENV_SCHEMA_REJECTED = "gateway.schema_rejected"
_SOAP12 = "{http://www.w3.org/2003/05/soap-envelope}Envelope"
MAX_FINDINGS = 20  # per claim: a claim in the wrong namespace altogether would otherwise list every element

_MAX_LEN = re.compile(r"maximum length of '(\d+)'")
_MIN_LEN = re.compile(r"minimum length of '(\d+)'")
_SET = re.compile(r"set \{(.*)\}")
_ATOMIC = re.compile(r"atomic type '(?:xs:)?([A-Za-z]+)'")
_EXPECTED = re.compile(r"Expected is (?:one of )?\( (.*) \)")
_ELEMENT = re.compile(r"^Element '(?:\{[^}]*\})?([^']+)'")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]-]")
_TYPE_SENTENCES = {
    "date": (codes.INVALID_DATE, "must be a date as YYYY-MM-DD (xs:date)"),
    "dateTime": (codes.INVALID_DATE, "must be a date and time as YYYY-MM-DDThh:mm:ss (xs:dateTime)"),
    "decimal": (codes.INVALID_AMOUNT, "must be a decimal number with a point, like 120.50 (xs:decimal)"),
    "boolean": (codes.INVALID_VALUE, "must be true or false"),
    "long": (codes.TYPE_ERROR, "must be a whole number"),
    "integer": (codes.TYPE_ERROR, "must be a whole number"),
    "base64Binary": (codes.TYPE_ERROR, "must be base64 (xs:base64Binary)"),
}


@dataclass(frozen=True)
class SchemaRejected:
    """A claim of the request that does not fit the schema: where it was and why."""

    index: int  # 1-based, among the request's claims
    reference: str | None
    findings: list[Finding] = field(default_factory=list)


def field_of(path: str | None, *, root: bool = True) -> str | None:
    """The canonical field of an lxml error path: ``/ns0:ClaimInput/ns0:debtor/ns0:addresses/ns0:Address[2]/
    ns0:country`` -> ``debtor.addresses[1].country`` (array items are named by their 0-based position)."""
    if not path:
        return None
    steps = [s.split(":")[-1] for s in path.strip("/").split("/")]
    if root and steps:
        steps = steps[1:]  # the ClaimInput (or operation) element itself
    out: list[str] = []
    for step in steps:
        name, _, rest = step.partition("[")
        if name[:1].isupper() and out:  # an array's item element: <addresses><Address>
            out[-1] += f"[{int(rest.rstrip(']') or 1) - 1 if rest else 0}]"
        else:
            out.append(name)
    return ".".join(out) or None


def describe(error: Any, *, root: bool = True) -> Finding:
    """One libxml2 schema error as a finding: a stable code, the canonical field, a sentence without the value."""
    kind, text = str(error.type_name), str(error.message)
    where = field_of(getattr(error, "path", None), root=root)
    # element names come from the request: an unknown one is the sender's text, so it is cut and cleaned
    where = _clean(where)
    raw = m.group(1) if (m := _ELEMENT.match(text)) else None
    name = _clean(raw) if raw else (where or "the claim").rsplit(".", 1)[-1]
    subject = where or name
    if kind == "SCHEMAV_CVC_MAXLENGTH_VALID":
        n = m.group(1) if (m := _MAX_LEN.search(text)) else "?"
        return Finding(code=codes.TOO_LONG, field=where, message=f"{subject} is longer than {n} characters")
    if kind == "SCHEMAV_CVC_MINLENGTH_VALID":
        n = m.group(1) if (m := _MIN_LEN.search(text)) else "?"
        return Finding(code=codes.INVALID_VALUE, field=where, message=f"{subject} is shorter than {n} characters")
    if kind == "SCHEMAV_CVC_ENUMERATION_VALID":
        allowed = ", ".join(v.strip(" '") for v in m.group(1).split(",")) if (m := _SET.search(text)) else "?"
        return Finding(code=codes.INVALID_VALUE, field=where, message=f"{subject} must be one of: {allowed}")
    if kind == "SCHEMAV_CVC_PATTERN_VALID":
        return Finding(code=codes.INVALID_VALUE, field=where, message=f"{subject} does not have the required form")
    if kind.startswith("SCHEMAV_CVC_DATATYPE_VALID") or kind == "SCHEMAV_CVC_TYPE_3_1_2":
        atomic = m.group(1) if (m := _ATOMIC.search(text)) else ""
        code, sentence = _TYPE_SENTENCES.get(atomic, (codes.TYPE_ERROR, f"is not a valid {atomic or 'value'}"))
        return Finding(code=code, field=where, message=f"{subject} {sentence}")
    if kind.startswith(("SCHEMAV_CVC_MININCLUSIVE", "SCHEMAV_CVC_MAXINCLUSIVE", "SCHEMAV_CVC_MINEXCLUSIVE",
                        "SCHEMAV_CVC_MAXEXCLUSIVE", "SCHEMAV_CVC_TOTALDIGITS", "SCHEMAV_CVC_FRACTIONDIGITS")):
        return Finding(code=codes.INVALID_VALUE, field=where, message=f"{subject} is out of the allowed range")
    if kind == "SCHEMAV_ELEMENT_CONTENT" and "Missing child element" in text:
        missing = _expected(text)
        inner = f"{where}.{missing[0]}" if where and len(missing) == 1 else missing[0] if len(missing) == 1 else where
        return Finding(code=codes.MISSING_FIELD, field=inner,
                       message=f"{' or '.join(missing) or 'an element'} is missing in {where or 'the claim'}")
    if kind == "SCHEMAV_ELEMENT_CONTENT":
        expected = _expected(text)
        if len(expected) == 1 and "one of" not in text:  # only one element may come here: a required one is missing
            parent = where.rsplit(".", 1)[0] if where and "." in where else None
            return Finding(code=codes.MISSING_FIELD, field=f"{parent}.{expected[0]}" if parent else expected[0],
                           message=f"{expected[0]} is missing: the schema expects it before {name}")
        hint = f" (expected here: {', '.join(expected)})" if expected else ""
        return Finding(code=codes.UNEXPECTED_ELEMENT, field=where,
                       message=f"element {name} is not expected here: unknown, misspelled or out of the WSDL's "
                               f"order{hint}")
    if kind == "SCHEMAV_CVC_ELT_1":
        return Finding(code=codes.UNEXPECTED_ELEMENT, field=where,
                       message=f"element {name} is not declared (check its namespace)")
    return Finding(code=codes.TYPE_ERROR, field=where, message=f"{subject} does not fit the WSDL's schema")


def _clean(text: str | None) -> str | None:
    """At most 80 characters of names, digits, dots, brackets and underscores."""
    return _UNSAFE.sub("?", text)[:80] if text else text


def _expected(text: str) -> list[str]:
    m = _EXPECTED.search(text)
    return [e.strip().rsplit("}", 1)[-1] for e in m.group(1).split(",")] if m else []


def sentence(error: Any) -> str:
    """A whole-request schema error as a plain sentence (for a fault)."""
    f = describe(error, root=False)
    line = getattr(error, "line", 0)
    return f"the request does not fit the WSDL's schema: {f.message}" + (f" (line {line})" if line else "")


def split_claims(schema: Any, body: Any, claim_tag: str, claims_tag: str) -> list[SchemaRejected]:
    """Take the claims that fail ``schema`` out of ``body``; returns them with their index and findings."""
    holder = body.find(claims_tag)
    if holder is None:
        return []
    rejected: list[SchemaRejected] = []
    index = 0
    for element in list(holder):
        if not isinstance(element.tag, str):
            continue  # comments and processing instructions are not claims
        index += 1
        if element.tag != claim_tag or schema.validate(element):
            continue  # something else than a claim is judged with the whole request
        found = [describe(e) for e in list(schema.error_log)[:MAX_FINDINGS]]
        reference = (element.findtext(claim_tag.replace("ClaimInput", "creditor_reference")) or "").strip()
        rejected.append(SchemaRejected(index=index, reference=reference if 0 < len(reference) <= 128 else None,
                                       findings=found))
        holder.remove(element)
    return rejected


class Soap11PerClaim(Soap11):  # type: ignore[misc]
    """SOAP 1.1 whose schema errors in ``SubmitClaims`` reject single claims, and whose faults are sentences."""

    submit_tags: frozenset[str] = frozenset()  # ``{ns}SubmitClaims`` of every service namespace served

    def decompose_incoming_envelope(self, ctx: Any, message: Any = Soap11.REQUEST) -> None:
        envelope = ctx.in_document[0] if isinstance(ctx.in_document, tuple) else ctx.in_document
        if getattr(envelope, "tag", None) == _SOAP12:
            raise Fault(faultcode=faults.VERSION_MISMATCH,
                        faultstring="this endpoint speaks SOAP 1.1 only: send a SOAP 1.1 envelope "
                                    "(namespace http://schemas.xmlsoap.org/soap/envelope/) as text/xml")
        super().decompose_incoming_envelope(ctx, message)

    def validate_body(self, ctx: Any, message: Any) -> None:
        try:
            super().validate_body(ctx, message)
            return
        except SchemaValidationError:
            schema = self.validation_schema
            errors = list(schema.error_log)
            body = ctx.in_body_doc
            if message is not self.REQUEST or body is None or body.tag not in self.submit_tags:
                raise faults.ValidationFault(sentence(errors[0])) from None
        ns = body.tag[: body.tag.index("}") + 1]
        rejected = split_claims(schema, body, f"{ns}ClaimInput", f"{ns}claims")
        env = getattr(ctx.transport, "req_env", None)  # the WSGI environ (absent outside a server)
        if env is not None:
            env[ENV_SCHEMA_REJECTED] = rejected
        if not schema.validate(body):
            raise faults.ValidationFault(sentence(list(schema.error_log)[0])) from None
