"""``sipsgate provision``: fetch now, apply a document from a file, show the last result.

``now`` fetches ``provisioning.url`` once from this process (the running gateway sees
the changes at its next handshake, as with every store change). ``apply FILE`` applies
a document offline (``-`` reads standard input; ``--dry-run`` shows what would
change). ``status`` prints the last result. Exit codes: 0 when the run succeeded
(applied, unchanged, not modified), 1 when it did not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from certstore import notation
from gateway.cli.common import cli_actor, config_of, emit_json, read_input, store_for
from gateway.config import Config
from gateway.log import configure_logging
from gateway.provisioning.apply import ApplyResult, check_document
from gateway.provisioning.document import MAX_DOCUMENT_BYTES, parse_document
from gateway.provisioning.errors import DocumentError
from gateway.provisioning.result import FetchResult, Trigger
from gateway.provisioning.service import build_client
from gateway.provisioning.state import ProvisioningState

EXIT_OK = 0
EXIT_FAILED = 1


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "provision",
        parents=[common],
        help="fetch or apply a provisioning document; show the last result",
        description="Auto-provisioning: fetch the document at provisioning.url now, apply "
        "one from a file, or show the last result.",
    )
    sub = p.add_subparsers(dest="provision_command", metavar="ACTION", required=True)
    now = sub.add_parser(
        "now",
        parents=[common],
        help="fetch provisioning.url once and apply the document",
        description="Fetch provisioning.url through the TLS connector with the stored "
        "HTTP digest credentials and apply the document.",
    )
    now.add_argument(
        "--force",
        action="store_true",
        help="ignore the ETag/Last-Modified of the last document: fetch and apply it again",
    )
    now.set_defaults(func=cmd_now)
    apply = sub.add_parser(
        "apply",
        parents=[common],
        help="apply a provisioning document from a file (offline)",
        description="Apply a provisioning document (XML or name=value lines) from FILE, "
        "all or nothing; - reads standard input.",
    )
    apply.add_argument("file", metavar="FILE")
    apply.add_argument(
        "--dry-run", action="store_true", help="check the document and show what would change"
    )
    apply.set_defaults(func=cmd_apply)
    status = sub.add_parser(
        "status",
        parents=[common],
        help="show the last provisioning result",
        description="Show the last provisioning result (time, status, changes, errors).",
    )
    status.set_defaults(func=cmd_status)


def _quiet(config: Config) -> None:
    # The result is the output; the log (standard error) only carries real problems.
    configure_logging(level="error", fmt=config.log.format)


def cmd_now(args: argparse.Namespace) -> int:
    config = config_of(args)
    _quiet(config)
    store = store_for(config)
    try:
        client = build_client(config, store)
        result = asyncio.run(client.fetch(trigger=Trigger.DEMAND, force=args.force))
    finally:
        store.close()
    _show(result, as_json=args.json)
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_apply(args: argparse.Namespace) -> int:
    config = config_of(args)
    _quiet(config)
    data = read_input(args.file, limit=MAX_DOCUMENT_BYTES, what="provisioning document")
    store = store_for(config)
    try:
        if args.dry_run:
            try:
                document = parse_document(data)
            except DocumentError as exc:
                print(f"sipsgate: {exc}", file=sys.stderr)
                return EXIT_FAILED
            checked = check_document(store, document, running=config)
            if args.json:
                emit_json(checked.to_dict())
            else:
                _print_apply(checked)
            return EXIT_OK if checked.ok else EXIT_FAILED
        client = build_client(config, store)
        result = asyncio.run(client.apply_bytes(data, trigger=Trigger.FILE, actor=cli_actor()))
    finally:
        store.close()
    _show(result, as_json=args.json)
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    config = config_of(args)
    result = ProvisioningState(config.data_dir).last_result()
    if result is None:
        if args.json:
            emit_json({"last_result": None, "url": config.provisioning.url or None})
        else:
            print("No provisioning has run yet.")
            if not config.provisioning.url:
                print("provisioning.url is empty: set it in the config to fetch a document.")
        return EXIT_OK
    if args.json:
        emit_json({"last_result": result.to_dict(), "url": config.provisioning.url or None})
    else:
        _print_result(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def _show(result: FetchResult, *, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_result(result)


def _print_result(result: FetchResult) -> None:
    print(f"Status:   {result.status.value}")
    print(f"At:       {notation.when(result.at)} ({result.trigger.value})")
    if result.url:
        http = f", HTTP {result.http_status}" if result.http_status is not None else ""
        tries = f", {result.attempts} attempt{'s' if result.attempts != 1 else ''}"
        print(f"URL:      {result.url}{http}{tries if result.attempts else ''}")
    if result.etag:
        print(f"ETag:     {result.etag}")
    if result.apply is not None:
        _print_apply(result.apply, header=False)
    elif result.errors:
        print("Errors:")
        for error in result.errors:
            print(f"  - {error}")


def _print_apply(result: ApplyResult, *, header: bool = True) -> None:
    if header:
        print(f"Status:   {result.status.value}{' (dry run)' if result.dry_run else ''}")
    verb = "Would change" if result.dry_run else "Changed"
    if result.changes:
        print(f"{verb}:")
        for change in result.changes:
            print(f"  - {change.parameter}: {change.old} -> {change.new}")
    if result.certificates_added:
        print("Trusted:" if not result.dry_run else "Would trust:")
        for cert in result.certificates_added:
            print(f"  - {cert.subject}  sha256 {cert.fingerprint}")
    if result.certificates_present:
        print(
            f"Already trusted: {notation.plural(len(result.certificates_present), 'certificate')}"
        )
    if not result.changes and not result.certificates_added and result.ok:
        print("Nothing to change: the store already says what the document says.")
    for item in result.not_applicable:
        state = "" if item.matches is None else (" (matches)" if item.matches else " (differs)")
        print(
            f"Not applied at run time: {item.parameter} = {item.value}{state}; "
            f"set {item.config_key} in the config file."
        )
    for unknown in result.unknown:
        hint = f" (did you mean {unknown.hint}?)" if unknown.hint else ""
        where = f" at line {unknown.line}" if unknown.line is not None else ""
        print(f"Unknown parameter{where}: {unknown.name}{hint}")
    if result.problems:
        print("Refused, nothing was changed:")
        for problem in result.problems:
            print(f"  - {problem.entry}: {problem.message}")
