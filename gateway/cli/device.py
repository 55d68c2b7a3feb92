"""``sipsgate device ...``: the gateway's own certificate and key, offline on the store.

    sipsgate device show
    sipsgate device renew [--reuse-key]
    sipsgate device self-signed --cn NAME [--o ORG ...] [--san DNS:host ...] [--key SPEC]
    sipsgate device csr create --cn NAME [...] [--out FILE]
    sipsgate device csr show [--format pem|der] [--out FILE]
    sipsgate device csr remove
    sipsgate device install FILE [--key KEYFILE] [--passphrase-file F | --passphrase-env VAR]
    sipsgate device clear
    sipsgate device export [--format pem|der|p7b] [--include-private-key] [--out FILE]
    sipsgate device trust [FINGERPRINT ...]

Human output by default, ``--json`` for scripts. Key generation shows progress on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from certstore import notation
from certstore.device import (
    DEFAULT_KEY_SPEC,
    STANDARD_VALIDITY_DAYS,
    BadPassphrase,
    ExportFormat,
    IdentitySpec,
    KeySpec,
    build_spec,
    split_san_items,
)
from certstore.device_service import DeviceService
from certstore.render import add_result
from gateway.cli.common import cli_actor, read_input, store_for, utc_now, write_output
from gateway.config import load_config
from gateway.errors import UsageError

T = TypeVar("T")

# Uploads read from files are bounded like the admin endpoint bounds request bodies.
MAX_FILE_BYTES = 1024 * 1024


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    device = subparsers.add_parser(
        "device",
        parents=[common],
        help="the gateway's own certificate and key",
        description="Show, renew, replace and export the gateway's own certificate (the "
        "admin endpoint's HTTPS certificate and the TLS client certificate).",
    )
    commands = device.add_subparsers(dest="device_command", metavar="ACTION", required=True)

    p = commands.add_parser("show", parents=[common], help="the current identity and its chain")
    p.set_defaults(func=_show)

    p = commands.add_parser(
        "renew", parents=[common], help="regenerate the standard self-signed identity"
    )
    p.add_argument("--reuse-key", action="store_true", help="keep the current key pair")
    p.set_defaults(func=_renew)

    p = commands.add_parser(
        "self-signed", parents=[common], help="replace the identity with a new self-signed one"
    )
    _subject_options(p)
    p.add_argument(
        "--days",
        type=int,
        default=STANDARD_VALIDITY_DAYS,
        help=f"validity in days (default {STANDARD_VALIDITY_DAYS})",
    )
    p.set_defaults(func=_self_signed)

    csr = commands.add_parser("csr", parents=[common], help="the pending signing request")
    csr_commands = csr.add_subparsers(dest="csr_command", metavar="ACTION", required=True)
    p = csr_commands.add_parser(
        "create", parents=[common], help="create a signing request (replaces a pending one)"
    )
    _subject_options(p)
    p.add_argument("--out", metavar="FILE", help="also write the request (PEM) to FILE")
    p.set_defaults(func=_csr_create)
    p = csr_commands.add_parser(
        "show", parents=[common], help="details of the pending request, or the request itself"
    )
    p.add_argument(
        "--format", choices=("pem", "der"), help="print the request itself in this format"
    )
    p.add_argument("--out", metavar="FILE", help="write the request to FILE (PEM unless --format)")
    p.set_defaults(func=_csr_show)
    p = csr_commands.add_parser(
        "remove", parents=[common], help="discard the pending request and its private key"
    )
    p.set_defaults(func=_csr_remove)

    p = commands.add_parser(
        "install",
        parents=[common],
        help="install a CA's response, a PEM chain with its key, or a PKCS#12 file",
    )
    p.add_argument("file", metavar="FILE", help="certificate file ('-' reads standard input)")
    p.add_argument("--key", metavar="KEYFILE", help="the private key, when not inside FILE")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument(
        "--passphrase-file", metavar="FILE", help="passphrase of the key or PKCS#12 file"
    )
    secret.add_argument(
        "--passphrase-env", metavar="VAR", help="environment variable holding the passphrase"
    )
    p.set_defaults(func=_install)

    p = commands.add_parser(
        "clear", parents=[common], help="discard an installed identity, restore the standard one"
    )
    p.set_defaults(func=_clear)

    p = commands.add_parser(
        "export", parents=[common], help="the chain, or the chain with its private key"
    )
    p.add_argument(
        "--format",
        choices=[f.value for f in ExportFormat],
        default="pem",
        help="pem: whole chain; der: the device certificate alone; p7b: PKCS#7 chain",
    )
    p.add_argument(
        "--include-private-key",
        action="store_true",
        help="add the unencrypted private key (PEM only; audited; keep the file secret)",
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(func=_export)

    p = commands.add_parser(
        "trust", parents=[common], help="add the device chain to the trust list"
    )
    p.add_argument(
        "fingerprints",
        nargs="*",
        metavar="FINGERPRINT",
        help="only these certificates of the chain (SHA-256); default: all",
    )
    p.set_defaults(func=_trust)


def _subject_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cn", required=True, help="common name (required): the device's host name")
    p.add_argument("--o", "--org", dest="o", help="organisation")
    p.add_argument("--ou", dest="ou", help="organisational unit")
    p.add_argument("--l", "--locality", dest="l", help="locality (city)")
    p.add_argument("--st", "--state", dest="st", help="state or province")
    p.add_argument("--c", "--country", dest="c", help="two-letter country code")
    p.add_argument("--email", help="e-mail address")
    p.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="subject alternative name: DNS:host, IP:address, URI:sip:domain (repeatable)",
    )
    p.add_argument(
        "--key",
        default=str(DEFAULT_KEY_SPEC),
        metavar="SPEC",
        help="ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096, reuse "
        "(rsa-1024 only with gateway.allow_weak_keys)",
    )


# -- plumbing ------------------------------------------------------------------------------


@contextmanager
def _service(args: argparse.Namespace) -> Iterator[DeviceService]:
    config = load_config(args.config)
    store = store_for(config)
    try:
        yield DeviceService(
            store,
            name=config.gateway.name,
            host_names=config.gateway.host_names,
            machine_host_name=socket.gethostname(),
            allow_weak_keys=config.gateway.allow_weak_keys,
        )
    finally:
        store.close()


def with_progress(label: str, work: Callable[[], T], *, stream: Any = None) -> T:
    """Run ``work`` (in this thread: the store stays on the thread that opened it) while a
    spinner (on a terminal) or dots (elsewhere) show on stderr that something happens."""
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    done = threading.Event()

    def spin() -> None:
        frames = "|/-\\"
        tick = 0
        stream.write(f"{label} " + (frames[0] if tty else ""))
        stream.flush()
        while not done.wait(0.1 if tty else 0.5):
            tick += 1
            stream.write(("\b" + frames[tick % 4]) if tty else ".")
            stream.flush()

    spinner = threading.Thread(target=spin, name="progress", daemon=True)
    spinner.start()
    outcome = "failed"
    try:
        result = work()
        outcome = "done"
        return result
    finally:
        done.set()
        spinner.join(timeout=5)
        stream.write(("\b" if tty else "") + f"{outcome}\n")
        stream.flush()


def _key_label(spec: KeySpec | str) -> str:
    if str(spec) == "reuse":
        return "Signing with the current key"
    return f"Generating a new key ({spec})"


def _write_stdout(data: bytes, *, binary: bool) -> None:
    if binary and sys.stdout.isatty():
        raise UsageError("The output is binary; write it to a file with --out FILE.")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _passphrase(args: argparse.Namespace) -> bytes | None:
    if getattr(args, "passphrase_file", None):
        data = read_input(args.passphrase_file, limit=MAX_FILE_BYTES, what="passphrase file")
        return data.rstrip(b"\r\n")
    if getattr(args, "passphrase_env", None):
        value = os.environ.get(args.passphrase_env)
        if value is None:
            raise UsageError(f"The environment variable {args.passphrase_env} is not set.")
        return value.encode()
    return None


def _spec(args: argparse.Namespace, service: DeviceService) -> IdentitySpec:
    dns, ips, uris = split_san_items(args.san)
    return build_spec(
        subject={
            "CN": args.cn,
            "O": args.o,
            "OU": args.ou,
            "L": args.l,
            "ST": args.st,
            "C": args.c,
            "emailAddress": args.email,
        },
        key=args.key,
        san_dns=dns,
        san_ip=ips,
        san_uri=uris,
        validity_days=getattr(args, "days", STANDARD_VALIDITY_DAYS),
        allow_weak=service.allow_weak_keys,
    )


# -- human rendering -------------------------------------------------------------------------


def _describe_identity(details: dict[str, Any], pending: dict[str, Any] | None) -> str:
    cert = details["certificate"]
    key = cert["public_key"]
    key_text = f"{key['type']} {key['curve'] or ''} ({key['size']} bits)".replace("  ", " ")
    if key["weak"]:
        key_text += "  WEAK"
    names = [f"DNS:{n}" for n in cert["subject_alt_names"]["dns"]]
    names += [f"IP:{n}" for n in cert["subject_alt_names"]["ip"]]
    names += [f"URI:{n}" for n in cert["subject_alt_names"]["uri"]]
    usage = ", ".join(cert["key_usage"] or ["(any)"])
    if cert["extended_key_usage"] is not None:
        usage += "; " + ", ".join(cert["extended_key_usage"])
    lines = [
        f"Device identity: {details['kind']} (since {notation.when(details['created_at'])})",
        f"  Subject:      {cert['subject']}",
        f"  Issuer:       {cert['issuer']}" + ("  (self-signed)" if cert["self_signed"] else ""),
        f"  Fingerprint:  {cert['fingerprint']}",
        f"  Serial:       {cert['serial']}",
        f"  Valid:        {notation.when(cert['not_before'])} to "
        f"{notation.when(cert['not_after'])} ({cert['status']})",
        f"  Key:          {key_text}",
        f"  Names:        {', '.join(names) or '(none)'}",
        f"  Usage:        {usage}",
    ]
    if len(details["chain"]) > 1:
        lines.append("  Chain:")
        for depth, c in enumerate(details["chain"]):
            lines.append(f"    {depth}  {c['subject']}  {c['fingerprint'][:16]}  {c['status']}")
    if pending is None:
        lines.append("Signing request: none pending")
    else:
        lines.append(
            f"Signing request: pending since {notation.when(pending['created_at'])} "
            f"({pending['subject']}, {pending['key_spec']})"
        )
    return "\n".join(lines)


def _describe_csr(details: dict[str, Any]) -> str:
    key = details["public_key"]
    names = [f"DNS:{n}" for n in details["subject_alt_names"]["dns"]]
    names += [f"IP:{n}" for n in details["subject_alt_names"]["ip"]]
    names += [f"URI:{n}" for n in details["subject_alt_names"]["uri"]]
    key_text = f"{details['key_spec']} ({key['type']}, {key['size']} bits)"
    if key["weak"]:
        key_text += "  WEAK"
    return "\n".join(
        [
            f"Signing request (created {notation.when(details['created_at'])})",
            f"  Subject:      {details['subject']}",
            f"  Key:          {key_text}",
            f"  Names:        {', '.join(names) or '(none)'}",
            f"  Fingerprint:  {details['fingerprint']}",
        ]
    )


def _report_identity(service: DeviceService, args: argparse.Namespace, headline: str) -> None:
    details = service.details()
    if args.json:
        _print_json(details)
        return
    print(headline)
    print(_describe_identity(details, _csr_or_none(service)))


def _csr_or_none(service: DeviceService) -> dict[str, Any] | None:
    return service.csr_details() if service.store.pending_csr() is not None else None


# -- handlers ------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    with _service(args) as service:
        service.ensure_standard_identity(actor=cli_actor())
        details = service.details()
        pending = _csr_or_none(service)
        if args.json:
            _print_json(details | {"pending_csr": pending})
        else:
            print(_describe_identity(details, pending))
    return 0


def _renew(args: argparse.Namespace) -> int:
    with _service(args) as service:
        service.check_renew(reuse_key=args.reuse_key)
        label = _key_label("reuse" if args.reuse_key else KeySpec.EC_P256)
        with_progress(label, lambda: service.renew(actor=cli_actor(), reuse_key=args.reuse_key))
        _report_identity(service, args, "The standard identity was renewed.")
    return 0


def _self_signed(args: argparse.Namespace) -> int:
    with _service(args) as service:
        spec = _spec(args, service)
        service.check_spec(spec)
        with_progress(_key_label(spec.key), lambda: service.self_signed(spec, actor=cli_actor()))
        _report_identity(service, args, "A self-signed identity was installed.")
    return 0


def _csr_create(args: argparse.Namespace) -> int:
    with _service(args) as service:
        spec = _spec(args, service)
        if spec.key is KeySpec.REUSE:
            service.ensure_standard_identity(actor=cli_actor())
        service.check_spec(spec)
        pending = with_progress(
            _key_label(spec.key), lambda: service.create_csr(spec, actor=cli_actor())
        )
        if args.out:
            write_output(pending.csr_pem, args.out)
        details = service.csr_details()
        if args.json:
            _print_json(details | {"pem": pending.csr_pem.decode("ascii")})
        else:
            print(_describe_csr(details))
            if args.out:
                print(f"The request was written to {args.out}; send it to your CA.")
            else:
                print(pending.csr_pem.decode("ascii"), end="")
    return 0


def _csr_show(args: argparse.Namespace) -> int:
    with _service(args) as service:
        if args.format or args.out:
            fmt = args.format or "pem"
            data = service.csr_download(fmt)
            if args.out:
                write_output(data, args.out)
            else:
                _write_stdout(data, binary=fmt == "der")
            return 0
        details = service.csr_details()
        if args.json:
            _print_json(details | {"pem": service.csr().csr_pem.decode("ascii")})
        else:
            print(_describe_csr(details))
    return 0


def _csr_remove(args: argparse.Namespace) -> int:
    with _service(args) as service:
        service.remove_csr(actor=cli_actor())
        if args.json:
            _print_json({"removed": True})
        else:
            print("The signing request and its private key were discarded.")
    return 0


def _install(args: argparse.Namespace) -> int:
    data = read_input(args.file, limit=MAX_FILE_BYTES, what="certificate file")
    key_pem = read_input(args.key, limit=MAX_FILE_BYTES, what="key file") if args.key else None
    passphrase = _passphrase(args)
    with _service(args) as service:
        try:
            outcome = service.install(
                data, actor=cli_actor(), key_pem=key_pem, passphrase=passphrase
            )
        except BadPassphrase:
            if passphrase is not None or not sys.stdin.isatty():
                raise
            passphrase = getpass.getpass("Passphrase: ").encode()
            outcome = service.install(
                data, actor=cli_actor(), key_pem=key_pem, passphrase=passphrase
            )
        if args.json:
            _print_json(
                service.details() | {"notes": list(outcome.notes), "source": outcome.source}
            )
            return 0
        _report_identity(service, args, "The device identity was installed.")
        for note in outcome.notes:
            print(f"Note: {note}", file=sys.stderr)
    return 0


def _clear(args: argparse.Namespace) -> int:
    with _service(args) as service:
        service.check_clear()
        with_progress(_key_label(KeySpec.EC_P256), lambda: service.clear(actor=cli_actor()))
        _report_identity(
            service,
            args,
            "The installed identity was cleared; a new standard identity is in place.",
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    fmt = ExportFormat(args.format)
    if args.include_private_key and fmt is not ExportFormat.PEM:
        raise UsageError("The chain with its private key is exported as PEM only.")
    with _service(args) as service:
        service.ensure_standard_identity(actor=cli_actor())
        data = service.export(
            actor=cli_actor(), fmt=fmt, include_private_key=args.include_private_key
        )
    if args.out:
        write_output(data, args.out, secret=args.include_private_key)
        if args.json:
            _print_json({"written": str(Path(args.out)), "bytes": len(data)})
        elif args.include_private_key:
            print(
                f"Wrote the chain and its private key to {args.out} (mode 0600); keep it secret.",
                file=sys.stderr,
            )
    else:
        _write_stdout(data, binary=fmt is not ExportFormat.PEM)
    return 0


def _trust(args: argparse.Namespace) -> int:
    with _service(args) as service:
        service.ensure_standard_identity(actor=cli_actor())
        result = service.trust_device_chain(actor=cli_actor(), fingerprints=args.fingerprints)
        if args.json:
            _print_json(add_result(result, utc_now()))
            return 0
        for cert in result.added:
            print(f"trusted  {cert.fingerprint}  {cert.subject}")
        for cert in result.already_present:
            print(f"already  {cert.fingerprint}  {cert.subject}")
    return 0
