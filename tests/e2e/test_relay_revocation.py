"""A live SIPS flow to kamailio closed when a new CRL revokes kamailio's certificate;
the next REGISTER is answered 503 with the reason (SIPp base station, real relay)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from certstore.model import Reason
from certstore.revocation import RevocationSource, SourceKind
from tests.e2e.test_relay_sip import assert_ok, running_relay
from tests.integration.trust_env import ADMIN, make_env
from tests.pki import CertFactory
from tests.revocation_support import make_crl
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow


async def test_new_crl_closes_the_flow_and_register_gets_503_revoked(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    factory = CertFactory(now)
    root = factory.ca("sipsgate e2e revocation Root CA")
    leaf = factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,))
    env = make_env(tmp_path / "store.db")
    env.trust(root)
    try:
        with KamailioRegistrar(leaf) as kamailio:
            async with running_relay(env, kamailio) as r:
                assert_ok(await Sipp("register.xml", r.udp, service="bs1").run(), "REGISTER")
                env.store.put_revocation(
                    make_crl(root, [leaf], now=now),
                    kind=SourceKind.CRL,
                    source=RevocationSource.UPLOADED,
                    url=None,
                    actor=ADMIN,
                )
                closed = await env.connector.revalidate_and_record()
                assert len(closed) == 1
                refused = await Sipp("register_503_revoked.xml", r.udp, service="bs1").run()
                assert_ok(refused, "the REGISTER refused with 503 naming revoked")
                answered = await r.watch.wait(lambda d: d.status == 503)
                assert answered.local
        rejected = env.rejected()
        assert [e.reasons for e in rejected] == [(Reason.REVOKED,)]
        assert rejected[0].leaf.fingerprint == leaf.fingerprint
    finally:
        env.store.close()
