"""Benchmark of revocation (``python -m tests.benchmarks revocation``).

- Added decision time with cached status: ``decide()`` of leaf + intermediate against a
  trusted root with ``revocation`` off, then on with a cached OCSP answer for the leaf
  and a cached CRL for the intermediate (both good, checks memoised as in production).
  Target: the difference of the medians < 20 µs.
- Handshake time with OCSP stapling on (``openssl s_server -status_file``, the response
  verified by the decision) against stapling off (the same server without a staple),
  through the TLS connector, interleaved rounds in the same run; the ratio is reported.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from certstore.decision import decide
from certstore.model import (
    Peer,
    RevocationMode,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.revocation import RevocationFacts, RevocationSource, parse_crl, parse_ocsp
from certstore.snapshot import TrustSnapshot
from certstore.sqlite import SqliteStore
from certstore.x509 import parse_der
from gateway.tls import TlsConnector, TlsTarget
from gateway.tls.trust import StoreTrustPolicy
from tests.pki import CertFactory
from tests.revocation_support import make_crl, make_ocsp, openssl_ocsp_response
from tests.tls_servers import OpensslServer

ROUNDS = 7
DECISIONS = 2000
HANDSHAKES = 60
TARGET_ADDED_US = 20.0


def _median_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def bench_decision() -> float:
    now = dt.datetime.now(dt.UTC)
    factory = CertFactory(now)
    root = factory.ca("Bench Root")
    inter = factory.ca("Bench Intermediate", issuer=root)
    leaf = factory.leaf(inter)
    chain = tuple(parse_der(c.der) for c in leaf.chain())
    trust = [
        TrustEntry(
            certificate=parse_der(root.der),
            kind=TrustKind.CA,
            source=TrustSource.UPLOADED,
            added_at=now,
        )
    ]
    facts = RevocationFacts.build(
        crls=[parse_crl(make_crl(root, [], now=now), source=RevocationSource.CRL_URL, url="x")],
        ocsp=[parse_ocsp(make_ocsp(leaf, inter, now=now), source=RevocationSource.OCSP_URL)],
    )
    snaps = {
        mode: TrustSnapshot.build(
            generation=1, settings=Settings(revocation=mode), trust=trust, pins=(), revocation=facts
        )
        for mode in (RevocationMode.OFF, RevocationMode.SOFT_FAIL)
    }
    peer = Peer(host="sip.example.test", port=5061, transport=Transport.SIPS)
    checked = decide(chain, peer, now, snaps[RevocationMode.SOFT_FAIL])
    assert checked.accepted and [s.status.value for s in checked.revocation] == ["good", "good"]
    off: list[float] = []
    on: list[float] = []
    for _ in range(ROUNDS):
        off.append(
            _median_us(lambda: decide(chain, peer, now, snaps[RevocationMode.OFF]), DECISIONS)
        )
        on.append(
            _median_us(lambda: decide(chain, peer, now, snaps[RevocationMode.SOFT_FAIL]), DECISIONS)
        )
    added = statistics.median(on) - statistics.median(off)
    print(
        f"revocation decision: off {statistics.median(off):.1f} µs, cached status "
        f"{statistics.median(on):.1f} µs, added {added:.1f} µs (target < {TARGET_ADDED_US} µs)"
    )
    return added


async def _handshakes(connector: TlsConnector, port: int, n: int) -> float:
    target = TlsTarget.sips("sip.example.test", connect_host="127.0.0.1", connect_port=port)
    start = time.perf_counter()
    for _ in range(n):
        _, writer = await connector.open_connection(target)
        writer.close()
    return (time.perf_counter() - start) / n * 1e3


def bench_stapling() -> float:
    factory = CertFactory()
    root = factory.ca("Stapling Bench Root")
    leaf = factory.leaf(root)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        store = SqliteStore(d / "store.db")
        store.add_trust(
            [parse_der(root.der)], source=TrustSource.UPLOADED, actor=_actor(), kind=None
        )
        connector = TlsConnector(StoreTrustPolicy(store, decide=decide), record=False)
        status = d / "status.der"
        status.write_bytes(openssl_ocsp_response(d / "ocsp", leaf, root))
        with (
            OpensslServer(leaf, extra_args=["-tls1_3", "-status_file", str(status)]) as on_srv,
            OpensslServer(leaf, extra_args=["-tls1_3"]) as off_srv,
        ):
            on: list[float] = []
            off: list[float] = []
            for _ in range(ROUNDS):
                off.append(asyncio.run(_handshakes(connector, off_srv.port, HANDSHAKES)))
                on.append(asyncio.run(_handshakes(connector, on_srv.port, HANDSHAKES)))
        store.close()
    ratio = statistics.median(on) / statistics.median(off)
    print(
        f"revocation handshake: stapling off {statistics.median(off):.2f} ms, stapling on "
        f"(verified) {statistics.median(on):.2f} ms, ratio {ratio:.2f}"
    )
    return ratio


def _actor():  # type: ignore[no-untyped-def]
    from certstore.model import Actor

    return Actor(name="bench", interface="cli")


def main() -> int:
    added = bench_decision()
    bench_stapling()
    return 0 if added < TARGET_ADDED_US else 1


if __name__ == "__main__":
    raise SystemExit(main())
