"""CPU the relay process spends per transaction, with the fast path and without it.

Path under test: SIPp UAC (UDP) → sipsgate → TLS → kamailio answering every request
statelessly (``sl_send_reply``), OPTIONS transactions at a fixed offered rate. The
responder is cheap, so what is measured is the relay's own work: its CPU (user +
system, from ``/proc/<pid>/stat``) over the run divided by the transactions SIPp saw
answered.

Two relay processes run side by side in interleaved rounds: one as shipped, one with
the fast path turned off (every message parsed into a full ``Request`` /
``Response``), so the figure of each round is compared on the same machine state.
Printed: µs per transaction of each (median and range over ``BENCH_CPU_ROUNDS``
rounds) and their ratio. Target: the fast path at most 0.8x the full path's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.benchmarks.relay_child import child_arguments, relay_setup
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN
from tests.tls_servers import KamailioServer, read_line_matching, stop_process

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
RATE = int(os.environ.get("BENCH_CPU_RATE", "2000"))
CALLS = int(os.environ.get("BENCH_CPU_CALLS", "20000"))
ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "3"))
TARGET = 0.8
WAIT = 120.0


def child_main(argv: list[str]) -> None:
    """Run the relay (trusting ``root``) until SIGTERM; print its UDP address."""
    parser = child_arguments()
    parser.add_argument("--full", action="store_true", help="turn the fast path off")
    args = parser.parse_args(argv)

    from gateway.heap import settle_heap
    from gateway.relay.fastpath import FastPath
    from gateway.relay.service import RelaySettings, SipRelay

    if args.full:
        FastPath._fast_request = lambda *a: False  # type: ignore[method-assign]
        FastPath._fast_response = lambda *a: False  # type: ignore[method-assign]
    env, sip = relay_setup(args, source_inflight=100_000)

    async def main() -> None:
        relay = SipRelay(sip, env.connector, settings=RelaySettings(max_pending=100_000))
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(relay.serve())
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        await relay.ready.wait()
        await asyncio.wait_for(relay.wait_for_flow(1), 30)
        settle_heap()  # what `sipsgate run` does once every part has started
        host, port = relay.udp_addresses[0]
        print(f"RELAY-READY {host}:{port}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        env.store.close()

    asyncio.run(main())


class Relay:
    """A relay process (fast path on or off), stopped by its PID on exit."""

    def __init__(self, root: Issued, upstream_port: int, *, full: bool) -> None:
        self.root = root
        self.upstream_port = upstream_port
        self.full = full
        self.port = 0
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory()
        self._drain: threading.Thread | None = None

    def __enter__(self) -> Relay:
        d = Path(self._tmp.name)
        (d / "root.der").write_bytes(self.root.der)
        args = [
            sys.executable, "-m", "tests.benchmarks.bench_relay_cpu", "--child",
            "--root", str(d / "root.der"), "--store", str(d / "store.db"),
            "--upstream-port", str(self.upstream_port),
        ]  # fmt: skip
        if self.full:
            args.append("--full")
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            bufsize=0, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        line = read_line_matching(self._proc, b"RELAY-READY", timeout=60)
        self.port = int(line.rsplit(b":", 1)[1])
        self.pid = self._proc.pid
        self._drain = threading.Thread(target=_drain, args=(self._proc,), daemon=True)
        self._drain.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        stop_process(self._proc, self._drain)
        self._tmp.cleanup()


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if b"error" in line.lower():
            sys.stderr.write(line.decode(errors="replace"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered(port: int) -> int:
    """Run SIPp's OPTIONS load through the relay on ``port``; the transactions answered."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIOS / "options_uac.xml"),
             "-i", "127.0.0.1", "-t", "u1", "-r", str(RATE), "-m", str(CALLS), "-nostdin",
             "-key", "domain", DOMAIN, "-recv_timeout", "5000", "-buff_size", "4194304",
             "-trace_stat", "-stf", str(Path(tmp) / "stat.csv")],
            cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT, check=False,
        )  # fmt: skip
        rows = (Path(tmp) / "stat.csv").read_text().splitlines()
        if len(rows) < 2:
            raise RuntimeError(f"SIPp reported nothing: {proc.stdout[-2000:]!r}")
        header, last = rows[0].split(";"), rows[-1].split(";")
        return int(last[header.index("SuccessfulCall(C)")])


def cpu_per_transaction(relay: Relay) -> float:
    """µs of the relay's CPU per answered transaction over one SIPp run."""
    before = cpu_seconds(relay.pid)
    done = answered(relay.port)
    spent = cpu_seconds(relay.pid) - before
    if done < CALLS:
        print(f"  ({CALLS - done} of {CALLS} transactions unanswered)", flush=True)
    return spent / max(done, 1) * 1e6


def main() -> int:
    if "--child" in sys.argv:
        child_main([a for a in sys.argv[1:] if a != "--child"])
        return 0
    print(
        f"bench_relay_cpu: SIPp (UDP) → relay → TLS → kamailio sl_send_reply, OPTIONS "
        f"at {RATE}/s, {CALLS} per run, {ROUNDS} rounds"
    )
    pki = CertFactory()
    root = pki.ca("sipsgate bench root")
    leaf = pki.leaf(root, cn=DOMAIN, dns=(DOMAIN,))
    fast: list[float] = []
    full: list[float] = []
    with (
        KamailioServer(leaf) as upstream,
        Relay(root, upstream.port, full=False) as ours,
        Relay(root, upstream.port, full=True) as baseline,
    ):
        answered(ours.port)  # warm-up: caches, the heap, kamailio's TLS session
        answered(baseline.port)
        for _ in range(ROUNDS):
            fast.append(cpu_per_transaction(ours))
            full.append(cpu_per_transaction(baseline))
    ratio = statistics.median(fast) / statistics.median(full)
    for label, figures in (("fast path", fast), ("full path", full)):
        print(
            f"  {label}: {statistics.median(figures):.1f} µs CPU per transaction "
            f"(range {min(figures):.1f} to {max(figures):.1f})"
        )
    ok = ratio <= TARGET
    print(f"  ratio fast/full: {ratio:.2f} (target ≤ {TARGET}) {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
