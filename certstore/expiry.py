"""Which certificates of the trust state expire soon (the expiry watch), without I/O:
the certificates and the time to judge at are arguments."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from certstore.errors import ValidationError
from certstore.model import Certificate
from certstore.store import ExpiringItem

MAX_WINDOW_DAYS = 36500


def check_window(days: object) -> int:
    if type(days) is not int or not 0 <= days <= MAX_WINDOW_DAYS:
        raise ValidationError(
            "days", f"The window must be a whole number of days from 0 to {MAX_WINDOW_DAYS}."
        )
    return days


def expiring_items(
    certificates: Iterable[tuple[str, Certificate, str]], *, now: datetime, days: int
) -> tuple[ExpiringItem, ...]:
    """The (role, certificate, ref) whose ``not_after`` falls within ``days`` of ``now``
    and is not yet past, soonest first. An already expired certificate is not listed."""
    horizon = now + timedelta(days=days)
    items = [
        ExpiringItem(
            role=role,
            certificate=cert,
            not_after=cert.not_after,
            days_left=int((cert.not_after - now).total_seconds() // 86400),
            ref=ref,
        )
        for role, cert, ref in certificates
        if now <= cert.not_after <= horizon
    ]
    return tuple(sorted(items, key=lambda i: (i.not_after, i.role, i.ref)))
