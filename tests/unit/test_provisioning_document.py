"""The provisioning document parser: formats, typed values, hostile input, fuzzing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.provisioning.document import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_ENTRIES,
    PARAMETERS,
    TLS_VERSIONS,
    DocumentFormat,
    ParameterScope,
    ProvisioningDocument,
    parse_document,
)
from gateway.provisioning.errors import DocumentError, DocumentTooLarge
from gateway.tls.engine import TLS_VERSIONS as ENGINE_TLS_VERSIONS
from tests.pki import CertFactory

ROOT = Path(__file__).resolve().parents[2]
ACCEPT_ALL = "SystemSettings.global.Security_Certificates_AcceptAllCertificates"
USER = "Security.global.HTTPAuthUsername"
PASSWORD = "Security.global.HTTPAuthPassword"


def params(*pairs: tuple[str, str]) -> bytes:
    body = "".join(f'<param name="{n}" value="{v}"/>\n' for n, v in pairs)
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f"{head}<provisioning>\n{body}</provisioning>\n".encode()


@pytest.fixture(scope="module")
def pem() -> bytes:
    return CertFactory().ca("Provisioned Test CA").pem


class TestFormats:
    def test_xml_params_become_typed_settings(self) -> None:
        """The three Gigaset names and a sipsgate store setting, typed."""
        doc = parse_document(
            params(
                (ACCEPT_ALL, "1"),
                (USER, "7C2F80C6E5C2"),
                (PASSWORD, "pa ss"),
                ("Sipsgate.security.close_flows_on_revoke", "0"),
            )
        )
        assert doc.format is DocumentFormat.XML
        assert doc.valid
        assert doc.settings_changes() == {
            "accept_all_certificates": True,
            "http_auth_username": "7C2F80C6E5C2",
            "http_auth_password": "pa ss",
            "close_flows_on_revoke": False,
        }
        assert [s.line for s in doc.settings] == [3, 4, 5, 6]

    def test_lines_carry_the_same_names(self) -> None:
        """name=value lines with comments, blank lines and quoted values."""
        doc = parse_document(
            b"# sipsgate\n; also a comment\n\n"
            + ACCEPT_ALL.encode()
            + b" = 1\n"
            + USER.encode()
            + b'="  spaced  "\r\n'
        )
        assert doc.format is DocumentFormat.LINES
        assert doc.settings_changes() == {
            "accept_all_certificates": True,
            "http_auth_username": "  spaced  ",
        }

    def test_xml_and_lines_agree(self) -> None:
        pairs = ((ACCEPT_ALL, "0"), (USER, "u"), ("Sipsgate.security.allow_wildcards", "1"))
        lines = "".join(f"{n}={v}\n" for n, v in pairs).encode()
        assert parse_document(params(*pairs)).settings_changes() == (
            parse_document(lines).settings_changes()
        )

    def test_any_root_and_namespaces_are_accepted(self) -> None:
        """Params anywhere under any root; namespace prefixes are ignored."""
        doc = parse_document(
            b'<g:ProviderFrame xmlns:g="urn:x"><g:Provider><g:param name="'
            + ACCEPT_ALL.encode()
            + b'" value="1"/></g:Provider></g:ProviderFrame>'
        )
        assert doc.settings_changes() == {"accept_all_certificates": True}

    def test_utf8_bom_is_accepted(self) -> None:
        doc = parse_document(b"\xef\xbb\xbf" + params((USER, "b\u00e4r")))
        assert doc.settings_changes() == {"http_auth_username": "b\u00e4r"}

    def test_certificates_in_xml_and_in_lines(self, pem: bytes) -> None:
        """<certificate> PEM in XML and PEM blocks between lines are both certificates."""
        in_xml = parse_document(b"<p><certificate>\n" + pem + b"</certificate></p>")
        in_lines = parse_document(ACCEPT_ALL.encode() + b"=1\n" + pem)
        assert len(in_xml.all_certificates()) == 1
        assert in_xml.all_certificates() == in_lines.all_certificates()
        assert in_lines.certificates[0].line == 2

    def test_sha256_identifies_the_document(self) -> None:
        a, b = params((ACCEPT_ALL, "1")), params((ACCEPT_ALL, "0"))
        assert parse_document(a).sha256 == parse_document(a).sha256
        assert parse_document(a).sha256 != parse_document(b).sha256


class TestValues:
    @pytest.mark.parametrize(("text", "value"), [("1", True), ("0", False), ("TRUE", True)])
    def test_booleans(self, text: str, value: bool) -> None:
        assert parse_document(params((ACCEPT_ALL, text))).settings_changes() == {
            "accept_all_certificates": value
        }

    @pytest.mark.parametrize("text", ["2", "yes", "", "01"])
    def test_wrong_boolean_is_a_problem_naming_the_entry(self, text: str) -> None:
        doc = parse_document(params((ACCEPT_ALL, text)))
        assert not doc.valid
        (problem,) = doc.problems
        assert problem.entry == f"param {ACCEPT_ALL} (line 3)"
        assert "must be 0 or 1" in problem.message
        assert doc.settings == ()

    def test_credentials_of_74_characters_pass_and_75_fail(self) -> None:
        assert parse_document(params((USER, "u" * 74))).valid
        doc = parse_document(params((USER, "u" * 75)))
        assert "75 characters long; at most 74" in doc.problems[0].message

    def test_a_bad_password_is_never_shown(self) -> None:
        secret = "p" * 70 + "\u0007xyz"
        doc = parse_document(f"{PASSWORD}={secret}\n".encode())
        (problem,) = doc.problems
        assert "control" in problem.message
        assert secret not in problem.message
        assert "ppp" not in problem.message
        assert secret not in repr(doc)

    def test_a_colon_in_the_user_name_is_refused(self) -> None:
        doc = parse_document(params((USER, "a:b")))
        assert "':'" in doc.problems[0].message

    def test_config_level_parameters_are_checked_and_kept_apart(self) -> None:
        doc = parse_document(
            params(("Sipsgate.tls.min_version", "1.3"), ("Sipsgate.sip.upstream", "sips:x.test"))
        )
        assert doc.valid
        assert doc.settings == ()
        assert [(c.config_key, c.value) for c in doc.config] == [
            ("tls.min_version", "1.3"),
            ("sip.upstream", "sips:x.test"),
        ]

    @pytest.mark.parametrize(
        ("name", "value", "expected"),
        [
            ("Sipsgate.tls.min_version", "1.1", "must be 1.2 or 1.3"),
            ("Sipsgate.tls.handshake_timeout", "soon", "must be a duration"),
            ("Sipsgate.store.rejected_limit", "many", "must be an integer"),
        ],
    )
    def test_config_level_values_are_typed(self, name: str, value: str, expected: str) -> None:
        (problem,) = parse_document(params((name, value))).problems
        assert expected in problem.message

    def test_unknown_names_are_reported_not_fatal(self) -> None:
        doc = parse_document(params(("Foo.bar", "1"), (ACCEPT_ALL.lower(), "1"), (ACCEPT_ALL, "1")))
        assert doc.valid
        assert [(u.name, u.hint) for u in doc.unknown] == [
            ("Foo.bar", None),
            (ACCEPT_ALL.lower(), ACCEPT_ALL),
        ]
        assert doc.settings_changes() == {"accept_all_certificates": True}

    def test_a_param_without_value_is_a_problem(self) -> None:
        doc = parse_document(f'<p><param name="{USER}"/></p>'.encode())
        assert "value is missing" in doc.problems[0].message

    def test_a_line_without_equals_is_a_problem(self) -> None:
        doc = parse_document(b"just words\n")
        assert doc.problems[0].entry == "line 1"

    def test_a_certificate_that_does_not_parse_is_a_problem(self, pem: bytes) -> None:
        broken = pem[:200] + b"\n-----END CERTIFICATE-----\n"
        good = b"<certificate>" + pem + b"</certificate>"
        doc = parse_document(b"<p>" + good + b"<certificate>" + broken + b"</certificate></p>")
        (problem,) = doc.problems
        assert problem.entry.startswith("certificate #2 (line ")
        assert len(doc.certificates) == 1

    def test_an_empty_certificate_and_an_unterminated_block(self, pem: bytes) -> None:
        assert "empty" in parse_document(b"<p><certificate> </certificate></p>").problems[0].message
        doc = parse_document(pem[:-30])
        assert "no -----END line" in doc.problems[0].message


class TestDuplicates:
    def test_same_name_same_value_is_fine(self) -> None:
        doc = parse_document(params((ACCEPT_ALL, "1"), (ACCEPT_ALL, "1")))
        assert doc.valid
        assert len(doc.settings) == 1

    def test_conflicting_values_name_both_entries(self) -> None:
        doc = parse_document(params((USER, "alice"), (ACCEPT_ALL, "1"), (USER, "bob")))
        (problem,) = doc.problems
        assert "lines 3 and 5" in problem.message
        assert "'alice'" in problem.message and "'bob'" in problem.message

    def test_conflicting_passwords_are_not_shown(self) -> None:
        doc = parse_document(f"{PASSWORD}=first-secret\n{PASSWORD}=second-secret\n".encode())
        (problem,) = doc.problems
        assert "lines 1 and 2" in problem.message
        assert "secret" not in problem.message


class TestHostileDocuments:
    def test_billion_laughs_is_refused(self) -> None:
        refs = ["&lol;" * 10] + [f"&lol{i};" * 10 for i in range(1, 9)]
        entities = "".join(f'<!ENTITY lol{i} "{refs[i - 1]}">\n' for i in range(1, 10))
        bomb = (
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
            + entities
            + "]>\n<lolz>&lol9;</lolz>\n"
        ).encode()
        with pytest.raises(DocumentError, match="DTD or entities"):
            parse_document(bomb)

    def test_external_entity_is_refused(self, tmp_path: Path) -> None:
        secret = tmp_path / "secret.txt"
        secret.write_text("do-not-read")
        doc = (
            f'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY x SYSTEM "file://{secret}">]>\n'
            f'<p><param name="{USER}" value="&x;"/></p>'
        ).encode()
        with pytest.raises(DocumentError, match="DTD or entities") as info:
            parse_document(doc)
        assert "do-not-read" not in str(info.value)

    def test_external_dtd_is_refused(self) -> None:
        with pytest.raises(DocumentError, match="DTD"):
            parse_document(b'<!DOCTYPE p SYSTEM "http://127.0.0.1:1/x.dtd"><p/>')

    def test_huge_document_is_refused_before_parsing(self) -> None:
        with pytest.raises(DocumentTooLarge) as info:
            parse_document(b"<p>" + b"x" * MAX_DOCUMENT_BYTES + b"</p>")
        assert info.value.limit == MAX_DOCUMENT_BYTES

    def test_too_many_entries_is_refused(self) -> None:
        body = b"".join(b'<param name="n%d" value="1"/>' % i for i in range(MAX_ENTRIES + 1))
        with pytest.raises(DocumentError, match=f"more than {MAX_ENTRIES} entries"):
            parse_document(b"<p>" + body + b"</p>")

    def test_too_deep_nesting_is_refused(self) -> None:
        depth = MAX_DEPTH + 1
        with pytest.raises(DocumentError, match="deeper than"):
            parse_document(b"<a>" * depth + b"</a>" * depth)

    def test_invalid_utf8_is_refused_with_its_place(self) -> None:
        with pytest.raises(DocumentError, match=r"not valid UTF-8 \(byte 6, line 2\)"):
            parse_document(b"a=1\nb=\xc3\x28\n")

    def test_other_declared_encodings_are_refused(self) -> None:
        with pytest.raises(DocumentError, match="only UTF-8"):
            parse_document(b'<?xml version="1.0" encoding="ISO-8859-1"?><p/>')

    @pytest.mark.parametrize("data", [b"", b"   \n", b"<p>", b"<p></q>", b"<"])
    def test_empty_and_malformed_are_errors(self, data: bytes) -> None:
        with pytest.raises(DocumentError):
            parse_document(data)


class TestFuzzing:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=2048))
    def test_any_bytes_give_a_document_or_a_document_error(self, data: bytes) -> None:
        try:
            doc = parse_document(data)
        except DocumentError:
            return
        assert isinstance(doc, ProvisioningDocument)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([*PARAMETERS, "Unknown.x", ""]),
                st.text(max_size=90),
            ),
            max_size=8,
        ),
        st.booleans(),
    )
    def test_structured_documents_never_crash(
        self, pairs: list[tuple[str, str]], as_xml: bool
    ) -> None:
        """Known names with arbitrary values, in both formats: typed or a problem."""
        if as_xml:
            from xml.sax.saxutils import quoteattr

            body = "".join(f"<param name={quoteattr(n)} value={quoteattr(v)}/>" for n, v in pairs)
            data = f"<p>{body}</p>".encode("utf-8", "surrogatepass")
        else:
            data = "".join(f"{n}={v}\n" for n, v in pairs).encode("utf-8", "surrogatepass")
        try:
            doc = parse_document(data)
        except DocumentError:
            return
        for value in doc.settings:
            assert isinstance(value.value, bool | str)
        for problem in doc.problems:
            assert problem.message


class TestReference:
    def test_tls_versions_match_the_engine(self) -> None:
        assert set(TLS_VERSIONS) == set(ENGINE_TLS_VERSIONS)

    def test_the_gigaset_names_map_to_the_store(self) -> None:
        assert PARAMETERS[ACCEPT_ALL].target == "accept_all_certificates"
        assert PARAMETERS[USER].target == "http_auth_username"
        assert PARAMETERS[PASSWORD].secret
        assert all(
            p.scope is ParameterScope.CONFIG
            for n, p in PARAMETERS.items()
            if n.count(".") == 2
            and n.startswith("Sipsgate.")
            and not n.startswith("Sipsgate.security.")
        )

    def test_every_parameter_is_in_the_reference(self) -> None:
        """docs/provisioning.md lists every name with its type and default."""
        text = (ROOT / "docs" / "provisioning.md").read_text()
        for name, spec in PARAMETERS.items():
            row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{name}` |")), None)
            assert row is not None, name
            assert spec.type_name in row, name
            assert f"`{spec.default}`" in row, name

    def test_the_parser_is_pure(self) -> None:
        """document.py reads bytes only: no asyncio, sockets, aiohttp or logging."""
        tree = ast.parse((ROOT / "gateway" / "provisioning" / "document.py").read_text())
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not names & {"asyncio", "socket", "aiohttp", "structlog", "os", "pathlib"}
