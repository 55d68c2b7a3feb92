"""The engine and connector against real TLS servers on loopback, with a stand-in policy.

These pin down the mechanics (handshake, alerts, SNI, no resumption, client
certificates, timeouts, close_notify, the registry); the trust matrix against the
real decision lives in ``test_tls_matrix.py``.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest
from structlog.testing import capture_logs

from gateway.errors import (
    ClientCertificateRefused,
    TlsConnectError,
    TlsError,
    TlsHandshakeError,
    TlsTimeout,
    TrustRejected,
)
from gateway.metrics import MetricsRegistry
from gateway.tls import ClientIdentity, TlsConnector, TlsSettings, TlsTarget
from tests.doubles import FakePolicy
from tests.integration.conftest import Hierarchy
from tests.pki import CertFactory
from tests.tls_servers import GREETING, WAIT, OpensslServer, TlsEchoServer, server_context


def target_for(server: TlsEchoServer, host: str = "sip.example.test") -> TlsTarget:
    return TlsTarget.sips(host, connect_host="127.0.0.1", connect_port=server.port)


def openssl_target(server: OpensslServer, host: str = "sip.example.test") -> TlsTarget:
    return TlsTarget.sips(host, connect_host="127.0.0.1", connect_port=server.port)


async def read_line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), WAIT)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), WAIT)


def events(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == name]


class TestAcceptedConnection:
    async def test_data_flows_both_ways_after_an_accepted_handshake(
        self, hierarchy: Hierarchy
    ) -> None:
        """An accepted chain gives a working stream pair; the policy saw the whole chain."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint})
        connector = TlsConnector(policy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            reader, writer = await connector.open_connection(target_for(server))
            assert await read_line(reader) == GREETING
            writer.write(b"OPTIONS sip:x SIP/2.0\n")
            assert await read_line(reader) == b"OPTIONS sip:x SIP/2.0\n"
            await close(writer)
            await asyncio.wait_for(server.closed_by_peer.wait(), WAIT)
        chain, target = policy.decisions[0]
        assert chain == (hierarchy.leaf.der, hierarchy.intermediate.der)
        assert target.host == "sip.example.test"
        assert policy.recorded == []

    async def test_logs_the_decision_and_the_completed_handshake(
        self, hierarchy: Hierarchy
    ) -> None:
        """trust.decision and tls.handshake.complete carry peer, SNI, rule and leaf."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            with capture_logs() as logs:
                _, writer = await connector.open_connection(target_for(server))
                await close(writer)
        (started,) = events(logs, "tls.handshake.started")
        (decision,) = events(logs, "trust.decision")
        (complete,) = events(logs, "tls.handshake.complete")
        assert decision["verdict"] == "accept"
        assert decision["rule"] == "chain-valid"
        assert decision["reasons"] == []
        assert decision["leaf_fingerprint"] == hierarchy.leaf.fingerprint
        assert decision["peer"] == "sip.example.test:5061"
        assert decision["sni"] == "sip.example.test"
        assert decision["conn_id"] == started["conn_id"] == complete["conn_id"]
        assert complete["tls_version"] == "TLSv1.3"
        assert not any("PRIVATE KEY" in repr(e) for e in logs)

    async def test_close_sends_close_notify(self, hierarchy: Hierarchy) -> None:
        """Closing the writer ends the server's read cleanly (close_notify, no error)."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            reader, writer = await connector.open_connection(target_for(server))
            await read_line(reader)
            await close(writer)
            await asyncio.wait_for(server.closed_by_peer.wait(), WAIT)
            assert server.handshake_errors == []

    async def test_server_close_notify_ends_the_stream(self, hierarchy: Hierarchy) -> None:
        """When the server closes, the reader sees a clean end of stream."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            reader, writer = await connector.open_connection(target_for(server))
            await read_line(reader)
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        await close(writer)

    async def test_bulk_data_round_trips(self, hierarchy: Hierarchy) -> None:
        """Writes larger than a TLS record arrive whole and in order."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        payload = b"".join(b"%07d" % i for i in range(40000)) + b"\n"
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            reader = asyncio.StreamReader(limit=len(payload) * 2)
            transport, _protocol = await connector.create_connection(
                lambda: asyncio.StreamReaderProtocol(reader), target_for(server)
            )
            await read_line(reader)
            transport.write(payload)
            assert await asyncio.wait_for(reader.readexactly(len(payload)), WAIT) == payload
            transport.close()

    async def test_pause_reading_holds_back_decrypted_data(self, hierarchy: Hierarchy) -> None:
        """While the protocol has paused reading, no data_received; resume delivers it all."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        payload = b"x" * 200_000 + b"\n"
        expected = len(GREETING) + len(payload)

        class Pausing(asyncio.Protocol):
            def __init__(self) -> None:
                self.chunks: list[bytes] = []
                self.transport: asyncio.Transport | None = None
                self.paused = asyncio.Event()
                self.complete = asyncio.Event()

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.chunks.append(data)
                if sum(map(len, self.chunks)) > len(GREETING) and not self.paused.is_set():
                    assert self.transport is not None
                    self.transport.pause_reading()
                    self.paused.set()
                if sum(map(len, self.chunks)) >= expected:
                    self.complete.set()

        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            transport, protocol = await connector.create_connection(Pausing, target_for(server))
            transport.write(payload)
            await asyncio.wait_for(protocol.paused.wait(), WAIT)
            seen = len(protocol.chunks)
            for _ in range(50):  # let the loop run; nothing may arrive while paused
                await asyncio.sleep(0)
            assert len(protocol.chunks) == seen
            assert not transport.is_reading()
            transport.resume_reading()
            await asyncio.wait_for(protocol.complete.wait(), WAIT)
            assert b"".join(protocol.chunks) == GREETING + payload
            transport.close()
            await transport.wait_closed()


class TestRejectedConnection:
    async def test_rejection_aborts_the_handshake_with_an_alert(self, hierarchy: Hierarchy) -> None:
        """A rejected chain raises TrustRejected and the server sees a fatal alert."""
        policy = FakePolicy()
        connector = TlsConnector(policy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            with pytest.raises(TrustRejected) as info:
                await connector.open_connection(target_for(server))
            await asyncio.wait_for(server.failed.wait(), WAIT)
        assert "alert unknown ca" in server.error_text
        assert server.handshakes == 0
        assert server.received == []
        error = info.value
        assert error.verdict.rule == "untrusted"
        assert error.verdict.reasons == ("unknown-issuer",)
        assert error.peer is not None
        assert error.peer.host == "sip.example.test"
        assert "sips:sip.example.test:5061" in str(error)
        assert "unknown-issuer" in str(error)

    async def test_rejection_is_recorded_from_the_same_handshake(
        self, hierarchy: Hierarchy
    ) -> None:
        """The chain is recorded once, from the failed handshake; no second connection."""
        policy = FakePolicy()
        connector = TlsConnector(policy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            with pytest.raises(TrustRejected):
                await connector.open_connection(target_for(server))
        assert len(policy.decisions) == 1
        (recorded,) = policy.recorded
        assert recorded.chain == (hierarchy.leaf.der, hierarchy.intermediate.der)

    async def test_no_record_leaves_the_store_alone(self, hierarchy: Hierarchy) -> None:
        """With recording off a rejection is still raised but nothing is recorded."""
        policy = FakePolicy()
        connector = TlsConnector(policy, record=False)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            with pytest.raises(TrustRejected):
                await connector.open_connection(target_for(server))
        assert policy.recorded == []

    async def test_rejection_is_logged_and_counted(self, hierarchy: Hierarchy) -> None:
        """trust.decision says reject with its reasons; counters count rule and reason."""
        metrics = MetricsRegistry()
        connector = TlsConnector(FakePolicy(), metrics=metrics)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            with capture_logs() as logs, pytest.raises(TrustRejected):
                await connector.open_connection(target_for(server))
        (decision,) = events(logs, "trust.decision")
        assert decision["verdict"] == "reject"
        assert decision["reasons"] == ["unknown-issuer"]
        assert decision["log_level"] == "warning"
        (failed,) = events(logs, "tls.handshake.failed")
        assert failed["kind"] == "rejected"
        assert "unknown-issuer" in str(failed["error"])
        text = metrics.render()
        assert (
            'sipsgate_tls_handshakes_total{transport="sips",verdict="reject",rule="untrusted"} 1'
            in text
        )
        assert (
            'sipsgate_tls_handshake_reasons_total{transport="sips",rule="untrusted",'
            'reason="unknown-issuer"} 1' in text
        )

    async def test_a_failing_policy_refuses_the_connection(self, hierarchy: Hierarchy) -> None:
        """If the policy raises, the handshake is aborted and the cause is kept."""
        policy = FakePolicy(fail_with=RuntimeError("store is locked"))
        connector = TlsConnector(policy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            with pytest.raises(TlsHandshakeError) as info:
                await connector.open_connection(target_for(server))
            await asyncio.wait_for(server.failed.wait(), WAIT)
        assert "store is locked" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert server.handshakes == 0

    async def test_a_handshake_without_a_decision_is_refused(
        self, hierarchy: Hierarchy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the verify callback ever let a handshake through undecided, no data flows."""
        from gateway.tls import engine

        monkeypatch.setattr(engine._Verification, "on_verify", lambda *args: True)
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint})
        async with TlsEchoServer(server_context(hierarchy.leaf), greet=False) as server:
            with pytest.raises(TlsHandshakeError, match="without a certificate being checked"):
                await TlsConnector(policy).open_connection(target_for(server))
            await asyncio.wait_for(server.closed_by_peer.wait(), WAIT)
        assert server.received == []
        assert policy.decisions == []

    async def test_a_failing_protocol_factory_leaks_nothing(self, hierarchy: Hierarchy) -> None:
        """If the caller's protocol cannot start, the connection is dropped, not leaked."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))

        def broken() -> asyncio.Protocol:
            raise RuntimeError("no protocol today")

        async with TlsEchoServer(server_context(hierarchy.leaf), greet=False) as server:
            with pytest.raises(RuntimeError, match="no protocol today"):
                await connector.create_connection(broken, target_for(server))
            await asyncio.wait_for(server.closed_by_peer.wait(), WAIT)
        assert len(connector.registry) == 0


class TestHandshakeDetails:
    async def test_sni_is_sent_for_a_host_name(self, hierarchy: Hierarchy) -> None:
        """The server sees the target's host name as SNI."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            _, writer = await connector.open_connection(target_for(server))
            await close(writer)
        assert server.sni == ["sip.example.test"]

    async def test_no_sni_for_an_ip_literal(self, pki: CertFactory) -> None:
        """For an IP literal target no SNI is sent (RFC 6066)."""
        leaf = pki.leaf(None, cn="127.0.0.1", dns=(), ips=("127.0.0.1",))
        connector = TlsConnector(FakePolicy(trusted={leaf.fingerprint}))
        async with TlsEchoServer(server_context(leaf)) as server:
            _, writer = await connector.open_connection(TlsTarget.sips("127.0.0.1", server.port))
            await close(writer)
        assert server.sni in ([], [None])

    async def test_every_connection_is_a_full_handshake(self, hierarchy: Hierarchy) -> None:
        """No session is resumed: each connection is decided again."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint})
        connector = TlsConnector(policy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            for _ in range(3):
                reader, writer = await connector.open_connection(target_for(server))
                await read_line(reader)
                await close(writer)
        assert len(policy.decisions) == 3
        assert server.session_reused == [False, False, False]

    async def test_tls12_server_is_accepted(self, hierarchy: Hierarchy) -> None:
        """A TLS 1.2-only server works with the default minimum."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        ctx = server_context(hierarchy.leaf, max_version=ssl.TLSVersion.TLSv1_2)
        async with TlsEchoServer(ctx) as server:
            reader, writer = await connector.open_connection(target_for(server))
            assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
            assert await read_line(reader) == GREETING
            await close(writer)

    async def test_tls12_server_is_refused_when_the_minimum_is_13(
        self, hierarchy: Hierarchy
    ) -> None:
        """With min_version 1.3 a TLS 1.2-only server fails with the version named."""
        connector = TlsConnector(
            FakePolicy(trusted={hierarchy.leaf.fingerprint}),
            settings=TlsSettings(min_version="1.3"),
        )
        with (
            OpensslServer(hierarchy.leaf, extra_args=["-tls1_2"]) as server,
            pytest.raises(TlsHandshakeError) as info,
        ):
            await connector.open_connection(openssl_target(server))
        assert "protocol version" in " ".join(info.value.openssl_reasons)
        assert "TLS 1.2 or 1.3" in str(info.value)

    async def test_tls11_server_is_refused(self, hierarchy: Hierarchy) -> None:
        """A server stuck at TLS 1.1 is refused with advice to enable TLS 1.2."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        args = ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]
        with (
            OpensslServer(hierarchy.leaf, extra_args=args) as server,
            pytest.raises(TlsHandshakeError) as info,
        ):
            await connector.open_connection(openssl_target(server))
        assert info.value.openssl_reasons
        assert "TLS 1.2" in str(info.value)

    async def test_asyncio_server_refusing_the_version_is_a_handshake_error(
        self, hierarchy: Hierarchy
    ) -> None:
        """A server that hangs up without an alert still gives a handshake error."""
        connector = TlsConnector(
            FakePolicy(trusted={hierarchy.leaf.fingerprint}),
            settings=TlsSettings(min_version="1.3"),
        )
        ctx = server_context(hierarchy.leaf, max_version=ssl.TLSVersion.TLSv1_2)
        async with TlsEchoServer(ctx) as server:
            with pytest.raises(TlsHandshakeError) as info:
                await connector.open_connection(target_for(server))
        assert "during the TLS handshake" in str(info.value)

    async def test_a_plain_tcp_server_is_named_as_such(self) -> None:
        """Talking to a non-TLS port says so and suggests the TLS port."""

        async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"SIP/2.0 400 Bad Request\r\n\r\n" * 4)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(plain, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(TlsHandshakeError) as info:
                await TlsConnector(FakePolicy()).open_connection(
                    TlsTarget.sips("sip.example.test", connect_host="127.0.0.1", connect_port=port)
                )
        finally:
            server.close()
            await server.wait_closed()
        assert "5061" in str(info.value)

    async def test_refused_connection_is_a_connect_error(self) -> None:
        """A closed port gives TlsConnectError naming the address."""
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(TlsConnectError) as info:
            await TlsConnector(FakePolicy()).open_connection(
                TlsTarget.sips("sip.example.test", connect_host="127.0.0.1", connect_port=port)
            )
        assert f"127.0.0.1:{port}" in str(info.value)

    async def test_silent_server_times_out(self) -> None:
        """A server that accepts TCP but never answers hits the handshake timeout."""
        silent: list[asyncio.StreamWriter] = []

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            silent.append(writer)

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connector = TlsConnector(FakePolicy(), settings=TlsSettings(handshake_timeout=0.3))
        try:
            with capture_logs() as logs, pytest.raises(TlsTimeout) as info:
                await connector.open_connection(
                    TlsTarget.sips("sip.example.test", connect_host="127.0.0.1", connect_port=port)
                )
        finally:
            for writer in silent:
                writer.close()
            server.close()
            await server.wait_closed()
        assert info.value.timeout == 0.3
        assert "tls.handshake_timeout" in str(info.value)
        assert events(logs, "tls.handshake.failed")[0]["kind"] == "timeout"

    async def test_server_closing_during_the_handshake(self) -> None:
        """A server that hangs up mid-handshake gives a handshake error, not a hang."""

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(TlsHandshakeError) as info:
                await TlsConnector(FakePolicy()).open_connection(
                    TlsTarget.sips("sip.example.test", connect_host="127.0.0.1", connect_port=port)
                )
        finally:
            server.close()
            await server.wait_closed()
        assert "handshake" in str(info.value)

    async def test_cancelling_a_connect_leaks_nothing(self, hierarchy: Hierarchy) -> None:
        """Cancelling during the handshake closes the socket (no ResourceWarning)."""
        entered = asyncio.Event()
        left = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            entered.set()
            await reader.read()
            writer.close()
            left.set()

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connector = TlsConnector(FakePolicy())
        try:
            task = asyncio.create_task(
                connector.open_connection(
                    TlsTarget.sips("sip.example.test", connect_host="127.0.0.1", connect_port=port)
                )
            )
            await asyncio.wait_for(entered.wait(), WAIT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(left.wait(), WAIT)  # the server saw the socket close
        finally:
            server.close()
            await server.wait_closed()
        assert len(connector.registry) == 0


class TestClientCertificate:
    @pytest.fixture
    def client(self, hierarchy: Hierarchy) -> ClientIdentity:
        device = hierarchy.factory.leaf(
            hierarchy.intermediate, cn="dect-base-1", dns=(), server_auth=False, client_auth=True
        )
        return ClientIdentity(
            chain_der=(device.der, hierarchy.intermediate.der), private_key_pem=device.key_pem
        )

    async def test_identity_is_presented_when_the_server_asks(
        self, hierarchy: Hierarchy, client: ClientIdentity
    ) -> None:
        """Mutual TLS: the server receives the device certificate."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint}, identity=client)
        ctx = server_context(hierarchy.leaf, require_client_ca=hierarchy.root)
        async with TlsEchoServer(ctx) as server:
            reader, writer = await TlsConnector(policy).open_connection(target_for(server))
            assert await read_line(reader) == GREETING
            await close(writer)
        assert server.client_certs == [client.chain_der[0]]

    async def test_without_identity_a_tls13_server_ends_the_connection(
        self, hierarchy: Hierarchy
    ) -> None:
        """TLS 1.3: the server's "certificate required" alert reaches the reader."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint})
        with OpensslServer(hierarchy.leaf, client_ca=hierarchy.root) as server:
            reader, writer = await TlsConnector(policy).open_connection(openssl_target(server))
            with pytest.raises(TlsError) as info:
                await read_line(reader)
            writer.close()
            with pytest.raises(TlsError):
                await asyncio.wait_for(writer.wait_closed(), WAIT)
        assert "certificate required" in str(info.value)

    async def test_without_identity_a_tls12_server_fails_the_handshake(
        self, hierarchy: Hierarchy
    ) -> None:
        """TLS 1.2: the handshake itself fails, and the error says why."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint})
        with (
            OpensslServer(
                hierarchy.leaf, client_ca=hierarchy.root, extra_args=["-tls1_2"]
            ) as server,
            pytest.raises(TlsHandshakeError) as info,
        ):
            await TlsConnector(policy).open_connection(openssl_target(server))
        assert "handshake failure" in " ".join(info.value.openssl_reasons)
        assert "client certificate" in str(info.value)

    async def test_an_identity_the_server_does_not_trust_is_refused(
        self, hierarchy: Hierarchy, client: ClientIdentity
    ) -> None:
        """A client certificate from another CA: the server's alert is reported."""
        other_root = hierarchy.factory.ca("Another Root")
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint}, identity=client)
        with (
            OpensslServer(hierarchy.leaf, client_ca=other_root, extra_args=["-tls1_2"]) as server,
            pytest.raises(TlsHandshakeError) as info,
        ):
            await TlsConnector(policy).open_connection(openssl_target(server))
        assert "unknown ca" in " ".join(info.value.openssl_reasons)
        assert isinstance(info.value, ClientCertificateRefused)
        assert "refused sipsgate's client certificate" in str(info.value)

    async def test_identity_is_presented_to_openssl_s_server(
        self, hierarchy: Hierarchy, client: ClientIdentity
    ) -> None:
        """Mutual TLS against openssl s_server: the request is answered."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint}, identity=client)
        with OpensslServer(hierarchy.leaf, client_ca=hierarchy.root) as server:
            reader, writer = await TlsConnector(policy).open_connection(openssl_target(server))
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            assert (await read_line(reader)).startswith(b"HTTP/1.0 200")
            await close(writer)


class TestRegistry:
    async def test_live_connections_are_listed_until_closed(self, hierarchy: Hierarchy) -> None:
        """The registry shows peer and leaf while open, and forgets on close."""
        connector = TlsConnector(FakePolicy(trusted={hierarchy.leaf.fingerprint}))
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            _reader, writer = await connector.open_connection(target_for(server))
            (live,) = list(connector.registry)
            assert live.leaf_fingerprint == hierarchy.leaf.fingerprint
            assert live.describe()["peer"] == "sip.example.test:5061"
            assert connector.metrics.open.value(transport="sips") == 1
            await close(writer)
        assert len(connector.registry) == 0
        assert connector.metrics.open.value(transport="sips") == 0

    async def test_revalidate_closes_flows_that_would_now_be_rejected(
        self, hierarchy: Hierarchy
    ) -> None:
        """Withdrawn trust closes the open flow; its reader gets TrustRejected."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint})
        connector = TlsConnector(policy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            reader, writer = await connector.open_connection(target_for(server))
            await read_line(reader)
            assert connector.revalidate() == []
            policy.trusted.clear()
            with capture_logs() as logs:
                (closed,) = connector.revalidate()
            assert closed.revoked_by is not None
            with pytest.raises(TrustRejected):
                await read_line(reader)
            await asyncio.wait_for(server.closed_by_peer.wait(), WAIT)
            writer.close()
            with pytest.raises(TrustRejected):
                await asyncio.wait_for(writer.wait_closed(), WAIT)
        assert events(logs, "tls.connection.revoked")[0]["reasons"] == ["unknown-issuer"]
        assert len(connector.registry) == 0

    async def test_revalidate_keeps_flows_when_the_setting_is_off(
        self, hierarchy: Hierarchy
    ) -> None:
        """With close_flows_on_revoke off, open flows stay open."""
        policy = FakePolicy(trusted={hierarchy.leaf.fingerprint}, close_on_revoke=False)
        connector = TlsConnector(policy)
        async with TlsEchoServer(server_context(hierarchy.leaf)) as server:
            reader, writer = await connector.open_connection(target_for(server))
            await read_line(reader)
            policy.trusted.clear()
            assert connector.revalidate() == []
            writer.write(b"still here\n")
            assert await read_line(reader) == b"still here\n"
            await close(writer)
