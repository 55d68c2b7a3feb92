"""The SIP relay against Kamailio's stateful relay on the same UDP → TLS path, in one run.

Path: several SIPp UACs (LAN sources, UDP, one port each, as base stations) → the relay
→ TLS → a responder, a Kamailio that answers every OPTIONS statelessly
(``sl_send_reply`` only, no transaction state, no per-message logging), so that the
relay and not the far end limits the rate. The relays, each started once and measured
in the same interleaved rounds (the order rotates from round to round):

- ``kamailio``: Kamailio ``t_relay`` (stateful) from UDP to TLS, ``children`` and
  ``tcp_children`` = the cores this process may use, no per-message logging;
- ``sipsgate``: ``sipsgate run`` with ``sip.workers = "auto"``;
- ``sipsgate-1``: ``sipsgate run`` with ``sip.workers = 1`` (for reference, not judged).

Each round measures, for each relay, after the direct path (the sources straight to the
responder's UDP port):

- throughput at zero failures: closed loop (``BENCH_WINDOW`` transactions in flight over
  all sources), counted over ``BENCH_MEASURE`` s after ``BENCH_RAMP`` s;
- p99 response time at ``BENCH_LATENCY_RATE`` (4,000/s) offered, and what it adds to the
  direct path's p99 in the same round; CPU per transaction at that rate;
- the same relay at twice the rate it reached closed loop in this round (open loop):
  the rate it still serves, and every request not served: answered with an error
  (SIPp's "unexpected message", e.g. ``503``) or unanswered (timed out).

Every process's CPU is printed for every measurement, from ``/proc/<pid>/stat`` deltas
over the measured window, in cores (1.00 = one core busy): the relay's processes (the
sipsgate supervisor and its workers; every Kamailio process), the responder's (its
busiest process shows it is not the bottleneck), each SIPp, and the whole machine (other
users of the machine show as the difference). The summary gives each figure's median
and range over the rounds, and sipsgate's ratio to Kamailio's figure of the same round.

With more workers than one, the sources' ports are chosen so that each worker owns the
same number of them (``BENCH_BALANCE=0`` takes the ports as they come): the kernel
spreads UDP sources over SO_REUSEPORT sockets by a hash of the addresses, which evens
out over a site's many base stations but not over four. Which worker owns a port is seen
from the responder's side: it names the TLS flow a probe arrived on.

Last, 1,000 base stations (``BENCH_REGISTRATIONS``) register through ``sipsgate run``
(``workers = "auto"``; half over UDP, one socket each, half over TCP, one connection
each; digest auth; upstream a Kamailio registrar), then stay registered, their TCP
connections open, while the idle gateway is measured with the RFC 5626 keep-alive
running: total RSS and PSS (shared pages counted once) and CPU of sipsgate's processes.

``BENCH_QUICK=1`` runs everything once, briefly, at low rates (a check that the harness
works, not a measurement: targets are not judged). Other knobs: ``BENCH_ROUNDS``,
``BENCH_SOURCES``, ``BENCH_RELAYS`` (comma-separated names above), ``BENCH_MEASURE``, ...
(see the constants below).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.gateway_process import REPO, write_config
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, PASSWORD, KamailioRegistrar
from tests.tls_servers import free_port, read_line_matching, stop_process


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


QUICK = _flag("BENCH_QUICK")


def _knob(name: str, full: float, quick: float) -> float:
    return float(os.environ.get(name, quick if QUICK else full))


HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
CORES = len(os.sched_getaffinity(0))
ROUNDS = int(_knob("BENCH_ROUNDS", 3, 1))
SOURCES = int(_knob("BENCH_SOURCES", 4, 4))
WINDOW = int(_knob("BENCH_WINDOW", 200, 100))  # closed loop: in flight over all sources
WARMUP = _knob("BENCH_WARMUP", 7, 1)  # each relay, once (Kamailio's tm settles in ~7 s)
RAMP = _knob("BENCH_RAMP", 2, 0.5)  # seconds of load before the measured window
MEASURE = _knob("BENCH_MEASURE", 8, 1.5)
LATENCY_RATE = int(_knob("BENCH_LATENCY_RATE", 4000, 400))
LATENCY_SECONDS = _knob("BENCH_LATENCY_SECONDS", 6, 1.5)
OVERLOAD_SECONDS = _knob("BENCH_OVERLOAD_SECONDS", 6, 1.5)
RECV_TIMEOUT_MS = int(_knob("BENCH_RECV_TIMEOUT_MS", 4000, 2000))  # unanswered after this
REGISTRATIONS = int(_knob("BENCH_REGISTRATIONS", 1000, 50))
IDLE_SECONDS = _knob("BENCH_IDLE_SECONDS", 10, 1)
RELAYS = tuple(
    os.environ.get("BENCH_RELAYS", "kamailio,sipsgate" if QUICK else "kamailio,sipsgate,sipsgate-1")
    .replace(" ", "")
    .split(",")
)
BALANCE = os.environ.get("BENCH_BALANCE", "1") not in ("", "0")
SHOW_PID = _flag("BENCH_SHOW_PID")  # for attaching a profiler

TARGET_THROUGHPUT = 1.0  # sipsgate / kamailio, same rounds
TARGET_CPU = 1.0  # sipsgate / kamailio CPU per transaction at LATENCY_RATE
TARGET_OVERLOAD = 0.90  # served at 2x the peak / the peak
JUDGED = "sipsgate"
BASELINE = "kamailio"
OPEN_LOOP_LIMIT = 200_000  # SIPp's -l for open-loop runs: never the limit
WAIT = 60.0

# Both Kamailios: `children` UDP and TLS processes, no per-message logging; each fills in
# {modules} (loaded before the common ones) and {route} (the request route's body).
KAMAILIO_CFG = """#!KAMAILIO
debug={debug}
log_stderror=yes
children={children}
tcp_children={children}
enable_tls=yes
auto_aliases=no
listen=udp:127.0.0.1:{udp_port}
listen=tls:127.0.0.1:{tls_port}
tcp_connection_lifetime=3605
# A busy TLS link needs more than the default 32 KB write queue per connection: at
# 10,000 messages/s it fills within milliseconds, and Kamailio closes a full connection.
tcp_conn_wq_max=4194304
tcp_wq_max=67108864
{modules}loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "tls.so"
loadmodule "xlog.so"
loadmodule "textops.so"
modparam("tls", "config", "{tls_cfg}")

event_route[core:worker-one-init] {{
    xlog("L_ALERT", "sipsgate-bench: {name} ready\\n");
}}

request_route {{
{route}}}
"""

# The responder: stateless, every request answered 200.
RESPONDER_ROUTE = """    if ($rU == "probe") {
        append_to_reply("X-Flow: $si:$sp\\r\\n");
    }
    sl_send_reply("200", "OK");
"""

# The baseline: a stateful relay from UDP to the responder over TLS.
EDGE_MODULES = 'loadmodule "tm.so"\nloadmodule "maxfwd.so"\n'
EDGE_ROUTE = """    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("ACK") && !t_check_trans()) {{
        exit;
    }}
    $du = "sip:127.0.0.1:{upstream_port};transport=tls";
    if (!t_relay()) {{
        sl_reply_error();
    }}
"""

KAMAILIO_TLS_CFG = """[server:default]
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

# --- the processes under test ----------------------------------------------------------


class _Started:
    """A process started for the benchmark (in ``_proc``), its output drained by
    ``_drain``, its files in ``_tmp``; stopped by PID on exit."""

    label = "process"
    workers = 1  # relay processes sharing the LAN port

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory()
        self._drain: threading.Thread | None = None
        self.port = 0

    @property
    def dir(self) -> Path:
        return Path(self._tmp.name)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def target(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def pids(self) -> list[tuple[str, int]]:
        """This process and its children (Kamailio's, sipsgate's workers), labelled."""
        return [("", pid) for pid in with_children(self.pid)]

    def _spawn(self, args: list[str], ready: bytes, env: dict[str, str] | None = None) -> bytes:
        self._proc = subprocess.Popen(
            args, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, bufsize=0,
        )  # fmt: skip
        try:
            line = read_line_matching(self._proc, ready, timeout=WAIT)
        except RuntimeError:
            stop_process(self._proc)
            raise
        self._drain = threading.Thread(target=_drain, args=(self._proc,), daemon=True)
        self._drain.start()
        if SHOW_PID:
            print(f"  ({self.label} running as PID {self._proc.pid})", flush=True)
        return line

    def __enter__(self) -> Self:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            stop_process(self._proc, self._drain)
        self._tmp.cleanup()


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    shown = 0
    for line in proc.stdout:
        if b"error" in line.lower() and shown < 20:
            shown += 1
            sys.stderr.write(line.decode(errors="replace"))


class Responder(_Started):
    """Kamailio answering every request ``200`` statelessly, on TLS and on UDP (the
    direct path). A request for user ``probe`` gets the address it came from in
    ``X-Flow`` (which relay worker's flow carried it)."""

    label = "responder"

    def __init__(self, identity: Issued, children: int) -> None:
        super().__init__()
        self.identity = identity
        self.children = children
        self.tls_port = 0

    def __enter__(self) -> Responder:
        cert, key = self.identity.write(self.dir, "responder")
        (self.dir / "tls.cfg").write_text(KAMAILIO_TLS_CFG.format(key=key, cert=cert))
        self.port, self.tls_port = free_port(), free_port()
        _write_kamailio_cfg(
            self.dir, name="responder", debug=1, children=self.children, udp_port=self.port,
            tls_port=self.tls_port, modules="", route=RESPONDER_ROUTE,
        )  # fmt: skip
        self._spawn(_kamailio_args(self.dir, 256), b"responder ready")
        return self


class KamailioEdge(_Started):
    """Kamailio relaying UDP → TLS statefully (``t_relay``): the baseline."""

    label = BASELINE

    def __init__(self, identity: Issued, upstream_port: int, children: int) -> None:
        super().__init__()
        self.identity = identity
        self.upstream_port = upstream_port
        self.children = children

    def __enter__(self) -> KamailioEdge:
        cert, key = self.identity.write(self.dir, "edge")
        (self.dir / "tls.cfg").write_text(KAMAILIO_TLS_CFG.format(key=key, cert=cert))
        self.port = free_port()
        _write_kamailio_cfg(
            self.dir, name="kamailio", debug=2, children=self.children, udp_port=self.port,
            tls_port=free_port(), modules=EDGE_MODULES,
            route=EDGE_ROUTE.format(upstream_port=self.upstream_port),
        )  # fmt: skip
        self._spawn(_kamailio_args(self.dir, 1024), b"kamailio ready")
        return self


def _write_kamailio_cfg(d: Path, **fields: object) -> None:
    (d / "kamailio.cfg").write_text(KAMAILIO_CFG.format(tls_cfg=d / "tls.cfg", **fields))


def _kamailio_args(d: Path, shm_mb: int) -> list[str]:
    return ["kamailio", "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d), "-m", str(shm_mb)]


_RELAY_LINE = re.compile(rb"udp (\S+):(\d+)")
_TCP_LINE = re.compile(rb"tcp (\S+):(\d+)")
_WORKERS = re.compile(rb"\((\d+) workers\)")


class Sipsgate(_Started):
    """``sipsgate run`` relaying to ``upstream_port`` (trusting ``root``), with
    ``workers`` ("auto" or a count), per-source limits out of the way (a site's load
    comes from many base stations, the benchmark's from a few), logging warnings only."""

    def __init__(
        self,
        label: str,
        root: Issued,
        upstream_port: int,
        workers: str,
        *,
        keepalive: str = "30s",
        max_connections: int = 1024,
    ) -> None:
        super().__init__()
        self.label = label
        self.max_connections = max_connections
        self.tcp_port = 0
        self.root = root
        self.upstream_port = upstream_port
        self.workers_setting = workers
        self.keepalive = keepalive
        self.workers = 1

    def __enter__(self) -> Sipsgate:
        write_config(self.dir / "sipsgate.toml", self.dir / "var", ["127.0.0.1:0"])
        (self.dir / "provider-root.pem").write_bytes(self.root.pem)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
        env |= {
            "PYTHONPATH": str(REPO),
            "SIPSGATE_ADMIN_PASSWORD": "bench-" + os.urandom(8).hex(),
            "SIPSGATE_LOG_LEVEL": "warning",
            "SIPSGATE_SIP_UPSTREAM": f"sips:{DOMAIN}",
            "SIPSGATE_SIP_UPSTREAM_ADDRESS": f"127.0.0.1:{self.upstream_port}",
            "SIPSGATE_SIP_WORKERS": self.workers_setting,
            "SIPSGATE_SIP_KEEPALIVE": self.keepalive,
            "SIPSGATE_SIP_SOURCE_RATE": "1000000",
            "SIPSGATE_SIP_SOURCE_BURST": "1000000",
            "SIPSGATE_SIP_SOURCE_INFLIGHT": "100000",
            "SIPSGATE_SIP_MAX_CONNECTIONS": str(self.max_connections),
            # every SIPp base station over TCP comes from 127.0.0.1
            "SIPSGATE_SIP_SOURCE_CONNECTIONS": str(self.max_connections),
        }
        cli = [sys.executable, "-m", "gateway.cli"]
        subprocess.run(
            [*cli, "certs", "add", "provider-root.pem", "--config", "sipsgate.toml"],
            cwd=self.dir, env=env, capture_output=True, timeout=WAIT, check=True,
        )  # fmt: skip
        line = self._spawn([*cli, "run", "--config", "sipsgate.toml"], b"SIP relay: ", env)
        found = _RELAY_LINE.search(line)
        assert found is not None, line
        self.port = int(found.group(2))
        tcp = _TCP_LINE.search(line)
        assert tcp is not None, line
        self.tcp_port = int(tcp.group(2))
        workers = _WORKERS.search(line)
        self.workers = int(workers.group(1)) if workers else 1
        return self

    def pids(self) -> list[tuple[str, int]]:
        supervisor, *workers = with_children(self.pid)
        return [("supervisor", supervisor)] + [("worker", pid) for pid in workers]


# --- LAN sources: SIPp UACs ---------------------------------------------------------------


def _sipp_args(
    target: tuple[str, int], port: int, *, rate: int | None, window: int | None, rtt: bool
) -> list[str]:
    args = [
        "sipp", f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / "options_uac.xml"),
        "-i", "127.0.0.1", "-p", str(port), "-t", "u1", "-nostdin",
        "-key", "domain", DOMAIN, "-recv_timeout", str(RECV_TIMEOUT_MS),
        "-buff_size", "4194304", "-trace_stat", "-stf", "stat.csv", "-fd", "1",
        "-r", str(rate if rate is not None else 100_000),
        "-l", str(window if window is not None else OPEN_LOOP_LIMIT),
    ]  # fmt: skip
    if rtt:
        args += ["-trace_rtt", "-rtt_freq", "200"]
    return args


@dataclass
class _Uac:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes]

    def rows(self) -> list[dict[str, str]]:
        return stat_rows(self.dir / "stat.csv")


def stat_rows(path: Path) -> list[dict[str, str]]:
    """SIPp's statistics rows so far (cumulative counts, one a second, and at the end)."""
    if not path.exists():
        return []
    with path.open() as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    if not rows:
        return []
    header = rows[0]
    return [dict(zip(header, row, strict=False)) for row in rows[1:] if len(row) >= 20]


def _epoch(row: dict[str, str]) -> float:
    return float(row["CurrentTime"].split("\t")[-1])


def _count(row: dict[str, str], column: str) -> int:
    return int(row.get(column, "0") or 0)


class Sources:
    """One SIPp UAC per source port, all sending OPTIONS to ``target``: closed loop
    (``window`` in flight over all) or open loop (``rate`` per second over all)."""

    def __init__(
        self,
        target: tuple[str, int],
        ports: Sequence[int],
        *,
        rate: int | None = None,
        window: int | None = None,
        rtt: bool = False,
    ) -> None:
        self.target = target
        self.ports = list(ports)
        n = len(self.ports)
        self.rate = None if rate is None else max(1, round(rate / n))
        self.window = None if window is None else max(1, window // n)
        self.rtt = rtt
        self.uacs: list[_Uac] = []
        self._tmp = tempfile.TemporaryDirectory()
        self.started = 0.0

    def __enter__(self) -> Sources:
        self.started = time.time()
        for port in self.ports:
            d = Path(self._tmp.name) / str(port)
            d.mkdir()
            with (d / "out.txt").open("wb") as out:
                proc = subprocess.Popen(
                    _sipp_args(self.target, port, rate=self.rate, window=self.window,
                               rtt=self.rtt),
                    cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            self.uacs.append(_Uac(port, d, proc))
        return self

    def pids(self) -> list[tuple[str, int]]:
        return [("", u.proc.pid) for u in self.uacs]

    def check_running(self) -> None:
        for u in self.uacs:
            if u.proc.poll() is not None:
                out = (u.dir / "out.txt").read_bytes()[-1500:]
                raise RuntimeError(f"SIPp on port {u.port} ended early: {out!r}")

    def stop(self) -> None:
        """Soft exit (SIGUSR1: no new calls, wait for those in flight, at most
        RECV_TIMEOUT_MS), then SIGKILL whatever is left, by PID."""
        for u in self.uacs:
            if u.proc.poll() is None:
                os.kill(u.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + RECV_TIMEOUT_MS / 1000 + 5
        for u in self.uacs:
            try:
                u.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(u.proc.pid, signal.SIGKILL)
                u.proc.wait(timeout=WAIT)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._tmp.cleanup()

    def count_at(self, at: float, column: str = "SuccessfulCall(C)") -> float:
        """The sources' cumulative ``column`` at time ``at`` (epoch seconds), linear
        between SIPp's once-a-second rows."""
        total = 0.0
        for u in self.uacs:
            rows = u.rows()
            if not rows:
                continue
            points = [(_epoch(r), _count(r, column)) for r in rows]
            total += _interpolate(points, at)
        return total

    def totals(self) -> dict[str, int]:
        """Final counts of all sources (after ``stop``)."""
        sums: dict[str, int] = {}
        for u in self.uacs:
            rows = u.rows()
            if rows:
                for column in _TOTALS:
                    sums[column] = sums.get(column, 0) + _count(rows[-1], column)
        return sums

    def rtts(self, after: float) -> tuple[list[float], float]:
        """Response times (ms) of transactions ``after`` s into the run, and SIPp's
        clock step (ms): it reports times in whole steps of its clock."""
        values: list[float] = []
        stamps: set[float] = set()
        for u in self.uacs:
            for path in u.dir.glob("*_rtt.csv"):
                with path.open() as fh:
                    for row in csv.reader(fh, delimiter=";"):
                        try:
                            stamp, value = float(row[0]), float(row[1])
                        except (ValueError, IndexError):
                            continue
                        stamps.add(stamp)
                        if stamp >= after * 1000:
                            values.append(value)
        ordered = sorted(stamps)
        gaps = [b - a for a, b in itertools.pairwise(ordered) if b - a > 0.5]
        return values, round(min(gaps)) if gaps else 1.0


_TOTALS = (
    "SuccessfulCall(C)",
    "FailedCall(C)",
    "FailedUnexpectedMessage(C)",
    "FailedTimeoutOnRecv(C)",
    "FailedMaxUDPRetrans(C)",
    "Retransmissions(C)",
    "OutgoingCall(C)",
)


def _interpolate(points: list[tuple[float, int]], at: float) -> float:
    """The value at ``at`` on the polyline ``points`` (time, value), held flat outside."""
    if at <= points[0][0]:
        return float(points[0][1])
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= at <= t1:
            return v0 + (v1 - v0) * ((at - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return float(points[-1][1])


# --- processes' CPU -------------------------------------------------------------------------


def with_children(pid: int) -> tuple[int, ...]:
    """``pid`` and its direct children (Kamailio's processes, sipsgate's workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return tuple(pids)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idle and I/O wait, so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: pages shared between processes (the interpreter, the
    libraries every worker maps) counted once in total, not once per process."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


Groups = dict[str, list[tuple[str, int]]]  # group name -> (label, pid)


@dataclass(frozen=True)
class Snapshot:
    at: float
    cpu: dict[int, float]
    machine: float


def snapshot(groups: Groups) -> Snapshot:
    pids = {pid for members in groups.values() for _, pid in members}
    return Snapshot(time.time(), {p: cpu_seconds(p) for p in pids}, machine_busy_seconds())


@dataclass(frozen=True)
class CpuUse:
    """Cores used over a window, per process of each group."""

    seconds: float
    groups: dict[str, list[tuple[str, float]]]
    machine: float

    @staticmethod
    def between(groups: Groups, a: Snapshot, b: Snapshot) -> CpuUse:
        span = b.at - a.at
        return CpuUse(
            span,
            {
                name: [(label, (b.cpu[pid] - a.cpu[pid]) / span) for label, pid in members]
                for name, members in groups.items()
            },
            (b.machine - a.machine) / span,
        )

    def total(self, group: str) -> float:
        return sum(cores for _, cores in self.groups.get(group, []))

    def busiest(self, group: str) -> float:
        return max((cores for _, cores in self.groups.get(group, [])), default=0.0)

    def text(self) -> str:
        parts = []
        for name, members in self.groups.items():
            labelled: dict[str, list[float]] = {}
            for label, cores in members:
                labelled.setdefault(label, []).append(cores)
            shown = " ".join(
                (f"{label} " if label else "")
                + " ".join(f"{c:.2f}" for c in sorted(values, reverse=True))
                for label, values in labelled.items()
            )
            parts.append(f"{name} {self.total(name):.2f} [{shown}]")
        ours = sum(self.total(name) for name in self.groups)
        parts.append(f"machine {self.machine:.2f} of {CORES} (others {self.machine - ours:.2f})")
        return "; ".join(parts)


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Measured:
    """One load on one relay: counts over the measured window, totals of the run."""

    relay: str
    kind: str
    successful: float  # in the window
    offered: float  # transactions the sources started in the window
    totals: dict[str, int]
    cpu: CpuUse
    rtts: list[float] = field(default_factory=list)
    step_ms: float = 1.0

    @property
    def rate(self) -> float:
        return self.successful / self.cpu.seconds

    @property
    def offered_rate(self) -> float:
        return self.offered / self.cpu.seconds

    @property
    def failed(self) -> int:
        return self.totals.get("FailedCall(C)", 0)

    @property
    def unanswered(self) -> int:
        return self.totals.get("FailedTimeoutOnRecv(C)", 0) + self.totals.get(
            "FailedMaxUDPRetrans(C)", 0
        )

    @property
    def rejected(self) -> int:
        """Answered, but not with 200 (a 503 under overload, for instance)."""
        return self.totals.get("FailedUnexpectedMessage(C)", 0)

    def cpu_per_tx_us(self) -> float:
        relay = self.cpu.total("relay") * self.cpu.seconds
        return relay / self.successful * 1e6 if self.successful else math.nan

    def p99(self) -> float:
        if not self.rtts:
            return math.nan
        ordered = sorted(self.rtts)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(
    label: str,
    kind: str,
    relay: _Started | None,
    responder: Responder,
    target: tuple[str, int],
    ports: Sequence[int],
    *,
    seconds: float,
    rate: int | None = None,
    window: int | None = None,
    rtt: bool = False,
) -> Measured:
    """Load ``target`` from the sources for RAMP + ``seconds``; count over the last
    ``seconds``; every process's CPU over the same window."""
    with Sources(target, ports, rate=rate, window=window, rtt=rtt) as sources:
        groups: Groups = {}
        if relay is not None:
            groups["relay"] = relay.pids()
        groups["responder"] = responder.pids()
        groups["SIPp"] = sources.pids()
        time.sleep(RAMP)
        sources.check_running()
        first = snapshot(groups)
        time.sleep(seconds)
        last = snapshot(groups)
        sources.check_running()
        successful = sources.count_at(last.at) - sources.count_at(first.at)
        offered = sources.count_at(last.at, "OutgoingCall(C)") - sources.count_at(
            first.at, "OutgoingCall(C)"
        )
        sources.stop()
        rtts, step = sources.rtts(after=first.at - sources.started) if rtt else ([], 1.0)
        result = Measured(
            label, kind, successful, offered, sources.totals(),
            CpuUse.between(groups, first, last), rtts, step,
        )  # fmt: skip
    if result.totals.get("SuccessfulCall(C)", 0) == 0:
        raise RuntimeError(f"{label}: no transaction succeeded ({kind}): {result.totals}")
    return result


def _row(m: Measured, text: str) -> None:
    counts = f"{m.failed} failed"
    if m.unanswered or m.rejected:
        counts += f": {m.unanswered} unanswered, {m.rejected} answered with an error"
    retrans = m.totals.get("Retransmissions(C)", 0)
    print(f"    {m.relay:<11} {text} ({counts}, {retrans} retransmitted)", flush=True)
    print(f"    {'':<11}   CPU, cores: {m.cpu.text()}", flush=True)


@dataclass
class Round:
    direct: Measured
    closed: dict[str, Measured] = field(default_factory=dict)
    latency: dict[str, Measured] = field(default_factory=dict)
    overload: dict[str, Measured] = field(default_factory=dict)


def run_round(
    n: int, relays: dict[str, _Started], responder: Responder, ports: Sequence[int]
) -> Round:
    print(f"  round {n + 1} of {ROUNDS}", flush=True)
    direct = measure(
        "direct", "latency", None, responder, responder.target, ports,
        seconds=LATENCY_SECONDS, rate=LATENCY_RATE, rtt=True,
    )  # fmt: skip
    _row(direct, f"p99 {direct.p99():5.1f} ms at {LATENCY_RATE}/s, straight to the responder")
    result = Round(direct)
    names = list(relays)
    for name in names[n % len(names) :] + names[: n % len(names)]:
        relay = relays[name]
        closed = measure(
            name, "closed", relay, responder, relay.target, ports, seconds=MEASURE, window=WINDOW
        )
        _row(closed, f"closed loop ({WINDOW} in flight) {closed.rate:8,.0f} tx/s, "
             f"{closed.cpu_per_tx_us():4.0f} µs CPU/tx")  # fmt: skip
        latency = measure(
            name, "latency", relay, responder, relay.target, ports,
            seconds=LATENCY_SECONDS, rate=LATENCY_RATE, rtt=True,
        )  # fmt: skip
        _row(latency, f"p99 {latency.p99():5.1f} ms at {LATENCY_RATE}/s "
             f"(added {latency.p99() - direct.p99():+.1f}), "
             f"{latency.cpu_per_tx_us():4.0f} µs CPU/tx")  # fmt: skip
        offered = max(1, round(2 * closed.rate))
        overload = measure(
            name, "overload", relay, responder, relay.target, ports,
            seconds=OVERLOAD_SECONDS, rate=offered,
        )  # fmt: skip
        served = overload.rate / closed.rate
        _row(overload, f"at 2x its peak: {overload.offered_rate:8,.0f}/s offered, "
             f"{overload.rate:8,.0f} tx/s served = {served:.2f} of the peak")  # fmt: skip
        result.closed[name], result.latency[name], result.overload[name] = closed, latency, overload
        time.sleep(0.5)  # the overload's leftovers drain before the next relay
    return result


# --- which source port goes to which worker -----------------------------------------------------


def flow_of(target: tuple[str, int], port: int) -> str | None:
    """The upstream flow (as the responder saw it) that carried an OPTIONS sent from
    ``port``: so, with SO_REUSEPORT, the worker that owns that source."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
        s.settimeout(0.5)
        for attempt in range(4):
            branch = f"z9hG4bK-probe-{port}-{attempt}"
            s.sendto(
                (
                    f"OPTIONS sip:probe@{DOMAIN} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:probe@{DOMAIN}>;tag={port}\r\n"
                    f"To: <sip:probe@{DOMAIN}>\r\n"
                    f"Call-ID: probe-{port}-{attempt}\r\n"
                    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                target,
            )
            with contextlib.suppress(TimeoutError):
                while True:
                    data = s.recv(65536)
                    if branch.encode() in data:
                        found = re.search(rb"\r\nX-Flow: *(\S+)", data)
                        return found.group(1).decode() if found else "?"
    return None


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_answering(relay: _Started) -> None:
    """Until a probe through ``relay`` is answered (its upstream flow is open)."""
    deadline = time.monotonic() + WAIT
    while flow_of(relay.target, _udp_port()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{relay.label} does not answer within {WAIT:g} s")


def source_ports(relays: dict[str, _Started]) -> list[int]:
    """SOURCES ports; with BALANCE, as many per worker of the relay with most workers."""
    spread = max(relays.values(), key=lambda r: r.workers)
    if not BALANCE or spread.workers == 1:
        return [_udp_port() for _ in range(SOURCES)]
    per_worker = math.ceil(SOURCES / spread.workers)
    owned: dict[str, list[int]] = {}
    for _ in range(40 * SOURCES):
        port = _udp_port()
        flow = flow_of(spread.target, port)
        if flow is None:
            continue
        owned.setdefault(flow, []).append(port)
        full = [ports[:per_worker] for ports in owned.values() if len(ports) >= per_worker]
        if len(full) >= spread.workers:
            chosen = [p for ports in zip(*full, strict=False) for p in ports][:SOURCES]
            print(f"  source ports {chosen}: {per_worker} per worker of {spread.label}")
            return chosen
    print(f"  could not spread the sources evenly over {spread.label}'s workers: {owned}")
    return [p for ports in owned.values() for p in ports][:SOURCES]


# --- the summary -------------------------------------------------------------------------------


def _spread(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:{fmt}} [{low:{fmt}}..{high:{fmt}}]"


def _verdict(ok: bool) -> str:
    return "" if QUICK else (" OK" if ok else " MISSED")


def summary(rounds: list[Round], names: Sequence[str]) -> bool:
    """Print each figure's median [range] over the rounds and the ratios against the
    baseline in the same rounds; True when the judged relay meets every target."""
    quick = " (BENCH_QUICK: a check of the harness, targets not judged)" if QUICK else ""
    print(f"  summary over {len(rounds)} round(s): median [min..max]{quick}")
    ok = True
    has_base = BASELINE in names
    for name in names:
        closed = [r.closed[name] for r in rounds]
        latency = [r.latency[name] for r in rounds]
        overload = [r.overload[name] for r in rounds]
        print(f"    {name}")
        print(f"      throughput at zero failures (closed loop): "
              f"{_spread([m.rate for m in closed], ',.0f')} tx/s; "
              f"failed {sum(m.failed for m in closed)}")  # fmt: skip
        print(f"      CPU per transaction at {LATENCY_RATE}/s: "
              f"{_spread([m.cpu_per_tx_us() for m in latency], '.0f')} µs; closed loop: "
              f"{_spread([m.cpu_per_tx_us() for m in closed], '.0f')} µs; "
              f"cores: {_spread([m.cpu.total('relay') for m in closed], '.2f')} "
              "(closed loop)")  # fmt: skip
        print(f"      p99 at {LATENCY_RATE}/s: {_spread([m.p99() for m in latency], '.1f')} ms; "
              f"added to the direct path: "
              f"{_spread([m.p99() - r.direct.p99() for m, r in zip(latency, rounds, strict=True)], '+.1f')} ms; "  # noqa: E501
              f"failed {sum(m.failed for m in latency)}")  # fmt: skip
        served = [o.rate / c.rate for o, c in zip(overload, closed, strict=True)]
        print(f"      at 2x the peak: {_spread([m.rate for m in overload], ',.0f')} tx/s served "
              f"= {_spread(served, '.2f')} of the peak; unanswered "
              f"{sum(m.unanswered for m in overload)}, answered with an error "
              f"{sum(m.rejected for m in overload)}")  # fmt: skip
        print(f"      responder's busiest process (cores), closed loop: "
              f"{_spread([m.cpu.busiest('responder') for m in closed], '.2f')}; all its "
              f"processes: "
              f"{_spread([m.cpu.total('responder') for m in closed], '.2f')}")  # fmt: skip
        if name == BASELINE or not has_base:
            continue
        base_closed = [r.closed[BASELINE] for r in rounds]
        base_latency = [r.latency[BASELINE] for r in rounds]
        throughput = [m.rate / b.rate for m, b in zip(closed, base_closed, strict=True)]
        cpu = [
            m.cpu_per_tx_us() / b.cpu_per_tx_us()
            for m, b in zip(latency, base_latency, strict=True)
        ]
        cpu_closed = [
            m.cpu_per_tx_us() / b.cpu_per_tx_us() for m, b in zip(closed, base_closed, strict=True)
        ]
        p99 = [m.p99() - b.p99() for m, b in zip(latency, base_latency, strict=True)]
        step = max(m.step_ms for m in [*latency, *base_latency])
        judged = name == JUDGED
        zero_failed = sum(m.failed for m in closed) == 0
        checks = {
            "throughput": statistics.median(throughput) >= TARGET_THROUGHPUT and zero_failed,
            "cpu": statistics.median(cpu) <= TARGET_CPU,
            "p99": statistics.median(p99) <= step,
            "overload": statistics.median(served) >= TARGET_OVERLOAD,
        }
        mark = {k: _verdict(v) if judged else " (reference)" for k, v in checks.items()}
        print(f"      against {BASELINE}, same rounds: throughput {_spread(throughput, '.2f')}x "
              f"(target ≥ {TARGET_THROUGHPUT:.1f}x){mark['throughput']}; CPU per transaction "
              f"at {LATENCY_RATE}/s {_spread(cpu, '.2f')}x (target ≤ {TARGET_CPU:.1f}x)"
              f"{mark['cpu']}, closed loop {_spread(cpu_closed, '.2f')}x")  # fmt: skip
        print(f"      p99 at {LATENCY_RATE}/s minus {BASELINE}'s: {_spread(p99, '+.1f')} ms "
              f"(target ≤ one SIPp step, {step:g} ms){mark['p99']}; served at 2x the peak "
              f"{_spread(served, '.2f')} (target ≥ {TARGET_OVERLOAD:.2f})"
              f"{mark['overload']}")  # fmt: skip
        if judged:
            ok = all(checks.values())
    return ok


# --- 1,000 registrations held ---------------------------------------------------------------


def registrations(root: Issued, leaf: Issued) -> bool:
    """Base stations registered through ``sipsgate run`` (workers = auto), half over UDP
    and half over TCP (one socket or connection each), then idle with the keep-alive
    running: memory (RSS, and PSS, which counts shared pages once) and CPU of all
    sipsgate's processes."""
    over_tcp = REGISTRATIONS // 2
    counts = {"udp": REGISTRATIONS - over_tcp, "tcp": over_tcp}
    with (
        KamailioRegistrar(leaf, shm_mb=512, children=CORES) as upstream,
        Sipsgate(
            "sipsgate", root, upstream.port, "auto", keepalive="5s",
            max_connections=over_tcp + 100,
        ) as relay,
    ):  # fmt: skip
        wait_answering(relay)
        pids = [pid for _, pid in relay.pids()]
        base_rss = sum(rss_kib(p) for p in pids)
        base_pss = sum(pss_kib(p) for p in pids)
        # Every base station registers at 200/s, then holds its call (over TCP: its
        # connection) while the idle gateway is measured; SIPp counts it when it ends.
        registering = max(counts.values()) / 200 + 5
        hold_ms = int((registering + IDLE_SECONDS + 5) * 1000)
        with tempfile.TemporaryDirectory() as tmp:
            runs = {}
            for transport, count in counts.items():
                port = relay.port if transport == "udp" else relay.tcp_port
                (Path(tmp) / transport).mkdir()
                args = [
                    "sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIOS / "register_many.xml"),
                    "-i", "127.0.0.1", "-t", "un" if transport == "udp" else "tn",
                    "-r", "200", "-m", str(count), "-nostdin", "-key", "domain", DOMAIN,
                    "-key", "station", f"{transport}-", "-recv_timeout", "5000",
                    "-d", str(hold_ms), "-trace_stat", "-stf", "stat.csv",
                    "-au", "bench", "-ap", PASSWORD, "-max_socket", str(count + 50),
                ]  # fmt: skip
                runs[transport] = subprocess.Popen(
                    args, cwd=Path(tmp) / transport, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            time.sleep(registering)  # the registrations done, every call still held
            before = sum(cpu_seconds(p) for p in pids)
            time.sleep(IDLE_SECONDS)  # measuring idle CPU over a fixed window
            idle = (sum(cpu_seconds(p) for p in pids) - before) / IDLE_SECONDS * 100
            rss = sum(rss_kib(p) for p in pids)
            pss = sum(pss_kib(p) for p in pids)
            for process in runs.values():
                try:
                    process.wait(timeout=hold_ms / 1000 + registering + WAIT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            finals = {}
            for transport in counts:
                rows = stat_rows(Path(tmp) / transport / "stat.csv")
                if not rows:
                    raise RuntimeError(f"SIPp registering over {transport} reported nothing")
                finals[transport] = rows[-1]
        held = sum(_count(row, "SuccessfulCall(C)") for row in finals.values())
        failed = sum(_count(row, "FailedCall(C)") for row in finals.values())
        print(
            f"  {held} of {REGISTRATIONS} registrations ({counts['udp']} UDP, {counts['tcp']} "
            f"TCP) held through {relay.workers} worker(s) ({failed} failed); sipsgate's "
            f"{len(pids)} processes: RSS {base_rss / 1024:.1f} → {rss / 1024:.1f} MiB, PSS "
            f"{base_pss / 1024:.1f} → {pss / 1024:.1f} MiB; idle CPU {idle:.2f} % over "
            f"{IDLE_SECONDS:g} s with every registration held (keep-alive every 5 s)",
            flush=True,
        )
        return failed == 0 and held == REGISTRATIONS


# --- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def started_relays(root: Issued, leaf: Issued, upstream_port: int) -> Iterator[dict[str, _Started]]:
    known: dict[str, Callable[[], _Started]] = {
        BASELINE: lambda: KamailioEdge(leaf, upstream_port, children=CORES),
        "sipsgate": lambda: Sipsgate("sipsgate", root, upstream_port, "auto"),
        "sipsgate-1": lambda: Sipsgate("sipsgate-1", root, upstream_port, "1"),
    }
    unknown = [name for name in RELAYS if name not in known]
    if unknown:
        raise SystemExit(f"BENCH_RELAYS: unknown {unknown}; known: {', '.join(known)}")
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(known[name]()) for name in RELAYS}


def main() -> int:
    print(
        f"bench_relay: {SOURCES} SIPp UACs (UDP) → relay → TLS → stateless responder, OPTIONS; "
        f"{ROUNDS} round(s), {CORES} cores" + (" (BENCH_QUICK)" if QUICK else ""),
        flush=True,
    )
    print(f"  {_versions()}")
    pki = CertFactory()
    root = pki.ca("sipsgate bench root")
    leaf = pki.leaf(root, cn=DOMAIN, dns=(DOMAIN,))
    with (
        Responder(leaf, children=2 * CORES) as responder,
        started_relays(root, leaf, responder.tls_port) as relays,
    ):
        for relay in relays.values():
            wait_answering(relay)
        ports = source_ports(relays)
        for name, relay in relays.items():  # not measured: first use, caches, Kamailio's tm
            measure(name, "warm-up", relay, responder, relay.target, ports,
                    seconds=WARMUP, window=WINDOW)  # fmt: skip
        rounds = [run_round(n, relays, responder, ports) for n in range(ROUNDS)]
        ok = summary(rounds, list(relays))
    held = registrations(root, leaf)
    return 0 if QUICK or (ok and held) else 1


def _versions() -> str:
    kamailio = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, check=False)
    sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True, check=False)
    kam = kamailio.stdout.split("\n", 1)[0].removeprefix("version: ").strip()
    sipp_version = re.search(r"SIPp v\S+", sipp.stdout + sipp.stderr)
    sipp_text = sipp_version.group(0).rstrip(".") if sipp_version else "SIPp"
    return f"{kam}; {sipp_text}; Python {sys.version.split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
