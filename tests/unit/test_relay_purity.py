"""The relay's core is sans-I/O: importing it pulls in no networking module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "aiohttp", "structlog"}


def test_relay_core_import_graph_is_pure() -> None:
    """The transaction core, the proxy and its modules, flow tokens and limits load no
    I/O module."""
    code = (
        "import sys, json; import gateway.relay.proxy, gateway.relay.transaction, "
        "gateway.relay.flows, gateway.relay.limits, gateway.relay.outputs, "
        "gateway.relay.settings, gateway.relay.state, gateway.relay.routing, "
        "gateway.relay.registrar, gateway.relay.fastpath; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
        env=env,
    )  # fmt: skip
    loaded = set(json.loads(result.stdout))
    assert "gateway.relay.proxy" in loaded
    bad = {m for m in loaded if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"the relay core pulls in {sorted(bad)}"
