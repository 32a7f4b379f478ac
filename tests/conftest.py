"""Shared fixtures: a real Redis (the machine's, each test under its own key prefix), settings pointing
at a local fake push service, the API in-process, and a worker that drains what is queued."""

from __future__ import annotations

import asyncio
import os
import secrets
from contextlib import asynccontextmanager

import httpx
import pytest
import redis

from core.settings import load_settings
from core.store import Store
from nabaa.embedded_redis import EmbeddedRedis, free_port

TEST_REDIS_URL = os.environ.get("NABAA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """The machine's Redis if it answers, else one this test session starts."""
    if _redis_reachable(TEST_REDIS_URL):
        yield TEST_REDIS_URL
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port(), appendonly=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix(redis_url):
    name = f"t{secrets.token_hex(4)}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{{{name}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch):
    for name in list(os.environ):
        if name in {"REDIS_URL", "EDITOR_TOKEN", "VAPID_PRIVATE_KEY_FILE", "VAPID_SUBJECT", "SITE_ORIGIN",
                    "PUSH_ALLOWED_HOSTS", "PUSH_ALLOW_INSECURE", "TOPICS_FILE", "PUSH_CA_FILE", "DATA_DIR",
                    "NABAA_ENV", "REDIS_PREFIX"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))


EDITOR_TOKEN = "test-editor-token-0123456789"


@pytest.fixture
def make_settings(redis_url, prefix, tmp_path):
    def make(**overrides):
        values = dict(redis_url=redis_url, redis_prefix=prefix, data_dir=tmp_path / "data",
                      editor_token=[EDITOR_TOKEN], site_origin="http://127.0.0.1:8000",
                      push_allow_insecure=True, quiet_hours="", _env_file=None)
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
async def store(redis_url, prefix):
    opened = await Store.open(redis_url, prefix)
    yield opened
    await opened.close()


@asynccontextmanager
async def api_client(settings):
    from service.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            client.app = app
            yield client


def auth(token: str = EDITOR_TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def drain(settings, timeout_s: float = 30.0, transport=None, **worker_kwargs):
    """Run one worker in burst mode until nothing is left to send, through `transport` (by default the one
    the settings make); the transport is closed after."""
    from workers.delivery import Worker
    from workers.runtime import transport_from, vapid_from

    store = await Store.open(settings.redis_url, settings.redis_prefix)
    transport = transport or transport_from(settings)
    worker = Worker(settings, store, transport, vapid_from(settings), burst=True, **worker_kwargs)
    try:
        await asyncio.wait_for(worker.run(), timeout_s)
    finally:
        await transport.close()
        await store.close()
    return worker
