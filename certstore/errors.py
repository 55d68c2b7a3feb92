"""The certstore exception hierarchy: one root, subclasses that carry data.

Messages are full sentences that say what was wrong and, where it helps, what to do.
"""

from __future__ import annotations


class CertStoreError(Exception):
    """Root of every error raised by the certstore package."""

    code: str = "certstore-error"


class InputError(CertStoreError):
    """Input from outside (an upload, a backup, a form field) was refused."""

    code = "invalid-input"


class ParseError(InputError):
    """Bytes that should hold certificates (or keys) could not be read."""

    code = "unparseable"

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class InputTooLarge(InputError):
    """An input exceeded the size the store accepts."""

    code = "too-large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"The {what} is {size} bytes, more than the limit of {limit} bytes; "
            "upload certificates one bundle at a time."
        )
        self.size = size
        self.limit = limit


class ValidationError(InputError):
    """A value has the right type but is not acceptable (a field too long, a bad scope)."""

    code = "invalid-value"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(CertStoreError):
    """The addressed object (certificate, pin, rejected chain) does not exist."""

    code = "not-found"

    def __init__(self, kind: str, key: str | int) -> None:
        super().__init__(f"No {kind} {key!s} exists in the store.")
        self.kind = kind
        self.key = key


class Conflict(CertStoreError):
    """The change contradicts the current state (e.g. no pending signing request)."""

    code = "conflict"


class StorageError(CertStoreError):
    """The persistent store could not be read or written (disk full, locked, corrupt)."""

    code = "storage-error"


class StoreUnreachable(StorageError):
    """The store's database server cannot be reached (stopped, restarting, cut off):
    nothing was read or written; the same request works again once it is back."""

    code = "store-unreachable"


class BackupError(InputError):
    """A backup document is malformed, of an unknown version, or fails its checksum."""

    code = "invalid-backup"
