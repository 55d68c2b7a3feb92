"""Parsed certificates by fingerprint, shared by a store's snapshots and row codecs.

Parsing DER is the expensive part of reading the trust state; a certificate read back
from any backend is parsed once and reused while it stays among the most recently used.
A stored certificate that does not parse, or whose fingerprint is not the one it was
stored under, is a damaged store (:class:`StorageError`), not bad input.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from certstore.errors import CertStoreError, StorageError
from certstore.model import Certificate
from certstore.x509 import parse_der

# Parsed certificates kept beyond those of the current trust list (rejected chains,
# pins, the device chain).
CERT_CACHE_SIZE = 4096


class CertificateCache:
    """A bounded LRU of parsed certificates. ``where`` names the store in error messages
    ("The certificate store /var/lib/sipsgate/sipsgate.db"). The lock is held only for
    dictionary operations, never while parsing."""

    def __init__(self, where: str, *, size: int = CERT_CACHE_SIZE) -> None:
        self._where = where
        self._size = size
        self._certs: OrderedDict[str, Certificate] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, fingerprint: str) -> Certificate | None:
        with self._lock:
            return self._certs.get(fingerprint)

    def forget(self, fingerprint: str) -> None:
        with self._lock:
            self._certs.pop(fingerprint, None)

    def remember(self, *certs: Certificate) -> None:
        with self._lock:
            for cert in certs:
                self._certs[cert.fingerprint] = cert
                self._certs.move_to_end(cert.fingerprint)
            while len(self._certs) > self._size:
                self._certs.popitem(last=False)

    def stored(self, der: bytes, fingerprint: str | None = None) -> Certificate:
        """The certificate a store row holds (``fingerprint`` when the row says it)."""
        key = fingerprint or hashlib.sha256(der).hexdigest()
        with self._lock:
            cached = self._certs.get(key)
            if cached is not None:
                self._certs.move_to_end(key)
                return cached
        try:
            cert = parse_der(bytes(der))
        except CertStoreError as exc:
            raise StorageError(
                f"{self._where} holds an unreadable certificate "
                f"({key[:16]}...): {exc} Restore the data directory from a backup."
            ) from exc
        if cert.fingerprint != key:
            raise StorageError(
                f"{self._where} is damaged: the certificate stored "
                f"as {key} has fingerprint {cert.fingerprint}."
            )
        self.remember(cert)
        return cert

    def untrusted(self, der: bytes) -> Certificate:
        """Parse outside input (a backup), reusing a cached certificate with the same
        DER; a parse failure is the input's fault and raises the parser's error."""
        cached = self.get(hashlib.sha256(der).hexdigest())
        if cached is not None:
            return cached
        cert = parse_der(der)
        self.remember(cert)
        return cert
