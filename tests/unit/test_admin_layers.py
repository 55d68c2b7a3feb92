"""The layers of gateway.admin: no import cycle (function-local imports included), the
pages and the API share one module of actions and never import each other, and every
module imports alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "gateway.admin"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def admin_modules(root: Path) -> dict[str, Path]:
    base = root / "gateway" / "admin"
    return {module_name(p, root): p for p in sorted(base.rglob("*.py"))}


def package_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that ``path`` imports, anywhere in it (a function-local
    import counts: it is a cycle that only shows later, at call time)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in modules:
                    found.add(child)
                elif node.module in modules:
                    found.add(node.module)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = admin_modules(root)
    return {name: package_imports(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, as the list of modules around it, or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            # A package's __init__ importing its own submodules is not a cycle.
            if target.startswith(node + "."):
                continue
            if target in on_stack:
                return [*stack[stack.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    """The checker itself: the shape gateway.admin had (app imports api inside a
    function, api imports app) is found."""
    graph = {
        "gateway.admin.app": {"gateway.admin.api"},
        "gateway.admin.api": {"gateway.admin.app"},
    }
    assert find_cycle(graph) == ["gateway.admin.api", "gateway.admin.app", "gateway.admin.api"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_gateway_admin_has_no_import_cycle() -> None:
    graph = import_graph(ROOT)
    assert len(graph) >= 20, "the walk found the package"
    assert find_cycle(graph) is None


def test_pages_and_api_share_actions_and_never_import_each_other() -> None:
    graph = import_graph(ROOT)
    api = {m for m in graph if m.startswith(f"{PACKAGE}.api")}
    pages = {m for m in graph if m.startswith(f"{PACKAGE}.pages")}
    assert api and pages
    for name in api:
        assert not graph[name] & pages, f"{name} imports a page module"
    for name in pages:
        assert not graph[name] & api, f"{name} imports an API module"
    # Only the factory assembles them; nothing below imports them.
    for name, targets in graph.items():
        if name in api | pages or name == f"{PACKAGE}.app":
            continue
        assert not targets & (api | pages), f"{name} imports a route module"
    # The actions and everything under them know nothing of HTTP handlers or pages.
    for low in ("state", "errors", "parsing", "actions"):
        module = f"{PACKAGE}.{low}"
        assert not graph[module] & {f"{PACKAGE}.{m}" for m in ("app", "middleware", "html")}
    writers = {m for m in api | pages if f"{PACKAGE}.actions" in graph[m]}
    assert f"{PACKAGE}.api.trust" in writers and f"{PACKAGE}.pages.trust" in writers


def test_store_writes_happen_only_in_actions() -> None:
    """Each write is done (and audited) in one place: no route module calls a store or
    device-service method that changes something."""
    writes = (
        "add_trust",
        "remove_trust",
        "clear_trust",
        "restore_defaults",
        "add_pin",
        "remove_pin",
        "pin_rejected",
        "trust_rejected",
        "remove_rejected",
        "clear_rejected",
        "update_settings",
        "import_backup",
        "log_event",
        "self_signed",
        "renew",
        "install",
        "create_csr",
        "remove_csr",
        "trust_device_chain",
        "put_revocation",
        "remove_uploaded_crl",
    )
    offenders: list[str] = []
    for name, path in admin_modules(ROOT).items():
        if not name.startswith((f"{PACKAGE}.api", f"{PACKAGE}.pages")):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in writes:
                base = node.value
                # actions.remove_trust(...) is the one place; store.remove_trust is not.
                if not (isinstance(base, ast.Name) and base.id == "actions"):
                    offenders.append(f"{name}: .{node.attr}")
    assert offenders == []


@pytest.mark.parametrize("module", sorted(admin_modules(ROOT)))
def test_each_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
