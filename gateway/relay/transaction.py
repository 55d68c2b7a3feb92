"""SIP transactions (RFC 3261 §17, with the RFC 6026 Accepted states), sans-I/O.

Each transaction is a small state machine. Time is always an argument (``now``, in
seconds on any monotonic scale); nothing here reads a clock, sends, or sleeps. A
transaction exposes ``deadline``, the moment its next timer fires, and
:class:`TransactionTable` keeps every live transaction and answers ``get_timer()``
with the earliest deadline of all of them, so the asyncio adapter arms exactly one
timer for the whole relay (as aioquic does for a connection).

Retransmission timers (A, E, G) only run when the transaction's transport is
unreliable (UDP); on TCP and TLS the wait timers that absorb retransmissions (D, I,
J, K) are zero, as §17 says.
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
from dataclasses import dataclass
from typing import Generic, TypeVar


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerSettings:
    """T1, T2, T4 of RFC 3261 §17 and Timer C of §16.6 (seconds)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_c: float = 180.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError(f"Timers need 0 < T1 <= T2 (T1={self.t1}, T2={self.t2}).")

    @property
    def timeout(self) -> float:
        """Timers B, F, H, J (unreliable), L and M: 64*T1."""
        return 64 * self.t1


DEFAULT_TIMERS = TimerSettings()


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TimerAction(enum.Enum):
    """What the owner must do when a transaction's timer fired."""

    NONE = "none"  # nothing (the transaction re-armed itself)
    RETRANSMIT = "retransmit"  # send the request (client) or last response (server) again
    TIMEOUT = "timeout"  # no final answer in time: the client side reports 408
    NO_ACK = "no-ack"  # server INVITE: the ACK for a final response never came
    TERMINATED = "terminated"  # forget the transaction


class ResponseAction(enum.Enum):
    """What a client transaction does with a response it received."""

    PASS = "pass"  # noqa: S105  # hand it to the other side
    PASS_AND_ACK = "pass-and-ack"  # noqa: S105  # non-2xx final of an INVITE: ACK it (hop by hop), pass it
    ACK_AGAIN = "ack-again"  # a retransmitted non-2xx final: send the same ACK again
    ABSORB = "absorb"  # a retransmission the other side has already seen


class Transaction:
    """Common fields of client and server transactions."""

    __slots__ = ("_seq", "deadline", "invite", "method", "reliable", "settings", "state")

    def __init__(self, method: str, *, reliable: bool, settings: TimerSettings) -> None:
        self.method = method
        self.invite = method == "INVITE"
        self.reliable = reliable
        self.settings = settings
        self.state = State.TRYING
        self.deadline: float | None = None
        self._seq = 0  # which heap entry is current (see TransactionTable)

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def on_timer(self, now: float) -> TimerAction:
        raise NotImplementedError

    def _terminate(self) -> TimerAction:
        self.state = State.TERMINATED
        self.deadline = None
        return TimerAction.TERMINATED


class ClientTransaction(Transaction):
    """RFC 3261 §17.1: sends a request, retransmits it on UDP, matches the responses.

    INVITE: Calling → Proceeding → Accepted (2xx, Timer M) or Completed (non-2xx,
    Timer D). Non-INVITE: Trying → Proceeding → Completed (Timer K).
    """

    __slots__ = ("_interval", "_retransmit_at", "_timeout_at", "final_status")

    def __init__(
        self,
        method: str,
        *,
        reliable: bool,
        now: float,
        settings: TimerSettings = DEFAULT_TIMERS,
    ) -> None:
        super().__init__(method, reliable=reliable, settings=settings)
        self.state = State.CALLING if self.invite else State.TRYING
        self.final_status: int | None = None
        self._interval = settings.t1
        self._retransmit_at: float | None = None if reliable else now + settings.t1
        self._timeout_at: float | None = now + settings.timeout  # Timer B / F
        self._rearm()

    def _rearm(self) -> None:
        times = [t for t in (self._retransmit_at, self._timeout_at) if t is not None]
        self.deadline = min(times) if times else None

    def on_response(self, status: int, now: float) -> ResponseAction:
        state = self.state
        if state is State.TERMINATED:
            return ResponseAction.ABSORB
        if status < 200:
            if state in (State.CALLING, State.TRYING):
                self.state = State.PROCEEDING
                if self.invite:
                    # Timer A stops; Timer C (§16.6 step 11) replaces Timer B.
                    self._retransmit_at = None
                    self._timeout_at = now + self.settings.timer_c
                elif self._retransmit_at is not None:
                    self._interval = self.settings.t2
                self._rearm()
                return ResponseAction.PASS
            if state is State.PROCEEDING:
                if self.invite:
                    self._timeout_at = now + self.settings.timer_c
                    self._rearm()
                return ResponseAction.PASS
            return ResponseAction.ABSORB
        # a final response
        if self.invite:
            if 200 <= status < 300:
                if state in (State.CALLING, State.PROCEEDING, State.ACCEPTED):
                    if state is not State.ACCEPTED:
                        self.final_status = status
                        self.state = State.ACCEPTED
                        self._retransmit_at = None
                        self._timeout_at = now + self.settings.timeout  # Timer M
                        self._rearm()
                    return ResponseAction.PASS  # every 2xx goes on (RFC 6026)
                return ResponseAction.ABSORB
            if state in (State.CALLING, State.PROCEEDING):
                self.final_status = status
                self.state = State.COMPLETED
                self._retransmit_at = None
                self._timeout_at = None if self.reliable else now + 32.0  # Timer D
                if self.reliable:
                    self.state = State.TERMINATED
                self._rearm()
                return ResponseAction.PASS_AND_ACK
            if state is State.COMPLETED:
                return ResponseAction.ACK_AGAIN
            return ResponseAction.ABSORB
        if state in (State.TRYING, State.PROCEEDING):
            self.final_status = status
            self._retransmit_at = None
            if self.reliable:
                self.state = State.TERMINATED
                self._timeout_at = None
            else:
                self.state = State.COMPLETED
                self._timeout_at = now + self.settings.t4  # Timer K
            self._rearm()
            return ResponseAction.PASS
        return ResponseAction.ABSORB

    def cancel_timeout(self, now: float) -> None:
        """A CANCEL was sent for this INVITE: give the 487 at most 64*T1 more."""
        if self.state in (State.CALLING, State.PROCEEDING):
            self._timeout_at = now + self.settings.timeout
            self._rearm()

    def on_timer(self, now: float) -> TimerAction:
        if self.deadline is None or now < self.deadline:
            return TimerAction.NONE
        if self._timeout_at is not None and now >= self._timeout_at:
            state = self.state
            self._terminate()
            if state in (State.CALLING, State.TRYING, State.PROCEEDING):
                return TimerAction.TIMEOUT
            return TimerAction.TERMINATED
        assert self._retransmit_at is not None
        if self.invite:
            self._interval *= 2  # Timer A doubles without a cap
        else:
            self._interval = min(self._interval * 2, self.settings.t2)  # Timer E
        self._retransmit_at = now + self._interval
        self._rearm()
        return TimerAction.RETRANSMIT


class ServerTransaction(Transaction):
    """RFC 3261 §17.2: absorbs request retransmissions, retransmits final responses.

    INVITE: Proceeding → Accepted (2xx, Timer L) or Completed (non-2xx, Timers G and
    H) → Confirmed (ACK, Timer I). Non-INVITE: Trying → Proceeding → Completed
    (Timer J).
    """

    __slots__ = ("_interval", "_retransmit_at", "_timeout_at", "final_status", "last_response")

    def __init__(
        self,
        method: str,
        *,
        reliable: bool,
        settings: TimerSettings = DEFAULT_TIMERS,
    ) -> None:
        super().__init__(method, reliable=reliable, settings=settings)
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.final_status: int | None = None
        self.last_response: bytes | None = None
        self._interval = settings.t1
        self._retransmit_at: float | None = None
        self._timeout_at: float | None = None

    def _rearm(self) -> None:
        times = [t for t in (self._retransmit_at, self._timeout_at) if t is not None]
        self.deadline = min(times) if times else None

    def on_retransmission(self) -> bytes | None:
        """The request came again: the last response to send back, if there is one."""
        if self.state in (State.PROCEEDING, State.COMPLETED, State.TRYING):
            return self.last_response
        return None

    def on_ack(self, now: float) -> bool:
        """An ACK matched this INVITE transaction; True when it was for our final response."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._retransmit_at = None
            self._timeout_at = now + (0.0 if self.reliable else self.settings.t4)  # Timer I
            self._rearm()
            return True
        return self.state is State.CONFIRMED

    def send_response(self, status: int, data: bytes, now: float) -> bool:
        """The other side answers with ``status``; True when it is to be sent now."""
        state = self.state
        if status < 200:
            if state in (State.TRYING, State.PROCEEDING):
                self.state = State.PROCEEDING
                self.last_response = data
                return True
            return False
        if self.invite and 200 <= status < 300:
            if state is State.PROCEEDING:
                self.final_status = status
                self.state = State.ACCEPTED
                self.last_response = None
                self._timeout_at = now + self.settings.timeout  # Timer L
                self._rearm()
                return True
            return state is State.ACCEPTED  # 2xx retransmissions go through
        if state not in (State.TRYING, State.PROCEEDING):
            return False
        self.final_status = status
        self.last_response = data
        self.state = State.COMPLETED
        if self.invite:
            if not self.reliable:
                self._retransmit_at = now + self.settings.t1  # Timer G
            self._timeout_at = now + self.settings.timeout  # Timer H
        else:
            self._timeout_at = now + (0.0 if self.reliable else self.settings.timeout)  # J
        self._rearm()
        return True

    def on_timer(self, now: float) -> TimerAction:
        if self.deadline is None or now < self.deadline:
            return TimerAction.NONE
        if self._timeout_at is not None and now >= self._timeout_at:
            state = self.state
            self._terminate()
            self.last_response = None
            if state is State.COMPLETED and self.invite:
                return TimerAction.NO_ACK
            return TimerAction.TERMINATED
        self._interval = min(self._interval * 2, self.settings.t2)  # Timer G
        self._retransmit_at = now + self._interval
        self._rearm()
        return TimerAction.RETRANSMIT


_T = TypeVar("_T", bound=Transaction)

#: What a retired UDP server transaction keeps: its final response and where it was
#: sent (host, port, index of our listening socket). Plain values only, so that the
#: cyclic garbage collector stops tracking it.
AnsweredRecord = tuple[bytes, str, int, int]


class TransactionTable(Generic[_T]):
    """Live transactions by key, one heap of their deadlines, and the answered ones.

    ``schedule(tx)`` is called after anything that may have moved ``tx.deadline``;
    stale heap entries are skipped lazily, so re-arming costs one push.

    A heap entry names its transaction by key only: an entry left behind by a
    transaction that has gone (a client transaction ends long before its Timer F
    entry comes up) holds no reference to it, and entries of plain floats, ints and
    strings are not tracked by the cyclic garbage collector, whose full collections
    take time in proportion to the tracked objects.

    ``retire(key, record, until)`` is for the bulk of a relay's transactions: a
    non-INVITE server transaction on UDP that has sent its final answer does nothing
    for Timer J (64*T1) but answer retransmissions with that response. It leaves
    ``by_key`` and is kept as ``record``, a tuple of plain values (the response and
    where it went) that the collector stops tracking; at thousands of transactions a
    second, tens of thousands wait out Timer J, and as objects they made every full
    collection pause the relay for tens of milliseconds. Timer J is the same for
    every such transaction, so they expire first in, first out.
    """

    def __init__(self) -> None:
        self.by_key: dict[str, _T] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._counter = itertools.count()
        self._retired: dict[str, AnsweredRecord] = {}
        self._retired_order: collections.deque[tuple[float, str]] = collections.deque()

    def __len__(self) -> int:
        """Transactions held, live or retired."""
        return len(self.by_key) + len(self._retired)

    def __contains__(self, key: str) -> bool:
        return key in self.by_key or key in self._retired

    @property
    def live(self) -> int:
        return len(self.by_key)

    @property
    def retired(self) -> int:
        return len(self._retired)

    def get(self, key: str) -> _T | None:
        return self.by_key.get(key)

    def get_retired(self, key: str) -> AnsweredRecord | None:
        """The record a retired transaction left, until its Timer J fires."""
        return self._retired.get(key)

    def add(self, key: str, tx: _T) -> None:
        self.by_key[key] = tx
        self.schedule(key, tx)

    def schedule(self, key: str, tx: _T) -> None:
        if tx.deadline is None:
            tx._seq = -1
            if tx.terminated:
                self.discard(key, tx)
            return
        seq = next(self._counter)
        tx._seq = seq
        heapq.heappush(self._heap, (tx.deadline, seq, key))

    def discard(self, key: str, tx: _T) -> None:
        if self.by_key.get(key) is tx:
            del self.by_key[key]

    def retire(self, key: str, tx: _T, record: AnsweredRecord, until: float) -> None:
        """Replace ``tx`` by ``record`` until ``until``; its heap entries go stale."""
        if self.by_key.get(key) is tx:
            del self.by_key[key]
        tx._seq = -1
        if key in self._retired:  # a key reused within Timer J: the newer record wins
            self._retired[key] = record
            return
        self._retired[key] = record
        self._retired_order.append((until, key))

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, live or retired, or None."""
        heap = self._heap
        by_key = self.by_key
        deadline: float | None = None
        while heap:
            at, seq, key = heap[0]
            tx = by_key.get(key)
            if tx is not None and tx._seq == seq:
                deadline = at
                break
            heapq.heappop(heap)
        if self._retired_order:
            until = self._retired_order[0][0]
            if deadline is None or until < deadline:
                deadline = until
        return deadline

    def due(self, now: float) -> list[tuple[str, _T]]:
        """Pop every live transaction whose current deadline is at or before ``now``,
        and forget the retired ones whose time is up (they need nothing done)."""
        order = self._retired_order
        if order and order[0][0] <= now:
            retired = self._retired
            while order and order[0][0] <= now:
                _, key = order.popleft()
                retired.pop(key, None)
        heap = self._heap
        by_key = self.by_key
        out: list[tuple[str, _T]] = []
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            tx = by_key.get(key)
            if tx is not None and tx._seq == seq:
                tx._seq = -1
                out.append((key, tx))
        return out
