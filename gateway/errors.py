"""The gateway exception hierarchy: one root, subclasses that carry data."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error raised by the gateway package."""


class ConfigError(GatewayError):
    """The configuration is wrong; the message names the key path and the expected type."""


class UsageError(GatewayError):
    """A command line was given arguments that do not fit together."""
