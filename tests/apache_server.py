"""Debian's Apache 2.4 as a provisioning server: mod_ssl with ``SSLVerifyClient
require`` and ``mod_auth_digest``, on 127.0.0.1, from its own ServerRoot in a temp dir.
Package apache2-bin is enough (the server and its modules, no system service).

It runs in the foreground (``-DFOREGROUND``) with a configuration written here (no
file of the system's Apache is read) and is stopped by its PID. As root it serves as
``nobody``, so its files are made readable to that user.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.pki import Issued
from tests.tls_servers import free_port, read_line_matching, stop_process

MODULES = Path("/usr/lib/apache2/modules")
REALM = "provisioning@sipsgate.test"
_MODULES = (
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authn_file_module", "mod_authn_file.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("auth_digest_module", "mod_auth_digest.so"),
    ("socache_shmcb_module", "mod_socache_shmcb.so"),
    ("ssl_module", "mod_ssl.so"),
    ("mime_module", "mod_mime.so"),
)

CONF = """ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
DefaultRuntimeDir "{root}"
ErrorLog /dev/stderr
LogLevel info ssl:info
{modules}
{user}
TypesConfig /dev/null
AddType application/xml .xml
DocumentRoot "{root}/htdocs"
SSLEngine on
SSLProtocol -all +TLSv{version}
SSLCertificateFile "{root}/server.pem"
SSLCertificateKeyFile "{root}/server.key"
SSLCACertificateFile "{root}/client-ca.pem"
SSLVerifyClient require
SSLVerifyDepth 3
SSLSessionCache none
<Directory "{root}/htdocs">
    AuthType Digest
    AuthName "{realm}"
    AuthDigestProvider file
    AuthUserFile "{root}/digest.pw"
    Require valid-user
</Directory>
"""


class ApacheProvisioning:
    """``with ApacheProvisioning(server_identity, client_ca, ...) as apache``: serves
    ``document`` at ``apache.url`` to a client whose certificate ``client_ca`` issued."""

    def __init__(
        self,
        identity: Issued,
        *,
        client_ca: Issued,
        username: str,
        password: str,
        document: bytes,
        tls_version: str = "1.3",
    ) -> None:
        self.identity = identity
        self.client_ca = client_ca
        self.username = username
        self.password = password
        self.document = document
        self.tls_version = tls_version
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: str | None = None
        self._drain: threading.Thread | None = None
        self.log: list[str] = []  # Apache's error log, line by line

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/provisioning.xml"

    def __enter__(self) -> ApacheProvisioning:
        self._tmp = tempfile.mkdtemp(prefix="sipsgate-apache-")
        root = Path(self._tmp)
        os.chmod(root, 0o755)  # noqa: S103 - the worker (nobody) reads the document
        (root / "htdocs").mkdir(mode=0o755)
        (root / "htdocs" / "provisioning.xml").write_bytes(self.document)
        (root / "server.pem").write_bytes(self.identity.chain_pem())
        (root / "server.key").write_bytes(self.identity.key_pem)  # read before the drop
        (root / "client-ca.pem").write_bytes(self.client_ca.pem)
        ha1 = hashlib.md5(  # RFC 2617 digest, as mod_auth_digest stores it
            f"{self.username}:{REALM}:{self.password}".encode(), usedforsecurity=False
        ).hexdigest()
        (root / "digest.pw").write_text(f"{self.username}:{REALM}:{ha1}\n")
        for name in ("htdocs/provisioning.xml", "digest.pw", "client-ca.pem", "server.pem"):
            os.chmod(root / name, 0o644)
        self.port = free_port()  # Apache cannot report a port the OS chose
        modules = "\n".join(f'LoadModule {m} "{MODULES / so}"' for m, so in _MODULES)
        user = "User nobody\nGroup nogroup" if os.geteuid() == 0 else ""
        (root / "httpd.conf").write_text(
            CONF.format(
                root=root,
                port=self.port,
                modules=modules,
                user=user,
                version=self.tls_version,
                realm=REALM,
            )
        )
        self._proc = subprocess.Popen(
            ["apache2", "-f", str(root / "httpd.conf"), "-DFOREGROUND"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        )  # fmt: skip
        try:
            # The error log (standard error, here) says this once the listener is up.
            read_line_matching(self._proc, b"resuming normal operations")
        except RuntimeError:
            self.__exit__()
            raise
        self._drain = threading.Thread(target=self._read_output, daemon=True)
        self._drain.start()
        return self

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.log.append(line.decode(errors="replace"))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            stop_process(self._proc, self._drain)
            self._proc = None
        if self._tmp is not None:
            subprocess.run(["rm", "-rf", self._tmp], check=False)
            self._tmp = None


def apache_version() -> str:
    out = subprocess.run(["apache2", "-v"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].split(":", 1)[1].strip()
