"""gateway.cli.device.with_progress: the spinner or dots shown while keys are generated."""

from __future__ import annotations

import io
import threading

import pytest

from gateway.cli.device import with_progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestWithProgress:
    def test_result_and_done(self) -> None:
        """The work's result comes back; the line ends with 'done'."""
        stream = io.StringIO()
        assert with_progress("Generating", lambda: 42, stream=stream) == 42
        assert stream.getvalue().startswith("Generating ")
        assert stream.getvalue().endswith("done\n")

    def test_failure(self) -> None:
        """A failing work re-raises and the line ends with 'failed'."""
        stream = io.StringIO()

        def boom() -> None:
            raise ValueError("no")

        with pytest.raises(ValueError, match="no"):
            with_progress("Generating", boom, stream=stream)
        assert stream.getvalue().endswith("failed\n")

    def test_spinner_moves_on_a_terminal(self) -> None:
        """On a terminal a spinner turns while the work runs."""
        stream = Tty()
        turned = threading.Event()

        def work() -> str:
            # Wait until the spinner has drawn at least two frames.
            for _ in range(200):
                if stream.getvalue().count("\b") >= 2:
                    turned.set()
                    break
                turned.wait(0.05)
            return "ok"

        assert with_progress("Generating", work, stream=stream) == "ok"
        assert turned.is_set()
        assert stream.getvalue().endswith("\bdone\n")
