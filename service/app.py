"""The FastAPI application: `create_app(settings)` builds it; the lifespan opens Redis once per process."""

from __future__ import annotations

import hashlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from core.settings import Settings, load_settings
from core.store import Store
from core.vapid import load_or_create_dev_key, load_private_key, private_key_pem, public_key_b64
from service import editor, errors, hooks, ops, pages, reader, results
from service.guard import Guard
from service.state import ApiState

log = logging.getLogger("nabaa.api")


class UnicodeJSON(JSONResponse):
    """JSON as UTF-8, never ASCII-escaped (api-v1.md)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    if settings.redis_url is None:
        raise RuntimeError("create_app needs REDIS_URL (nabaa run starts an embedded Redis and sets it)")
    if settings.vapid_private_key_file is not None:
        key = load_private_key(settings.vapid_private_key_file)
    else:
        key = load_or_create_dev_key(settings.vapid_key_path)
    secret = hashlib.sha256(b"nabaa client buckets\0" + private_key_pem(key)).digest()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = await Store.open(settings.redis_url, settings.redis_prefix)
        app.state.nabaa = ApiState(settings, store, public_key_b64(key), secret)
        settings.tokens()  # development: make the token now, not on the first request
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(
        title="Nabaa",
        version="1.0.0",
        summary="Self-hosted, real-time Web Push notifications for news publishers",
        lifespan=lifespan,
        default_response_class=UnicodeJSON,
        docs_url="/api/docs",
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(reader.router)
    app.include_router(editor.router)
    app.include_router(results.router)
    app.include_router(hooks.router)
    app.include_router(ops.router)
    app.include_router(pages.router)
    app.add_middleware(
        CORSMiddleware, allow_origins=[settings.site_origin], allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Content-Type", "Authorization", "Idempotency-Key"], max_age=600,
    )
    app.add_middleware(Guard, site_origin=settings.site_origin)
    return app
