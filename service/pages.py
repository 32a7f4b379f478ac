"""The pages and scripts of `web/`: the demo article, the widget, the service worker, the dashboard."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from service.errors import ApiError

WEB_DIR = Path(os.environ.get("NABAA_WEB_DIR", Path(__file__).resolve().parent.parent / "web"))

router = APIRouter(include_in_schema=False)

NO_CACHE = {"Cache-Control": "no-cache"}

# A worker is governed by the CSP of its own script's response, not by the page's. The API's
# `default-src 'none'` would block every fetch of the service worker (its delivered/clicked events, its
# re-subscription after pushsubscriptionchange); the Guard keeps a Content-Security-Policy a route sets.
WORKER_CSP = "default-src 'self'; img-src 'self' https: data:; connect-src 'self'; frame-ancestors 'none'"


def _file(relative: str, media_type: str | None = None, headers: dict | None = None) -> FileResponse:
    path = (WEB_DIR / relative).resolve()
    if not path.is_file() or WEB_DIR.resolve() not in path.parents:
        raise ApiError(404, "not_found", f"no page at /{relative}")
    return FileResponse(path, media_type=media_type, headers=headers)


@router.get("/")
async def article():
    return _file("index.html", "text/html; charset=utf-8", NO_CACHE)


@router.get("/widget.js")
async def widget():
    return _file("widget.js", "text/javascript; charset=utf-8", NO_CACHE)


@router.get("/sw.js")
async def service_worker():
    # Served from the root, so its scope is the whole site.
    return _file("sw.js", "text/javascript; charset=utf-8", {**NO_CACHE, "Service-Worker-Allowed": "/",
                                                                       "Content-Security-Policy": WORKER_CSP})


@router.get("/manifest.webmanifest")
async def manifest():
    return _file("manifest.webmanifest", "application/manifest+json")


@router.get("/admin")
async def admin_redirect():
    return RedirectResponse("/admin/", status_code=308)


@router.get("/admin/")
async def admin():
    return _file("admin/index.html", "text/html; charset=utf-8", NO_CACHE)


@router.get("/admin/{name}")
async def admin_asset(name: str):
    return _file(f"admin/{name}", None, NO_CACHE)


@router.get("/static/{name}")
async def static(name: str):
    return _file(f"static/{name}", None, {"Cache-Control": "public, max-age=3600"})
