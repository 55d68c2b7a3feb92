"""Checks and normal forms for values that enter the store from outside: fingerprints,
pin scopes, notes, expiry times and settings.

Pure functions, shared by every store implementation and usable by the API and the
CLI to refuse bad input early. Every refusal is a :class:`ValidationError` naming the
field, with a sentence that says what is accepted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from certstore.errors import ValidationError
from certstore.model import HTTP_AUTH_MAX_LENGTH, RevocationMode, Settings

FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
NOTE_MAX_LENGTH = 1000
SCOPE_MAX_LENGTH = 300

BOOL_SETTINGS = (
    "accept_all_certificates",
    "trust_on_first_use",
    "allow_wildcards",
    "close_flows_on_revoke",
)
STRING_SETTINGS = ("http_auth_username", "http_auth_password")
CHOICE_SETTINGS = ("revocation",)
SETTING_NAMES = BOOL_SETTINGS + CHOICE_SETTINGS + STRING_SETTINGS
# Never shown, logged or audited: only whether it changed.
SECRET_SETTINGS = frozenset({"http_auth_password"})

# Letters, digits, hyphens; underscores too, as some internal names have them.
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalize_fingerprint(value: object, *, field: str = "fingerprint") -> str:
    """A SHA-256 fingerprint in its stored form: 64 lowercase hex digits.

    Upper case and colon separators (as ``openssl x509 -fingerprint`` prints them)
    are accepted and normalised.
    """
    if not isinstance(value, str):
        raise ValidationError(field, f"The {field} must be a string of 64 hex digits.")
    text = value.strip().replace(":", "").lower()
    if not FINGERPRINT_RE.fullmatch(text):
        shown = value if len(value) <= 100 else value[:100] + "..."
        raise ValidationError(
            field,
            f"The {field} {shown!r} is not a SHA-256 fingerprint; "
            "expected 64 hex digits (SHA-1 fingerprints are not accepted).",
        )
    return text


def normalize_host(host: str, *, field: str = "scope") -> str:
    """A DNS name (lowercase, no trailing dot), an IPv4 address, or ``[IPv6]``."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValidationError(field, f"The {field} host {host!r} has an unclosed '['.")
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError as exc:
            raise ValidationError(
                field, f"The {field} host {host!r} is not a valid IPv6 address in brackets."
            ) from exc
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError as exc:
            raise ValidationError(
                field, f"The {field} host {host!r} is not a valid IPv6 address."
            ) from exc
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = host.rstrip(".").lower() if host != "." else ""
    if not name.isascii():
        raise ValidationError(
            field,
            f"The {field} host {host!r} is not ASCII; write an international name in "
            "its xn-- (A-label) form.",
        )
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValidationError(
            field,
            f"The {field} host {host!r} is not a host name, an IPv4 address or an [IPv6] address.",
        )
    return name


def normalize_scope(value: object) -> str | None:
    """A pin scope in its stored form: None (any peer), ``host`` or ``host:port``.

    Hosts are lowercased, IPv6 addresses are written compressed in brackets
    (``[2001:db8::1]:5061``), as :attr:`certstore.model.Peer.destination` writes them.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("scope", "The scope must be a string: host or host:port.")
    text = value.strip()
    if not text:
        return None
    if len(text) > SCOPE_MAX_LENGTH:
        raise ValidationError(
            "scope", f"The scope is {len(text)} characters long; at most {SCOPE_MAX_LENGTH}."
        )
    port: str | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValidationError("scope", f"The scope {text!r} has an unclosed '['.")
        host, rest = text[: close + 1], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValidationError("scope", f"The scope {text!r} must be [IPv6] or [IPv6]:port.")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text  # a name, an IPv4 address, or a bare IPv6 address without port
    normal_host = normalize_host(host)
    if port is None:
        return normal_host
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValidationError(
            "scope", f"The port in scope {text!r} must be a number from 1 to 65535."
        )
    return f"{normal_host}:{int(port)}"


def validate_note(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("note", "The note must be text.")
    if len(value) > NOTE_MAX_LENGTH:
        raise ValidationError(
            "note", f"The note is {len(value)} characters long; at most {NOTE_MAX_LENGTH}."
        )
    if any(not ch.isprintable() and ch not in "\n\t" for ch in value):
        raise ValidationError("note", "The note contains control characters; remove them.")
    return value


# What one rejected entry may hold, whatever a peer sends: the leaf always, then as many
# of the following certificates as fit. A hostile peer cannot fill the disk: the list
# holds at most ``rejected_limit`` entries of at most this size (plus a previous
# certificate of at most 64 KiB). A restored backup is held to the same bounds.
MAX_RECORDED_CHAIN_CERTS = 10
MAX_RECORDED_CHAIN_BYTES = 64 * 1024
# How many times one chain is counted as seen: far beyond any real handshake count.
MAX_REJECTED_COUNT = 10**12


def recordable_chain(sizes: list[int]) -> bool:
    """Could the runtime have recorded a chain of certificates of these DER sizes?"""
    if not sizes or len(sizes) > MAX_RECORDED_CHAIN_CERTS:
        return False
    return len(sizes) == 1 or sum(sizes) <= MAX_RECORDED_CHAIN_BYTES


def validate_aware(value: object, *, field: str) -> datetime:
    """An aware datetime, converted to UTC."""
    if not isinstance(value, datetime):
        raise ValidationError(field, f"The {field} must be a date and time.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            field, f"The {field} {value.isoformat()} has no time zone; give it in UTC."
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValidationError(
            field, f"The {field} {value.isoformat()} is outside the years 1 to 9999 in UTC."
        ) from None


def parse_time(text: object, *, field: str, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 time (``Z`` accepted) as an aware UTC datetime; any other text, a time
    without a zone (unless ``naive_is_utc``) or one outside years 1-9999 once in UTC is a
    ValidationError, never a crash."""
    if not isinstance(text, str):
        raise ValidationError(field, f"The {field} must be an ISO 8601 time string.")
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            field, f'The {field} "{text[:40]}" is not an ISO 8601 time.'
        ) from None
    if naive_is_utc and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return validate_aware(value, field=field)


def validate_credential(name: str, value: object) -> str:
    """An HTTP digest username or password: printable text of at most 74 characters."""
    secret = name in SECRET_SETTINGS
    if not isinstance(value, str):
        raise ValidationError(name, f"The setting {name} must be text.")
    if len(value) > HTTP_AUTH_MAX_LENGTH:
        raise ValidationError(
            name,
            f"The setting {name} is {len(value)} characters long; "
            f"at most {HTTP_AUTH_MAX_LENGTH} are allowed.",
        )
    if not value.isprintable():
        shown = "" if secret else f" {value!r}"
        raise ValidationError(
            name,
            f"The setting {name}{shown} contains control or non-printable characters; "
            "use printable characters only.",
        )
    return value


def validate_revocation_mode(value: object) -> RevocationMode:
    """The ``revocation`` setting: ``off``, ``soft-fail`` or ``hard-fail``."""
    if isinstance(value, str):
        try:
            return RevocationMode(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(m.value for m in RevocationMode)
    raise ValidationError(
        "revocation", f"The setting revocation must be one of {choices}, not {value!r}."
    )


def apply_settings_changes(
    current: Settings, changes: Mapping[str, object]
) -> tuple[Settings, dict[str, object]]:
    """Validate ``changes`` against ``current``; return the new settings and what changed.

    The second value is safe for the audit log: ``{name: {"from": old, "to": new}}``,
    and for secrets only ``"changed"``. Unknown names and wrong types raise
    :class:`ValidationError` naming the field; nothing is applied partially.
    """
    updates: dict[str, object] = {}
    for name, value in changes.items():
        if name not in SETTING_NAMES:
            raise ValidationError(
                str(name),
                f"There is no setting named {name!r}; known settings: "
                + ", ".join(SETTING_NAMES)
                + ".",
            )
        if name in BOOL_SETTINGS:
            if not isinstance(value, bool):
                raise ValidationError(
                    name, f"The setting {name} must be true or false, not {value!r}."
                )
            updates[name] = value
        elif name == "revocation":
            updates[name] = validate_revocation_mode(value)
        else:
            updates[name] = validate_credential(name, value)
    diff: dict[str, object] = {}
    for name, value in updates.items():
        old = getattr(current, name)
        if old == value:
            continue
        diff[name] = "changed" if name in SECRET_SETTINGS else {"from": old, "to": value}
    if not diff:
        return current, {}
    return replace(current, **{k: updates[k] for k in diff}), diff  # type: ignore[arg-type]
