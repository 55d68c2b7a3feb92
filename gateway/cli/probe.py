"""``sipsgate probe``: connect through the TLS connector and show what it decided.

The diagnostic a field engineer runs first. It dials the URI (or ``--connect``), lets
the connector decide exactly as the gateway would, records a rejection in the
rejected list (unless ``--no-record``), and prints the verdict, the rule, every
reason with what to do about it, and the chain. Exit codes: 0 accept, 1 reject,
2 the connection itself failed (or the command line was wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from certstore import notation, render
from certstore.model import Certificate, Peer, Verdict
from certstore.store import CertStore
from gateway.cli.common import cli_actor, store_for
from gateway.config import SipSection, load_config
from gateway.errors import (
    ClientCertificateRefused,
    TlsConnectError,
    TlsError,
    TlsHandshakeError,
    TlsTimeout,
    TrustRejected,
    UsageError,
)
from gateway.log import configure_logging
from gateway.tls.advice import advise, rule_sentence
from gateway.tls.connector import TlsConnector
from gateway.tls.factory import build_connector
from gateway.tls.policy import TlsTarget, target_from_uri
from gateway.tls.trust import peer_for

EXIT_ACCEPT = 0
EXIT_REJECT = 1
EXIT_CONNECTION = 2
EXIT_USAGE = 2
# How long the probe waits for a TLS 1.3 server's verdict on the client certificate.
CLIENT_VERDICT_WAIT = 2.0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "probe",
        parents=[common],
        help="connect to a SIPS or HTTPS server and show the trust verdict",
        description=(
            "Connect through the gateway's TLS connector and print the verdict, the rule, "
            "every reason with its fix, and the certificate chain. Exit 0 on accept, "
            "1 on reject, 2 when no TLS connection could be made."
        ),
    )
    p.add_argument("uri", metavar="URI", help="sips:HOST[:PORT] or https://HOST[:PORT]")
    p.add_argument(
        "--connect",
        metavar="HOST:PORT",
        help="dial this address instead of resolving the URI (the URI's identity is checked)",
    )
    p.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store a rejection in the rejected list, as the gateway would (default: on)",
    )
    p.set_defaults(func=cmd_probe)


def parse_target(uri: str, connect: str | None = None) -> TlsTarget:
    """The target of the probe's URI and ``--connect``; a bad one is a usage error."""
    try:
        return target_from_uri(uri, connect)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


# Where the dialled address came from, as ``--json`` names it (``address_source``).
SOURCE_URI = "uri"
SOURCE_CONNECT = "--connect"
SOURCE_UPSTREAM_ADDRESS = "sip.upstream_address"


def follow_config(target: TlsTarget, sip: SipSection) -> tuple[TlsTarget, str]:
    """Dial ``sip.upstream_address`` when ``target`` is the configured upstream, as the
    relay does, so that the command its log and 503 Warning name reproduces what it saw.
    """
    if target.connect_host is not None or not sip.upstream or not sip.upstream_address:
        return target, SOURCE_URI if target.connect_host is None else SOURCE_CONNECT
    try:
        upstream = target_from_uri(sip.upstream, sip.upstream_address)
    except ValueError:  # the config check refuses it at load; nothing to follow
        return target, SOURCE_URI
    same = (
        target.scheme == upstream.scheme
        and target.host.rstrip(".").lower() == upstream.host.rstrip(".").lower()
        and target.port == upstream.port
    )
    if not same:
        return target, SOURCE_URI
    return (
        replace(target, connect_host=upstream.connect_host, connect_port=upstream.connect_port),
        SOURCE_UPSTREAM_ADDRESS,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """What one probe found: a decision (with chain), or the connection error."""

    target: TlsTarget
    verdict: Verdict | None = None
    chain: tuple[Certificate, ...] = ()
    peer: Peer | None = None
    error: TlsError | None = None
    tls_version: str | None = None
    cipher: str | None = None
    decided_at: datetime | None = None


async def run_probe(connector: TlsConnector, target: TlsTarget) -> ProbeResult:
    """Open one connection through ``connector``, note the decision, close it cleanly."""
    try:
        transport, _ = await connector.create_connection(asyncio.Protocol, target)
    except TrustRejected as exc:
        verdict = exc.verdict
        if not isinstance(verdict, Verdict):  # pragma: no cover - the store policy's own
            raise
        return ProbeResult(
            target=target,
            verdict=verdict,
            chain=tuple(c for c in exc.chain if isinstance(c, Certificate)),
            peer=peer_for(target),
        )
    except TlsError as exc:
        return ProbeResult(target=target, error=exc)
    try:
        # TLS 1.3: the server judges our client certificate after the handshake.
        await transport.confirm(min(CLIENT_VERDICT_WAIT, connector.settings.handshake_timeout))
    except TlsError as exc:
        await transport.wait_closed()
        return ProbeResult(target=target, error=exc)
    check = transport.get_extra_info("tls_check")
    info = transport.get_extra_info("ssl_object")
    version, cipher = info.version(), info.cipher()[0]
    transport.close()
    await transport.wait_closed()
    verdict = check.verdict
    assert isinstance(verdict, Verdict)
    return ProbeResult(
        target=target,
        verdict=verdict,
        chain=tuple(check.chain),
        peer=check.peer,
        tls_version=version,
        cipher=cipher,
    )


def _rejected_id(store: CertStore, result: ProbeResult) -> int | None:
    if result.verdict is None or not result.chain:
        return None
    leaf = result.chain[0].fingerprint
    for entry in store.list_rejected():
        if entry.chain and entry.chain[0].fingerprint == leaf and entry.peer == result.peer:
            return entry.id
    return None


def cmd_probe(args: argparse.Namespace) -> int:
    try:
        target = parse_target(args.uri, args.connect)
    except UsageError as exc:
        print(f"sipsgate probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    target, source = follow_config(target, config.sip)
    # The verdict is the output; the log (standard error) only carries real errors.
    configure_logging(level="error", fmt=config.log.format)
    store = store_for(config)
    try:
        connector = build_connector(config, store, record=args.record, actor=cli_actor())
        result = asyncio.run(run_probe(connector, target))
        now = datetime.now(UTC)
        recorded = bool(args.record and result.verdict is not None and result.verdict.should_record)
        rejected_id = _rejected_id(store, result) if recorded else None
    finally:
        store.close()
    if args.json:
        doc = as_json(result, now, recorded=recorded, rejected_id=rejected_id, source=source)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_human(result, now, recorded=recorded, rejected_id=rejected_id, source=source)
    if result.error is not None or result.verdict is None:
        return EXIT_CONNECTION
    return EXIT_ACCEPT if result.verdict.accepted else EXIT_REJECT


def _error_code(error: TlsError) -> str:
    if isinstance(error, ClientCertificateRefused):
        return "client-certificate-refused"
    if isinstance(error, TlsTimeout):
        return "timeout"
    if isinstance(error, TlsConnectError):
        return "connect"
    if isinstance(error, TlsHandshakeError):
        return "handshake"
    return "tls"


def as_json(
    result: ProbeResult,
    now: datetime,
    *,
    recorded: bool,
    rejected_id: int | None,
    source: str = SOURCE_URI,
) -> dict[str, Any]:
    target = result.target
    address = {"host": target.address[0], "port": target.address[1], "source": source}
    if result.error is not None or result.verdict is None or result.peer is None:
        error = result.error
        return {
            "verdict": None,
            "error": {
                "code": _error_code(error) if error else "tls",
                "message": str(error),
                "openssl_reasons": list(getattr(error, "openssl_reasons", ())),
            },
            "peer": render.peer(peer_for(target)),
            "address": address,
        }
    out = render.verdict(result.verdict, result.chain, result.peer, now)
    out["address"] = address
    out["advice"] = [
        {
            "reason": a.reason,
            "message": a.sentence,
        }
        for a in (
            advise(r, chain=result.chain, peer=result.peer, now=now, rejected_id=rejected_id)
            for r in result.verdict.reasons
        )
    ]
    out["revocation"] = [revocation_line(result.verdict, d) for d in range(len(result.chain))]
    out["recorded"] = recorded
    out["rejected_id"] = rejected_id
    out["tls"] = {"version": result.tls_version, "cipher": result.cipher}
    return out


def print_human(
    result: ProbeResult,
    now: datetime,
    *,
    recorded: bool,
    rejected_id: int | None,
    source: str = SOURCE_URI,
) -> None:
    target = result.target
    dialled = notation.host_port(*target.address)
    sni = target.sni or "none (IP literal)"
    print(f"Probe:    {target.uri}  (dialled {dialled}, SNI {sni})")
    if source == SOURCE_UPSTREAM_ADDRESS:
        print(f"Address:  {dialled} from sip.upstream_address (this is the configured upstream)")
    if result.error is not None or result.verdict is None or result.peer is None:
        print("Verdict:  NO CONNECTION")
        print(f"Error:    {result.error}")
        return
    verdict = result.verdict
    pin_id = verdict.matched_pin.id if verdict.matched_pin is not None else None
    print(f"Verdict:  {verdict.verdict.value.upper()}")
    print(f"Rule:     {verdict.rule.value} - {rule_sentence(verdict.rule, matched_pin_id=pin_id)}")
    if result.tls_version:
        print(f"TLS:      {result.tls_version}, {result.cipher}")
    if verdict.reasons:
        print("Reasons:")
        for reason in verdict.reasons:
            advice = advise(
                reason, chain=result.chain, peer=result.peer, now=now, rejected_id=rejected_id
            )
            print(f"  - {reason}: {advice.sentence}")
        messages = [f for f in verdict.findings if f.message]
        if messages:
            print("Findings:")
            for finding in messages:
                where = "" if finding.depth is None else f" [certificate {finding.depth}]"
                print(f"  - {finding.reason.value}{where}: {finding.message}")
    count = len(result.chain)
    print(f"Chain ({count} certificate{'s' if count != 1 else ''}, leaf first):")
    for depth, cert in enumerate(result.chain):
        _print_certificate(depth, cert, now)
        print(f"      revocation: {revocation_line(verdict, depth)}")
    if recorded:
        where = f" as #{rejected_id}" if rejected_id is not None else ""
        print(
            f"Recorded in the rejected list{where}; review it with `sipsgate certs rejected"
            f"{' show ' + str(rejected_id) if rejected_id is not None else ''}`."
        )
    elif not verdict.accepted:
        print("Not recorded (--no-record).")


def revocation_line(verdict: Verdict, depth: int) -> str:
    """The revocation status of the chain's certificate at ``depth`` and where it came
    from, as the decision learned it."""
    status = next((r for r in verdict.revocation if r.depth == depth), None)
    if status is None:
        return "not checked (a trust anchor, revocation off, or not on the validated path)"
    if status.status.value == "unknown":
        return "unknown: " + "; ".join(status.notes)
    source = status.source.value if status.source is not None else "?"
    where = f" {status.url}" if status.url else ""
    dated = f", thisUpdate {render.iso(status.this_update)}" if status.this_update else ""
    nxt = f", nextUpdate {render.iso(status.next_update)}" if status.next_update else ""
    text = f"{status.status.value} (from {source}{where}{dated}{nxt})"
    if status.revoked is not None:
        reason = f", reason {status.revoked.reason}" if status.revoked.reason else ""
        text += f", revoked at {render.iso(status.revoked.revoked_at)}{reason}"
    return text


def _print_certificate(depth: int, cert: Certificate, now: datetime) -> None:
    print(f"  [{depth}] {cert.subject}")
    print(f"      issuer:   {cert.issuer}")
    status = cert.status_at(now).value
    print(
        f"      valid:    {notation.when(cert.not_before)} .. {notation.when(cert.not_after)} "
        f"({status})"
    )
    key = f"{cert.public_key_type} {cert.public_key_size}"
    if cert.public_key_curve:
        key += f" ({cert.public_key_curve})"
    flags = [
        flag
        for flag, on in (
            ("CA", cert.is_ca),
            ("self-signed", cert.self_signed),
            ("weak key", cert.weak_key),
            ("weak signature", cert.weak_signature),
            (f"v{cert.version}", cert.version != 3),
        )
        if on
    ]
    print(
        f"      key:      {key}, signed {cert.signature_algorithm}"
        + (f"  [{', '.join(flags)}]" if flags else "")
    )
    names = [f"URI:{u}" for u in cert.san_uri] + [f"DNS:{d}" for d in cert.san_dns]
    names += [f"IP:{i}" for i in cert.san_ip]
    if names:
        print(f"      names:    {', '.join(names)}")
    print(f"      sha256:   {cert.fingerprint}")
    print(f"      sha1:     {cert.fingerprint_sha1}")
    print(f"      key sha256: {cert.spki_fingerprint}")
