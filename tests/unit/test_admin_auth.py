"""Pure parts of the admin endpoint: listen addresses, throttling, sessions, passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.admin.auth import (
    AdminAuthError,
    LoginThrottle,
    PasswordVerifier,
    SessionTable,
    ensure_password,
    parse_basic,
    write_password,
)
from gateway.admin.server import parse_listen
from gateway.errors import ConfigError
from tests.doubles import ManualClock


class TestParseListen:
    @pytest.mark.parametrize(
        ("text", "host", "port", "tls"),
        [
            ("127.0.0.1:8443", "127.0.0.1", 8443, True),
            ("https://0.0.0.0:443", "0.0.0.0", 443, True),
            ("[::1]:0", "::1", 0, True),
            ("http://127.0.0.1:8080", "127.0.0.1", 8080, False),
            ("http://localhost:8080/", "localhost", 8080, False),
        ],
    )
    def test_accepted(self, text: str, host: str, port: int, tls: bool) -> None:
        address = parse_listen(text)
        assert (address.host, address.port, address.tls) == (host, port, tls)

    @pytest.mark.parametrize(
        "text", ["http://0.0.0.0:80", "http://192.0.2.1:8080", "http://[2001:db8::1]:80"]
    )
    def test_plain_http_off_loopback_is_refused(self, text: str) -> None:
        with pytest.raises(ConfigError, match="non-loopback"):
            parse_listen(text)

    @pytest.mark.parametrize("text", ["8443", "host:", "host:http", "[::1]8443", "h:70000"])
    def test_malformed(self, text: str) -> None:
        with pytest.raises(ConfigError, match=r"admin\.listen"):
            parse_listen(text)


class TestThrottle:
    def test_lockout_doubles_and_success_forgets(self) -> None:
        clock = ManualClock()
        throttle = LoginThrottle(clock, free_failures=3, base_seconds=2.0, max_seconds=10.0)
        assert [throttle.failure("a") for _ in range(2)] == [None, None]
        assert throttle.retry_after("a") is None
        assert throttle.failure("a") == 2.0
        assert throttle.retry_after("a") == pytest.approx(2.0)
        assert throttle.retry_after("b") is None  # per client
        assert throttle.failure("a") == 4.0
        assert throttle.failure("a") == 8.0
        assert throttle.failure("a") == 10.0  # capped
        clock.now += 10.5
        assert throttle.retry_after("a") is None
        throttle.success("a")
        assert throttle.failure("a") is None


class TestSessions:
    def test_login_replaces_the_session_and_expiry(self) -> None:
        clock = ManualClock()
        table = SessionTable(clock)
        pre = table.anonymous()
        assert not pre.authenticated
        session = table.login(pre.id)
        assert session.id != pre.id
        assert session.csrf_token != pre.csrf_token
        assert table.get(pre.id) is None
        assert table.get(session.id) is session
        assert session.csrf_ok(session.csrf_token)
        assert not session.csrf_ok(pre.csrf_token)
        assert not session.csrf_ok(None)
        clock.now += 31 * 60
        assert table.get(session.id) is None  # idle timeout


class TestPasswords:
    def test_write_verify_and_change(self, tmp_path: Path) -> None:
        write_password(tmp_path, "first password")
        assert (tmp_path / "admin.json").stat().st_mode & 0o777 == 0o600
        assert "first password" not in (tmp_path / "admin.json").read_text()
        verifier = PasswordVerifier(tmp_path)
        assert verifier.verify("first password")
        assert verifier.verify("first password")  # remembered
        assert not verifier.verify("First password")
        write_password(tmp_path, "second password")
        assert not verifier.verify("first password")
        assert verifier.verify("second password")

    def test_too_short_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(AdminAuthError, match="at least"):
            write_password(tmp_path, "short")
        assert not (tmp_path / "admin.json").exists()

    def test_first_start(self, tmp_path: Path) -> None:
        generated = ensure_password(tmp_path / "a", {})
        assert generated is not None
        assert len(generated) >= 20
        assert PasswordVerifier(tmp_path / "a").verify(generated)
        assert ensure_password(tmp_path / "a", {}) is None  # only once
        given = ensure_password(tmp_path / "b", {"SIPSGATE_ADMIN_PASSWORD": "from the env"})
        assert given is None
        assert PasswordVerifier(tmp_path / "b").verify("from the env")

    def test_damaged_file(self, tmp_path: Path) -> None:
        (tmp_path / "admin.json").write_text("{not json")
        with pytest.raises(AdminAuthError, match="damaged"):
            PasswordVerifier(tmp_path)

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("Basic YWRtaW46cGFzczp3b3Jk", ("admin", "pass:word")),
            ("basic YWRtaW46", ("admin", "")),
            ("Bearer abc", None),
            ("Basic !!!", None),
            ("Basic YWRtaW4=", None),
            (None, None),
        ],
    )
    def test_parse_basic(self, header: str | None, expected: tuple[str, str] | None) -> None:
        assert parse_basic(header) == expected
