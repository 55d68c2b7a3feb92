"""certstore.device_service: the device identity operations against a store."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certstore import device
from certstore.device import (
    BadPassphrase,
    ChainError,
    KeyMismatch,
    MissingKey,
    NoPendingRequest,
    NotForTls,
    NotValidNow,
)
from certstore.device_service import AsyncDeviceService, DeviceService
from certstore.errors import CertStoreError, Conflict, NotFound, ParseError, ValidationError
from certstore.model import TrustSource
from certstore.x509 import load_certificates
from tests.device_support import (
    ADMIN,
    NOW,
    PKI,
    FakeStore,
    pem_of,
    public_key_of,
    stored_state,
)
from tests.pki import Issued, key_pem, make_key


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def service(store: FakeStore) -> DeviceService:
    svc = DeviceService(
        store,
        name="dect-gw",
        host_names=("gw.example.net",),
        machine_host_name="box",
        clock=lambda: NOW,
    )
    svc.ensure_standard_identity(actor=ADMIN)
    return svc


@pytest.fixture(scope="module")
def ca() -> tuple[Issued, Issued]:
    root = PKI.ca("Test Root CA")
    return root, PKI.ca("Test Intermediate CA", issuer=root)


def csr_spec() -> device.IdentitySpec:
    return device.build_spec(subject={"CN": "gw.example.net", "O": "Example"})


class TestEnsureStandardIdentity:
    def test_first_start(self, store: FakeStore) -> None:
        """An empty store gets the standard identity once; later calls keep it."""
        svc = DeviceService(store, name="dect-gw", clock=lambda: NOW)
        first = svc.ensure_standard_identity(actor=ADMIN)
        assert first.kind == "standard"
        assert first.certificate.common_name == "dect-gw"
        assert svc.ensure_standard_identity(actor=ADMIN) is first
        assert store.writes == 1
        assert store.events[0].action == "device.create"

    def test_missing_identity(self, store: FakeStore) -> None:
        """Asking for the identity of an empty store is a clear NotFound."""
        with pytest.raises(NotFound, match="first start"):
            DeviceService(store).identity()


class TestRenew:
    def test_new_key(self, service: DeviceService, store: FakeStore) -> None:
        """Renew makes a new serial and a new key, with the configured names."""
        before = service.identity()
        after = service.renew(actor=ADMIN)
        assert after.kind == "standard"
        assert after.certificate.serial != before.certificate.serial
        assert after.certificate.spki_fingerprint != before.certificate.spki_fingerprint
        assert after.certificate.san_dns == ("gw.example.net", "box")
        assert store.identity is after

    def test_reuse_key(self, service: DeviceService) -> None:
        """Renew with reuse keeps the key."""
        before = service.identity()
        after = service.renew(actor=ADMIN, reuse_key=True)
        assert after.private_key_pem == before.private_key_pem
        assert after.certificate.serial != before.certificate.serial

    def test_installed_is_not_renewed(self, service: DeviceService, store: FakeStore) -> None:
        """An installed identity is not renewed (clear it first); nothing changes."""
        service.self_signed(csr_spec(), actor=ADMIN)
        before = stored_state(store)
        with pytest.raises(Conflict, match="Clear"):
            service.renew(actor=ADMIN)
        assert stored_state(store) == before


class TestSelfSigned:
    def test_installed_kind(self, service: DeviceService) -> None:
        """A self-signed identity made by an admin is 'installed' (Clear restores standard)."""
        made = service.self_signed(csr_spec(), actor=ADMIN)
        assert made.kind == "installed"
        assert made.certificate.subject == "CN=gw.example.net,O=Example"

    def test_reuse_key(self, service: DeviceService) -> None:
        """'reuse' keeps the current identity's key."""
        before = service.identity()
        spec = device.build_spec(subject={"CN": "x"}, key="reuse")
        assert service.self_signed(spec, actor=ADMIN).private_key_pem == before.private_key_pem

    def test_weak_refused_by_service(self, store: FakeStore) -> None:
        """A weak spec is refused when the service does not allow weak keys."""
        svc = DeviceService(store, clock=lambda: NOW)
        spec = device.build_spec(subject={"CN": "x"}, key="rsa-1024", allow_weak=True)
        with pytest.raises(ValidationError, match="allow_weak_keys"):
            svc.self_signed(spec, actor=ADMIN)
        assert store.identity is None

    def test_weak_allowed(self, store: FakeStore) -> None:
        """With weak keys allowed, RSA-1024 is made and shown weak in the details."""
        svc = DeviceService(store, allow_weak_keys=True, clock=lambda: NOW)
        spec = device.build_spec(subject={"CN": "x"}, key="rsa-1024", allow_weak=True)
        svc.self_signed(spec, actor=ADMIN)
        details = svc.details()
        assert details["weak_key"] is True
        assert details["certificate"]["public_key"]["weak"] is True


class TestCsr:
    def test_create_show_remove(self, service: DeviceService, store: FakeStore) -> None:
        """A request is created, shown, downloaded and removed with its key."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        assert service.csr() is pending
        details = service.csr_details()
        assert details["subject"] == "CN=gw.example.net,O=Example"
        assert details["key_spec"] == "ec-p256"
        assert details["signature_valid"] is True
        assert details["public_key"]["type"] == "EC"
        assert service.csr_download("der").startswith(b"\x30")
        service.remove_csr(actor=ADMIN)
        assert store.csr is None
        with pytest.raises(NotFound):
            service.remove_csr(actor=ADMIN)

    def test_identity_untouched(self, service: DeviceService, store: FakeStore) -> None:
        """Creating a request leaves the current identity as it is."""
        before = store.identity
        service.create_csr(csr_spec(), actor=ADMIN)
        assert store.identity is before

    def test_bad_download_format(self, service: DeviceService) -> None:
        """An unknown download format is refused."""
        service.create_csr(csr_spec(), actor=ADMIN)
        with pytest.raises(ValidationError):
            service.csr_download("txt")


def answer(ca: tuple[Issued, Issued], key_pem_bytes: bytes, **kwargs: Any) -> bytes:
    """The CA's response: the leaf and the intermediate, the intermediate first."""
    _root, inter = ca
    leaf = PKI.sign_csr(inter, public_key_of(key_pem_bytes), cn="gw.example.net", **kwargs)
    return inter.pem + pem_of(leaf)


class TestInstall:
    def test_response(self, service: DeviceService, store: FakeStore, ca: Any) -> None:
        """The CA's response to the pending request installs, and the request is answered."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        outcome = service.install(answer(ca, pending.private_key_pem), actor=ADMIN)
        assert outcome.source == "response"
        assert outcome.identity.kind == "installed"
        assert outcome.identity.private_key_pem == pending.private_key_pem
        assert [c.common_name for c in outcome.identity.chain] == [
            "gw.example.net",
            "Test Intermediate CA",
        ]
        assert store.csr is None
        assert store.events[-2].action == "device.install.response"

    def test_response_for_current_key(self, service: DeviceService, ca: Any) -> None:
        """Without a request, a certificate for the current key still installs."""
        current = service.identity()
        outcome = service.install(answer(ca, current.private_key_pem), actor=ADMIN)
        assert outcome.identity.private_key_pem == current.private_key_pem

    def test_chain_with_key(self, service: DeviceService, store: FakeStore, ca: Any) -> None:
        """A chain with its key installs and leaves an unrelated request pending."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        key = key_pem(make_key())
        outcome = service.install(answer(ca, key) + key, actor=ADMIN)
        assert outcome.source == "chain"
        assert store.csr is pending

    def test_pkcs12(self, service: DeviceService, ca: Any) -> None:
        """A PKCS#12 file with a passphrase installs."""
        _root, inter = ca
        key = make_key()
        leaf = PKI.sign_csr(inter, key.public_key(), cn="gw.example.net")
        data = pkcs12.serialize_key_and_certificates(
            b"gw", key, leaf, [inter.cert], serialization.BestAvailableEncryption(b"pw")
        )
        outcome = service.install(data, actor=ADMIN, passphrase=b"pw")
        assert outcome.source == "pkcs12"
        assert len(outcome.identity.chain) == 2


def _encrypted(key_pem_bytes: bytes) -> bytes:
    key = device.load_private_key(key_pem_bytes)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right"),
    )


def _p12(ca: Any, passphrase: bytes | None, *, with_key: bool = True) -> bytes:
    _root, inter = ca
    key = make_key()
    leaf = PKI.sign_csr(inter, key.public_key(), cn="gw.example.net")
    enc = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    if not with_key:
        return pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(leaf, b"x")], enc)
    return pkcs12.serialize_key_and_certificates(b"gw", key, leaf, [inter.cert], enc)


# Each case: (name, build(pending_key_pem, ca) -> install kwargs, expected error)
FAILURES: list[tuple[str, Callable[[bytes, Any], dict[str, Any]], type[CertStoreError]]] = [
    ("wrong-key", lambda k, ca: {"data": answer(ca, key_pem(make_key()))}, KeyMismatch),
    (
        "foreign-chain",
        lambda k, ca: {"data": answer(ca, k) + PKI.ca("Foreign Root").pem},
        ChainError,
    ),
    ("garbage", lambda k, ca: {"data": b"\x00garbage\xff" * 10}, ParseError),
    ("empty", lambda k, ca: {"data": b""}, ParseError),
    (
        "expired",
        lambda k, ca: {
            "data": answer(
                ca, k, not_before=NOW - timedelta(days=60), not_after=NOW - timedelta(days=1)
            )
        },
        NotValidNow,
    ),
    (
        "not-for-tls",
        lambda k, ca: {"data": answer(ca, k, key_usage=("keyCertSign",))},
        NotForTls,
    ),
    (
        "truncated-pkcs12",
        lambda k, ca: {"data": _p12(ca, b"pw")[:-40], "passphrase": b"pw"},
        ParseError,
    ),
    (
        "pkcs12-wrong-passphrase",
        lambda k, ca: {"data": _p12(ca, b"pw"), "passphrase": b"no"},
        BadPassphrase,
    ),
    ("pkcs12-no-key", lambda k, ca: {"data": _p12(ca, None, with_key=False)}, MissingKey),
    (
        "chain-wrong-passphrase",
        lambda k, ca: {"data": answer(ca, k), "key_pem": _encrypted(k), "passphrase": b"wrong"},
        BadPassphrase,
    ),
    (
        "chain-missing-key",
        # The key file given is a certificate, not a key.
        lambda k, ca: {"data": answer(ca, k), "key_pem": ca[1].pem},
        MissingKey,
    ),
    (
        "chain-mismatched-key",
        lambda k, ca: {"data": answer(ca, k), "key_pem": key_pem(make_key())},
        KeyMismatch,
    ),
    (
        "chain-key-only",
        lambda k, ca: {"data": key_pem(make_key())},
        ParseError,
    ),
]


class TestInstallFailures:
    @pytest.mark.parametrize(("case", "build", "error"), FAILURES, ids=[f[0] for f in FAILURES])
    def test_nothing_changes(
        self,
        service: DeviceService,
        store: FakeStore,
        ca: Any,
        case: str,
        build: Callable[[bytes, Any], dict[str, Any]],
        error: type[CertStoreError],
    ) -> None:
        """A refused upload raises its own error and leaves identity and request as they were."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        before = stored_state(store)
        writes = store.writes
        kwargs = build(pending.private_key_pem, ca)
        data = kwargs.pop("data")
        with pytest.raises(error):
            service.install(data, actor=ADMIN, **kwargs)
        assert stored_state(store) == before
        assert store.writes == writes

    def test_missing_key_without_request(self, store: FakeStore, ca: Any) -> None:
        """A bare certificate with no request and another key is refused, naming the way out."""
        svc = DeviceService(store, clock=lambda: NOW)
        svc.ensure_standard_identity(actor=ADMIN)
        before = stored_state(store)
        with pytest.raises(NoPendingRequest, match="private key"):
            svc.install(answer(ca, key_pem(make_key())), actor=ADMIN)
        assert stored_state(store) == before


class TestClear:
    def test_restores_standard(self, service: DeviceService, ca: Any) -> None:
        """Clear replaces an installed identity with a fresh standard one."""
        installed = service.self_signed(csr_spec(), actor=ADMIN)
        cleared = service.clear(actor=ADMIN)
        assert cleared.kind == "standard"
        assert cleared.certificate.common_name == "dect-gw"
        assert cleared.private_key_pem != installed.private_key_pem

    def test_standard_is_not_cleared(self, service: DeviceService, store: FakeStore) -> None:
        """Clearing the standard identity is a conflict and changes nothing."""
        before = stored_state(store)
        with pytest.raises(Conflict, match="already the standard"):
            service.clear(actor=ADMIN)
        assert stored_state(store) == before


class TestTrustAndExport:
    def test_trust_chain(self, service: DeviceService, store: FakeStore, ca: Any) -> None:
        """Trust adds the whole device chain with source 'device'; again: already present."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        service.install(answer(ca, pending.private_key_pem), actor=ADMIN)
        result = service.trust_device_chain(actor=ADMIN)
        assert len(result.added) == 2
        assert {e.source for e in store.list_trust()} == {TrustSource.DEVICE}
        again = service.trust_device_chain(actor=ADMIN)
        assert len(again.already_present) == 2

    def test_trust_selected(self, service: DeviceService, store: FakeStore, ca: Any) -> None:
        """Only the chosen certificates are trusted; a foreign fingerprint is NotFound."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        identity = service.install(answer(ca, pending.private_key_pem), actor=ADMIN).identity
        top = identity.chain[1].fingerprint
        assert service.trust_device_chain(actor=ADMIN, fingerprints=[top.upper()]).added == (
            identity.chain[1],
        )
        with pytest.raises(NotFound):
            service.trust_device_chain(actor=ADMIN, fingerprints=["ab" * 32])

    def test_export_chain_not_audited(self, service: DeviceService, store: FakeStore) -> None:
        """A chain export is not audited and holds no key."""
        events = len(store.events)
        data = service.export(actor=ADMIN)
        assert b"PRIVATE KEY" not in data
        assert load_certificates(data).certificates == service.identity().chain
        assert len(store.events) == events

    def test_export_with_key_audited(self, service: DeviceService, store: FakeStore) -> None:
        """A key export is audited with the certificate's fingerprint, never the key."""
        data = service.export(actor=ADMIN, include_private_key=True)
        assert data.endswith(service.identity().private_key_pem)
        event = store.events[-1]
        assert event.action == "device.export-private-key"
        assert event.target == service.identity().certificate.fingerprint
        assert json.loads(event.details) == {"format": "pem", "encrypted": False}
        assert "PRIVATE" not in event.details

    def test_export_key_pem_only(self, service: DeviceService) -> None:
        """The key goes out only as PEM; an unknown format is refused."""
        with pytest.raises(ValidationError):
            service.export(actor=ADMIN, fmt="der", include_private_key=True)
        with pytest.raises(ValidationError):
            service.export(actor=ADMIN, fmt="zip")


class TestDetails:
    def test_device_details(self, service: DeviceService) -> None:
        """The details carry the DESIGN §7 summary fields and the chain."""
        details = service.details()
        for name in (
            "fingerprint",
            "subject",
            "issuer",
            "not_before",
            "not_after",
            "status",
            "is_ca",
            "self_signed",
        ):
            assert name in details["certificate"]
        assert details["kind"] == "standard"
        assert details["can_renew"] is True
        assert details["can_clear"] is False
        assert details["certificate"]["status"] == "valid"
        assert details["certificate"]["not_before"].endswith("Z")
        assert len(details["chain"]) == 1
        assert "PRIVATE" not in json.dumps(details)


class TestAsync:
    async def test_generation_off_the_loop(
        self, store: FakeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Key generation runs in a worker thread: the loop keeps running meanwhile."""
        started = threading.Event()
        release = threading.Event()
        real = device.generate_private_key

        def slow(spec: device.KeySpec) -> device.PrivateKey:
            started.set()
            assert release.wait(10), "the loop never released the generation"
            return real(spec)

        monkeypatch.setattr(device, "generate_private_key", slow)
        svc = AsyncDeviceService(DeviceService(store, clock=lambda: NOW))
        spec = device.build_spec(subject={"CN": "x"}, key="rsa-4096")
        task = asyncio.create_task(svc.self_signed(spec, actor=ADMIN))
        # The loop must be free while the worker waits: it is the loop that releases it.
        await asyncio.wait_for(asyncio.to_thread(started.wait, 10), timeout=15)
        assert not task.done()
        release.set()
        identity = await asyncio.wait_for(task, timeout=60)
        assert identity.kind == "installed"

    async def test_operations(self, store: FakeStore) -> None:
        """The async wrappers reach the same operations."""
        svc = AsyncDeviceService(DeviceService(store, clock=lambda: NOW))
        await svc.ensure_standard_identity(actor=ADMIN)
        await svc.renew(actor=ADMIN)
        await svc.create_csr(csr_spec(), actor=ADMIN)
        assert (await svc.csr_details())["key_spec"] == "ec-p256"
        await svc.remove_csr(actor=ADMIN)
        assert (await svc.details())["kind"] == "standard"
        assert b"PRIVATE KEY" in await svc.export(actor=ADMIN, include_private_key=True)
