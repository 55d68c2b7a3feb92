"""What an operator can do about each reason the trust decision gives.

The decision's findings say what is wrong; this module adds the fix, naming the
certificate, the date and the exact ``sipsgate`` command where there is one. Used by
``sipsgate probe`` and documented in ``docs/probe.md`` (a test keeps the two in step
with ``certstore.model.Reason``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from certstore.model import Certificate, Peer, Reason, Rule
from certstore.pathvalidation import PROCESSED_CRITICAL_EXTENSIONS
from gateway.tls.policy import is_ip_literal

# The one-line fix for every reason code, as docs/probe.md shows it.
FIXES: dict[Reason, str] = {
    Reason.EXPIRED: (
        "renew the certificate on the server, or accept it for a limited time with a pin "
        "that expires"
    ),
    Reason.NOT_YET_VALID: (
        "check the clocks of this gateway and of the server; if both are right, wait "
        "until the certificate becomes valid or have it re-issued"
    ),
    Reason.SELF_SIGNED: (
        "compare the fingerprint with the server's operator, then trust the certificate "
        "or pin it accept for this destination"
    ),
    Reason.UNKNOWN_ISSUER: (
        "add the issuing CA to the trust list (or trust it from the rejected list); if "
        "the server leaves out its intermediate certificate, configure it to send the "
        "whole chain"
    ),
    Reason.BAD_SIGNATURE: (
        "do not accept it: a signature in the chain does not verify, so the chain is "
        "corrupt or forged; check the certificate installation on the server"
    ),
    Reason.NAME_MISMATCH: (
        "connect with a name the certificate carries, or have it re-issued with this "
        "name (for SIPS a sip: URI or DNS SAN); wildcard names need allow_wildcards on"
    ),
    Reason.NOT_A_CA: (
        "the chain is built wrongly: a certificate that signs another is not a CA; "
        "have the server send the right intermediate certificate"
    ),
    Reason.WEAK_KEY: (
        "have the certificate re-issued with an RSA key of 2048 bits or more, or an ECDSA P-256 key"
    ),
    Reason.BAD_USAGE: (
        "have the certificate re-issued with key usage digitalSignature and extended "
        "key usage serverAuth"
    ),
    Reason.WEAK_SIGNATURE: "have the certificate re-issued with a SHA-256 signature",
    Reason.KEY_CHANGED: (
        "if the server's key was renewed on purpose, accept the new key for this "
        "destination; if nobody renewed it, treat it as an interception attempt"
    ),
    Reason.NO_CERTIFICATE: "configure a certificate on the server's TLS port",
    Reason.PINNED_REJECT: (
        "an administrator pinned this certificate (or its key) reject; remove the pin if "
        "the server is to be trusted again"
    ),
    Reason.NAME_CONSTRAINTS: (
        "the CA may not issue for this name: have the certificate issued by a CA allowed "
        "to (or re-issued without the offending name); if the CA's constraint is wrong, "
        "its operator must re-issue the CA certificate"
    ),
    Reason.UNKNOWN_CRITICAL_EXTENSION: (
        "have the certificate re-issued without that critical extension (or with it "
        "non-critical); if it is the server's own certificate, an admin may pin it accept"
    ),
    Reason.UNSUPPORTED_KEY: (
        "have the certificate re-issued with an RSA key of 2048 bits or more, or an "
        "ECDSA key on a named curve such as P-256"
    ),
    Reason.CHAIN_TOO_COMPLEX: (
        "configure the server to send only its own chain (its certificate and the "
        "intermediates above it); a CA with thousands of name constraints cannot be used"
    ),
    Reason.REVOKED: (
        "the issuing CA withdrew the certificate: the server's operator must install a new "
        "one; do not pin a revoked certificate accept, it stays rejected unless revocation "
        "is off"
    ),
    Reason.REVOCATION_UNKNOWN: (
        "make the CA's OCSP responder or CRL reachable from this gateway, have the server "
        "staple OCSP, or upload the CA's CRL (sipsgate certs crl add FILE); or set "
        "revocation to soft-fail"
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Advice:
    """One reason, what it means for this chain, and what to do about it."""

    reason: str
    sentence: str


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEFHILMNORSX" else "a"


def _date(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def _who(chain: Sequence[Certificate], cert: Certificate) -> str:
    if chain and cert == chain[0]:
        return "the server's certificate"
    return f"the CA certificate {cert.display_name!r}"


def _names(cert: Certificate) -> str:
    names = [f"URI:{u}" for u in cert.san_uri if u.startswith("sip")]
    names += [f"DNS:{d}" for d in cert.san_dns] + [f"IP:{i}" for i in cert.san_ip]
    if not names and cert.common_name:
        names.append(f"CN={cert.common_name}")
    return ", ".join(names) or "no name at all"


def advise(
    reason: str,
    *,
    chain: Sequence[Certificate],
    peer: Peer,
    now: datetime,
    rejected_id: int | None = None,
) -> Advice:
    """A sentence for ``reason`` about this chain and peer, ending with the fix."""
    leaf = chain[0] if chain else None
    dest = peer.destination
    pin_cmd = (
        f"`sipsgate certs pins add --accept --fingerprint {leaf.fingerprint} --scope {dest}"
        if leaf
        else "`sipsgate certs pins add --accept --fingerprint FINGERPRINT"
    )
    trust_cmd = (
        f"`sipsgate certs trust {rejected_id}`"
        if rejected_id is not None
        else "`sipsgate certs trust ID` (ID from `sipsgate certs rejected`)"
    )
    try:
        code = Reason(reason)
    except ValueError:
        return Advice(reason=reason, sentence=f"the decision reported {reason}.")
    match code:
        case Reason.EXPIRED:
            expired = [c for c in chain if c.not_after < now] or list(chain[:1])
            what = "; ".join(f"{_who(chain, c)} expired on {_date(c.not_after)}" for c in expired)
            sentence = (
                f"{what}; renew it on the server, or accept it for a limited time with "
                f"{pin_cmd} --expires-in 7d`."
            )
        case Reason.NOT_YET_VALID:
            early = [c for c in chain if c.not_before > now] or list(chain[:1])
            what = "; ".join(
                f"{_who(chain, c)} is valid only from {_date(c.not_before)}" for c in early
            )
            sentence = (
                f"{what}; check the clocks of this gateway and of the server, or have "
                "the certificate re-issued."
            )
        case Reason.SELF_SIGNED:
            fp = leaf.fingerprint if leaf else "?"
            sentence = (
                f"the server presents a self-signed certificate (SHA-256 {fp}); compare "
                f"that fingerprint with the server's operator, then trust it with "
                f"{trust_cmd} or pin it with {pin_cmd}`."
            )
        case Reason.UNKNOWN_ISSUER:
            top = chain[-1] if chain else None
            issuer = f" (issuer {top.issuer!r})" if top else ""
            sentence = (
                f"the chain does not lead to a certificate on the trust list{issuer}; "
                "add the issuing CA with `sipsgate certs add CA.pem` or trust it from the "
                f"rejected list with {trust_cmd}; if the server leaves out its "
                "intermediate certificate, configure it to send the whole chain."
            )
        case Reason.NAME_MISMATCH:
            names = _names(leaf) if leaf else "no certificate"
            if is_ip_literal(peer.host):
                # An IP address is matched only by an IP SAN, never by a DNS name or wildcard.
                sentence = (
                    f"the certificate is not issued for {peer.host} (it names {names}); "
                    "connect with a name it carries, or have it re-issued with "
                    f"IP:{peer.host.strip('[]')}."
                )
            else:
                sentence = (
                    f"the certificate is not issued for {peer.host} (it names {names}); "
                    "connect with a name it carries, or have it re-issued with "
                    f"{'sip:' + peer.host + ' or ' if peer.transport.value == 'sips' else ''}"
                    f"DNS:{peer.host}; wildcard names need "
                    "`sipsgate certs settings --allow-wildcards on`."
                )
        case Reason.WEAK_KEY:
            weak = [c for c in chain if c.weak_key] or list(chain[:1])
            what = "; ".join(
                f"{_who(chain, c)} has {_article(c.public_key_type)} {c.public_key_type} "
                f"{c.public_key_size}-bit key"
                for c in weak
            )
            sentence = f"{what}; {FIXES[code]}."
        case Reason.WEAK_SIGNATURE:
            weak = [c for c in chain if c.weak_signature] or list(chain[:1])
            what = "; ".join(
                f"{_who(chain, c)} is signed with {c.signature_hash or c.signature_algorithm}"
                for c in weak
            )
            sentence = f"{what}; {FIXES[code]}."
        case Reason.UNSUPPORTED_KEY:
            refused = [c for c in chain if c.explicit_curve or c.public_key_type == "DSA"]
            what = "; ".join(
                f"{_who(chain, c)} has "
                + ("an EC key with explicit curve parameters" if c.explicit_curve else "a DSA key")
                for c in refused or chain[:1]
            )
            sentence = f"{what}; {FIXES[code]}."
        case Reason.UNKNOWN_CRITICAL_EXTENSION:
            marked = [
                (c, [o for o in c.critical_extensions if o not in PROCESSED_CRITICAL_EXTENSIONS])
                for c in chain
            ]
            what = "; ".join(
                f"{_who(chain, c)} marks {', '.join(oids)} critical" for c, oids in marked if oids
            )
            sentence = (
                f"{what or 'a certificate marks an unknown extension critical'}; {FIXES[code]}."
            )
        case Reason.PINNED_REJECT:
            sentence = (
                "a reject pin matches this certificate or its public key; list the pins "
                "with `sipsgate certs pins` and remove it with `sipsgate certs pins remove "
                "ID` if the server is to be trusted again."
            )
        case Reason.KEY_CHANGED:
            sentence = (
                f"the server's public key for {dest} is not the one first seen there; "
                f"{FIXES[code]} (`sipsgate certs accept {rejected_id or 'ID'} --match "
                f"public-key --scope {dest}`)."
            )
        case _:
            sentence = f"{FIXES[code]}."
    return Advice(reason=code.value, sentence=sentence)


def rule_sentence(rule: str, *, matched_pin_id: int | None = None) -> str:
    """What the rule that decided means, in one sentence."""
    match rule:
        case Rule.PINNED_REJECT:
            pin = f" (pin #{matched_pin_id})" if matched_pin_id is not None else ""
            return (
                f"A reject pin matches this certificate{pin}; remove it with "
                f"`sipsgate certs pins remove {matched_pin_id or 'ID'}` if it is no longer "
                "wanted."
            )
        case Rule.PINNED_ACCEPT:
            pin = f" (pin #{matched_pin_id})" if matched_pin_id is not None else ""
            return f"An accept pin matches this certificate{pin}; it is accepted as it is."
        case Rule.ACCEPT_ALL:
            return (
                "Accept-all is on: every certificate is accepted, and the failures below "
                "are recorded as overridden."
            )
        case Rule.FIRST_USE:
            return (
                "Trust on first use: this is the first chain seen for this destination; "
                "its public key is now pinned to it."
            )
        case Rule.CHAIN_VALID:
            return "The chain leads to a trusted certificate and names this server."
        case Rule.UNTRUSTED:
            return "The chain failed verification for the reasons below."
    return f"Rule {rule}."
