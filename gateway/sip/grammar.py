"""The SIP grammar (RFC 3261 §25.1) as regular-expression pieces, compiled once.

Every recogniser of the SIP layer builds on these: the full parsers
(``headers``, ``parser``), the message model (``message``) and the cheap line
scanner (``wire``). Names ending in ``_PIECE`` are pattern strings to compose
(``TCHAR`` is a character class without its brackets); the other upper-case
names are compiled patterns. A change here changes what every one of them accepts.
"""

from __future__ import annotations

import re

#: tchar, the token characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
TCHAR = r"A-Za-z0-9\-.!%*_+`'~"
#: token = 1*(alphanum / "-" / ...)
TOKEN_PIECE = f"[{TCHAR}]+"
#: word = 1*(token characters / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" /
#: "]" / "?" / "{" / "}") — the pieces of a Call-ID
WORD_PIECE = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
#: qdtext / quoted-pair: raw control characters excluded; a quoted-pair may escape any
#: ASCII character but CR and LF.
QUOTED_CONTENT_PIECE = r'(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*'
#: IPv6reference = "[" IPv6address "]" (loosely: the parser of the address judges it)
IPV6_REFERENCE_PIECE = r"\[[0-9A-Fa-f:.]+\]"
#: hostname / IPv4address, as letters, digits, "-" and "."
HOSTNAME_PIECE = r"[A-Za-z0-9\-.]+"
#: port = 1*DIGIT, at most five
PORT_PIECE = r"[0-9]{1,5}"
#: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_PIECE = r"[A-Za-z][A-Za-z0-9+\-.]*"
#: header parameters as stacks write them: ;name or ;name=token
HEADER_PARAMS_PIECE = f"(?:;{TOKEN_PIECE}(?:={TOKEN_PIECE})?)*"

TOKEN = re.compile(TOKEN_PIECE)
#: optional white space within a line (values are unfolded before parsing)
SWS = re.compile(r"[ \t]*")
#: quoted-string, its content (escapes still in) in group 1
QUOTED_STRING = re.compile(f'"({QUOTED_CONTENT_PIECE})"')
#: gen-value of a parameter: token / host (an IPv6 reference) / quoted-string
PARAM_VALUE = re.compile(f'{TOKEN_PIECE}|{IPV6_REFERENCE_PIECE}|"{QUOTED_CONTENT_PIECE}"')
#: the start of an absolute URI: a scheme, ":" and a character that is not white space
URI_START = re.compile(f"{SCHEME_PIECE}:[^ \\t]")
#: an absolute URI of visible characters (the Request-URI)
ABSOLUTE_URI = re.compile(f"{SCHEME_PIECE}:[\\x21-\\x7e]+")
#: the tokens of a display name, separated by white space
DISPLAY_TOKENS = re.compile(f"{TOKEN_PIECE}(?:[ \\t]+{TOKEN_PIECE})*")
#: Call-ID = word [ "@" word ]
CALL_ID = re.compile(f"{WORD_PIECE}(?:@{WORD_PIECE})?")
#: SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
#: what a Reason-Phrase may not hold: control characters but HTAB
BAD_REASON_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
