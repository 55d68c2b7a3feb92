"""The provisioning document: bytes in, typed and checked entries out. No I/O.

Two formats carry the same parameter names (``docs/provisioning.md``):

- XML: ``<param name="..." value="..."/>`` elements anywhere under any root element,
  and ``<certificate>`` elements holding PEM certificates to trust. Parsed with
  ``defusedxml``'s SAX reader with DTDs forbidden outright, so entity expansion
  ("billion laughs") and external entities are refused before anything is read.
- Lines: ``name=value``, with ``#`` and ``;`` comment lines, and PEM certificate
  blocks between the lines.

:func:`parse_document` raises :class:`DocumentError` when the document cannot be read
at all (too large, not UTF-8, not well-formed, a DTD, too many entries). Everything
else is collected, never only the first problem: entries with a wrong value, a
duplicate name with conflicting values, a certificate that does not parse become
``problems``; names sipsgate does not know become ``unknown``. A document with any
problem is applied not at all (``gateway.provisioning.apply``).

Secret values (the HTTP digest password) are never part of a message or a ``repr``.
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.sax
import xml.sax.handler
import xml.sax.xmlreader
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from certstore.errors import CertStoreError
from certstore.model import HTTP_AUTH_MAX_LENGTH, Certificate
from certstore.x509 import load_certificates
from gateway.config import config_keys, parse_config_text
from gateway.errors import ConfigError
from gateway.provisioning.errors import DocumentError, DocumentTooLarge

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_ENTRIES = 2000
MAX_DEPTH = 32
MAX_NAME_LENGTH = 200
MAX_VALUE_LENGTH = 4096
MAX_CERTIFICATE_TEXT = 256 * 1024

# The TLS versions the connector negotiates (gateway.tls.engine.TLS_VERSIONS; a test
# keeps the two equal without this pure module importing the engine).
TLS_VERSIONS = ("1.2", "1.3")

_UTF8_BOM = b"\xef\xbb\xbf"
_XML_DECLARATION = re.compile(rb"^\s*<\?xml\b[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_PEM_BEGIN = "-----BEGIN "
_PEM_END = "-----END "

REDACTED = "[redacted]"


class DocumentFormat(StrEnum):
    XML = "xml"
    LINES = "lines"


class ParameterScope(StrEnum):
    """Where a parameter lands: a store setting, applied at once, or a config key."""

    STORE = "store"
    CONFIG = "config"


# -- the parameters sipsgate knows --------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ParameterSpec:
    """One parameter name a document may carry, what it sets and how it is typed."""

    name: str
    scope: ParameterScope
    target: str  # the store setting, or the config key path
    type_name: str  # for docs and messages
    default: str  # as written in a document
    effect: str  # one sentence for the reference
    secret: bool = False
    parse: Callable[[str], object] = field(repr=False, compare=False)


def _revocation_mode(text: str) -> str:
    value = text.strip().lower()
    if value not in ("off", "soft-fail", "hard-fail"):
        raise ValueError("must be off, soft-fail or hard-fail")
    return value


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError("must be 0 or 1 (true or false are accepted too)")


def _credential(*, secret: bool, username: bool) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) > HTTP_AUTH_MAX_LENGTH:
            raise ValueError(
                f"is {len(text)} characters long; at most {HTTP_AUTH_MAX_LENGTH} are allowed"
            )
        if not text.isprintable():
            raise ValueError("contains control or non-printable characters; use printable text")
        if username and ":" in text:
            raise ValueError("contains ':', which HTTP digest user names cannot hold")
        return text

    return parse


_STORE_PARAMETERS = (
    ParameterSpec(
        name="SystemSettings.global.Security_Certificates_AcceptAllCertificates",
        scope=ParameterScope.STORE,
        target="accept_all_certificates",
        type_name="0/1",
        default="0",
        effect="Accept every server certificate (rule accept-all); the chains it lets "
        "through are still recorded in the rejected list, flagged overridden.",
        parse=_boolean,
    ),
    ParameterSpec(
        name="Security.global.HTTPAuthUsername",
        scope=ParameterScope.STORE,
        target="http_auth_username",
        type_name=f"text, at most {HTTP_AUTH_MAX_LENGTH} characters, no ':'",
        default='""',
        effect="User name for HTTP digest authentication with the provisioning server; "
        "empty turns authentication off.",
        parse=_credential(secret=False, username=True),
    ),
    ParameterSpec(
        name="Security.global.HTTPAuthPassword",
        scope=ParameterScope.STORE,
        target="http_auth_password",
        type_name=f"text, at most {HTTP_AUTH_MAX_LENGTH} characters",
        default='""',
        effect="Password for HTTP digest authentication; write-only, never shown, "
        "logged or returned.",
        secret=True,
        parse=_credential(secret=True, username=False),
    ),
    ParameterSpec(
        name="Sipsgate.security.trust_on_first_use",
        scope=ParameterScope.STORE,
        target="trust_on_first_use",
        type_name="0/1",
        default="0",
        effect="Accept the first chain seen from a destination and pin its public key "
        "to that destination (rule first-use).",
        parse=_boolean,
    ),
    ParameterSpec(
        name="Sipsgate.security.allow_wildcards",
        scope=ParameterScope.STORE,
        target="allow_wildcards",
        type_name="0/1",
        default="0",
        effect="Let a wildcard DNS name match a SIP domain (RFC 5922 forbids it; off by default).",
        parse=_boolean,
    ),
    ParameterSpec(
        name="Sipsgate.security.close_flows_on_revoke",
        scope=ParameterScope.STORE,
        target="close_flows_on_revoke",
        type_name="0/1",
        default="1",
        effect="Close live TLS flows whose peer would now be rejected when trust is withdrawn.",
        parse=_boolean,
    ),
    ParameterSpec(
        name="Sipsgate.security.revocation",
        scope=ParameterScope.STORE,
        target="revocation",
        type_name="off, soft-fail or hard-fail",
        default="soft-fail",
        effect="Revocation checking (stapled OCSP, OCSP and CRLs fetched or uploaded): "
        "soft-fail never blocks a call on missing information; hard-fail rejects a "
        "certificate whose status is unknown (reason revocation-unknown).",
        parse=_revocation_mode,
    ),
)


_TYPE_NAMES = {
    "a string": "text",
    "a list of a string": "comma-separated list",
    "true or false": "0/1",
    "an integer": "integer",
    'a duration string like "30s"': 'duration ("30s", "5m", "1h")',
}


def _config_type_name(path: str, type_name: str) -> str:
    if path == "tls.min_version":
        return " or ".join(TLS_VERSIONS)
    return _TYPE_NAMES.get(type_name, type_name)


def _config_value_parser(path: str, type_name: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            value = parse_config_text(path, text)
        except ConfigError:
            raise ValueError(f"must be {type_name}") from None
        if path == "tls.min_version" and value not in TLS_VERSIONS:
            raise ValueError(f"must be {type_name}")
        return value

    return parse


def _config_default(value: object) -> str:
    if value in ("", ()):
        return '""'
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}s"
    return str(value)


_CONFIG_PARAMETERS = tuple(
    ParameterSpec(
        name=f"Sipsgate.{key.path}",
        scope=ParameterScope.CONFIG,
        target=key.path,
        type_name=_config_type_name(key.path, key.type_name),
        default=_config_default(key.default),
        effect=f"Config key {key.path}: checked and reported, not applied at run time.",
        parse=_config_value_parser(
            key.path,
            _config_type_name(key.path, key.type_name)
            if key.path == "tls.min_version"
            else key.type_name,
        ),
    )
    for key in config_keys()
)

PARAMETERS: Mapping[str, ParameterSpec] = {
    spec.name: spec for spec in (*_STORE_PARAMETERS, *_CONFIG_PARAMETERS)
}
_BY_LOWER = {name.lower(): name for name in PARAMETERS}


# -- what a parsed document holds ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingValue:
    """A store setting the document sets."""

    parameter: str
    setting: str
    value: bool | str = field(repr=False)
    secret: bool
    line: int | None

    @property
    def shown(self) -> str:
        """The value as it may be displayed (secrets redacted)."""
        if self.secret:
            return REDACTED
        if isinstance(self.value, bool):
            return "1" if self.value else "0"
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigValue:
    """A config-level parameter: checked, reported, not applied at run time."""

    parameter: str
    config_key: str
    value: object
    text: str
    line: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateEntry:
    """The certificates of one ``<certificate>`` element or PEM block, to trust."""

    index: int  # 1-based, in document order
    certificates: tuple[Certificate, ...]
    line: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownParameter:
    name: str
    line: int | None
    hint: str | None = None  # the known name it probably meant


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryProblem:
    """One entry that is wrong; ``entry`` names it as an operator would find it."""

    entry: str
    message: str
    line: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisioningDocument:
    format: DocumentFormat
    sha256: str  # of the document's bytes, to tell documents apart
    settings: tuple[SettingValue, ...] = ()
    config: tuple[ConfigValue, ...] = ()
    certificates: tuple[CertificateEntry, ...] = ()
    unknown: tuple[UnknownParameter, ...] = ()
    problems: tuple[EntryProblem, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems

    def settings_changes(self) -> dict[str, bool | str]:
        """The store settings to set, by store name."""
        return {s.setting: s.value for s in self.settings}

    def all_certificates(self) -> tuple[Certificate, ...]:
        return tuple(dict.fromkeys(c for e in self.certificates for c in e.certificates))


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RawParam:
    name: str
    value: str = field(repr=False)
    line: int | None


@dataclass(frozen=True, slots=True)
class _RawCertificate:
    text: str = field(repr=False)
    line: int | None


@dataclass
class _Raw:
    params: list[_RawParam] = field(default_factory=list)
    certificates: list[_RawCertificate] = field(default_factory=list)
    problems: list[EntryProblem] = field(default_factory=list)

    def count(self) -> int:
        return len(self.params) + len(self.certificates) + len(self.problems)

    def check_count(self, line: int | None) -> None:
        if self.count() > MAX_ENTRIES:
            raise DocumentError(
                f"The provisioning document has more than {MAX_ENTRIES} entries; nothing "
                "was applied.",
                line=line,
            )


def _at(line: int | None) -> str:
    return f" (line {line})" if line is not None else ""


def _shown_name(name: str) -> str:
    text = name if len(name) <= 80 else name[:80] + "..."
    return repr(text) if not text.isprintable() or not text else text


def parse_document(data: bytes) -> ProvisioningDocument:
    """Read a provisioning document (XML or ``name=value`` lines) and check every entry.

    Raises :class:`DocumentError` when the document cannot be read at all.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DocumentError("A provisioning document is bytes.")
    data = bytes(data)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(len(data), MAX_DOCUMENT_BYTES)
    digest = hashlib.sha256(data).hexdigest()
    body = data[len(_UTF8_BOM) :] if data.startswith(_UTF8_BOM) else data
    try:
        text = body.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise DocumentError(
            f"The provisioning document is not valid UTF-8 (byte {exc.start}, line {line}); "
            "nothing was applied. Save it as UTF-8.",
            line=line,
        ) from None
    if not text.strip():
        raise DocumentError("The provisioning document is empty; nothing was applied.")
    if text.lstrip().startswith("<"):
        fmt = DocumentFormat.XML
        raw = _read_xml(body)
    else:
        fmt = DocumentFormat.LINES
        raw = _read_lines(text)
    return _interpret(fmt, digest, raw)


class _SaxHandler(xml.sax.handler.ContentHandler):
    """Collects ``param`` and ``certificate`` elements with their line numbers."""

    def __init__(self, raw: _Raw) -> None:
        super().__init__()
        self.raw = raw
        self.depth = 0
        self.locator: xml.sax.xmlreader.Locator | None = None
        self.cert_parts: list[str] | None = None
        self.cert_size = 0
        self.cert_line: int | None = None
        self.cert_depth = 0

    def setDocumentLocator(self, locator: xml.sax.xmlreader.Locator) -> None:
        self.locator = locator

    def _line(self) -> int | None:
        return self.locator.getLineNumber() if self.locator is not None else None

    def startElement(self, name: str, attrs: Any) -> None:
        self.depth += 1
        line = self._line()
        if self.depth > MAX_DEPTH:
            raise DocumentError(
                f"The provisioning document nests elements deeper than {MAX_DEPTH} levels"
                f"{_at(line)}; nothing was applied.",
                line=line,
            )
        local = name.rpartition(":")[2]
        if self.cert_parts is not None:
            self.raw.problems.append(
                EntryProblem(
                    entry=f"certificate{_at(self.cert_line)}",
                    message=f"A <certificate> holds PEM text only, not a <{local}> element.",
                    line=line,
                )
            )
        elif local == "param":
            self._param(attrs, line)
        elif local == "certificate":
            self.cert_parts = []
            self.cert_size = 0
            self.cert_line = line
            self.cert_depth = self.depth
        self.raw.check_count(line)

    def _param(self, attrs: Any, line: int | None) -> None:
        name = attrs.get("name")
        value = attrs.get("value")
        if name is None or value is None:
            missing = " and ".join(a for a in ("name", "value") if attrs.get(a) is None)
            what = f"param {_shown_name(name)}" if name is not None else "param"
            self.raw.problems.append(
                EntryProblem(
                    entry=f"{what}{_at(line)}",
                    message=f'A <param> needs both name="..." and value="..."; {missing} '
                    "is missing.",
                    line=line,
                )
            )
            return
        self.raw.params.append(_RawParam(name, value, line))

    def characters(self, content: str) -> None:
        if self.cert_parts is None:
            return
        self.cert_size += len(content)
        if self.cert_size > MAX_CERTIFICATE_TEXT:
            raise DocumentError(
                f"A <certificate> element{_at(self.cert_line)} holds more than "
                f"{MAX_CERTIFICATE_TEXT} characters; nothing was applied.",
                line=self.cert_line,
            )
        self.cert_parts.append(content)

    def endElement(self, name: str) -> None:
        if self.cert_parts is not None and self.depth == self.cert_depth:
            self.raw.certificates.append(_RawCertificate("".join(self.cert_parts), self.cert_line))
            self.cert_parts = None
        self.depth -= 1


def _read_xml(body: bytes) -> _Raw:
    from defusedxml.common import DefusedXmlException  # type: ignore[import-untyped]
    from defusedxml.expatreader import create_parser  # type: ignore[import-untyped]

    declared = _XML_DECLARATION.match(body)
    if declared is not None and declared.group(1).decode("ascii").lower() not in _UTF8_NAMES:
        raise DocumentError(
            f"The provisioning document declares the encoding "
            f"{declared.group(1).decode('ascii')!r}; only UTF-8 is accepted. Nothing was "
            "applied."
        )
    raw = _Raw()
    handler = _SaxHandler(raw)
    parser = create_parser()
    parser.forbid_dtd = True  # no DTD at all: no entities, internal or external
    parser.forbid_entities = True
    parser.forbid_external = True
    parser.setFeature(xml.sax.handler.feature_external_ges, False)
    parser.setFeature(xml.sax.handler.feature_external_pes, False)
    parser.setContentHandler(handler)
    parser.setErrorHandler(xml.sax.handler.ErrorHandler())
    source = xml.sax.xmlreader.InputSource()
    source.setByteStream(io.BytesIO(body))
    try:
        parser.parse(source)
    except DocumentError:
        raise
    except DefusedXmlException as exc:
        line = handler._line()
        raise DocumentError(
            f"The provisioning document declares a DTD or entities{_at(line)} "
            f"({type(exc).__name__}); "
            "sipsgate refuses them (they are how entity-expansion and external-entity "
            "attacks work). Nothing was applied.",
            line=line,
        ) from None
    except xml.sax.SAXParseException as exc:
        line = exc.getLineNumber()
        raise DocumentError(
            f"The provisioning document is not well-formed XML (line {line}, column "
            f"{exc.getColumnNumber()}: {exc.getMessage()}); nothing was applied.",
            line=line,
        ) from None
    except (xml.sax.SAXException, ValueError, RecursionError) as exc:
        raise DocumentError(
            f"The provisioning document could not be read as XML ({exc}); nothing was applied."
        ) from None
    return raw


def _read_lines(text: str) -> _Raw:
    raw = _Raw()
    pem: list[str] | None = None
    pem_line = 0
    pem_size = 0
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if pem is not None:
            pem.append(stripped)
            pem_size += len(line)
            if pem_size > MAX_CERTIFICATE_TEXT:
                raise DocumentError(
                    f"The certificate block at line {pem_line} holds more than "
                    f"{MAX_CERTIFICATE_TEXT} characters; nothing was applied.",
                    line=pem_line,
                )
            if stripped.startswith(_PEM_END):
                raw.certificates.append(_RawCertificate("\n".join(pem) + "\n", pem_line))
                pem = None
            continue
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith(_PEM_BEGIN):
            pem, pem_line, pem_size = [stripped], number, len(line)
            raw.check_count(number)
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep or not name:
            shown = stripped if len(stripped) <= 60 else stripped[:60] + "..."
            raw.problems.append(
                EntryProblem(
                    entry=f"line {number}",
                    message=f"Line {number} is not name=value: {shown!r}.",
                    line=number,
                )
            )
        else:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            raw.params.append(_RawParam(name, value, number))
        raw.check_count(number)
    if pem is not None:
        raw.problems.append(
            EntryProblem(
                entry=f"certificate (line {pem_line})",
                message=f"The certificate block that starts at line {pem_line} has no "
                "-----END line.",
                line=pem_line,
            )
        )
    return raw


def _interpret(fmt: DocumentFormat, digest: str, raw: _Raw) -> ProvisioningDocument:
    problems = list(raw.problems)
    settings: list[SettingValue] = []
    config: list[ConfigValue] = []
    unknown: list[UnknownParameter] = []
    seen: dict[str, _RawParam] = {}
    for param in raw.params:
        name = param.name
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            problems.append(
                EntryProblem(
                    entry=f"param {_shown_name(name)}{_at(param.line)}",
                    message=f"A parameter name is printable text of 1 to {MAX_NAME_LENGTH} "
                    "characters.",
                    line=param.line,
                )
            )
            continue
        spec = PARAMETERS.get(name)
        entry = f"param {name}{_at(param.line)}"
        first = seen.get(name)
        if first is not None:
            if first.value != param.value:
                values = (
                    ""
                    if spec is not None and spec.secret
                    else f" ({first.value[:40]!r} and {param.value[:40]!r})"
                )
                lines = (
                    f" at lines {first.line} and {param.line}"
                    if first.line is not None and param.line is not None
                    else ""
                )
                problems.append(
                    EntryProblem(
                        entry=entry,
                        message=f"{name} is given twice{lines} with different values"
                        f"{values}; give it once.",
                        line=param.line,
                    )
                )
            continue
        seen[name] = param
        if spec is None:
            hint = _BY_LOWER.get(name.lower())
            unknown.append(UnknownParameter(name=name, line=param.line, hint=hint))
            continue
        if len(param.value) > MAX_VALUE_LENGTH:
            problems.append(
                EntryProblem(
                    entry=entry,
                    message=f"The value of {name} is {len(param.value)} characters long; "
                    f"at most {MAX_VALUE_LENGTH}.",
                    line=param.line,
                )
            )
            continue
        try:
            value = spec.parse(param.value)
        except ValueError as exc:
            shown = "" if spec.secret else f" {param.value[:60]!r}"
            problems.append(
                EntryProblem(
                    entry=entry,
                    message=f"The value{shown} of {name} {exc}.",
                    line=param.line,
                )
            )
            continue
        if spec.scope is ParameterScope.STORE:
            assert isinstance(value, bool | str)
            settings.append(
                SettingValue(
                    parameter=name,
                    setting=spec.target,
                    value=value,
                    secret=spec.secret,
                    line=param.line,
                )
            )
        else:
            config.append(
                ConfigValue(
                    parameter=name,
                    config_key=spec.target,
                    value=value,
                    text=param.value,
                    line=param.line,
                )
            )
    certificates: list[CertificateEntry] = []
    for index, cert in enumerate(raw.certificates, start=1):
        entry = f"certificate #{index}{_at(cert.line)}"
        if not cert.text.strip():
            problems.append(
                EntryProblem(entry=entry, message="The certificate entry is empty.", line=cert.line)
            )
            continue
        try:
            loaded = load_certificates(
                cert.text.encode("utf-8"), max_bytes=MAX_CERTIFICATE_TEXT * 4, what=entry
            )
        except CertStoreError as exc:
            problems.append(EntryProblem(entry=entry, message=str(exc), line=cert.line))
            continue
        certificates.append(
            CertificateEntry(index=index, certificates=loaded.certificates, line=cert.line)
        )
    return ProvisioningDocument(
        format=fmt,
        sha256=digest,
        settings=tuple(settings),
        config=tuple(config),
        certificates=tuple(certificates),
        unknown=tuple(unknown),
        problems=tuple(sorted(problems, key=lambda p: (p.line is None, p.line or 0))),
    )
