"""The trust matrix: real certificates, real loopback handshakes, the real decision and
the real SQLite store. Each case asserts the verdict, the rule, the reasons and what
landed in the rejected list; every success has failure twins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs

from certstore.model import (
    Certificate,
    PinDecision,
    PinMatch,
    Reason,
    Rule,
    TrustKind,
    Verdict,
)
from certstore.store import DeviceIdentity
from certstore.x509 import parse_der
from gateway.errors import TrustRejected
from gateway.tls import TlsConnector, TlsTarget
from tests.integration.conftest import Hierarchy
from tests.integration.trust_env import ADMIN, Env
from tests.pki import CertFactory, Issued, make_key
from tests.tls_servers import GREETING, WAIT, TlsEchoServer, server_context

HOST = "sip.example.test"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    chain: tuple[Certificate, ...]
    greeting: bytes | None


async def connect(
    env: Env,
    server_identity: Issued,
    *,
    host: str = HOST,
    port: int | None = None,
    scheme: str = "sips",
    chain: Sequence[Issued] | None = None,
    weak: bool = False,
) -> Outcome:
    """One connection to a fresh loopback server presenting ``server_identity``."""
    ctx = server_context(server_identity, extra_chain=chain, weak=weak)
    async with TlsEchoServer(ctx) as server:
        target = TlsTarget(
            scheme=scheme,  # type: ignore[arg-type]
            host=host,
            port=port or 5061,
            connect_host="127.0.0.1",
            connect_port=server.port,
        )
        try:
            reader, writer = await env.connector.open_connection(target)
        except TrustRejected as exc:
            error = exc
        else:
            greeting = await asyncio.wait_for(reader.readline(), WAIT)
            check = writer.get_extra_info("tls_check")
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), WAIT)
            return Outcome(check.verdict, tuple(check.chain), greeting)
        # Rejected inside the handshake: the server got an alert and no application byte.
        await asyncio.wait_for(server.failed.wait(), WAIT)
        assert server.handshakes == 0
        assert server.received == []
        assert isinstance(error.verdict, Verdict)
        return Outcome(error.verdict, tuple(error.chain), None)


def accepted(outcome: Outcome, rule: Rule) -> None:
    assert outcome.verdict.accepted, outcome.verdict
    assert outcome.verdict.rule is rule
    assert outcome.greeting == GREETING


def rejected(outcome: Outcome, rule: Rule, *reasons: Reason) -> None:
    assert not outcome.verdict.accepted
    assert outcome.verdict.rule is rule
    for reason in reasons:
        assert reason in outcome.verdict.reasons, outcome.verdict.reasons
    assert outcome.greeting is None


@pytest.fixture(scope="module")
def h(pki: CertFactory) -> Hierarchy:
    root = pki.ca("Matrix Root CA")
    intermediate = pki.ca("Matrix Intermediate CA", issuer=root)
    leaf = pki.leaf(intermediate, cn=HOST, dns=(HOST,))
    return Hierarchy(pki, root, intermediate, leaf)


class TestChainValidation:
    async def test_trusted_ca(self, env: Env, h: Hierarchy) -> None:
        """Root on the trust list, leaf + intermediate sent: chain-valid, nothing recorded."""
        env.trust(h.root)
        outcome = await connect(env, h.leaf)
        accepted(outcome, Rule.CHAIN_VALID)
        assert outcome.verdict.reasons == ()
        assert [c.fingerprint for c in outcome.chain] == [
            h.leaf.fingerprint,
            h.intermediate.fingerprint,
        ]
        assert env.rejected() == ()

    async def test_unknown_ca(self, env: Env, h: Hierarchy) -> None:
        """Nothing trusted: rejected for unknown-issuer, the whole chain recorded."""
        outcome = await connect(env, h.leaf)
        rejected(outcome, Rule.UNTRUSTED, Reason.UNKNOWN_ISSUER)
        (entry,) = env.rejected()
        assert [c.fingerprint for c in entry.chain] == [
            h.leaf.fingerprint,
            h.intermediate.fingerprint,
        ]
        assert Reason.UNKNOWN_ISSUER in entry.reasons
        assert (entry.peer.host, entry.peer.port, entry.peer.transport.value) == (
            HOST,
            5061,
            "sips",
        )
        assert entry.peer.sni == HOST
        assert entry.overridden is False
        assert entry.count == 1

    async def test_repeated_rejection_bumps_the_count(self, env: Env, h: Hierarchy) -> None:
        """The same chain rejected twice is one entry seen twice."""
        await connect(env, h.leaf)
        await connect(env, h.leaf)
        (entry,) = env.rejected()
        assert entry.count == 2

    async def test_trusted_intermediate_as_anchor(self, env: Env, h: Hierarchy) -> None:
        """An intermediate on the trust list anchors the chain by itself."""
        env.trust(h.intermediate)
        accepted(await connect(env, h.leaf), Rule.CHAIN_VALID)

    async def test_trusted_end_entity(self, env: Env, pki: CertFactory) -> None:
        """A trusted server certificate is its own anchor (self-signed here)."""
        leaf = pki.leaf(None, cn=HOST, dns=(HOST,))
        env.trust(leaf, kind=TrustKind.SERVER)
        accepted(await connect(env, leaf), Rule.CHAIN_VALID)

    async def test_trusted_end_entity_twin_other_cert(self, env: Env, pki: CertFactory) -> None:
        """Trusting one server certificate does not trust another with the same name."""
        trusted = pki.leaf(None, cn=HOST, dns=(HOST,))
        env.trust(trusted, kind=TrustKind.SERVER)
        other = pki.leaf(None, cn=HOST, dns=(HOST,))
        outcome = await connect(env, other)
        # Same name as the trusted certificate but another key: it is a different
        # self-signed certificate, not one issued by the trusted one.
        rejected(outcome, Rule.UNTRUSTED, Reason.SELF_SIGNED)
        assert outcome.verdict.reasons == (Reason.SELF_SIGNED,)
        (entry,) = env.rejected()
        assert entry.chain[0].fingerprint == other.fingerprint

    async def test_missing_intermediate(self, env: Env, h: Hierarchy) -> None:
        """The server sends only its leaf: the root alone cannot anchor it."""
        env.trust(h.root)
        outcome = await connect(env, h.leaf, chain=())
        rejected(outcome, Rule.UNTRUSTED, Reason.UNKNOWN_ISSUER)
        (entry,) = env.rejected()
        assert [c.fingerprint for c in entry.chain] == [h.leaf.fingerprint]

    async def test_expired_leaf(self, env: Env, h: Hierarchy) -> None:
        """A leaf past its not-after is rejected as expired, even under a trusted root."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn=HOST, dns=(HOST,), valid_days=(-400, -2))
        outcome = await connect(env, leaf)
        rejected(outcome, Rule.UNTRUSTED, Reason.EXPIRED)
        assert Reason.UNKNOWN_ISSUER not in outcome.verdict.reasons
        (entry,) = env.rejected()
        assert Reason.EXPIRED in entry.reasons

    async def test_expired_intermediate(self, env: Env, h: Hierarchy) -> None:
        """An expired intermediate makes the chain expired."""
        env.trust(h.root)
        old = h.factory.ca("Old Intermediate", issuer=h.root, valid_days=(-800, -1))
        leaf = h.factory.leaf(old, cn=HOST, dns=(HOST,))
        rejected(await connect(env, leaf), Rule.UNTRUSTED, Reason.EXPIRED)

    async def test_not_yet_valid(self, env: Env, h: Hierarchy) -> None:
        """A leaf valid only from tomorrow is rejected as not-yet-valid."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn=HOST, dns=(HOST,), valid_days=(1, 300))
        rejected(await connect(env, leaf), Rule.UNTRUSTED, Reason.NOT_YET_VALID)

    async def test_self_signed(self, env: Env, pki: CertFactory) -> None:
        """An untrusted self-signed leaf is rejected as self-signed."""
        leaf = pki.leaf(None, cn=HOST, dns=(HOST,))
        outcome = await connect(env, leaf)
        rejected(outcome, Rule.UNTRUSTED, Reason.SELF_SIGNED)
        (entry,) = env.rejected()
        assert entry.chain[0].self_signed

    async def test_wrong_host(self, env: Env, h: Hierarchy) -> None:
        """A valid chain for another name is rejected as name-mismatch."""
        env.trust(h.root)
        outcome = await connect(env, h.leaf, host="other.example.test")
        rejected(outcome, Rule.UNTRUSTED, Reason.NAME_MISMATCH)
        assert outcome.verdict.reasons == (Reason.NAME_MISMATCH,)
        (entry,) = env.rejected()
        assert entry.peer.host == "other.example.test"


class TestIdentities:
    @pytest.fixture
    def wildcard(self, h: Hierarchy) -> Issued:
        return h.factory.leaf(h.intermediate, cn="*.example.test", dns=("*.example.test",))

    async def test_wildcard_refused_by_default_for_sips(
        self, env: Env, h: Hierarchy, wildcard: Issued
    ) -> None:
        """RFC 5922: a wildcard does not match a SIP domain unless allowed."""
        env.trust(h.root)
        rejected(await connect(env, wildcard), Rule.UNTRUSTED, Reason.NAME_MISMATCH)

    async def test_wildcard_accepted_with_allow_wildcards(
        self, env: Env, h: Hierarchy, wildcard: Issued
    ) -> None:
        """With allow_wildcards on, *.example.test matches sip.example.test."""
        env.trust(h.root)
        env.settings(allow_wildcards=True)
        accepted(await connect(env, wildcard), Rule.CHAIN_VALID)

    async def test_wildcard_never_matches_two_labels(
        self, env: Env, h: Hierarchy, wildcard: Issued
    ) -> None:
        """Even allowed, *.example.test does not match a.b.example.test."""
        env.trust(h.root)
        env.settings(allow_wildcards=True)
        outcome = await connect(env, wildcard, host="a.sip.example.test")
        rejected(outcome, Rule.UNTRUSTED, Reason.NAME_MISMATCH)

    async def test_sip_uri_san(self, env: Env, h: Hierarchy) -> None:
        """A sip: URI SAN names the SIP domain (RFC 5922)."""
        env.trust(h.root)
        leaf = h.factory.leaf(
            h.intermediate, cn="proxy1", dns=("proxy1.internal.test",), uris=(f"sip:{HOST}",)
        )
        accepted(await connect(env, leaf), Rule.CHAIN_VALID)

    async def test_sip_uri_san_for_another_domain(self, env: Env, h: Hierarchy) -> None:
        """A sip: URI SAN for another domain does not match."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn="p", dns=(), uris=("sip:other.example.test",))
        rejected(await connect(env, leaf), Rule.UNTRUSTED, Reason.NAME_MISMATCH)

    async def test_ip_san(self, env: Env, h: Hierarchy) -> None:
        """An IP literal target matches an IP SAN."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn="127.0.0.1", dns=(), ips=("127.0.0.1",))
        accepted(
            await connect(env, leaf, host="127.0.0.1", scheme="https", port=443), Rule.CHAIN_VALID
        )

    async def test_ip_san_for_another_address(self, env: Env, h: Hierarchy) -> None:
        """An IP SAN for another address does not match."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn="x", dns=(), ips=("127.0.0.2",))
        outcome = await connect(env, leaf, host="127.0.0.1", scheme="https", port=443)
        rejected(outcome, Rule.UNTRUSTED, Reason.NAME_MISMATCH)

    async def test_cn_only(self, env: Env, h: Hierarchy) -> None:
        """A certificate without SANs is matched by its CN."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn=HOST, san=False)
        accepted(await connect(env, leaf), Rule.CHAIN_VALID)

    async def test_cn_ignored_when_sans_exist(self, env: Env, h: Hierarchy) -> None:
        """With SANs present, a matching CN does not count."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn=HOST, dns=("elsewhere.example.test",))
        rejected(await connect(env, leaf), Rule.UNTRUSTED, Reason.NAME_MISMATCH)


class TestLegacyCertificates:
    async def test_v1_certificate(self, env: Env, h: Hierarchy) -> None:
        """A version-1 leaf (no extensions, CN identity) under a trusted root is accepted."""
        env.trust(h.root)
        leaf = h.factory.openssl_leaf(h.root, cn=HOST, version1=True)
        assert leaf.cert.version.name == "v1"
        outcome = await connect(env, leaf, chain=())
        accepted(outcome, Rule.CHAIN_VALID)
        assert outcome.chain[0].version == 1

    async def test_v1_certificate_twin_wrong_name(self, env: Env, h: Hierarchy) -> None:
        """A v1 leaf for another CN is a name mismatch."""
        env.trust(h.root)
        leaf = h.factory.openssl_leaf(h.root, cn="other.example.test", version1=True)
        rejected(await connect(env, leaf, chain=()), Rule.UNTRUSTED, Reason.NAME_MISMATCH)

    async def test_sha1_signature(self, env: Env, h: Hierarchy) -> None:
        """A SHA-1 signed leaf is rejected for its weak signature."""
        env.trust(h.root)
        leaf = h.factory.openssl_leaf(h.root, cn=HOST, digest="sha1")
        outcome = await connect(env, leaf, chain=(), weak=True)
        rejected(outcome, Rule.UNTRUSTED, Reason.WEAK_SIGNATURE)
        assert outcome.chain[0].weak_signature

    async def test_sha256_twin_of_the_sha1_case(self, env: Env, h: Hierarchy) -> None:
        """The same leaf made with SHA-256 by the same tool is accepted."""
        env.trust(h.root)
        leaf = h.factory.openssl_leaf(h.root, cn=HOST, digest="sha256")
        accepted(await connect(env, leaf, chain=()), Rule.CHAIN_VALID)

    async def test_rsa_1024(self, env: Env, h: Hierarchy) -> None:
        """A 1024-bit RSA leaf is rejected as weak-key (OpenSSL did not pre-empt us)."""
        env.trust(h.root)
        leaf = h.factory.leaf(h.intermediate, cn=HOST, dns=(HOST,), key="rsa1024")
        outcome = await connect(env, leaf, weak=True)
        rejected(outcome, Rule.UNTRUSTED, Reason.WEAK_KEY)
        (entry,) = env.rejected()
        assert Reason.WEAK_KEY in entry.reasons


class TestPins:
    async def test_pinned_accept_of_an_expired_self_signed_cert(
        self, env: Env, pki: CertFactory
    ) -> None:
        """An accept pin wins over expiry and self-signature; nothing is recorded."""
        leaf = pki.leaf(None, cn="dect-old", dns=("dect-old",), valid_days=(-900, -30))
        env.pin(leaf, PinDecision.ACCEPT)
        outcome = await connect(env, leaf)
        accepted(outcome, Rule.PINNED_ACCEPT)
        assert env.rejected() == ()

    async def test_pinned_reject_of_a_valid_cert(self, env: Env, h: Hierarchy) -> None:
        """A reject pin wins over a valid chain."""
        env.trust(h.root)
        env.pin(h.leaf, PinDecision.REJECT)
        outcome = await connect(env, h.leaf)
        rejected(outcome, Rule.PINNED_REJECT, Reason.PINNED_REJECT)
        assert outcome.verdict.reasons == (Reason.PINNED_REJECT,)

    async def test_pinned_reject_wins_over_accept_all(self, env: Env, h: Hierarchy) -> None:
        """Accept-all does not override a reject pin."""
        env.settings(accept_all_certificates=True)
        env.pin(h.leaf, PinDecision.REJECT)
        rejected(await connect(env, h.leaf), Rule.PINNED_REJECT)

    async def test_public_key_pin_survives_a_renewal(self, env: Env, pki: CertFactory) -> None:
        """A public-key pin accepts the renewed certificate with the same key."""
        key = make_key("ec")
        old = pki.leaf(None, cn=HOST, dns=(HOST,), key=key, valid_days=(-400, -1))
        renewed = pki.leaf(None, cn=HOST, dns=(HOST,), key=key, valid_days=(-1, 400))
        env.pin(old, PinDecision.ACCEPT, match=PinMatch.PUBLIC_KEY)
        accepted(await connect(env, renewed), Rule.PINNED_ACCEPT)

    async def test_certificate_pin_does_not_survive_a_renewal(
        self, env: Env, pki: CertFactory
    ) -> None:
        """A certificate pin does not accept the renewed certificate."""
        key = make_key("ec")
        old = pki.leaf(None, cn=HOST, dns=(HOST,), key=key)
        renewed = pki.leaf(None, cn=HOST, dns=(HOST,), key=key)
        env.pin(old, PinDecision.ACCEPT)
        rejected(await connect(env, renewed), Rule.UNTRUSTED, Reason.SELF_SIGNED)

    async def test_destination_scoped_pin_applies_to_its_destination(
        self, env: Env, pki: CertFactory
    ) -> None:
        """A pin scoped to sip.example.test:5061 accepts there."""
        leaf = pki.leaf(None, cn=HOST, dns=(HOST,))
        env.pin(leaf, PinDecision.ACCEPT, scope=f"{HOST}:5061")
        accepted(await connect(env, leaf), Rule.PINNED_ACCEPT)

    async def test_destination_scoped_pin_not_applying_elsewhere(
        self, env: Env, pki: CertFactory
    ) -> None:
        """The same pin does not apply to another destination (port 5062)."""
        leaf = pki.leaf(None, cn=HOST, dns=(HOST,))
        env.pin(leaf, PinDecision.ACCEPT, scope=f"{HOST}:5061")
        outcome = await connect(env, leaf, port=5062)
        rejected(outcome, Rule.UNTRUSTED, Reason.SELF_SIGNED)
        (entry,) = env.rejected()
        assert entry.peer.port == 5062

    async def test_expired_pin_does_not_apply(self, env: Env, pki: CertFactory) -> None:
        """An accept pin past its expiry no longer accepts (a day after it ended)."""
        leaf = pki.leaf(None, cn=HOST, dns=(HOST,))
        ends = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        env.pin(leaf, PinDecision.ACCEPT, expires_at=ends)
        env.connector = TlsConnector(env.policy, clock=lambda: ends + dt.timedelta(days=1))
        rejected(await connect(env, leaf), Rule.UNTRUSTED, Reason.SELF_SIGNED)

    async def test_pin_with_expiry_in_the_future_applies(self, env: Env, pki: CertFactory) -> None:
        """Its twin: an accept pin that expires next week accepts today."""
        leaf = pki.leaf(None, cn=HOST, dns=(HOST,))
        env.pin(leaf, PinDecision.ACCEPT, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=7))
        accepted(await connect(env, leaf), Rule.PINNED_ACCEPT)


class TestSettings:
    async def test_accept_all_records_overridden(self, env: Env, h: Hierarchy) -> None:
        """Accept-all lets an untrusted chain through and records it as overridden."""
        env.settings(accept_all_certificates=True)
        outcome = await connect(env, h.leaf)
        accepted(outcome, Rule.ACCEPT_ALL)
        assert Reason.UNKNOWN_ISSUER in outcome.verdict.reasons
        (entry,) = env.rejected()
        assert entry.overridden is True
        assert Reason.UNKNOWN_ISSUER in entry.reasons

    async def test_accept_all_with_a_valid_chain_records_nothing(
        self, env: Env, h: Hierarchy
    ) -> None:
        """Nothing was overridden, so nothing is recorded."""
        env.trust(h.root)
        env.settings(accept_all_certificates=True)
        outcome = await connect(env, h.leaf)
        assert outcome.verdict.accepted
        assert env.rejected() == ()

    async def test_trust_on_first_use_then_a_changed_key(self, env: Env, pki: CertFactory) -> None:
        """First contact pins the key; a later different key is rejected, old cert shown."""
        env.settings(trust_on_first_use=True)
        first = pki.leaf(None, cn=HOST, dns=(HOST,))
        accepted(await connect(env, first), Rule.FIRST_USE)
        pins = env.store.list_pins()
        assert [(p.match, p.fingerprint, p.scope) for p in pins] == [
            (PinMatch.PUBLIC_KEY, first.spki_fingerprint, f"{HOST}:5061")
        ]
        accepted(await connect(env, first), Rule.PINNED_ACCEPT)
        changed = pki.leaf(None, cn=HOST, dns=(HOST,))
        outcome = await connect(env, changed)
        assert not outcome.verdict.accepted
        assert Reason.KEY_CHANGED in outcome.verdict.reasons
        (entry,) = env.rejected()
        assert entry.chain[0].fingerprint == changed.fingerprint
        assert entry.previous is not None
        assert entry.previous.fingerprint == first.fingerprint

    async def test_trust_on_first_use_off_rejects_the_first_contact(
        self, env: Env, pki: CertFactory
    ) -> None:
        """Its twin: without TOFU, an unknown self-signed server is rejected, no pin made."""
        leaf = pki.leaf(None, cn=HOST, dns=(HOST,))
        rejected(await connect(env, leaf), Rule.UNTRUSTED, Reason.SELF_SIGNED)
        assert env.store.list_pins() == ()


class TestMutualTls:
    async def test_device_identity_is_presented(self, env: Env, h: Hierarchy) -> None:
        """The server requires a client certificate; the device identity is sent."""
        env.trust(h.root)
        device = h.factory.leaf(
            h.intermediate, cn="dect-base", dns=(), server_auth=False, client_auth=True
        )
        env.identity[0] = DeviceIdentity(
            kind="installed",
            chain=(parse_der(device.der), parse_der(h.intermediate.der)),
            private_key_pem=device.key_pem,
            created_at=dt.datetime.now(dt.UTC),
        )
        ctx = server_context(h.leaf, require_client_ca=h.root)
        async with TlsEchoServer(ctx) as server:
            reader, writer = await env.connector.open_connection(
                TlsTarget.sips(HOST, connect_host="127.0.0.1", connect_port=server.port)
            )
            assert await asyncio.wait_for(reader.readline(), WAIT) == GREETING
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), WAIT)
        assert server.client_certs == [device.der]


class TestLiveFlows:
    async def test_flow_closed_when_its_cert_is_pinned_reject(self, env: Env, h: Hierarchy) -> None:
        """An admin pins the live peer reject: revalidate closes the flow."""
        env.trust(h.root)
        async with TlsEchoServer(server_context(h.leaf)) as server:
            reader, writer = await env.connector.open_connection(
                TlsTarget.sips(HOST, connect_host="127.0.0.1", connect_port=server.port)
            )
            assert await asyncio.wait_for(reader.readline(), WAIT) == GREETING
            env.pin(h.leaf, PinDecision.REJECT)
            (closed,) = env.connector.revalidate()
            assert closed.revoked_by is not None
            assert closed.revoked_by.verdict.rule is Rule.PINNED_REJECT
            with pytest.raises(TrustRejected):
                await asyncio.wait_for(reader.readline(), WAIT)
            await asyncio.wait_for(server.closed_by_peer.wait(), WAIT)
            writer.close()
            with pytest.raises(TrustRejected):
                await asyncio.wait_for(writer.wait_closed(), WAIT)
        assert len(env.connector.registry) == 0

    async def test_watch_closes_the_flow_after_a_change_in_the_store(
        self, env: Env, h: Hierarchy
    ) -> None:
        """The watcher notices the new snapshot and closes the revoked flow by itself."""
        env.trust(h.root)
        async with TlsEchoServer(server_context(h.leaf)) as server, asyncio.TaskGroup() as tasks:
            reader, writer = await env.connector.open_connection(
                TlsTarget.sips(HOST, connect_host="127.0.0.1", connect_port=server.port)
            )
            await asyncio.wait_for(reader.readline(), WAIT)
            watcher = tasks.create_task(env.connector.watch_revocations(interval=0.02))
            await asyncio.to_thread(env.pin, h.leaf, PinDecision.REJECT)  # as another writer
            with pytest.raises(TrustRejected):
                await asyncio.wait_for(reader.readline(), WAIT)
            watcher.cancel()
            writer.close()
            with pytest.raises(TrustRejected):
                await asyncio.wait_for(writer.wait_closed(), WAIT)

    async def test_flow_kept_when_close_flows_on_revoke_is_off(
        self, env: Env, h: Hierarchy
    ) -> None:
        """With close_flows_on_revoke off the flow stays up."""
        env.trust(h.root)
        env.settings(close_flows_on_revoke=False)
        async with TlsEchoServer(server_context(h.leaf)) as server:
            reader, writer = await env.connector.open_connection(
                TlsTarget.sips(HOST, connect_host="127.0.0.1", connect_port=server.port)
            )
            await asyncio.wait_for(reader.readline(), WAIT)
            env.pin(h.leaf, PinDecision.REJECT)
            assert env.connector.revalidate() == []
            writer.write(b"ping\n")
            assert await asyncio.wait_for(reader.readline(), WAIT) == b"ping\n"
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), WAIT)


class TestSeedFlow:
    async def test_rejected_then_trusted_then_accepted_without_restart(
        self, env: Env, h: Hierarchy
    ) -> None:
        """Rejected → in the rejected list → admin trusts it → next connection accepted."""
        with capture_logs() as logs:
            first = await connect(env, h.leaf)
        rejected(first, Rule.UNTRUSTED, Reason.UNKNOWN_ISSUER)
        decision = [e for e in logs if e["event"] == "trust.decision"]
        assert decision[0]["verdict"] == "reject"
        assert decision[0]["leaf_fingerprint"] == h.leaf.fingerprint
        (entry,) = env.rejected()
        assert [c.fingerprint for c in entry.chain] == [
            h.leaf.fingerprint,
            h.intermediate.fingerprint,
        ]
        # The admin trusts the intermediate from the rejected list (as the API would).
        env.store.trust_rejected(entry.id, [h.intermediate.fingerprint], actor=ADMIN)
        assert env.rejected() == ()
        with capture_logs() as logs:
            second = await connect(env, h.leaf)
        accepted(second, Rule.CHAIN_VALID)
        assert [e["verdict"] for e in logs if e["event"] == "trust.decision"] == ["accept"]
