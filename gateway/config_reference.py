"""The configuration documented from its schema.

``deploy/sipsgate.toml`` (the example config) and ``docs/configuration.md`` (the
reference) are both generated here from the config dataclasses and the one-line
descriptions below; tests compare the committed files with the generated text, and
fail when a key has no description, so the schema, the example and the docs never
drift apart. Regenerate with ``python -m gateway.config_reference --write``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, get_type_hints

from gateway.config import Config, Duration, Workers

# One line per key: what it does. The default comes from the schema itself.
KEY_DOCS: dict[str, str] = {
    "gateway.name": "device name: the CN of the standard (self-signed) identity",
    "gateway.data_dir": "directory of the store (sipsgate.db), keys and state",
    "gateway.host_names": "extra DNS names / IP addresses in the standard identity; "
    "base stations may name sipsgate by them as outbound proxy",
    "gateway.allow_weak_keys": "permit RSA-1024 device keys (flagged weak everywhere)",
    "admin.listen": "HTTPS listen addresses of the admin endpoint (host:port)",
    "admin.max_upload": "largest request body accepted by the admin endpoint, in bytes",
    "admin.max_connections": "connections all clients of the admin endpoint may hold open",
    "admin.source_connections": "connections one client address may hold open to it",
    "sip.listen_udp": "LAN-side SIP over UDP listen addresses (host:port)",
    "sip.listen_tcp": "LAN-side SIP over TCP listen addresses (host:port)",
    "sip.upstream": 'upstream registrar/proxy as a sips: URI, e.g. "sips:sip.example.net" '
    "(a bare host name or sips:// stops the start with an error naming this key)",
    "sip.upstream_address": 'optional "host:port" to dial instead of resolving the URI; '
    "the certificate is still checked against the upstream's host, and "
    "`sipsgate probe` of the upstream URI dials it too",
    "sip.keepalive": "RFC 5626 CRLF keep-alive interval on upstream flows",
    "sip.source_rate": "messages per second one LAN source address may send",
    "sip.source_burst": "messages one source may send at once above that rate",
    "sip.source_inflight": "transactions of one source that may await a final answer",
    "sip.source_answers": "503 answers per second a source above source_rate may get; "
    "its excess beyond them is dropped (0: never answered)",
    "sip.source_connections": "TCP connections one source may hold open",
    "sip.max_transactions": "transactions in progress, all sources together; past it new "
    "INVITE and REGISTER are answered 503 with Retry-After at once",
    "sip.max_connections": "TCP connections all LAN sources together may hold open",
    "sip.idle_timeout": "a LAN TCP connection that sends nothing this long is closed",
    "sip.header_timeout": "a message begun on a LAN TCP connection must be complete within",
    "sip.workers": 'relay worker processes: a number, or "auto" for one per core the '
    "process may use; each opens its own upstream TLS flow; read at start "
    "(see deployment.md, Sizing workers)",
    "tls.min_version": 'lowest TLS version offered upstream: "1.2" or "1.3"',
    "tls.handshake_timeout": "time allowed for one TLS handshake",
    "provisioning.url": "HTTPS URL of the provisioning document ({name} and {mac} expand)",
    "provisioning.interval": "time between provisioning fetches",
    "store.rejected_limit": "most rejected chains kept; the oldest last-seen go first",
    "store.url": (
        "PostgreSQL URL (postgresql://user@host/database) of a store shared by a fleet "
        "of gateways; empty: the embedded store (sipsgate.db in data_dir)"
    ),
    "log.level": "debug, info, warning or error",
    "log.format": "auto (console on a terminal, JSON otherwise), json or console",
}

_SECTION_DOCS: dict[str, str] = {
    "gateway": "The device itself.",
    "admin": "The admin endpoint (HTTPS, JSON API and pages).",
    "sip": "The SIP relay: base stations on the LAN, the provider upstream over SIPS.",
    "tls": "Outbound TLS (SIPS upstream, HTTPS provisioning).",
    "provisioning": "The provisioning client.",
    "store": "The certificate store.",
    "log": "Logging (to standard error; the journal under systemd).",
}


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def toml_value(value: Any, tp: Any) -> str:
    if tp is Duration:
        return json.dumps(format_duration(float(value)))
    if tp is Workers:
        return str(value) if value.isdigit() else json.dumps(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        item_tp = tp.__args__[0] if hasattr(tp, "__args__") else str
        return "[" + ", ".join(toml_value(v, item_tp) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _sections(config: Config) -> list[tuple[str, Any, dict[str, Any]]]:
    hints = get_type_hints(Config)
    out = []
    for f in dataclasses.fields(Config):
        if f.name == "source":
            continue
        section = getattr(config, f.name)
        out.append((f.name, section, get_type_hints(hints[f.name])))
    return out


def undocumented_keys() -> list[str]:
    keys = [
        f"{name}.{f.name}"
        for name, section, _ in _sections(Config())
        for f in dataclasses.fields(section)
    ]
    return [k for k in keys if k not in KEY_DOCS]


def example_toml() -> str:
    """Every key at its default, each with its one-line description."""
    lines = [
        "# sipsgate configuration: every key with its default.",
        "# No file at all is a valid configuration; delete what you do not change.",
        "# Environment variables SIPSGATE_<SECTION>_<KEY> override this file.",
    ]
    for name, section, hints in _sections(Config()):
        lines += ["", f"# {_SECTION_DOCS[name]}", f"[{name}]"]
        for f in dataclasses.fields(section):
            value = toml_value(getattr(section, f.name), hints[f.name])
            lines.append(f"# {KEY_DOCS[f'{name}.{f.name}']}")
            lines.append(f"{f.name} = {value}")
    return "\n".join(lines) + "\n"


def _type_label(tp: Any) -> str:
    if tp is Duration:
        return 'duration ("30s", "5m", "1h")'
    if tp is Workers:
        return 'integer or "auto"'
    if getattr(tp, "__origin__", None) is tuple:
        return f"list of {_type_label(tp.__args__[0])}s"
    return {str: "string", int: "integer", bool: "boolean"}.get(tp, str(tp))


def reference_markdown() -> str:
    """docs/configuration.md: every key with type, default, environment variable, effect."""
    out = [
        "# Configuration reference",
        "",
        "sipsgate reads one TOML file: `sipsgate run --config FILE`, or `./sipsgate.toml`",
        "when it exists, else the embedded defaults. Every key has a default, so no file",
        "at all is a valid configuration. A wrong key or type stops the start with a",
        "message naming the key path and the expected type.",
        "",
        "Each key can be overridden by an environment variable",
        "`SIPSGATE_<SECTION>_<KEY>` (lists are comma-separated, booleans are",
        "`true`/`false`/`on`/`off`/`1`/`0`). The same file and variables apply to every",
        "`sipsgate` command, so `SIPSGATE_GATEWAY_DATA_DIR=/srv/x sipsgate certs list`",
        "works on that store.",
        "",
        "`deploy/sipsgate.toml` is an example file with every key at its default.",
        "",
        "This page is generated from the configuration schema",
        "(`python -m gateway.config_reference --write`); a test keeps it in step.",
    ]
    for name, section, hints in _sections(Config()):
        out += ["", f"## [{name}]", "", _SECTION_DOCS[name], ""]
        out += ["| key | type | default | environment | meaning |", "|---|---|---|---|---|"]
        for f in dataclasses.fields(section):
            default = toml_value(getattr(section, f.name), hints[f.name])
            env = f"`SIPSGATE_{name.upper()}_{f.name.upper()}`"
            doc = KEY_DOCS[f"{name}.{f.name}"].replace("|", "\\|")
            out.append(
                f"| `{f.name}` | {_type_label(hints[f.name])} | `{default}` | {env} | {doc} |"
            )
    return "\n".join(out) + "\n"


GENERATED = {
    Path("deploy/sipsgate.toml"): example_toml,
    Path("docs/configuration.md"): reference_markdown,
}


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    if argv == ["--write"]:
        for rel, make in GENERATED.items():
            (root / rel).write_text(make())
            print(f"wrote {rel}")
        return 0
    print(example_toml(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
