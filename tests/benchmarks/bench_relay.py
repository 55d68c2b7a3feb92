"""The SIP relay against kamailio relaying the same UDP → TLS path, in one run.

Path under test: SIPp UAC (UDP) → sipsgate → TLS → kamailio (upstream) → SIPp UAS
(UDP), OPTIONS transactions. Baseline: the same, with a second kamailio doing a
stateful ``t_relay`` from UDP to TLS in sipsgate's place. Both run on this machine's
two cores beside the two SIPps and the upstream kamailio.

Figures:

- transactions/s at zero failed transactions, closed loop (at most ``BENCH_WINDOW``
  transactions in flight), after a warm-up of ``BENCH_WARMUP`` s (kamailio's
  stateful relay needs about 7 s to settle); target: sipsgate at least 0.75x kamailio;
- p99 response time at 4,000 transactions/s through sipsgate, and through kamailio in
  its place; "added" is a relay's p99 minus the direct path's (straight to the upstream
  kamailio over UDP), measured just before it; the median of ``BENCH_ROUNDS`` rounds
  (3); target for sipsgate: < 5 ms. Beside it, each relay's CPU per transaction at that
  rate (kamailio's summed over its processes);
- a rate sweep (``BENCH_SWEEP``, ascending, each relay stopping at its first miss): the
  highest offered rate at which a relay's p99 added stays under 5 ms with zero failed
  transactions. At each rate the direct path, sipsgate and kamailio run one after
  another, so that all three meet the same conditions on this shared machine (on a
  2-core box where the two SIPps and the upstream kamailio run too, what a relay adds at
  high rates is mostly waiting for a core, and that changes from minute to minute);
- 1,000 base stations registered through sipsgate (one UDP socket each, digest
  auth), then idle with the RFC 5626 keep-alive running: sipsgate's RSS and CPU.

SIPp reports response times in steps of 4 ms here, so "p99 added < 5 ms" holds when a
relay's p99 is at most one step above the direct path's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, PASSWORD, KamailioRegistrar
from tests.tls_servers import free_port, read_line_matching, stop_process

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
WARMUP = float(os.environ.get("BENCH_WARMUP", "7"))
MEASURE = float(os.environ.get("BENCH_MEASURE", "10"))
WINDOW = int(os.environ.get("BENCH_WINDOW", "200"))
LATENCY_RATE = int(os.environ.get("BENCH_LATENCY_RATE", "4000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "8"))
REGISTRATIONS = int(os.environ.get("BENCH_REGISTRATIONS", "1000"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "10"))
SWEEP = tuple(
    int(r) for r in os.environ.get("BENCH_SWEEP", "2000,3000,3500,4000,4500,5000").split(",") if r
)
#: Rounds at LATENCY_RATE (direct, sipsgate, kamailio each time); the median counts.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SHOW_PID = os.environ.get("BENCH_SHOW_PID", "") not in ("", "0")  # for attaching a profiler
#: A file the relay process appends one line a second to: event-loop lag, the timer
#: heap, the work per timer firing, the socket backlog (for finding latency, off by default).
PROBE = os.environ.get("BENCH_PROBE", "")
#: BENCH_NO_SETTLE=1 leaves out the garbage-collection policy of `sipsgate run` (to compare).
NO_SETTLE = os.environ.get("BENCH_NO_SETTLE", "") not in ("", "0")
TARGET_RATIO = 0.75
TARGET_P99_MS = 5.0
WAIT = 120.0

EDGE_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children={children}
tcp_children={children}
enable_tls=yes
auto_aliases=no
listen=udp:127.0.0.1:{udp_port}
listen=tls:127.0.0.1:{tls_port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "tls.so"
loadmodule "xlog.so"
loadmodule "textops.so"
modparam("tls", "config", "{tls_cfg}")

event_route[core:worker-one-init] {{
    xlog("L_NOTICE", "sipsgate-bench: kamailio ready\\n");
}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("ACK") && !t_check_trans()) {{
        exit;
    }}
    $du = "sip:127.0.0.1:{upstream_port};transport=tls";
    t_relay();
}}
"""

EDGE_TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = {key}
certificate = {cert}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""

# --- sipsgate in its own process ------------------------------------------------------


def child_main(argv: list[str]) -> None:
    """Run sipsgate's relay (trusting ``root``) until SIGTERM; print the UDP address."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--keepalive", default="30s")
    args = parser.parse_args(argv)

    from certstore.model import TrustSource
    from certstore.x509 import parse_der
    from gateway.config import Duration, SipSection
    from gateway.heap import settle_heap
    from gateway.log import configure_logging
    from gateway.relay.service import RelaySettings, SipRelay
    from tests.integration.trust_env import ADMIN, make_env

    configure_logging("warning", "json")
    env = make_env(Path(args.store))
    root_der = Path(args.root).read_bytes()
    env.store.add_trust([parse_der(root_der)], source=TrustSource.UPLOADED, actor=ADMIN)
    sip = SipSection(
        listen_udp=("127.0.0.1:0",),
        listen_tcp=(),
        upstream=f"sips:{DOMAIN}",
        upstream_address=f"127.0.0.1:{args.upstream_port}",
        keepalive=Duration.parse(args.keepalive),
        source_rate=1_000_000,
        source_burst=1_000_000,
        source_inflight=100_000,
    )

    async def main() -> None:
        relay = SipRelay(sip, env.connector, settings=RelaySettings(max_pending=100_000))
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(relay.serve())
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        await relay.ready.wait()
        await asyncio.wait_for(relay.wait_for_flow(1), 30)
        if not NO_SETTLE:
            settle_heap()  # what `sipsgate run` does once every part has started
        host, port = relay.udp_addresses[0]
        probes = [asyncio.create_task(_probe(relay, Path(PROBE)))] if PROBE else []
        print(f"RELAY-READY {host}:{port}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for probe in probes:
            probe.cancel()
        env.store.close()

    asyncio.run(main())


async def _probe(relay: Any, path: Path) -> None:
    """Sample the relay once a second: loop lag (a 1 ms sleep that overruns), timers."""
    import socket as socket_mod

    loop = asyncio.get_running_loop()
    core = relay.core
    flow = relay._flow
    sock = flow.transport.get_extra_info("socket") if flow and flow.transport else None
    nodelay = sock.getsockopt(socket_mod.IPPROTO_TCP, socket_mod.TCP_NODELAY) if sock else None
    firings: list[tuple[float, int]] = []
    original_timer = relay._on_timer

    def timed_timer() -> None:
        started = time.perf_counter()
        before = len(core.table._heap)
        original_timer()
        firings.append((time.perf_counter() - started, before - len(core.table._heap)))

    relay._on_timer = timed_timer
    durations: list[float] = []
    import gc

    gcs: list[str] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif info["generation"] == 2:
            gcs.append(f"{(time.perf_counter() - gc_started[0]) * 1e3:.0f}")

    gc.callbacks.append(on_gc)
    relay.observers.append(lambda done: durations.append(done.duration))
    with path.open("a") as fh:
        fh.write(f"upstream TCP_NODELAY={nodelay}\n")
        lags: list[float] = []
        next_report = loop.time() + 1.0
        cpu0 = time.process_time()
        while True:
            expected = loop.time() + 0.001
            await asyncio.sleep(0.001)
            lags.append(loop.time() - expected)
            if loop.time() >= next_report:
                next_report += 1.0
                lags.sort()
                f_times = sorted(t for t, _ in firings)
                fh.write(
                    f"t={loop.time():.1f} cpu={time.process_time() - cpu0:.2f}s "
                    f"lag p50={lags[len(lags) // 2] * 1e3:.2f} "
                    f"p99={lags[int(len(lags) * 0.99)] * 1e3:.2f} max={lags[-1] * 1e3:.2f} ms "
                    f"samples={len(lags)} table={len(core.table)} heap={len(core.table._heap)} "
                    f"loop_sched={len(loop._scheduled)} firings={len(firings)} "  # type: ignore[attr-defined]
                    f"fire_max={(f_times[-1] if f_times else 0) * 1e3:.2f} ms "
                    f"fire_sum={sum(f_times) * 1e3:.1f} ms "
                    f"popped_max={max((n for _, n in firings), default=0)} "
                    + _upstream_rtt(durations)
                    + f" gc2_ms={','.join(gcs)}"
                    + "\n"
                )
                fh.flush()
                cpu0 = time.process_time()
                lags.clear()
                firings.clear()
                durations.clear()
                gcs.clear()


def _upstream_rtt(durations: list[float]) -> str:
    """Request in → final response back from upstream, as sipsgate's core saw it."""
    if not durations:
        return "upstream_rtt -"
    d = sorted(durations)
    return f"upstream_rtt p50={d[len(d) // 2] * 1e3:.2f} p99={d[int(len(d) * 0.99)] * 1e3:.2f} ms"


class _Started:
    """A process started for the benchmark (in ``_proc``), its output drained by
    ``_drain``, its files in ``_tmp``; stopped by PID on exit."""

    _proc: subprocess.Popen[bytes] | None
    _drain: threading.Thread | None
    _tmp: tempfile.TemporaryDirectory[str]

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        stop_process(self._proc, self._drain)
        self._tmp.cleanup()


class RelayProcess(_Started):
    def __init__(self, root: Issued, upstream_port: int, *, keepalive: str = "30s") -> None:
        self.root = root
        self.upstream_port = upstream_port
        self.keepalive = keepalive
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory()
        self._drain: threading.Thread | None = None

    def __enter__(self) -> RelayProcess:
        d = Path(self._tmp.name)
        (d / "root.der").write_bytes(self.root.der)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.bench_relay", "--child",
             "--root", str(d / "root.der"), "--store", str(d / "store.db"),
             "--upstream-port", str(self.upstream_port), "--keepalive", self.keepalive],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            bufsize=0, env=env,
        )  # fmt: skip
        line = read_line_matching(self._proc, b"RELAY-READY", timeout=60)
        self.port = int(line.rsplit(b":", 1)[1])
        if SHOW_PID:
            print(f"  (sipsgate relay running as PID {self._proc.pid})", flush=True)
        self._drain = threading.Thread(target=_drain, args=(self._proc,), daemon=True)
        self._drain.start()
        return self


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if b"error" in line.lower():
            sys.stderr.write(line.decode(errors="replace"))


class KamailioEdge(_Started):
    """kamailio relaying UDP → TLS statefully: the baseline in sipsgate's place."""

    def __init__(self, identity: Issued, upstream_port: int, children: int = 2) -> None:
        self.identity = identity
        self.upstream_port = upstream_port
        self.children = children
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory()
        self._drain: threading.Thread | None = None

    def __enter__(self) -> KamailioEdge:
        d = Path(self._tmp.name)
        cert, key = self.identity.write(d, "edge")
        (d / "tls.cfg").write_text(EDGE_TLS_CFG.format(key=key, cert=cert))
        self.port = free_port()
        (d / "kamailio.cfg").write_text(
            EDGE_CFG.format(
                children=self.children,
                udp_port=self.port,
                tls_port=free_port(),
                tls_cfg=d / "tls.cfg",
                upstream_port=self.upstream_port,
            )
        )
        self._proc = subprocess.Popen(
            ["kamailio", "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d), "-m", "1024"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        )  # fmt: skip
        read_line_matching(self._proc, b"kamailio ready", timeout=30)
        self._drain = threading.Thread(target=_drain, args=(self._proc,), daemon=True)
        self._drain.start()
        return self


# --- SIPp runs -------------------------------------------------------------------------


class SippUas:
    """The far SIPp answering OPTIONS on a chosen UDP port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SippUas:
        self._proc = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / "options_uas.xml"), "-i", "127.0.0.1",
             "-p", str(self.port), "-t", "u1", "-nostdin", "-buff_size", "4194304"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        stop_process(self._proc)


@dataclass
class LoadResult:
    successful: int
    failed: int
    seconds: float
    rtts_ms: list[float]
    cpu_us: float = 0.0  # CPU per successful transaction of the processes measured

    @property
    def rate(self) -> float:
        return self.successful / self.seconds if self.seconds else 0.0

    def p99(self) -> float:
        if not self.rtts_ms:
            return float("nan")
        ordered = sorted(self.rtts_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def run_sipp(
    target: tuple[str, int],
    scenario: str,
    *,
    rate: int,
    calls: int,
    window: int | None = None,
    rtt: bool = False,
    extra: tuple[str, ...] = (),
    transport: str = "u1",
) -> LoadResult:
    """Run one SIPp UAC to completion (bounded) and read its final statistics."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        args = [
            "sipp", f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / scenario),
            "-i", "127.0.0.1", "-t", transport, "-r", str(rate), "-m", str(calls),
            "-nostdin", "-key", "domain", DOMAIN, "-recv_timeout", "5000",
            "-buff_size", "4194304", "-trace_stat", "-stf", str(d / "stat.csv"),
            "-fd", "3600",
        ]  # fmt: skip
        if window is not None:
            args += ["-l", str(window)]
        if rtt:
            args += ["-trace_rtt", "-rtt_freq", "1000"]
        args += list(extra)
        started = time.perf_counter()
        proc = subprocess.run(
            args, cwd=d, stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT, check=False
        )
        seconds = time.perf_counter() - started
        successful, failed = _final_counts(d / "stat.csv")
        if successful + failed == 0:
            raise RuntimeError(f"SIPp reported nothing: {proc.stdout[-2000:]!r}")
        rtts: list[float] = []
        for path in d.glob("*_rtt.csv"):
            with path.open() as fh:
                for row in csv.reader(fh, delimiter=";"):
                    if len(row) >= 2:
                        try:
                            rtts.append(float(row[1]))
                        except ValueError:
                            continue
        return LoadResult(successful, failed, seconds, rtts)


def _final_counts(path: Path) -> tuple[int, int]:
    with path.open() as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    header, last = rows[0], rows[-1]
    successful = int(last[header.index("SuccessfulCall(C)")])
    failed = int(last[header.index("FailedCall(C)")])
    return successful, failed


def throughput(target: tuple[str, int], label: str) -> LoadResult:
    """Warm up, then the closed-loop rate (at most WINDOW transactions in flight)."""
    run_sipp(target, "options_uac.xml", rate=3000, calls=int(3000 * WARMUP), window=WINDOW)
    calls = int(MEASURE * 8000)
    result = run_sipp(target, "options_uac.xml", rate=100_000, calls=calls, window=WINDOW)
    print(
        f"  {label:<28} {result.rate:8.0f} transactions/s "
        f"({result.successful} ok, {result.failed} failed, {result.seconds:.1f} s)"
    )
    return result


def latency(
    target: tuple[str, int],
    label: str,
    rate: int = LATENCY_RATE,
    *,
    direct_p99: float | None = None,
    pids: tuple[int, ...] = (),
) -> LoadResult:
    """Open loop at ``rate``: p99 (and what it adds to ``direct_p99``), and the CPU the
    processes ``pids`` spent per transaction meanwhile."""
    calls = int(rate * LATENCY_SECONDS)
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    result = run_sipp(target, "options_uac.xml", rate=rate, calls=calls, rtt=True)
    if pids and result.successful:
        result.cpu_us = (sum(cpu_seconds(p) for p in pids) - cpu_before) / result.successful * 1e6
    text = f"  {label:<28} p99 {result.p99():6.2f} ms at {rate}/s"
    if direct_p99 is not None:
        text += f", added {result.p99() - direct_p99:6.2f} ms"
    if result.cpu_us:
        text += f", {result.cpu_us:5.0f} µs CPU per transaction"
    print(text + f" ({result.successful} ok, {result.failed} failed)", flush=True)
    return result


@dataclass
class Contender:
    """A relay under test (sipsgate, or kamailio in its place) and its figures so far."""

    label: str
    target: tuple[str, int]
    pids: tuple[int, ...]
    held: int = 0  # the highest rate that held the target so far
    missed: bool = False  # it missed once: higher rates of the sweep are not tried
    #: (direct path's p99, this relay's result) of each round at LATENCY_RATE
    rounds: list[tuple[float, LoadResult]] = field(default_factory=list)

    def added_at_target_rate(self) -> float:
        """The median over the rounds of the p99 added at LATENCY_RATE."""
        return statistics.median(r.p99() - direct for direct, r in self.rounds)

    def failed_at_target_rate(self) -> int:
        return sum(r.failed for _, r in self.rounds)

    def cpu_at_target_rate(self) -> float:
        return statistics.median(r.cpu_us for _, r in self.rounds)


def compare_latency(upstream_udp: tuple[str, int], contenders: list[Contender]) -> None:
    """For each rate of SWEEP and LATENCY_RATE, ascending: the direct path, then each
    contender still in the sweep, one after another, so that all meet the same
    conditions of this shared machine. LATENCY_RATE gets ROUNDS such rounds (every
    contender runs it) and a rate holds when the median round does."""
    for rate in sorted({*SWEEP, LATENCY_RATE}):
        at_target = rate == LATENCY_RATE
        active = [c for c in contenders if at_target or not c.missed]
        if not active:
            continue
        added: dict[str, list[float]] = {c.label: [] for c in active}
        failed: dict[str, int] = {c.label: 0 for c in active}
        for _ in range(ROUNDS if at_target else 1):
            direct = latency(upstream_udp, "direct to upstream (UDP)", rate)
            for c in active:
                result = latency(c.target, c.label, rate, direct_p99=direct.p99(), pids=c.pids)
                added[c.label].append(result.p99() - direct.p99())
                failed[c.label] += result.failed
                if at_target:
                    c.rounds.append((direct.p99(), result))
        for c in active:
            if c.missed:
                continue
            if failed[c.label] == 0 and statistics.median(added[c.label]) < TARGET_P99_MS:
                c.held = rate
            else:
                c.missed = True


# --- process accounting -------------------------------------------------------------------


def with_children(pid: int) -> tuple[int, ...]:
    """``pid`` and its direct children (kamailio's workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return tuple(pids)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main() -> int:
    if "--child" in sys.argv:
        child_main([a for a in sys.argv[1:] if a != "--child"])
        return 0
    print("bench_relay: SIPp (UDP) → relay → TLS → kamailio → SIPp, OPTIONS")
    pki = CertFactory()
    root = pki.ca("sipsgate bench root")
    leaf = pki.leaf(root, cn=DOMAIN, dns=(DOMAIN,))
    status = 0
    with (
        SippUas() as uas,
        KamailioRegistrar(leaf, uas_port=uas.port, shm_mb=2048, children=2) as upstream,
        RelayProcess(root, upstream.port) as relay,
        KamailioEdge(leaf, upstream.port) as edge,
    ):
        ours = throughput(("127.0.0.1", relay.port), "sipsgate")
        theirs = throughput(("127.0.0.1", edge.port), "kamailio t_relay (baseline)")
        ratio = ours.rate / theirs.rate if theirs.rate else 0.0
        ok_rate = ratio >= TARGET_RATIO and ours.failed == 0
        print(
            f"  ratio sipsgate/kamailio: {ratio:.2f} (target ≥ {TARGET_RATIO}) "
            f"{'OK' if ok_rate else 'MISSED'}",
            flush=True,
        )
        sipsgate = Contender("sipsgate", ("127.0.0.1", relay.port), (relay.pid,))
        kamailio = Contender(
            "kamailio t_relay (baseline)", ("127.0.0.1", edge.port), with_children(edge.pid)
        )
        compare_latency(("127.0.0.1", upstream.udp_port), [sipsgate, kamailio])
        added = sipsgate.added_at_target_rate()
        ok_lat = added < TARGET_P99_MS and sipsgate.failed_at_target_rate() == 0
        print(
            f"  p99 added at {LATENCY_RATE}/s (median of {ROUNDS} rounds): sipsgate "
            f"{added:.2f} ms (target < {TARGET_P99_MS} ms) {'OK' if ok_lat else 'MISSED'}; "
            f"kamailio in its place, same rounds: {kamailio.added_at_target_rate():.2f} ms"
        )
        print(
            f"  CPU per transaction at {LATENCY_RATE}/s (median): sipsgate "
            f"{sipsgate.cpu_at_target_rate():.0f} µs, kamailio (all its processes) "
            f"{kamailio.cpu_at_target_rate():.0f} µs"
        )
        rates = ", ".join(map(str, sorted({*SWEEP, LATENCY_RATE})))
        for c in (sipsgate, kamailio):
            print(
                f"  highest offered rate with p99 added < {TARGET_P99_MS:g} ms and no failures, "
                f"{c.label}: "
                + (f"{c.held}/s" if c.held else "none")
                + f" (of {rates}/s, {LATENCY_SECONDS:g} s each)"
            )
        status |= 0 if ok_rate and ok_lat else 1

        with RelayProcess(root, upstream.port, keepalive="5s") as idle_relay:
            base_rss = rss_kib(idle_relay.pid)
            registered = run_sipp(
                ("127.0.0.1", idle_relay.port), "register_many.xml", rate=200,
                calls=REGISTRATIONS, transport="un",
                extra=("-au", "bench", "-ap", PASSWORD, "-max_socket", str(REGISTRATIONS + 50)),
            )  # fmt: skip
            cpu_before = cpu_seconds(idle_relay.pid)
            time.sleep(IDLE_SECONDS)  # measuring idle CPU over a fixed window
            cpu_idle = (cpu_seconds(idle_relay.pid) - cpu_before) / IDLE_SECONDS * 100
            rss = rss_kib(idle_relay.pid)
            print(
                f"  {registered.successful} of {REGISTRATIONS} registrations held "
                f"({registered.failed} failed); RSS {base_rss / 1024:.1f} → {rss / 1024:.1f} MiB; "
                f"idle CPU {cpu_idle:.2f} % over {IDLE_SECONDS:g} s (keep-alive every 5 s)"
            )
            if registered.failed:
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
