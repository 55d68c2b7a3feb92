"""RFC 3263 server location for the ``sips:`` upstream, with dnspython.

``sips:HOST`` without a port: NAPTR (``SIPS+D2T``), else SRV ``_sips._tcp.HOST``, else
A/AAAA on 5061. With a port or an IP literal: A/AAAA (or the literal) on that port.
``sip.upstream_address`` overrides DNS altogether. The certificate is always checked
against the URI's host (RFC 5922), whatever address is dialled.

DNS is reached through a :data:`Lookup` callable so that tests (and anything else)
can hand in their own answers; :func:`dns_lookup` is the dnspython one.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from gateway.errors import GatewayError
from gateway.tls.policy import TlsTarget, is_ip_literal, target_from_uri

#: ``await lookup(name, rdtype)`` → the rdata of the answer (empty when there is none).
Lookup = Callable[[str, str], Awaitable[Sequence[Any]]]


class ResolveError(GatewayError):
    """The upstream's name could not be turned into any address."""


def dns_lookup(resolver: dns.asyncresolver.Resolver | None = None) -> Lookup:
    """A :data:`Lookup` backed by dnspython's asyncio resolver (lifetime 5 s)."""
    res = resolver or dns.asyncresolver.Resolver()
    res.lifetime = 5.0

    async def lookup(name: str, rdtype: str) -> Sequence[Any]:
        try:
            answer = await res.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return ()
        except dns.exception.DNSException as exc:
            raise ResolveError(f"DNS lookup of {name} {rdtype} failed: {exc}.") from exc
        return list(answer)

    return lookup


def _srv_order(records: Sequence[Any], rng: random.Random) -> list[Any]:
    """RFC 2782: by priority, then a weighted random order within each priority."""
    out: list[Any] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                pick = group[0]
            else:
                point = rng.uniform(0, total)
                acc = 0
                pick = group[-1]
                for r in group:
                    acc += r.weight
                    if acc >= point:
                        pick = r
                        break
            out.append(pick)
            group.remove(pick)
    return out


async def _addresses(lookup: Lookup, host: str) -> list[str]:
    addresses: list[str] = []
    for rdtype in ("AAAA", "A"):
        addresses += [r.address for r in await lookup(host, rdtype)]
    # IPv4 first: on a typical LAN gateway the upstream is most often reached over it.
    return sorted(addresses, key=lambda a: ":" in a)


async def resolve_upstream(
    upstream: str,
    *,
    override: str = "",
    lookup: Lookup | None = None,
    rng: random.Random | None = None,
) -> list[TlsTarget]:
    """Every target to try for ``upstream`` (a ``sips:`` URI), in order.

    Raises :class:`ResolveError` when the URI is not usable or no address is found.
    """
    try:
        base = target_from_uri(upstream, override or None)
    except ValueError as exc:
        raise ResolveError(f"sip.upstream {upstream!r}: {exc}") from exc
    if base.scheme != "sips":
        raise ResolveError(f"sip.upstream {upstream!r} must be a sips: URI.")
    if override or is_ip_literal(base.host):
        return [base]
    lookup = lookup or dns_lookup()
    rng = rng or random.Random()
    host = base.host.rstrip(".")
    explicit_port = _has_port(upstream)
    targets: list[TlsTarget] = []
    if not explicit_port:
        srv_names: list[str] = []
        naptrs = [
            r
            for r in await lookup(host, "NAPTR")
            if r.service.decode("ascii", "replace").upper() == "SIPS+D2T"
            and r.flags.decode("ascii", "replace").lower() == "s"
        ]
        for r in sorted(naptrs, key=lambda r: (r.order, r.preference)):
            srv_names.append(str(r.replacement).rstrip("."))
        if not srv_names:
            srv_names.append(f"_sips._tcp.{host}")
        for name in srv_names:
            records = [r for r in await lookup(name, "SRV") if str(r.target) != "."]
            for r in _srv_order(records, rng):
                target_host = str(r.target).rstrip(".")
                for address in await _addresses(lookup, target_host):
                    targets.append(
                        TlsTarget.sips(
                            base.host, base.port, connect_host=address, connect_port=r.port
                        )
                    )
            if targets:
                return targets
    for address in await _addresses(lookup, host):
        targets.append(
            TlsTarget.sips(base.host, base.port, connect_host=address, connect_port=base.port)
        )
    if not targets:
        raise ResolveError(
            f"No address found for {upstream} (NAPTR, SRV _sips._tcp, A and AAAA); "
            "check the name, or set sip.upstream_address."
        )
    return targets


def _has_port(uri: str) -> bool:
    rest = uri.strip()[5:].split(";", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if rest.startswith("["):
        return "]:" in rest
    return ":" in rest
