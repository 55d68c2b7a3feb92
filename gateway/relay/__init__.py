"""The SIP relay: base stations on UDP/TCP, the upstream over SIPS (DESIGN §9).

``proxy`` and ``transaction`` are sans-I/O (time passed in, one timer for the core);
``service.SipRelay`` is the asyncio adapter that listens on the LAN, keeps the TLS
flow to the upstream through the connector, and runs until cancelled.
"""
