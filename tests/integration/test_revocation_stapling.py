"""OCSP stapling on the wire: ``openssl s_server -status_file`` stapling responses made
with ``openssl ocsp``; the decision inside the handshake, the rejected list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from certstore.model import Reason, RevocationMode
from gateway.cli.probe import print_human
from gateway.errors import TrustRejected
from gateway.tls import TlsConnector
from gateway.tls.probe import as_json, run_probe
from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.revocation_support import openssl_ocsp_response, server_target
from tests.tls_servers import OpensslServer


@pytest.fixture
def pki() -> tuple[Issued, Issued]:
    factory = CertFactory()
    root = factory.ca("Stapling Root")
    return root, factory.leaf(root)


@pytest.fixture
def env(tmp_path: Path, pki: tuple[Issued, Issued]) -> Env:
    environment = make_env(tmp_path / "store.db")
    environment.trust(pki[0])
    return environment


def _server(tmp_path: Path, leaf: Issued, response: bytes | None, version: str) -> OpensslServer:
    args = [f"-tls{version.replace('.', '_')}"]
    if response is not None:
        status = tmp_path / "status.der"
        status.write_bytes(response)
        args += ["-status_file", str(status)]
    return OpensslServer(leaf, extra_args=args)


VERSIONS = ["1.2", "1.3"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_stapled_good_is_accepted_even_with_hard_fail(
    tmp_path: Path, env: Env, pki: tuple[Issued, Issued], version: str
) -> None:
    root, leaf = pki
    env.settings(revocation="hard-fail")
    good = openssl_ocsp_response(tmp_path / "ocsp", leaf, root)
    with _server(tmp_path, leaf, good, version) as server:
        _, writer = await env.connector.open_connection(server_target(server))
        writer.close()
    assert env.rejected() == ()


@pytest.mark.parametrize("version", VERSIONS)
async def test_stapled_revoked_aborts_the_handshake_and_is_recorded(
    tmp_path: Path, env: Env, pki: tuple[Issued, Issued], version: str
) -> None:
    root, leaf = pki
    revoked = openssl_ocsp_response(tmp_path / "ocsp", leaf, root, revoked=True)
    assert env.store.get_settings().revocation is RevocationMode.SOFT_FAIL
    with (
        _server(tmp_path, leaf, revoked, version) as server,
        pytest.raises(TrustRejected) as info,
    ):
        await env.connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOKED,)
    message = info.value.verdict.findings[0].message
    assert "revoked by its issuer on" in message and "keyCompromise" in message
    assert "according to stapled" in message
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOKED,)
    assert entry.leaf.fingerprint == leaf.fingerprint


async def test_revocation_off_ignores_the_staple(
    tmp_path: Path, env: Env, pki: tuple[Issued, Issued]
) -> None:
    root, leaf = pki
    env.settings(revocation="off")
    revoked = openssl_ocsp_response(tmp_path / "ocsp", leaf, root, revoked=True)
    with _server(tmp_path, leaf, revoked, "1.3") as server:
        _, writer = await env.connector.open_connection(server_target(server))
        writer.close()


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
async def test_expired_staple_is_not_information(
    tmp_path: Path, env: Env, pki: tuple[Issued, Issued], mode: str
) -> None:
    """A stapled response past its nextUpdate (a replay) neither revokes nor vouches."""
    root, leaf = pki
    env.settings(revocation=mode)
    revoked = openssl_ocsp_response(tmp_path / "ocsp", leaf, root, revoked=True, ndays=1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    connector = TlsConnector(env.policy, clock=lambda: later)
    with _server(tmp_path, leaf, revoked, "1.2") as server:
        if mode == "soft-fail":
            _, writer = await connector.open_connection(server_target(server))
            writer.close()
            return
        with pytest.raises(TrustRejected) as info:
            await connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOCATION_UNKNOWN,)
    message = info.value.verdict.findings[0].message
    assert "stapled OCSP response is not used" in message and "stale or replayed" in message


@pytest.mark.parametrize("version", VERSIONS)
async def test_hard_fail_without_staple_rejects_soft_fail_accepts(
    tmp_path: Path, env: Env, pki: tuple[Issued, Issued], version: str
) -> None:
    _, leaf = pki
    with _server(tmp_path, leaf, None, version) as server:
        _, writer = await env.connector.open_connection(server_target(server))
        writer.close()
        env.settings(revocation="hard-fail")
        with pytest.raises(TrustRejected) as info:
            await env.connector.open_connection(server_target(server))
    assert info.value.verdict.reasons == (Reason.REVOCATION_UNKNOWN,)
    (entry,) = env.rejected()
    assert entry.reasons == (Reason.REVOCATION_UNKNOWN,)


async def test_probe_prints_each_certificates_revocation_status(
    tmp_path: Path, env: Env, pki: tuple[Issued, Issued], capsys: pytest.CaptureFixture[str]
) -> None:
    root, leaf = pki
    good = openssl_ocsp_response(tmp_path / "ocsp", leaf, root)
    with _server(tmp_path, leaf, good, "1.3") as server:
        result = await run_probe(env.connector, server_target(server))
    print_human(result, dt.datetime.now(dt.UTC), recorded=False, rejected_id=None)
    out = capsys.readouterr().out
    assert "revocation: good (from stapled, thisUpdate " in out
    data = as_json(result, dt.datetime.now(dt.UTC), recorded=False, rejected_id=None)
    assert data["revocation"][0].startswith("good (from stapled")
