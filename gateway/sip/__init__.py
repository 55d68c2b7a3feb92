"""The sans-I/O SIP message layer: parsing, serialising and stream framing.

No networking here: the relay hands bytes in and gets values and bytes out,
for every transport alike (RFC 3261 §7, §18.3, §25; RFC 5626 §4.4.1).
"""

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError, SipProtocolError
from gateway.sip.framing import (
    CONNECTION_CLOSED,
    NEED_DATA,
    KeepAlivePing,
    KeepAlivePong,
    StreamFramer,
)
from gateway.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    check_call_id,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
    parse_via_list,
    split_comma_list,
)
from gateway.sip.message import (
    COMPACT_FORMS,
    HeaderField,
    Headers,
    Message,
    Request,
    Response,
    canonical_name,
    header_key,
)
from gateway.sip.parser import parse_datagram, serialise, validate_request, validate_response
from gateway.sip.uri import SipUri, parse_sip_uri

__all__ = [
    "COMPACT_FORMS",
    "CONNECTION_CLOSED",
    "NEED_DATA",
    "CSeq",
    "HeaderField",
    "Headers",
    "KeepAlivePing",
    "KeepAlivePong",
    "LocalProtocolError",
    "Message",
    "NameAddr",
    "RemoteProtocolError",
    "Request",
    "Response",
    "SipProtocolError",
    "SipUri",
    "StreamFramer",
    "Via",
    "canonical_name",
    "check_call_id",
    "header_key",
    "parse_content_length",
    "parse_cseq",
    "parse_datagram",
    "parse_max_forwards",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_sip_uri",
    "parse_via",
    "parse_via_list",
    "serialise",
    "split_comma_list",
    "validate_request",
    "validate_response",
]
