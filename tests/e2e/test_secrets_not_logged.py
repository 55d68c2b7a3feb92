"""No secret reaches a log line (DESIGN §11), with every secret-bearing operation driven
through a running gateway at debug level.

Every `sipsgate run` that the end-to-end tests start is checked the same way when it
stops (``GatewayProcess.assert_no_secrets_logged``): the admin password, the stored
HTTP digest password and each line of the device's private key. This test makes
sure those operations all happen at least once, including the failure paths that
tend to log what they were given.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.gateway_process import start_gateway

pytestmark = pytest.mark.slow

API = "/api/v1"
DIGEST_PASSWORD = "digest-Secret-9x7q"
PROVISIONED_PASSWORD = "prov-Secret-55aa-zz"
WRONG_ADMIN_PASSWORD = "wrong-but-Secret-41"
EXPORT_PASSPHRASE = "export-Passphrase-77"


async def test_secret_bearing_operations_leave_no_secret_in_the_log(tmp_path: Path) -> None:
    gateway = await start_gateway(tmp_path)
    try:
        async with gateway.session() as client:
            # The digest password set through the API (write-only).
            async with client.patch(
                f"{API}/settings",
                json={"http_auth_username": "dect01", "http_auth_password": DIGEST_PASSWORD},
            ) as response:
                assert response.status == 200
                assert DIGEST_PASSWORD not in await response.text()
            # Too long: refused, and the refusal must not quote the value.
            async with client.patch(
                f"{API}/settings", json={"http_auth_password": DIGEST_PASSWORD * 10}
            ) as response:
                assert response.status in (400, 422)
                assert DIGEST_PASSWORD not in await response.text()
            # The device identity with its private key, plain and encrypted.
            async with client.post(f"{API}/device/export") as response:
                assert response.status == 200
                assert b"PRIVATE KEY" in await response.read()
            async with client.post(
                f"{API}/device/export", json={"passphrase": EXPORT_PASSPHRASE}
            ) as response:
                assert response.status == 200
            # A provisioning document that sets the digest password.
            document = (
                "Security.global.HTTPAuthUsername=dect02\n"
                f"Security.global.HTTPAuthPassword={PROVISIONED_PASSWORD}\n"
            ).encode()
            async with client.post(
                f"{API}/provisioning/apply", data=document, headers={"Content-Type": "text/plain"}
            ) as response:
                assert response.status == 200, await response.text()
        # A wrong admin password over HTTP Basic.
        wrong = base64.b64encode(f"admin:{WRONG_ADMIN_PASSWORD}".encode()).decode()
        async with (
            gateway.session(basic=False) as anonymous,
            anonymous.get(f"{API}/settings", headers={"Authorization": f"Basic {wrong}"}) as r,
        ):
            assert r.status == 401
    finally:
        assert await gateway.stop() == 0  # checks the stored secrets and the key
    log = "\n".join(gateway.stderr_lines)
    assert len(gateway.stderr_lines) > 5, "the gateway logged at debug level"
    for secret in (DIGEST_PASSWORD, PROVISIONED_PASSWORD, WRONG_ADMIN_PASSWORD, EXPORT_PASSPHRASE):
        assert secret not in log


def test_the_check_catches_a_leaked_key_line(tmp_path: Path) -> None:
    """Failure twin: a key line or the digest password in the log fails the check."""
    from certstore.device_service import DeviceService
    from certstore.model import Actor
    from certstore.sqlite import SqliteStore
    from tests.gateway_process import GatewayProcess

    data_dir = tmp_path / "var"
    with SqliteStore(data_dir / "sipsgate.db") as store:
        actor = Actor(name="test", interface="cli")
        store.update_settings({"http_auth_password": DIGEST_PASSWORD}, actor=actor)
        identity = DeviceService(store, name="t", host_names=(), machine_host_name="h")
        key_line = identity.ensure_standard_identity(actor=actor).private_key_pem.splitlines()[1]
    gateway = GatewayProcess(
        process=None,  # type: ignore[arg-type]
        workdir=tmp_path,
        config_path=tmp_path / "sipsgate.toml",
        data_dir=data_dir,
        urls=[],
        stdout_lines=[],
    )
    gateway.stderr_lines = ['{"event": "x", "detail": "' + key_line.decode() + '"}']
    with pytest.raises(AssertionError, match="secrets reached the log"):
        gateway.assert_no_secrets_logged()
    gateway.stderr_lines = [f'{{"event": "x", "value": "{DIGEST_PASSWORD}"}}']
    with pytest.raises(AssertionError, match="secrets reached the log"):
        gateway.assert_no_secrets_logged()
    gateway.stderr_lines = ['{"event": "settings.update", "http_auth_password": "[redacted]"}']
    gateway.assert_no_secrets_logged()
