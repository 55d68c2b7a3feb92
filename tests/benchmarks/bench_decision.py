"""Benchmark of the trust decision (``python -m tests.benchmarks``).

Targets (measured in one run, medians):

- ``decide()`` for a pinned leaf, with 10,000 pins and 1,000 trust anchors: < 50 µs.
- ``decide()`` with full path validation of leaf + intermediate against 1,000 anchors
  (root among them), signature cache off: < 1 ms, and at most 1.5 times OpenSSL's own
  verification of the same chain (pyOpenSSL ``X509Store`` holding the same anchors,
  built once; ``X509StoreContext(store, leaf, chain=[intermediate])
  .verify_certificate()`` timed).

- the same full decision (signature cache off) at most 1.2 times cryptography's verifier
  (``x509.verification.PolicyBuilder``, the same anchors in its ``Store``, the verifier
  built once; ``verify(leaf, [intermediate])`` timed). Both caches are off on both
  sides: cryptography has none, and sipsgate's is switched off for this figure.
- A hostile chain: 64 certificates (63 look-alike CAs sharing one name and one key, so
  that each verifies every other, each with 64 name-constraint subtrees, over a leaf
  with 40 names) decided in under 50 ms, signature cache off.

The same figure with the signature cache on (the production default) is printed too.
Rounds of each measurement are interleaved so that a busy machine slows all alike.
"""

from __future__ import annotations

import secrets
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store

from certstore import pathvalidation
from certstore.decision import decide
from certstore.model import (
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Rule,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.snapshot import TrustSnapshot
from certstore.x509 import parse_der
from tests.pki import CertFactory, Issued, KeySpec, make_key

ANCHORS = 1000
PINS = 10_000
ROUNDS = 61  # samples per measurement (median taken)
BATCH = 25  # calls per sample

PINNED_TARGET_US = 50.0
CHAIN_TARGET_US = 1000.0
RATIO_TARGET = 1.5
CRYPTOGRAPHY_RATIO_TARGET = 1.2
HOSTILE_TARGET_MS = 50.0
HOSTILE_ROUNDS = 11

PKI = CertFactory(organization=None)
HOST = "sip.example.net"
PEER = Peer(host=HOST, port=5061, transport=Transport.SIPS)


@dataclass(frozen=True)
class Pki:
    spec: KeySpec
    root: Issued
    inter: Issued
    leaf: Issued


def make_pki(spec: KeySpec) -> Pki:
    root = PKI.ca(f"Bench Root {spec}", key=spec)
    inter = PKI.ca(f"Bench Issuing CA {spec}", issuer=root, key=spec)
    leaf = PKI.leaf(inter, cn=HOST, key=spec)
    return Pki(spec=spec, root=root, inter=inter, leaf=leaf)


def filler_anchors(count: int) -> list[x509.Certificate]:
    """``count`` distinct self-signed CA certificates (one shared key keeps this quick)."""
    key = make_key("ec")
    return [
        PKI.issue(
            f"Filler Root {i}",
            key=key,
            ca=True,
            key_ids=False,
            serial=i + 1,
            valid_days=(-30, 3650),
        ).cert
        for i in range(count)
    ]


def trust_entries(certs: list[x509.Certificate]) -> list[TrustEntry]:
    added = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        TrustEntry(
            certificate=parse_der(c.public_bytes(Encoding.DER)),
            kind=TrustKind.CA,
            source=TrustSource.BUILTIN,
            added_at=added,
        )
        for c in certs
    ]


def random_pins(count: int) -> list[Pin]:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    scopes = (None, "pbx.example.net", "sip.example.org:5061", HOST)
    return [
        Pin(
            id=i + 1,
            decision=PinDecision.ACCEPT if i % 3 else PinDecision.REJECT,
            match=PinMatch.CERTIFICATE if i % 2 else PinMatch.PUBLIC_KEY,
            fingerprint=secrets.token_hex(32),
            scope=scopes[i % len(scopes)],
            expires_at=None,
            note="",
            created_at=created,
            created_by="bench",
        )
        for i in range(count)
    ]


def sample(fn: Callable[[], object]) -> float:
    """Mean µs per call over one batch."""
    start = time.perf_counter_ns()
    for _ in range(BATCH):
        fn()
    return (time.perf_counter_ns() - start) / BATCH / 1000.0


def interleaved(measures: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Samples (mean µs per call of one batch) of each measure, rounds interleaved."""
    for fn in measures.values():  # warm-up
        for _ in range(BATCH):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(ROUNDS):
        for name, fn in measures.items():
            samples[name].append(sample(fn))
    return samples


def paired_ratio(ours: list[float], baseline: list[float]) -> float:
    """Median of the round-by-round ratios: each pair was measured back to back, so a
    load spike on the machine inflates both sides of one pair, not one side's median."""
    return statistics.median(a / b for a, b in zip(ours, baseline, strict=True))


def measure(
    spec: KeySpec,
    fillers: list[x509.Certificate],
    filler_entries: list[TrustEntry],
    pins: list[Pin],
) -> dict[str, list[float]]:
    """Samples (µs per call) of the pinned decision, the full decision with the signature cache
    off and on, and OpenSSL's verification, for one key type."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from OpenSSL import crypto

    now = datetime.now(UTC)
    pki = make_pki(spec)
    leaf, inter, root = pki.leaf.model, pki.inter.model, pki.root.model
    root_entry = TrustEntry(
        certificate=root, kind=TrustKind.CA, source=TrustSource.BUILTIN, added_at=now
    )
    half = ANCHORS // 2
    anchors = [*filler_entries[:half], root_entry, *filler_entries[half:]]
    leaf_pin = Pin(
        id=PINS + 1,
        decision=PinDecision.ACCEPT,
        match=PinMatch.PUBLIC_KEY,
        fingerprint=leaf.spki_fingerprint,
        scope=HOST,
        expires_at=None,
        note="",
        created_at=now,
        created_by="bench",
    )
    settings = Settings()
    pinned_snapshot = TrustSnapshot.build(
        generation=1, settings=settings, trust=anchors, pins=[*pins, leaf_pin]
    )
    chain_snapshot = TrustSnapshot.build(generation=2, settings=settings, trust=anchors, pins=pins)
    sent = (leaf, inter)
    assert decide(sent, PEER, now, pinned_snapshot).rule is Rule.PINNED_ACCEPT
    assert decide(sent, PEER, now, chain_snapshot).rule is Rule.CHAIN_VALID

    store = crypto.X509Store()
    for c in [*fillers[:half], pki.root.cert, *fillers[half:]]:
        store.add_cert(crypto.X509.from_cryptography(c))
    o_leaf = crypto.X509.from_cryptography(pki.leaf.cert)
    o_inter = crypto.X509.from_cryptography(pki.inter.cert)
    crypto.X509StoreContext(store, o_leaf, chain=[o_inter]).verify_certificate()

    cache = pathvalidation.signature_cache
    saved = cache.maxsize

    def pinned() -> object:
        return decide(sent, PEER, now, pinned_snapshot)

    def uncached() -> object:
        cache.maxsize = 0
        return decide(sent, PEER, now, chain_snapshot)

    def cached() -> object:
        cache.maxsize = 4096
        return decide(sent, PEER, now, chain_snapshot)

    def openssl() -> object:
        crypto.X509StoreContext(store, o_leaf, chain=[o_inter]).verify_certificate()
        return None

    verifier = (
        PolicyBuilder()
        .store(Store([*fillers[:half], pki.root.cert, *fillers[half:]]))
        .time(now)
        .build_server_verifier(x509.DNSName(HOST))
    )
    verifier.verify(pki.leaf.cert, [pki.inter.cert])

    def pyca() -> object:
        return verifier.verify(pki.leaf.cert, [pki.inter.cert])

    try:
        return interleaved(
            {
                "pinned": pinned,
                "chain": uncached,
                "openssl": openssl,
                "cryptography": pyca,
                "chain-cached": cached,
            }
        )
    finally:
        cache.maxsize = saved


def hostile() -> float:
    """Median ms of ``decide()`` on the hostile chain (see the module docstring)."""
    now = datetime.now(UTC)
    hostile_pki = CertFactory(now, organization=None)
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(f"p{i}.example.net") for i in range(32)],
        excluded_subtrees=[x509.DNSName(f"x{i}.example.net") for i in range(32)],
    )
    root = hostile_pki.ca("Hostile Root", key=make_key("ec", "hostile-root"))
    # 63 CAs with one name and one key, each constrained: every one is a candidate
    # issuer of every other, and each adds its name constraints to the path.
    ca_key = make_key("ec", "hostile-ca")
    first = hostile_pki.ca(
        "Hostile CA",
        issuer=root,
        key=ca_key,
        key_ids=False,
        extra_extensions=[(constraints, True)],
    )
    cas = [first]
    for i in range(62):
        cas.append(
            hostile_pki.ca(
                "Hostile CA",
                issuer=first,
                key=ca_key,
                key_ids=False,
                serial=200 + i,
                extra_extensions=[(constraints, True)],
            )
        )
    leaf = hostile_pki.leaf(
        first, cn=HOST, dns=[HOST, *(f"n{i}.example.net" for i in range(39))], key_ids=False
    )
    sent = tuple(c.model for c in (leaf, *reversed(cas)))
    assert len(sent) == 64
    snapshot = TrustSnapshot.build(
        generation=1, settings=Settings(), trust=trust_entries([root.cert]), pins=()
    )
    cache = pathvalidation.signature_cache
    saved = cache.maxsize
    cache.maxsize = 0
    try:
        verdict = decide(sent, PEER, now, snapshot)
        assert not verdict.accepted, verdict
        times = []
        for _ in range(HOSTILE_ROUNDS):
            begin = time.perf_counter_ns()
            decide(sent, PEER, now, snapshot)
            times.append((time.perf_counter_ns() - begin) / 1e6)
    finally:
        cache.maxsize = saved
    print(f"  hostile chain: reasons {', '.join(r.value for r in verdict.reasons)}")
    return statistics.median(times)


def main() -> int:
    print("bench_decision: building certificates ...", flush=True)
    fillers = filler_anchors(ANCHORS - 1)
    filler_entries = trust_entries(fillers)
    pins = random_pins(PINS)
    failures: list[str] = []
    spec: KeySpec
    for spec in ("rsa2048", "ec"):
        samples = measure(spec, fillers, filler_entries, pins)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        ratio = paired_ratio(samples["chain"], samples["openssl"])
        print(
            f"  {spec}: pinned leaf ({PINS} pins, {ANCHORS} anchors) "
            f"{medians['pinned']:.1f} µs [target < {PINNED_TARGET_US:.0f}]"
        )
        print(
            f"  {spec}: 3-certificate chain, {ANCHORS} anchors, signature cache off "
            f"{medians['chain']:.1f} µs [target < {CHAIN_TARGET_US:.0f}]; "
            f"OpenSSL {medians['openssl']:.1f} µs; ratio {ratio:.2f} (median of paired rounds; "
            f"of medians {medians['chain'] / medians['openssl']:.2f}) [target <= {RATIO_TARGET}]"
        )
        pyca_ratio = paired_ratio(samples["chain"], samples["cryptography"])
        print(
            f"  {spec}: cryptography's verifier {medians['cryptography']:.1f} µs; ratio "
            f"{pyca_ratio:.2f} (median of paired rounds; of medians "
            f"{medians['chain'] / medians['cryptography']:.2f}) "
            f"[target <= {CRYPTOGRAPHY_RATIO_TARGET}]"
        )
        print(
            f"  {spec}: same chain, signature cache on (default) {medians['chain-cached']:.1f} µs"
        )
        if pyca_ratio > CRYPTOGRAPHY_RATIO_TARGET:
            failures.append(f"{spec} cryptography ratio")
        if medians["pinned"] >= PINNED_TARGET_US:
            failures.append(f"{spec} pinned")
        if medians["chain"] >= CHAIN_TARGET_US:
            failures.append(f"{spec} chain")
        if ratio > RATIO_TARGET:
            failures.append(f"{spec} ratio")
    hostile_ms = hostile()
    print(
        f"  hostile chain (64 certificates, 64 name-constraint subtrees per CA, 40 names), "
        f"signature cache off: {hostile_ms:.1f} ms [target < {HOSTILE_TARGET_MS:.0f}]"
    )
    if hostile_ms >= HOSTILE_TARGET_MS:
        failures.append("hostile chain")
    if failures:
        print(f"bench_decision: targets missed: {', '.join(failures)}")
        return 1
    print("bench_decision: all targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
