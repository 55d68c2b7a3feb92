"""The admin endpoint's defences that are pure: throttle admission, bounded argon2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.admin.auth import (
    VERIFY_MAX_WAITING,
    AdminAuth,
    LoginThrottle,
    VerifierBusy,
    write_password,
)
from tests.doubles import ManualClock


class TestThrottleAdmission:
    def test_in_flight_attempts_count_before_they_end(self) -> None:
        """Five free attempts may be in flight at once; the sixth waits for their end."""
        throttle = LoginThrottle(ManualClock(), free_failures=5)
        admitted = [throttle.begin("10.0.0.1") for _ in range(5)]
        assert admitted == [None] * 5
        assert throttle.begin("10.0.0.1") is not None
        assert throttle.begin("10.0.0.2") is None  # another client is not affected

    def test_after_the_free_attempts_fail_the_client_is_locked(self) -> None:
        clock = ManualClock()
        throttle = LoginThrottle(clock, free_failures=3, base_seconds=10.0)
        for _ in range(3):
            assert throttle.begin("c") is None
        lockouts = [throttle.finish("c", ok=False) for _ in range(3)]
        assert lockouts[-1] == 10.0
        assert throttle.begin("c") == pytest.approx(10.0)
        clock.now += 10.5
        assert throttle.begin("c") is None  # one attempt after the lockout ...
        assert throttle.begin("c") is not None  # ... and only one at a time

    def test_success_forgets_and_cancel_counts_nothing(self) -> None:
        throttle = LoginThrottle(ManualClock(), free_failures=2)
        assert throttle.begin("c") is None
        throttle.cancel("c")
        assert throttle.begin("c") is None
        assert throttle.finish("c", ok=True) is None
        assert [throttle.begin("c"), throttle.begin("c")] == [None, None]


class TestBoundedVerification:
    async def test_argon2_checks_run_one_at_a_time_and_the_queue_is_bounded(
        self, tmp_path: Path
    ) -> None:
        write_password(tmp_path, "the right password")
        auth = AdminAuth(tmp_path, clock=ManualClock())
        running = 0
        peak = 0
        original = auth.verifier.verify

        def counting(password: str) -> bool:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                return original(password)
            finally:
                running -= 1

        auth.verifier.verify = counting  # type: ignore[method-assign]
        results = await asyncio.gather(
            *(auth.check_password(f"wrong {i}") for i in range(VERIFY_MAX_WAITING + 4)),
            return_exceptions=True,
        )
        busy = [r for r in results if isinstance(r, VerifierBusy)]
        assert len(busy) == 4
        assert [r for r in results if not isinstance(r, VerifierBusy)] == [False] * 8
        assert peak == 1

    async def test_a_verified_password_skips_the_queue(self, tmp_path: Path) -> None:
        write_password(tmp_path, "the right password")
        auth = AdminAuth(tmp_path, clock=ManualClock())
        assert await auth.check_password("the right password")
        assert auth.verifier.cached("the right password")
        assert not auth.verifier.cached("another one")
