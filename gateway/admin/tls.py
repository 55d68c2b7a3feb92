"""The admin endpoint's server-side TLS, presenting the device identity.

The listening sockets keep one :class:`ssl.SSLContext` for their whole life. Its
``sni_callback`` runs at the start of every handshake (with or without SNI) and hands
the connection the context built from the *current* device identity, so a renewed or
installed certificate is served from the next connection on, without a restart.

Building a context needs the chain and key as a file: they are written to an anonymous
in-memory file (``memfd``), never to disk; where that is missing, to a 0600 file in a
0700 temporary directory that is removed at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from certstore.store import CertStore, DeviceIdentity
from certstore.x509 import to_pem
from gateway.errors import GatewayError

_MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class AdminTlsError(GatewayError):
    """The device identity cannot serve as the admin endpoint's HTTPS certificate."""


def identity_tag(identity: DeviceIdentity) -> str:
    """Changes whenever the chain or the key changes."""
    digest = hashlib.sha256()
    for cert in identity.chain:
        digest.update(bytes.fromhex(cert.fingerprint))
    digest.update(hashlib.sha256(identity.private_key_pem).digest())
    return digest.hexdigest()


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        fd = memfd_create("sipsgate-admin-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="sipsgate-tls-") as tmp:  # created 0700
        path = Path(tmp) / "identity.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        yield str(path)


def build_server_context(identity: DeviceIdentity, *, min_version: str = "1.2") -> ssl.SSLContext:
    """A server context presenting the identity's chain (leaf first) and key."""
    if not identity.chain:
        raise AdminTlsError("The device identity has no certificate; renew it.")
    try:
        version = _MIN_VERSIONS[min_version]
    except KeyError as exc:
        raise AdminTlsError(
            f'tls.min_version "{min_version}" is not supported; use "1.2" or "1.3".'
        ) from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = version
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    material = to_pem(identity.chain) + identity.private_key_pem
    try:
        with _pem_file(material) as path:
            context.load_cert_chain(path)
    except (ssl.SSLError, OSError) as exc:
        raise AdminTlsError(
            "The device certificate and its private key cannot be used for HTTPS "
            f"({exc}); install a matching chain and key, or clear the installed identity."
        ) from exc
    return context


class DeviceTls:
    """The admin endpoint's TLS context, following the device identity in the store.

    :meth:`reload` reads the store (blocking: call it from a worker thread or at
    start) and swaps in a new context when the identity changed.
    """

    def __init__(self, store: CertStore, *, min_version: str = "1.2") -> None:
        self._store = store
        self._min_version = min_version
        self._lock = threading.Lock()
        self._tag: str | None = None
        self._current: ssl.SSLContext | None = None
        self._outer: ssl.SSLContext | None = None
        self._identity: DeviceIdentity | None = None

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 of the certificate currently served."""
        identity = self._identity
        return None if identity is None else identity.certificate.fingerprint

    def reload(self) -> bool:
        """Pick up a changed device identity; True when the served certificate changed."""
        identity = self._store.device_identity()
        if identity is None:
            raise AdminTlsError(
                "There is no device identity yet, so the admin endpoint has no HTTPS "
                "certificate; start the gateway once to create the standard identity."
            )
        tag = identity_tag(identity)
        with self._lock:
            if tag == self._tag:
                return False
        context = build_server_context(identity, min_version=self._min_version)
        with self._lock:
            self._tag = tag
            self._current = context
            self._identity = identity
        return True

    def set_min_version(self, min_version: str) -> None:
        if min_version not in _MIN_VERSIONS:
            raise AdminTlsError(
                f'tls.min_version "{min_version}" is not supported; use "1.2" or "1.3".'
            )
        with self._lock:
            changed = min_version != self._min_version
            self._min_version = min_version
            if changed:
                self._tag = None  # rebuilt at the next reload

    def server_context(self) -> ssl.SSLContext:
        """The context to give to the listening sockets (built once, then reused)."""
        with self._lock:
            if self._outer is not None:
                return self._outer
        if self._identity is None:
            self.reload()
        with self._lock:
            identity = self._identity
            assert identity is not None
            outer = build_server_context(identity, min_version=self._min_version)
            outer.sni_callback = self._select
            self._outer = outer
            return outer

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _ctx: object
    ) -> None:
        current = self._current
        if current is not None:
            connection.context = current
