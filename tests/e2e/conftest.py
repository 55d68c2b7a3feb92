"""End-to-end fixtures: SIPp processes a failed test left behind are killed by PID."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sip_peers import Sipp


@pytest.fixture(autouse=True)
async def _sipp_cleanup() -> AsyncIterator[None]:
    yield
    await Sipp.cleanup()
