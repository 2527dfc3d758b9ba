"""The v2 contract (``urn:inkasso-gateway:soap:v2`` at ``/soap/v2``): v1's operations, typed for code generators.

v1 stays as it is for the clients built on it. v2 is derived from v1 rather than written twice, so the two
cannot drift apart in what they do: every v1 type is rebuilt in the v2 namespace with

- optional elements ``minOccurs="0"`` and never ``nillable`` (xjc/wsimport make a ``JAXBElement<>`` of every
  nillable optional element, svcutil a ``Specified`` pair);
- named enumerations for states, outcomes, severities, finding codes, change kinds, salutations and the
  other closed sets (``ENUMS``); finding codes come from the domain's code list (``gateway.domain.findings``),
  so a code added there is in the next WSDL without a copy here;
- the event payload typed (``EventData``) instead of a JSON string.

Each v2 operation calls the v1 operation's own function and converts its answer (``convert``).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from spyne import (
    Array,
    Boolean,
    ByteArray,
    ComplexModel,
    ComplexModelBase,
    Date,
    DateTime,
    Integer,
    Long,
    ServiceBase,
    Unicode,
    rpc,
)
from spyne import Decimal as XDecimal
from spyne.model.complex import Array as ArrayBase

from gateway.domain import findings as domain_findings
from gateway.domain.findings import Outcome, Severity
from gateway.domain.lifecycle import Actor, Stage, State
from gateway.domain.limitation import LIMITATION_NEAR, TIME_BARRED
from gateway.services.claim_queries import CHANGES
from gateway.services.submit import AWAITING_RELEASE

TNS_V2 = "urn:inkasso-gateway:soap:v2"
PATH_V2 = "/soap/v2"


def finding_codes() -> list[str]:
    """Every finding code the gateway answers: the domain's list plus the few defined next to their use."""
    domain = {v for k, v in vars(domain_findings).items() if k.isupper() and isinstance(v, str)}
    # codes that live beside the rule or code that emits them (limitation, submit, SOAP documents, mapping groups)
    beside = {TIME_BARRED, LIMITATION_NEAR, AWAITING_RELEASE, "document_too_large", "group_rejected", "input_error",
              "conflict"}
    return sorted(domain | beside)


# Closed sets, named (a customized named simple type would become an anonymous one per field in spyne's schema,
# so each use builds the named type with its occurrence attributes: ``_named``).
ENUMS: dict[str, list[str]] = {
    "ClaimState": [s.value for s in State],
    "Outcome": [o.value for o in Outcome],
    "Severity": [s.value for s in Severity],
    "FindingCode": finding_codes(),
    "ChangeKind": list(CHANGES),
    "Actor": [a.value for a in Actor],
    "Stage": [s.value for s in Stage],
    "MessageDirection": ["to_partner", "from_partner"],
    "SubmissionStatus": ["processing", "completed", "completed_with_errors", "failed"],
}


def _named(name: str, occurs: dict[str, Any], **facets: Any) -> Any:
    """The named simple type ``name`` in the v2 namespace, used with ``occurs``."""
    return Unicode(type_name=name, __namespace__=TNS_V2, **facets, **occurs)
# (type, field) or field -> enumeration; v1's anonymous enumerations get names of their own
_FIELD_ENUMS: dict[tuple[str, str] | str, str] = {
    "state": "ClaimState", "from_state": "ClaimState", "outcome": "Outcome", "severity": "Severity",
    ("Finding", "code"): "FindingCode", ("SubmissionFinding", "code"): "FindingCode", "change": "ChangeKind",
    ("Event", "actor"): "Actor", ("ClaimSummary", "stage"): "Stage", ("CaseAccount", "stage"): "Stage",
    ("ClaimStatus", "stage"): "Stage", ("Message", "direction"): "MessageDirection",
    ("SubmitResult", "status"): "SubmissionStatus", ("SubmissionInfo", "status"): "SubmissionStatus",
}
_NAMED_V1_ENUMS = {("Debtor", "salutation"): "Salutation", ("Debtor", "kind"): "DebtorKind",
                   ("Address", "kind"): "AddressKind", ("Fee", "kind"): "FeeKind", ("Interest", "kind"): "InterestKind",
                   ("DocumentUpload", "kind"): "DocumentKind", ("ClaimInput", "claim_type"): "ClaimType",
                   ("ClaimData", "claim_type"): "ClaimType", ("ListFilter", "date_field"): "DateField"}


def _o(ty: Any) -> Any:
    """An optional element: may be left out, never nil."""
    return ty.customize(min_occurs=0, nillable=False)


class DataEntry(ComplexModel):  # type: ignore[misc]
    """A recorded value without a typed field of its own (a partner's extra information)."""

    __namespace__ = TNS_V2
    _type_info = [("name", Unicode(min_occurs=1, nillable=False)), ("value", _o(Unicode))]


class EventData(ComplexModel):  # type: ignore[misc]
    """What an event records, typed; keys without a field of their own are listed under ``other``."""

    __namespace__ = TNS_V2
    _type_info = [("channel", _o(Unicode)), ("submission", _o(Unicode)), ("run", _o(Unicode)),
                  ("codes", _o(Array(_o(Unicode)))), ("partner", _o(Unicode)), ("partner_reference", _o(Unicode)),
                  ("code", _o(Unicode)), ("reason", _o(Unicode)), ("error", _o(Unicode)), ("stage", _o(Unicode)),
                  ("amount", _o(XDecimal)), ("currency", _o(Unicode)), ("date", _o(Date)),
                  ("message_id", _o(Long)), ("attempts", _o(Long)), ("labels", _o(Array(_o(Unicode)))),
                  ("other", _o(Array(_o(DataEntry))))]


_EVENT_FIELDS: dict[str, Any] = {k: v for k, v in EventData.get_flat_type_info(EventData).items() if k != "other"}


_PRIMITIVES = (Unicode, XDecimal, Date, DateTime, Long, Integer, Boolean, ByteArray)
_V1_SIMPLE = {"emails": "Email", "phones": "Phone", "labels": "Label", "references": "Reference"}


class Derived:
    """v1 types rebuilt in the v2 namespace, each once (by v1 type name)."""

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}

    def of(self, ty: Any, owner: str | None = None, field: str | None = None,
           occurs: dict[str, Any] | None = None) -> Any:
        """The v2 counterpart of the v1 (possibly customized) type ``ty`` used as ``owner.field``."""
        attrs = ty.Attributes
        occurs = occurs or dict(min_occurs=attrs.min_occurs, nillable=False)
        if issubclass(ty, ArrayBase):
            (inner,) = ty._type_info.values()
            return Array(self.of(inner, owner, field, dict(min_occurs=0, nillable=False)), **occurs)
        if owner == "Event" and field == "data":
            return EventData.customize(**occurs)
        if isinstance(ty, type) and issubclass(ty, ComplexModelBase):
            return self._complex(ty).customize(**occurs)
        enum = _FIELD_ENUMS.get((owner or "", field or "")) or _FIELD_ENUMS.get(field or "")
        if enum:
            return _named(enum, occurs, values=ENUMS[enum])
        if getattr(attrs, "values", None):
            name = _NAMED_V1_ENUMS.get((owner or "", field or "")) or f"{owner}_{field}"
            ENUMS.setdefault(name, list(attrs.values))
            return _named(name, occurs, values=ENUMS[name])
        named = _V1_SIMPLE.get(field or "")
        if named and not isinstance(ty, type) or named and not issubclass(ty, ComplexModelBase):
            return _named(named, occurs, max_len=attrs.max_len)  # v1's named item types (spyne names them late)
        # A fresh type from the primitive: customizing v1's own would let spyne name v1's anonymous types in
        # the v2 namespace when v2 is built first (they are named lazily, by the first interface that sees them).
        root = next(c for c in ty.__mro__ if c in _PRIMITIVES)
        facets = {"max_len": attrs.max_len} if root is Unicode and attrs.max_len != Unicode.Attributes.max_len else {}
        return root.customize(**facets, **occurs)

    def _complex(self, ty: Any) -> Any:
        name = ty.get_type_name()
        if name not in self.types:
            shell = type(name, (ComplexModel,), {"__namespace__": TNS_V2, "__type_name__": name,
                                                 "__doc__": ty.__doc__, "_type_info": []})
            self.types[name] = shell
            info = [(k, self.of(v, name, k)) for k, v in ty.get_flat_type_info(ty).items()]
            self.types[name] = type(name, (ComplexModel,), {"__namespace__": TNS_V2, "__type_name__": name,
                                                            "__doc__": ty.__doc__, "_type_info": info})
        return self.types[name]


def _event_data(text: str | None) -> Any:
    if not text:
        return None
    data = json.loads(text)
    typed: dict[str, Any] = {}
    other = []
    for key, value in sorted(data.items()):
        target = _EVENT_FIELDS.get(key)
        try:
            if target is None:
                raise TypeError(key)
            typed[key] = _coerce(target, value)
        except (TypeError, ValueError, InvalidOperation):
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            other.append(DataEntry(name=key, value=text))
    return EventData(**typed, other=other or None)


def _coerce(target: Any, value: Any) -> Any:
    if value is None:
        return None
    if issubclass(target, ArrayBase):
        if not isinstance(value, list):
            raise TypeError("not a list")
        return [str(v) for v in value]
    base = getattr(target, "__orig__", None) or target
    if issubclass(base, XDecimal):
        return Decimal(str(value))
    if issubclass(base, Date):
        return date.fromisoformat(str(value))
    if issubclass(base, Long):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("not an int")
        return value
    if isinstance(value, (dict, list)):
        raise TypeError("not a scalar")
    return str(value)


def convert(value: Any, target: Any) -> Any:
    """A v1 answer (instances of v1 types, lists, scalars) as instances of the v2 type ``target``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        inner = next(iter(target._type_info.values())) if issubclass(target, ArrayBase) else target
        return [convert(v, inner) for v in value]
    if isinstance(value, ComplexModelBase):
        cls = getattr(target, "__orig__", None) or target
        info = cls.get_flat_type_info(cls)
        out = {}
        for name, ftype in info.items():
            v = getattr(value, name, None)
            if v is None:
                continue
            out[name] = _event_data(v) if ftype.get_type_name() == "EventData" else convert(v, ftype)
        return cls(**out)
    return value


def build_service(v1_services: list[Any], derived: Derived) -> type:
    """One v2 service class with every operation of ``v1_services``, typed by ``derived``."""
    methods: dict[str, Any] = {}
    for service in v1_services:
        for name, d in service.public_methods.items():
            in_info = d.in_message._type_info
            (out_type,) = d.out_message._type_info.values() or (None,)
            v2_in = [derived.of(v, name, arg) for arg, v in in_info.items()]
            v2_out = derived.of(out_type) if out_type is not None else None

            def call(ctx: Any, *args: Any, _fn: Any = d.function, _out: Any = v2_out) -> Any:
                answer = _fn(ctx, *args)
                return convert(answer, _out) if _out is not None else answer

            call.__name__, call.__doc__ = name, d.function.__doc__
            kw = {"_returns": v2_out} if v2_out is not None else {}
            methods[name] = rpc(*v2_in, _args=tuple(in_info), **kw)(call)
    return type("GatewayServiceV2", (ServiceBase,), methods)


__all__ = ["PATH_V2", "TNS_V2", "Derived", "build_service", "convert", "finding_codes"]
