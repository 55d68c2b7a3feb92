"""The provisioning client against a real HTTPS server with digest auth, on loopback.

The client goes through the production connector and trust policy over a real
SQLite store: the server's chain is decided like a SIPS peer's, a rejection lands in
the rejected list, and the stored digest credentials are what authenticates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from certstore.model import Actor, Settings, TrustSource
from certstore.store import DeviceIdentity
from certstore.x509 import parse_der
from gateway.metrics import MetricsRegistry
from gateway.provisioning.client import ProvisioningClient, RetryPolicy
from gateway.provisioning.result import FetchResult, FetchStatus, Trigger
from gateway.provisioning.service import ProvisioningService
from gateway.provisioning.state import ProvisioningState
from gateway.tls.engine import TlsTransport
from tests.integration.conftest import Hierarchy
from tests.integration.trust_env import Env, make_env
from tests.pki import Issued
from tests.provisioning_server import ProvisioningServer
from tests.tls_servers import OpensslServer

ADMIN = Actor(name="admin", interface="cli")
MAC = "7C2F80C6E5C2"
USER = "7C2F80C6E5C2"
PASSWORD = "s3cret-digest-pass"
WAIT = 10.0


def xml(*params: tuple[str, str], certs: tuple[Issued, ...] = ()) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<ProviderFrame>", "<Provider>"]
    lines += [f'  <param name="{n}" value="{v}"/>' for n, v in params]
    lines += [f"  <certificate>\n{c.pem.decode()}</certificate>" for c in certs]
    lines += ["</Provider>", "</ProviderFrame>", ""]
    return "\n".join(lines).encode()


ACCEPT_ALL = "SystemSettings.global.Security_Certificates_AcceptAllCertificates"


@dataclass
class Rig:
    env: Env
    state: ProvisioningState
    metrics: MetricsRegistry
    sleeps: list[float] = field(default_factory=list)

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.env.store

    def client(self, url: str, *, attempts: int = 3) -> ProvisioningClient:
        async def sleep(delay: float) -> None:
            self.sleeps.append(delay)

        return ProvisioningClient(
            store=self.env.store,
            settings=self.env.store.get_settings,
            tls=self.env.connector,
            state=self.state,
            url_template=url,
            name="sipsgate-test",
            mac=lambda: MAC,
            metrics=self.metrics,
            timeout=10.0,
            retry=RetryPolicy(attempts=attempts, backoff=0.01, max_backoff=0.05),
            sleep=sleep,
        )

    def snapshot(self) -> tuple[Settings, list[tuple[str, str]], int, int]:
        """The state a refused document must leave alone."""
        store = self.env.store
        trust = sorted((e.certificate.fingerprint, e.source.value) for e in store.list_trust())
        return store.get_settings(), trust, store.audit(limit=1)[0].id, store.generation()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    env = make_env(tmp_path / "store.db")
    try:
        yield Rig(env=env, state=ProvisioningState(tmp_path), metrics=MetricsRegistry())
    finally:
        env.store.close()


def localhost_leaf(h: Hierarchy) -> Issued:
    return h.factory.leaf(h.intermediate, cn="localhost", dns=("localhost",))


@pytest.fixture
async def server(hierarchy: Hierarchy) -> AsyncIterator[ProvisioningServer]:
    async with ProvisioningServer(localhost_leaf(hierarchy), username=USER, password=PASSWORD) as s:
        yield s


def ready(rig: Rig, h: Hierarchy, *, user: str = USER, password: str = PASSWORD) -> None:
    """Trust the test root and store the digest credentials."""
    rig.env.trust(h.root)
    rig.env.settings(http_auth_username=user, http_auth_password=password)


class TestDigestAuthentication:
    @pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
    async def test_correct_credentials_apply_the_document(
        self, rig: Rig, hierarchy: Hierarchy, algorithm: str
    ) -> None:
        """The stored credentials answer an MD5 or SHA-256 challenge; the document applies."""
        extra_ca = hierarchy.factory.ca("Provisioned Extra CA")
        async with ProvisioningServer(
            localhost_leaf(hierarchy), username=USER, password=PASSWORD, algorithm=algorithm
        ) as server:
            wildcards = ("Sipsgate.security.allow_wildcards", "1")
            server.serve(xml((ACCEPT_ALL, "1"), wildcards, certs=(extra_ca,)), '"v1"')
            ready(rig, hierarchy)
            result = await rig.client(server.url()).fetch(trigger=Trigger.DEMAND)
        assert result.status is FetchStatus.APPLIED, result.errors
        assert result.http_status == 200
        assert result.url == server.url(f"/provisioning/{MAC}.xml")
        settings = rig.store.get_settings()
        assert settings.accept_all_certificates is True
        assert settings.allow_wildcards is True
        entry = rig.store.get_trust(extra_ca.fingerprint)
        assert entry.source is TrustSource.PROVISIONED
        assert [s.status for s in server.seen] == [401, 200]
        auth = server.seen[1].headers["Authorization"]
        assert f"algorithm={algorithm}" in auth
        assert "qop=auth" in auth
        event = rig.store.audit(limit=5)
        assert {e.interface for e in event[:2]} == {"provisioning"}
        assert (
            rig.metrics.counter("sipsgate_provisioning_fetches_total", "", ("outcome",)).value(
                outcome="applied"
            )
            == 1
        )

    async def test_wrong_credentials_are_401_and_change_nothing(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """A refused digest response: status unauthorized, 401 recorded, store untouched."""
        server.serve(xml((ACCEPT_ALL, "1")), '"v1"')
        ready(rig, hierarchy, password="not-the-password")
        before = rig.snapshot()
        result = await rig.client(server.url()).fetch()
        assert result.status is FetchStatus.UNAUTHORIZED
        assert result.http_status == 401
        assert result.attempts == 1  # a 401 is not retried
        assert "refused the stored HTTP digest credentials" in result.errors[0]
        assert rig.snapshot() == before
        assert [s.status for s in server.seen] == [401, 401]
        last = rig.state.last_result()
        assert last is not None
        assert last.status is FetchStatus.UNAUTHORIZED
        assert last.http_status == 401

    async def test_no_credentials_stored_is_401_with_the_reason(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """Without a stored user name no credentials are sent; the error says so."""
        server.serve(xml((ACCEPT_ALL, "1")), '"v1"')
        rig.env.trust(hierarchy.root)
        result = await rig.client(server.url()).fetch()
        assert result.status is FetchStatus.UNAUTHORIZED
        assert "no HTTP digest credentials are set" in result.errors[0]
        assert "Authorization" not in server.seen[0].headers
        assert rig.store.get_settings().accept_all_certificates is False

    async def test_the_password_is_never_logged_returned_or_persisted(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer, tmp_path: Path
    ) -> None:
        """A document that changes the password: redacted in the result, the log and the
        state file; the next fetch authenticates with the new password."""
        new_password = "n3w-digest-password-42"
        server.serve(xml(("Security.global.HTTPAuthPassword", new_password)), '"v1"')
        ready(rig, hierarchy)
        client = rig.client(server.url())
        with capture_logs() as logs:
            result = await client.fetch()
        assert result.status is FetchStatus.APPLIED
        events = [e for e in logs if e["event"].startswith("provisioning.")]
        assert [e["event"] for e in events] == [
            "provisioning.fetch.started",
            "provisioning.fetch.applied",
        ]
        assert events[-1]["changed"] == ["http_auth_password"]
        assert result.apply is not None
        (change,) = result.apply.changes
        assert (change.old, change.new) == ("[redacted]", "[redacted]")
        assert rig.store.get_settings().http_auth_password == new_password
        texts = [
            json.dumps(result.to_dict()),
            repr(logs),
            (tmp_path / "provisioning.json").read_text(),
            repr(rig.store.audit(limit=10)),
        ]
        for text in texts:
            assert new_password not in text
            assert PASSWORD not in text
        assert (tmp_path / "provisioning.json").stat().st_mode & 0o777 == 0o600
        server.password = new_password  # the server side follows the provisioned password
        server.serve(xml((ACCEPT_ALL, "0")), '"v2"')
        again = await client.fetch()
        assert again.status is FetchStatus.UNCHANGED
        assert server.seen[-1].status == 200


class TestCertificateOfTheServer:
    async def test_untrusted_server_is_rejected_recorded_then_trusted(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """No trust anchor: the fetch is rejected in the handshake and the chain is in the
        rejected list; trusting its root through the store lets the next fetch apply."""
        server.serve(xml((ACCEPT_ALL, "1")), '"v1"')
        rig.env.settings(http_auth_username=USER, http_auth_password=PASSWORD)
        client = rig.client(server.url())
        result = await client.fetch()
        assert result.status is FetchStatus.REJECTED
        assert result.attempts == 1  # retrying cannot fix a rejected chain
        assert "untrusted" in result.errors[0]
        assert server.seen == []  # no request reached an unverified server
        (entry,) = rig.store.list_rejected()
        assert entry.peer.host == "localhost"
        assert entry.peer.transport.value == "https"
        assert entry.leaf.fingerprint == server.identity.fingerprint
        assert rig.store.get_settings().accept_all_certificates is False
        # The administrator trusts the chain's intermediate from the rejected list.
        rig.store.trust_rejected(entry.id, [hierarchy.intermediate.fingerprint], actor=ADMIN)
        assert rig.store.list_rejected() == ()
        again = await client.fetch()
        assert again.status is FetchStatus.APPLIED, again.errors
        assert rig.store.get_settings().accept_all_certificates is True

    async def test_accept_all_switched_on_then_off_by_the_next_document(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """Document 1 turns accept-all on, document 2 turns it off again."""
        ready(rig, hierarchy)
        client = rig.client(server.url())
        server.serve(xml((ACCEPT_ALL, "1")), '"v1"')
        first = await client.fetch()
        assert first.status is FetchStatus.APPLIED
        assert rig.store.get_settings().accept_all_certificates is True
        server.serve(xml((ACCEPT_ALL, "0")), '"v2"')
        second = await client.fetch(trigger=Trigger.INTERVAL)
        assert second.status is FetchStatus.APPLIED
        assert second.apply is not None
        assert [(c.old, c.new) for c in second.apply.changes] == [("1", "0")]
        assert rig.store.get_settings().accept_all_certificates is False
        assert server.served[-1].headers["If-None-Match"] == '"v1"'


class TestConditionalFetch:
    async def test_same_etag_is_not_modified_and_not_reapplied(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """The second fetch sends If-None-Match; the 304 applies nothing and audits nothing."""
        ready(rig, hierarchy)
        client = rig.client(server.url())
        server.serve(xml((ACCEPT_ALL, "1")), '"v1"')
        assert (await client.fetch()).status is FetchStatus.APPLIED
        # An admin turns accept-all off by hand: a 304 must not turn it back on.
        rig.env.settings(accept_all_certificates=False)
        before = rig.snapshot()
        second = await client.fetch()
        assert second.status is FetchStatus.NOT_MODIFIED
        assert second.http_status == 304
        assert second.ok
        assert server.seen[-1].headers["If-None-Match"] == '"v1"'
        assert server.seen[-1].status == 304
        assert rig.snapshot() == before
        forced = await client.fetch(force=True)
        assert forced.status is FetchStatus.APPLIED
        assert "If-None-Match" not in server.seen[-1].headers

    async def test_same_document_without_etag_is_unchanged_without_audit(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """No validators from the server: the document is applied again, changes nothing."""
        ready(rig, hierarchy)
        client = rig.client(server.url())
        server.serve(xml((ACCEPT_ALL, "1")), None)
        assert (await client.fetch()).status is FetchStatus.APPLIED
        before = rig.snapshot()
        again = await client.fetch()
        assert again.status is FetchStatus.UNCHANGED
        assert "If-None-Match" not in server.seen[-1].headers
        assert rig.snapshot() == before

    async def test_invalid_document_is_fetched_whole_next_time(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """A refused document keeps no validators: the fix is fetched, not 304'd away."""
        ready(rig, hierarchy)
        client = rig.client(server.url())
        server.serve(xml((ACCEPT_ALL, "2")), '"bad"')
        before = rig.snapshot()
        bad = await client.fetch()
        assert bad.status is FetchStatus.INVALID
        assert "must be 0 or 1" in bad.errors[0]
        assert rig.snapshot() == before
        second = await client.fetch()
        assert second.status is FetchStatus.INVALID
        assert "If-None-Match" not in server.seen[-1].headers


class TestFailures:
    async def test_server_errors_are_retried_with_backoff(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """Two 503s, then the document: applied on the third attempt after two waits."""
        ready(rig, hierarchy)
        server.serve(xml((ACCEPT_ALL, "1")), '"v1"')
        server.fail_with = [503, 503]
        result = await rig.client(server.url()).fetch()
        assert result.status is FetchStatus.APPLIED
        assert result.attempts == 3
        assert len(rig.sleeps) == 2
        assert rig.sleeps[1] > rig.sleeps[0]
        assert (
            result.errors[:2] == ("The provisioning server answered 503 Service Unavailable.",) * 2
        )

    async def test_retries_give_up_after_the_last_attempt(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        ready(rig, hierarchy)
        server.fail_with = [500, 500, 500]
        result = await rig.client(server.url(), attempts=3).fetch()
        assert result.status is FetchStatus.HTTP_ERROR
        assert result.http_status == 500
        assert result.attempts == 3

    async def test_not_found_is_not_retried(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        ready(rig, hierarchy)
        server.fail_with = [404]
        result = await rig.client(server.url()).fetch()
        assert result.status is FetchStatus.HTTP_ERROR
        assert result.attempts == 1
        assert rig.sleeps == []

    async def test_redirects_are_not_followed(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        ready(rig, hierarchy)
        server.redirect_to = "http://127.0.0.1:1/elsewhere.xml"
        result = await rig.client(server.url()).fetch()
        assert result.status is FetchStatus.HTTP_ERROR
        assert "redirects are not followed" in result.errors[0]
        assert len(server.seen) == 2  # the challenge and the authenticated request only

    async def test_huge_document_is_refused(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        ready(rig, hierarchy)
        before = rig.snapshot()
        server.serve(b"<a>" + b" " * (2 * 1024 * 1024) + b"</a>", '"big"')
        result = await rig.client(server.url()).fetch()
        assert result.status is FetchStatus.INVALID
        assert "more than the limit" in result.errors[0]
        assert rig.snapshot() == before

    async def test_nothing_listening_fails_after_retries(self, rig: Rig) -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        result = await rig.client(f"https://127.0.0.1:{port}/p.xml", attempts=2).fetch()
        assert result.status is FetchStatus.FAILED
        assert result.attempts == 2
        assert "could not be reached" in result.errors[-1]

    async def test_http_url_is_refused(self, rig: Rig) -> None:
        result = await rig.client("http://127.0.0.1:1/p.xml").fetch()
        assert result.status is FetchStatus.FAILED
        assert "must be an https:// URL" in result.errors[0]

    async def test_unset_url_is_not_configured(self, rig: Rig) -> None:
        result = await rig.client("").fetch()
        assert result.status is FetchStatus.NOT_CONFIGURED


class TestService:
    async def test_fetches_at_start_on_the_interval_and_on_demand(
        self, rig: Rig, hierarchy: Hierarchy, server: ProvisioningServer
    ) -> None:
        """serve(): a run at start, one per interval, one when triggered; cancel stops it."""
        ready(rig, hierarchy)
        server.serve(xml((ACCEPT_ALL, "1")), '"v1"')
        results: asyncio.Queue[FetchResult] = asyncio.Queue()
        service = ProvisioningService(
            rig.client(server.url()), interval=0.2, on_result=results.put_nowait
        )
        task = asyncio.create_task(service.serve())
        try:
            first = await asyncio.wait_for(results.get(), WAIT)
            assert (first.trigger, first.status) == (Trigger.START, FetchStatus.APPLIED)
            second = await asyncio.wait_for(results.get(), WAIT)
            assert (second.trigger, second.status) == (Trigger.INTERVAL, FetchStatus.NOT_MODIFIED)
            service.interval = 3600.0
            third = await asyncio.wait_for(results.get(), WAIT)  # the 0.2 s wait already armed
            service.trigger()
            fourth = await asyncio.wait_for(results.get(), WAIT)
            assert fourth.trigger is Trigger.DEMAND
            assert third.status is FetchStatus.NOT_MODIFIED
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert task.cancelled()

    async def test_a_failed_run_is_tried_again_sooner(self, rig: Rig) -> None:
        service = ProvisioningService(rig.client(""), interval=3600.0, failure_delay=60.0)
        failed = FetchResult(
            at=rig.store.audit(limit=1)[0].at, trigger=Trigger.START, status=FetchStatus.FAILED
        )
        assert service.next_delay(failed, 1) == 60.0
        assert service.next_delay(failed, 3) == 240.0
        assert service.next_delay(failed, 20) == 3600.0


class TestClientCertificateRefused:
    """openssl s_server (-Verify, another CA) refuses the client certificate."""

    @pytest.mark.parametrize("confirm", [True, False])
    async def test_a_tls13_refusal_is_a_result_with_the_fix_not_an_exception(
        self, rig: Rig, hierarchy: Hierarchy, monkeypatch: pytest.MonkeyPatch, confirm: bool
    ) -> None:
        """Seen before the request (the connector waits for the verdict) or only when
        the response is read (without that wait): either way status refused, one try."""
        if not confirm:

            async def skip(self: TlsTransport, timeout: float) -> None:  # noqa: ASYNC109
                return None

            monkeypatch.setattr(TlsTransport, "confirm", skip)
        ready(rig, hierarchy)
        device = hierarchy.factory.leaf(None, cn="sipsgate", dns=("sipsgate",), client_auth=True)
        rig.env.identity[0] = DeviceIdentity(
            kind="standard",
            chain=(parse_der(device.der),),
            private_key_pem=device.key_pem,
            created_at=dt.datetime.now(dt.UTC),
        )
        other = hierarchy.factory.ca("Another client CA")
        leaf = localhost_leaf(hierarchy)
        with OpensslServer(leaf, client_ca=other, extra_args=["-tls1_3"]) as server:
            result = await rig.client(f"https://localhost:{server.port}/p.xml").fetch()
        assert result.status is FetchStatus.REFUSED
        assert result.attempts == 1
        (error,) = result.errors
        assert "refused sipsgate's client certificate" in error
        assert "device-certificate.md" in error
