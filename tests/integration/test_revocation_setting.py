"""The revocation setting through the store, the CLI and the audit log."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certstore.errors import ValidationError
from certstore.model import RevocationMode
from certstore.sqlite import SqliteStore
from tests.integration._store_support import ADMIN, clock, last_details, store, store_path

__all__ = ["clock", "store", "store_path"]


def test_store_default_change_and_audit(store: SqliteStore) -> None:
    assert store.get_settings().revocation is RevocationMode.SOFT_FAIL
    updated = store.update_settings({"revocation": "hard-fail"}, actor=ADMIN)
    assert updated.revocation is RevocationMode.HARD_FAIL
    assert store.snapshot().settings.revocation is RevocationMode.HARD_FAIL
    assert last_details(store) == {
        "changed": {"revocation": {"from": "soft-fail", "to": "hard-fail"}}
    }


def test_store_refuses_bad_value_and_keeps_setting(store: SqliteStore) -> None:
    generation = store.snapshot().generation
    with pytest.raises(ValidationError, match="off, soft-fail, hard-fail"):
        store.update_settings({"revocation": "sometimes"}, actor=ADMIN)
    assert store.get_settings().revocation is RevocationMode.SOFT_FAIL
    assert store.snapshot().generation == generation


def test_backup_carries_the_setting(store: SqliteStore, tmp_path: Path) -> None:
    store.update_settings({"revocation": "off"}, actor=ADMIN)
    document = store.export_backup(now=datetime.now(UTC))
    assert json.loads(document)["settings"]["revocation"] == "off"


def _sipsgate() -> list[str]:
    exe = shutil.which("sipsgate", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "gateway.cli"]


def test_cli_settings_revocation(tmp_path: Path) -> None:
    env = {**os.environ, "SIPSGATE_GATEWAY_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_sipsgate(), "certs", "settings", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    shown = run("--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["revocation"] == "soft-fail"
    changed = run("--revocation", "hard-fail", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["revocation"] == "hard-fail"
    bad = run("--revocation", "maybe")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
    assert re.search(r"^revocation +hard-fail$", run().stdout, re.M)
