"""``sipsgate run`` as a real process: first start, the admin API over real HTTPS, the
device certificate following renewals, SIGHUP and SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from certstore.model import Finding, Peer, Reason, Rule, Transport, Verdict, VerdictKind
from certstore.sqlite import SqliteStore
from tests.admin_support import PASSWORD, PKI, basic_header
from tests.gateway_process import REPO, start_gateway, write_config

API = "/api/v1"


async def served_fingerprint(url: str) -> str:
    """SHA-256 of the certificate the endpoint presents on a new connection."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to read the certificate; nothing is sent
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


class TestFirstStart:
    async def test_prints_url_and_generated_password_once(self, tmp_path: Path) -> None:
        gateway = await start_gateway(tmp_path, password=None)
        try:
            assert gateway.url.startswith("https://127.0.0.1:")
            line = gateway.stdout_lines[-1]
            assert line.startswith("Admin password (user admin), shown only this once: ")
            generated = line.rsplit(": ", 1)[1]
            assert len(generated) >= 20
            async with (
                gateway.session(basic=False) as client,
                client.get(
                    f"{API}/settings", headers={"Authorization": basic_header(password=generated)}
                ) as response,
            ):
                assert response.status == 200
            assert (gateway.data_dir / "admin.json").stat().st_mode & 0o777 == 0o600
        finally:
            assert await gateway.stop() == 0
        assert not any(generated in line for line in gateway.stderr_lines)
        again = await start_gateway(tmp_path, password=None, listen=None)
        try:
            assert not any("password" in line.lower() for line in again.stdout_lines)
        finally:
            assert await again.stop() == 0

    async def test_heap_is_settled_once_started_and_after_a_reload(self, tmp_path: Path) -> None:
        """gateway.heap: once every part runs, what lives as long as the process is frozen
        out of the collector's full collections (the relay's latency tail); a reload that
        replaced the relay settles it again, so the old relay is not kept frozen."""
        gateway = await start_gateway(tmp_path)
        try:
            event = json.loads(await gateway.wait_for_log('"gateway.heap.frozen"'))
            assert event["objects"] > 10_000  # modules, classes, the app: all of start-up
            config = gateway.config_path.read_text()
            gateway.config_path.write_text(
                config.replace('listen_tcp = ["127.0.0.1:0"]', "listen_tcp = []")
            )
            gateway.process.send_signal(signal.SIGHUP)
            reloaded = json.loads(await gateway.wait_for_log("config.file.reloaded"))
            assert reloaded["changed"] == ["sip.listen_tcp"]
            again = json.loads(await gateway.wait_for_log('"gateway.heap.frozen"', nth=2))
            assert again["objects"] > 10_000
        finally:
            assert await gateway.stop() == 0

    async def test_plain_http_on_a_non_loopback_address_is_refused(self, tmp_path: Path) -> None:
        write_config(tmp_path / "sipsgate.toml", tmp_path / "var", ["http://0.0.0.0:0"])
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "run",
            "--config",
            str(tmp_path / "sipsgate.toml"),
            cwd=tmp_path,
            env={"PYTHONPATH": str(REPO), "SIPSGATE_ADMIN_PASSWORD": PASSWORD},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await process.communicate()
        assert process.returncode == 1
        assert b"non-loopback" in err
        assert b"Admin endpoint" not in out
        assert not (tmp_path / "var" / "admin.json").exists()

    async def test_failed_first_start_does_not_lock_the_admin_out(self, tmp_path: Path) -> None:
        """A first start that fails (the SIP port is taken) before showing the generated
        password leaves no password behind; the next start generates and shows one."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            write_config(tmp_path / "sipsgate.toml", tmp_path / "var", ["127.0.0.1:0"])
            config = (tmp_path / "sipsgate.toml").read_text()
            (tmp_path / "sipsgate.toml").write_text(
                config.replace('listen_udp = ["127.0.0.1:0"]', f'listen_udp = ["127.0.0.1:{port}"]')
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "run", "--config",
                str(tmp_path / "sipsgate.toml"), cwd=tmp_path,
                env={**env, "PYTHONPATH": str(REPO)},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(30):
                out, _ = await process.communicate()
        assert process.returncode != 0
        assert b"shown only this once" not in out
        assert not (tmp_path / "var" / "admin.json").exists()
        gateway = await start_gateway(tmp_path, password=None)  # the port is free again
        try:
            assert gateway.stdout_lines[-1].startswith("Admin password (user admin)")
        finally:
            assert await gateway.stop() == 0


class TestAdminOverHttps:
    async def test_trust_settings_pins_backup_and_sigterm(self, tmp_path: Path) -> None:
        gateway = await start_gateway(tmp_path)
        try:
            async with gateway.session() as api:
                ca = PKI.ca("E2E Root CA")
                leaf = PKI.leaf(ca, cn="sip.e2e.example")
                async with api.post(f"{API}/trust", data=ca.pem + leaf.pem) as response:
                    assert response.status == 201
                async with api.get(f"{API}/trust", params={"kind": "server"}) as response:
                    listed = {e["fingerprint"] for e in await response.json()}
                assert leaf.model.fingerprint in listed
                fp = leaf.model.fingerprint
                async with api.get(f"{API}/trust/{fp}", params={"format": "der"}) as response:
                    assert await response.read() == leaf.der
                async with api.get(f"{API}/trust/{fp}", params={"format": "pem"}) as response:
                    assert await response.read() == leaf.pem

                change = {"accept_all_certificates": True, "http_auth_password": "digest-pw"}
                async with api.patch(f"{API}/settings", json=change) as response:
                    assert "digest-pw" not in await response.text()
                async with api.get(f"{API}/settings") as response:
                    settings = await response.json()
                assert settings["accept_all_certificates"] is True
                assert settings["http_auth_password_set"] is True
                assert "digest-pw" not in json.dumps(settings)

                # A chain the gateway rejected (recorded by another process on the same store).
                bad = PKI.leaf(None, cn="bad.e2e.example")
                store = SqliteStore(gateway.data_dir / "sipsgate.db")
                try:
                    verdict = Verdict(
                        verdict=VerdictKind.REJECT,
                        rule=Rule.UNTRUSTED,
                        findings=(Finding(reason=Reason.SELF_SIGNED, message="self-signed"),),
                        leaf_fingerprint=bad.model.fingerprint,
                    )
                    peer = Peer(host="bad.e2e.example", port=5061, transport=Transport.SIPS)
                    entry = store.record_handshake(verdict, [bad.model], peer, datetime.now(UTC))
                finally:
                    store.close()
                assert entry is not None
                async with api.post(f"{API}/rejected/{entry.id}/reject") as response:
                    assert response.status == 201
                    pin = await response.json()
                assert pin["decision"] == "reject"
                body = {"decision": "accept", "fingerprint": ca.model.fingerprint}
                async with api.post(f"{API}/decisions", json=body) as response:
                    assert response.status == 201
                async with api.get(f"{API}/decisions") as response:
                    decisions = {p["decision"] for p in await response.json()}
                assert decisions == {"accept", "reject"}

                async with api.get(f"{API}/backup") as response:
                    backup = await response.read()
                async with api.delete(f"{API}/trust") as response:
                    assert response.status == 200
                async with api.post(f"{API}/restore", data=backup) as response:
                    assert response.status == 200, await response.text()
                async with api.get(f"{API}/trust/{fp}") as response:
                    assert response.status == 200
        finally:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await gateway.stop(signal.SIGTERM, within=5.0) == 0
            assert loop.time() - started < 5.0

    async def test_device_certificate_changes_without_restart(self, tmp_path: Path) -> None:
        gateway = await start_gateway(tmp_path)
        try:
            before = await served_fingerprint(gateway.url)
            async with gateway.session() as api, api.post(f"{API}/device/renew") as response:
                assert response.status == 200
                renewed = (await response.json())["certificate"]["fingerprint"]
            assert renewed != before
            assert await served_fingerprint(gateway.url) == renewed
            # Changed by another process (the offline CLI): picked up by the watcher.
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.cli",
                "device",
                "renew",
                "--config",
                str(gateway.config_path),
                cwd=tmp_path,
                env={"PYTHONPATH": str(REPO)},
                stdout=asyncio.subprocess.DEVNULL,
            )
            async with asyncio.timeout(30):
                assert await cli.wait() == 0
            line = await gateway.wait_for_log("admin.identity.changed", within=10)
            newest = json.loads(line)["fingerprint"]
            assert newest != renewed
            assert await served_fingerprint(gateway.url) == newest
        finally:
            assert await gateway.stop() == 0

    async def test_sighup_reloads_listeners(self, tmp_path: Path) -> None:
        names = ["127.0.0.2"]  # in the device certificate, so the new listener's name checks
        write_config(tmp_path / "sipsgate.toml", tmp_path / "var", ["127.0.0.1:0"], names)
        gateway = await start_gateway(tmp_path)
        try:
            write_config(
                gateway.config_path, gateway.data_dir, ["127.0.0.1:0", "127.0.0.2:0"], names
            )
            gateway.process.send_signal(signal.SIGHUP)
            line = await gateway.wait_for_log("https://127.0.0.2:")
            url = json.loads(line)["url"]
            reloaded = json.loads(await gateway.wait_for_log("config.file.reloaded"))
            assert reloaded["changed"] == ["admin.listen"]
            async with gateway.session(url=url) as api, api.get(f"{API}/settings") as response:
                assert response.status == 200
            async with gateway.session() as api, api.get(f"{API}/settings") as response:
                assert response.status == 200  # the unchanged listener kept serving
        finally:
            assert await gateway.stop() == 0

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
    async def test_stops_cleanly_with_open_connections(self, tmp_path: Path, sig: int) -> None:
        gateway = await start_gateway(tmp_path)
        async with gateway.session() as api:
            async with api.get(f"{API}/trust") as response:
                assert response.status == 200
            assert await gateway.stop(sig, within=5.0) == 0
            with pytest.raises(aiohttp.ClientConnectionError):
                async with api.get(f"{API}/trust"):
                    pass


class TestSystemd:
    async def test_ready_reloading_and_stopping_are_notified(self, tmp_path: Path) -> None:
        """Under Type=notify: READY=1 once listening, RELOADING=1/READY=1 around SIGHUP,
        STOPPING=1 on SIGTERM."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()

        async def next_message() -> str:
            async with asyncio.timeout(30):
                return (await loop.sock_recv(sock, 4096)).decode()

        try:
            gateway = await start_gateway(tmp_path, extra_env={"NOTIFY_SOCKET": str(path)})
            try:
                assert "READY=1" in await next_message()
                gateway.process.send_signal(signal.SIGHUP)
                assert "RELOADING=1" in await next_message()
                assert "READY=1" in await next_message()
            finally:
                assert await gateway.stop() == 0
            assert "STOPPING=1" in await next_message()
        finally:
            sock.close()
