"""The one way sipsgate writes a file that someone else may read: :func:`write_file`.

The data goes to a new file with an unpredictable name, created exclusively
(``O_EXCL``, never following a link) in the target's own directory, with its mode set
before the first byte is written; it is flushed to disk and renamed over the target,
and the directory entry is made durable. A reader sees the old file or the whole new
one, never a part; a key or a secret never sits in a file more open than 0600, and a
pre-existing file (or a link planted where a temporary name used to be predictable)
cannot lend the result its mode or redirect the write.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: Mode of files holding keys or secrets, and of everything else written.
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def write_file(path: str | os.PathLike[str], data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Replace ``path`` atomically with ``data``, the new file having exactly ``mode``.

    Raises OSError (the caller turns it into its own error); nothing is left behind.
    """
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # exactly this mode, whatever the umask says
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
