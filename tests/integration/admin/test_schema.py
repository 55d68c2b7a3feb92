"""Property-based tests of the API against docs/openapi.yaml (schemathesis).

The admin app runs on real HTTPS in a thread of its own (schemathesis' client is
synchronous). Every generated request must get a non-5xx answer that conforms to the
document: status code, content type, headers and body schema.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from certstore.sqlite import SqliteStore
from certstore.x509 import to_pem
from gateway.config import Config, build_config
from gateway.provisioning.client import RetryPolicy
from gateway.provisioning.service import ProvisioningService, build_client
from tests.admin_support import PKI, TEST_ACTOR, AdminHarness, basic_header, open_store, start_admin

OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
MAX_EXAMPLES = 15
WAIT = 30.0

# Certificates are opaque to JSON Schema: generate real ones where a valid request needs one.
_SAMPLES = [PKI.ca("sample0.example")] + [PKI.leaf(None, cn=f"sample{i}.example") for i in (1, 2)]
_PEM = st.sampled_from([c.pem for c in _SAMPLES] + [b"".join(c.pem for c in _SAMPLES)])
schemathesis.openapi.format(
    "x-pem-certificate", st.sampled_from([c.pem.decode() for c in _SAMPLES])
)
schemathesis.openapi.media_type("application/x-pem-file", _PEM)
schemathesis.openapi.media_type("application/pkix-cert", st.sampled_from([c.der for c in _SAMPLES]))
schemathesis.openapi.media_type("application/octet-stream", _PEM)
_P7B = pkcs7.serialize_certificates([c.cert for c in _SAMPLES], serialization.Encoding.DER)
schemathesis.openapi.media_type("application/pkcs7-mime", st.just(_P7B))
_P12 = pkcs12.serialize_key_and_certificates(
    b"device", _SAMPLES[1].key, _SAMPLES[1].cert, None, serialization.NoEncryption()
)
schemathesis.openapi.media_type("application/x-pkcs12", st.just(_P12))

# Values whose validity JSON Schema cannot state (docs/openapi.yaml names these formats).
_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
_FORMATS = {
    "x-printable": _TEXT,
    "x-subject-text": _TEXT,
    "x-pin-scope": st.sampled_from(
        ["sip.example.net", "sip.example.net:5061", "192.0.2.10:5061", "[2001:db8::1]:5061"]
    ),
    # At least a day ahead: a slow run must not see a drawn time pass before it is sent.
    "x-future-date-time": st.integers(min_value=86_400, max_value=10**8).map(
        lambda s: (datetime.now(UTC) + timedelta(seconds=s)).isoformat()
    ),
    "x-dns-name": st.sampled_from(["gw.example.net", "sipsgate.local", "*.example.org"]),
    "x-ip-address": st.sampled_from(["192.0.2.1", "2001:db8::7", "127.0.0.1"]),
    "x-san-uri": st.sampled_from(["sip:example.net", "sips:gw.example.net", "https://gw/"]),
    "x-email": st.sampled_from(["ops@example.net", "pki@gw.example.org"]),
}


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# "Test a connection" dials what it is given: only loopback ports nothing listens on.
_CLOSED = closed_port()
_FORMATS["x-probe-uri"] = st.sampled_from(
    [f"sips:127.0.0.1:{_CLOSED}", f"https://127.0.0.1:{_CLOSED}"]
)
_FORMATS["x-probe-address"] = st.just(f"127.0.0.1:{_CLOSED}")
for _name, _strategy in _FORMATS.items():
    schemathesis.openapi.format(_name, _strategy)

schema = schemathesis.openapi.from_path(OPENAPI)


def unreachable_provisioning(
    data_dir: Path, store: SqliteStore
) -> tuple[Config, ProvisioningService]:
    """A real provisioning service whose server is not there: a fetch runs and fails
    quickly (one attempt), so its result is checked against the document too."""
    url = f"https://127.0.0.1:{closed_port()}/provisioning/{{mac}}.xml"
    raw = {"gateway": {"data_dir": str(data_dir)}, "provisioning": {"url": url}}
    config = build_config(raw, env={})
    client = build_client(config, store, mac=lambda: "7C2F80C6E5C2", retry=RetryPolicy(attempts=1))
    return config, ProvisioningService(client, interval=float(config.provisioning.interval))


@dataclass
class LiveAdmin:
    base_url: str
    ca_file: Path
    harness: AdminHarness

    def restore_identity(self) -> None:
        """Generated requests renew and replace the device identity, and the endpoint
        serves each new one at once (for names the client does not connect to): put the
        test identity back after each request."""
        original = self.harness.identity
        if self.harness.store.device_identity() != original:
            self.harness.store.set_device_identity(original, actor=TEST_ACTOR, action="test")
            self.harness.device_tls.reload()


@pytest.fixture(scope="module")
def live_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAdmin]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="admin-under-test", daemon=True)
    thread.start()
    root = tmp_path_factory.mktemp("schema")
    data_dir = root / "var"
    data_dir.mkdir()
    store = open_store(data_dir)
    try:
        config, service = unreachable_provisioning(data_dir, store)
        harness = asyncio.run_coroutine_threadsafe(
            start_admin(store, data_dir, config=config, provisioning=service), loop
        ).result(WAIT)
        ca_file = root / "admin-ca.pem"
        ca_file.write_bytes(to_pem(harness.identity.chain))
        yield LiveAdmin(base_url=harness.base_url.rstrip("/"), ca_file=ca_file, harness=harness)
        asyncio.run_coroutine_threadsafe(harness.close(), loop).result(WAIT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()
        store.close()


@pytest.fixture(scope="module")
def http(live_admin: LiveAdmin) -> Iterator[requests.Session]:
    session = requests.Session()
    session.verify = str(live_admin.ca_file)
    yield session
    session.close()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_conforms_to_openapi(
    case: schemathesis.Case, live_admin: LiveAdmin, http: requests.Session
) -> None:
    excluded = []
    # A multipart file, a backup, a provisioning document or a CRL is valid only when its
    # bytes are: a schema-valid body may be refused (400/422), so acceptance is not checked.
    opaque = ("/api/v1/restore", "/api/v1/provisioning/apply", "/api/v1/revocation/crl")
    if case.media_type == "multipart/form-data" or case.operation.path in opaque:
        excluded.append(positive_data_acceptance)
    try:
        _call(case, live_admin, http, excluded)
    finally:
        live_admin.restore_identity()


def _call(
    case: schemathesis.Case, live_admin: LiveAdmin, http: requests.Session, excluded: list[Any]
) -> None:
    headers = {"Authorization": basic_header()}
    transport = {"timeout": WAIT, "verify": str(live_admin.ca_file)}
    response = case.call(base_url=live_admin.base_url, session=http, headers=headers, **transport)
    live_admin.restore_identity()  # checks may replay the request on a new connection
    case.validate_response(
        response,
        excluded_checks=excluded,
        headers=headers,
        transport_kwargs={"base_url": live_admin.base_url, "session": http, **transport},
    )


@pytest.mark.parametrize("source", ["fingerprint", "certificate"])
def test_pin_without_expiry_twice_conforms(
    live_admin: LiveAdmin, http: requests.Session, source: str
) -> None:
    """``expires_at: null`` (no expiry) is accepted, and sending the same pin again
    returns the same pin (201, no second row); both answers conform to the document."""
    sample = _SAMPLES[2].model
    body: dict[str, Any] = {"decision": "accept", "expires_at": None, "note": None}
    body[source] = sample.fingerprint if source == "fingerprint" else to_pem([sample]).decode()
    operation = schema["/api/v1/decisions"]["POST"]
    answers = []
    for _ in range(2):
        response = http.post(
            f"{live_admin.base_url}/api/v1/decisions",
            json=body,
            headers={"Authorization": basic_header()},
            timeout=WAIT,
            verify=str(live_admin.ca_file),  # explicit: REQUESTS_CA_BUNDLE would win
        )
        assert response.status_code == 201, response.text
        operation.validate_response(response)
        answers.append(response.json())
    assert answers[0]["id"] == answers[1]["id"] and answers[0]["expires_at"] is None
