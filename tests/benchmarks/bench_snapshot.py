"""Benchmark of the store's hot paths with a 10,000-entry trust list.

- snapshot() when nothing changed (every handshake pays this);
- snapshot() rebuild after one change made through the same store object, and after
  one made through another store object on the same file (the CLI while the gateway
  runs); target: under 50 ms;
- record_handshake() of a new rejected chain and of a repeat (fsync included).

Run: ``python -m tests.benchmarks.bench_snapshot [--entries N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from certstore.model import (
    Actor,
    Certificate,
    Finding,
    Peer,
    Reason,
    Rule,
    Transport,
    TrustSource,
    Verdict,
    VerdictKind,
)
from certstore.sqlite import SqliteStore
from tests.pki import CertFactory, make_key

ACTOR = Actor(name="bench", interface="cli")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PKI = CertFactory(now=NOW, organization=None)
VERDICT = Verdict(
    verdict=VerdictKind.REJECT,
    rule=Rule.UNTRUSTED,
    findings=(Finding(reason=Reason.UNKNOWN_ISSUER, message="Unknown issuer."),),
    leaf_fingerprint=None,
)
PEER = Peer(host="sip.example.net", port=5061, transport=Transport.SIPS)


def make_certificates(count: int, prefix: str) -> list[Certificate]:
    """``count`` distinct self-signed certificates sharing one EC key (fast to make)."""
    key = make_key("ec")
    return [
        PKI.issue(f"{prefix}-{n}.example", key=key, ca=True, key_ids=False, serial=n + 1).model
        for n in range(count)
    ]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def report(name: str, samples_ms: list[float]) -> float:
    median = statistics.median(samples_ms)
    worst = max(samples_ms)
    print(f"{name:<58} median {median:8.3f} ms   max {worst:8.3f} ms   (n={len(samples_ms)})")
    return median


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    trust = make_certificates(args.entries, "anchor")
    extra = make_certificates(2 * args.rounds, "extra")
    leaves = make_certificates(args.rounds, "rejected")
    print(
        f"made {len(trust) + len(extra) + len(leaves)} certificates in "
        f"{time.perf_counter() - started:.1f} s"
    )

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data" / "store.db"
        with SqliteStore(path) as gateway, SqliteStore(path) as cli:
            load_ms = timed(
                lambda: gateway.add_trust(trust, source=TrustSource.UPLOADED, actor=ACTOR)
            )
            print(f"added {len(trust)} trust entries in one transaction: {load_ms:.0f} ms")
            cold_ms = timed(gateway.snapshot)
            print(f"first snapshot ({len(gateway.snapshot().trust)} entries): {cold_ms:.0f} ms")

            unchanged = []
            for _ in range(2000):
                unchanged.append(timed(gateway.snapshot))
            results["snapshot_unchanged_ms"] = report("snapshot(), nothing changed", unchanged)

            same = []
            for cert in extra[: args.rounds]:
                gateway.add_trust([cert], source=TrustSource.UPLOADED, actor=ACTOR)
                same.append(timed(gateway.snapshot))
            results["rebuild_same_store_ms"] = report(
                "snapshot() rebuild after one add, same store object", same
            )

            other = []
            cli.snapshot()
            for cert in extra[args.rounds :]:
                cli.add_trust([cert], source=TrustSource.UPLOADED, actor=ACTOR)
                other.append(timed(gateway.snapshot))
            results["rebuild_other_store_ms"] = report(
                "snapshot() rebuild after one add by another store object", other
            )

            removed = []
            for cert in extra[: args.rounds]:
                cli.remove_trust(cert.fingerprint, actor=ACTOR)
                removed.append(timed(gateway.snapshot))
            results["rebuild_after_remove_ms"] = report(
                "snapshot() rebuild after one remove by another store object", removed
            )

            new_entries = []
            for n, leaf in enumerate(leaves):
                record = partial(
                    gateway.record_handshake, VERDICT, (leaf,), PEER, NOW + timedelta(seconds=n)
                )
                new_entries.append(timed(record))
            results["record_new_ms"] = report("record_handshake(), new rejected chain", new_entries)
            repeats = []
            for n in range(args.rounds):
                record = partial(
                    gateway.record_handshake,
                    VERDICT,
                    (leaves[0],),
                    PEER,
                    NOW + timedelta(minutes=n),
                )
                repeats.append(timed(record))
            results["record_repeat_ms"] = report("record_handshake(), repeat of a chain", repeats)
    target = 50.0
    worst_rebuild = max(results[k] for k in results if k.startswith("rebuild"))
    verdict = "meets" if worst_rebuild < target else "MISSES"
    print(f"rebuild median {worst_rebuild:.1f} ms {verdict} the {target:.0f} ms target")
    return results


if __name__ == "__main__":
    main()
