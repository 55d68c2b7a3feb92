"""The hand-off between relay workers (``sip.workers`` > 1).

Each worker owns the LAN flows of the base stations the kernel gave it (SO_REUSEPORT
hashes UDP by source, TCP by connection) and its own upstream TLS flow. A request
from upstream usually arrives on the flow of the worker that wrote the Path or
Record-Route it follows; when it arrives on another one, that worker passes the
message on through these sockets.

One ``AF_UNIX`` datagram socket pair per worker: the worker reads its inbox, every
worker writes to every other's outbox. The supervisor creates the pairs once and
keeps them, so a restarted worker gets the same inbox. Nothing waits: a message that
does not fit (the receiver is gone or behind) is dropped and counted, and the
upstream's retransmission or the caller's timer covers it, as for a lost datagram.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from gateway.sip.framing import DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_HEADER_SIZE

#: Kernel buffer of each socket: a few hundred SIP requests in flight to one worker.
BUFFER = 1024 * 1024
#: The largest message the framer accepts (head and body): read whole, never cut.
LARGEST = DEFAULT_MAX_HEADER_SIZE + DEFAULT_MAX_BODY_SIZE
#: Datagrams read per wake-up, so one busy peer cannot starve the event loop.
BATCH = 64


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(inbox, outbox) of one worker, non-blocking, inherited by child processes."""
    inbox, outbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (inbox, outbox):
        sock.setblocking(False)
        sock.set_inheritable(True)
    inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    outbox.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
    return inbox, outbox


class HandOffLink:
    """One worker's end: its inbox, and the outboxes of all workers (by index)."""

    def __init__(self, inbox: socket.socket, outboxes: Sequence[socket.socket]) -> None:
        self.inbox = inbox
        self.outboxes = tuple(outboxes)

    @classmethod
    def from_fds(cls, inbox: int, outboxes: Sequence[int]) -> HandOffLink:
        def adopt(fd: int) -> socket.socket:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            return sock

        return cls(adopt(inbox), [adopt(fd) for fd in outboxes])

    def send(self, worker: int, data: bytes) -> str | None:
        """Pass ``data`` to ``worker``; None when done, else why it was dropped."""
        try:
            self.outboxes[worker].send(data)
        except BlockingIOError:
            return "handoff-full"
        except OSError:  # EMSGSIZE, or the pair is gone while the gateway stops
            return "handoff-failed"
        return None

    def receive(self) -> list[bytes]:
        """What waits in the inbox (at most :data:`BATCH` datagrams)."""
        received: list[bytes] = []
        for _ in range(BATCH):
            try:
                received.append(self.inbox.recv(LARGEST))
            except OSError:  # BlockingIOError: drained
                break
        return received

    def close(self) -> None:
        for sock in (self.inbox, *self.outboxes):
            sock.close()
