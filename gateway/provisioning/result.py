"""The result of one provisioning run (a fetch, or a document applied from a file or
the API): what is kept as the *last result* and shown by ``sipsgate provision
status``, ``GET /api/v1/provisioning`` and the Settings page. It never holds a secret."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.provisioning.apply import ApplyResult


class FetchStatus(StrEnum):
    APPLIED = "applied"  # a document was applied and changed something
    UNCHANGED = "unchanged"  # a document was applied; the store already said all of it
    NOT_MODIFIED = "not-modified"  # the server answered 304: not applied again
    INVALID = "invalid"  # the document was refused: nothing changed
    UNAUTHORIZED = "unauthorized"  # 401: wrong or missing digest credentials
    REJECTED = "rejected"  # the server's certificate was rejected by the trust decision
    REFUSED = "refused"  # the server refused sipsgate's client certificate (device identity)
    HTTP_ERROR = "http-error"  # another HTTP status
    FAILED = "failed"  # no answer: connection, TLS, timeout
    NOT_CONFIGURED = "not-configured"  # provisioning.url is empty


OK_STATUSES = frozenset({FetchStatus.APPLIED, FetchStatus.UNCHANGED, FetchStatus.NOT_MODIFIED})


class Trigger(StrEnum):
    START = "start"
    INTERVAL = "interval"
    DEMAND = "demand"  # `sipsgate provision now`, POST /api/v1/provisioning/fetch
    FILE = "file"  # `sipsgate provision apply FILE`
    API = "api"  # POST /api/v1/provisioning/apply


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    at: datetime
    trigger: Trigger
    status: FetchStatus
    url: str | None = None
    http_status: int | None = None
    attempts: int = 0
    duration_ms: int = 0
    apply: ApplyResult | None = None
    errors: tuple[str, ...] = ()
    etag: str | None = None
    last_modified: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "trigger": self.trigger.value,
            "status": self.status.value,
            "ok": self.ok,
            "url": self.url,
            "http_status": self.http_status,
            "attempts": self.attempts,
            "duration_ms": self.duration_ms,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "errors": list(self.errors),
            "apply": self.apply.to_dict() if self.apply is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FetchResult:
        at = datetime.fromisoformat(str(data["at"]))
        if at.tzinfo is None:
            raise ValueError("the result time has no time zone")
        apply = data.get("apply")
        http_status = data.get("http_status")
        return cls(
            at=at,
            trigger=Trigger(data["trigger"]),
            status=FetchStatus(data["status"]),
            url=str(data["url"]) if data.get("url") is not None else None,
            http_status=int(http_status) if http_status is not None else None,
            attempts=int(data.get("attempts", 0)),
            duration_ms=int(data.get("duration_ms", 0)),
            apply=ApplyResult.from_dict(apply) if isinstance(apply, Mapping) else None,
            errors=tuple(str(e) for e in data.get("errors", ())),
            etag=data.get("etag"),
            last_modified=data.get("last_modified"),
        )
