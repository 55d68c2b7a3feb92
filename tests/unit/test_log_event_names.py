"""Every log event in the code is named ``area.noun.verb`` (STYLE 10)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "critical", "exception", "msg"}
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*){2,}$")


def log_events(path: Path) -> list[tuple[int, str]]:
    """(line, event) of every ``<logger>.<level>("literal", ...)`` call in ``path``."""
    events = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and "log" in ast.unparse(node.func.value).lower()
        ):
            events.append((node.lineno, node.args[0].value))
    return events


def test_event_names() -> None:
    found = {
        f"{path.relative_to(ROOT)}:{line}": event
        for package in ("gateway", "certstore")
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, event in log_events(path)
    }
    assert len(found) > 30, "the walk finds the log calls"
    bad = {where: event for where, event in found.items() if not EVENT_NAME.match(event)}
    assert bad == {}
