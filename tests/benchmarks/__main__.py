"""Run the benchmarks: each ``tests/benchmarks/bench_*.py`` module's ``main()``.

``make bench`` runs ``python -m tests.benchmarks``; ``python -m tests.benchmarks sip tls``
runs only ``bench_sip`` and ``bench_tls``. The exit status is non-zero when any
benchmark reports a missed target (a ``main()`` returning a non-zero int).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    wanted = {f"bench_{name.removeprefix('bench_')}" for name in argv}
    status = 0
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not info.name.startswith("bench_") or (wanted and info.name not in wanted):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        result = module.main()
        if isinstance(result, int) and result != 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
