"""CRLs and OCSP responses made on the spot for the certificates of tests/pki.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from gateway.tls.policy import TlsTarget
from tests.pki import CertFactory, Issued
from tests.tls_servers import OpensslServer, _ChildServer, free_port


def make_crl(
    issuer: Issued,
    revoked: Sequence[Issued] = (),
    *,
    now: dt.datetime,
    this_update: dt.timedelta = dt.timedelta(hours=-1),
    next_update: dt.timedelta | None = dt.timedelta(days=7),
    number: int | None = 1,
    reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise,
    signer: Issued | None = None,
    extra_serials: int = 0,
) -> bytes:
    """A DER CRL by ``issuer`` (signed by ``signer``'s key when given) revoking ``revoked``."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(now + this_update)
    )
    if next_update is not None:
        builder = builder.next_update(now + next_update)
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    entries = [(c.cert.serial_number, reason) for c in revoked]
    entries += [(10_000_000 + i, None) for i in range(extra_serials)]
    for serial, why in entries:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now + dt.timedelta(hours=-2))
        )
        if why is not None:
            entry = entry.add_extension(x509.CRLReason(why), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    key = (signer or issuer).key
    crl = builder.sign(key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def make_ocsp(
    cert: Issued,
    issuer: Issued,
    *,
    now: dt.datetime,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    this_update: dt.timedelta = dt.timedelta(minutes=-10),
    next_update: dt.timedelta | None = dt.timedelta(days=1),
    responder: Issued | None = None,
) -> bytes:
    """A DER OCSP response about ``cert``, signed by ``issuer`` or by ``responder``."""
    signer = responder or issuer
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert.cert,
        issuer=issuer.cert,
        algorithm=hashes.SHA1(),  # noqa: S303 (the certID hash nearly every responder uses)
        cert_status=status,
        this_update=now + this_update,
        next_update=None if next_update is None else now + next_update,
        revocation_time=now - dt.timedelta(hours=3)
        if status is ocsp.OCSPCertStatus.REVOKED
        else None,
        revocation_reason=x509.ReasonFlags.key_compromise
        if status is ocsp.OCSPCertStatus.REVOKED
        else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    if responder is not None:
        builder = builder.certificates([responder.cert])
    response = builder.sign(signer.key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)


def ocsp_responder(factory: CertFactory, issuer: Issued, *, authorised: bool = True) -> Issued:
    """A delegated OCSP responder certificate issued by ``issuer``."""
    usage = ExtendedKeyUsageOID.OCSP_SIGNING if authorised else ExtendedKeyUsageOID.CLIENT_AUTH
    return factory.leaf(
        issuer,
        cn="ocsp responder",
        dns=(),
        server_auth=False,
        extra_extensions=[(x509.ExtendedKeyUsage([usage]), False)],
    )


def index_line(cert: Issued, *, revoked_at: dt.datetime | None = None) -> str:
    """One line of an ``openssl ca`` index file (what ``openssl ocsp -index`` reads)."""
    expiry = cert.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    serial = format(cert.cert.serial_number, "X")
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    subject = "/" + "/".join(reversed(cert.cert.subject.rfc4514_string().split(",")))
    if revoked_at is None:
        return f"V\t{expiry}\t\t{serial}\tunknown\t{subject}\n"
    when = revoked_at.strftime("%y%m%d%H%M%SZ")
    return f"R\t{expiry}\t{when},keyCompromise\t{serial}\tunknown\t{subject}\n"


def write_pem(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def openssl_ocsp_response(
    directory: Path, cert: Issued, issuer: Issued, *, revoked: bool = False, ndays: int = 1
) -> bytes:
    """A DER OCSP response about ``cert`` made by ``openssl ocsp`` as the issuer's responder.

    The request is made and answered offline (``-reqout`` then ``-reqin``), the index
    file saying good or revoked.
    """
    directory.mkdir(parents=True, exist_ok=True)
    issuer_pem = write_pem(directory, "issuer.pem", issuer.pem)
    issuer_key = write_pem(directory, "issuer.key", issuer.key_pem)
    cert_pem = write_pem(directory, "cert.pem", cert.pem)
    index = directory / "index.txt"
    revoked_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1) if revoked else None
    index.write_text(index_line(cert, revoked_at=revoked_at))
    request, response = directory / "req.der", directory / "resp.der"
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=30)
    run(["openssl", "ocsp", "-issuer", str(issuer_pem), "-cert", str(cert_pem),
         "-reqout", str(request), "-no_nonce"])  # fmt: skip
    run(["openssl", "ocsp", "-index", str(index), "-rsigner", str(issuer_pem),
         "-rkey", str(issuer_key), "-CA", str(issuer_pem), "-reqin", str(request),
         "-respout", str(response), "-ndays", str(ndays)])  # fmt: skip
    return response.read_bytes()


class OpensslOcspResponder(_ChildServer):
    """``openssl ocsp -index ... -port`` answering for ``issuer``; stopped by PID at exit.

    ``openssl ocsp`` takes a port only; the tests only ever connect to it on 127.0.0.1.
    """

    def __init__(
        self, issuer: Issued, port: int, lines: Sequence[str], *, nmin: int | None = None
    ) -> None:
        super().__init__()
        self.issuer = issuer
        self.port = port
        self.lines = tuple(lines)
        self.nmin = nmin  # answers valid this many minutes (default: one day)
        self.index: Path | None = None

    def set_lines(self, lines: Sequence[str]) -> None:
        """Rewrite the index file; ``openssl ocsp`` reloads it when its mtime changes
        (whole seconds, so the mtime is moved on explicitly)."""
        assert self.index is not None
        before = self.index.stat().st_mtime
        self.index.write_text("".join(lines))
        os.utime(self.index, (before + 2, before + 2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> OpensslOcspResponder:
        d = self._workdir()
        index = self.index = d / "index.txt"
        index.write_text("".join(self.lines))
        validity = ["-nmin", str(self.nmin)] if self.nmin is not None else ["-ndays", "1"]
        issuer_pem = write_pem(d, "issuer.pem", self.issuer.pem)
        issuer_key = write_pem(d, "issuer.key", self.issuer.key_pem)
        self._spawn(
            ["openssl", "ocsp", "-index", str(index), "-port", str(self.port),
             "-rsigner", str(issuer_pem), "-rkey", str(issuer_key), "-CA", str(issuer_pem),
             *validity],
            b"waiting for OCSP client connections",
        )  # fmt: skip
        return self


def revocation_urls(
    *, ocsp_url: str | None = None, crl_url: str | None = None
) -> list[tuple[x509.ExtensionType, bool]]:
    """AIA OCSP and CRL distribution point extensions for ``CertFactory.leaf``."""
    out: list[tuple[x509.ExtensionType, bool]] = []
    if ocsp_url:
        out.append(
            (
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(ocsp_url),
                        )
                    ]
                ),
                False,
            )
        )
    if crl_url:
        out.append(
            (
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[x509.UniformResourceIdentifier(crl_url)],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )
                    ]
                ),
                False,
            )
        )
    return out


class CrlServer:
    """An aiohttp server on 127.0.0.1 serving ``body`` at /ca.crl, and answering any OCSP
    request POSTed to /ocsp with it too (``delay`` before answering, ``status`` as the
    HTTP status)."""

    def __init__(self) -> None:
        self.body = b""
        self.delay = 0.0
        self.status = 200
        self.stream_bytes = 0  # when set: a chunked body this long instead of ``body``
        self.hits = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ca.crl"

    @property
    def ocsp_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ocsp"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        if self.stream_bytes:
            return await self._stream(request)
        return web.Response(body=self.body, status=self.status, content_type="application/pkix-crl")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """``stream_bytes`` of DER-looking bytes, chunked, without a Content-Length."""
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"\x30" * (64 * 1024)
        with contextlib.suppress(ConnectionError):
            for _ in range(self.stream_bytes // len(chunk)):
                await response.write(chunk)
            await response.write_eof()
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ca.crl", self._serve)
        app.router.add_post("/ocsp", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.contextmanager
def leaf_with_responder(
    factory: CertFactory,
    root: Issued,
    *,
    revoked_at: dt.datetime | None = None,
    nmin: int | None = None,
) -> Iterator[tuple[Issued, OpensslOcspResponder]]:
    """A leaf whose AIA names a running ``openssl ocsp`` responder for ``root``.

    ``openssl ocsp -port`` binds every address, so a port free on 127.0.0.1 may be
    taken elsewhere: then another port (and leaf) is tried.
    """
    for _ in range(5):
        port = free_port()
        leaf = factory.leaf(
            root, extra_extensions=revocation_urls(ocsp_url=f"http://127.0.0.1:{port}/")
        )
        responder = OpensslOcspResponder(
            root, port, [index_line(leaf, revoked_at=revoked_at)], nmin=nmin
        )
        try:
            responder.__enter__()
        except RuntimeError as exc:
            if "Address already in use" not in str(exc):
                raise
            continue
        try:
            yield leaf, responder
        finally:
            responder.__exit__(None, None, None)
        return
    raise RuntimeError("no free port for openssl ocsp after 5 attempts")


def server_target(server: OpensslServer) -> TlsTarget:
    """The SIPS target the revocation tests dial: their leaves name sip.example.test."""
    return TlsTarget.sips("sip.example.test", connect_host="127.0.0.1", connect_port=server.port)
