"""Run every ``bench_*.py`` module's ``main()`` in this package: ``python -m tests.benchmarks``.

Give module names to run only those: ``python -m tests.benchmarks bench_tls``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys


def main(argv: list[str]) -> int:
    package = __package__ or "tests.benchmarks"
    names = sorted(
        m.name
        for m in pkgutil.iter_modules(importlib.import_module(package).__path__)
        if m.name.startswith("bench_")
    )
    wanted = [a.removesuffix(".py") for a in argv] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"no such benchmark: {', '.join(unknown)}; have {', '.join(names)}", file=sys.stderr)
        return 2
    for name in wanted:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"{package}.{name}")
        code = module.main()
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
