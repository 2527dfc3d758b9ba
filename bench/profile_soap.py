"""Server CPU of one SubmitClaims through the whole SOAP WSGI stack, next to the bare spyne echo, in one process.

    .venv/bin/python bench/profile_soap.py [--claims 10] [--rounds 200] [--profile | --steps] [--db URL]

No HTTP, TLS or client processes: each round calls the gateway's WSGI application (request gate, HTTP Basic
login, spyne parse + schema validation + deserialize, the use case storing every claim, serialisation) and
the echo's (bench_soap.EchoService, the same types and validation, no database) with a fresh envelope of
``--claims`` claims, interleaved (echo, gateway, gateway, echo), timing CPU (``time.process_time``).
``--profile`` prints cProfile's top functions of the gateway's requests; ``--steps`` the CPU time per
request of each step of the gateway's path (``STEPS``: parse, validation, reading, the use case and its
store calls, the answer), timed around each call (a step's time includes the steps it calls).
"""

from __future__ import annotations

import argparse
import base64
import collections
import cProfile
import functools
import importlib
import io
import itertools
import logging
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=ImportWarning)  # spyne's vendored six on import
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spyne import Application  # noqa: E402
from spyne.protocol.soap import Soap11  # noqa: E402
from spyne.server.wsgi import WsgiApplication  # noqa: E402

from bench.bench_soap import CLAIM, ENVELOPE, PASSWORD, EchoService  # noqa: E402
from bench.pgschema import in_schema  # noqa: E402
from gateway.bootstrap import build_app  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.crypto.passwords import hash_password  # noqa: E402
from gateway.entrypoints.soap import types as t  # noqa: E402
from gateway.entrypoints.soap.app import build_wsgi  # noqa: E402
from gateway.services.keys import init_keys  # noqa: E402
from tests.conftest import write_config  # noqa: E402

_SERIAL = itertools.count()
# (module, attribute) timed by --steps, in the order of a request
STEPS = [
    ("gateway.entrypoints.soap.schema_check:Soap11PerClaim", "create_in_document"),
    ("gateway.entrypoints.soap.schema_check:Soap11PerClaim", "decompose_incoming_envelope"),
    ("gateway.entrypoints.soap.schema_check:Soap11PerClaim", "deserialize"),
    ("gateway.entrypoints.soap.translate", "draft_of"),
    ("gateway.services.submit", "submit_claims"),
    ("gateway.services.submit", "_check"),
    ("gateway.services.submit", "validate_claim"),
    ("gateway.services.submit", "limitation_findings"),
    ("gateway.store.claims", "prepare_claim"),
    ("gateway.services.submit", "_store"),
    ("gateway.store.fingerprints", "fingerprint"),
    ("gateway.store.submissions", "create"),
    ("gateway.store.submissions", "store_payload"),
    ("gateway.store.claims", "existing_references"),
    ("gateway.store.claims", "insert_prepared"),
    ("gateway.store.fingerprints", "insert"),
    ("gateway.services.submit", "_store_extras"),
    ("gateway.store.submissions", "finish"),
    ("spyne.protocol.soap:Soap11", "serialize"),
]


def call(wsgi: Any, claims: int, auth: str | None) -> bytes:
    """One POST of a fresh envelope through ``wsgi``; returns the answer's body."""
    n = next(_SERIAL)
    body = ENVELOPE.format(claims="".join(CLAIM.format(ref=f"P-{n}-{k}") for k in range(claims))).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/soap", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "0", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_TYPE": "text/xml; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "https", "wsgi.errors": sys.stderr,
               "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
               "wsgi.run_once": False}
    if auth:
        environ["HTTP_AUTHORIZATION"] = auth
    status: list[str] = []
    out = b"".join(wsgi(environ, lambda s, h, *a: status.append(s)))
    if not status[0].startswith("200") or f"<tns:accepted>{claims}<".encode() not in out:
        raise RuntimeError(f"request failed: {status} {out[:600]!r}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--claims", type=int, default=10)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--profile", action="store_true", help="cProfile the gateway's requests")
    p.add_argument("--steps", action="store_true", help="CPU time per step of the gateway's requests")
    p.add_argument("--db", help="database URL (default: SQLite in a temp dir)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.steps:
        _time_steps()
    in_schema(args.db, "profile_soap", lambda db: _measure(args, db))


_STEP_CPU: collections.Counter[str] = collections.Counter()
_IN_GATEWAY = [False]  # the echo's serialize is not the gateway's step


def _time_steps() -> None:
    """Wrap each of ``STEPS`` (before the gateway is built) with a CPU timer that counts the gateway's calls."""
    for where, name in STEPS:
        module, _, owner = where.partition(":")
        target = importlib.import_module(module)
        if owner:
            target = getattr(target, owner)
        fn = getattr(target, name)

        @functools.wraps(fn)
        def timed(*a: Any, _fn: Any = fn, _label: str = f"{where.rsplit('.', 1)[-1]}.{name}", **k: Any) -> Any:
            if not _IN_GATEWAY[0]:
                return _fn(*a, **k)
            start = time.process_time()
            try:
                return _fn(*a, **k)
            finally:
                _STEP_CPU[_label] += time.process_time() - start

        setattr(target, name, timed)


def _measure(args: argparse.Namespace, db_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg = write_config(base, db_url or f"sqlite:///{base / 'var' / 'gateway.db'}",
                           clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                                             "soap": {"username": "bench", "password_hash": hash_password(PASSWORD)}}})
        init_keys(load_config(cfg))
        app = build_app(cfg, migrate=True)
        try:
            gateway = build_wsgi(app)
            echo = WsgiApplication(Application([EchoService], tns=t.TNS, name="Echo",
                                               in_protocol=Soap11(validator="lxml", load_dtd=False,
                                                                  resolve_entities=False),
                                               out_protocol=Soap11()))
            auth = "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
            for _ in range(5):  # caches warm, the login remembered
                call(echo, args.claims, None)
                call(gateway, args.claims, auth)
            cpu = {"echo": 0.0, "gateway": 0.0}
            profiler = cProfile.Profile() if args.profile else None
            for _ in range(args.rounds):
                for name in ("echo", "gateway", "gateway", "echo"):
                    start = time.process_time()
                    if name == "gateway" and profiler:
                        profiler.enable()
                    _IN_GATEWAY[0] = name == "gateway"
                    call(gateway if name == "gateway" else echo, args.claims, auth if name == "gateway" else None)
                    _IN_GATEWAY[0] = False
                    if name == "gateway" and profiler:
                        profiler.disable()
                    cpu[name] += time.process_time() - start
        finally:
            app.close()
    n = 2 * args.rounds
    e, g = cpu["echo"] / n * 1000, cpu["gateway"] / n * 1000
    db = "PostgreSQL" if db_url else "SQLite (WAL)"
    print(f"SubmitClaims, {args.claims} claims/request, {n} requests each, in-process WSGI, {db}")
    print(f"server CPU per request: echo {e:.2f} ms, gateway {g:.2f} ms, gateway / echo {g / e:.2f}x"
          + (" (profiler on: inflated)" if profiler else "") + (" (step timers on)" if args.steps else ""))
    if args.steps:
        print("gateway ms CPU/request by step (a step includes the steps it calls):")
        for label, seconds in _STEP_CPU.items():
            print(f"  {label:<58}{seconds / n * 1000:>8.3f}")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
