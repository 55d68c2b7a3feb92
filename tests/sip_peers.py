"""Real SIP peers for the relay's end-to-end tests and benchmark.

``KamailioRegistrar`` runs Debian's kamailio as the upstream registrar/proxy: TLS on
loopback with a test certificate, digest auth on REGISTER without a database
(``pv_www_authenticate``), ``usrloc`` in memory, ``registrar`` honouring Path, and
``tm`` relaying calls to registered contacts. ``Sipp`` runs Debian's SIPp (no TLS:
UDP or TCP towards sipsgate) as a base station. Every child is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tests.pki import Issued
from tests.tls_servers import free_port, read_line_matching, stop_process

SCENARIOS = Path(__file__).resolve().parent / "e2e" / "scenarios"
DOMAIN = "sip.example.test"
PASSWORD = "dect-secret"
WAIT = 30.0

KAMAILIO_REGISTRAR_CFG = """#!KAMAILIO
debug={debug}
log_stderror=yes
children={children}
tcp_children={children}
enable_tls=yes
auto_aliases=no
alias="{domain}"
listen=tls:127.0.0.1:{port}
{udp_listen}
tcp_connection_lifetime=3605

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "tls.so"
loadmodule "xlog.so"

modparam("tls", "config", "{tls_cfg}")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "use_path", {use_path})
modparam("registrar", "path_mode", 1)
modparam("registrar", "path_use_received", 0)

event_route[core:worker-one-init] {{
    xlog("L_NOTICE", "sipsgate-test: kamailio ready\n");
}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
{bench_route}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{
            www_challenge("$td", "0");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
{preloaded_route}
    if ($rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("INVITE|SUBSCRIBE")) {{
        record_route();
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"""

# The benchmark: requests for user "bench" go to a SIPp answering on UDP, statefully.
BENCH_ROUTE = """    if ($rU == "bench") {{
        $du = "sip:127.0.0.1:{uas_port}";
        t_relay();
        exit;
    }}
"""

# RFC 3261 §16.4: a loose-routing proxy follows a preloaded Route (an outbound proxy
# entry, a Service-Route) that does not name itself, as most provider configs do.
PRELOADED_ROUTE = """    if (is_present_hf("Route") && loose_route()) {
        if (is_method("INVITE|SUBSCRIBE")) {
            record_route();
        }
        t_relay();
        exit;
    }
"""

KAMAILIO_TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = {key}
certificate = {cert}
"""


class KamailioRegistrar:
    """kamailio as the upstream registrar/proxy over TLS (and UDP, for outside callers)."""

    def __init__(
        self,
        identity: Issued,
        *,
        use_path: bool = True,
        udp: bool = True,
        uas_port: int | None = None,
        follow_preloaded_route: bool = False,
        children: int = 2,
        shm_mb: int = 128,
        debug: int = 2,
    ) -> None:
        self.identity = identity
        self.use_path = use_path
        self.udp = udp
        self.uas_port = uas_port
        self.follow_preloaded_route = follow_preloaded_route
        self.children = children
        self.shm_mb = shm_mb
        self.debug = debug
        self.port = 0
        self.udp_port = 0
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._drain: threading.Thread | None = None
        self.output: list[bytes] = []

    def __enter__(self) -> KamailioRegistrar:
        self._tmp = tempfile.TemporaryDirectory()
        d = Path(self._tmp.name)
        cert, key = self.identity.write(d, "server")
        (d / "tls.cfg").write_text(KAMAILIO_TLS_CFG.format(key=key, cert=cert))
        self.port = free_port()  # kamailio cannot report an OS-chosen port
        self.udp_port = free_port() if self.udp else 0
        bench = BENCH_ROUTE.format(uas_port=self.uas_port) if self.uas_port else ""
        (d / "kamailio.cfg").write_text(
            KAMAILIO_REGISTRAR_CFG.format(
                debug=self.debug,
                children=self.children,
                domain=DOMAIN,
                port=self.port,
                udp_listen=f"listen=udp:127.0.0.1:{self.udp_port}" if self.udp else "",
                tls_cfg=d / "tls.cfg",
                use_path=1 if self.use_path else 0,
                password=PASSWORD,
                bench_route=bench,
                preloaded_route=PRELOADED_ROUTE if self.follow_preloaded_route else "",
            )
        )
        self.start()
        return self

    def start(self) -> None:
        assert self._tmp is not None
        d = Path(self._tmp.name)
        self._proc = subprocess.Popen(
            ["kamailio", "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d),
             "-m", str(self.shm_mb)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        )  # fmt: skip
        try:
            read_line_matching(self._proc, b"kamailio ready", timeout=WAIT)
        except RuntimeError:
            stop_process(self._proc)
            raise
        self._drain = threading.Thread(target=self._keep_output, args=(self._proc,), daemon=True)
        self._drain.start()
        self.starts += 1

    def _keep_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if len(self.output) < 5000:
                self.output.append(line)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, self._drain)
            self._proc = None

    def restart(self) -> None:
        """Stop (SIGTERM, by PID) and start again on the same ports; registrations are lost."""
        self.stop()
        self.start()

    def replace_identity(self, identity: Issued) -> None:
        """Serve another certificate (its chain without the root): write it, restart."""
        assert self._tmp is not None
        self.identity = identity
        identity.write(Path(self._tmp.name), "server")
        self.restart()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __exit__(self, *exc: object) -> None:
        self.stop()
        assert self._tmp is not None
        self._tmp.cleanup()


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str = ""
    logs: str = ""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Sipp:
    """One SIPp process (a base station) talking UDP or TCP to ``target``.

    ``Sipp.cleanup()`` kills (by PID) and removes whatever a failed test left running.
    """

    started: ClassVar[list[Sipp]] = []

    def __init__(
        self,
        scenario: str,
        target: tuple[str, int],
        *,
        transport: str = "udp",
        service: str = "bs1",
        keys: dict[str, str] | None = None,
        call_id: str | None = None,
        calls: int = 1,
        auth: bool = True,
        extra: Sequence[str] = (),
        timeout: float = WAIT,
        port: int | None = None,
    ) -> None:
        self.scenario = SCENARIOS / scenario if "/" not in scenario else Path(scenario)
        self.target = target
        self.transport = transport
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory()
        self.workdir = Path(self._tmp.name)
        keys = {"domain": DOMAIN, **(keys or {})}
        args = [
            "sipp", f"{target[0]}:{target[1]}", "-sf", str(self.scenario),
            "-i", "127.0.0.1", "-t", "u1" if transport == "udp" else "t1",
            "-s", service, "-m", str(calls), "-nostdin",
            "-timeout", f"{int(timeout)}s", "-timeout_error", "-max_recv_loops", "1000",
            "-trace_err", "-error_file", str(self.workdir / "errors.log"),
            "-trace_logs", "-log_file", str(self.workdir / "logs.log"),
        ]  # fmt: skip
        if port is not None:
            args += ["-p", str(port)]
        if auth:
            args += ["-au", service, "-ap", PASSWORD]
        if call_id is not None:
            args += ["-cid_str", call_id]
        for key, value in keys.items():
            args += ["-key", key, value]
        self.args = [*args, *extra]
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Sipp:
        Sipp.started.append(self)
        self._proc = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
        )
        return self

    async def wait(self) -> SippResult:
        """Wait for SIPp to finish (bounded); kill it by PID if it does not."""
        proc = self._proc
        assert proc is not None
        try:
            async with asyncio.timeout(self.timeout + 15):
                output, _ = await proc.communicate()
        except TimeoutError:
            self.kill()
            output, _ = await proc.communicate()
        finally:
            self._proc = None
        result = SippResult(
            returncode=proc.returncode if proc.returncode is not None else -1,
            output=output.decode(errors="replace")[-4000:],
            errors=_read(self.workdir / "errors.log"),
            logs=_read(self.workdir / "logs.log"),
        )
        self._tmp.cleanup()
        return result

    @classmethod
    async def cleanup(cls) -> None:
        leftovers, cls.started = cls.started, []
        for sipp in leftovers:
            if sipp._proc is not None:
                sipp.kill()
                await sipp._proc.communicate()
                sipp._proc = None
            sipp._tmp.cleanup()

    async def run(self) -> SippResult:
        await self.start()
        return await self.wait()

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-8000:]
    except FileNotFoundError:
        return ""
