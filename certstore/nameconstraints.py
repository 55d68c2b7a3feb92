"""RFC 5280 §4.2.1.10 name constraints, checked along one certification path. Pure.

A CA's ``nameConstraints`` bind every certificate below it in the path (a trust
anchor's too): each name of each such certificate must lie inside a permitted
subtree of its form when the CA permits any of that form, and outside every excluded
subtree. The names of a certificate are its subject (as a directory name, and its
``emailAddress`` attributes as mailboxes), every ``subjectAltName`` entry, and, for the
server certificate without a ``subjectAltName``, its common name as a DNS name (the
identity sipsgate then checks). Self-issued intermediates are exempt (§6.1.3 (b)).

Forms processed: dNSName, iPAddress (IPv4 and IPv6 networks), rfc822Name,
uniformResourceIdentifier (the host part, of ``sip:``/``sips:`` URIs too) and
directoryName. A constraint sipsgate cannot process (another form, a DNS constraint with
a leading period, a non-ASCII name) rejects the chain; it is never skipped. A name that
cannot be compared (a DNS name with invalid characters, an IP entry that is a network,
a URI without a host) is outside every permitted subtree.

A wildcard DNS name stands for every name it can match: under a permitted subtree the
whole wildcard must be inside it, and an excluded name the wildcard could match is a
violation (``*.example.com`` against an excluded ``bar.example.com``).

The work is counted in a :class:`Budget`: each certificate's names times the CA's
subtrees, as a plain implementation compares them. When it runs out the check stops and
says so (``chain-too-complex``), so a CA with thousands of constraints over a
certificate with thousands of names cannot stall a handshake.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from certstore.model import Certificate, ComparableName, GeneralSubtree, NameConstraints, Reason

__all__ = ["MAX_NAME_COMPARISONS", "Budget", "check_name_constraints"]

# Name comparisons allowed in one validation, over every candidate path. Real chains
# need a few dozen; limbo's nc-dos cases ask for millions.
MAX_NAME_COMPARISONS = 4096

_PROCESSED_FORMS = frozenset({"DNS", "IP", "email", "URI", "DirName"})
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")

# reason, message, depth, certificate concerned
_AddFinding = Callable[[Reason, str, int | None, Certificate | None], None]


class Budget:
    """Counted work for one validation: signature checks, paths, name comparisons."""

    __slots__ = ("comparisons", "exhausted", "paths", "signatures")

    def __init__(self, *, signatures: int, paths: int, comparisons: int) -> None:
        self.signatures = signatures
        self.paths = paths
        self.comparisons = comparisons
        self.exhausted = ""  # what ran out, as a phrase; "" while none has


@dataclass(frozen=True, slots=True)
class _Name:
    kind: str
    value: str  # the text compared and shown
    dir_name: ComparableName = ()


def check_name_constraints(
    path: tuple[Certificate, ...],
    label: Callable[[int, Certificate], str],
    add: _AddFinding,
    budget: Budget,
) -> None:
    """Record a finding for every name constraint of ``path`` that is broken."""
    leaf = path[0]
    if leaf.name_constraints is not None and not leaf.is_ca:
        add(
            Reason.NAME_CONSTRAINTS,
            f"The {label(0, leaf)} carries name constraints, which only a CA certificate "
            "may carry (RFC 5280 §4.2.1.10).",
            0,
            leaf,
        )
    for ca_depth in range(1, len(path)):
        ca = path[ca_depth]
        constraints = ca.name_constraints
        if constraints is None:
            continue
        problem = _invalid(constraints)
        if problem:
            add(
                Reason.NAME_CONSTRAINTS,
                f"The name constraints of the {label(ca_depth, ca)} cannot be processed: "
                f"{problem}. sipsgate refuses the chain rather than ignore a constraint.",
                ca_depth,
                ca,
            )
            continue
        fan_out = len(constraints.permitted) + len(constraints.excluded)
        for depth in range(ca_depth - 1, -1, -1):
            cert = path[depth]
            if depth > 0 and cert.subject_der == cert.issuer_der:
                continue  # self-issued intermediates are exempt (RFC 5280 §6.1.3 (b))
            names = tuple(_names(cert, depth))
            # Counted as a plain implementation would compare: every name against every
            # subtree, so the bound does not depend on how names and forms are mixed.
            budget.comparisons -= len(names) * fan_out
            if budget.comparisons < 0:
                budget.exhausted = f"{MAX_NAME_COMPARISONS} name comparisons"
                add(
                    Reason.CHAIN_TOO_COMPLEX,
                    f"Checking the name constraints of the {label(ca_depth, ca)} "
                    f"({fan_out} subtrees) against the {len(names)} names of the "
                    f"{label(depth, cert)} needs more than {MAX_NAME_COMPARISONS} name "
                    "comparisons in all; sipsgate stops there and refuses the chain.",
                    depth,
                    cert,
                )
                return
            unprocessed = _unprocessed(constraints, cert)
            if unprocessed:
                add(
                    Reason.NAME_CONSTRAINTS,
                    f"The {label(ca_depth, ca)} constrains names of the form {unprocessed}, "
                    f"which sipsgate does not process, and the {label(depth, cert)} has such "
                    "a name; sipsgate refuses the chain rather than ignore the constraint.",
                    depth,
                    cert,
                )
            for name in names:
                problem = _violation(constraints, name)
                if problem:
                    add(
                        Reason.NAME_CONSTRAINTS,
                        f"The {label(ca_depth, ca)} {problem}, but the {label(depth, cert)} "
                        f"names {name.kind}:{name.value}.",
                        depth,
                        cert,
                    )


def _names(cert: Certificate, depth: int) -> Iterator[_Name]:
    if cert.subject_name:
        yield _Name("DirName", cert.subject, cert.subject_name)
    for email in cert.subject_emails:
        yield _Name("email", email)
    for dns in cert.san_dns:
        yield _Name("DNS", dns)
    for ip in cert.san_ip:
        yield _Name("IP", ip)
    for email in cert.san_email:
        yield _Name("email", email)
    for uri in cert.san_uri:
        yield _Name("URI", uri)
    for dir_name in cert.san_dir_names:
        yield _Name("DirName", _show(dir_name), dir_name)
    if depth == 0 and not cert.has_san and cert.common_name and not _is_ip(cert.common_name):
        # The CN is then the identity, so it is held to DNS constraints; one that is not
        # a valid DNS name cannot be compared and so is refused by them, never let pass.
        yield _Name("DNS", cert.common_name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _show(name: ComparableName) -> str:
    return ",".join("+".join(f"{oid}={value}" for oid, value in rdn) for rdn in name)


def _invalid(constraints: NameConstraints) -> str:
    for subtree in (*constraints.permitted, *constraints.excluded):
        if subtree.kind not in _PROCESSED_FORMS:
            continue  # matters only when a certificate below has such a name
        if not subtree.value.isascii():
            return f"{subtree.describe()} is not plain ASCII"
        if subtree.kind == "DNS" and subtree.value and not _dns_base(subtree.value):
            return f"{subtree.describe()} is not a valid DNS name constraint"
    return ""


def _unprocessed(constraints: NameConstraints, cert: Certificate) -> str:
    """A name form constrained here that sipsgate cannot compare and ``cert`` uses
    (RFC 5280 §4.2.1.10: process such a constraint or reject); "" when there is none."""
    if not cert.san_other:
        return ""
    forms = {name.split(":", 1)[0] for name in cert.san_other}
    for subtree in (*constraints.permitted, *constraints.excluded):
        if subtree.kind not in _PROCESSED_FORMS and subtree.kind.split(":", 1)[0] in forms:
            return subtree.kind.split(":", 1)[0]
    return ""


def _violation(constraints: NameConstraints, name: _Name) -> str:
    """What the CA says that ``name`` breaks, as a phrase; "" when it breaks nothing."""
    for subtree in constraints.excluded:
        if subtree.kind == name.kind and _matches(subtree, name, excluded=True):
            return f"excludes {subtree.describe()}"
    permitted = [s for s in constraints.permitted if s.kind == name.kind]
    if not permitted:
        return ""
    for subtree in permitted:
        if _matches(subtree, name, excluded=False):
            return ""
    return "permits only " + ", ".join(s.describe() for s in permitted) + f" for {name.kind} names"


def _matches(subtree: GeneralSubtree, name: _Name, *, excluded: bool) -> bool:
    """Whether ``name`` lies in ``subtree``; for an excluded subtree, whether it may.

    A name that cannot be compared counts as outside a permitted subtree and inside an
    excluded one: either way the chain is refused.
    """
    kind = subtree.kind
    if kind == "DNS":
        dns = _dns_name(name.value)
        if dns is None:
            return excluded
        base = _dns_base(subtree.value) if subtree.value else ""
        if _dns_within(dns, base or ""):
            return True
        if excluded and dns.startswith("*.") and base:
            # The wildcard stands for any one label: it may name the excluded host.
            return base.endswith("." + dns[2:]) and base.count(".") == dns.count(".")
        return False
    if kind == "IP":
        try:
            address = ipaddress.ip_address(name.value)
        except ValueError:
            return excluded
        network = subtree.network
        return network is not None and address.version == network.version and address in network
    if kind == "email":
        return _email_within(name.value, subtree.value, excluded=excluded)
    if kind == "URI":
        host = uri_host(name.value)
        if host is None:
            return excluded
        return _host_within(host, subtree.value.lower())
    if kind == "DirName":
        size = len(subtree.name)
        return name.dir_name[:size] == subtree.name
    return excluded


def _dns_name(value: str) -> str | None:
    """``value`` lowercased when it is a DNS name (a left-most ``*`` label allowed)."""
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or not name.isascii() or len(name) > 253:
        return None
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return None
    if all(_LABEL.match(label) for label in labels):
        return name
    return None


def _dns_base(value: str) -> str | None:
    """A DNS constraint lowercased, or None when it is not a valid one (no wildcard, no
    leading period: RFC 5280 defines neither for dNSName constraints)."""
    if value.startswith(".") or "*" in value:
        return None
    return _dns_name(value)


def _dns_within(name: str, base: str) -> bool:
    return not base or name == base or name.endswith("." + base)


def _host_within(host: str, constraint: str) -> bool:
    """RFC 5280 host rules for URI and mailbox domains: ``.example.com`` means any
    host below it, ``example.com`` that host only."""
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def _email_within(mailbox: str, constraint: str, *, excluded: bool) -> bool:
    local, at, host = mailbox.rpartition("@")
    if not at or not local or not host or not mailbox.isascii():
        return excluded
    if "@" in constraint:
        c_local, _, c_host = constraint.rpartition("@")
        return local == c_local and host.lower() == c_host.lower()
    return _host_within(host.lower(), constraint.lower())


def uri_host(uri: str) -> str | None:
    """The host of a URI, lowercased: the authority's host, or for ``sip:``/``sips:``
    URIs (which have no ``//``) the host after the user part. None when it has none."""
    scheme, sep, rest = uri.partition(":")
    if not sep or not scheme:
        return None
    if rest.startswith("//"):
        authority = rest[2:]
        for stop in "/?#":
            authority = authority.split(stop, 1)[0]
    elif scheme.lower() in ("sip", "sips"):
        authority = rest
        for stop in ";?>":
            authority = authority.split(stop, 1)[0]
    else:
        return None
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else ""
    else:
        host = host.split(":", 1)[0]
    host = host.lower().rstrip(".")
    return host or None
