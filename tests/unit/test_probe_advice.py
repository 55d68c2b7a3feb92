"""Operator advice for every reason code, and docs/probe.md in step with the model."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from certstore.model import Certificate, Peer, Reason, Rule, Transport
from certstore.x509 import parse_der
from gateway.tls.advice import FIXES, advise, rule_sentence
from tests.pki import CertFactory

DOCS = Path(__file__).resolve().parents[2] / "docs" / "probe.md"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
Chain = tuple[Certificate, ...]
PEER = Peer(host="sip.example.net", port=5061, transport=Transport.SIPS, sni="sip.example.net")


@pytest.fixture(scope="module")
def expired_chain() -> Chain:
    factory = CertFactory(now=NOW)
    root = factory.ca("Advice Root")
    leaf = factory.leaf(
        root, cn="sip.example.net", dns=("sip.example.net",), valid_days=(-400, -92)
    )
    return (parse_der(leaf.der), parse_der(root.der))


class TestAdvice:
    def test_every_reason_has_a_fix(self) -> None:
        """No reason code of the model is without a fix."""
        assert set(FIXES) == set(Reason)

    @pytest.mark.parametrize("reason", list(Reason))
    def test_every_reason_gives_a_sentence(self, reason: Reason, expired_chain: tuple) -> None:  # type: ignore[type-arg]
        """advise() answers every reason with a full sentence."""
        advice = advise(reason.value, chain=expired_chain, peer=PEER, now=NOW, rejected_id=4)
        assert advice.reason == reason.value
        assert advice.sentence.endswith(".")
        assert len(advice.sentence) > 40

    def test_expired_names_the_date_and_the_pin_command(self, expired_chain: tuple) -> None:  # type: ignore[type-arg]
        """The expired advice says when, and how to accept it for a while."""
        leaf = expired_chain[0]
        sentence = advise("expired", chain=expired_chain, peer=PEER, now=NOW).sentence
        assert f"the server's certificate expired on {leaf.not_after:%Y-%m-%d}" in sentence
        assert "renew it on the server" in sentence
        assert f"sipsgate certs pins add --accept --fingerprint {leaf.fingerprint}" in sentence
        assert "--scope sip.example.net:5061 --expires-in 7d" in sentence

    def test_trust_command_names_the_rejected_entry(self, expired_chain: tuple) -> None:  # type: ignore[type-arg]
        """When the chain was recorded, the trust command names its id."""
        sentence = advise(
            "unknown-issuer", chain=expired_chain, peer=PEER, now=NOW, rejected_id=12
        ).sentence
        assert "`sipsgate certs trust 12`" in sentence

    def test_name_mismatch_lists_the_names_the_certificate_has(
        self,
        expired_chain: Chain,
    ) -> None:
        """The name advice shows what the certificate names and what it would need."""
        other = Peer(host="other.example.net", port=5061, transport=Transport.SIPS)
        sentence = advise("name-mismatch", chain=expired_chain, peer=other, now=NOW).sentence
        assert "not issued for other.example.net" in sentence
        assert "DNS:sip.example.net" in sentence
        assert "sip:other.example.net" in sentence

    @pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
    def test_name_mismatch_for_an_ip_peer_asks_for_an_ip_san(
        self, expired_chain: Chain, host: str
    ) -> None:
        """An IP address is matched by an IP SAN only: the fix says IP:, never DNS:."""
        peer = Peer(host=host, port=5061, transport=Transport.SIPS)
        sentence = advise("name-mismatch", chain=expired_chain, peer=peer, now=NOW).sentence
        assert f"have it re-issued with IP:{host}." in sentence
        assert f"DNS:{host}" not in sentence
        assert f"sip:{host}" not in sentence
        assert "wildcard" not in sentence

    def test_unknown_reason_is_shown_as_is(self) -> None:
        """A reason the gateway does not know yet is still shown."""
        assert "brand-new" in advise("brand-new", chain=(), peer=PEER, now=NOW).sentence

    @pytest.mark.parametrize("rule", list(Rule))
    def test_every_rule_has_a_sentence(self, rule: Rule) -> None:
        """Each rule is explained in one sentence."""
        assert rule_sentence(rule, matched_pin_id=3).endswith(".")


class TestDocs:
    def test_every_reason_code_is_documented(self) -> None:
        """docs/probe.md has a row for every reason code of the model."""
        text = DOCS.read_text()
        documented = set(re.findall(r"^\| `([a-z-]+)` \|", text, flags=re.MULTILINE))
        assert {r.value for r in Reason} <= documented

    def test_every_rule_is_documented(self) -> None:
        """docs/probe.md explains every rule."""
        text = DOCS.read_text()
        for rule in Rule:
            assert f"| `{rule.value}` |" in text

    def test_exit_codes_are_documented(self) -> None:
        """The exit codes are part of the contract."""
        text = DOCS.read_text()
        for code in ("**0**", "**1**", "**2**"):
            assert code in text
