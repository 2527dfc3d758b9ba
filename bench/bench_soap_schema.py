"""CPU cost of SOAP request parsing with per-claim schema checks, next to spyne's plain Soap11, in one process.

    .venv/bin/python bench/bench_soap_schema.py [--claims 10] [--rounds 400]

No HTTP and no database: each round parses, validates and deserializes one SubmitClaims envelope the way the
endpoint does (``create_in_document``, ``decompose_incoming_envelope``, ``deserialize``), once with spyne's
``Soap11`` and once with the gateway's ``Soap11PerClaim``, interleaved, timing CPU (``time.process_time``);
and a third time with the endpoint's own protocol, which also reads the claims with ``claim_reader`` instead
of spyne's objects (the operation then gets plain data).
Three envelopes: all claims valid (the fast path: one validation of the whole body), one claim breaking a
facet (the whole body fails, then each claim is validated on its own and the bad one is taken out), and all
claims broken.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=ImportWarning)  # spyne's vendored six on import
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spyne import MethodContext  # noqa: E402
from spyne.protocol.soap import Soap11  # noqa: E402
from spyne.server.null import NullServer  # noqa: E402

from bench.bench_soap import CLAIM, ENVELOPE  # noqa: E402
from gateway.entrypoints.soap.app import build_application  # noqa: E402
from gateway.entrypoints.soap.schema_check import Soap11PerClaim  # noqa: E402
from gateway.entrypoints.soap.types import TNS  # noqa: E402

PARSER = dict(load_dtd=False, resolve_entities=False, no_network=True, huge_tree=False, dtd_validation=False)


def envelope(claims: int, broken: int) -> bytes:
    parts = [CLAIM.format(ref=f"B-{k}") for k in range(claims)]
    for k in range(broken):  # a country of three letters breaks the schema's maxLength of 2
        parts[k] = parts[k].replace("<gw:city>Köln</gw:city>", "<gw:city>Köln</gw:city><gw:country>DEU</gw:country>")
    return ENVELOPE.format(claims="".join(parts)).encode()


def protocols() -> tuple[Any, Any, Any]:
    application = build_application(None)  # type: ignore[arg-type]  # parsing needs no gateway app
    endpoint = application.in_protocol  # Soap11PerClaim with the claim reader
    plain = Soap11(validator="lxml", **PARSER)
    plain.set_app(application)
    ours = Soap11PerClaim(validator="lxml", **PARSER)
    ours.submit_tags = frozenset({f"{{{TNS}}}SubmitClaims"})
    ours.set_app(application)
    return plain, ours, endpoint


def parse(protocol: Any, body: bytes) -> int:
    """One request through the protocol; returns the number of claims handed to the operation (-1: fault)."""
    ctx = MethodContext(NullServer(protocol.app), MethodContext.SERVER)
    ctx.in_string = [body]
    try:
        protocol.create_in_document(ctx)
        protocol.decompose_incoming_envelope(ctx, Soap11.REQUEST)
        protocol.app.in_protocol = protocol
        ctx.descriptor = protocol.app.interface.service_method_map[ctx.method_request_string][0]
        protocol.deserialize(ctx, Soap11.REQUEST)
    except Exception:  # the plain protocol refuses a body with one bad claim: a fault for the whole request
        return -1
    return len(ctx.in_object[0] or [])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--claims", type=int, default=10)
    p.add_argument("--rounds", type=int, default=400)
    args = p.parse_args()
    plain, ours, endpoint = protocols()
    cases = [("all valid", envelope(args.claims, 0)), ("1 claim broken", envelope(args.claims, 1)),
             (f"{args.claims} claims broken", envelope(args.claims, args.claims))]
    print(f"SubmitClaims parse + validate + deserialize, {args.claims} claims/request, {args.rounds} rounds each, "
          f"CPU time per request (interleaved)")
    print(f"{'envelope':<20}{'Soap11 ms':>11}{'claims':>8}{'PerClaim ms':>13}{'claims':>8}{'ratio':>8}"
          f"{'endpoint ms':>13}{'claims':>8}{'ratio':>8}")
    for name, body in cases:
        cpu = {"plain": 0.0, "ours": 0.0, "endpoint": 0.0}
        got = {}
        for _ in range(args.rounds):
            for key, protocol in (("plain", plain), ("ours", ours), ("endpoint", endpoint)):
                start = time.process_time()
                got[key] = parse(protocol, body)
                cpu[key] += time.process_time() - start
        a, b, c = (cpu[k] / args.rounds * 1000 for k in ("plain", "ours", "endpoint"))
        shown = {k: "fault" if v < 0 else str(v) for k, v in got.items()}
        print(f"{name:<20}{a:>11.3f}{shown['plain']:>8}{b:>13.3f}{shown['ours']:>8}{b / a:>8.2f}"
              f"{c:>13.3f}{shown['endpoint']:>8}{c / a:>8.2f}")


if __name__ == "__main__":
    main()
