"""`sipsgate certs ...` run as a real command on a real data directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from certstore.decision import decide
from certstore.model import Peer, Transport
from certstore.sqlite import SqliteStore
from certstore.x509 import load_certificates

Run = Callable[..., subprocess.CompletedProcess[str]]


def _sipsgate() -> list[str]:
    exe = shutil.which("sipsgate", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "gateway.cli"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run(data_dir: Path, tmp_path: Path) -> Run:
    env = {
        **os.environ,
        "SIPSGATE_GATEWAY_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }

    def run(
        *args: str, stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*_sipsgate(), *args],
            env=env,
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


def run_json(run: Run, *args: str) -> Any:
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(tmp_path: Path, ca: trustme.CA) -> Path:
    path = tmp_path / "provider-ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    return path


def ca_fingerprint(ca: trustme.CA) -> str:
    return load_certificates(ca.cert_pem.bytes()).certificates[0].fingerprint


class TestTrustList:
    def test_add_list_show_export_remove(self, run: Run, ca: trustme.CA, ca_file: Path) -> None:
        """A certificate added from a file is listed, shown, exported byte-identical, removed."""
        fp = ca_fingerprint(ca)
        added = run_json(run, "certs", "add", str(ca_file))
        assert [c["fingerprint"] for c in added["added"]] == [fp]
        again = run_json(run, "certs", "add", str(ca_file))
        assert added["added"] and again["added"] == []
        assert [c["fingerprint"] for c in again["already_present"]] == [fp]

        listed = run_json(run, "certs", "list", "--kind", "ca")
        entry = next(e for e in listed if e["fingerprint"] == fp)
        assert (
            entry["source"] == "uploaded" and entry["kind"] == "ca" and entry["status"] == "valid"
        )
        builtins = [e for e in listed if e["source"] == "builtin"]
        assert builtins, "a new store ships the builtin CAs"

        shown = run_json(run, "certs", "show", fp[:12])
        assert shown["fingerprint"] == fp and shown["basic_constraints"]["is_ca"] is True
        table = run("certs", "list").stdout
        assert fp[:16] in table and "FINGERPRINT" in table

        pem = run("certs", "export", fp).stdout
        assert load_certificates(pem.encode()).certificates[0].fingerprint == fp
        removed = run_json(run, "certs", "remove", fp)
        assert removed["fingerprint"] == fp
        assert fp not in {e["fingerprint"] for e in run_json(run, "certs", "list")}

    def test_bad_file_changes_nothing(self, run: Run, tmp_path: Path) -> None:
        """Garbage gives a one-line reason and exit 1; the trust list is unchanged."""
        before = run_json(run, "certs", "list")
        bad = tmp_path / "bad.pem"
        bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        proc = run("certs", "add", str(bad), ok=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith("sipsgate: ") and "base64" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert run_json(run, "certs", "list") == before

    def test_unknown_fingerprint(self, run: Run) -> None:
        proc = run("certs", "show", "00" * 32, ok=False)
        assert proc.returncode == 1 and "No trusted certificate" in proc.stderr

    def test_clear_needs_confirmation_then_restore_defaults(self, run: Run) -> None:
        count = len(run_json(run, "certs", "list"))
        refused = run("certs", "clear", ok=False)
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert len(run_json(run, "certs", "list")) == count
        assert run_json(run, "certs", "clear", "--yes") == {"removed": count}
        assert run_json(run, "certs", "list") == []
        restored = run_json(run, "certs", "restore-defaults")
        assert len(restored["added"]) == count

    def test_export_whole_list(self, run: Run) -> None:
        bundle = run("certs", "export").stdout.encode()
        assert len(load_certificates(bundle).certificates) == len(run_json(run, "certs", "list"))


def _record_rejection(data_dir: Path, chain_pem: bytes, host: str) -> None:
    """Put a chain into the rejected list the way the connector does after a handshake."""
    chain = load_certificates(chain_pem).certificates
    peer = Peer(host=host, port=5061, transport=Transport.SIPS, sni=host)
    now = datetime.now(UTC)
    store = SqliteStore(data_dir / "sipsgate.db")
    try:
        verdict = decide(chain, peer, now, store.snapshot())
        assert not verdict.accepted
        store.record_handshake(verdict, chain, peer, now)
    finally:
        store.close()


class TestRejectedAndPins:
    def test_list_writes_peers_as_uris(self, run: Run, data_dir: Path) -> None:
        """The PEER column is the URI a user would type: https:// with //, IPv6 in []."""
        run("certs", "list")
        now = datetime.now(UTC)
        store = SqliteStore(data_dir / "sipsgate.db")
        try:
            for peer in (
                Peer(host="127.0.0.1", port=8443, transport=Transport.HTTPS),
                Peer(host="::1", port=5061, transport=Transport.SIPS),
            ):
                leaf = trustme.CA().issue_cert(peer.host)
                chain = load_certificates(leaf.cert_chain_pems[0].bytes()).certificates
                store.record_handshake(decide(chain, peer, now, store.snapshot()), chain, peer, now)
        finally:
            store.close()
        out = run("certs", "rejected", "list").stdout
        assert "https://127.0.0.1:8443" in out
        assert "sips:[::1]:5061" in out
        assert "https:127.0.0.1" not in out
        # Counts in words, times to the second.
        assert out.rstrip().endswith("\n2 rejected chains")
        assert not re.search(r"\d\.\d{6}", out), out
        entry_id = str(run_json(run, "certs", "rejected", "list")[0]["id"])
        shown = run("certs", "rejected", "show", entry_id).stdout
        assert re.search(r"seen: +1 time, first \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, last ", shown)
        assert re.search(
            r"Rejected chain \d+: (https://127\.0\.0\.1:8443|sips:\[::1\]:5061)", shown
        )
        assert not re.search(r"\d\.\d{6}", shown), shown
        assert "(s)" not in out + shown + run("certs", "pins").stdout

    def test_trust_a_rejected_chain(self, run: Run, data_dir: Path) -> None:
        """A chain from an unknown CA is listed with its reasons; trusting it drops the entry."""
        run("certs", "list")  # creates the store
        private_ca = trustme.CA()
        leaf = private_ca.issue_cert("sip.example.net")
        # The peer sends its whole chain, root included, as many PBXs do.
        chain_pem = leaf.cert_chain_pems[0].bytes() + private_ca.cert_pem.bytes()
        _record_rejection(data_dir, chain_pem, "sip.example.net")
        rejected = run_json(run, "certs", "rejected", "list")
        assert len(rejected) == 1
        entry = rejected[0]
        assert "unknown-issuer" in entry["reasons"]
        assert entry["peer"] == {
            "host": "sip.example.net",
            "port": 5061,
            "transport": "sips",
            "sni": "sip.example.net",
        }
        shown = run("certs", "rejected", "show", str(entry["id"])).stdout
        assert "unknown-issuer" in shown and "sip.example.net" in shown

        ca_fp = ca_fingerprint(private_ca)
        trusted = run_json(run, "certs", "trust", str(entry["id"]), "--fingerprint", ca_fp[:10])
        assert [c["fingerprint"] for c in trusted["added"]] == [ca_fp]
        assert run_json(run, "certs", "rejected") == []
        assert any(e["source"] == "trusted-from-rejected" for e in run_json(run, "certs", "list"))

    def test_accept_pins_the_leaf(self, run: Run, data_dir: Path) -> None:
        run("certs", "list")
        leaf = trustme.CA().issue_cert("pbx.example.net")
        _record_rejection(data_dir, leaf.cert_chain_pems[0].bytes(), "pbx.example.net")
        entry = run_json(run, "certs", "rejected")[0]
        pin = run_json(
            run,
            "certs",
            "rejected",
            "accept",
            str(entry["id"]),
            "--scope",
            "pbx.example.net",
            "--expires-in",
            "7d",
            "--note",
            "until renewal",
        )
        assert pin["decision"] == "accept" and pin["scope"] == "pbx.example.net"
        assert pin["fingerprint"] == entry["chain"][0]["fingerprint"]
        assert pin["expires_at"] is not None and pin["note"] == "until renewal"
        assert [p["id"] for p in run_json(run, "certs", "pins")] == [pin["id"]]

    def test_pins_add_remove_and_bad_scope(self, run: Run, tmp_path: Path, ca: trustme.CA) -> None:
        leaf_file = tmp_path / "leaf.pem"
        leaf_file.write_bytes(ca.issue_cert("x.example.net").cert_chain_pems[0].bytes())
        pin = run_json(
            run,
            "certs",
            "pins",
            "add",
            "--reject",
            "--certificate",
            str(leaf_file),
            "--match",
            "public-key",
        )
        assert pin["decision"] == "reject" and pin["match"] == "public-key" and pin["scope"] is None
        bad = run(
            "certs",
            "pins",
            "add",
            "--accept",
            "--fingerprint",
            "ab" * 32,
            "--scope",
            "bad host!",
            ok=False,
        )
        assert bad.returncode == 1 and "scope" in bad.stderr
        assert len(run_json(run, "certs", "pins")) == 1
        run("certs", "pins", "remove", str(pin["id"]))
        assert run_json(run, "certs", "pins") == []
        missing = run("certs", "pins", "remove", str(pin["id"]), ok=False)
        assert missing.returncode == 1


class TestSettingsAndBackup:
    def test_settings_round_trip_password_write_only(self, run: Run) -> None:
        settings = run_json(run, "certs", "settings")
        assert (
            settings["accept_all_certificates"] is False
            and settings["http_auth_password_set"] is False
        )
        changed = json.loads(
            run(
                "certs",
                "settings",
                "--accept-all",
                "on",
                "--http-auth-username",
                "dect01",
                "--http-auth-password-stdin",
                "--json",
                stdin="s3cret-pass\n",
            ).stdout
        )
        assert changed["accept_all_certificates"] is True
        assert (
            changed["http_auth_username"] == "dect01" and changed["http_auth_password_set"] is True
        )
        assert "s3cret-pass" not in json.dumps(changed)
        human = run("certs", "settings").stdout
        assert "warning" in human and "s3cret-pass" not in human

    def test_too_long_username_refused(self, run: Run) -> None:
        proc = run("certs", "settings", "--http-auth-username", "u" * 75, ok=False)
        assert proc.returncode == 1 and "http_auth_username" in proc.stderr
        assert run_json(run, "certs", "settings")["http_auth_username"] == ""

    def test_backup_restore_into_another_data_dir(
        self, run: Run, tmp_path: Path, ca_file: Path
    ) -> None:
        run("certs", "add", str(ca_file))
        run(
            "certs",
            "pins",
            "add",
            "--accept",
            "--fingerprint",
            "cd" * 32,
            "--scope",
            "sip.example.net:5061",
        )
        backup = tmp_path / "backup.json"
        run("certs", "backup", "--out", str(backup))
        other = dict(os.environ, SIPSGATE_GATEWAY_DATA_DIR=str(tmp_path / "other"))
        other["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)

        def run_other(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*_sipsgate(), *args],
                env=other,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        restored = run_other("certs", "restore", str(backup), "--json")
        assert restored.returncode == 0, restored.stderr
        assert json.loads(run_other("certs", "list", "--json").stdout) == run_json(
            run, "certs", "list"
        )
        assert json.loads(run_other("certs", "pins", "--json").stdout) == run_json(
            run, "certs", "pins"
        )

        corrupt = tmp_path / "corrupt.json"
        corrupt.write_bytes(backup.read_bytes().replace(b"sip.example.net", b"sip.evil.example"))
        before = run_json(run, "certs", "pins")
        proc = run("certs", "restore", str(corrupt), ok=False)
        assert proc.returncode == 1 and "checksum" in proc.stderr
        assert run_json(run, "certs", "pins") == before

    def test_audit_trail_is_written(self, run: Run, ca_file: Path, data_dir: Path) -> None:
        run("certs", "add", str(ca_file))
        store = SqliteStore(data_dir / "sipsgate.db")
        try:
            events = store.audit(limit=5)
        finally:
            store.close()
        assert events[0].action == "trust.add" and events[0].interface == "cli"

    def test_gateway_names_in_json_and_audit(self, run: Run, ca_file: Path, data_dir: Path) -> None:
        """``--json`` lists the gateways that saw a rejected chain; the CLI opens the
        store as the configured ``gateway.name``, which its audit events name."""
        run("certs", "list")
        chain = load_certificates(
            trustme.CA().issue_cert("sip.fleet.example").cert_chain_pems[0].bytes()
        )
        peer = Peer(host="sip.fleet.example", port=5061, transport=Transport.SIPS)
        now = datetime.now(UTC)
        for name in ("site-a", "site-b", "site-a"):
            store = SqliteStore(data_dir / "sipsgate.db", gateway=name)
            try:
                verdict = decide(chain.certificates, peer, now, store.snapshot())
                store.record_handshake(verdict, chain.certificates, peer, now)
            finally:
                store.close()
        (entry,) = run_json(run, "certs", "rejected", "list")
        assert (entry["count"], entry["seen_by"]) == (3, ["site-a", "site-b"])
        run("certs", "add", str(ca_file))
        store = SqliteStore(data_dir / "sipsgate.db")
        try:
            events = store.audit(limit=500)
        finally:
            store.close()
        assert (events[0].action, events[0].gateway) == ("trust.add", "sipsgate")
        assert [e.gateway for e in events if e.action == "rejected.record"] == ["site-a"]


def test_config_file_and_env_select_the_store(run: Run, tmp_path: Path) -> None:
    """--config picks the data dir; the environment override wins over the file."""
    config = tmp_path / "alt.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "from-file"}"\n')
    run("certs", "list", "--config", str(config))
    assert (tmp_path / "data" / "sipsgate.db").exists()  # env override (fixture) wins
    assert not (tmp_path / "from-file").exists()
