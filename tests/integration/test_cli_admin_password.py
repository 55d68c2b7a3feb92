"""``sipsgate admin set-password`` on a real terminal: Ctrl-D and Ctrl-C leave the password."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.admin.auth import credentials_path, write_password

DEADLINE = 30.0


def _sipsgate() -> list[str]:
    exe = shutil.which("sipsgate", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "gateway.cli"]


class Terminal:
    """The command run on a pseudo-terminal of its own, as a person at a shell would."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child becomes the command
            os.execvpe(argv[0], argv, env)  # noqa: S606 (a fixed argv, no shell)
        self.pid, self.fd, self.output = pid, fd, b""

    def read_until(self, text: bytes) -> None:
        end = time.monotonic() + DEADLINE
        while text not in self.output:
            assert time.monotonic() < end, f"no {text!r} in {self.output!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    break

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def finish(self) -> int:
        end = time.monotonic() + DEADLINE
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                self.output += chunk
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > end:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                pytest.fail(f"set-password did not end: {self.output!r}")


@pytest.mark.parametrize(
    ("keys", "message", "code"),
    [
        (b"\x04", b"No password was entered (end of input); nothing was changed.", 1),
        (b"\x03", b"interrupted; the admin password was not changed.", 130),
    ],
    ids=["ctrl-d", "ctrl-c"],
)
def test_set_password_abandoned_at_the_prompt(
    tmp_path: Path, keys: bytes, message: bytes, code: int
) -> None:
    """Ctrl-D or Ctrl-C at the prompt: a sentence, a non-zero exit, no traceback, no change."""
    data_dir = tmp_path / "data"
    write_password(data_dir, "the old password 1")
    before = credentials_path(data_dir).read_bytes()
    env = {
        **os.environ,
        "SIPSGATE_GATEWAY_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    term = Terminal([*_sipsgate(), "admin", "set-password"], env)
    term.read_until(b"New admin password: ")
    term.send(keys)
    assert term.finish() == code, term.output
    assert message in term.output
    assert b"Traceback" not in term.output
    assert credentials_path(data_dir).read_bytes() == before


def test_set_password_from_an_empty_pipe(tmp_path: Path) -> None:
    """Nothing on standard input is said as such, and the old password stays."""
    data_dir = tmp_path / "data"
    write_password(data_dir, "the old password 1")
    before = credentials_path(data_dir).read_bytes()
    env = {**os.environ, "SIPSGATE_GATEWAY_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [*_sipsgate(), "admin", "set-password"],
        input="",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "No password on standard input" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert credentials_path(data_dir).read_bytes() == before
