"""``python -m gateway.workers --control FD``: one relay worker (started by the gateway)."""

from __future__ import annotations

import asyncio
import sys

from gateway.workers.child import serve_worker


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--control" or not argv[1].isdigit():
        print("usage: python -m gateway.workers --control FD (started by sipsgate run)")
        return 2
    try:
        return asyncio.run(serve_worker(int(argv[1])))
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
