"""Real TLS servers on 127.0.0.1, port 0, for connector tests and benchmarks.

``TlsEchoServer`` runs the stdlib ``ssl`` server side under asyncio: it greets,
echoes lines, and keeps every handshake failure it saw (so a test can assert which
alert the client sent). ``OpensslServer`` runs ``openssl s_server`` as a child.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.pki import Issued

GREETING = b"hello from the test server\n"
WAIT = 10.0  # every wait in a test helper is bounded


def server_context(
    identity: Issued,
    *,
    require_client_ca: Issued | None = None,
    weak: bool = False,
    max_version: ssl.TLSVersion | None = None,
    min_version: ssl.TLSVersion | None = None,
    extra_chain: Sequence[Issued] | None = None,
) -> ssl.SSLContext:
    """A server context presenting ``identity`` with its intermediates (or ``extra_chain``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if weak:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if max_version is not None:
        ctx.maximum_version = max_version
    if min_version is not None:
        ctx.minimum_version = min_version
    chain = (identity, *(extra_chain if extra_chain is not None else identity.parents[:-1]))
    with tempfile.TemporaryDirectory() as tmp:
        cert = Path(tmp) / "chain.pem"
        key = Path(tmp) / "key.pem"
        cert.write_bytes(b"".join(c.pem for c in chain))
        key.write_bytes(identity.key_pem)
        ctx.load_cert_chain(cert, key)
    if require_client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=require_client_ca.pem.decode())
    return ctx


class TlsEchoServer:
    """An asyncio TLS server: sends ``GREETING``, then echoes every line back."""

    def __init__(self, context: ssl.SSLContext, *, greet: bool = True) -> None:
        self.context = context
        self.greet = greet
        self.port = 0
        self.handshake_errors: list[BaseException] = []
        self.handshakes = 0
        self.client_certs: list[bytes | None] = []
        self.failed = asyncio.Event()
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed_by_peer = asyncio.Event()
        self.received: list[bytes] = []
        self.sni: list[str | None] = []
        self.session_reused: list[bool] = []
        self.versions: list[str | None] = []
        context.sni_callback = self._on_sni

    def _on_sni(self, ssl_object: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        self.sni.append(name)

    async def __aenter__(self) -> TlsEchoServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Accept(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=WAIT)
        for transport in list(self._transports):
            transport.abort()
        await asyncio.wait_for(self._server.wait_closed(), WAIT)

    def _accepted(self, raw: asyncio.Transport) -> None:
        self._transports.add(raw)
        task = asyncio.get_running_loop().create_task(self._serve(raw))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**22)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            try:
                transport = await asyncio.wait_for(
                    loop.start_tls(raw, protocol, self.context, server_side=True), WAIT
                )
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                self.handshake_errors.append(exc)
                self.failed.set()
                return
            assert transport is not None
            self._transports.add(transport)
            protocol.connection_made(transport)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            self.handshakes += 1
            ssl_object = writer.get_extra_info("ssl_object")
            self.client_certs.append(ssl_object.getpeercert(binary_form=True))
            self.session_reused.append(ssl_object.session_reused)
            self.versions.append(ssl_object.version())
            self.connected.set()
            if self.greet:
                writer.write(GREETING)
            try:
                while line := await reader.readline():
                    self.received.append(line)
                    writer.write(line)
                    await writer.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            self.closed_by_peer.set()
            writer.close()
        finally:
            raw.abort()

    @property
    def error_text(self) -> str:
        return " | ".join(str(e) for e in self.handshake_errors)


class _Accept(asyncio.Protocol):
    """Stops reading at once so no byte of the ClientHello is read before start_tls."""

    def __init__(self, server: TlsEchoServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self.server._accepted(transport)


class _ChildServer:
    """A server child process run from a temporary directory, stopped by its PID."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._drain: threading.Thread | None = None

    def _workdir(self) -> Path:
        self._tmp = tempfile.TemporaryDirectory()
        return Path(self._tmp.name)

    def _spawn(self, args: Sequence[str], ready: bytes) -> bytes:
        """Start ``args``; return its output line holding ``ready``, then drain it."""
        self._proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        )  # fmt: skip
        line = read_line_matching(self._proc, ready)
        self._drain = threading.Thread(target=_drain, args=(self._proc,), daemon=True)
        self._drain.start()
        return line

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        assert self._tmp is not None
        stop_process(self._proc, self._drain)
        self._tmp.cleanup()


class OpensslServer(_ChildServer):
    """``openssl s_server`` on 127.0.0.1 with a free port; killed by PID at exit."""

    def __init__(
        self,
        identity: Issued,
        *,
        client_ca: Issued | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.identity = identity
        self.client_ca = client_ca
        self.extra_args = tuple(extra_args)

    def __enter__(self) -> OpensslServer:
        d = self._workdir()
        cert, key = d / "server.crt", d / "server.key"
        cert.write_bytes(self.identity.pem)
        key.write_bytes(self.identity.key_pem)
        args = list(self.extra_args)
        if len(self.identity.parents) > 1:  # -cert takes one certificate; the rest here
            chain_file = d / "chain.pem"
            chain_file.write_bytes(b"".join(p.pem for p in self.identity.parents[:-1]))
            args += ["-cert_chain", str(chain_file)]
        if self.client_ca is not None:
            ca_file = d / "client-ca.pem"
            ca_file.write_bytes(self.client_ca.pem)
            args += ["-Verify", "2", "-verify_return_error", "-CAfile", str(ca_file)]
        # s_server prints "ACCEPT 127.0.0.1:<port>" once it listens; the port is 0 = free.
        line = self._spawn(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-www",
             "-cert", str(cert), "-key", str(key), *args],
            b"ACCEPT 127.0.0.1:",
        )  # fmt: skip
        self.port = int(line.rsplit(b":", 1)[1])
        return self


class GnutlsServer(_ChildServer):
    """``gnutls-serv --echo`` demanding a client certificate that ``client_ca`` issued.

    gnutls-serv has no option to bind one address: it listens on every interface, on a
    free port for the duration of the test; the test talks to it on 127.0.0.1 only.
    """

    def __init__(self, identity: Issued, *, client_ca: Issued, version: str) -> None:
        super().__init__()
        self.identity = identity
        self.client_ca = client_ca
        self.version = version  # "1.2" or "1.3"

    def __enter__(self) -> GnutlsServer:
        d = self._workdir()
        (d / "chain.pem").write_bytes(self.identity.chain_pem())
        (d / "key.pem").write_bytes(self.identity.key_pem)
        (d / "client-ca.pem").write_bytes(self.client_ca.pem)
        # gnutls-serv cannot report an OS-chosen port: a free one is chosen here, and
        # another process may take it before gnutls-serv binds. It then still prints
        # "listening on IPv4 ... bind() failed" (and serves IPv6 only): try another port.
        for _ in range(5):
            self.port = free_port()
            line = self._spawn(
                ["stdbuf", "-oL", "gnutls-serv", "--echo", "--port", str(self.port),
                 "--x509certfile", str(d / "chain.pem"), "--x509keyfile", str(d / "key.pem"),
                 "--x509cafile", str(d / "client-ca.pem"),
                 "--require-client-cert", "--verify-client-cert",
                 "--priority", f"NORMAL:-VERS-ALL:+VERS-TLS{self.version}"],
                b"listening on IPv4",
            )  # fmt: skip
            if b"failed" not in line:
                return self
            assert self._proc is not None
            stop_process(self._proc, self._drain)
        raise RuntimeError(f"gnutls-serv could not bind a free port: {line!r}")


KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
enable_tls=yes
auto_aliases=no
listen=tls:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_cfg}")
request_route {{
    sl_send_reply("200", "OK");
}}
"""

KAMAILIO_TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = {verify}
require_certificate = {verify}
private_key = {key}
certificate = {cert}
{ca_line}
"""


class KamailioServer(_ChildServer):
    """Debian's kamailio with its TLS module, answering every request 200 OK.

    Runs in the foreground (``-DD -E``) from a temporary directory and is stopped by
    its PID; the main process takes its children down with it.
    """

    def __init__(self, identity: Issued, *, client_ca: Issued | None = None) -> None:
        super().__init__()
        self.identity = identity
        self.client_ca = client_ca

    def __enter__(self) -> KamailioServer:
        d = self._workdir()
        cert, key = self.identity.write(d, "server")
        ca_line = ""
        if self.client_ca is not None:
            (d / "client-ca.pem").write_bytes(self.client_ca.pem)
            ca_line = f"ca_list = {d / 'client-ca.pem'}"
        (d / "tls.cfg").write_text(
            KAMAILIO_TLS_CFG.format(
                verify="yes" if self.client_ca else "no", key=key, cert=cert, ca_line=ca_line
            )
        )
        self.port = free_port()  # kamailio cannot report an OS-chosen port
        (d / "kamailio.cfg").write_text(KAMAILIO_CFG.format(port=self.port, tls_cfg=d / "tls.cfg"))
        # Children log child_init once the listening sockets exist and they have forked.
        self._spawn(
            ["kamailio", "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d)],
            b"child_init()",
        )
        return self


def sip_options(host: str, branch: str = "z9hG4bK-sipsgate-test") -> bytes:
    """A minimal SIP OPTIONS request, as bytes on the wire."""
    return (
        f"OPTIONS sip:{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{host}>;tag=1\r\n"
        f"To: <sip:{host}>\r\n"
        "Call-ID: sipsgate-test-1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def free_port() -> int:
    """A TCP port the OS calls free now (for servers that need a number up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def read_line_matching(
    proc: subprocess.Popen[bytes], prefix: bytes, timeout: float = WAIT
) -> bytes:
    """Read the child's stdout until a line contains ``prefix`` (bounded in time).

    The child's stdout must be unbuffered (``bufsize=0``): a buffered reader could
    hold the wanted line while ``select`` reports nothing more to read.
    """
    import selectors
    import time

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[bytes] = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                break
            line = proc.stdout.readline()
            if not line:
                break
            if prefix in line:
                return line.strip()
            seen.append(line)
    raise RuntimeError(
        f"no line starting with {prefix!r} from {proc.args!r} within {timeout} s; "
        f"it said: {b''.join(seen)[-2000:]!r}"
    )


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    for _ in proc.stdout:
        pass


def stop_process(proc: subprocess.Popen[Any], drain: threading.Thread | None = None) -> None:
    """Terminate one child we started, by its PID; kill it if it does not stop.

    ``drain`` (a thread reading the child's output) is joined before the pipes close.
    """
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=WAIT)
    if drain is not None:
        drain.join(WAIT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
