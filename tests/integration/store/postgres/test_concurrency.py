"""Several gateways writing one database at once: every read-modify-write sees the
commits before it, so no update is lost."""

from __future__ import annotations

import threading
from collections.abc import Callable

from certstore.facade import RepositoryStore
from certstore.model import PinDecision, PinMatch, TrustSource
from certstore.store import PinRequest
from tests.integration._store_support import (
    ADMIN,
    BASE_TIME,
    PEER,
    PKI,
    audit_actions,
    make_chain,
    untrusted,
)
from tests.integration.store._backends import OpenStore

GATEWAYS = 4
ROUNDS = 15


def run_together(work: list[Callable[[], None]]) -> None:
    """Start every piece of work at once on its own thread; re-raise the first failure."""
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        barrier.wait(timeout=30)
        try:
            job()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    if errors:
        raise errors[0]


def test_no_lost_update_across_gateways(store: RepositoryStore, open_store: OpenStore) -> None:
    """Four gateways (their own pools) record the same rejected chain, add pins and trust
    and flip a setting at once: the chain's count is every sighting, every pin and
    certificate is there, and the generation moved once per change."""
    gateways = [open_store() for _ in range(GATEWAYS)]
    chain = make_chain()
    certs = [[PKI.ca(f"CA {g}-{n}").model for n in range(ROUNDS)] for g in range(GATEWAYS)]
    start = store.generation()

    def gateway_work(index: int) -> Callable[[], None]:
        gateway = gateways[index]

        def job() -> None:
            for n in range(ROUNDS):
                gateway.record_handshake(untrusted(), chain, PEER, BASE_TIME.replace(second=n))
                gateway.add_pin(
                    PinRequest(
                        decision=PinDecision.ACCEPT,
                        match=PinMatch.CERTIFICATE,
                        fingerprint=certs[index][n].fingerprint,
                        scope=None,
                        note=f"gateway {index} pin {n}",
                    ),
                    actor=ADMIN,
                )
                gateway.add_trust([certs[index][n]], source=TrustSource.UPLOADED, actor=ADMIN)
                gateway.update_settings({"allow_wildcards": n % 2 == 0}, actor=ADMIN)

        return job

    run_together([gateway_work(i) for i in range(GATEWAYS)])

    (entry,) = store.list_rejected()
    assert entry.count == GATEWAYS * ROUNDS
    snap = store.snapshot()
    every = {c.fingerprint for row in certs for c in row}
    assert every <= set(snap.pins_by_fingerprint)
    assert every <= set(snap.trust_by_fingerprint)
    actions = audit_actions(store)
    assert actions.count("pin.add") == actions.count("trust.add") == GATEWAYS * ROUNDS
    settings_changes = actions.count("settings.update")
    # Each pin, each certificate and each settings change bumped the generation once.
    assert snap.generation == start + 2 * GATEWAYS * ROUNDS + settings_changes
