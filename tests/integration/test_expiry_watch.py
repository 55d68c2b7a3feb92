"""The expiry watch over a real store: one warning per band, and the gauge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from structlog.testing import capture_logs

from certstore.model import Actor, TrustSource
from certstore.sqlite import SqliteStore
from gateway.expiry import ExpiryWatch, band_of
from gateway.metrics import MetricsRegistry
from tests.pki import CertFactory

ACTOR = Actor(name="test", interface="cli")
START = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
PKI = CertFactory(now=START, organization=None)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_bands() -> None:
    assert [band_of(d) for d in (40, 30, 20, 14, 8, 7, 0)] == [None, 30, 30, 14, 14, 7, 7]


def test_warns_once_per_band_and_counts(tmp_path: Path) -> None:
    clock = Clock(START)
    metrics = MetricsRegistry()
    soon = PKI.ca("Expiring Provider CA", not_after=START + timedelta(days=20, hours=1))
    later = PKI.ca("Long Lived CA", not_after=START + timedelta(days=400))
    with SqliteStore(tmp_path / "sipsgate.db", clock=clock) as store:
        store.clear_trust(actor=ACTOR)  # the builtin CAs' dates would depend on the bundle
        store.add_trust([soon.model, later.model], source=TrustSource.UPLOADED, actor=ACTOR)
        watch = ExpiryWatch(store, metrics=metrics, clock=clock)

        with capture_logs() as first:
            items = watch.check()
        assert [i.certificate.fingerprint for i in items] == [soon.model.fingerprint]
        warnings = [e for e in first if e["event"] == "certificate.expiry.warning"]
        assert [(w["within_days"], w["role"]) for w in warnings] == [(30, "trust-anchor")]
        assert "Expiring Provider CA" in warnings[0]["subject"]

        with capture_logs() as again:
            watch.check()
        assert [e for e in again if e["event"] == "certificate.expiry.warning"] == []

        clock.now = START + timedelta(days=8)  # 12 days left: the 14-day band
        with capture_logs() as nearer:
            watch.check()
        assert [e["within_days"] for e in nearer if e["event"] == "certificate.expiry.warning"] == [
            14
        ]

    text = metrics.render()
    assert 'sipsgate_certificates_expiring{role="trust-anchor",within_days="14"} 1' in text
    assert 'sipsgate_certificates_expiring{role="trust-anchor",within_days="30"} 1' in text
    assert 'sipsgate_certificates_expiring{role="trust-anchor",within_days="7"} 0' in text


def test_removed_certificate_stops_counting(tmp_path: Path) -> None:
    clock = Clock(START)
    metrics = MetricsRegistry()
    soon = PKI.ca("Going Away CA", not_after=START + timedelta(days=5))
    with SqliteStore(tmp_path / "sipsgate.db", clock=clock) as store:
        store.clear_trust(actor=ACTOR)
        store.add_trust([soon.model], source=TrustSource.UPLOADED, actor=ACTOR)
        watch = ExpiryWatch(store, metrics=metrics, clock=clock)
        watch.check()
        store.remove_trust(soon.model.fingerprint, actor=ACTOR)
        assert watch.check() == ()
    assert 'within_days="7"} 0' in metrics.render()
