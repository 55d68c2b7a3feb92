"""The builtin CA certificates that ship with sipsgate (Mozilla's roots, from certifi).

The bundle is parsed once per process and cached: the store seeds a new data
directory with it and re-adds missing entries on "restore defaults".
"""

from __future__ import annotations

import functools
from pathlib import Path

import certifi

from certstore.errors import StorageError
from certstore.model import Certificate
from certstore.x509 import load_certificates

# The certifi bundle is about 230 KB; allow some growth, not an arbitrary file.
_MAX_BUNDLE_BYTES = 8 * 1024 * 1024


def bundle_path() -> Path:
    """Where the builtin bundle is read from."""
    return Path(certifi.where())


@functools.cache
def builtin_certificates() -> tuple[Certificate, ...]:
    """Every builtin CA certificate, parsed, in bundle order (cached after the first call)."""
    path = bundle_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StorageError(
            f"The builtin CA bundle {path} could not be read ({exc.strerror}); "
            "reinstall the certifi package."
        ) from exc
    return load_certificates(
        data, max_bytes=_MAX_BUNDLE_BYTES, what="builtin CA bundle"
    ).certificates


@functools.cache
def builtin_fingerprints() -> frozenset[str]:
    """SHA-256 fingerprints of the builtin CA certificates."""
    return frozenset(c.fingerprint for c in builtin_certificates())
