"""Pictures for the admin pages, drawn as SVG text on the server.

Pure functions: values in, SVG text out. No script and no ``style`` attributes (the
admin's Content-Security-Policy allows neither inline), only presentation attributes,
so the pictures render under the strict policy and in any browser. Every text that
comes from outside (certificate names, host names) is escaped and cut to fit, and
characters XML cannot carry are replaced, so a hostile subject name can neither break
the markup nor the page around it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

NodeKind = Literal["destination", "certificate", "anchor", "missing"]

OK = "#1e6b34"
OK_FILL = "#e6f4ea"
BAD = "#b3261e"
BAD_FILL = "#fde8e6"
WARN = "#8a5a00"
WARN_FILL = "#fff4d6"
INK = "#1d232a"
MUTED = "#5b6670"
LINE = "#d8dde3"
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"

# Characters XML 1.0 cannot carry at all (C0 controls but tab/newline/CR, surrogates,
# U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def text(value: str, limit: int | None = None) -> str:
    """``value`` safe inside SVG or HTML text and attributes, cut to ``limit`` characters."""
    clean = _NOT_XML.sub("\ufffd", value).replace("\n", " ").replace("\r", " ").replace("\t", " ")
    if limit is not None and len(clean) > limit:
        clean = clean[: max(limit - 1, 1)] + "…"
    return html.escape(clean, quote=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One box of a chain picture."""

    kind: NodeKind
    title: str  # what the box is: "Server certificate", "Trust anchor", ...
    name: str  # whom it is about: the subject's common name, the destination
    detail: str = ""  # one more line: validity, where it comes from
    problem: str | None = None  # why this certificate fails by itself (e.g. "expired")
    ref: str | None = None  # the fingerprint, for a page to link to (not drawn)


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """The arrow from one box to the next: "names it", "issued by", ..."""

    label: str
    problem: str | None = None  # the failing reason, or None when the link holds


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainPicture:
    """Boxes top to bottom (destination, leaf, intermediates, anchor) and the links
    between them: ``links[i]`` joins ``nodes[i]`` and ``nodes[i + 1]``."""

    nodes: tuple[Node, ...]
    links: tuple[Link, ...]

    def __post_init__(self) -> None:
        if len(self.links) != max(len(self.nodes) - 1, 0):
            raise ValueError("a chain picture needs one link between each two boxes")

    @property
    def valid(self) -> bool:
        return all(n.problem is None for n in self.nodes) and all(
            link.problem is None for link in self.links
        )


_WIDTH = 560
_BOX_X = 16
_BOX_W = 330
_BOX_H = 66
_GAP = 46
_MARGIN = 8
_NAME_CHARS = 40
_NOTE_CHARS = 27


def _box(node: Node, y: int, index: int) -> list[str]:
    failing = node.problem is not None or node.kind == "missing"
    stroke = BAD if failing else (MUTED if node.kind == "destination" else OK)
    fill = BAD_FILL if failing else ("#ffffff" if node.kind == "destination" else OK_FILL)
    dash = ' stroke-dasharray="6 4"' if node.kind == "missing" else ""
    mark = "✗" if failing else "✓"
    out = [
        f'<g class="node node-{node.kind}" data-index="{index}"'
        f' data-state="{"bad" if failing else "ok"}">',
        f'<rect x="{_BOX_X}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6"'
        f' fill="{fill}" stroke="{stroke}" stroke-width="2"{dash}/>',
        f'<text x="{_BOX_X + 10}" y="{y + 18}" font-size="12" fill="{MUTED}">'
        f"{text(node.title, _NAME_CHARS)}</text>",
        f'<text x="{_BOX_X + _BOX_W - 12}" y="{y + 19}" font-size="16" text-anchor="end"'
        f' fill="{stroke}">{mark}</text>',
        f'<text x="{_BOX_X + 10}" y="{y + 38}" font-size="14" font-weight="600" fill="{INK}">'
        f"<title>{text(node.name)}</title>{text(node.name, _NAME_CHARS)}</text>",
    ]
    if node.detail:
        out.append(
            f'<text x="{_BOX_X + 10}" y="{y + 56}" font-size="12" fill="{MUTED}">'
            f"{text(node.detail, _NAME_CHARS + 6)}</text>"
        )
    if node.problem is not None:
        out.append(
            f'<text class="problem" x="{_BOX_X + _BOX_W + 12}" y="{y + _BOX_H // 2 + 5}"'
            f' font-size="13" font-weight="600" fill="{BAD}">'
            f"<title>{text(node.problem)}</title>{text(node.problem, _NOTE_CHARS)}</text>"
        )
    out.append("</g>")
    return out


def _arrow(link: Link, y_top: int, index: int) -> list[str]:
    x = _BOX_X + 40
    y_end = y_top + _GAP
    ok = link.problem is None
    colour = OK if ok else BAD
    dash = "" if ok else ' stroke-dasharray="5 4"'
    label = link.label if ok else f"{link.label}: {link.problem}"
    return [
        f'<g class="link" data-index="{index}" data-state="{"ok" if ok else "bad"}">',
        f'<line x1="{x}" y1="{y_top + 2}" x2="{x}" y2="{y_end - 8}" stroke="{colour}"'
        f' stroke-width="{2 if ok else 3}"{dash}/>',
        f'<path d="M{x - 6} {y_end - 11} L{x} {y_end - 2} L{x + 6} {y_end - 11} Z"'
        f' fill="{colour}"/>',
        f'<text x="{x + 14}" y="{y_top + _GAP // 2 + 5}" font-size="13"'
        f' font-weight="{400 if ok else 600}" fill="{colour}">'
        f"{'✓' if ok else '✗'} {text(label, 60)}</text>",
        "</g>",
    ]


def chain_svg(picture: ChainPicture, *, title: str = "Certificate chain") -> str:
    """The chain as an SVG element, one box per certificate, top (destination) to bottom
    (trust anchor), each link and box marked valid (green, ✓) or failing (red, ✗, with
    the reason written beside it)."""
    count = len(picture.nodes)
    height = _MARGIN * 2 + count * _BOX_H + max(count - 1, 0) * _GAP
    verdict = "valid" if picture.valid else "failing"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chain-picture" role="img"'
        f' viewBox="0 0 {_WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet"'
        f' font-family="{FONT}" data-verdict="{verdict}" aria-label="{text(title)}">',
        f"<title>{text(title)}</title>",
    ]
    y = _MARGIN
    for index, node in enumerate(picture.nodes):
        parts += _box(node, y, index)
        y += _BOX_H
        if index < len(picture.links):
            parts += _arrow(picture.links[index], y, index)
            y += _GAP
    parts.append("</svg>")
    return "".join(parts)


# -- the expiry timeline -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineItem:
    """One certificate (or pin) on the expiry timeline."""

    role: str  # "Trust anchor", "Pin", "Device identity", "Provider certificate"
    name: str
    not_after: datetime
    not_before: datetime | None = None


_T_WIDTH = 720
_T_LABEL = 250
_T_ROW = 30
_T_TOP = 34
_T_RIGHT = 16
WARN_DAYS = 30


def _span(items: Sequence[TimelineItem], now: datetime) -> tuple[datetime, datetime]:
    start = now - timedelta(days=30)
    end = now + timedelta(days=365)
    latest = max((i.not_after for i in items), default=end)
    # Long-lived roots would squash every near expiry into a sliver: stop at 5 years.
    end = max(end, min(latest + timedelta(days=30), now + timedelta(days=5 * 365)))
    earliest = min((i.not_after for i in items), default=start)
    start = min(start, max(earliest - timedelta(days=30), now - timedelta(days=365)))
    return start, end


def timeline_svg(items: Sequence[TimelineItem], now: datetime) -> str:
    """A row per item: a bar up to its expiry against a time axis with today marked;
    red when expired, amber within 30 days, green beyond. Soonest expiry first."""
    rows = sorted(items, key=lambda i: i.not_after)
    start, end = _span(rows, now)
    total = (end - start).total_seconds()
    plot = _T_WIDTH - _T_LABEL - _T_RIGHT

    def x_of(moment: datetime) -> float:
        share = (moment - start).total_seconds() / total
        return round(_T_LABEL + min(max(share, 0.0), 1.0) * plot, 1)

    height = _T_TOP + max(len(rows), 1) * _T_ROW + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img"'
        f' viewBox="0 0 {_T_WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet"'
        f' font-family="{FONT}" aria-label="Certificate expiry timeline">',
        "<title>Certificate expiry timeline</title>",
    ]
    # Axis: a tick at the start of each year (or each quarter when the span is short).
    years = range(start.year, end.year + 1)
    ticks = [datetime(y, m, 1, tzinfo=now.tzinfo) for y in years for m in (1, 4, 7, 10)]
    if (end - start).days > 3 * 365:
        ticks = [t for t in ticks if t.month == 1]
    for tick in ticks:
        if not start <= tick <= end:
            continue
        x = x_of(tick)
        label = str(tick.year) if tick.month == 1 else tick.strftime("%b")
        parts.append(
            f'<line x1="{x}" y1="{_T_TOP - 8}" x2="{x}" y2="{height - 6}" stroke="{LINE}"/>'
            f'<text x="{x + 3}" y="{_T_TOP - 12}" font-size="11" fill="{MUTED}">{label}</text>'
        )
    today = x_of(now)
    parts.append(
        f'<line class="today" x1="{today}" y1="{_T_TOP - 8}" x2="{today}" y2="{height - 6}"'
        f' stroke="{INK}" stroke-width="2"/>'
        f'<text x="{today + 3}" y="{_T_TOP - 22}" font-size="11" font-weight="600"'
        f' fill="{INK}">today</text>'
    )
    if not rows:
        parts.append(
            f'<text x="{_T_LABEL}" y="{_T_TOP + 18}" font-size="13" fill="{MUTED}">'
            "No certificate to watch.</text>"
        )
    for index, item in enumerate(rows):
        y = _T_TOP + index * _T_ROW
        days = (item.not_after - now).total_seconds() / 86400
        if days < 0:
            colour, fill, state, when = BAD, BAD_FILL, "expired", "expired"
        elif days < WARN_DAYS:
            colour, fill, state, when = WARN, WARN_FILL, "soon", f"{int(days)} d left"
        else:
            colour, fill, state, when = OK, OK_FILL, "ok", f"{item.not_after:%Y-%m-%d}"
        begin = x_of(item.not_before) if item.not_before is not None else _T_LABEL
        finish = x_of(item.not_after)
        full = f"{item.role}: {item.name}, expires {item.not_after:%Y-%m-%d %H:%M:%S} UTC"
        parts += [
            f'<g class="row" data-state="{state}"><title>{text(full)}</title>',
            f'<text x="4" y="{y + 13}" font-size="11" fill="{MUTED}">{text(item.role, 38)}</text>',
            f'<text x="4" y="{y + 25}" font-size="12" fill="{INK}">{text(item.name, 36)}</text>',
            f'<rect x="{begin}" y="{y + 5}" width="{max(finish - begin, 2.0):.1f}" height="16"'
            f' rx="3" fill="{fill}" stroke="{colour}"/>',
            f'<text x="{min(finish + 4, _T_WIDTH - 70)}" y="{y + 17}" font-size="11"'
            f' fill="{colour}">{text(when)}</text>',
            "</g>",
        ]
    parts.append("</svg>")
    return "".join(parts)
