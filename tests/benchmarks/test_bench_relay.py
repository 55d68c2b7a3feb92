"""The relay benchmark's harness works: ``make test`` runs it briefly (``BENCH_QUICK=1``),
so a broken benchmark fails here and not first in ``make bench``. The figures of a
quick run are no measurement; what is checked is that every relay carried transactions
and every figure and every process's CPU was printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.benchmarks.bench_relay import _interpolate, _spread
from tests.gateway_process import REPO

pytestmark = pytest.mark.slow


def test_relay_benchmark_runs_in_quick_mode() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "SIPSGATE_"))}
    env |= {"BENCH_QUICK": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks", "relay"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    for relay in ("kamailio", "sipsgate"):
        closed = re.search(rf"^ +{relay} +closed loop \(\d+ in flight\) +([\d,]+) tx/s", out, re.M)
        assert closed is not None, out
        assert int(closed.group(1).replace(",", "")) > 0
        assert re.search(rf"^ +{relay} +p99 +[\d.]+ ms at \d+/s \(added", out, re.M), out
        assert re.search(rf"^ +{relay} +at 2x its peak: ", out, re.M), out
    # Every measurement prints every process's CPU: the relay's, the responder's, each SIPp's.
    cpu_lines = [line for line in out.splitlines() if "CPU, cores:" in line]
    assert len(cpu_lines) == 1 + 2 * 3, out  # the direct path, then 3 loads per relay
    for line in cpu_lines[1:]:
        assert re.search(r"relay [\d.]+ \[", line), line
        assert re.search(r"responder [\d.]+ \[", line), line
        assert re.search(r"SIPp [\d.]+ \[(?:[\d.]+ ){3}[\d.]+\]", line), line  # 4 sources
    assert "supervisor" in out and "worker" in out
    assert re.search(r"against kamailio, same rounds: throughput [\d.]+ \[", out), out
    assert re.search(r"p99 at \d+/s minus kamailio's: ", out), out
    held = re.search(r"(\d+) of (\d+) registrations \((\d+) UDP, (\d+) TCP\) held", out)
    assert held is not None and held.group(1) == held.group(2), out
    assert int(held.group(3)) > 0 and int(held.group(4)) > 0, out
    assert re.search(r"RSS [\d.]+ → [\d.]+ MiB, PSS [\d.]+ → [\d.]+ MiB", out), out


def test_counts_between_sipp_rows_are_interpolated_and_held_flat_outside() -> None:
    rows = [(100.0, 0), (101.0, 1000), (102.0, 3000)]
    assert _interpolate(rows, 100.5) == 500
    assert _interpolate(rows, 101.25) == 1500
    assert _interpolate(rows, 99.0) == 0  # before the first row
    assert _interpolate(rows, 105.0) == 3000  # after the last


def test_spread_is_median_and_range() -> None:
    assert _spread([3.0, 1.0, 2.0], ".1f") == "2.0 [1.0..3.0]"
    assert _spread([], ".1f") == "-"
