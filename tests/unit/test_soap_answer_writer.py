"""SubmitClaims' answer written by the answer writer is byte for byte what spyne wrote (v1 and v2).

Each answer is serialized twice the way spyne's ``Soap11.serialize`` does (envelope with the interface's
namespaces, a detached body, namespace clean-up, the string): once by the endpoint's out-protocol (the writer
installed) and once by the same application built without it.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from gateway.entrypoints.soap import answer_writer, v2
from gateway.entrypoints.soap import types as t
from gateway.entrypoints.soap.app import _answer_type, build_application, build_application_v2

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


class Outcome(str, enum.Enum):
    ACCEPTED = "accepted"


def _result(i: int, **kw: Any) -> t.ClaimResult:
    base: dict[str, Any] = dict(index=i, creditor_reference=f"R-{i}", outcome="accepted", claim_id=1000 + i,
                                existing=False, state="queued", findings=[], differing_fields=None)
    return t.ClaimResult(**{**base, **kw})


FINDING = t.Finding(code="missing_field", severity="error", field="debtor.last_name",
                    message="last_name is missing <in> the claim & 'quoted' \"too\" – ümlaut")
ANSWERS: dict[str, Any] = {
    "ten accepted": t.SubmitResult(submission="S20261130-ABC123", status="completed", accepted=10, held=0,
                                   rejected=0, total_amount=Decimal("1255.00"), currency="EUR",
                                   results=[_result(i) for i in range(1, 11)]),
    "mixed outcomes": t.SubmitResult(
        submission="S1", status="completed_with_errors", accepted=1, held=1, rejected=2,
        total_amount=Decimal("0"), currency=None,
        results=[_result(1), _result(2, outcome="held", state="held", findings=[
                     t.Finding(code="awaiting_release", severity="hold", field=None, message="held")]),
                 _result(3, outcome="rejected", claim_id=None, existing=None, state=None, findings=[FINDING, FINDING]),
                 _result(4, outcome="conflict", state=None, findings=[FINDING],
                         differing_fields=["debtor.last_name", "principal_amount"]),
                 _result(5, existing=True, creditor_reference=None)]),
    "odd values": t.SubmitResult(submission="", status=Outcome.ACCEPTED, accepted=True, held=0, rejected=0,
                                 total_amount=Decimal("1E+2"), currency="EUR",
                                 results=[_result(1, findings=None, index=None), None,
                                          _result(2, findings=(FINDING,), differing_fields=[]),
                                          _result(3, outcome=Outcome.ACCEPTED, creditor_reference=b"bytes")]),
    "no results": t.SubmitResult(submission="S2", status="failed", results=[]),
    "results none": t.SubmitResult(submission="S3", status="failed"),
    "results as a generator": t.SubmitResult(submission="S4", status="completed",
                                             results=(r for r in [_result(1)])),
    "results as a tuple": t.SubmitResult(submission="S5", status="completed", results=(_result(1), _result(2))),
    "decimal from an int": t.SubmitResult(submission="S6", status="completed", total_amount=12),
    "empty": t.SubmitResult(),
}
FAILING = {"a text that is not XML": t.SubmitResult(submission="S\x00", status="completed"),
           "a count that is not a number": t.SubmitResult(submission="S", accepted="many")}


def _applications(version: str) -> Any:
    return build_application(None) if version == "v1" else build_application_v2(None)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["v1", "v2"])
def pair(request: Any) -> tuple[Any, Any, str]:
    mine = _applications(request.param)
    saved = answer_writer.install
    answer_writer.install = lambda *a, **k: None  # type: ignore[assignment]
    try:
        plain = _applications(request.param)
    finally:
        answer_writer.install = saved  # type: ignore[assignment]
    return mine, plain, request.param


def _serialize(application: Any, answer: Any) -> Any:
    """As spyne's Soap11.serialize with a wrapped answer: envelope, detached body, clean-up, string."""
    protocol = application.out_protocol
    (service,) = [s for s in application.services if "SubmitClaims" in s.public_methods]
    message = service.public_methods["SubmitClaims"].out_message
    try:
        envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=application.interface.nsmap)
        body = etree.Element(f"{{{SOAP_ENV}}}Body")
        out = message()
        (name,) = message._type_info
        setattr(out, name, answer)
        protocol.to_parent(None, message, out, body, message.get_namespace())
        envelope.append(body)
        etree.cleanup_namespaces(envelope)
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    except Exception as exc:  # both must fail alike
        return type(exc).__name__


def _answer(name: str, version: str, application: Any, table: dict[str, Any]) -> Any:
    answer = table[name]
    if name == "results as a generator":  # each serialization consumes its own
        answer = t.SubmitResult(submission="S4", status="completed", results=(r for r in [_result(1)]))
    if version == "v2":
        (service,) = [s for s in application.services if "SubmitClaims" in s.public_methods]
        (target,) = service.public_methods["SubmitClaims"].out_message._type_info.values()
        return v2.convert(answer, target) if name != "results as a generator" else answer
    return answer


@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_writer_writes_what_spyne_wrote(pair: tuple[Any, Any, str], name: str) -> None:
    mine, plain, version = pair
    written = _serialize(mine, _answer(name, version, mine, ANSWERS))
    expected = _serialize(plain, _answer(name, version, plain, ANSWERS))
    assert isinstance(expected, bytes)
    assert written == expected


@pytest.mark.parametrize("name", list(FAILING))
def test_values_spyne_refuses_are_refused_alike(pair: tuple[Any, Any, str], name: str) -> None:
    mine, plain, version = pair
    assert _serialize(mine, FAILING[name]) == _serialize(plain, FAILING[name]) != b""


def test_the_endpoint_writes_submit_claims_answers_itself(pair: tuple[Any, Any, str]) -> None:
    mine, plain, _ = pair
    (service,) = [s for s in mine.services if "SubmitClaims" in s.public_methods]
    answer = _answer_type(service)
    assert mine.out_protocol.serialization_handlers[answer] != mine.out_protocol.complex_to_parent
    (service,) = [s for s in plain.services if "SubmitClaims" in s.public_methods]
    assert plain.out_protocol.serialization_handlers[_answer_type(service)] == plain.out_protocol.complex_to_parent


def test_the_usual_answer_is_written_by_the_writer(pair: tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    mine, _, version = pair
    written: list[Any] = []
    real = answer_writer.AnswerWriter.write

    def counted(self: Any, ctx: Any, inst: Any, parent: Any, tag: str) -> None:
        written.append(type(inst).__name__)
        real(self, ctx, inst, parent, tag)

    monkeypatch.setattr(answer_writer.AnswerWriter, "write", counted)
    assert isinstance(_serialize(mine, _answer("ten accepted", version, mine, ANSWERS)), bytes)
    assert written == ["SubmitResult", *["ClaimResult"] * 10]  # the results inside too, none through spyne
