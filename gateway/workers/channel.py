"""The control channel between the gateway process and one relay worker.

A private ``AF_UNIX`` stream socket pair made by the gateway process; nothing else
holds either end. Each message is a tuple ``(kind, *values)``, pickled (both ends
run the same code) and sent with a 4-octet length.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config

_LENGTH = struct.Struct("!I")
#: A message larger than this is a broken peer, not a metrics snapshot.
LARGEST = 16 * 1024 * 1024

# gateway -> worker
START = "start"  # WorkerStart
RELOAD = "reload"  # Config
# worker -> gateway
READY = "ready"  # udp addresses, tcp addresses
FAILED = "failed"  # why the worker could not start
RELOADED = "reloaded"  # None, or why the new configuration was not applied
METRICS = "metrics"  # list[MetricSnapshot]
STATUS = "status"  # list of RelayStatus calls: (method, args, kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStart:
    """What one worker needs to start: who it is, the shared token key, the
    configuration (listen ports already resolved), and its hand-off sockets."""

    index: int
    workers: int
    key: bytes = field(repr=False)
    config: Config
    inbox: int  # file descriptor numbers in the worker
    outboxes: tuple[int, ...]


class ChannelClosed(Exception):
    """The other end went away."""


def encode(kind: str, *values: Any) -> bytes:
    data = pickle.dumps((kind, *values), protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def receive(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; :class:`ChannelClosed` at the end of the stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(head)
        if length > LARGEST:
            raise ChannelClosed(f"a control message of {length} octets")
        data = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ChannelClosed(str(exc)) from exc
    # The peer is this gateway's own process on a socket pair nobody else holds.
    message = pickle.loads(data)  # noqa: S301
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise ChannelClosed("a control message that is not (kind, ...)")
    return message
