"""The provisioning client's memory across restarts: the last result and the validators
(ETag, Last-Modified) of the last document applied.

One JSON file, ``provisioning.json`` in the data directory, mode 0600, replaced
atomically (written beside, fsynced, renamed, directory fsynced) under an exclusive
``flock`` so the gateway and a ``sipsgate provision`` command never interleave. It
holds no secret: results redact the password. A damaged file is set aside as
``provisioning.json.damaged`` and treated as empty, since the next fetch rebuilds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from certstore.files import SECRET_MODE, write_file
from gateway.log import get_logger
from gateway.provisioning.errors import ProvisioningError
from gateway.provisioning.result import FetchResult

STATE_FILE = "provisioning.json"
STATE_VERSION = 1

_log = get_logger(area="provisioning")


class Keep(Enum):
    """Leave the stored validators as they are."""

    VALIDATORS = "keep"


KEEP = Keep.VALIDATORS


@dataclass(frozen=True, slots=True, kw_only=True)
class Validators:
    """What to send as If-None-Match / If-Modified-Since for ``url``."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    document_sha256: str | None = None


class ProvisioningState:
    """Reads and writes ``provisioning.json`` in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / STATE_FILE
        self._lock_path = Path(data_dir) / f"{STATE_FILE}.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ProvisioningError(
                f"The provisioning state {self.path} cannot be locked ({exc.strerror}); "
                "check that the data directory is writable."
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ProvisioningError(
                f"The provisioning state {self.path} cannot be read ({exc.strerror})."
            ) from exc
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError("not a version 1 state object")
            return data
        except ValueError as exc:
            damaged = self.path.with_name(f"{STATE_FILE}.damaged")
            with contextlib.suppress(OSError):
                os.replace(self.path, damaged)
            _log.warning("provisioning.state.damaged", path=str(self.path), error=str(exc))
            return {}

    def _write(self, data: dict[str, Any]) -> None:
        data["version"] = STATE_VERSION
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        try:
            write_file(self.path, text.encode("utf-8"), mode=SECRET_MODE)
        except OSError as exc:
            raise ProvisioningError(
                f"The provisioning state {self.path} could not be written ({exc.strerror}); "
                "check the free space and permissions of the data directory."
            ) from exc

    def last_result(self) -> FetchResult | None:
        with self._locked():
            data = self._read()
        raw = data.get("last_result")
        if not isinstance(raw, dict):
            return None
        try:
            return FetchResult.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            _log.warning("provisioning.state.damaged", path=str(self.path), error=str(exc))
            return None

    def validators(self, url: str) -> Validators | None:
        with self._locked():
            data = self._read()
        raw = data.get("validators")
        if not isinstance(raw, dict) or raw.get("url") != url:
            return None
        return Validators(
            url=url,
            etag=raw.get("etag") if isinstance(raw.get("etag"), str) else None,
            last_modified=(
                raw.get("last_modified") if isinstance(raw.get("last_modified"), str) else None
            ),
            document_sha256=(
                raw.get("document_sha256") if isinstance(raw.get("document_sha256"), str) else None
            ),
        )

    def record(self, result: FetchResult, *, validators: Validators | Keep | None = KEEP) -> None:
        """Save ``result`` as the last result. ``validators``: new ones to keep, None to
        forget them, ``KEEP`` (the default) to leave them as they are."""
        with self._locked():
            data = self._read()
            data["last_result"] = result.to_dict()
            if validators is None:
                data.pop("validators", None)
            elif isinstance(validators, Validators):
                data["validators"] = {
                    "url": validators.url,
                    "etag": validators.etag,
                    "last_modified": validators.last_modified,
                    "document_sha256": validators.document_sha256,
                }
            self._write(data)
