"""Benchmark of the admin endpoint with 10,000 trust entries and 1,000 rejected chains.

Measured over real HTTPS on 127.0.0.1 against a real SQLite store:

- ``GET /api/v1/trust`` (the whole list, and one page of 50), median latency;
- the Trust list page (``GET /trust``, paginated at 50 rows), median latency;
- ``GET /api/v1/rejected``, median latency;
- the Status page (``GET /``, its expiry timeline drawn) and ``GET /api/v1/status`` with
  1,000 base stations seen, and a rejected chain's page with its chain drawn,
  and ``RelayStatus.view()`` alone: the part that runs on the event loop the relay
  shares with the admin endpoint;
- the time from an API change (``POST /api/v1/decisions``) returning to the change being
  visible in ``store.snapshot()`` of another store object on the same file (as the
  gateway's connector sees it).

Targets: each median under 100 ms. ``main()`` returns 1 when a target is missed.
Run: ``python -m tests.benchmarks admin`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from certstore.model import (
    Actor,
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
from gateway.relay.status import MAX_STATIONS, RelayStatus
from tests.admin_support import login, start_admin
from tests.benchmarks.bench_snapshot import make_certificates

TARGET_MS = 100.0
ACTOR = Actor(name="bench", interface="cli")


async def median_ms(action: Callable[[], Awaitable[object]], rounds: int) -> float:
    await action()  # warm caches (snapshot, templates)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def fill(store: SqliteStore, trust: int, rejected: int) -> None:
    store.add_trust(
        make_certificates(trust, "bench-trust"), source=TrustSource.UPLOADED, actor=ACTOR
    )
    now = datetime.now(UTC)
    for index, cert in enumerate(make_certificates(rejected, "bench-rejected")):
        verdict = Verdict(
            verdict=VerdictKind.REJECT,
            rule=Rule.UNTRUSTED,
            findings=(Finding(reason=Reason.SELF_SIGNED, message="self-signed"),),
            leaf_fingerprint=cert.fingerprint,
        )
        peer = Peer(host=f"peer{index}.example", port=5061, transport=Transport.SIPS)
        store.record_handshake(verdict, [cert], peer, now - timedelta(seconds=index))


def busy_relay(stations: int) -> RelayStatus:
    """A relay status as 1,000 registered base stations leave it."""
    status = RelayStatus(upstream="sips:provider.example")
    now = time.time()
    for i in range(stations):
        source = f"10.1.{i // 250}.{i % 250 + 1}:5060"
        status.answered(now, source=source, method="REGISTER", status=200, local=False,
                        transport="udp")  # fmt: skip
        status.registered(now, source=source, transport="udp",
                          aor=f"sip:bs{i}@provider.example", expires=3600)  # fmt: skip
    return status


def view_ms(status: RelayStatus, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        status.view(time.time())
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def run(trust: int, rejected: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        store = SqliteStore(data_dir / "sipsgate.db", rejected_limit=max(rejected, 1))
        watcher = SqliteStore(data_dir / "sipsgate.db", rejected_limit=max(rejected, 1))
        harness = None
        try:
            await asyncio.to_thread(fill, store, trust, rejected)
            relay_status = busy_relay(MAX_STATIONS)
            chain_id = store.list_rejected()[0].id
            harness = await start_admin(store, data_dir, relay_status=relay_status)
            api = harness.client(basic=True)
            browser = harness.client()
            await login(browser)

            async def get(client: aiohttp.ClientSession, path: str) -> None:
                async with client.get(path) as response:
                    assert response.status == 200, response.status
                    await response.read()

            results = {
                "GET /api/v1/trust (all)": await median_ms(
                    lambda: get(api, "/api/v1/trust"), rounds
                ),
                "GET /api/v1/trust?limit=50": await median_ms(
                    lambda: get(api, "/api/v1/trust?limit=50"), rounds
                ),
                "GET /trust (page)": await median_ms(lambda: get(browser, "/trust"), rounds),
                "GET /api/v1/rejected": await median_ms(
                    lambda: get(api, "/api/v1/rejected"), rounds
                ),
                "GET / (status page)": await median_ms(lambda: get(browser, "/"), rounds),
                "GET /api/v1/status": await median_ms(lambda: get(api, "/api/v1/status"), rounds),
                "GET /rejected/ID (chain drawn)": await median_ms(
                    lambda: get(browser, f"/rejected/{chain_id}"), rounds
                ),
                "RelayStatus.view() on the loop": view_ms(relay_status, rounds),
            }
            visibility = []
            targets = make_certificates(rounds, "bench-pin")
            watcher.snapshot()
            for cert in targets:
                body = {"decision": "accept", "fingerprint": cert.fingerprint}
                async with api.post("/api/v1/decisions", json=body) as response:
                    assert response.status == 201
                started = time.perf_counter()
                while not watcher.snapshot().pins_by_fingerprint.get(cert.fingerprint):
                    if time.perf_counter() - started > 5:
                        raise AssertionError("an API change did not reach snapshot() in 5 s")
                visibility.append((time.perf_counter() - started) * 1000)
            results["API change -> snapshot()"] = statistics.median(visibility)
            return results
        finally:
            if harness is not None:
                await harness.close()
            watcher.close()
            store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_admin")
    parser.add_argument("--trust", type=int, default=10_000)
    parser.add_argument("--rejected", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv or [])
    results = asyncio.run(run(args.trust, args.rejected, args.rounds))
    missed = 0
    print(
        f"admin endpoint: {args.trust} trust entries, {args.rejected} rejected chains, "
        f"{MAX_STATIONS} base stations"
    )
    for name, value in results.items():
        ok = value < TARGET_MS
        missed += not ok
        print(
            f"  {name:<32} median {value:8.2f} ms  (target < {TARGET_MS:.0f} ms) "
            f"{'ok' if ok else 'MISSED'}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
