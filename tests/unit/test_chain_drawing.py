"""The chain picture and the expiry timeline: pure SVG, parsed back, hostile names escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from gateway.admin.chainview import chain_picture, timeline_items
from gateway.admin.drawing import ChainPicture, Link, Node, TimelineItem, chain_svg, timeline_svg
from tests.pki import make_key, name
from tests.unit.decision_helpers import HOST, NOW, PKI, chain, peer, snapshot

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # noqa: S314 (our own output, under test)
    assert root.tag == f"{SVG}svg"
    return root


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]


def all_text(element: ET.Element) -> str:
    return " ".join("".join(t.itertext()) for t in element.iter(f"{SVG}text"))


def states(root: ET.Element, cls: str) -> list[str]:
    return [g.get("data-state", "") for g in groups(root, cls)]


def test_valid_chain_draws_every_box_and_link_green() -> None:
    root_ca = PKI.ca("Drawing Root")
    inter = PKI.ca("Drawing Issuing CA", issuer=root_ca)
    leaf = PKI.leaf(inter, cn=HOST)
    picture = chain_picture(chain(leaf, inter), peer(), NOW, snapshot(trust=[root_ca]))
    svg = parse(chain_svg(picture))
    assert picture.valid and svg.get("data-verdict") == "valid"
    assert [g.get("class") for g in groups(svg, "node")] == [
        "node node-destination",
        "node node-certificate",
        "node node-certificate",
        "node node-anchor",
    ]
    assert states(svg, "node") == ["ok"] * 4
    assert states(svg, "link") == ["ok"] * 3
    words = all_text(svg)
    assert f"sips:{HOST}:5061" in words
    assert "Drawing Root" in words and "from the trust list" in words


def test_issuer_not_sent_marks_the_link_to_the_missing_issuer() -> None:
    stranger = PKI.ca("Stranger Root")
    leaf = PKI.leaf(stranger, cn=HOST)
    svg = parse(chain_svg(chain_picture(chain(leaf), peer(), NOW, snapshot())))
    assert svg.get("data-verdict") == "failing"
    assert states(svg, "link") == ["ok", "bad"]
    bad = groups(svg, "link")[1]
    assert "missing intermediate" in all_text(bad)
    missing = groups(svg, "node")[-1]
    assert missing.get("class") == "node node-missing"
    assert "Stranger Root" in all_text(missing)


def test_untrusted_root_sent_by_the_server_is_an_unknown_issuer() -> None:
    stranger = PKI.ca("Sent Root")
    leaf = PKI.leaf(stranger, cn=HOST)
    svg = parse(chain_svg(chain_picture(chain(leaf, stranger), peer(), NOW, snapshot())))
    assert states(svg, "link") == ["ok", "ok", "bad"]
    assert "unknown issuer" in all_text(groups(svg, "link")[2])
    assert "not on the trust list" in all_text(groups(svg, "node")[-1])


def test_missing_intermediate_when_the_server_sends_no_ca_at_all() -> None:
    root_ca = PKI.ca("Far Root")
    inter = PKI.ca("Issuing CA", issuer=root_ca)
    leaf = PKI.leaf(inter, cn=HOST)
    # The server sends only its own certificate; the trust list has the root.
    picture = chain_picture(chain(leaf), peer(), NOW, snapshot(trust=[root_ca]))
    assert [link.problem for link in picture.links] == [None, "missing intermediate"]
    assert picture.nodes[-1].name == "Issuing CA"


def test_unknown_issuer_when_the_sent_ca_has_an_untrusted_issuer() -> None:
    root_ca = PKI.ca("Unlisted Root")
    inter = PKI.ca("Unlisted Issuing CA", issuer=root_ca)
    leaf = PKI.leaf(inter, cn=HOST)
    picture = chain_picture(chain(leaf, inter), peer(), NOW, snapshot())
    assert [link.problem for link in picture.links] == [None, None, "unknown issuer"]
    assert picture.nodes[-1].name == "Unlisted Root"


def test_expired_certificate_and_name_mismatch_are_marked_where_they_are() -> None:
    root_ca = PKI.ca("Dates Root")
    leaf = PKI.leaf(root_ca, cn="other.example.org", valid_days=(-400, -2))
    picture = chain_picture(chain(leaf), peer(), NOW, snapshot(trust=[root_ca]))
    svg = parse(chain_svg(picture))
    assert states(svg, "link") == ["bad", "ok"]
    assert "name mismatch" in all_text(groups(svg, "link")[0])
    leaf_box = groups(svg, "node")[1]
    assert leaf_box.get("data-state") == "bad"
    problems = [t for t in leaf_box.iter(f"{SVG}text") if t.get("class") == "problem"]
    assert "".join(problems[0].itertext()).endswith("expired")


def test_expired_trust_anchor_is_marked_on_the_anchor() -> None:
    old_root = PKI.ca("Old Root", valid_days=(-900, -1))
    leaf = PKI.leaf(old_root, cn=HOST, valid_days=(-10, 30))
    picture = chain_picture(chain(leaf), peer(), NOW, snapshot(trust=[old_root]))
    assert picture.nodes[-1].kind == "anchor"
    assert picture.nodes[-1].problem == "expired"


def test_bad_signature_is_drawn_on_the_issued_by_link() -> None:
    root_ca = PKI.ca("Signing Root")
    # Named as issued by the root, signed by another key.
    leaf = PKI.leaf(root_ca, cn=HOST, signing_key=make_key("ec", "forger"))
    picture = chain_picture(chain(leaf), peer(), NOW, snapshot(trust=[root_ca]))
    assert picture.links[1].problem == "bad signature"


def test_without_a_peer_there_is_no_destination_box() -> None:
    root_ca = PKI.ca("Listed Root")
    picture = chain_picture(chain(root_ca), None, NOW, snapshot(trust=[root_ca]))
    assert [n.kind for n in picture.nodes] == ["anchor"]
    assert picture.valid


HOSTILE = "</text><script>alert(1)</script>&amp;\"'<g onload=x>\x01\x1b"


def test_hostile_names_are_escaped_in_the_chain_picture() -> None:
    root_ca = PKI.ca(subject=name(HOSTILE))
    leaf = PKI.leaf(root_ca, cn=HOST, subject=name(HOSTILE + " leaf"))
    picture = chain_picture(chain(leaf), peer(host=HOSTILE), NOW, snapshot())
    svg = chain_svg(picture, title=HOSTILE)
    root = parse(svg)  # still well-formed XML
    assert "<script" not in svg and "<g onload" not in svg
    assert not list(root.iter(f"{SVG}script"))
    assert {el.tag for el in root.iter()} <= {
        f"{SVG}{t}" for t in ("svg", "title", "g", "rect", "text", "line", "path")
    }
    # The name is still there to read, with the unsendable characters replaced.
    assert "</text><script>alert(1)</script>" in all_text(root)
    assert "\x01" not in svg and "\ufffd" in svg


def test_hostile_names_are_escaped_in_the_timeline() -> None:
    items = [TimelineItem(role=HOSTILE, name=HOSTILE, not_after=NOW + timedelta(days=3))]
    svg = timeline_svg(items, NOW)
    root = parse(svg)
    assert "<script" not in svg
    assert not list(root.iter(f"{SVG}script"))


def test_picture_needs_one_link_between_boxes() -> None:
    with pytest.raises(ValueError, match="one link"):
        ChainPicture(
            nodes=(Node(kind="certificate", title="a", name="b"),), links=(Link(label="x"),)
        )


def test_timeline_orders_by_expiry_and_marks_expired_soon_and_ok() -> None:
    root_ca = PKI.ca("Timeline Root", valid_days=(-30, 3650))
    device = PKI.leaf(None, cn="device", valid_days=(-300, -1))
    items = timeline_items(
        anchors=[root_ca.model],
        pins=[("pin for sip.example.net:5061", NOW + timedelta(days=10))],
        device=device.model,
        provider=("sip.example.net", NOW + timedelta(days=200)),
    )
    root = parse(timeline_svg(items, NOW))
    rows = groups(root, "row")
    assert [r.findtext(f"{SVG}title", "").split(":")[0] for r in rows] == [
        "Device identity",
        "Pin",
        "Provider certificate",
        "Trust anchor",
    ]
    assert [r.get("data-state") for r in rows] == ["expired", "soon", "ok", "ok"]
    today = [line for line in root.iter(f"{SVG}line") if line.get("class") == "today"]
    assert len(today) == 1
    # Bars end where their expiry is: later expiry, further right.
    ends = [
        float(r.find(f"{SVG}rect").get("x")) + float(r.find(f"{SVG}rect").get("width"))
        for r in rows
    ]  # type: ignore[union-attr]
    assert ends == sorted(ends)


def test_empty_timeline_says_so() -> None:
    root = parse(timeline_svg([], NOW))
    assert "No certificate to watch." in all_text(root)
