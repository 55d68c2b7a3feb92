"""A real ``sipsgate run`` child process for end-to-end tests.

The config asks for port 0; the test learns the bound URL from the line ``run`` prints
("Admin endpoint: https://127.0.0.1:PORT/"). The client trusts exactly the device
certificate found in the gateway's own store (no trust on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from certstore.facade import RepositoryStore
from certstore.sqlite import SqliteStore
from certstore.x509 import to_pem
from gateway.config import load_config
from gateway.storage import open_configured_store
from tests.admin_support import PASSWORD, basic_header, login

REPO = Path(__file__).resolve().parents[1]
WAIT = 30.0
_URL = re.compile(r"^Admin endpoint: (https?://\S+)$")


PASSWORD_LINE = "Admin password (user admin), shown only this once: "


def write_config(
    path: Path,
    data_dir: Path,
    listen: list[str],
    host_names: list[str] | None = None,
    *,
    name: str = "sipsgate-e2e",
    store_url: str = "",
) -> None:
    listen_toml = ", ".join(f'"{item}"' for item in listen)
    names_toml = ", ".join(f'"{item}"' for item in host_names or [])
    path.write_text(
        f'[gateway]\ndata_dir = "{data_dir}"\nname = "{name}"\n'
        f"host_names = [{names_toml}]\n\n"
        + (f'[store]\nurl = "{store_url}"\n\n' if store_url else "")
        + f"[admin]\nlisten = [{listen_toml}]\n\n"
        # The relay listens too; the OS picks its ports so tests never collide.
        + '[sip]\nlisten_udp = ["127.0.0.1:0"]\nlisten_tcp = ["127.0.0.1:0"]\n\n'
        + '[log]\nformat = "json"\nlevel = "debug"\n',
        encoding="utf-8",
    )


# One listener in the relay's start-up line: "udp 127.0.0.1:5060".
_LISTENER = re.compile(r"\b(udp|tcp) (\[[0-9a-fA-F:.]+\]|[^\s,:]+):(\d+)")


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    workdir: Path
    config_path: Path
    data_dir: Path
    urls: list[str]
    stdout_lines: list[str]
    stderr_lines: list[str] = field(default_factory=list)
    _stderr_task: asyncio.Task[None] | None = None
    _new_stderr: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return self.urls[0]

    def store(self) -> RepositoryStore:
        """The store this gateway's config names (SQLite in its data directory, or the
        PostgreSQL database of ``store.url``)."""
        if not self.config_path.exists():  # a test that built this object by hand
            return SqliteStore(self.data_dir / "sipsgate.db")
        return open_configured_store(load_config(self.config_path, env={}), listen=False)

    def client_context(self) -> ssl.SSLContext:
        """Trusts the device certificate the gateway has in its store right now."""
        store = self.store()
        try:
            identity = store.device_identity()
        finally:
            store.close()
        assert identity is not None
        return ssl.create_default_context(cadata=to_pem(identity.chain).decode())

    def session(
        self, *, basic: bool = True, url: str | None = None, limit: int = 8
    ) -> aiohttp.ClientSession:
        """A client; ``limit`` connections at most (the admin endpoint takes 16 from one
        address, like a browser's handful)."""
        return aiohttp.ClientSession(
            base_url=url or self.url,
            connector=aiohttp.TCPConnector(ssl=self.client_context(), limit=limit),
            headers={"Authorization": basic_header()} if basic else None,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def logged_in(self) -> aiohttp.ClientSession:
        """A client logged in through the form (a session cookie, no Basic)."""
        client = self.session(basic=False)
        assert (await login(client)).status == 303
        return client

    async def relay_listeners(self) -> dict[str, tuple[str, int]]:
        """Where the SIP relay listens, from its start-up line
        ``SIP relay: udp HOST:PORT, tcp HOST:PORT -> UPSTREAM``: ``{"udp": …, "tcp": …}``."""
        line = await self.wait_for_stdout("SIP relay: ")
        found = {
            kind: (host, int(port))
            for kind, host, port in _LISTENER.findall(line.split(" -> ", 1)[0])
        }
        assert found, line
        return found

    async def wait_for_stdout(self, prefix: str, within: float = WAIT) -> str:
        """The first standard output line starting with ``prefix`` (reads on until it)."""
        for line in self.stdout_lines:
            if line.startswith(prefix):
                return line
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while raw := await self.process.stdout.readline():
                line = raw.decode().rstrip("\n")
                self.stdout_lines.append(line)
                if line.startswith(prefix):
                    return line
        raise AssertionError(f"sipsgate run ended before printing {prefix!r}")

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip("\n"))
            self._new_stderr.set()

    async def wait_for_log(self, needle: str, within: float = WAIT, *, nth: int = 1) -> str:
        """The ``nth`` stderr line containing ``needle`` (waits for it)."""
        async with asyncio.timeout(within):
            seen = 0
            found = 0
            while True:
                for line in self.stderr_lines[seen:]:
                    if needle in line:
                        found += 1
                        if found == nth:
                            return line
                seen = len(self.stderr_lines)
                self._new_stderr.clear()
                await self._new_stderr.wait()

    async def stop(self, sig: int = signal.SIGTERM, within: float = 5.0) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            if self._stderr_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(self._stderr_task, WAIT)
        self.assert_no_secrets_logged()
        return code

    def secrets(self) -> list[str]:
        """What must never reach a log line: the admin password (given or generated), the
        stored HTTP digest password, and every line of the device's private key."""
        found = [PASSWORD] + [
            line.removeprefix(PASSWORD_LINE) for line in self.stdout_lines if PASSWORD_LINE in line
        ]
        store_file = self.data_dir / "sipsgate.db"
        shared = self.config_path.exists() and load_config(self.config_path, env={}).store.url
        if store_file.exists() or shared:
            store = self.store()
            try:
                found.append(store.get_settings().http_auth_password)
                identity = store.device_identity()
            finally:
                store.close()
            if identity is not None:
                found += [
                    line
                    for line in identity.private_key_pem.decode().splitlines()
                    if line and not line.startswith("-----")
                ]
        return [secret for secret in found if len(secret) >= 8]

    def assert_no_secrets_logged(self) -> None:
        """Every `sipsgate run` a test starts is checked when it stops (DESIGN §11)."""
        log = "\n".join(self.stderr_lines)
        leaked = [secret[:4] + "..." for secret in self.secrets() if secret in log]
        assert not leaked, f"secrets reached the log: {leaked}"
        assert "PRIVATE KEY" not in log


async def start_gateway(
    workdir: Path,
    *,
    listen: list[str] | None = None,
    password: str | None = PASSWORD,
    extra_env: dict[str, str] | None = None,
    module: str = "gateway.cli",
) -> GatewayProcess:
    data_dir = workdir / "var"
    config_path = workdir / "sipsgate.toml"
    if not config_path.exists():
        write_config(config_path, data_dir, listen or ["127.0.0.1:0"])
    expect_password = password is None and not (data_dir / "admin.json").exists()
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
    env["PYTHONPATH"] = str(REPO)
    if password is not None:
        env["SIPSGATE_ADMIN_PASSWORD"] = password
    env.update(extra_env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "run",
        "--config",
        str(config_path),
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    gateway = GatewayProcess(
        process=process,
        workdir=workdir,
        config_path=config_path,
        data_dir=data_dir,
        urls=[],
        stdout_lines=[],
    )
    gateway._stderr_task = asyncio.create_task(gateway._read_stderr())
    assert process.stdout is not None
    try:
        async with asyncio.timeout(WAIT):
            while True:
                raw = await process.stdout.readline()
                if not raw:
                    raise AssertionError(
                        "sipsgate run ended before it printed its URL:\n"
                        + "\n".join(gateway.stderr_lines[-20:])
                    )
                line = raw.decode().rstrip("\n")
                gateway.stdout_lines.append(line)
                match = _URL.match(line)
                if match:
                    gateway.urls.append(match.group(1))
                if gateway.urls and "gateway.process.started" in "".join(gateway.stderr_lines):
                    break
                if gateway.urls and len(gateway.urls) >= len(listen or ["x"]):
                    break
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if expect_password:
        # On first start without SIPSGATE_ADMIN_PASSWORD the generated one follows the
        # other start lines (URLs, the SIP relay's addresses).
        async with asyncio.timeout(WAIT):
            while not gateway.stdout_lines[-1].startswith(PASSWORD_LINE):
                raw = await process.stdout.readline()
                if not raw:
                    raise AssertionError("sipsgate run ended before it printed the password")
                gateway.stdout_lines.append(raw.decode().rstrip("\n"))
    return gateway
