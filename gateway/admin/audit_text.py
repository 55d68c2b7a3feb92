"""Audit events as sentences for the Audit log page: what was done, and who did it
through which interface. The raw details stay one click away (the page's toggle)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from certstore import notation

# The interface an event came through, as the page names the actor's role.
ROLES = {
    "web": "admin",
    "api": "admin",
    "cli": "cli",
    "provisioning": "provisioning",
    "gateway": "gateway",
    "store": "sipsgate",
}


def details_of(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _count(value: object, word: str) -> str:
    n = len(value) if isinstance(value, list) else value if isinstance(value, int) else 0
    return notation.plural(n, word)


def _scope(details: Mapping[str, Any]) -> str:
    scope = details.get("scope")
    return f"for {scope}" if scope else "for any peer"


def _pin(details: Mapping[str, Any]) -> str:
    decision = details.get("decision") or "a"
    match = "public key" if details.get("match") == "public-key" else "certificate"
    expiry = f", until {notation.when(details['expires_at'])}" if details.get("expires_at") else ""
    return f"{decision} pin on a {match} {_scope(details)}{expiry}"


def _fp(value: object) -> str:
    return f"SHA-256 {str(value)[:16]}…" if value else "a certificate"


_SENTENCES: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
    "trust.add": lambda t, d: (
        f"Added {_count(d.get('added'), 'certificate')} to the trust list"
        + (f" ({d['already_present']} already there)" if d.get("already_present") else "")
        + "."
    ),
    "trust.remove": lambda t, d: f"Removed {d.get('subject') or _fp(t)} from the trust list.",
    "trust.clear": lambda t, d: (
        f"Cleared the trust list ({_count(d.get('removed'), 'certificate')} removed)."
    ),
    "trust.restore-defaults": lambda t, d: "Restored the default CA certificates.",
    "pin.add": lambda t, d: f"Added pin {t}: an {_pin(d)}.",
    "pin.remove": lambda t, d: f"Removed pin {t} (an {_pin(d)}).",
    "rejected.accept": lambda t, d: (
        f"Accepted the server certificate of rejected chain {t} {_scope(d)} (pin {d.get('pin')})."
    ),
    "rejected.reject": lambda t, d: (
        f"Rejected the server certificate of rejected chain {t} {_scope(d)} (pin {d.get('pin')})."
    ),
    "rejected.trust": lambda t, d: (
        f"Trusted {_count(d.get('added'), 'certificate')} of rejected chain {t}."
    ),
    "rejected.record": lambda t, d: (
        f"Recorded rejected chain {t} from {d.get('peer') or 'a peer'}"
        + (f" ({', '.join(d['reasons'])})" if d.get("reasons") else "")
        + ("; accept-all let it through" if d.get("overridden") else "")
        + "."
    ),
    "rejected.remove": lambda t, d: f"Removed rejected chain {t} from the list.",
    "rejected.clear": lambda t, d: f"Discarded {_count(d.get('removed'), 'rejected chain')}.",
    "settings.update": lambda t, d: f"Changed the settings: {t.replace(',', ', ')}.",
    "backup.export": lambda t, d: (
        "Exported a backup" + (" with secrets" if d.get("include_secrets") else "") + "."
    ),
    "backup.restore": lambda t, d: "Restored the trust state from a backup.",
    "csr.create": lambda t, d: "Created a certificate signing request.",
    "csr.remove": lambda t, d: "Removed the signing request and its key.",
    "device.create": lambda t, d: "Created the standard device certificate.",
    "device.renew": lambda t, d: "Renewed the standard device certificate.",
    "device.self-signed": lambda t, d: "Made a new self-signed device certificate.",
    "device.clear": lambda t, d: "Went back to the standard device certificate.",
    "device.export-private-key": lambda t, d: (
        "Downloaded the device certificate with its private key."
    ),
    "store.create": lambda t, d: "Created the trust store.",
    "store.migrate": lambda t, d: "Upgraded the trust store.",
}


def sentence(action: str, target: str, details: Mapping[str, Any]) -> str:
    """What an audit event did, as a sentence (the action code where none is known)."""
    make = _SENTENCES.get(action)
    if make is None and action.startswith("device.install."):
        source = action.removeprefix("device.install.")
        return f"Installed a device certificate ({source})."
    if make is None:
        return f"{action} {target}".strip() + "."
    try:
        return make(target, details)
    except (KeyError, TypeError, ValueError):  # details of an older shape
        return f"{action} {target}".strip() + "."


def event_view(event: Mapping[str, Any]) -> dict[str, Any]:
    """A rendered audit event with its sentence, role and pretty-printed details."""
    details = details_of(str(event["details"]))
    return {
        **event,
        "sentence": sentence(str(event["action"]), str(event["target"]), details),
        "role": ROLES.get(str(event["interface"]), str(event["interface"])),
        "details_text": json.dumps(details, indent=2, sort_keys=True) if details else "",
    }
