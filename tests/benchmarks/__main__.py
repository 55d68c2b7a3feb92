"""Run every ``tests/benchmarks/bench_*.py`` module's ``main()``."""

from __future__ import annotations

import importlib
from pathlib import Path


def main() -> None:
    """Import each benchmark module in name order and call its ``main()``."""
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        module.main()


if __name__ == "__main__":
    main()
