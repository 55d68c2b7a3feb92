"""Micro-benchmark of the SIP message layer: parse and serialise per message, in µs.

The relay's target is about 4,000 transactions per second on one core, so a
parse should stay well under 50 µs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.sip import Request, StreamFramer, parse_datagram, serialise, validate_request

REGISTER = (
    b"REGISTER sip:sip.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---7a3c2e1f0b9d8c76;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'Contact: <sip:4711@192.168.1.20:5060;transport=udp>;+sip.instance="<urn:uuid:00000000-'
    b'0000-1000-8000-0004F2A1B2C3>";reg-id=1;expires=3600\r\n'
    b'To: "Base 1" <sip:4711@sip.example.net>\r\n'
    b'From: "Base 1" <sip:4711@sip.example.net>;tag=2c5a9f11\r\n'
    b"Call-ID: NjE4ZDA3NmQ1YjQ1ZTI0YzNhMzc4NmY2ZDM1N2I4Njk.\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Expires: 3600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Supported: replaces, outbound, path\r\n"
    b"User-Agent: DECT-Base/2.1\r\n"
    b'Authorization: Digest username="4711",realm="sip.example.net",nonce="6a1f0c",'
    b'uri="sip:sip.example.net",response="9c3a2e7f5b1d4c6a8e0f2b4d6c8a0e1f",algorithm=MD5\r\n'
    b"Content-Length: 0\r\n"
    b"\r\n"
)

SDP = (
    b"v=0\r\n"
    b"o=- 3912481234 3912481234 IN IP4 192.168.1.20\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.168.1.20\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 9 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:+4930123456@sip.example.net;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-524287-1---1b2c3d4e5f607182;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:4711@192.168.1.20:5060;transport=udp>\r\n"
    b"To: <sip:+4930123456@sip.example.net;user=phone>\r\n"
    b'From: "Handset 1" <sip:4711@sip.example.net>;tag=7f3e91a0\r\n'
    b"Call-ID: ZjY0MWQ5YzI4OTJhYjE3NWQ3ZDQ4YWI1NmI0ZjA4ZTM.\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Supported: replaces, timer\r\n"
    b"Session-Expires: 1800\r\n"
    b"User-Agent: DECT-Base/2.1\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def _per_call_us(func: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            func()
        best = min(best, (time.perf_counter() - start) / rounds)
    return best * 1e6


def _framer_once(data: bytes) -> object:
    framer = StreamFramer()
    framer.receive_data(data)
    return framer.next_event()


def _bench(name: str, data: bytes, rounds: int) -> None:
    message = parse_datagram(data)
    assert isinstance(message, Request) and serialise(message) == data

    def relay_edits() -> bytes:
        msg = parse_datagram(data)
        assert isinstance(msg, Request)
        validate_request(msg)
        msg = msg.prepend_header("Via", "SIP/2.0/TLS gw.example.net;branch=z9hG4bKgw1")
        msg = msg.set_header("Max-Forwards", "69")
        return serialise(msg)

    results = {
        "parse": _per_call_us(lambda: parse_datagram(data), rounds),
        "serialise": _per_call_us(lambda: serialise(message), rounds),
        "stream": _per_call_us(lambda: _framer_once(data), rounds),
        "parse+validate+edit+serialise": _per_call_us(relay_edits, rounds),
    }
    print(
        f"sip {name:10s} ({len(data)} B): "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in results.items())
    )


def main() -> None:
    """Print parse, serialise, framing and relay-edit cost for a REGISTER and an INVITE."""
    for name, data in (("REGISTER", REGISTER), ("INVITE+SDP", INVITE)):
        _bench(name, data, rounds=5000)


if __name__ == "__main__":
    main()
