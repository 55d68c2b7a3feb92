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
from datetime import UTC, datetime
from typing import Any

from certstore import notation
from certstore.model import Certificate
from gateway.cli.common import cli_actor, store_for
from gateway.config import load_config
from gateway.errors import (
    UsageError,
)
from gateway.log import configure_logging
from gateway.tls.advice import advise, rule_sentence
from gateway.tls.factory import build_connector
from gateway.tls.policy import TlsTarget, target_from_uri
from gateway.tls.probe import (
    SOURCE_UPSTREAM_ADDRESS,
    SOURCE_URI,
    ProbeResult,
    as_json,
    follow_config,
    rejected_id,
    revocation_line,
    run_probe,
)

EXIT_ACCEPT = 0
EXIT_REJECT = 1
EXIT_CONNECTION = 2
EXIT_USAGE = 2


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
        entry_id = rejected_id(store, result) if recorded else None
    finally:
        store.close()
    if args.json:
        doc = as_json(result, now, recorded=recorded, rejected_id=entry_id, source=source)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_human(result, now, recorded=recorded, rejected_id=entry_id, source=source)
    if result.error is not None or result.verdict is None:
        return EXIT_CONNECTION
    return EXIT_ACCEPT if result.verdict.accepted else EXIT_REJECT


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
