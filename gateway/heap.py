"""The process's garbage-collection policy, set by ``sipsgate run`` once it has started.

CPython's full (generation 2) collections walk every object the cyclic collector
tracks, and most of those, once the gateway has started, live as long as the process:
modules, classes, functions, the configuration, TLS contexts, the trust snapshot. With
the relay carrying thousands of transactions a second, a full collection came every
few seconds and held the event loop for 20-50 ms, and every SIP message arriving
meanwhile waited behind it (the relay's p99 latency was these pauses).

So, once every part has started: collect what start-up left, then freeze the rest
(:func:`gc.freeze`), so that later full collections look only at what was allocated
since. Frozen objects are still freed by reference counting as usual, but a cycle
among them that becomes garbage would stay: a reload that replaces a part (the relay,
when ``[sip]`` changed) leaves the old one behind that way. So after each reload the
heap is settled again: unfrozen, collected (the old part goes), frozen. That costs
one full collection, at a moment an administrator chose.

The library parts (the relay, the admin app) never do this themselves: it is a
decision for the process, and a test process running many of them must not have it.
"""

from __future__ import annotations

import gc


def settle_heap() -> int:
    """Unfreeze, collect, then freeze every object alive now; returns how many were
    frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
