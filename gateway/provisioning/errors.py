"""Errors of the provisioning client, under :class:`gateway.errors.GatewayError`."""

from __future__ import annotations

from gateway.errors import GatewayError


class ProvisioningError(GatewayError):
    """Root of the provisioning errors."""


class DocumentError(ProvisioningError):
    """A provisioning document could not be read at all (not UTF-8, not well-formed XML,
    a DTD or entity declaration, too large, too many entries); nothing was applied.

    ``line`` is where the problem was found, when known.
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class DocumentTooLarge(DocumentError):
    """The document is larger than the provisioning client accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The provisioning document is {size} bytes, more than the limit of {limit} "
            "bytes; nothing was applied. Split certificates out of the document or trim it."
        )
        self.size = size
        self.limit = limit


class ProvisioningUrlError(ProvisioningError):
    """``provisioning.url`` cannot be used (not HTTPS, an unknown placeholder, no MAC)."""
