"""certstore.files.write_file: exclusive, mode first, durable, atomic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from certstore.files import PUBLIC_MODE, SECRET_MODE, write_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestWriteFile:
    def test_a_new_file_gets_exactly_the_mode(self, tmp_path: Path) -> None:
        old = os.umask(0)
        try:
            write_file(tmp_path / "key.pem", b"secret", mode=SECRET_MODE)
            write_file(tmp_path / "cert.pem", b"public")
        finally:
            os.umask(old)
        assert mode(tmp_path / "key.pem") == SECRET_MODE
        assert mode(tmp_path / "cert.pem") == PUBLIC_MODE
        assert (tmp_path / "key.pem").read_bytes() == b"secret"

    def test_an_existing_open_file_does_not_lend_its_mode(self, tmp_path: Path) -> None:
        target = tmp_path / "backup.json"
        target.write_bytes(b"old")
        target.chmod(0o666)
        write_file(target, b"new", mode=SECRET_MODE)
        assert mode(target) == SECRET_MODE
        assert target.read_bytes() == b"new"

    def test_a_link_at_the_target_is_replaced_not_followed(self, tmp_path: Path) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_bytes(b"untouched")
        link = tmp_path / "out.pem"
        link.symlink_to(elsewhere)
        write_file(link, b"data")
        assert elsewhere.read_bytes() == b"untouched"
        assert not link.is_symlink() and link.read_bytes() == b"data"

    def test_a_failure_leaves_nothing_behind(self, tmp_path: Path) -> None:
        with pytest.raises(OSError):
            write_file(tmp_path / "missing-dir" / "x", b"data")
        (tmp_path / "dir").mkdir()
        with pytest.raises(OSError):
            write_file(tmp_path / "dir", b"data")  # a directory cannot be replaced by a file
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]
