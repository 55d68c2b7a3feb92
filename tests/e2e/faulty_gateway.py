"""``sipsgate run`` with one part of the gateway made to crash (tests only).

``python -m tests.e2e.faulty_gateway run --config FILE`` runs the real gateway after
replacing the ``run()`` of the service named by ``FAULT_SERVICE`` (provisioning,
expiry, revocation, admin) with one that raises the first ``FAULT_TIMES`` times and
then does the real work: a crash as the supervisor sees one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from gateway import runtime
from gateway.admin.server import AdminServer
from gateway.cli import main
from gateway.provisioning.service import ProvisioningService

SERVICES: dict[str, type[Any]] = {
    "provisioning": ProvisioningService,
    "expiry": runtime.ExpiryService,
    "revocation": runtime.RevocationService,
    "admin": AdminServer,
}


def inject(name: str, times: int) -> None:
    cls = SERVICES[name]
    original: Callable[[Any], Coroutine[Any, Any, None]] = cls.run
    left = [times]

    async def run(self: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError(f"injected crash of the {name} service")
        await original(self)

    cls.run = run


if __name__ == "__main__":
    inject(os.environ["FAULT_SERVICE"], int(os.environ.get("FAULT_TIMES", "1")))
    sys.exit(main())
