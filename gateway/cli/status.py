"""``sipsgate status``: what the running gateway is doing now, asked over its admin
endpoint (``/readyz`` needs no password; the full view ``GET /api/v1/status`` is asked
with ``SIPSGATE_ADMIN_PASSWORD``). The admin endpoint's certificate is checked against
the device identity in the store, so the answer comes from this gateway.

Exit status: 0 when ready, 1 when degraded, not ready or not answering.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

from certstore.x509 import to_pem
from gateway.admin.auth import ADMIN_USER, PASSWORD_ENV
from gateway.admin.server import parse_listen_all
from gateway.cli.common import config_of, emit_json, open_store
from gateway.config import Config
from gateway.errors import UsageError

TIMEOUT_SECONDS = 10.0
# Wildcard listen addresses are asked on the loopback address of their family.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "status",
        parents=[common],
        help="show what the running gateway is doing: upstream, base stations, problems",
        description="Ask the running gateway over its admin endpoint: readiness always; the "
        "upstream flow, base stations, counters, provisioning and device identity with "
        f"the admin password in {PASSWORD_ENV}. Exit status 0 when ready, else 1.",
    )
    p.add_argument("--url", help="admin endpoint base URL (default: the first admin.listen)")
    p.set_defaults(func=cmd_status)


def base_url(config: Config) -> str:
    listen = parse_listen_all(config)
    if not listen:
        raise UsageError("admin.listen is empty: pass --url to say where the gateway listens.")
    first = listen[0]
    host = _LOOPBACK.get(first.host, first.host)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if first.tls else 'http'}://{host}:{first.port}"


def client_context(config: Config, args: argparse.Namespace) -> ssl.SSLContext:
    """Trusts exactly the gateway's own certificate (the device identity)."""
    with open_store(args) as store:
        identity = store.device_identity()
    context = ssl.create_default_context()
    context.check_hostname = False  # the certificate itself is pinned below
    context.load_verify_locations(cadata=to_pem(identity.chain[:1]).decode() if identity else "")
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def fetch(
    url: str, context: ssl.SSLContext | None, password: str | None
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    if password is not None:
        token = base64.b64encode(f"{ADMIN_USER}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def cmd_status(args: argparse.Namespace) -> int:
    config = config_of(args)
    root = (args.url or base_url(config)).rstrip("/")
    context = client_context(config, args) if root.startswith("https:") else None
    password = os.environ.get(PASSWORD_ENV) or None
    try:
        code, ready = fetch(f"{root}/readyz", context, None)
        full: dict[str, Any] | None = None
        if password is not None:
            status_code, body = fetch(f"{root}/api/v1/status", context, password)
            if status_code != 200:
                message = body.get("error", {}).get("message", f"HTTP {status_code}")
                raise UsageError(f"The gateway at {root} refused the status: {message}")
            full = body
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if args.json:
            emit_json({"status": "not-running", "reason": str(reason), "url": root})
        else:
            print(f"Status: not answering at {root} ({reason}). Is `sipsgate run` running?")
        return 1
    view: dict[str, Any] = full if full is not None else dict(ready)
    if args.json:
        emit_json(view)
    else:
        print_status(view, root, full is not None)
    return 0 if code == 200 and view.get("status") == "ready" else 1


def print_status(view: dict[str, Any], root: str, full: bool) -> None:
    line = f"Status: {view.get('status')}"
    if view.get("reason"):
        line += f" — {view['reason']}"
    print(line)
    if not full:
        print(f"(Set {PASSWORD_ENV} to the admin password for the full status of {root}.)")
        return
    problems = view.get("problems") or []
    for problem in problems:
        print(f"  problem: {problem}")
    upstream = view.get("upstream")
    if upstream:
        print(f"Upstream {upstream['uri'] or '(not configured)'}: {upstream['state']}")
        if upstream["state"] == "up":
            print(f"  connected to {upstream['peer']} ({upstream['tls_version']}) since "
                  f"{upstream['connected_since']}")  # fmt: skip
            cert = upstream.get("certificate")
            if cert:
                print(f"  certificate {cert['subject']}, expires {cert['not_after']}")
        error = upstream.get("last_error")
        if error:
            print(f"  last error at {error['at']}: {error['reason']}: {error['sentence']}")
            for item in error["codes"]:
                print(f"    {item['code']}: {item['fix'] or ''}".rstrip(": "))
    stations = view.get("base_stations") or []
    noun = "base station" if len(stations) == 1 else "base stations"
    print(f"{len(stations)} {noun} seen")
    for s in stations:
        registered = (
            f"registered as {s['aor']} until {s['registered_until']}"
            if s.get("registered_until")
            else "not registered"
        )
        print(
            f"  {s['source']} {s.get('transport') or ''}: {registered}; last "
            f"{s['last_method']} {s['last_status']} at {s['last_message_at']}"
        )
    counters = view.get("counters")
    if counters:
        print(
            f"Last {counters['window_minutes']} minutes: {counters['relayed']} relayed, "
            f"{counters['rejected_handshakes']} rejected handshakes, "
            f"{counters['service_unavailable']} answered 503"
        )
    identity = view.get("device_identity")
    if identity:
        print(f"Device identity expires {identity['not_after']} (in {identity['days_left']} days)")
    provisioning = view.get("provisioning")
    if provisioning and provisioning.get("last_result"):
        last = provisioning["last_result"]
        print(f"Provisioning: last run {last['status']} at {last['at']}")
