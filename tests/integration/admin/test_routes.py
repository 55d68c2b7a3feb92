"""Every route needs an admin, and the router and docs/openapi.yaml agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.admin_support import AdminHarness

OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# Reachable without a login: liveness, the login form itself, and the CSS/JS it uses.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/login"), ("POST", "/login")}


def concrete(path: str) -> str:
    return path.replace("{fingerprint}", "a" * 64).replace("{id}", "1")


def app_routes(app: web.Application) -> list[tuple[str, str]]:
    routes = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside every GET
        info = route.resource
        assert info is not None
        routes.append((route.method, info.canonical))
    return routes


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path in ("/healthz", "/readyz", "/metrics")


class TestEveryRouteNeedsAuthentication:
    async def test_walk_the_router(self, admin: AdminHarness) -> None:
        """Without credentials the API answers 401 and the pages send to the login form."""
        client = admin.client()
        checked = 0
        for method, path in app_routes(admin.app):
            if (method, path) in PUBLIC:
                continue
            url = concrete(path)
            if path == "/static":
                url = "/static/admin.css"
                async with client.get(url) as response:
                    assert response.status == 200  # public: the login page needs its CSS
                continue
            async with client.request(method, url, allow_redirects=False) as response:
                if is_api(path):
                    assert response.status == 401, (method, path)
                    assert (await response.json())["error"]["code"] == "unauthorized"
                    assert "WWW-Authenticate" in response.headers
                elif method == "GET":
                    assert response.status == 303, (method, path)
                    assert response.headers["Location"].startswith("/login?next=")
                else:
                    assert response.status == 401, (method, path)
            checked += 1
        assert checked > 40

    async def test_public_routes_are_only_these(self, admin: AdminHarness) -> None:
        routes = set(app_routes(admin.app))
        assert routes >= PUBLIC
        client = admin.client()
        async with client.get("/healthz") as response:
            assert response.status == 200


class TestOpenApiMatchesTheRouter:
    def test_paths_and_methods_agree_both_ways(self, admin: AdminHarness) -> None:
        document = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
        assert document["openapi"].startswith("3.1")
        documented = {
            (method.upper(), path)
            for path, item in document["paths"].items()
            for method in item
            if method in HTTP_METHODS
        }
        served = {(m, p) for m, p in app_routes(admin.app) if is_api(p)}
        assert served - documented == set(), "routes missing from docs/openapi.yaml"
        assert documented - served == set(), "documented routes the app does not serve"

    @pytest.mark.parametrize("path", ["/api/v1/trust", "/api/v1/settings"])
    def test_every_operation_documents_401(self, path: str) -> None:
        document = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
        for method, operation in document["paths"][path].items():
            if method in HTTP_METHODS:
                assert "401" in operation["responses"]
