"""The SOAP WSGI application: spyne behind the request gate (``gate.RequestGate``), core errors as stable faults.

spyne's own lxml parser is configured without DTD loading, entities or network, a second wall behind
the gate's refusal of DTDs and entity declarations.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import spyne.const
from spyne import Application, Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.bootstrap import App
from gateway.entrypoints.soap import answer_writer, claim_reader, faults, v2
from gateway.domain.lifecycle import TERMINAL, State
from gateway.entrypoints.soap.credit_service import CreditService
from gateway.entrypoints.soap.gate import PATH, RequestGate, refusal
from gateway.entrypoints.soap.schema_check import Soap11PerClaim
from gateway.entrypoints.soap.service import ENV_CLIENT, GatewayService
from gateway.entrypoints.soap.types import TNS
from gateway.errors import IllegalTransition, NotFound, Unsupported
from gateway.services.claim_ops import InvalidRequest

log = logging.getLogger("gateway.soap")
_FINAL = frozenset(state.value for state in TERMINAL)
SERVICES = (GatewayService, CreditService)  # v1's service classes; v2 is derived from the same list
__all__ = ["PATH", "GatewayApplication", "RequestGate", "build_application", "build_wsgi", "refusal"]


class GatewayApplication(Application):  # type: ignore[misc]
    """spyne Application that turns the core's exceptions into faults with stable codes."""

    gateway_app: App

    def call_wrapper(self, ctx: Any) -> Any:
        try:
            return super().call_wrapper(ctx)
        except Fault:
            raise
        except NotFound as exc:
            code = faults.UNKNOWN_SUBMISSION if str(exc).startswith("no submission") else faults.UNKNOWN_CLAIM
            raise Fault(faultcode=code, faultstring=str(exc)) from None
        except IllegalTransition as exc:
            said = transition_sentence(exc)
            raise Fault(faultcode=faults.ILLEGAL_TRANSITION, faultstring=said,
                        detail=faults.detail(faults.ILLEGAL_TRANSITION, said, claim_id=exc.claim_id,
                                             namespace=self.tns)) from None
        except Unsupported as exc:
            raise Fault(faultcode=faults.UNSUPPORTED, faultstring=str(exc)) from None
        except InvalidRequest as exc:
            raise Fault(faultcode=faults.VALIDATION, faultstring=str(exc)) from None
        except (OperationalError, PoolTimeout) as exc:
            log.warning("soap.busy error=%s", exc.__class__.__name__)
            raise Fault(faultcode=faults.BUSY, faultstring="the database is busy: retry later") from None
        except Exception:
            incident = secrets.token_hex(6)
            log.exception("soap.internal_error incident=%s", incident)
            raise Fault(faultcode=faults.INTERNAL, faultstring=f"internal error (incident {incident})") from None


class _OurFaults(logging.Filter):
    """spyne logs every server-side fault at ERROR with a traceback. Those under our codes are logged already, by
    us and once (soap.busy, or soap.internal_error with its traceback, then soap.fault): a busy database would
    otherwise read as a crash in the log at every lock or cut. A fault of spyne's own (code ``Server``) stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        return not (isinstance(err, Fault) and err.faultcode in faults.CODES)


_OUR_FAULTS = _OurFaults()


def _stable_fault(ctx: Any) -> None:
    """spyne's own faults (schema validation, unknown operation) under our stable codes."""
    err = ctx.out_error
    if isinstance(err, Fault) and err.faultcode not in faults.CODES:
        code = faults.VALIDATION if str(err.faultcode).startswith("Client") else faults.INTERNAL
        ctx.out_error = err = Fault(faultcode=code, faultstring=str(err.faultstring)[:2000])
    if isinstance(err, Fault) and err.detail is None:
        err.detail = faults.detail(err.faultcode, str(err.faultstring), namespace=ctx.app.tns)
    if isinstance(err, Fault):
        # A schema fault quotes the submitted value (a birth date, a name): the client gets it, the log does not.
        said = "" if err.faultcode == faults.VALIDATION else str(err.faultstring)[:200]
        log.info("soap.fault code=%s client=%s message=%s", err.faultcode,
                 ctx.transport.req_env.get(ENV_CLIENT) if ctx.transport else None, said)


def transition_sentence(exc: IllegalTransition) -> str:
    """What an illegal transition means to the client, in its words rather than the state machine's."""
    claim = f"claim {exc.claim_id}" if exc.claim_id is not None else "the claim"
    if exc.src == exc.dst and exc.src in _FINAL:
        return f"{claim} is closed ({exc.src}): it takes no more requests"
    generic = exc.reason == "no such transition" or exc.reason.startswith("only ") or exc.reason.endswith(" is final")
    if not generic:  # the use case said why (e.g. a request only the agency can answer, before it has the claim)
        return f"{claim} is {exc.src}; {exc.reason.removesuffix(f' ({exc.src})')}"
    if exc.dst == State.QUEUED.value:
        return f"{claim} is {exc.src}; only held claims can be released"
    if exc.dst == State.CANCELLED_BY_CLIENT.value:
        return f"{claim} is {exc.src}; it can no longer be cancelled"
    if exc.src == exc.dst:
        return f"{claim} is already {exc.src}"
    return f"{claim} is {exc.src}; it cannot become {exc.dst}"


def declare_faults(services: list[Any], namespace: str) -> None:
    """Declare the typed fault on every operation, so generated clients can catch it."""
    fault = faults.detail_type(namespace)
    for service in services:
        for method in service.public_methods.values():
            method.faults = (fault,)


def _claim_type(service: Any) -> Any:
    """The item type of SubmitClaims' ``claims`` array, as spyne looks it up when reading a claim."""
    (item,) = service.public_methods["SubmitClaims"].in_message._type_info["claims"]._type_info.values()
    return item


def _answer_type(service: Any) -> Any:
    """The type of SubmitClaims' answer, as spyne looks it up when writing it."""
    (answer,) = service.public_methods["SubmitClaims"].out_message._type_info.values()
    return answer


def build_application(app: App) -> GatewayApplication:
    """The spyne application for ``app`` (one per process)."""
    # spyne runs a full gc.collect() after a request at most once a second, to close uploaded files held in
    # cycles; we take no file uploads, and on a large heap that pause measured ~200 ms: the whole p99.
    spyne.const.MIN_GC_INTERVAL = float("inf")
    # spyne logs every client fault with a traceback; a client's mistake is one line of ours (soap.fault).
    for name in ("spyne.application.client", "spyne.server._base"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("spyne.application").addFilter(_OUR_FAULTS)  # once: the same filter is not added twice
    # spyne's DEBUG lines carry every request header (Authorization: the password) and body (debtor data).
    logging.getLogger("spyne").setLevel(max(logging.getLogger("spyne").getEffectiveLevel(), logging.INFO))
    # A request that is not well-formed is logged by spyne at ERROR with the whole body ("%r in string %r"):
    # debtor data, and a 20 MB line per bad request. The client gets the fault, we log soap.fault.
    for name in ("spyne.protocol.soap.soap11.invalid", "spyne.protocol.xml.invalid"):
        logging.getLogger(name).disabled = True
    parser = dict(load_dtd=False, resolve_entities=False, no_network=True, huge_tree=False, dtd_validation=False)
    services = list(SERVICES)
    declare_faults(services, TNS)
    in_protocol = Soap11PerClaim(validator="lxml", **parser)
    in_protocol.submit_tags = frozenset({f"{{{TNS}}}SubmitClaims"})
    application = GatewayApplication(services, tns=TNS, name="InkassoGateway",
                                     in_protocol=in_protocol, out_protocol=Soap11())
    claim_reader.install(in_protocol, [_claim_type(GatewayService)])
    answer_writer.install(application.out_protocol, [_answer_type(GatewayService)])
    application.gateway_app = app
    application.event_manager.add_listener("method_exception_object", _stable_fault)
    return application


def build_application_v2(app: App) -> GatewayApplication:
    """The v2 contract (``v2``): the same operations in their own namespace, typed for code generators."""
    service = v2.build_service(list(SERVICES), v2.Derived())
    declare_faults([service], v2.TNS_V2)
    parser = dict(load_dtd=False, resolve_entities=False, no_network=True, huge_tree=False, dtd_validation=False)
    in_protocol = Soap11PerClaim(validator="lxml", **parser)
    in_protocol.submit_tags = frozenset({f"{{{v2.TNS_V2}}}SubmitClaims"})
    application = GatewayApplication([service], tns=v2.TNS_V2, name="InkassoGatewayV2", in_protocol=in_protocol,
                                     out_protocol=Soap11())
    claim_reader.install(in_protocol, [_claim_type(service)])
    answer_writer.install(application.out_protocol, [_answer_type(service)])
    application.gateway_app = app
    application.event_manager.add_listener("method_exception_object", _stable_fault)
    return application


def build_wsgi(app: App) -> RequestGate:
    """The whole SOAP endpoint (v1 at PATH, v2 at v2.PATH_V2) as one WSGI callable."""
    cfg = app.config.soap
    newer = WsgiApplication(build_application_v2(app), max_content_length=cfg.max_request_bytes)
    return RequestGate(WsgiApplication(build_application(app), max_content_length=cfg.max_request_bytes), app,
                       {v2.PATH_V2: (newer, v2.TNS_V2)})
