"""aiohttp's private connection hook has the shape the verifying connector overrides.

If one of these fails after an aiohttp upgrade, HTTPS would silently bypass
certificate pinning: adapt ``gateway/tls/aiohttp_connector.py`` before upgrading.
"""

from __future__ import annotations

import inspect

import aiohttp
import pytest

from gateway.tls.aiohttp_connector import (
    EXPECTED_HOOK_PARAMETERS,
    AiohttpHookChanged,
    VerifyingTCPConnector,
    check_aiohttp_hook,
)


def test_hook_signature_is_the_one_we_override() -> None:
    """TCPConnector._wrap_create_connection(self, *args, addr_infos, req, timeout, client_error, **kwargs)."""  # noqa: E501
    params = inspect.signature(aiohttp.TCPConnector._wrap_create_connection).parameters
    found = tuple((p.name, p.kind) for p in params.values())
    assert found == EXPECTED_HOOK_PARAMETERS, (
        "aiohttp changed TCPConnector._wrap_create_connection: HTTPS would bypass pinning"
    )


def test_our_override_keeps_the_same_signature() -> None:
    """The override accepts exactly what aiohttp passes."""
    ours = inspect.signature(VerifyingTCPConnector._wrap_create_connection).parameters
    theirs = inspect.signature(aiohttp.TCPConnector._wrap_create_connection).parameters
    assert [(p.name, p.kind) for p in ours.values()] == [(p.name, p.kind) for p in theirs.values()]


def test_hook_is_called_with_ssl_and_server_hostname() -> None:
    """_create_direct_connection passes ssl= and server_hostname= to the hook."""
    source = inspect.getsource(aiohttp.TCPConnector._create_direct_connection)
    call = source[source.index("self._wrap_create_connection(") :]
    for keyword in ("ssl=", "server_hostname=", "addr_infos=", "req=", "timeout="):
        assert keyword in call[:600]


def test_aiohttp_minor_is_the_pinned_one() -> None:
    """pyproject pins aiohttp 3.14.x; the hook was checked against that minor."""
    assert aiohttp.__version__.startswith("3.14.")


def test_check_passes_on_the_installed_aiohttp() -> None:
    """The runtime guard accepts the installed version."""
    check_aiohttp_hook()


def test_check_fails_loudly_when_the_hook_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed hook makes the guard raise with what changed and what to do."""

    async def changed(self: object, *args: object, addr_infos: object, req: object) -> None:
        raise AssertionError("never called")

    check_aiohttp_hook.cache_clear()
    monkeypatch.setattr(aiohttp.TCPConnector, "_wrap_create_connection", changed)
    try:
        with pytest.raises(AiohttpHookChanged, match="bypass certificate pinning"):
            check_aiohttp_hook()
    finally:
        monkeypatch.undo()
        check_aiohttp_hook.cache_clear()
    check_aiohttp_hook()
