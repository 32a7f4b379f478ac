"""The Redis connection: one client per process, made at start-up and passed down.

`connect()` gives a `redis.asyncio` client (or a cluster client for `redis+cluster://` / `rediss+cluster://`
URLs) that retries connection errors with back-off, and `Store` wraps it with what every process needs:
the key names, the server's capabilities (`WAITAOF` on Redis ≥ 7.2), and a check that the server will never
evict our keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import ConfigError, StoreUnavailable
from core.keys import Keys

log = logging.getLogger("nabaa.store")

UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str) -> aioredis.Redis | RedisCluster:
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6)
    common = dict(
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_timeout=10,
        socket_connect_timeout=3,
        health_check_interval=15,
    )
    if "+cluster://" in url:
        return RedisCluster.from_url(url.replace("+cluster://", "://", 1), **common)
    # A bounded pool that makes a burst wait for a connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=30, **common)
    return aioredis.Redis(connection_pool=pool)


@dataclass
class Store:
    redis: aioredis.Redis | RedisCluster
    keys: Keys
    has_waitaof: bool = False
    _scripts: dict = field(default_factory=dict, repr=False)

    @classmethod
    async def open(cls, url: str, prefix: str, *, check_policy: bool = True) -> "Store":
        client = connect(url)
        store = cls(client, Keys(prefix))
        try:
            info = await client.info("server")
            version = _server_version(info)
            store.has_waitaof = version >= (7, 2)
            if check_policy:
                await store.check_eviction_policy()
        except UNAVAILABLE as exc:
            log.warning("Redis at start-up: %s; will keep retrying", exc)
        return store

    async def check_eviction_policy(self) -> None:
        config = await self.redis.config_get("maxmemory-policy")
        policy = _first_value(config, "maxmemory-policy")
        if policy and policy != "noeviction":
            raise ConfigError(
                f"REDIS_URL: the server's maxmemory-policy is {policy!r}, which silently deletes subscribers; "
                "set `maxmemory-policy noeviction` in redis.conf"
            )

    def script(self, source: str):
        """A registered Lua script (EVALSHA with a fallback to EVAL)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    async def make_durable(self) -> None:
        """Before answering 202: wait until the write is in the AOF on disk, where the server can say so."""
        if not self.has_waitaof:
            return
        try:
            await self.redis.execute_command("WAITAOF", 1, 0, 1000)
        except RedisError as exc:  # appendonly off: nothing to wait for
            if "appendonly" not in str(exc).lower():
                raise

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()


def _server_version(info: dict) -> tuple[int, ...]:
    if isinstance(info, dict) and "redis_version" not in info:  # cluster: {node: info}
        info = next(iter(info.values()), {}) if info else {}
    text = str(info.get("redis_version", "0"))
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def _first_value(config: dict, name: str) -> str | None:
    if name in config:
        value = config[name]
    else:
        nested = [v for v in config.values() if isinstance(v, dict)]
        value = nested[0].get(name) if nested else None
    if isinstance(value, bytes):
        value = value.decode()
    return value


def unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"Redis is not answering ({exc.__class__.__name__}); try again shortly")
