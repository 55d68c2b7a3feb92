"""The device identity operations on the real SQLite store."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from certstore.device_service import DeviceService
from certstore.errors import CertStoreError
from certstore.model import TrustSource
from certstore.sqlite import SqliteStore
from tests.device_support import ADMIN, NOW, PKI, stored_state
from tests.unit.test_device_service import FAILURES, answer, csr_spec


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "sipsgate.db"


@pytest.fixture
def service(db: Path) -> Iterator[DeviceService]:
    store = SqliteStore(db)
    svc = DeviceService(store, name="dect-gw", host_names=("gw.example.net",), clock=lambda: NOW)
    svc.ensure_standard_identity(actor=ADMIN)
    yield svc
    store.close()


@pytest.fixture(scope="module")
def ca() -> Any:
    root = PKI.ca("Test Root CA")
    return root, PKI.ca("Test Intermediate CA", issuer=root)


class TestOnSqlite:
    def test_install_survives_reopen(self, service: DeviceService, db: Path, ca: Any) -> None:
        """An installed chain and key read back identically from a new connection."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        installed = service.install(answer(ca, pending.private_key_pem), actor=ADMIN).identity
        again = SqliteStore(db)
        try:
            identity = again.device_identity()
            assert identity is not None
            assert identity.kind == "installed"
            assert [c.der for c in identity.chain] == [c.der for c in installed.chain]
            assert identity.private_key_pem == installed.private_key_pem
            assert again.pending_csr() is None
        finally:
            again.close()
        assert stat.S_IMODE(db.stat().st_mode) == 0o600

    def test_audit(self, service: DeviceService, ca: Any) -> None:
        """Install, trust and a key export each leave an audit event."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        service.install(answer(ca, pending.private_key_pem), actor=ADMIN)
        service.trust_device_chain(actor=ADMIN)
        service.export(actor=ADMIN, include_private_key=True)
        actions = [e.action for e in service.store.audit(limit=20)]
        assert actions[0] == "device.export-private-key"
        assert "device.install.response" in actions
        trusted = {e.certificate.fingerprint: e for e in service.store.list_trust()}
        for cert in service.identity().chain:
            assert trusted[cert.fingerprint].source is TrustSource.DEVICE

    @pytest.mark.parametrize(("case", "build", "error"), FAILURES, ids=[f[0] for f in FAILURES])
    def test_refused_install_changes_nothing(
        self,
        service: DeviceService,
        ca: Any,
        case: str,
        build: Callable[[bytes, Any], dict[str, Any]],
        error: type[CertStoreError],
    ) -> None:
        """Every refused upload leaves the stored chain, key and request byte for byte."""
        pending = service.create_csr(csr_spec(), actor=ADMIN)
        before = stored_state(service.store)
        kwargs = build(pending.private_key_pem, ca)
        data = kwargs.pop("data")
        with pytest.raises(error):
            service.install(data, actor=ADMIN, **kwargs)
        assert stored_state(service.store) == before
