"""The SIP message layer is sans-I/O: importing it pulls in no networking module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "aiohttp", "structlog"}


def test_import_graph_is_pure() -> None:
    """A fresh interpreter importing gateway.sip loads none of the forbidden modules."""
    code = (
        "import sys, json; import gateway.sip, gateway.sip.framing, gateway.sip.parser; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    loaded = set(json.loads(result.stdout))
    assert "gateway.sip" in loaded
    bad = {m for m in loaded if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"gateway.sip pulls in {sorted(bad)}"
