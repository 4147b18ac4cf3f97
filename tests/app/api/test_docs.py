"""``/docs`` and ``/redoc`` work with no network: assets come from the package, a real browser shows every route."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from support.browser import chromium_binary, dom, screenshot
from support.server import uvicorn_thread
from support.service import make_settings

from app.api.docs import ASSETS

needs_chromium = pytest.mark.skipif(
    chromium_binary() is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)"
)


@pytest.fixture
def service(models_dir: Path):
    with uvicorn_thread(make_settings(models_dir, admin_token="t" * 16)) as (base, _):
        yield base


def routes(base: str) -> list[str]:
    return sorted(httpx.get(f"{base}/openapi.json").json()["paths"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_pages_load_only_the_service_own_assets(service, page):
    html = httpx.get(f"{service}{page}").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert urls and all(u.startswith("/static/docs/") for u in urls), urls
    assert "cdn" not in html and "fonts.googleapis" not in html
    for url in urls:
        assert httpx.get(f"{service}{url}").status_code == 200, url


def test_the_licences_ship_with_the_assets():
    names = {p.name for p in ASSETS.iterdir()}
    assert {"LICENSE.swagger-ui", "NOTICE.swagger-ui", "LICENSE.redoc"} <= names


@needs_chromium
def test_swagger_ui_shows_every_route_offline(service, tmp_path):
    page = dom(f"{service}/docs", tmp_path / "profile")
    shown = set(re.findall(r'data-path="([^"]+)"', page))
    assert shown == set(routes(service)), page[-2000:]
    assert screenshot(f"{service}/docs", tmp_path / "profile2", tmp_path / "docs.png").read_bytes()[:4] == b"\x89PNG"


@needs_chromium
def test_redoc_shows_every_route_offline(service, tmp_path):
    text = re.sub(r"<[^>]+>", "", dom(f"{service}/redoc", tmp_path / "profile"))
    missing = [path for path in routes(service) if path not in text]
    assert not missing, text[-2000:]


@pytest.mark.anyio
async def test_every_error_in_the_openapi_has_a_schema_and_a_real_example(client):
    spec = (await client.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for op in operations.values():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    body = answer["content"]["application/json"]
                    assert "schema" in body, (path, status)
                    assert body.get("example") != {"detail": "string"}, (path, status)
    gate = spec["paths"]["/gate/{target}/{path}"]["post"]["responses"]
    assert "gate target" in gate["404"]["description"]
    assert gate["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/GateRefusal")
