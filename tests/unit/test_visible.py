"""The one sanitiser for text from outside shown on a terminal or a page."""

from __future__ import annotations

from certstore.render import visible


class TestVisible:
    def test_controls_become_pictures_and_bidi_is_escaped(self) -> None:
        assert visible("a\x1b[31mb") == "a\u241b[31mb"
        assert visible("x\u202ey\u200bz\x7f\x85") == "x\\u202ey\\u200bz\u2421\\u0085"
        assert visible("line\n\ttab") == "line\n\ttab"
        assert visible("line\nnext", keep="") == "line\u240anext"
        assert visible("plain ascii, ünïcödé 名前") == "plain ascii, ünïcödé 名前"
