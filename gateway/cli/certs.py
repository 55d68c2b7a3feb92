"""``sipsgate certs``: the trust list, rejected chains, pins, settings and backups,
worked on offline in the same store the gateway uses (also while it runs)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from certstore import notation, render
from certstore.model import Certificate, Pin, PinDecision, PinMatch, TrustKind, TrustSource
from certstore.revocation import MAX_CRL_BYTES, CachedSource, RevocationSource, SourceKind
from certstore.store import PinRequest
from certstore.x509 import DEFAULT_MAX_INPUT_BYTES, load_certificates, to_pem
from gateway.cli.common import (
    cli_actor,
    emit_json,
    emit_table,
    open_store,
    parse_expiry,
    parse_on_off,
    read_input,
    resolve_fingerprint,
    short_fp,
    utc_now,
    write_output,
)
from gateway.errors import UsageError

# Backups of a large trust list are bigger than certificate uploads.
MAX_BACKUP_BYTES = 256 * 1024 * 1024


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    certs = subparsers.add_parser(
        "certs", parents=[common], help="trust list, rejected chains, pins, settings, backups"
    )
    sub = certs.add_subparsers(dest="certs_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", parents=[common], help="list the trust list")
    p.add_argument("--kind", choices=[k.value for k in TrustKind])
    p.add_argument("--status", choices=["valid", "expired", "not-yet-valid"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="details of one trusted certificate")
    p.add_argument("fingerprint", help="SHA-256 fingerprint or a unique prefix (8+ digits)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "add", parents=[common], help="trust certificates from files (DER, PEM, p7b)"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="certificate file, or - for stdin")
    p.add_argument(
        "--kind", choices=[k.value for k in TrustKind], help="default: by the certificate"
    )
    p.set_defaults(func=cmd_add)

    p = sub.add_parser(
        "remove", parents=[common], help="remove one certificate from the trust list"
    )
    p.add_argument("fingerprint")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser(
        "clear", parents=[common], help="remove every certificate from the trust list"
    )
    p.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser(
        "export", parents=[common], help="download one certificate or the whole list"
    )
    p.add_argument("fingerprint", nargs="?", help="default: the whole trust list as one PEM file")
    p.add_argument("--format", choices=["pem", "der"], default="pem")
    p.add_argument("--out", metavar="FILE", help="default: standard output")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("restore-defaults", parents=[common], help="re-add the builtin CAs")
    p.set_defaults(func=cmd_restore_defaults)

    _register_rejected(sub, common)
    _register_pins(sub, common)
    _register_crl(sub, common)

    p = sub.add_parser("settings", parents=[common], help="show or change the security settings")
    p.add_argument("--accept-all", type=parse_on_off, metavar="on|off")
    p.add_argument("--trust-on-first-use", type=parse_on_off, metavar="on|off")
    p.add_argument("--allow-wildcards", type=parse_on_off, metavar="on|off")
    p.add_argument("--close-flows-on-revoke", type=parse_on_off, metavar="on|off")
    p.add_argument(
        "--revocation",
        choices=("off", "soft-fail", "hard-fail"),
        help="check revocation (CRL, OCSP): soft-fail never blocks a call on missing "
        "information, hard-fail rejects a certificate whose status is unknown",
    )
    p.add_argument("--http-auth-username", metavar="NAME")
    p.add_argument(
        "--http-auth-password-stdin",
        action="store_true",
        help="read the HTTP digest password from standard input (never from the command line)",
    )
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("backup", parents=[common], help="export the whole trust state")
    p.add_argument("--include-secrets", action="store_true", help="include the digest password")
    p.add_argument("--out", metavar="FILE", help="default: standard output")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", parents=[common], help="import a backup (all or nothing)")
    p.add_argument("file", help="backup document, or - for stdin")
    p.set_defaults(func=cmd_restore)


def _register_rejected(sub: Any, common: argparse.ArgumentParser) -> None:
    rejected = sub.add_parser("rejected", parents=[common], help="chains that failed verification")
    rsub = rejected.add_subparsers(dest="rejected_command", metavar="COMMAND")
    rejected.set_defaults(func=cmd_rejected_list)

    p = rsub.add_parser("list", parents=[common], help="list rejected chains")
    p.set_defaults(func=cmd_rejected_list)
    p = rsub.add_parser("show", parents=[common], help="one chain with every certificate's details")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_rejected_show)
    for parent in (rsub, sub):  # `certs trust ID` is a short form of `certs rejected trust ID`
        p = parent.add_parser(
            "trust", parents=[common], help="trust certificates of a rejected chain"
        )
        p.add_argument("id", type=int)
        p.add_argument(
            "--fingerprint",
            action="append",
            default=[],
            help="certificate of the chain to trust (repeatable); default: the top one",
        )
        p.add_argument("--all", action="store_true", help="trust every certificate of the chain")
        p.set_defaults(func=cmd_rejected_trust)
        for verb in ("accept", "reject"):
            p = parent.add_parser(verb, parents=[common], help=f"pin the chain's leaf {verb}")
            p.add_argument("id", type=int)
            _pin_options(p)
            p.set_defaults(func=cmd_rejected_pin, decision=verb)
    p = rsub.add_parser("remove", parents=[common], help="remove one entry")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_rejected_remove)
    p = rsub.add_parser("clear", parents=[common], help="remove every entry")
    p.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=cmd_rejected_clear)


def _register_pins(sub: Any, common: argparse.ArgumentParser) -> None:
    pins = sub.add_parser("pins", parents=[common], help="accept/reject decisions (pins)")
    psub = pins.add_subparsers(dest="pins_command", metavar="COMMAND")
    pins.set_defaults(func=cmd_pins_list)
    p = psub.add_parser("list", parents=[common], help="list pins")
    p.set_defaults(func=cmd_pins_list)
    p = psub.add_parser("add", parents=[common], help="pin a certificate or public key")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--accept", dest="decision", action="store_const", const="accept")
    which.add_argument("--reject", dest="decision", action="store_const", const="reject")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--fingerprint", help="SHA-256 of the certificate (or of its public key)")
    source.add_argument("--certificate", metavar="FILE", help="the certificate itself (PEM/DER)")
    _pin_options(p)
    p.set_defaults(func=cmd_pins_add)
    p = psub.add_parser("remove", parents=[common], help="drop a pin")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_pins_remove)


def _register_crl(sub: Any, common: argparse.ArgumentParser) -> None:
    crl = sub.add_parser(
        "crl", parents=[common], help="revocation information: upload a CRL, list what is cached"
    )
    csub = crl.add_subparsers(dest="crl_command", metavar="COMMAND")
    crl.set_defaults(func=cmd_crl_list)
    p = csub.add_parser("list", parents=[common], help="cached CRLs and OCSP answers")
    p.set_defaults(func=cmd_crl_list)
    p = csub.add_parser("add", parents=[common], help="upload a CRL file (DER or PEM)")
    p.add_argument("file", help="the CRL file, or - for standard input")
    p.set_defaults(func=cmd_crl_add)
    p = csub.add_parser("remove", parents=[common], help="remove an uploaded CRL")
    p.add_argument(
        "fingerprint", help="SHA-256 of the uploaded CRL (as `crl list` shows; a prefix will do)"
    )
    p.set_defaults(func=cmd_crl_remove)


def _print_source(source: CachedSource) -> None:
    next_update = render.iso(source.next_update) or "none"
    where = source.url or source.key
    print(
        f"{source.kind.value} {source.source.value} {where}: next update {next_update}, "
        f"{source.entries} entr{'y' if source.entries == 1 else 'ies'}"
        + (f", issuer {source.issuer}" if source.issuer else "")
        + f", fingerprint {short_fp(source.fingerprint)}"
    )


def cmd_crl_list(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        sources = store.list_revocation()
    if args.json:
        emit_json([render.revocation_source(s) for s in sources])
    elif not sources:
        print("no revocation information cached")
    for source in sources if not args.json else ():
        _print_source(source)
    return 0


def cmd_crl_add(args: argparse.Namespace) -> int:
    data = read_input(args.file, limit=MAX_CRL_BYTES)
    with open_store(args) as store:
        source = store.put_revocation(
            data,
            kind=SourceKind.CRL,
            source=RevocationSource.UPLOADED,
            url=None,
            actor=cli_actor(),
        )
    if args.json:
        emit_json(render.revocation_source(source))
    else:
        _print_source(source)
    return 0


def cmd_crl_remove(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        uploaded = [
            s.fingerprint for s in store.list_revocation() if s.source is RevocationSource.UPLOADED
        ]
        fingerprint = resolve_fingerprint(args.fingerprint, uploaded, "uploaded CRL")
        source = store.remove_uploaded_crl(fingerprint, actor=cli_actor())
    if args.json:
        emit_json(render.revocation_source(source))
    else:
        print(f"removed the uploaded CRL of {source.issuer} ({short_fp(source.fingerprint)})")
    return 0


def _pin_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--match", choices=[m.value for m in PinMatch], default=PinMatch.CERTIFICATE.value
    )
    p.add_argument("--scope", help="host or host:port; default: any peer")
    p.add_argument("--expires-at", metavar="ISO8601")
    p.add_argument("--expires-in", metavar="DURATION", help='e.g. "7d", "12h"')
    p.add_argument("--note", default="")


# -- trust list --------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        entries = store.list_trust()
    if args.kind:
        entries = tuple(e for e in entries if e.kind.value == args.kind)
    if args.status:
        entries = tuple(e for e in entries if e.certificate.status_at(now).value == args.status)
    if args.json:
        emit_json([render.trust_entry(e, now) for e in entries])
        return 0
    emit_table(
        ["FINGERPRINT", "KIND", "SOURCE", "STATUS", "EXPIRES", "SUBJECT"],
        [
            (
                short_fp(e.certificate.fingerprint),
                e.kind.value,
                e.source.value,
                e.certificate.status_at(now).value,
                e.certificate.not_after.date().isoformat(),
                e.certificate.subject,
            )
            for e in entries
        ],
    )
    print(notation.plural(len(entries), "certificate"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        fp = resolve_fingerprint(
            args.fingerprint, [e.certificate.fingerprint for e in store.list_trust()], "certificate"
        )
        entry = store.get_trust(fp)
    data = render.trust_entry(entry, now, details=True)
    if args.json:
        emit_json(data)
    else:
        _print_details(data)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    now = utc_now()
    certs: list[Certificate] = []
    notes: list[str] = []
    for path in args.files:
        loaded = load_certificates(
            read_input(path, limit=DEFAULT_MAX_INPUT_BYTES), what=f"file {path}"
        )
        certs.extend(loaded.certificates)
        notes.extend(loaded.notes)
    kind = TrustKind(args.kind) if args.kind else None
    with open_store(args) as store:
        result = store.add_trust(certs, source=TrustSource.UPLOADED, actor=cli_actor(), kind=kind)
    if args.json:
        emit_json({**render.add_result(result, now), "notes": notes})
        return 0
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for cert in result.added:
        print(f"added            {short_fp(cert.fingerprint)}  {cert.subject}")
    for cert in result.already_present:
        print(f"already present  {short_fp(cert.fingerprint)}  {cert.subject}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        fp = resolve_fingerprint(
            args.fingerprint, [e.certificate.fingerprint for e in store.list_trust()], "certificate"
        )
        entry = store.remove_trust(fp, actor=cli_actor())
    if args.json:
        emit_json(render.trust_entry(entry, utc_now()))
    else:
        print(f"removed {short_fp(entry.certificate.fingerprint)}  {entry.certificate.subject}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("This removes every trusted certificate; add --yes to confirm.")
    with open_store(args) as store:
        count = store.clear_trust(actor=cli_actor())
    if args.json:
        emit_json({"removed": count})
    else:
        print(f"removed {notation.plural(count, 'certificate')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        entries = store.list_trust()
        if args.fingerprint:
            fp = resolve_fingerprint(
                args.fingerprint, [e.certificate.fingerprint for e in entries], "certificate"
            )
            chosen = [store.get_trust(fp).certificate]
        else:
            chosen = [e.certificate for e in entries]
    if args.format == "der":
        if len(chosen) != 1:
            raise UsageError("DER holds one certificate; name it, or export the list as PEM.")
        write_output(chosen[0].der, args.out)
    else:
        write_output(to_pem(chosen), args.out)
    return 0


def cmd_restore_defaults(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        result = store.restore_defaults(actor=cli_actor())
    if args.json:
        emit_json(render.add_result(result, now))
    else:
        print(
            f"restored {notation.plural(len(result.added), 'builtin certificate')}; "
            f"{len(result.already_present)} {'was' if len(result.already_present) == 1 else 'were'}"
            " present"
        )
    return 0


# -- rejected chains -----------------------------------------------------------------------


def cmd_rejected_list(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        entries = store.list_rejected()
    if args.json:
        emit_json([render.rejected_entry(e, now) for e in entries])
        return 0
    emit_table(
        ["ID", "PEER", "REASONS", "COUNT", "LAST SEEN", "OVERRIDDEN", "LEAF"],
        [
            (
                e.id,
                notation.peer_uri(e.peer),
                ",".join(r.value for r in e.reasons),
                e.count,
                notation.when(e.last_seen),
                "yes" if e.overridden else "",
                e.leaf.subject,
            )
            for e in entries
        ],
    )
    print(notation.plural(len(entries), "rejected chain"))
    return 0


def cmd_rejected_show(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        entry = store.get_rejected(args.id)
    data = render.rejected_entry(entry, now, details=True)
    if args.json:
        emit_json(data)
        return 0
    print(f"Rejected chain {entry.id}: {notation.peer_uri(entry.peer)}")
    if entry.address is not None:
        print(f"  dialled:    {entry.address}")
    print(f"  reasons:    {', '.join(data['reasons'])}")
    print(
        f"  seen:       {notation.plural(entry.count, 'time')}, "
        f"first {notation.when(entry.first_seen)}, last {notation.when(entry.last_seen)}"
    )
    if entry.overridden:
        print("  overridden: accepted anyway because accept-all is on")
    for depth, cert in enumerate(data["chain"]):
        print(f"\n  [{depth}] {'leaf' if depth == 0 else 'issuer'}")
        _print_details(cert, indent="      ")
    if data["previous"]:
        print("\n  previously seen certificate for this destination:")
        _print_details(data["previous"], indent="      ")
    return 0


def cmd_rejected_trust(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        entry = store.get_rejected(args.id)
        chain_fps = [c.fingerprint for c in entry.chain]
        if args.all:
            chosen = chain_fps
        elif args.fingerprint:
            chosen = [
                resolve_fingerprint(f, chain_fps, "certificate of the chain")
                for f in args.fingerprint
            ]
        else:
            chosen = [chain_fps[-1]]
        result = store.trust_rejected(args.id, chosen, actor=cli_actor())
    if args.json:
        emit_json(render.add_result(result, now))
        return 0
    for cert in result.added:
        print(f"trusted          {short_fp(cert.fingerprint)}  {cert.subject}")
    for cert in result.already_present:
        print(f"already trusted  {short_fp(cert.fingerprint)}  {cert.subject}")
    return 0


def cmd_rejected_pin(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        pin = store.pin_rejected(
            args.id,
            PinDecision(args.decision),
            actor=cli_actor(),
            match=PinMatch(args.match),
            scope=args.scope,
            expires_at=parse_expiry(args.expires_at, args.expires_in, now),
            note=args.note,
        )
    _print_pin(args, pin, now)
    return 0


def cmd_rejected_remove(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        store.remove_rejected(args.id, actor=cli_actor())
    if args.json:
        emit_json({"removed": args.id})
    else:
        print(f"removed rejected chain {args.id}")
    return 0


def cmd_rejected_clear(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("This removes every rejected chain; add --yes to confirm.")
    with open_store(args) as store:
        count = store.clear_rejected(actor=cli_actor())
    if args.json:
        emit_json({"removed": count})
    else:
        print(f"removed {notation.plural(count, 'rejected chain')}")
    return 0


# -- pins ----------------------------------------------------------------------------------


def cmd_pins_list(args: argparse.Namespace) -> int:
    now = utc_now()
    with open_store(args) as store:
        pins = store.list_pins()
    if args.json:
        emit_json([render.pin(p, now) for p in pins])
        return 0
    emit_table(
        ["ID", "DECISION", "MATCH", "FINGERPRINT", "SCOPE", "EXPIRES", "BY", "NOTE"],
        [
            (
                p.id,
                p.decision.value,
                p.match.value,
                short_fp(p.fingerprint),
                p.scope or "any peer",
                (notation.when(p.expires_at) if p.expires_at else "never")
                + ("" if p.is_active(now) else " (expired)"),
                p.created_by,
                p.note,
            )
            for p in pins
        ],
    )
    print(notation.plural(len(pins), "pin"))
    return 0


def cmd_pins_add(args: argparse.Namespace) -> int:
    now = utc_now()
    match = PinMatch(args.match)
    if args.certificate:
        loaded = load_certificates(
            read_input(args.certificate, limit=DEFAULT_MAX_INPUT_BYTES), what="certificate file"
        )
        if len(loaded.certificates) != 1:
            raise UsageError(
                f"{args.certificate} holds {len(loaded.certificates)} certificates; "
                "a pin names exactly one."
            )
        cert = loaded.certificates[0]
        fingerprint = cert.spki_fingerprint if match is PinMatch.PUBLIC_KEY else cert.fingerprint
    else:
        fingerprint = args.fingerprint.strip().lower().replace(":", "")
    request = PinRequest(
        decision=PinDecision(args.decision),
        match=match,
        fingerprint=fingerprint,
        scope=args.scope,
        expires_at=parse_expiry(args.expires_at, args.expires_in, now),
        note=args.note,
    )
    with open_store(args) as store:
        pin = store.add_pin(request, actor=cli_actor())
    _print_pin(args, pin, now)
    return 0


def cmd_pins_remove(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        pin = store.remove_pin(args.id, actor=cli_actor())
    if args.json:
        emit_json(render.pin(pin, utc_now()))
    else:
        print(f"removed pin {pin.id} ({pin.decision.value} {short_fp(pin.fingerprint)})")
    return 0


def _print_pin(args: argparse.Namespace, pin: Pin, now: datetime) -> None:
    if args.json:
        emit_json(render.pin(pin, now))
        return
    scope = pin.scope or "any peer"
    expiry = f", until {notation.when(pin.expires_at)}" if pin.expires_at else ""
    what = f"{pin.decision.value} {pin.match.value} {pin.fingerprint}"
    print(f"pin {pin.id}: {what} for {scope}{expiry}")


# -- settings, backup --------------------------------------------------------------------------


def cmd_settings(args: argparse.Namespace) -> int:
    changes: dict[str, object] = {}
    for option, name in (
        ("accept_all", "accept_all_certificates"),
        ("trust_on_first_use", "trust_on_first_use"),
        ("allow_wildcards", "allow_wildcards"),
        ("close_flows_on_revoke", "close_flows_on_revoke"),
        ("revocation", "revocation"),
        ("http_auth_username", "http_auth_username"),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[name] = value
    if args.http_auth_password_stdin:
        changes["http_auth_password"] = sys.stdin.readline().rstrip("\r\n")
    with open_store(args) as store:
        settings = (
            store.update_settings(changes, actor=cli_actor()) if changes else store.get_settings()
        )
    data = render.settings(settings)
    if args.json:
        emit_json(data)
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = ("on" if value else "off") if isinstance(value, bool) else (value or "(empty)")
        print(f"{key.ljust(width)}  {shown}")
    if settings.accept_all_certificates:
        print(
            "\nwarning: accept_all_certificates is on: every server certificate is accepted. "
            "See `sipsgate certs rejected list` for what would fail without it."
        )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        document = store.export_backup(now=utc_now(), include_secrets=args.include_secrets)
    # With --include-secrets the digest password is inside: only the owner may read it.
    write_output(document, args.out, secret=args.include_secrets)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    document = read_input(args.file, limit=MAX_BACKUP_BYTES)
    with open_store(args) as store:
        summary = store.import_backup(document, actor=cli_actor())
    data = {
        "trust": summary.trust,
        "pins": summary.pins,
        "rejected": summary.rejected,
        "settings_restored": summary.settings_restored,
        "secrets_restored": summary.secrets_restored,
    }
    if args.json:
        emit_json(data)
    else:
        print(
            f"restored {notation.plural(summary.trust, 'trusted certificate')}, "
            f"{notation.plural(summary.pins, 'pin')}, "
            f"{notation.plural(summary.rejected, 'rejected chain')}"
            + ("; settings restored" if summary.settings_restored else "")
        )
    return 0


# -- output ------------------------------------------------------------------------------------


def _print_details(data: dict[str, Any], indent: str = "") -> None:
    rows: list[tuple[str, object]] = [
        ("subject", data["subject"]),
        ("issuer", data["issuer"]),
        ("status", data["status"]),
        ("valid", f"{notation.when(data['not_before'])} .. {notation.when(data['not_after'])}"),
        ("sha256", data["fingerprint"]),
    ]
    if "serial" in data:
        san = data["subject_alt_names"]
        names = [f"DNS:{v}" for v in san["dns"]] + [f"IP:{v}" for v in san["ip"]]
        names += [f"URI:{v}" for v in san["uri"]]
        key = data["public_key"]
        rows += [
            ("sha1", data["fingerprint_sha1"]),
            ("public key", f"{key['type']} {key['size']}" + (" (weak)" if key["weak"] else "")),
            ("key sha256", data["public_key_fingerprint"]),
            (
                "signature",
                data["signature_algorithm"] + (" (weak)" if data["weak_signature"] else ""),
            ),
            ("serial", data["serial"]),
            ("names", ", ".join(names) or "(no subjectAltName)"),
            ("key usage", ", ".join(data["key_usage"] or []) or "-"),
            ("ext. usage", ", ".join(data["extended_key_usage"] or []) or "-"),
            ("CA", "yes" if data["is_ca"] else "no"),
            ("self-signed", "yes" if data["self_signed"] else "no"),
        ]
    for key_name in ("kind", "source", "added_at"):
        if key_name in data:
            rows.append((key_name.replace("_", " "), data[key_name]))
    for name, value in rows:
        print(f"{indent}{name.ljust(12)} {render.visible(str(value), keep='')}")
