"""Addresses, counts and times as people read them."""

from __future__ import annotations

import datetime as dt

import pytest

from certstore import notation
from certstore.model import Peer, Transport


@pytest.mark.parametrize(
    ("scheme", "host", "port", "written"),
    [
        ("sips", "sip.example.net", 5061, "sips:sip.example.net:5061"),
        ("https", "127.0.0.1", 8443, "https://127.0.0.1:8443"),
        ("sips", "::1", 5061, "sips:[::1]:5061"),
        ("https", "[2001:db8::1]", 443, "https://[2001:db8::1]:443"),
    ],
)
def test_uris_are_written_as_users_type_them(
    scheme: str, host: str, port: int, written: str
) -> None:
    assert notation.uri(scheme, host, port) == written
    assert notation.peer_uri(Peer(host=host, port=port, transport=Transport(scheme))) == written


def test_socket_addresses_are_host_port() -> None:
    assert notation.address(("127.0.0.1", 19561)) == "127.0.0.1:19561"
    assert notation.address(("::1", 5061, 0, 0)) == "[::1]:5061"
    assert notation.address(None) == "None"


def test_plural_and_time() -> None:
    assert notation.plural(1, "certificate") == "1 certificate"
    assert notation.plural(0, "certificate") == "0 certificates"
    assert notation.plural(2, "entry", "entries") == "2 entries"
    moment = dt.datetime(2026, 6, 1, 14, 0, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert notation.when(moment) == "2026-06-01 12:00:05 UTC"
