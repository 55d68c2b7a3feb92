"""The store's backend-free rules (certstore.recording, .checks, .expiry and the
snapshot patch): every backend records, checks and bounds the trust state with these."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certstore import checks, recording
from certstore.errors import ValidationError
from certstore.expiry import check_window, expiring_items
from certstore.model import (
    Certificate,
    Finding,
    Peer,
    PinDecision,
    PinMatch,
    Reason,
    RejectedChain,
    Rule,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
    Verdict,
    VerdictKind,
)
from certstore.revocation import RevocationSource
from certstore.snapshot import TrustSnapshot, patch_trust
from certstore.store import PinRequest
from certstore.validation import (
    MAX_RECORDED_CHAIN_BYTES,
    MAX_RECORDED_CHAIN_CERTS,
    MAX_REJECTED_COUNT,
)
from tests.pki import CertFactory

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PKI = CertFactory(now=NOW, organization=None)
PEER = Peer(host="sip.example.net", port=5061, transport=Transport.SIPS, sni="sip.example.net")
# DER sizes from about 400 bytes to about 30 KiB: some chains fit the byte bound, some not.
SAN_COUNTS = (0, 1, 10, 100, 400, 900, 1400)


@cache
def sized(index: int) -> Certificate:
    """A certificate of the index-th size (several of each size differ by name)."""
    names = SAN_COUNTS[index % len(SAN_COUNTS)]
    cn = f"c{index}.example"
    dns = (cn, *(f"n{k}.{cn}" for k in range(names)))
    return PKI.leaf(None, cn=cn, dns=dns).model


chains = st.lists(st.integers(0, 3 * len(SAN_COUNTS) - 1), min_size=1, max_size=16).map(
    lambda picks: tuple(sized(i) for i in picks)
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
reasons = st.lists(st.sampled_from(list(Reason)), min_size=1, max_size=4, unique=True)


def verdict(*found: Reason, rule: Rule = Rule.UNTRUSTED) -> Verdict:
    return Verdict(
        verdict=VerdictKind.ACCEPT if rule is Rule.ACCEPT_ALL else VerdictKind.REJECT,
        rule=rule,
        findings=tuple(Finding(reason=r, message=f"{r.value}.", depth=0) for r in found),
        leaf_fingerprint=None,
    )


class TestBoundChain:
    @settings(max_examples=200, deadline=None)
    @given(chain=chains)
    def test_keeps_the_longest_prefix_within_the_bounds(
        self, chain: tuple[Certificate, ...]
    ) -> None:
        """The leaf always; then certificates in order while at most 10 and 64 KiB fit;
        the first that does not fit ends the recorded chain."""
        kept = recording.bound_chain(chain)
        assert kept == chain[: len(kept)] and kept[0] == chain[0]
        assert len(kept) <= MAX_RECORDED_CHAIN_CERTS
        size = sum(len(c.der) for c in kept)
        assert len(kept) == 1 or size <= MAX_RECORDED_CHAIN_BYTES
        if len(kept) < len(chain):
            nxt = chain[len(kept)]
            assert (
                len(kept) == MAX_RECORDED_CHAIN_CERTS
                or size + len(nxt.der) > MAX_RECORDED_CHAIN_BYTES
            )

    def test_a_huge_leaf_is_kept_alone(self) -> None:
        """A leaf bigger than the byte bound is still recorded, without what follows."""
        cn = "huge.example"
        huge = PKI.leaf(None, cn=cn, dns=[cn, *(f"n{k}.{cn}" for k in range(4000))]).model
        assert len(huge.der) > MAX_RECORDED_CHAIN_BYTES
        assert recording.bound_chain((huge, sized(0), sized(1))) == (huge,)

    def test_fifteen_small_certificates_keep_ten(self) -> None:
        chain = tuple(sized(7 * k) for k in range(3)) * 5
        assert recording.bound_chain(chain) == chain[:MAX_RECORDED_CHAIN_CERTS]

    def test_empty_chain_is_refused(self) -> None:
        with pytest.raises(ValueError, match="leaf"):
            recording.bound_chain(())


fingerprints = st.lists(st.text("0123456789abcdef", min_size=64, max_size=64), max_size=5)


class TestChainKey:
    @given(a=fingerprints, b=fingerprints)
    def test_same_certificates_in_the_same_order_are_one_entry(
        self, a: list[str], b: list[str]
    ) -> None:
        """The dedup key is equal exactly when the fingerprint sequences are."""
        assert (recording.chain_key(a) == recording.chain_key(b)) == (a == b)

    def test_order_matters_and_the_form_is_hex(self) -> None:
        key = recording.chain_key(["a" * 64, "b" * 64])
        assert key != recording.chain_key(["b" * 64, "a" * 64])
        assert len(key) == 64 and int(key, 16) >= 0


class TestSighting:
    @given(chain=chains, seen=reasons, at=times)
    def test_key_is_that_of_the_recorded_part(
        self, chain: tuple[Certificate, ...], seen: list[Reason], at: datetime
    ) -> None:
        """Chains that differ only beyond the bounds are the same entry."""
        made = recording.sighting(verdict(*seen), chain, PEER, at, address=None, previous=None)
        assert made.chain == recording.bound_chain(chain)
        assert made.key == recording.chain_key([c.fingerprint for c in made.chain])
        assert made.reasons == tuple(seen) and made.at == at and not made.overridden

    def test_peer_text_is_shortened_and_the_destination_is_not(self) -> None:
        long_host = "h" * 300 + ".example"
        peer = Peer(host=long_host, port=5061, transport=Transport.SIPS, sni="s" * 300)
        made = recording.sighting(
            verdict(Reason.UNKNOWN_ISSUER),
            (sized(0),),
            peer,
            NOW,
            address="a" * 300,
            previous=None,
        )
        assert made.peer.host == long_host[: recording.MAX_PEER_TEXT]
        assert made.peer.sni == "s" * recording.MAX_PEER_TEXT
        assert made.address == "a" * recording.MAX_PEER_TEXT
        assert made.destination == peer.destination

    def test_accept_all_with_findings_is_overridden(self) -> None:
        made = recording.sighting(
            verdict(Reason.EXPIRED, rule=Rule.ACCEPT_ALL),
            (sized(0),),
            PEER,
            NOW,
            address=None,
            previous=None,
        )
        assert made.overridden

    @pytest.mark.parametrize(
        ("found", "previous", "needed"),
        [
            ((Reason.KEY_CHANGED,), None, True),
            ((Reason.UNKNOWN_ISSUER,), None, False),
            ((Reason.KEY_CHANGED,), "given", False),
        ],
    )
    def test_key_change_looks_up_the_first_use_certificate(
        self, found: tuple[Reason, ...], previous: str | None, needed: bool
    ) -> None:
        """Only a changed key without the certificate seen before needs the store's."""
        base = verdict(*found)
        if previous:
            base = Verdict(
                verdict=base.verdict,
                rule=base.rule,
                findings=base.findings,
                leaf_fingerprint=None,
                previous=sized(1),
            )
        assert recording.needs_first_use_certificate(base) is needed


def _sighting(
    at: datetime, *, previous: Certificate | None, address: str | None
) -> recording.Sighting:
    return recording.sighting(
        verdict(Reason.UNKNOWN_ISSUER), (sized(0),), PEER, at, address=address, previous=previous
    )


class TestRepeat:
    @given(
        first=times,
        last=times,
        at=times,
        count=st.integers(1, MAX_REJECTED_COUNT),
        old_previous=st.booleans(),
        new_previous=st.booleans(),
        old_address=st.none() | st.just("192.0.2.1:5061"),
        new_address=st.none() | st.just("192.0.2.2:5061"),
    )
    def test_merge(
        self,
        first: datetime,
        last: datetime,
        at: datetime,
        count: int,
        old_previous: bool,
        new_previous: bool,
        old_address: str | None,
        new_address: str | None,
    ) -> None:
        """Counted once more (saturating), last seen never goes back, first seen and id
        stay, what the new sighting knows wins and what it does not know is kept."""
        existing = recording.Recorded(
            id=7,
            first_seen=first,
            last_seen=last,
            count=count,
            previous=sized(1) if old_previous else None,
            address=old_address,
        )
        seen = _sighting(at, previous=sized(2) if new_previous else None, address=new_address)
        entry = recording.repeat_entry(existing, seen)
        assert entry.id == 7 and entry.first_seen == first
        assert entry.last_seen == max(last, at)
        assert entry.count == min(count + 1, MAX_REJECTED_COUNT)
        assert entry.previous == (seen.previous or existing.previous)
        assert entry.address == (new_address or old_address)
        assert (entry.chain, entry.reasons, entry.peer) == (seen.chain, seen.reasons, seen.peer)

    def test_first_entry(self) -> None:
        seen = _sighting(NOW, previous=None, address="192.0.2.1:5061")
        entry = recording.first_entry(3, seen)
        assert (entry.id, entry.count, entry.first_seen, entry.last_seen) == (3, 1, NOW, NOW)
        assert entry.address == "192.0.2.1:5061"
        assert entry.seen_by == ()
        named = recording.first_entry(3, replace(seen, gateway="site-a"))
        assert named.seen_by == ("site-a",)

    @given(
        before=st.lists(st.sampled_from("abcdef"), unique=True, max_size=6),
        gateway=st.none() | st.sampled_from("abcdefg"),
    )
    def test_seen_by_merge(self, before: list[str], gateway: str | None) -> None:
        """The sighting's gateway joins the names once, at the end; the order of first
        sightings stays; a sighting of no named gateway changes nothing."""
        existing = recording.Recorded(
            id=7,
            first_seen=NOW,
            last_seen=NOW,
            count=1,
            previous=None,
            address=None,
            seen_by=tuple(before),
        )
        seen = replace(_sighting(NOW, previous=None, address=None), gateway=gateway)
        entry = recording.repeat_entry(existing, seen)
        expected = before if gateway is None or gateway in before else [*before, gateway]
        assert entry.seen_by == tuple(expected)

    def test_seen_by_is_bounded(self) -> None:
        full = tuple(f"gw-{n}" for n in range(recording.MAX_SEEN_BY))
        assert recording.merged_seen_by(full, "one-more") == full
        assert recording.merged_seen_by(full[:-1], "one-more") == (*full[:-1], "one-more")

    def test_gateway_name_is_shortened(self) -> None:
        long_name = "g" * (recording.MAX_PEER_TEXT + 9)
        seen = recording.sighting(
            verdict(Reason.UNKNOWN_ISSUER),
            (sized(0),),
            PEER,
            NOW,
            address=None,
            previous=None,
            gateway=long_name,
        )
        assert seen.gateway == long_name[: recording.MAX_PEER_TEXT]


def _rejected(entry_id: int, last_seen: datetime) -> RejectedChain:
    return RejectedChain(
        id=entry_id,
        chain=(sized(0),),
        reasons=(Reason.UNKNOWN_ISSUER,),
        peer=PEER,
        first_seen=last_seen,
        last_seen=last_seen,
        count=1,
        overridden=False,
    )


class TestListBounds:
    @given(
        seen=st.lists(st.integers(0, 20), max_size=30),
        limit=st.integers(1, 25),
    )
    def test_restore_keeps_the_most_recently_seen(self, seen: list[int], limit: int) -> None:
        """A restored list keeps the ``limit`` entries seen last (ties: higher id),
        oldest first: what eviction would have left."""
        entries = [_rejected(i + 1, NOW + timedelta(minutes=m)) for i, m in enumerate(seen)]
        kept = recording.kept_on_restore(entries, limit)
        assert len(kept) == min(limit, len(entries))
        order = sorted(entries, key=lambda r: (r.last_seen, r.id))
        assert kept == order[len(order) - len(kept) :]

    @pytest.mark.parametrize(("count", "limit", "out"), [(0, 1, 0), (3, 3, 0), (4, 3, 1)])
    def test_excess(self, count: int, limit: int, out: int) -> None:
        assert recording.excess(count, limit) == out


class TestFirstUsePin:
    def test_accepts_the_leaf_key_for_the_destination(self) -> None:
        leaf = sized(0)
        request = recording.first_use_pin(leaf, "sip.example.net:5061")
        assert request.decision is PinDecision.ACCEPT and request.match is PinMatch.PUBLIC_KEY
        assert request.fingerprint == leaf.spki_fingerprint
        assert request.scope == "sip.example.net:5061" and request.certificate == leaf


class TestValidatedPin:
    def request(self, **changes: object) -> PinRequest:
        values: dict[str, object] = {
            "decision": PinDecision.ACCEPT,
            "match": PinMatch.CERTIFICATE,
            "fingerprint": sized(0).fingerprint.upper(),
            "scope": "SIP.Example.net:5061",
        }
        values.update(changes)
        return PinRequest(**values)  # type: ignore[arg-type]

    def test_normal_form(self) -> None:
        valid = checks.validated_pin(self.request(), now=NOW)
        assert valid.fingerprint == sized(0).fingerprint
        assert valid.scope == "sip.example.net:5061"

    @pytest.mark.parametrize("offset", [timedelta(0), timedelta(seconds=-1)])
    def test_expiry_must_be_after_the_time_given(self, offset: timedelta) -> None:
        """The expiry is judged against ``now`` as passed, not a clock."""
        with pytest.raises(ValidationError, match="in the past"):
            checks.validated_pin(self.request(expires_at=NOW + offset), now=NOW)
        later = NOW + offset - timedelta(days=1)
        assert checks.validated_pin(self.request(expires_at=NOW + offset), now=later)

    def test_certificate_must_have_the_fingerprint(self) -> None:
        with pytest.raises(ValidationError, match="does not have"):
            checks.validated_pin(self.request(certificate=sized(1)), now=NOW)

    def test_not_a_request(self) -> None:
        with pytest.raises(ValidationError, match="PinRequest"):
            checks.validated_pin({"decision": "accept"}, now=NOW)


class TestRevocationEvictions:
    @given(
        sources=st.lists(
            st.tuples(st.sampled_from(list(RevocationSource)), st.integers(0, 50)), max_size=20
        ),
        limit=st.integers(0, 20),
    )
    def test_fetched_before_uploaded_oldest_first(
        self, sources: list[tuple[RevocationSource, int]], limit: int
    ) -> None:
        rows = [(f"k{i}", src, NOW + timedelta(hours=h)) for i, (src, h) in enumerate(sources)]
        gone = checks.revocation_evictions(rows, limit)
        assert len(gone) == max(0, len(rows) - limit)
        stay = [r for r in rows if r[0] not in gone]

        def rank(row: tuple[str, RevocationSource, datetime]) -> tuple[bool, datetime]:
            return (row[1] is RevocationSource.UPLOADED, row[2])

        assert all(rank(g) <= rank(s) for g in rows if g[0] in gone for s in stay)


class TestAuditChecks:
    @pytest.mark.parametrize("action", ["device.export", "trust.add", "csr.create"])
    def test_good_actions(self, action: str) -> None:
        assert checks.audit_action(action) == action

    @pytest.mark.parametrize("action", ["", "device", "Device.export", "a." + "b" * 100, 5])
    def test_bad_actions(self, action: object) -> None:
        with pytest.raises(ValidationError, match=r"area\.verb"):
            checks.audit_action(action)

    def test_logged_event_limits(self) -> None:
        assert checks.logged_event("t", {"a": 1}) == {"a": 1}
        with pytest.raises(ValidationError, match="target"):
            checks.logged_event("t" * 501, {})
        with pytest.raises(ValidationError, match="JSON"):
            checks.logged_event("t", {"a": object()})
        with pytest.raises(ValidationError, match="at most"):
            checks.logged_event("t", {"a": "x" * checks.MAX_AUDIT_DETAILS})


class TestExpiring:
    def test_window_bounds_and_order(self) -> None:
        soon = PKI.leaf(None, cn="soon.example", valid_days=(-1, 5)).model
        later = PKI.leaf(None, cn="later.example", valid_days=(-1, 40)).model
        gone = PKI.leaf(None, cn="gone.example", valid_days=(-10, -1)).model
        items = expiring_items(
            [("pin", later, "2"), ("trust-anchor", soon, "a"), ("device", gone, "device")],
            now=NOW,
            days=30,
        )
        assert [(i.role, i.ref, i.days_left) for i in items] == [("trust-anchor", "a", 5)]
        assert len(expiring_items([("pin", later, "2")], now=NOW, days=40)) == 1

    @pytest.mark.parametrize("days", [-1, 36501, 1.5, "7"])
    def test_bad_window(self, days: object) -> None:
        with pytest.raises(ValidationError, match="whole number"):
            check_window(days)


def _entry(index: int) -> TrustEntry:
    cert = sized(index)
    return TrustEntry(
        certificate=cert,
        kind=TrustKind.SERVER,
        source=TrustSource.UPLOADED,
        added_at=NOW,
    )


class TestPatchTrust:
    @settings(max_examples=100, deadline=None)
    @given(
        before=st.lists(st.integers(0, 20), unique=True, max_size=10),
        removed=st.sets(st.integers(0, 20)),
        added=st.lists(st.integers(0, 20), unique=True, max_size=6),
    )
    def test_patched_equals_a_full_build(
        self, before: list[int], removed: set[int], added: list[int]
    ) -> None:
        """Removing some entries and adding others (a removed one may come back, last)
        gives the trust fields a full build of the stored list gives."""
        previous = TrustSnapshot.build(
            generation=1, settings=Settings(), trust=[_entry(i) for i in before], pins=()
        )
        stored = [i for i in before if i not in removed and i not in added]
        new = [i for i in added if i not in stored]
        stored += new
        patched = patch_trust(
            previous,
            added=[_entry(i) for i in new],
            count_before=len(before),
            count=len(stored),
            present=lambda: {sized(i).fingerprint for i in stored},
        )
        full = TrustSnapshot.build(
            generation=2, settings=Settings(), trust=[_entry(i) for i in stored], pins=()
        )
        assert [e.certificate for e in patched["trust"]] == [e.certificate for e in full.trust]
        assert (
            dict(patched["trust_by_fingerprint"]).keys() == dict(full.trust_by_fingerprint).keys()
        )
        assert {
            k: [e.certificate for e in v] for k, v in patched["anchors_by_subject"].items()
        } == {k: [e.certificate for e in v] for k, v in full.anchors_by_subject.items()}
