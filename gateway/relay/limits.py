"""Per-source limits, sans-I/O: one misbehaving base station cannot starve the others.

A token bucket per source address caps the rate of messages a base station may send
(bursts allowed); the proxy core separately caps the transactions it may have in
progress. Time is passed in.

What happens to a message over the rate (:meth:`SourceLimiter.admit`) is one rule:

- a new request other than ACK and CANCEL is answered ``503`` with ``Retry-After``
  (statelessly, before any upstream work) while the source's *answer budget* allows —
  a second, smaller bucket, so that a flood cannot make the relay send as much as it
  receives;
- everything else over the rate is dropped and counted: responses (answering them is
  not possible), ACK (it has no answer), CANCEL (the base station retransmits it, and
  a 503 would not stop the INVITE), and requests past the answer budget.

A retransmission of a transaction the core already holds is absorbed by the core (its
last answer is sent again), not refused: that is what :meth:`ProxyCore.refuse_lan`
checks before answering.
"""

from __future__ import annotations

import enum
import math

#: Methods a 503 cannot help: ACK has no answer, a CANCEL's 503 would not stop its INVITE.
_UNANSWERED = frozenset({"ACK", "CANCEL"})


class Admission(enum.Enum):
    """What to do with one message from a source (see the module's rule)."""

    RELAY = "relay"  # within the source's rate
    ANSWER = "answer"  # over the rate: answer 503 with Retry-After, statelessly
    DROP = "drop"  # over the rate and not to be answered: drop and count


def answerable(method: str | None) -> bool:
    """Whether a message over the rate may be answered: a request (``method`` is None
    for a response) other than ACK and CANCEL."""
    return method is not None and method not in _UNANSWERED


def datagram_method(data: bytes) -> str | None:
    """The method of a datagram's request line without parsing the message; None for a
    response (or nothing that looks like a request line)."""
    if data.startswith(b"SIP/"):
        return None
    end = data.find(b" ", 0, 32)
    if end <= 0:
        return None
    method = data[:end]
    # A method is a token; extension methods may carry "-", "." and the like.
    if not method.isascii() or not method.translate(None, b"-.!%*_+`'~").isalnum():
        return None
    return method.decode("ascii")


class _Buckets:
    """Token buckets keyed by host: ``rate`` tokens/s, at most ``burst`` held."""

    __slots__ = ("_buckets", "_last_sweep", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, list[float]] = {}  # host -> [tokens, last update]
        self._last_sweep = 0.0

    def take(self, host: str, now: float) -> bool:
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

    def tokens(self, host: str) -> float:
        """The tokens ``host`` held at its last update (a full bucket when unknown)."""
        bucket = self._buckets.get(host)
        return self.burst if bucket is None else bucket[0]

    def _sweep(self, now: float) -> None:
        """Forget sources whose bucket has refilled (they are idle)."""
        self._last_sweep = now
        full = self.burst / self.rate
        for host in [h for h, (_, t) in self._buckets.items() if now - t > full]:
            del self._buckets[host]

    def __len__(self) -> int:
        return len(self._buckets)


class SourceLimiter:
    """Per source host: ``rate`` messages/s, ``burst`` at once; over that, ``answers``
    503 answers/s (as many at once), beyond them silence (counted by the caller)."""

    __slots__ = ("_answers", "_messages", "answers", "burst", "rate")

    def __init__(self, rate: float, burst: float, answers: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"A source limit needs rate > 0 and burst >= 1 ({rate}, {burst}).")
        if answers < 0:
            raise ValueError(f"A source's answer budget cannot be negative ({answers}).")
        self.rate = rate
        self.burst = burst
        self.answers = answers
        self._messages = _Buckets(rate, burst)
        self._answers = _Buckets(answers, max(1.0, answers)) if answers > 0 else None

    def allow(self, host: str, now: float) -> bool:
        """Take one message token for ``host``; False when its bucket is empty."""
        return self._messages.take(host, now)

    def admit(self, host: str, now: float, method: str | None) -> Admission:
        """The rule for one message from ``host`` (``method`` None: a response)."""
        if self._messages.take(host, now):
            return Admission.RELAY
        answers = self._answers
        if answers is not None and answerable(method) and answers.take(host, now):
            return Admission.ANSWER
        return Admission.DROP

    def retry_after(self, host: str) -> int:
        """Seconds (at least 1) until ``host``'s bucket holds half its burst again: the
        Retry-After of its 503, so that it comes back with room to spare."""
        missing = self.burst / 2 - self._messages.tokens(host)
        return max(1, math.ceil(missing / self.rate))

    def __len__(self) -> int:
        return len(self._messages)
