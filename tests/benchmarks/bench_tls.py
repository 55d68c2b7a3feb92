"""The TLS connector against plain asyncio ``ssl`` on the same loopback server.

Full handshakes per second (RSA-2048 and ECDSA P-256 leaves; TLS 1.3 and 1.2), bulk
throughput with 64 KiB writes, and RSS growth per idle connection with 1,000 open.
The baseline is stdlib ``ssl`` with CERT_REQUIRED and host name checking; the
connector runs the real trust decision against an in-memory snapshot that trusts the
test root. The server runs in a child process so both clients get the same peer.
Targets: handshakes at least 0.9x the baseline, throughput at least 0.8x.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from certstore.decision import decide
from certstore.model import Certificate, Peer, TrustEntry, TrustKind, TrustSource, Verdict
from certstore.snapshot import TrustSnapshot
from certstore.x509 import parse_der
from gateway.tls import TlsConnector, TlsSettings, TlsTarget
from gateway.tls.trust import StoreTrustPolicy
from tests.pki import CertFactory, Issued, make_key
from tests.tls_servers import read_line_matching, stop_process

HOST = "bench.test"
HANDSHAKES = int(os.environ.get("BENCH_HANDSHAKES", "400"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BULK_BYTES = int(os.environ.get("BENCH_BULK_MIB", "64")) * 1024 * 1024
WRITE_SIZE = 64 * 1024
IDLE_CONNECTIONS = int(os.environ.get("BENCH_IDLE", "1000"))
WAIT = 60.0

# --- the server (child process) -------------------------------------------------------

# A stdlib ssl asyncio server: reads an 8-byte length, swallows that many bytes and
# answers one byte; connections that send nothing are just handshakes. It prints its
# port and runs until it is terminated.
SERVER_CODE = """
import asyncio, ssl, struct, sys

class Sink(asyncio.Protocol):
    def __init__(self):
        self.expected = None
        self.buffer = b""
        self.seen = 0
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        if self.expected is None:
            self.buffer += data
            if len(self.buffer) < 8:
                return
            (self.expected,) = struct.unpack("!Q", self.buffer[:8])
            self.seen = len(self.buffer) - 8
            self.buffer = b""
        else:
            self.seen += len(data)
        if self.seen >= self.expected:
            self.transport.write(b"!")
            self.expected = None
            self.seen = 0

async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    if sys.argv[3] == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", 0, ssl=ctx, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class Server:
    """The benchmark's TLS server in a child process, stopped by its PID."""

    def __init__(self, leaf: Issued, *, tls12: bool) -> None:
        self.leaf = leaf
        self.tls12 = tls12
        self.port = 0

    def __enter__(self) -> Server:
        self._tmp = tempfile.TemporaryDirectory()
        cert, key = self.leaf.write(Path(self._tmp.name), "server")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(cert), str(key),
             "1.2" if self.tls12 else "1.3"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        line = read_line_matching(self._proc, b"", timeout=WAIT)
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self._proc)
        self._tmp.cleanup()


# --- the two clients ------------------------------------------------------------------


class MemoryStore:
    """A store that serves one fixed snapshot (the benchmark never records)."""

    def __init__(self, anchors: Sequence[Certificate]) -> None:
        now = datetime.now(UTC)
        entries = [
            TrustEntry(certificate=c, kind=TrustKind.CA, source=TrustSource.UPLOADED, added_at=now)
            for c in anchors
        ]
        self._snapshot = TrustSnapshot.build(
            generation=1, settings=_settings(), trust=entries, pins=()
        )

    def snapshot(self) -> TrustSnapshot:
        return self._snapshot

    def record_handshake(
        self,
        verdict: Verdict,
        chain: Sequence[Certificate],
        peer: Peer,
        now: datetime,
        *,
        actor: object = None,
        address: object = None,
    ) -> None:
        raise AssertionError(f"the benchmark chain was not accepted: {verdict}")


def _settings() -> object:
    from certstore.model import Settings

    return Settings()


@dataclass
class Clients:
    root: Issued
    tls12: bool

    def __post_init__(self) -> None:
        self.stdlib_ctx = ssl.create_default_context(cadata=self.root.pem.decode())
        if self.tls12:
            self.stdlib_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        store = MemoryStore([parse_der(self.root.der)])
        policy = StoreTrustPolicy(store, decide=decide)
        settings = TlsSettings(max_version="1.2" if self.tls12 else "1.3")
        self.connector = TlsConnector(policy, settings=settings)

    async def stdlib_open(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", port, ssl=self.stdlib_ctx, server_hostname=HOST
        )

    async def connector_open(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target = TlsTarget.https(HOST, port, connect_host="127.0.0.1")
        return await self.connector.open_connection(target)


Opener = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def one_handshake(open_: Opener, port: int) -> float:
    started = time.perf_counter()
    _, writer = await open_(port)
    elapsed = time.perf_counter() - started
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), WAIT)
    return elapsed


async def handshake_rates(clients: Clients, port: int, count: int) -> tuple[float, float]:
    """Handshakes/s (1 / median time to an open, verified connection) for both clients.

    The two alternate connection by connection, so load from elsewhere on the machine
    hits both alike.
    """
    base: list[float] = []
    ours: list[float] = []
    for _ in range(count):
        base.append(await one_handshake(clients.stdlib_open, port))
        ours.append(await one_handshake(clients.connector_open, port))
    return 1 / statistics.median(base), 1 / statistics.median(ours)


async def throughput(open_: Opener, port: int, total: int) -> float:
    reader, writer = await open_(port)
    chunk = b"\0" * WRITE_SIZE
    started = time.perf_counter()
    writer.write(struct.pack("!Q", total))
    sent = 0
    while sent < total:
        writer.write(chunk)
        sent += len(chunk)
        await writer.drain()
    ack = await asyncio.wait_for(reader.readexactly(1), WAIT)
    elapsed = time.perf_counter() - started
    assert ack == b"!"
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), WAIT)
    return total / elapsed / 1e6


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def rss_per_connection(open_: Opener, port: int, count: int) -> float:
    # Warm up allocators and caches so the first connections do not pay for them.
    _, w = await open_(port)
    w.close()
    await w.wait_closed()
    before = rss_bytes()
    writers = []
    try:
        for _ in range(count):
            _, writer = await open_(port)
            writers.append(writer)
        after = rss_bytes()
    finally:
        for writer in writers:
            writer.close()
        await asyncio.wait_for(
            asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True), WAIT
        )
    return (after - before) / count


def rss_in_child(kind: str, root: Issued, port: int, count: int) -> float:
    """RSS growth per connection, measured in a fresh interpreter for each client."""
    with tempfile.TemporaryDirectory() as tmp:
        root_pem = Path(tmp) / "root.pem"
        root_pem.write_bytes(root.pem)
        out = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.bench_tls", "rss", kind, str(root_pem),
             str(port), str(count)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return float(out.stdout.decode().strip().splitlines()[-1])


def _rss_child(kind: str, root_pem: str, port: int, count: int) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(root_pem).read_bytes())
    root = Issued(cert, make_key("ec"))  # the key is never used by a client
    clients = Clients(root, tls12=False)
    open_ = clients.stdlib_open if kind == "stdlib" else clients.connector_open
    print(asyncio.run(rss_per_connection(open_, port, count)))


@dataclass
class Row:
    what: str
    unit: str
    baseline: float
    connector: float
    target: float | None  # minimum ratio connector/baseline; None: lower is better

    @property
    def ratio(self) -> float:
        return self.connector / self.baseline if self.baseline else float("nan")


async def measure() -> list[Row]:
    factory = CertFactory()
    root = factory.ca("bench root")
    rows: list[Row] = []
    leaves = {
        "ECDSA P-256": factory.leaf(root, cn=HOST, dns=(HOST,), key="ec"),
        "RSA-2048": factory.leaf(root, cn=HOST, dns=(HOST,), key="rsa2048"),
    }
    for version, tls12 in (("TLS 1.3", False), ("TLS 1.2", True)):
        clients = Clients(root, tls12)
        for key_name, leaf in leaves.items():
            with Server(leaf, tls12=tls12) as server:
                await one_handshake(clients.stdlib_open, server.port)  # warm-up
                await one_handshake(clients.connector_open, server.port)
                base_rate, our_rate = await handshake_rates(clients, server.port, HANDSHAKES)
                rows.append(
                    Row(f"handshakes/s {version} {key_name}", "1/s", base_rate, our_rate, 0.9)
                )
    clients = Clients(root, False)
    with Server(leaves["ECDSA P-256"], tls12=False) as server:
        base = []
        ours = []
        for _ in range(ROUNDS):
            base.append(await throughput(clients.stdlib_open, server.port, BULK_BYTES))
            ours.append(await throughput(clients.connector_open, server.port, BULK_BYTES))
        rows.append(Row("bulk 64 KiB writes TLS 1.3", "MB/s", max(base), max(ours), 0.8))
        base_rss = rss_in_child("stdlib", root, server.port, IDLE_CONNECTIONS)
        our_rss = rss_in_child("connector", root, server.port, IDLE_CONNECTIONS)
        rows.append(
            Row(
                f"RSS growth per idle connection ({IDLE_CONNECTIONS} open)",
                "KiB",
                base_rss / 1024,
                our_rss / 1024,
                None,
            )
        )
    return rows


def print_table(rows: Sequence[Row]) -> bool:
    print(f"{'measure':44} {'baseline':>10} {'connector':>10} {'ratio':>7}  target")
    ok = True
    for row in rows:
        if row.target is None:
            verdict = "(lower is better)"
        else:
            met = row.ratio >= row.target
            ok = ok and met
            verdict = f">= {row.target:.1f}x {'met' if met else 'MISSED'}"
        print(
            f"{row.what:44} {row.baseline:10.1f} {row.connector:10.1f} "
            f"{row.ratio:6.2f}x  {verdict}   [{row.unit}]"
        )
    return ok


def main(argv: Sequence[str] = ()) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if argv and argv[0] == "rss":
        kind, root_pem, port, count = argv[1:5]
        _rss_child(kind, root_pem, int(port), int(count))
        return 0
    print(
        f"python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}; {HANDSHAKES} handshakes x "
        f"{ROUNDS} rounds, {BULK_BYTES // 2**20} MiB bulk, {IDLE_CONNECTIONS} idle connections",
        flush=True,
    )
    rows = asyncio.run(measure())
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
