"""``sipsgate device ...`` run for real, in a subprocess, on a store in a temporary
data directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certstore import device
from tests.device_support import NOW, openssl, pem_of
from tests.pki import CertFactory, Issued, make_key

ROOT = Path(__file__).resolve().parents[2]


# The CLI runs in a subprocess that reads the real clock.
LIVE = CertFactory(organization=None)


def issue_now(issuer: Issued, public_key: Any, **kwargs: Any) -> Any:
    """A certificate valid around the real clock (the subprocess reads it)."""
    kwargs.setdefault("cn", "gw.example.net")
    return LIVE.sign_csr(issuer, public_key, valid_days=(-1 / 24, 30), **kwargs)


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Cli:
    config: Path
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, input: bytes | None = None, ok: bool = True) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "--config", str(self.config), "device", *args],
            input=input,
            capture_output=True,
            env=self.env,
            cwd=self.cwd,
            timeout=120,
            check=False,
        )
        result = Result(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
            proc.stdout,
        )
        if ok:
            assert result.code == 0, f"sipsgate device {' '.join(args)}: {result.err}"
        return result


def make_cli(tmp_path: Path, *, allow_weak: bool = False) -> Cli:
    data = tmp_path / "data"
    config = tmp_path / "sipsgate.toml"
    config.write_text(
        "[gateway]\n"
        'name = "dect-gw"\n'
        f'data_dir = "{data}"\n'
        'host_names = ["gw.example.net", "192.0.2.7"]\n'
        f"allow_weak_keys = {'true' if allow_weak else 'false'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    return Cli(config=config, env=env, cwd=tmp_path)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path)


def chain_fingerprints(cli: Cli) -> list[str]:
    return [c["fingerprint"] for c in cli("show", "--json").json()["chain"]]


def stored(cli: Cli, tmp_path: Path) -> bytes:
    """The identity as stored: chain and key, through the CLI's own export."""
    out = tmp_path / "state.pem"
    cli("export", "--include-private-key", "--out", str(out))
    return out.read_bytes()


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("sipsgate: ")
    for word in words:
        assert word in lines[0]


class TestShow:
    def test_first_use_creates_standard(self, cli: Cli) -> None:
        """On a new data directory, show creates and shows the standard identity."""
        human = cli("show").out
        assert "Device identity: standard" in human
        assert "CN=dect-gw" in human
        assert "DNS:gw.example.net" in human
        assert "IP:192.0.2.7" in human
        details = cli("show", "--json").json()
        assert details["kind"] == "standard"
        assert details["certificate"]["common_name"] == "dect-gw"
        assert details["certificate"]["status"] == "valid"
        assert details["pending_csr"] is None

    def test_bad_config(self, cli: Cli) -> None:
        """A broken config ends with one line on stderr and a non-zero exit."""
        cli.config.write_text("[gateway]\nname = 3\n")
        assert_one_line_error(cli("show", ok=False), "gateway.name")


class TestRenewAndClear:
    def test_renew(self, cli: Cli) -> None:
        """Renew makes a new certificate and key, with progress on stderr."""
        before = cli("show", "--json").json()["certificate"]
        result = cli("renew")
        assert "Generating a new key (ec-p256)" in result.err
        assert "done" in result.err
        after = cli("show", "--json").json()["certificate"]
        assert after["fingerprint"] != before["fingerprint"]
        assert after["public_key_fingerprint"] != before["public_key_fingerprint"]

    def test_renew_reuse_key(self, cli: Cli) -> None:
        """Renew --reuse-key keeps the public key."""
        before = cli("show", "--json").json()["certificate"]
        after = cli("renew", "--reuse-key", "--json").json()["certificate"]
        assert after["public_key_fingerprint"] == before["public_key_fingerprint"]
        assert after["serial"] != before["serial"]

    def test_self_signed_then_clear(self, cli: Cli, tmp_path: Path) -> None:
        """self-signed installs an identity that renew refuses and clear replaces."""
        made = cli(
            "self-signed", "--cn", "gw.example.net", "--o", "Example", "--c", "de",
            "--san", "DNS:gw.example.net", "--san", "URI:sip:example.net",
            "--key", "rsa-2048", "--days", "400", "--json",
        ).json()  # fmt: skip
        assert made["kind"] == "installed"
        assert made["certificate"]["subject"] == "CN=gw.example.net,O=Example,C=DE"
        assert made["certificate"]["public_key"]["size"] == 2048
        pem = tmp_path / "ss.pem"
        cli("export", "--out", str(pem))
        text = openssl("x509", "-in", str(pem), "-text", "-noout")
        assert "URI:sip:example.net" in text
        before = stored(cli, tmp_path)
        assert_one_line_error(cli("renew", ok=False), "Clear")
        assert stored(cli, tmp_path) == before
        assert cli("clear", "--json").json()["kind"] == "standard"
        assert_one_line_error(cli("clear", ok=False), "already the standard")

    def test_subject_errors(self, cli: Cli, tmp_path: Path) -> None:
        """Every wrong field is named on one line; nothing changes."""
        before = stored(cli, tmp_path)
        result = cli("self-signed", "--cn", "x", "--c", "DEU", "--san", "IP:1.2.3", ok=False)
        assert_one_line_error(result, "country (C)", "1.2.3")
        assert stored(cli, tmp_path) == before

    def test_weak_key(self, tmp_path: Path) -> None:
        """RSA-1024 is refused by default and, once allowed, shown WEAK."""
        cli = make_cli(tmp_path)
        assert_one_line_error(
            cli("self-signed", "--cn", "x", "--key", "rsa-1024", ok=False), "allow_weak_keys"
        )
        weak = make_cli(tmp_path, allow_weak=True)
        weak("self-signed", "--cn", "x", "--key", "rsa-1024")
        assert "WEAK" in weak("show").out
        assert weak("show", "--json").json()["weak_key"] is True


class TestCsrAndInstall:
    def test_full_cycle(self, cli: Cli, tmp_path: Path) -> None:
        """csr create → CA signs → install (intermediate out of order) → trust → export."""
        req = tmp_path / "gw.csr"
        created = cli(
            "csr", "create", "--cn", "gw.example.net", "--ou", "Voice",
            "--san", "gw.example.net", "--san", "192.0.2.7", "--out", str(req),
        )  # fmt: skip
        assert "Generating a new key (ec-p256)" in created.err
        assert "verify OK" in openssl("req", "-in", str(req), "-verify", "-noout")
        shown = cli("csr", "show", "--json").json()
        assert shown["subject_alt_names"] == {
            "dns": ["gw.example.net"],
            "ip": ["192.0.2.7"],
            "uri": [],
        }
        assert cli("csr", "show", "--format", "pem").raw == req.read_bytes()
        der = tmp_path / "gw.csr.der"
        cli("csr", "show", "--format", "der", "--out", str(der))
        openssl("req", "-inform", "DER", "-in", str(der), "-verify", "-noout")
        assert "pending since" in cli("show").out

        root = LIVE.ca("Test Root CA")
        inter = LIVE.ca("CLI Intermediate", issuer=root)
        csr = device.load_csr(req.read_bytes())
        leaf = issue_now(inter, csr.public_key(), cn="gw.example.net")
        response = tmp_path / "response.pem"
        response.write_bytes(pem_of(leaf) + root.pem + inter.pem)
        installed = cli("install", str(response), "--json").json()
        assert installed["kind"] == "installed"
        assert installed["source"] == "response"
        assert [c["common_name"] for c in installed["chain"]] == [
            "gw.example.net",
            "CLI Intermediate",
            "Test Root CA",
        ]
        assert_one_line_error(cli("csr", "show", ok=False), "signing request")

        trusted = cli("trust", "--json").json()
        assert len(trusted["added"]) == 3
        assert "already" in cli("trust").out

        der_out = tmp_path / "leaf.der"
        cli("export", "--format", "der", "--out", str(der_out))
        assert "CN = gw.example.net" in openssl(
            "x509", "-inform", "DER", "-in", str(der_out), "-noout", "-subject"
        )
        chain_pem = cli("export").raw
        assert chain_pem.count(b"BEGIN CERTIFICATE") == 3
        assert b"PRIVATE KEY" not in chain_pem
        p7b = tmp_path / "chain.p7b"
        cli("export", "--format", "p7b", "--out", str(p7b))
        printed = openssl("pkcs7", "-inform", "DER", "-in", str(p7b), "-print_certs")
        assert printed.count("BEGIN CERTIFICATE") == 3

        keyfile = tmp_path / "backup.pem"
        cli("export", "--include-private-key", "--out", str(keyfile))
        assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
        assert b"-----BEGIN PRIVATE KEY-----" in keyfile.read_bytes()
        openssl("pkey", "-in", str(keyfile), "-noout", "-check")
        assert_one_line_error(
            cli("export", "--include-private-key", "--format", "der", ok=False), "PEM only"
        )

    def test_csr_remove(self, cli: Cli) -> None:
        """csr remove discards the request; a second remove is an error."""
        cli("csr", "create", "--cn", "gw")
        assert "discarded" in cli("csr", "remove").out
        assert_one_line_error(cli("csr", "remove", ok=False))

    def test_install_pkcs12_with_passphrase(self, cli: Cli, tmp_path: Path) -> None:
        """A PKCS#12 file installs with the passphrase from an environment variable."""
        root = LIVE.ca("Test Root CA")
        key = make_key()
        leaf = issue_now(root, key.public_key())
        p12 = tmp_path / "gw.p12"
        p12.write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"gw", key, leaf, [root.cert], serialization.BestAvailableEncryption(b"pw")
            )
        )
        before = stored(cli, tmp_path)
        cli.env["P12_PASS"] = "wrong"
        result = cli("install", str(p12), "--passphrase-env", "P12_PASS", ok=False)
        assert_one_line_error(result, "passphrase")
        assert stored(cli, tmp_path) == before
        cli.env["P12_PASS"] = "pw"
        assert (
            cli("install", str(p12), "--passphrase-env", "P12_PASS", "--json").json()["source"]
            == "pkcs12"
        )

    def test_install_chain_and_key_files(self, cli: Cli, tmp_path: Path) -> None:
        """A chain and a separate key file install; standard input works for the chain."""
        root = LIVE.ca("Test Root CA")
        key = make_key()
        leaf = issue_now(root, key.public_key())
        key_file = tmp_path / "gw.key"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        result = cli("install", "-", "--key", str(key_file), input=pem_of(leaf) + root.pem)
        assert "The device identity was installed." in result.out

    @pytest.mark.parametrize(
        ("case", "words"),
        [
            ("garbage", ("neither",)),
            ("wrong-key", ("not issued for",)),
            ("expired", ("expired",)),
            ("missing-file", ("cannot be read",)),
        ],
    )
    def test_install_failures(self, cli: Cli, tmp_path: Path, case: str, words: tuple[str]) -> None:
        """A refused install is one line on stderr and leaves the identity unchanged."""
        cli("csr", "create", "--cn", "gw")
        pending_key = cli("csr", "show", "--format", "pem").raw
        root = LIVE.ca("Test Root CA")
        upload = tmp_path / "upload.pem"
        if case == "garbage":
            upload.write_bytes(b"\x01\x02garbage" * 50)
        elif case == "wrong-key":
            upload.write_bytes(pem_of(issue_now(root, make_key().public_key())))
        elif case == "expired":
            csr = device.load_csr(pending_key)
            upload.write_bytes(
                pem_of(
                    LIVE.sign_csr(
                        root,
                        csr.public_key(),  # type: ignore[arg-type]
                        cn="gw.example.net",
                        not_before=NOW - timedelta(days=400),
                        not_after=NOW - timedelta(days=300),
                    )
                )
            )
        else:
            upload = tmp_path / "nope.pem"
        before = stored(cli, tmp_path)
        assert_one_line_error(cli("install", str(upload), ok=False), *words)
        assert stored(cli, tmp_path) == before
