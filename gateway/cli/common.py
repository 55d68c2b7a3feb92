"""What every CLI command shares: opening the store from the config, output helpers,
and parsing of the values operators type (durations, fingerprints, on/off)."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from certstore.facade import RepositoryStore
from certstore.files import PUBLIC_MODE, SECRET_MODE, write_file
from certstore.model import Actor
from certstore.render import visible
from certstore.validation import parse_time
from gateway.config import Config, Duration, load_config
from gateway.errors import UsageError
from gateway.storage import open_configured_store

_HEX = re.compile(r"^[0-9a-f]+$")


def utc_now() -> datetime:
    return datetime.now(UTC)


def config_of(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def store_for(config: Config) -> RepositoryStore:
    """The configured store: PostgreSQL at ``store.url``, else the embedded store of the
    data directory (created on first use)."""
    return open_configured_store(config, listen=False)


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[RepositoryStore]:
    store = store_for(config_of(args))
    try:
        yield store
    finally:
        store.close()


def cli_actor() -> Actor:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = "cli"
    return Actor(name=name, interface="cli")


class VisibleText:
    """Standard output for people: every text written goes through
    :func:`certstore.render.visible`, so a name a peer chose (an ESC sequence, a bidi
    override) is shown, never obeyed by the terminal. Binary output (``.buffer``:
    PEM, DER, backups) is written as it is."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(visible(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def visible_stdout() -> Iterator[None]:
    """``sys.stdout`` wrapped in :class:`VisibleText` for the duration."""
    original = sys.stdout
    sys.stdout = VisibleText(original)
    try:
        yield
    finally:
        sys.stdout = original


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [
        ["" if v is None else visible(str(v), keep="") for v in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for number, row in enumerate(cells):
        line = "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip()
        print(line)
        if number == 0:
            print("  ".join("-" * w for w in widths))


def short_fp(fingerprint: str) -> str:
    return fingerprint[:16]


def normalise_fingerprint(text: str) -> str:
    """Accept ``AB:CD:...`` or plain hex, any case; return lowercase hex."""
    value = text.strip().lower().replace(":", "").replace(" ", "")
    if not value or not _HEX.match(value):
        raise UsageError(f"{text!r} is not a fingerprint; give the SHA-256 in hex (or a prefix).")
    return value


def resolve_fingerprint(prefix: str, known: Sequence[str], what: str) -> str:
    """A full fingerprint from a unique prefix of at least 8 hex digits."""
    value = normalise_fingerprint(prefix)
    if len(value) == 64:
        return value
    if len(value) < 8:
        raise UsageError(f"The fingerprint prefix {prefix!r} is too short; give at least 8 digits.")
    matches = [fp for fp in known if fp.startswith(value)]
    if not matches:
        raise UsageError(f"No {what} has a fingerprint starting with {value}.")
    if len(matches) > 1:
        raise UsageError(f"The prefix {value} matches {len(matches)} {what}s; give more digits.")
    return matches[0]


def parse_on_off(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not on/off")


def parse_expiry(at: str | None, within: str | None, now: datetime) -> datetime | None:
    """An expiry from ``--expires-at ISO`` or ``--expires-in 7d``; at most one of them."""
    if at and within:
        raise UsageError("Give --expires-at or --expires-in, not both.")
    if within:
        try:
            return now + timedelta(seconds=float(Duration.parse(within)))
        except ValueError as exc:
            raise UsageError(f"--expires-in: {exc}.") from exc
    if at:
        return parse_time(at, field="expires_at", naive_is_utc=True)
    return None


def read_input(path: str, *, limit: int, what: str = "file") -> bytes:
    """Bytes of a file, or of standard input for ``-``, refusing more than ``limit``."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"The {what} {path} cannot be read: {exc.strerror or exc}.") from exc
    if len(data) > limit:
        raise UsageError(f"The {what} {path} is larger than {limit} bytes; nothing was changed.")
    return data


def write_output(data: bytes, out: str | None, *, secret: bool = False) -> None:
    """Write to standard output, or atomically to a file (certstore.files.write_file:
    mode 0600 when it holds a key or a secret, else 0644)."""
    if out is None or out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        write_file(out, data, mode=SECRET_MODE if secret else PUBLIC_MODE)
    except OSError as exc:
        raise UsageError(f"Cannot write {out}: {exc.strerror or exc}.") from exc
