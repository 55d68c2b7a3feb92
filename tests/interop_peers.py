"""Third-party SIP peers for the interop tests: Debian's baresip and Net::SIP.

``Baresip`` runs baresip 1.0 headless as a base station: its own config directory,
no sound device (``ausine`` as source, ``aufile`` writing to /dev/null), driven over
its ``ctrl_tcp`` module (netstring-framed JSON commands and events). ``NetSipRegistrar``
runs a registrar and stateless proxy built from Net::SIP (Perl) over TLS: a peer that
never answers RFC 5626 CRLF keep-alive pings. Every child is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

from tests.pki import Issued
from tests.sip_peers import DOMAIN, PASSWORD
from tests.tls_servers import free_port, read_line_matching, stop_process

WAIT = 30.0

BARESIP_CONFIG = """poll_method epoll
sip_listen 127.0.0.1:{sip_port}
call_local_timeout 60
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
audio_source aufile,{silence}
"""


class Baresip:
    """One baresip process, a base station with sipsgate as its outbound proxy.

    ``outbound`` is the whole ``outbound=`` value of its account line (e.g.
    ``sip:127.0.0.1:5060;transport=tcp;lr``); it answers calls by itself.
    """

    def __init__(self, user: str, outbound: str, *, regint: int = 600) -> None:
        self.user = user
        self.outbound = outbound
        self.regint = regint
        self._tmp = tempfile.TemporaryDirectory()
        self.sip_port = 0
        self.ctrl_port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._drain: asyncio.Task[None] | None = None
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.output: list[str] = []

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{DOMAIN}"

    async def __aenter__(self) -> Baresip:
        d = Path(self._tmp.name)
        self.ctrl_port = free_port()
        self.sip_port = _sip_ports(avoid=self.ctrl_port)
        (d / "config").write_text(
            BARESIP_CONFIG.format(
                sip_port=self.sip_port, ctrl_port=self.ctrl_port, silence=d / "silence.wav"
            )
        )
        with wave.open(str(d / "silence.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(bytes(16000 * 60))  # outlasts any call of the tests
        (d / "accounts").write_text(
            f'<{self.aor}>;auth_pass={PASSWORD};outbound="{self.outbound}";'
            f"regint={self.regint};answermode=auto\n"
        )
        self._proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(d), "-s",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._drain = asyncio.create_task(self._keep_output())
        try:
            async with asyncio.timeout(WAIT):
                while True:  # ctrl_tcp listens once baresip has read its config
                    try:
                        self._reader, self._writer = await asyncio.open_connection(
                            "127.0.0.1", self.ctrl_port
                        )
                        break
                    except OSError:
                        if self._proc.returncode is not None:
                            raise RuntimeError(f"baresip exited: {self.log()}") from None
                        await asyncio.sleep(0.05)
            self._events_task = asyncio.create_task(self._read_events())
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        self._tmp.cleanup()

    async def _keep_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            if len(self.output) < 20000:
                self.output.append(line.decode(errors="replace"))

    def log(self) -> str:
        return "".join(self.output)[-6000:]

    async def _read_events(self) -> None:
        assert self._reader is not None
        while True:
            try:
                size = await self._reader.readuntil(b":")
                data = await self._reader.readexactly(int(size[:-1]) + 1)
            except (asyncio.IncompleteReadError, ValueError, OSError):
                return
            message = json.loads(data[:-1])
            self.events.append(message)
            self._changed.set()

    async def command(self, command: str, params: str = "") -> None:
        assert self._writer is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))
        await self._writer.drain()

    async def wait_event(self, kind: str) -> dict[str, Any]:
        """The first event of type ``kind`` (CALL_ESTABLISHED, ...), bounded in time.

        A call that closes while ``kind`` is awaited fails at once, with what was seen.
        """
        seen: list[Any] = []
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    seen = [e.get("type") for e in self.events]
                    for event in self.events:
                        if event.get("type") == kind:
                            return event
                    if kind.startswith("CALL_") and "CALL_CLOSED" in seen:
                        break
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise AssertionError(f"baresip {self.user}: no {kind}; events {seen}\n{self.log()}")


def _sip_ports(*, avoid: int) -> int:
    """A port P for baresip's UDP and TCP with P + 1 free for the TLS it also opens."""
    for _ in range(100):
        port = free_port()
        if avoid in (port, port + 1) or port + 1 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports found for baresip")


NET_SIP_REGISTRAR = r"""
use strict;
use warnings;
use Net::SIP qw(:all);
use Net::SIP::Leg;
$| = 1;
my ($tls_port, $udp_port, $cert, $key, $domain) = @ARGV;
my $tls = Net::SIP::Leg->new(
    addr => '127.0.0.1', port => $tls_port, proto => 'tls',
    tls => { SSL_cert_file => $cert, SSL_key_file => $key, SSL_verify_mode => 0 },
);
my $udp = Net::SIP::Leg->new(addr => '127.0.0.1', port => $udp_port, proto => 'udp');
my $loop = Net::SIP::Dispatcher::Eventloop->new;
my $disp = Net::SIP::Dispatcher->new([$tls, $udp], $loop, do_retransmits => 1);
my $registrar = Net::SIP::Registrar->new(
    dispatcher => $disp, domain => $domain, max_expires => 3600, min_expires => 30,
);
my $proxy = Net::SIP::StatelessProxy->new(
    dispatcher => $disp, registrar => $registrar,
);
my $chain = Net::SIP::ReceiveChain->new([$registrar, $proxy]);
$disp->set_receiver($chain);
print "net-sip registrar ready\n";
$loop->loop;
"""


class NetSipRegistrar:
    """Net::SIP's registrar and stateless proxy on TLS (towards sipsgate) and UDP
    (for callers from outside). It does not answer CRLF keep-alive pings."""

    def __init__(self, identity: Issued) -> None:
        self.identity = identity
        self.port = 0
        self.udp_port = 0
        self._tmp = tempfile.TemporaryDirectory()
        self._proc: subprocess.Popen[bytes] | None = None
        self._drain: Any = None
        self.output: list[bytes] = []

    def __enter__(self) -> NetSipRegistrar:
        import threading

        d = Path(self._tmp.name)
        cert, key = self.identity.write(d, "server")
        (d / "registrar.pl").write_text(NET_SIP_REGISTRAR)
        self.port, self.udp_port = free_port(), free_port()
        self._proc = subprocess.Popen(
            ["perl", str(d / "registrar.pl"), str(self.port), str(self.udp_port),
             str(cert), str(key), DOMAIN],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        )  # fmt: skip
        try:
            read_line_matching(self._proc, b"net-sip registrar ready", timeout=WAIT)
        except RuntimeError:
            stop_process(self._proc)
            raise
        self._drain = threading.Thread(target=self._keep_output, daemon=True)
        self._drain.start()
        return self

    def _keep_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if len(self.output) < 5000:
                self.output.append(line)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            stop_process(self._proc, self._drain)
            self._proc = None
        self._tmp.cleanup()
