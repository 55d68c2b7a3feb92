"""A real HTTPS provisioning server on 127.0.0.1, port 0, requiring HTTP digest auth.

The server side of RFC 7616 digest (MD5 or SHA-256, qop ``auth``) is done here: it
issues nonces, checks the response, the URI and the nonce count, and serves one
document with an ETag, answering ``If-None-Match`` with 304. Every request is logged
(method, path, headers, status) so tests can assert what the client sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

from tests.pki import Issued
from tests.tls_servers import server_context

REALM = "provisioning@sipsgate.test"
_PAIR = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}


def parse_digest(header: str) -> dict[str, str] | None:
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return None
    return {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _PAIR.finditer(rest)
    }


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class ProvisioningServer:
    """``async with ProvisioningServer(identity, ...) as server``: ``server.url(path)``."""

    identity: Issued
    username: str = "7C2F80C6E5C2"
    password: str = "s3cret-digest-pass"
    algorithm: str = "MD5"
    document: bytes = b""
    etag: str | None = '"v1"'
    content_type: str = "application/xml"
    # Statuses to answer (in order) before serving normally: e.g. [503, 503].
    fail_with: list[int] = field(default_factory=list)
    redirect_to: str | None = None
    require_auth: bool = True
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _nonces: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    requested: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/provisioning/{mac}.xml") -> str:
        return f"https://localhost:{self.port}{path}"

    def serve(self, document: bytes, etag: str | None) -> None:
        self.document = document
        self.etag = etag

    @property
    def served(self) -> list[Seen]:
        return [s for s in self.seen if s.status == 200]

    async def __aenter__(self) -> ProvisioningServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ctx: ssl.SSLContext = server_context(self.identity)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _challenge(self, stale: bool = False) -> str:
        nonce = os.urandom(16).hex()
        self._nonces[nonce] = 0
        value = (
            f'Digest realm="{REALM}", qop="auth", algorithm={self.algorithm}, '
            f'nonce="{nonce}", opaque="{os.urandom(8).hex()}"'
        )
        return value + (", stale=true" if stale else "")

    def _authorized(self, request: web.Request) -> bool:
        fields = parse_digest(request.headers.get("Authorization", ""))
        if fields is None:
            return False
        nonce = fields.get("nonce", "")
        if nonce not in self._nonces:
            return False
        if fields.get("username") != self.username or fields.get("realm") != REALM:
            return False
        if fields.get("uri") != request.raw_path or fields.get("qop") != "auth":
            return False
        if fields.get("algorithm", "MD5").upper() != self.algorithm:
            return False
        try:
            count = int(fields.get("nc", ""), 16)
        except ValueError:
            return False
        if count <= self._nonces[nonce]:
            return False  # a replayed nonce count
        digest = _HASHES[self.algorithm]
        ha1 = digest(f"{self.username}:{REALM}:{self.password}".encode())
        ha2 = digest(f"{request.method}:{fields['uri']}".encode())
        expected = digest(
            f"{ha1}:{nonce}:{fields.get('nc')}:{fields.get('cnonce', '')}:auth:{ha2}".encode()
        )
        if fields.get("response") != expected:
            return False
        self._nonces[nonce] = count
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.raw_path, dict(request.headers))
        self.seen.append(seen)
        response = self._respond(request)
        seen.status = response.status
        self.requested.set()
        return response

    def _respond(self, request: web.Request) -> web.Response:
        if self.require_auth and not self._authorized(request):
            return web.Response(
                status=401, headers={"WWW-Authenticate": self._challenge()}, text="401"
            )
        if self.fail_with:
            return web.Response(status=self.fail_with.pop(0), text="try later")
        if self.redirect_to is not None:
            return web.Response(status=302, headers={"Location": self.redirect_to})
        headers = {"Content-Type": self.content_type}
        if self.etag is not None:
            headers["ETag"] = self.etag
            if request.headers.get("If-None-Match") == self.etag:
                return web.Response(status=304, headers={"ETag": self.etag})
        return web.Response(status=200, body=self.document, headers=headers)
