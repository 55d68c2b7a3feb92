"""Package boundaries from DESIGN §2: certstore never imports gateway."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_certstore_never_imports_gateway() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == "gateway"
        )
        for path in (ROOT / "certstore").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) >= 5, "the walk found the package"


# The store's facade and everything it is built from know no storage engine: a backend is
# a set of repositories (certstore.repositories) and nothing else.
BACKEND_FREE = (
    "certstore/facade.py",
    "certstore/repositories.py",
    "certstore/certcache.py",
    "certstore/recording.py",
    "certstore/checks.py",
    "certstore/expiry.py",
    "certstore/snapshot.py",
    "certstore/store.py",
)


def test_store_facade_and_rules_import_no_backend() -> None:
    offenders = {
        module: sorted(
            m
            for m in imported_modules(ROOT / module)
            if m.split(".")[0] in {"sqlite3", "psycopg"} or m.startswith("certstore.sqlite")
        )
        for module in BACKEND_FREE
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert imported_modules(ROOT / "certstore/sqlite/connection.py") >= {"sqlite3"}


def test_store_modules_import_without_cycles() -> None:
    graph = module_graph("certstore")
    assert len(graph) >= 20, "the walk found the package"
    assert cycle_in(graph) is None


def module_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports at run time (``from pkg import mod``
    names mod; imports under ``if TYPE_CHECKING:`` are for the type checker only)."""
    base = ROOT / package.replace(".", "/")
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in base.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else node.module for t in targets]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path, or None."""
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node) :], node]
        if node in done:
            return None
        stack.append(node)
        for nxt in sorted(graph[node]):
            found = visit(nxt)
            if found:
                return found
        stack.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_relay_and_sip_modules_import_without_cycles() -> None:
    """The relay core and the SIP layer are layered (outputs, settings, routing and
    registrar below state, fast path and core dispatch); no module imports back."""
    for package in ("gateway.relay", "gateway.sip"):
        graph = module_graph(package)
        assert len(graph) >= 8, "the walk found the package"
        assert cycle_in(graph) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None
