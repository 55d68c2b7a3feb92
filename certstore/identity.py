"""Does a certificate name the peer we meant to reach? Pure host name, IP and SIP domain
matching for the trust decision.

Two rule sets, picked by the transport:

SIPS (RFC 5922 §7.1)
    When the certificate has ``subjectAltName`` URIs with the ``sip`` scheme, only those
    count: a ``sip:`` URI without a user part is a SIP domain identity
    (``sip:example.net`` names the domain ``example.net``); URIs with a user part
    (``sip:alice@example.net``) and ``sips:`` URIs are never domain identities. DNS
    names are then ignored. Without ``sip:`` URIs, the ``dNSName`` entries count.
    RFC 5922 lets *any* URI switch the DNS names off; sipsgate only lets ``sip:`` URIs
    do so, because an ``https:`` URI says nothing about a SIP domain and a provider's
    certificate that carries one should still be judged by its DNS names. The common
    name is read only when the certificate has no ``subjectAltName`` extension at all.
    Wildcards are refused (RFC 5922 §7.2) unless the ``allow_wildcards`` setting is on.

HTTPS (RFC 6125 §6, RFC 9110 §4.3.4)
    ``dNSName`` entries, with the standard wildcard rule always allowed. URIs are
    ignored. The common name is read only when the certificate has no
    ``subjectAltName`` extension at all: browsers dropped that fallback, but legacy
    provisioning servers still ship CN-only certificates, and with no SAN present there
    is no better statement of intent to prefer over the CN.

Both
    An IP literal peer matches ``iPAddress`` entries only (IPv6 compared in canonical
    form); neither DNS names, URIs nor the common name can vouch for an address.
    Comparison is case-insensitive, ignores one trailing dot, and works on A-labels: a
    peer host given in Unicode is converted with IDNA, and a certificate name that is
    not plain ASCII never matches (a CA must encode it as ``xn--`` A-labels).

Wildcards, when allowed, follow RFC 6125 §6.4.3 strictly: the left-most label must be
exactly ``*`` (partial wildcards such as ``f*.example.com`` never match), it stands for
exactly one non-empty label, and at least two labels must follow it (``*.com`` and
``*.`` are refused; there is no public-suffix list, so ``*.co.uk`` is not caught).

Why not ``service-identity``: of these rules it would cover only plain DNS and IP
matching for HTTPS. RFC 5922 (``sip:`` URIs switch the DNS names off, user parts
disqualify a URI, wildcards behind a setting), the common-name fallback it refuses by
design, and the notes that explain a mismatch to the operator would all stay here, and
the handshake path would build its objects and map its exceptions for a twenty-line
label comparison. So the matcher is sipsgate's own, and the package is no dependency.
"""

from __future__ import annotations

import functools
import ipaddress
import unicodedata
from dataclasses import dataclass

from certstore.model import Certificate, Transport

__all__ = [
    "IdentityResult",
    "check_identity",
    "identity_matches",
    "match_dns_pattern",
    "normalize_host",
    "sip_domain_of_uri",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityResult:
    """The outcome of one identity check, with everything needed to explain it."""

    matched: bool
    expected: str  # the peer identity that was looked for, normalised
    rules: str  # e.g. "SIPS (RFC 5922)"
    presented: tuple[str, ...]  # the identities the certificate offers, e.g. "DNS:a.example"
    considered: tuple[str, ...]  # the subset the rules let count
    notes: tuple[str, ...] = ()  # why some presented identities did not count

    def describe(self) -> str:
        """One sentence naming what the certificate offers and what was expected."""
        offered = ", ".join(self.presented) if self.presented else "no name at all"
        text = (
            f"it names {offered}, but the peer is {self.expected} (checked by {self.rules} rules)"
        )
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text


@functools.lru_cache(maxsize=1024)  # a pure function of its argument: memo only
def normalize_host(host: str) -> str:
    """Lowercase A-label form of a host name, or the canonical text of an IP literal.

    Brackets around IPv6 literals and one trailing dot are dropped. A Unicode name is
    converted to A-labels; a name IDNA refuses, or one whose conversion would not be
    reversible, is returned lowercased (it then matches nothing, since certificate
    names must be ASCII).
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.endswith("."):
        text = text[:-1]
    ip = _parse_ip(text)
    if ip is not None:
        return str(ip)
    lowered = text.lower()
    if lowered.isascii():
        return lowered
    # Python's "idna" codec is IDNA 2003: its nameprep silently drops some characters
    # (zero-width joiners, soft hyphens) and folds others (ß to ss), where IDNA 2008
    # would refuse or keep them. A name only converts when the A-labels decode back to
    # the name as given; anything ambiguous stays as it is and so matches nothing.
    try:
        a_labels = lowered.encode("idna").decode("ascii")
        back = a_labels.encode("ascii").decode("idna")
    except UnicodeError:
        return lowered
    if back != unicodedata.normalize("NFC", lowered):
        return lowered
    return a_labels


def match_dns_pattern(pattern: str, host: str, *, wildcards: bool) -> bool:
    """Whether the certificate name ``pattern`` matches the normalised host name ``host``.

    ``host`` must already be normalised (see :func:`normalize_host`) and must not be an
    IP literal. Non-ASCII patterns never match.
    """
    if not pattern.isascii() or not host:
        return False
    name = pattern.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return False
    if "*" not in name:
        return name == host
    if not wildcards:
        return False
    labels = name.split(".")
    if labels[0] != "*" or "*" in ".".join(labels[1:]):
        return False  # partial (f*.example.com) or non-left-most wildcards
    rest = labels[1:]
    if len(rest) < 2 or any(not label for label in rest):
        return False  # *.com, *., *..example
    host_labels = host.split(".")
    if len(host_labels) != len(labels) or not host_labels[0]:
        return False
    return host_labels[1:] == rest


def sip_domain_of_uri(uri: str) -> str | None:
    """The domain a ``sip:`` URI names as a SIP domain identity, or None.

    ``sip:example.net`` (optionally with a port or parameters) yields ``example.net``;
    URIs with a user part, other schemes (``sips:`` included) and empty hosts yield None.
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() != "sip":
        return None
    for stop in (";", "?"):
        rest = rest.split(stop, 1)[0]
    if "@" in rest or not rest:
        return None
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return None
        host = rest[: end + 1]
    else:
        host = rest.split(":", 1)[0]
    return host or None


def identity_matches(
    cert: Certificate, host: str, transport: Transport, *, allow_wildcards: bool
) -> bool:
    """Whether ``cert`` names the peer ``host``: the answer of :func:`check_identity`
    without the explanation (the handshake's fast path)."""
    expected = normalize_host(host)
    ip = _parse_ip(expected)
    if ip is not None:
        return any(_parse_ip(value) == ip for value in cert.san_ip)
    wildcards = allow_wildcards or transport is not Transport.SIPS
    names: list[str] | tuple[str, ...] = cert.san_dns
    if transport is Transport.SIPS and cert.san_uri:
        domains = [sip_domain_of_uri(u) for u in cert.san_uri if _is_sip(u)]
        if domains:
            names = [d for d in domains if d is not None]
    if not cert.has_san and cert.common_name is not None:
        names = (cert.common_name,)
    return any(match_dns_pattern(n, expected, wildcards=wildcards) for n in names)


def check_identity(
    cert: Certificate, host: str, transport: Transport, *, allow_wildcards: bool
) -> IdentityResult:
    """Check ``cert`` against the peer identity ``host`` under the rules of ``transport``."""
    expected = normalize_host(host)
    ip = _parse_ip(expected)
    presented = _presented(cert)
    if transport is Transport.SIPS:
        rules = "SIPS (RFC 5922)"
        wildcards = allow_wildcards
    else:
        rules = "HTTPS (RFC 6125)"
        wildcards = True

    if ip is not None:
        considered = tuple(f"IP:{value}" for value in cert.san_ip)
        matched = any(_parse_ip(value) == ip for value in cert.san_ip)
        notes: tuple[str, ...] = ()
        if not matched and not cert.san_ip:
            notes = (
                "an IP address is only matched by an IP address entry in the "
                "subjectAltName, never by a DNS name or the common name",
            )
        return IdentityResult(
            matched=matched,
            expected=expected,
            rules=rules,
            presented=presented,
            considered=considered,
            notes=notes,
        )

    note_list: list[str] = []
    patterns: list[tuple[str, str]] = []  # (label for messages, name to match)
    if transport is Transport.SIPS:
        sip_uris = [u for u in cert.san_uri if _is_sip(u)]
        if sip_uris:
            for uri in sip_uris:
                domain = sip_domain_of_uri(uri)
                if domain is None:
                    note_list.append(
                        f"URI:{uri} is not a SIP domain identity (it has a user part or no host)"
                    )
                    continue
                patterns.append((f"URI:{uri}", domain))
            if cert.san_dns:
                note_list.append(
                    "the DNS names are ignored because the certificate carries sip: URIs"
                )
        else:
            patterns.extend((f"DNS:{name}", name) for name in cert.san_dns)
    else:
        patterns.extend((f"DNS:{name}", name) for name in cert.san_dns)
    if not cert.has_san and cert.common_name is not None:
        patterns.append((f"CN={cert.common_name}", cert.common_name))
    elif cert.has_san and cert.common_name is not None and not patterns:
        note_list.append(
            "the common name is not read because the certificate has a subjectAltName extension"
        )

    matched = False
    for _label, name in patterns:
        if match_dns_pattern(name, expected, wildcards=wildcards):
            matched = True
            break
    if not matched:
        for label, name in patterns:
            if not name.isascii():
                note_list.append(f"{label} is not plain ASCII and cannot match")
            elif not wildcards and match_dns_pattern(name, expected, wildcards=True):
                note_list.append(
                    f"{label} would match, but wildcard certificates are not accepted for "
                    "SIPS while the allow_wildcards setting is off"
                )
    return IdentityResult(
        matched=matched,
        expected=expected,
        rules=rules,
        presented=presented,
        considered=tuple(label for label, _ in patterns),
        notes=tuple(note_list),
    )


def _is_sip(uri: str) -> bool:
    return uri[:4].lower() == "sip:"


def _presented(cert: Certificate) -> tuple[str, ...]:
    names = [f"DNS:{n}" for n in cert.san_dns]
    names += [f"IP:{n}" for n in cert.san_ip]
    names += [f"URI:{n}" for n in cert.san_uri]
    if cert.common_name is not None:
        names.append(f"CN={cert.common_name}")
    return tuple(names)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    candidate = text
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    if not candidate or not (candidate[0].isdigit() or ":" in candidate):
        return None
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None
