"""Relay workers (``sip.workers`` > 1): shared-nothing SIP relay processes under the
one supervisor of ``sipsgate run``.

The gateway process keeps the admin endpoint, provisioning, the expiry watch and the
revocation fetcher; it starts N worker processes (:mod:`gateway.workers.pool`), each
a relay of its own (:mod:`gateway.workers.child`): LAN UDP and TCP sockets bound
with SO_REUSEPORT on the same addresses, its own upstream TLS flow, its own store
connection and so its own trust snapshot. Flow tokens name their worker; a request
from upstream for another worker's base station is passed to it
(:mod:`gateway.relay.handoff`). The control channel (:mod:`gateway.workers.channel`)
carries the start, reloads, metrics and status facts.
"""
