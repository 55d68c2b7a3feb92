"""Response bodies and downloads shared by the API and the pages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from certstore import render
from certstore.model import AddResult, Certificate
from certstore.store import ExpiringItem, RestoreSummary
from certstore.x509 import to_pem
from gateway.admin.parsing import safe_filename

PEM_TYPE = "application/x-pem-file"
DER_TYPE = "application/pkix-cert"
P7B_TYPE = "application/pkcs7-mime"
CSR_TYPE = "application/pkcs10"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEVICE_KEY_FILENAME = "sipsgate-device-with-key.pem"


def download(data: bytes, *, content_type: str, filename: str) -> web.Response:
    return web.Response(
        body=data,
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def certificate_filename(cert: Certificate, extension: str) -> str:
    base = safe_filename(cert.common_name or "") or "certificate"
    return f"{base}-{cert.fingerprint[:12]}.{extension}"


def certificate_download(cert: Certificate, fmt: str) -> web.Response:
    if fmt == "der":
        return download(cert.der, content_type=DER_TYPE, filename=certificate_filename(cert, "der"))
    return download(to_pem(cert), content_type=PEM_TYPE, filename=certificate_filename(cert, "pem"))


def add_result_body(result: AddResult, now: datetime, notes: Sequence[str] = ()) -> dict[str, Any]:
    return {**render.add_result(result, now), "notes": list(notes)}


def expiring_item(item: ExpiringItem, now: datetime) -> dict[str, Any]:
    return {
        "role": item.role,
        "ref": item.ref,
        "not_after": render.iso(item.not_after),
        "days_left": item.days_left,
        "certificate": render.certificate_summary(item.certificate, now),
    }


def restore_summary(summary: RestoreSummary) -> dict[str, Any]:
    return {
        "trust": summary.trust,
        "pins": summary.pins,
        "rejected": summary.rejected,
        "settings_restored": summary.settings_restored,
        "secrets_restored": summary.secrets_restored,
    }
