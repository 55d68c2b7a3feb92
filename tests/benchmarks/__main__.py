"""Run every benchmark: each ``tests/benchmarks/bench_*.py`` module's ``main()``.

``make bench`` runs ``python -m tests.benchmarks``. The exit status is non-zero when
any benchmark reports a missed target (a ``main()`` returning a non-zero int).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    status = 0
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        result = module.main()
        if isinstance(result, int) and result != 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
