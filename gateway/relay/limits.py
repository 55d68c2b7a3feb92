"""Per-source limits, sans-I/O: one misbehaving base station cannot starve the others.

A token bucket per source address caps the rate of messages a base station may send
(bursts allowed); the proxy core separately caps the transactions it may have in
progress. Time is passed in.
"""

from __future__ import annotations


class SourceLimiter:
    """Token buckets keyed by source host: ``rate`` messages/s, ``burst`` at once."""

    __slots__ = ("_buckets", "_last_sweep", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"A source limit needs rate > 0 and burst >= 1 ({rate}, {burst}).")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, list[float]] = {}  # host -> [tokens, last update]
        self._last_sweep = 0.0

    def allow(self, host: str, now: float) -> bool:
        """Take one token for ``host``; False when its bucket is empty."""
        bucket = self._buckets.get(host)
        if bucket is None:
            if now - self._last_sweep > 60.0:
                self._sweep(now)
            self._buckets[host] = [self.burst - 1, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1
        return True

    def _sweep(self, now: float) -> None:
        """Forget sources whose bucket has refilled (they are idle)."""
        self._last_sweep = now
        full = self.burst / self.rate
        for host in [h for h, (_, t) in self._buckets.items() if now - t > full]:
            del self._buckets[host]

    def __len__(self) -> int:
        return len(self._buckets)
