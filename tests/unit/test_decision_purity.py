"""The trust decision and the store's rules are pure (DESIGN §2, STYLE 2 and 7): no I/O,
clock or logging."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = (
    "certstore/decision.py",
    "certstore/pathvalidation.py",
    "certstore/nameconstraints.py",
    "certstore/identity.py",
    # The store's backend-free rules: every backend records and checks with these.
    "certstore/recording.py",
    "certstore/checks.py",
    "certstore/expiry.py",
    "certstore/snapshot.py",
)

# Modules that do I/O, read clocks, log, or run event loops.
FORBIDDEN_IMPORTS = {
    "asyncio",
    "socket",
    "ssl",
    "aiohttp",
    "structlog",
    "logging",
    "time",
    "os",
    "io",
    "pathlib",
    "subprocess",
    "sqlite3",
    "threading",
    "random",
    "secrets",
    "OpenSSL",
    "gateway",
}
# Calls that read the clock or the outside world.
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "print", "input", "time", "monotonic"}


def _tree(relative: str) -> ast.Module:
    path = ROOT / relative
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("module", PURE_MODULES)
def test_no_forbidden_imports(module: str) -> None:
    """None of the decision's modules imports I/O, clock, logging or asyncio modules."""
    imported: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported, "the walk found the imports"
    assert imported & FORBIDDEN_IMPORTS == set()


@pytest.mark.parametrize("module", PURE_MODULES)
def test_no_clock_or_io_calls(module: str) -> None:
    """No call reads the clock (datetime.now, time.time) or touches files or the terminal."""
    called: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                called.add(func.attr)
            elif isinstance(func, ast.Name):
                called.add(func.id)
    assert called & FORBIDDEN_CALLS == set()


def test_checker_catches_offenders(tmp_path: Path) -> None:
    """The checks above would notice an offending module (they are not vacuous)."""
    source = "import asyncio\nfrom datetime import datetime\nx = datetime.now()\n"
    tree = ast.parse(source)
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    calls = {
        n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    assert names & FORBIDDEN_IMPORTS == {"asyncio"}
    assert calls & FORBIDDEN_CALLS == {"now"}


def test_import_pulls_in_no_event_loop_or_logging() -> None:
    """Importing the decision in a fresh interpreter loads no event loop, web or logging
    library. (``socket`` is left out: cryptography's own imports load it.)"""
    import subprocess
    import sys

    code = (
        "import sys; import certstore.decision; "
        "bad = sorted(m for m in ('asyncio', 'aiohttp', 'structlog', 'logging') "
        "if m in sys.modules); print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.stdout.strip() == ""
