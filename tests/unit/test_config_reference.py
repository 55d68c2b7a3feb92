"""The example config and the configuration reference never drift from the schema."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gateway.config import Config, build_config
from gateway.config_reference import GENERATED, example_toml, undocumented_keys

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_is_documented() -> None:
    """A key added to the schema without a description fails here."""
    assert undocumented_keys() == []


def test_example_file_is_the_defaults() -> None:
    """deploy/sipsgate.toml loads to exactly the embedded defaults."""
    raw = tomllib.loads((ROOT / "deploy/sipsgate.toml").read_text())
    assert build_config(raw, env={}) == Config()
    assert set(raw) == {"gateway", "admin", "sip", "tls", "provisioning", "store", "log"}


def test_generated_files_are_current() -> None:
    """The committed example and reference are what the schema generates."""
    for rel, make in GENERATED.items():
        assert (ROOT / rel).read_text() == make(), (
            f"{rel} is stale: run python -m gateway.config_reference --write"
        )


def test_example_round_trips() -> None:
    assert build_config(tomllib.loads(example_toml()), env={}) == Config()
