"""The rejected list and the side effects of a verdict: recording, dedupe, eviction, trust on
first use, and the admin actions trust / accept / reject / remove / clear."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certstore.errors import NotFound, ValidationError
from certstore.facade import RepositoryStore
from certstore.model import (
    FIRST_USE_ACTOR,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Reason,
    RejectedChain,
    TrustSource,
)
from certstore.store import PinRequest
from certstore.validation import MAX_RECORDED_CHAIN_CERTS
from tests.integration._store_support import (
    ADMIN,
    BASE_TIME,
    CLI,
    PEER,
    PKI,
    FakeClock,
    accept_all,
    audit_actions,
    chain_valid,
    first_use,
    last_details,
    make_chain,
    untrusted,
)
from tests.integration.store._backends import OpenStore


def record(store: RepositoryStore, chain: tuple[object, ...], **kwargs: object) -> RejectedChain:
    result = store.record_handshake(
        kwargs.get("verdict", untrusted()),  # type: ignore[arg-type]
        chain,  # type: ignore[arg-type]
        kwargs.get("peer", PEER),  # type: ignore[arg-type]
        kwargs.get("now", BASE_TIME),  # type: ignore[arg-type]
    )
    assert isinstance(result, RejectedChain)
    return result


class TestRecord:
    def test_untrusted_chain_is_recorded_whole(self, store: RepositoryStore) -> None:
        """An untrusted verdict stores the chain leaf first, its reasons and the peer."""
        chain = make_chain()
        entry = record(store, chain, verdict=untrusted(Reason.UNKNOWN_ISSUER, Reason.EXPIRED))
        assert entry.chain == chain
        assert entry.reasons == (Reason.UNKNOWN_ISSUER, Reason.EXPIRED)
        assert entry.peer == PEER
        assert (entry.count, entry.overridden) == (1, False)
        assert entry.first_seen == entry.last_seen == BASE_TIME
        assert store.get_rejected(entry.id) == entry
        assert store.list_rejected() == (entry,)
        assert audit_actions(store)[-1] == "rejected.record"

    def test_repeat_bumps_count_and_last_seen_only(self, store: RepositoryStore) -> None:
        """A repeat of the same chain is one entry: count and last_seen move, no new audit."""
        chain = make_chain()
        first = record(store, chain)
        later = BASE_TIME + timedelta(minutes=5)
        other_peer = Peer(host="10.0.0.2", port=5061, transport=PEER.transport)
        again = record(
            store,
            chain,
            verdict=untrusted(Reason.EXPIRED),
            now=later,
            peer=other_peer,
        )
        assert again.id == first.id
        assert (again.count, again.first_seen, again.last_seen) == (2, BASE_TIME, later)
        assert again.reasons == (Reason.EXPIRED,)
        assert again.peer == other_peer
        assert store.get_rejected(first.id) == again
        assert audit_actions(store).count("rejected.record") == 1

    def test_a_different_chain_is_a_new_entry(self, store: RepositoryStore) -> None:
        """Chains differing in any certificate are separate entries."""
        leaf, intermediate, root = make_chain()
        a = record(store, (leaf, intermediate, root))
        b = record(store, (leaf, intermediate))
        assert a.id != b.id
        assert len(store.list_rejected()) == 2

    def test_accept_all_with_findings_is_recorded_overridden(self, store: RepositoryStore) -> None:
        """A chain accept-all let through is recorded with overridden set."""
        entry = record(store, make_chain(), verdict=accept_all(Reason.SELF_SIGNED))
        assert entry.overridden
        assert entry.reasons == (Reason.SELF_SIGNED,)

    @pytest.mark.parametrize("verdict", [accept_all(), chain_valid()])
    def test_clean_accepts_are_not_recorded(self, store: RepositoryStore, verdict: object) -> None:
        """A valid chain, or accept-all with nothing overridden, records nothing."""
        assert store.record_handshake(verdict, make_chain(), PEER, BASE_TIME) is None  # type: ignore[arg-type]
        assert store.list_rejected() == ()

    def test_empty_chain_records_nothing(self, store: RepositoryStore) -> None:
        """A peer that sent no certificate leaves nothing to record."""
        assert store.record_handshake(untrusted(Reason.NO_CERTIFICATE), (), PEER, BASE_TIME) is None

    def test_naive_time_is_refused(self, store: RepositoryStore) -> None:
        """The time of a handshake must be aware."""
        with pytest.raises(ValidationError):
            store.record_handshake(untrusted(), make_chain(), PEER, BASE_TIME.replace(tzinfo=None))

    def test_long_chain_is_bounded(self, store: RepositoryStore) -> None:
        """A peer sending a huge chain gets only the first certificates stored."""
        chain = tuple(
            PKI.leaf(None, cn=f"c{n}.example").model for n in range(MAX_RECORDED_CHAIN_CERTS + 5)
        )
        entry = record(store, chain)
        assert entry.chain == chain[:MAX_RECORDED_CHAIN_CERTS]
        assert record(store, chain).count == 2

    def test_list_is_bounded_oldest_last_seen_evicted(self, open_store: OpenStore) -> None:
        """Beyond rejected_limit the entry seen longest ago goes first, in the same commit."""
        with open_store("small", rejected_limit=3) as small:
            chains = [(PKI.leaf(None, cn=f"evict{n}.example").model,) for n in range(5)]
            for n, chain in enumerate(chains[:3]):
                record(small, chain, now=BASE_TIME + timedelta(minutes=n))
            # Seeing chain 0 again makes chain 1 the one seen longest ago.
            record(small, chains[0], now=BASE_TIME + timedelta(minutes=10))
            record(small, chains[3], now=BASE_TIME + timedelta(minutes=11))
            assert [r.chain for r in small.list_rejected()] == [chains[3], chains[0], chains[2]]
            record(small, chains[4], now=BASE_TIME + timedelta(minutes=12))
            remaining = small.list_rejected()
            assert len(remaining) == 3
            assert [r.chain for r in remaining] == [chains[4], chains[3], chains[0]]
            assert last_details(small)["evicted"] == 1


class TestFirstUse:
    def test_first_use_creates_a_key_pin_for_the_destination(self, store: RepositoryStore) -> None:
        """A first-use verdict pins the leaf's public key to host:port, made by TOFU."""
        leaf = make_chain()[0]
        generation = store.snapshot().generation
        pin = store.record_handshake(first_use(), (leaf,), PEER, BASE_TIME)
        assert isinstance(pin, Pin)
        assert (pin.decision, pin.match) == (PinDecision.ACCEPT, PinMatch.PUBLIC_KEY)
        assert pin.fingerprint == leaf.spki_fingerprint
        assert pin.scope == PEER.destination == "sip.example.net:5061"
        assert pin.created_by == FIRST_USE_ACTOR
        assert pin.first_use
        assert pin.created_at == BASE_TIME
        snap = store.snapshot()
        assert snap.generation == generation + 1
        assert "sip.example.net:5061" in snap.first_use_scopes
        assert store.pin_certificate(pin.id) == leaf
        event = store.audit(limit=1)[0]
        assert (event.action, event.actor) == ("pin.add", FIRST_USE_ACTOR)

    def test_second_first_use_returns_the_existing_pin(self, store: RepositoryStore) -> None:
        """Two racing first-use verdicts for one destination leave one pin."""
        leaf = make_chain()[0]
        other = PKI.leaf(None, cn="sip.example.net").model
        first = store.record_handshake(first_use(), (leaf,), PEER, BASE_TIME)
        second = store.record_handshake(first_use(), (other,), PEER, BASE_TIME)
        assert second == first
        assert len(store.list_pins()) == 1

    def test_ipv6_destination(self, store: RepositoryStore) -> None:
        """An IPv6 peer's pin scope is the bracketed destination."""
        peer = Peer(host="2001:DB8::5", port=5061, transport=PEER.transport)
        pin = store.record_handshake(first_use(), make_chain(), peer, BASE_TIME)
        assert isinstance(pin, Pin)
        assert pin.scope == "[2001:db8::5]:5061" == peer.destination

    def test_key_change_keeps_the_previous_certificate(self, store: RepositoryStore) -> None:
        """A key-changed rejection stores the certificate of the first-use pin beside it."""
        original = PKI.leaf(None, cn="sip.example.net").model
        store.record_handshake(first_use(), (original,), PEER, BASE_TIME)
        impostor = PKI.leaf(None, cn="sip.example.net").model
        entry = record(store, (impostor,), verdict=untrusted(Reason.KEY_CHANGED))
        assert entry.previous == original
        assert store.get_rejected(entry.id).previous == original
        again = record(store, (impostor,), verdict=untrusted(Reason.KEY_CHANGED))
        assert again.previous == original
        assert again.count == 2

    def test_verdict_previous_wins(self, store: RepositoryStore) -> None:
        """When the decision names the previous certificate, that one is stored."""
        shown = PKI.leaf(None, cn="shown.example").model
        verdict = untrusted(Reason.KEY_CHANGED)
        object.__setattr__(verdict, "previous", shown)
        entry = record(store, (PKI.leaf(None, cn="sip.example.net").model,), verdict=verdict)
        assert entry.previous == shown

    def test_key_change_without_first_use_pin(self, store: RepositoryStore) -> None:
        """Without a first-use pin there is no previous certificate to show."""
        entry = record(store, make_chain(), verdict=untrusted(Reason.KEY_CHANGED))
        assert entry.previous is None


class TestTrustRejected:
    def test_trusts_chosen_certificates_and_drops_the_chain(self, store: RepositoryStore) -> None:
        """The chosen certificates become trusted-from-rejected and the chain leaves the list."""
        leaf, intermediate, root = make_chain()
        entry = record(store, (leaf, intermediate, root))
        result = store.trust_rejected(entry.id, [root.fingerprint.upper()], actor=ADMIN)
        assert result.added == (root,)
        assert store.get_trust(root.fingerprint).source is TrustSource.TRUSTED_FROM_REJECTED
        assert root.fingerprint in store.snapshot().trust_by_fingerprint
        with pytest.raises(NotFound):
            store.get_rejected(entry.id)
        assert audit_actions(store)[-1] == "rejected.trust"

    def test_foreign_fingerprint_is_refused_and_nothing_changes(
        self, store: RepositoryStore
    ) -> None:
        """A fingerprint that is not in the chain is refused; chain and trust list stay."""
        leaf, intermediate, root = make_chain()
        entry = record(store, (leaf, intermediate))
        before = store.list_trust()
        with pytest.raises(ValidationError) as info:
            store.trust_rejected(entry.id, [leaf.fingerprint, root.fingerprint], actor=ADMIN)
        assert info.value.field == "fingerprints"
        assert store.list_trust() == before
        assert store.get_rejected(entry.id) == entry

    @pytest.mark.parametrize("fingerprints", [[], "ab" * 32, ["nothex"]])
    def test_bad_selection_is_refused(self, store: RepositoryStore, fingerprints: object) -> None:
        """No selection, a bare string or malformed fingerprints are refused."""
        entry = record(store, make_chain())
        with pytest.raises(ValidationError):
            store.trust_rejected(entry.id, fingerprints, actor=ADMIN)  # type: ignore[arg-type]

    def test_unknown_entry(self, store: RepositoryStore) -> None:
        """Trusting from an entry that does not exist raises NotFound."""
        with pytest.raises(NotFound):
            store.trust_rejected(42, ["ab" * 32], actor=ADMIN)


class TestPinRejected:
    @pytest.mark.parametrize("decision", [PinDecision.ACCEPT, PinDecision.REJECT])
    def test_pins_the_leaf_and_drops_the_entry(
        self, store: RepositoryStore, decision: PinDecision
    ) -> None:
        """Accept and reject both pin the leaf and take the chain off the list."""
        chain = make_chain()
        entry = record(store, chain)
        pin = store.pin_rejected(entry.id, decision, actor=ADMIN, note="checked by phone")
        assert (pin.decision, pin.match, pin.fingerprint) == (
            decision,
            PinMatch.CERTIFICATE,
            chain[0].fingerprint,
        )
        assert pin.note == "checked by phone"
        assert store.list_rejected() == ()
        assert store.snapshot().pins_by_fingerprint[chain[0].fingerprint] == (pin,)
        assert store.pin_certificate(pin.id) == chain[0]
        assert audit_actions(store)[-1] == f"rejected.{decision.value}"

    def test_pin_origins_name_the_certificate_and_the_interface(
        self, store: RepositoryStore
    ) -> None:
        """Where each pin came from: a pin made from a rejected chain through the API and
        one added from the command line, each with its certificate when it is known."""
        chain = make_chain()
        from_chain = store.pin_rejected(record(store, chain).id, PinDecision.ACCEPT, actor=ADMIN)
        by_hand = store.add_pin(
            PinRequest(
                decision=PinDecision.REJECT, match=PinMatch.CERTIFICATE, fingerprint="ab" * 32
            ),
            actor=CLI,
        )
        origins = store.pin_origins()
        assert set(origins) == {from_chain.id, by_hand.id}
        assert origins[from_chain.id].certificate == chain[0]
        assert origins[from_chain.id].interface == ADMIN.interface
        assert origins[by_hand.id].certificate is None
        assert origins[by_hand.id].interface == CLI.interface

    def test_public_key_scope_and_expiry(self, store: RepositoryStore, clock: FakeClock) -> None:
        """Options apply: a public-key pin for one destination, for 7 days."""
        chain = make_chain()
        entry = record(store, chain)
        expires = clock.now + timedelta(days=7)
        pin = store.pin_rejected(
            entry.id,
            PinDecision.ACCEPT,
            actor=ADMIN,
            match=PinMatch.PUBLIC_KEY,
            scope="SIP.example.net:5061",
            expires_at=expires,
        )
        assert pin.fingerprint == chain[0].spki_fingerprint
        assert (pin.scope, pin.expires_at) == ("sip.example.net:5061", expires)

    def test_bad_option_keeps_the_entry(self, store: RepositoryStore) -> None:
        """An invalid scope is refused and the chain stays on the list."""
        entry = record(store, make_chain())
        with pytest.raises(ValidationError):
            store.pin_rejected(entry.id, PinDecision.ACCEPT, actor=ADMIN, scope="bad scope")
        assert store.get_rejected(entry.id) == entry
        assert store.list_pins() == ()

    def test_unknown_entry(self, store: RepositoryStore) -> None:
        """Pinning from an entry that does not exist raises NotFound and pins nothing."""
        with pytest.raises(NotFound):
            store.pin_rejected(7, PinDecision.REJECT, actor=ADMIN)
        assert store.list_pins() == ()


class TestRemoveRejected:
    def test_remove_one(self, store: RepositoryStore) -> None:
        """remove_rejected drops one entry and audits it; the snapshot is untouched."""
        a = record(store, make_chain("a.example"))
        b = record(store, make_chain("b.example"))
        generation = store.snapshot().generation
        store.remove_rejected(a.id, actor=ADMIN)
        assert store.list_rejected() == (b,)
        assert store.snapshot().generation == generation
        assert audit_actions(store)[-1] == "rejected.remove"
        with pytest.raises(NotFound):
            store.remove_rejected(a.id, actor=ADMIN)

    def test_clear(self, store: RepositoryStore) -> None:
        """clear_rejected empties the list and says how many went."""
        record(store, make_chain("a.example"))
        record(store, make_chain("b.example"))
        assert store.clear_rejected(actor=ADMIN) == 2
        assert store.list_rejected() == ()
        assert store.clear_rejected(actor=ADMIN) == 0
        assert audit_actions(store).count("rejected.clear") == 1
