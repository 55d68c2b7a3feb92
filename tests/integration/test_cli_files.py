"""Every file a command writes goes through the one safe writer: a backup with secrets
and a private key are 0600 even over an existing world-writable file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sipsgate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SIPSGATE_GATEWAY_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def open_file(path: Path) -> Path:
    path.write_bytes(b"previous content\n")
    path.chmod(0o666)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_with_secrets_is_written_0600(tmp_path: Path) -> None:
    out = open_file(tmp_path / "backup.json")
    run = sipsgate(tmp_path, "certs", "backup", "--include-secrets", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert mode(out) == 0o600
    assert b'"http_auth_password"' in out.read_bytes()
    run = sipsgate(tmp_path, "certs", "backup", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert mode(out) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_private_key_export_is_0600_and_a_chain_0644(tmp_path: Path) -> None:
    key = open_file(tmp_path / "identity.pem")
    run = sipsgate(tmp_path, "device", "export", "--include-private-key", "--out", str(key))
    assert run.returncode == 0, run.stderr
    assert mode(key) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    chain = open_file(tmp_path / "chain.pem")
    run = sipsgate(tmp_path, "certs", "export", "--out", str(chain))
    assert run.returncode == 0, run.stderr
    assert mode(chain) == 0o644
