"""The expiry watch: warn before a certificate sipsgate relies on runs out.

Trust anchors, pinned certificates and the device certificate that expire within 30,
14 or 7 days raise one warning event per certificate each time they enter a nearer
band (so a certificate 20 days from expiry warns once, again at 14 and at 7 days —
not every hour), and a gauge counts them per role and band for alerting. The admin
pages show the same list as a banner (``store.expiring``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from certstore.errors import CertStoreError
from certstore.store import CertStore, ExpiringItem
from gateway.log import get_logger
from gateway.metrics import MetricsRegistry

BANDS = (30, 14, 7)  # days; the warning bands, widest first
ROLES = ("trust-anchor", "pin", "device")
DEFAULT_INTERVAL = 3600.0


def band_of(days_left: int) -> int | None:
    """The narrowest band a certificate with ``days_left`` days falls in."""
    inside = [band for band in BANDS if days_left <= band]
    return min(inside) if inside else None


class ExpiryWatch:
    def __init__(
        self,
        store: CertStore,
        *,
        metrics: MetricsRegistry,
        clock: Callable[[], datetime],
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._warned: dict[tuple[str, str, str], int] = {}
        self._gauge = metrics.gauge(
            "sipsgate_certificates_expiring",
            "Certificates sipsgate relies on that expire within the band (days).",
            ("role", "within_days"),
        )
        self._log = get_logger(component="expiry")

    def check(self) -> tuple[ExpiringItem, ...]:
        """One pass: warn about newly nearer certificates and update the gauge."""
        items = self._store.expiring(now=self._clock(), days=max(BANDS))
        counts = {(role, band): 0 for role in ROLES for band in BANDS}
        current: dict[tuple[str, str, str], int] = {}
        for item in items:
            band = band_of(item.days_left)
            if band is None:
                continue
            for wider in BANDS:
                if band <= wider:
                    counts[(item.role, wider)] = counts.get((item.role, wider), 0) + 1
            key = (item.role, item.ref, item.certificate.fingerprint)
            current[key] = band
            if self._warned.get(key, max(BANDS) + 1) > band:
                self._log.warning(
                    "certificate.expiry.warning",
                    role=item.role,
                    ref=item.ref,
                    fingerprint=item.certificate.fingerprint,
                    subject=item.certificate.subject,
                    not_after=item.not_after.isoformat(),
                    days_left=item.days_left,
                    within_days=band,
                )
        # Forget certificates that left the window (renewed, removed): a later return warns.
        self._warned = current
        for (role, band), count in counts.items():
            self._gauge.set(count, role=role, within_days=str(band))
        return items

    async def serve(self) -> None:
        """Check at start and then every interval, until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.check)
            except CertStoreError as exc:  # a locked or busy store: try again next time
                self._log.error("certificate.expiry.check_failed", error=str(exc))
            await asyncio.sleep(self._interval)
