"""Hostile input (test-plan.md, "Bad input" rows 1–20) and the send-time guards against SSRF (F11, F12).

Every bad request is one row of a table: it must get the status and the stable error code the row names,
and leave nothing behind: every key under the test's prefix byte-identical before and after (the rate-limit
counters excepted), so no subscription, alert, queued task or retry was written, and neither fake push
service saw a connection. `test_bad_rows_in_one_app_then_a_real_broadcast` replays the rows that could
reach a fake, then broadcasts for real, to show that nothing a bad request left behind is ever sent.

Two fake push services: `fake` is allow-listed and holds one subscriber stored before each row (the
"resident", so a wrongly queued alert would reach it), `trap` is never allow-listed: the endpoints of the
rows point at it (and at `fake`) in every spelling of 127.0.0.1 we know.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from core.keys import SHARDS
from core.models import SubscriptionIn, to_subscription
from core.records import endpoint_hash, shard_of, subscription_id
from core.settings import DEFAULT_PUSH_HOSTS
from core.store import Store
from core.validation import HostPolicy, is_public_address
from core.webpush import PushRequest
from service.auth import token_id
from tests.conftest import EDITOR_TOKEN, api_client, drain
from tests.fakepush import FakePushService, Subscriber, b64url_encode
from workers.transport import BlockedAddress, GuardedResolver, Transport

FCM = "https://fcm.googleapis.com/fcm/send/"
CLIENT_IP = "203.0.113.7"  # the address tests/conftest.py's api_client connects from
EVIL = "https://evil.example"
NOTHING = object()

# ----------------------------------------------------------------------------------------------- world


@dataclass
class World:
    client: httpx.AsyncClient
    settings: Any
    fake: FakePushService
    trap: FakePushService
    resident: Subscriber

    @property
    def state(self):
        return self.client.app.state.nabaa

    @property
    def port(self) -> int:
        return self.fake.port


def strict_settings(make_settings, fake, **overrides):
    """Production-like: the browsers' push services (plus a self-hosted one); no PUSH_ALLOW_INSECURE, so
    even the fake's address, listed, is refused."""
    hosts = [*DEFAULT_PUSH_HOSTS, "push.example.test", f"127.0.0.1:{fake.port}"]
    return make_settings(push_allow_insecure=False, push_allowed_hosts=hosts, **overrides)


def dev_settings(make_settings, fake, **overrides):
    """PUSH_ALLOW_INSECURE with exactly the fake listed: the mode that must still refuse everything else."""
    return make_settings(push_allowed_hosts=[*DEFAULT_PUSH_HOSTS, f"127.0.0.1:{fake.port}"], **overrides)


async def store_directly(state, subscriber: Subscriber, **extra) -> str:
    """Store a subscription without the API (the resident of a strict world could not subscribe)."""
    policy = HostPolicy((subscriber.origin.split("://", 1)[1],), True)
    data = SubscriptionIn.model_validate({**subscriber.subscription_json(), **extra})
    sub = to_subscription(data, policy, state.settings.topic_ids)
    await state.subs.upsert(sub)
    return sub.id


@asynccontextmanager
async def world(make_settings, profile: str = "strict", **overrides):
    async with FakePushService() as fake, FakePushService() as trap:
        make = strict_settings if profile == "strict" else dev_settings
        settings = make(make_settings, fake, **overrides)
        async with api_client(settings) as client:
            resident = fake.new_subscriber()
            w = World(client, settings, fake, trap, resident)
            await store_directly(w.state, resident, lang="ar")
            yield w


async def snapshot(w: World) -> dict:
    """Everything stored under the test's prefix, except the counters that requests move without storing
    anything: rate limits, and the alarm counters of /metrics (`{P:m}`)."""
    redis, keys = w.state.store.redis, w.state.store.keys
    counters = await w.state.subs.counters()
    pipe = redis.pipeline(transaction=False)
    for shard in range(SHARDS):
        pipe.hlen(keys.subs(shard))
    records = sum(await pipe.execute())
    dumped = {}
    async for key in redis.scan_iter(match=f"{{{keys.prefix}:*", count=1000):
        if b":r}:rate:" not in key and b":m}:" not in key:
            dumped[key] = await redis.dump(key)
    return {
        "subscriptions": counters.get("all", 0), "records": records,
        "alerts": await redis.zcard(keys.alerts), "tasks": await redis.xlen(keys.tasks),
        "scheduled": await redis.zcard(keys.scheduled), "retry": await redis.zcard(keys.retry),
        "keys": dumped,
    }


def assert_nothing_sent(w: World) -> None:
    assert w.fake.connections == 0 and w.fake.count == 0, w.fake.received
    assert w.trap.connections == 0 and w.trap.count == 0, w.trap.received


async def everything_stored(store: Store) -> list[tuple[bytes, bytes]]:
    """Every key and every value under the prefix, read by type (DUMP may compress a value)."""
    redis = store.redis
    found = []
    async for key in redis.scan_iter(match=f"{{{store.keys.prefix}:*", count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            values = [await redis.get(key)]
        elif kind == "hash":
            values = [b for kv in (await redis.hgetall(key)).items() for b in kv]
        elif kind == "zset":
            values = [m for m, _ in await redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "list":
            values = await redis.lrange(key, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(key))
        elif kind == "stream":
            values = [b for _, entry in await redis.xrange(key) for kv in entry.items() for b in kv]
        else:
            values = []
        found += [(key, value if isinstance(value, bytes) else str(value).encode()) for value in values]
        found.append((key, key))
    return found


# ----------------------------------------------------------------------------------------------- keys


KEYS = Subscriber.generate()
RAW = KEYS.public_key_bytes  # 0x04 | x | y
X, Y = RAW[1:33], RAW[33:]


def b64(raw: bytes) -> str:
    return b64url_encode(raw)


def std_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def off_curve() -> bytes:
    y = bytearray(Y)
    y[-1] ^= 1
    return b"\x04" + X + bytes(y)


def with_bits(value: str) -> str:
    """The same bytes spelled with a non-zero unused bit in the last character (not canonical)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return value[:-1] + alphabet[alphabet.index(value[-1]) | 1]


def subscription(endpoint: str | None = None, **extra) -> dict:
    token = Subscriber.generate().p256dh[:40]
    body = {"endpoint": endpoint or FCM + token, "expirationTime": None,
            "keys": {"p256dh": KEYS.p256dh, "auth": KEYS.auth}}
    body.update(extra)
    return body


def with_keys(**keys) -> Callable[[World], dict]:
    return lambda w: {**subscription(), "keys": {"p256dh": KEYS.p256dh, "auth": KEYS.auth, **keys}}


def without_key(name: str) -> Callable[[World], dict]:
    def make(w):
        body = subscription()
        del body["keys"][name]
        return body

    return make


def at(endpoint: str) -> Callable[[World], dict]:
    """A subscription whose endpoint is `endpoint`, with {port} the fake's and {trap} the trap's port."""
    return lambda w: subscription(endpoint.format(port=w.port, trap=w.trap.port))


# ----------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Bad:
    id: str
    status: int
    code: str
    body: Any = NOTHING  # a JSON value, sent with ASCII escapes (so lone surrogates can be sent), or f(world)
    raw: Any = None  # bytes sent as they are, or f(world) → bytes
    method: str = "POST"
    path: str = "/api/v1/subscriptions"
    headers: dict = field(default_factory=dict)
    editor: bool = False  # send the editor token
    field: str | None = None  # the error's `field`, when one is at fault
    mentions: tuple[str, ...] = ()  # what the message must name (a limit, a range)
    profile: str = "strict"


def alert(body, *, status=422, code, field=None, mentions=(), headers=None, id):
    return Bad(id, status, code, body=body, path="/api/v1/alerts", editor=True, field=field, mentions=mentions,
               headers=headers or {}, profile="dev")


def click(url: str, code: str = "url_not_same_origin", id: str = "") -> Bad:
    return alert({"title": "x", "url": url}, code=code, field="url", id=f"r16-click-{id}")


def asset(name: str, url: str, code: str = "url_not_https", id: str = "") -> Bad:
    return alert({"title": "x", name: url}, code=code, field=name, id=f"r16-{name}-{id}")


def deep(depth: int) -> bytes:
    return b'{"endpoint":' + b"[" * depth + b"]" * depth + b"}"


async def chunked_megabyte():
    for _ in range(64):
        yield b" " * 16384


SUBSCRIBE_ROWS = [
    # 1 — malformed JSON, wrong types, missing or empty keys
    Bad("r01-malformed-json", 400, "malformed_json", raw=b'{"endpoint": "https://fcm.googleapis.com/x",'),
    Bad("r01-json-trailing-garbage", 400, "malformed_json", raw=b"{} x"),
    Bad("r01-not-utf8", 400, "malformed_json", raw=b'{"endpoint": "\xff\xfe"}'),
    Bad("r01-empty-body", 422, "missing_field", raw=b""),
    Bad("r01-not-an-object", 422, "wrong_type", body=[1, 2, 3]),
    Bad("r01-json-null", 422, "wrong_type", raw=b"null"),
    Bad("r01-endpoint-number", 422, "wrong_type", body=lambda w: {**subscription(), "endpoint": 123},
        field="endpoint"),
    Bad("r01-endpoint-list", 422, "wrong_type", body=lambda w: {**subscription(), "endpoint": [FCM]},
        field="endpoint"),
    Bad("r01-endpoint-nan", 422, "wrong_type", raw=b'{"endpoint": NaN, "keys": {"p256dh": "x", "auth": "y"}}',
        field="endpoint"),
    Bad("r01-endpoint-missing", 422, "missing_field", body={"keys": {"p256dh": KEYS.p256dh, "auth": KEYS.auth}},
        field="endpoint"),
    Bad("r01-keys-string", 422, "wrong_type", body=lambda w: {**subscription(), "keys": "x"}, field="keys"),
    Bad("r01-keys-null", 422, "wrong_type", body=lambda w: {**subscription(), "keys": None}, field="keys"),
    Bad("r01-keys-list", 422, "wrong_type", body=lambda w: {**subscription(), "keys": [KEYS.p256dh]},
        field="keys"),
    Bad("r01-keys-missing", 422, "missing_field", body=lambda w: {"endpoint": FCM + "abc"}, field="keys"),
    Bad("r01-p256dh-missing", 422, "missing_field", body=without_key("p256dh"), field="keys.p256dh"),
    Bad("r01-p256dh-empty", 422, "invalid_key", body=with_keys(p256dh=""), field="keys.p256dh"),
    Bad("r01-p256dh-number", 422, "wrong_type", body=with_keys(p256dh=4), field="keys.p256dh"),
    Bad("r01-auth-missing", 422, "missing_field", body=without_key("auth"), field="keys.auth"),
    Bad("r01-auth-empty", 422, "invalid_key", body=with_keys(auth=""), field="keys.auth"),
    Bad("r01-auth-null", 422, "wrong_type", body=with_keys(auth=None), field="keys.auth"),
    Bad("r01-topics-string", 422, "wrong_type", body=lambda w: subscription(topics="sports"), field="topics"),
    Bad("r01-topic-number", 422, "wrong_type", body=lambda w: subscription(topics=[1]), field="topics[0]"),
    Bad("r01-lang-bad", 422, "invalid_format", body=lambda w: subscription(lang="arabic<script>"), field="lang"),
    Bad("r01-unknown-topic", 422, "unknown_topic", body=lambda w: subscription(topics=["sports", "nope"]),
        field="topics[1]"),
    # 2 — big bodies, many topics, deep nesting: refused before parsing
    Bad("r02-one-megabyte", 413, "body_too_large", raw=lambda w: json.dumps(
        subscription(padding="x" * 1_000_000)).encode(), mentions=("16384",)),
    Bad("r02-one-megabyte-chunked", 413, "body_too_large", raw=lambda w: chunked_megabyte()),
    Bad("r02-10000-topics", 413, "body_too_large", body=lambda w: subscription(topics=["sports"] * 10_000)),
    Bad("r02-17-topics", 422, "too_many_items", body=lambda w: subscription(topics=["sports"] * 17),
        field="topics", mentions=("16",)),
    Bad("r02-long-topic-id", 422, "text_length", body=lambda w: subscription(topics=["s" * 5000]),
        field="topics[0]"),
    Bad("r02-nested-1000", 400, "json_too_deep", raw=deep(1000)),
    Bad("r02-nested-objects", 400, "json_too_deep", raw=b'{"a":' * 200 + b"1" + b"}" * 200),
    Bad("r02-content-length-lies", 400, "invalid_content_length", raw=b"{}", headers={"content-length": "abc"}),
    # 3 — not https
    Bad("r03-http-fcm", 422, "endpoint_not_https", body=at("http://fcm.googleapis.com/fcm/send/x")),
    Bad("r03-http-listed-fake", 422, "endpoint_not_https", body=at("http://127.0.0.1:{port}/push/x")),
    Bad("r03-ws", 422, "endpoint_not_https", body=at("wss://fcm.googleapis.com/fcm/send/x")),
    Bad("r03-ftp", 422, "endpoint_not_https", body=at("ftp://fcm.googleapis.com/fcm/send/x")),
    Bad("r03-no-scheme", 422, "invalid_endpoint", body=at("fcm.googleapis.com/fcm/send/x")),
    Bad("r03-scheme-relative", 422, "invalid_endpoint", body=at("//fcm.googleapis.com/fcm/send/x")),
    Bad("r03-javascript", 422, "invalid_endpoint", body=at("javascript:alert(1)")),
    Bad("r03-http-dev-unlisted", 422, "endpoint_not_https", body=at("http://127.0.0.1:{trap}/push/x"),
        profile="dev"),
    # 4 — IP literals and private, loopback, link-local, metadata addresses (in every spelling)
    *(Bad(f"r04-{name}", 422, "endpoint_ip_literal", body=at(f"https://{host}/push/x")) for name, host in [
        ("loopback", "127.0.0.1"), ("loopback-listed-not-insecure", "127.0.0.1:{port}"), ("ipv6-loopback", "[::1]"),
        ("metadata", "169.254.169.254"), ("ten", "10.0.0.1"), ("192-168", "192.168.1.1"),
        ("cgnat", "100.64.0.1"), ("zero", "0.0.0.0"), ("ipv6-any", "[::]"), ("ipv6-link-local", "[fe80::1]"),
        ("ipv6-ula", "[fd00::1]"), ("ipv4-mapped", "[::ffff:127.0.0.1]"), ("ipv4-mapped-hex", "[::ffff:7f00:1]"),
        ("nat64", "[64:ff9b::a9fe:a9fe]"), ("decimal", "2130706433"), ("hex", "0x7f000001"),
        ("hex-dotted", "0x7f.0.0.1"), ("octal", "0177.0.0.1"), ("short", "127.1"), ("public", "8.8.8.8"),
        ("trailing-dot", "127.0.0.1."),
    ]),
    Bad("r04-zone-id", 422, "invalid_endpoint", body=at("https://[fe80::1%25eth0]/push/x")),
    Bad("r04-ipvfuture", 422, "invalid_endpoint", body=at("https://[v1.fe80::1]/push/x")),
    Bad("r04-percent-encoded-host", 422, "invalid_endpoint", body=at("https://%31%32%37.0.0.1/push/x")),
    *(Bad(f"r04-dev-{name}", 422, code, body=at(url), profile="dev") for name, url, code in [
        ("other-port", "http://127.0.0.1:{trap}/push/x", "endpoint_not_https"),
        ("https-other-port", "https://127.0.0.1:{trap}/push/x", "endpoint_ip_literal"),
        ("https-named-other-port", "https://fcm.googleapis.com:{trap}/push/x", "endpoint_bad_port"),
        ("short-spelling", "http://127.1:{port}/push/x", "endpoint_not_https"),
        ("decimal-spelling", "https://2130706433:{port}/push/x", "endpoint_ip_literal"),
        ("hex-spelling", "https://0x7f.0.0.1:{port}/push/x", "endpoint_ip_literal"),
        ("octal-spelling", "https://0177.0.0.1:{port}/push/x", "endpoint_ip_literal"),
        ("mapped-spelling", "https://[::ffff:127.0.0.1]:{port}/push/x", "endpoint_ip_literal"),
        ("ipv6-loopback", "https://[::1]:{port}/push/x", "endpoint_ip_literal"),
        ("localhost", "https://localhost:{port}/push/x", "endpoint_host_not_allowed"),
        ("metadata", "https://169.254.169.254/latest/meta-data/", "endpoint_ip_literal"),
        ("userinfo-to-listed", "http://127.0.0.1:{port}@127.0.0.1:{trap}/push/x", "invalid_endpoint"),
        ("leading-zero-port", "http://127.0.0.1:0{port}/push/x", "invalid_endpoint"),
    ]),
    # 5 — hosts not on the allow-list, and look-alikes
    *(Bad(f"r05-{name}", 422, code, body=at(url)) for name, url, code in [
        ("evil", "https://evil.example/push/x", "endpoint_host_not_allowed"),
        ("suffix-attack", "https://fcm.googleapis.com.evil.example/fcm/send/x", "endpoint_host_not_allowed"),
        ("prefix-attack", "https://xfcm.googleapis.com/fcm/send/x", "endpoint_host_not_allowed"),
        ("sibling", "https://android.googleapis.com/gcm/send/x", "endpoint_host_not_allowed"),
        ("suffix-without-dot", "https://evilpush.apple.com/x", "endpoint_host_not_allowed"),
        ("suffix-bare", "https://push.apple.com/x", "endpoint_host_not_allowed"),
        ("suffix-empty-label", "https://.push.apple.com/x", "invalid_endpoint"),
        ("allowed-in-path", "https://evil.example/fcm.googleapis.com/fcm/send/x", "endpoint_host_not_allowed"),
        ("allowed-in-query", "https://evil.example/?u=https://fcm.googleapis.com/", "endpoint_host_not_allowed"),
        ("allowed-in-fragment", "https://evil.example/#https://fcm.googleapis.com/", "invalid_endpoint"),
        ("fragment-userinfo", "https://evil.example#@fcm.googleapis.com/x", "invalid_endpoint"),
        ("allowed-as-userinfo", "https://fcm.googleapis.com@evil.example/x", "invalid_endpoint"),
        ("unicode-dot", "https://fcm\u3002googleapis.com/x", "invalid_endpoint"),
        ("fullwidth", "https://\uff46cm.googleapis.com/x", "invalid_endpoint"),
        ("idn-homograph", "https://xn--fcm-googleapis-com.evil/x", "endpoint_host_not_allowed"),
        ("encoded-dot", "https://fcm%2egoogleapis.com/x", "invalid_endpoint"),
        ("port-in-label", "https://fcm.googleapis.com:443.evil.example/x", "invalid_endpoint"),
        ("underscore", "https://a_b.push.apple.com/x", "invalid_endpoint"),
        ("dot-segments", "https://fcm.googleapis.com/fcm/../../admin", "invalid_endpoint"),
        ("encoded-dot-segments", "https://fcm.googleapis.com/fcm/%2e%2e/admin", "invalid_endpoint"),
    ]),
    # 6 — user-info, ports, whitespace, controls, backslashes, length
    *(Bad(f"r06-{name}", 422, code, body=at(url)) for name, url, code in [
        ("user", "https://user@fcm.googleapis.com/fcm/send/x", "invalid_endpoint"),
        ("user-password", "https://user:pw@fcm.googleapis.com/fcm/send/x", "invalid_endpoint"),
        ("empty-userinfo", "https://@fcm.googleapis.com/fcm/send/x", "invalid_endpoint"),
        ("port-8443", "https://fcm.googleapis.com:8443/fcm/send/x", "endpoint_bad_port"),
        ("port-80", "https://fcm.googleapis.com:80/fcm/send/x", "endpoint_bad_port"),
        ("port-0", "https://fcm.googleapis.com:0/fcm/send/x", "invalid_endpoint"),
        ("port-huge", "https://fcm.googleapis.com:99999/fcm/send/x", "invalid_endpoint"),
        ("port-empty", "https://fcm.googleapis.com:/fcm/send/x", "invalid_endpoint"),
        ("port-0443", "https://fcm.googleapis.com:0443/fcm/send/x", "invalid_endpoint"),
        ("space", "https://fcm.googleapis.com/fcm/send/a b", "invalid_endpoint"),
        ("leading-space", " https://fcm.googleapis.com/fcm/send/x", "invalid_endpoint"),
        ("trailing-newline", "https://fcm.googleapis.com/fcm/send/x\n", "invalid_endpoint"),
        ("tab-in-host", "https://fcm.google\tapis.com/fcm/send/x", "invalid_endpoint"),
        ("crlf-injection", "https://fcm.googleapis.com/x\r\nHost: evil.example", "invalid_endpoint"),
        ("nul", "https://fcm.googleapis.com/fcm/send/x\x00", "invalid_endpoint"),
        ("del", "https://fcm.googleapis.com/fcm/send/\x7f", "invalid_endpoint"),
        ("nbsp", "https://fcm.googleapis.com/fcm/send/\u00a0x", "invalid_endpoint"),
        ("backslash-host", "https://evil.example\\@fcm.googleapis.com/x", "invalid_endpoint"),
        ("backslash-path", "https://fcm.googleapis.com\\.evil.example/x", "invalid_endpoint"),
        ("backslash-slashes", "https:\\\\fcm.googleapis.com/x", "invalid_endpoint"),
        ("three-slashes", "https:///fcm.googleapis.com/x", "invalid_endpoint"),
    ]),
    Bad("r06-2049-chars", 422, "text_length", body=lambda w: subscription(FCM + "x" * (2049 - len(FCM))),
        field="endpoint", mentions=("2048",)),
    Bad("r06-60000-chars", 413, "body_too_large", body=lambda w: subscription(FCM + "x" * 60000)),
    # 7 — not strict base64url
    Bad("r07-p256dh-space", 422, "invalid_key", body=with_keys(p256dh=KEYS.p256dh[:40] + " " + KEYS.p256dh[40:]),
        field="keys.p256dh"),
    Bad("r07-p256dh-newline", 422, "invalid_key", body=with_keys(p256dh=KEYS.p256dh + "\n"), field="keys.p256dh"),
    Bad("r07-p256dh-standard-alphabet", 422, "invalid_key", body=with_keys(p256dh=std_b64(RAW[:-3] + b"\xfb\xff\xfe")),
        field="keys.p256dh"),
    Bad("r07-p256dh-plus", 422, "invalid_key", body=with_keys(p256dh="+" + KEYS.p256dh[1:]), field="keys.p256dh"),
    Bad("r07-p256dh-slash", 422, "invalid_key", body=with_keys(p256dh=KEYS.p256dh[:-1] + "/"), field="keys.p256dh"),
    Bad("r07-p256dh-equals-inside", 422, "invalid_key", body=with_keys(p256dh=KEYS.p256dh[:20] + "=" + KEYS.p256dh[21:]),
        field="keys.p256dh"),
    Bad("r07-p256dh-stray-padding", 422, "invalid_key", body=with_keys(p256dh=KEYS.p256dh + "=="),
        field="keys.p256dh"),
    Bad("r07-p256dh-dot", 422, "invalid_key", body=with_keys(p256dh=KEYS.p256dh[:-1] + "."), field="keys.p256dh"),
    Bad("r07-p256dh-non-ascii", 422, "invalid_key", body=with_keys(p256dh=KEYS.p256dh[:-1] + "\u0628"),
        field="keys.p256dh"),
    Bad("r07-p256dh-stray-bits", 422, "invalid_key", body=with_keys(p256dh=with_bits(KEYS.p256dh)),
        field="keys.p256dh"),
    Bad("r07-auth-stray-padding", 422, "invalid_key", body=with_keys(auth=KEYS.auth + "="), field="keys.auth"),
    Bad("r07-auth-triple-padding", 422, "invalid_key", body=with_keys(auth=KEYS.auth + "==="), field="keys.auth"),
    Bad("r07-auth-standard-alphabet", 422, "invalid_key", body=with_keys(auth=std_b64(b"\xfb\xff" * 8)),
        field="keys.auth"),
    Bad("r07-auth-stray-bits", 422, "invalid_key", body=with_keys(auth=with_bits(KEYS.auth)), field="keys.auth"),
    Bad("r07-auth-one-char", 422, "invalid_key", body=with_keys(auth="A"), field="keys.auth"),
    # 8 — p256dh not a 65-byte uncompressed point on P-256
    Bad("r08-64-bytes", 422, "invalid_p256dh", body=with_keys(p256dh=b64(RAW[:64])), field="keys.p256dh"),
    Bad("r08-66-bytes", 422, "invalid_p256dh", body=with_keys(p256dh=b64(RAW + b"\x00")), field="keys.p256dh"),
    Bad("r08-compressed-02", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x02" + X)), field="keys.p256dh"),
    Bad("r08-compressed-03", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x03" + X)), field="keys.p256dh"),
    Bad("r08-hybrid-06", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x06" + X + Y)), field="keys.p256dh"),
    Bad("r08-hybrid-07", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x07" + X + Y)), field="keys.p256dh"),
    Bad("r08-off-curve", 422, "invalid_p256dh", body=with_keys(p256dh=b64(off_curve())), field="keys.p256dh"),
    Bad("r08-all-zero", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x04" + bytes(64))), field="keys.p256dh"),
    Bad("r08-all-ff", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x04" + b"\xff" * 64)), field="keys.p256dh"),
    Bad("r08-infinity", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x00")), field="keys.p256dh"),
    Bad("r08-p384-point", 422, "invalid_p256dh", body=with_keys(p256dh=b64(b"\x04" + bytes(range(96)))),
        field="keys.p256dh"),
    Bad("r08-too-long-text", 422, "text_length", body=with_keys(p256dh="A" * 300), field="keys.p256dh"),
    # 9 — auth not exactly 16 bytes
    *(Bad(f"r09-auth-{n}-bytes", 422, "invalid_auth", body=with_keys(auth=b64(os.urandom(n))), field="keys.auth",
          mentions=("16",)) for n in (3, 15, 17, 32)),
    Bad("r09-auth-48-bytes", 422, "invalid_auth", body=with_keys(auth=b64(os.urandom(48))), field="keys.auth"),
]

CROSS_SITE_ROWS = [
    # 12 — cross-site form posts and foreign origins: 4xx, no change
    Bad("r12-text-plain-foreign-origin", 403, "cross_site_request",
        raw=lambda w: json.dumps(subscription()).encode(), headers={"content-type": "text/plain", "origin": EVIL}),
    Bad("r12-form-foreign-origin", 403, "cross_site_request", raw=b"endpoint=https%3A%2F%2Ffcm.googleapis.com%2Fx",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": EVIL}),
    Bad("r12-multipart-foreign-origin", 403, "cross_site_request", raw=b"--b\r\n\r\nx\r\n--b--",
        headers={"content-type": "multipart/form-data; boundary=b", "origin": EVIL}),
    Bad("r12-json-foreign-origin", 403, "cross_site_request", body=lambda w: subscription(),
        headers={"origin": EVIL}),
    Bad("r12-null-origin", 403, "cross_site_request", body=lambda w: subscription(), headers={"origin": "null"}),
    Bad("r12-look-alike-origin", 403, "cross_site_request", body=lambda w: subscription(),
        headers={"origin": "http://127.0.0.1:8000.evil.example"}),
    Bad("r12-text-plain-no-origin", 415, "unsupported_media_type",
        raw=lambda w: json.dumps(subscription()).encode(), headers={"content-type": "text/plain"}),
    Bad("r12-form-no-origin", 415, "unsupported_media_type", raw=b"endpoint=x",
        headers={"content-type": "application/x-www-form-urlencoded"}),
    Bad("r12-no-content-type", 415, "unsupported_media_type", raw=lambda w: json.dumps(subscription()).encode(),
        headers={"content-type": ""}),
    Bad("r12-json-lookalike-type", 415, "unsupported_media_type", raw=lambda w: json.dumps(subscription()).encode(),
        headers={"content-type": "application/jsonp"}),
    Bad("r12-delete-foreign-origin", 403, "cross_site_request", method="DELETE",
        path="/api/v1/subscriptions/{resident_id}", headers={"origin": EVIL}),
    Bad("r12-event-text-plain", 415, "unsupported_media_type", path="/api/v1/events",
        raw=b'{"type": "clicked", "alert": "x"}', headers={"content-type": "text/plain"}),
    Bad("r12-alert-form-foreign-origin", 403, "cross_site_request", path="/api/v1/alerts", editor=True,
        raw=b"title=x", headers={"content-type": "application/x-www-form-urlencoded", "origin": EVIL}),
    Bad("r12-alert-text-plain", 415, "unsupported_media_type", path="/api/v1/alerts", editor=True,
        raw=b'{"title": "x"}', headers={"content-type": "text/plain"}),
    Bad("r12-cancel-foreign-origin", 403, "cross_site_request", method="DELETE", path="/api/v1/alerts/{alert_id}",
        editor=True, headers={"origin": EVIL}),
]

NO_TOKEN = {"": {}, "wrong": {"authorization": "Bearer wrong-token-0123456789abc"},
            "prefix": {"authorization": f"Bearer {EDITOR_TOKEN[:-1]}"},
            "suffix": {"authorization": f"Bearer {EDITOR_TOKEN}x"},
            "basic": {"authorization": f"Basic {EDITOR_TOKEN}"},
            "no-scheme": {"authorization": EDITOR_TOKEN},
            "bearer-only": {"authorization": "Bearer"},
            "bearer-spaces": {"authorization": "Bearer    "},
            "quoted": {"authorization": f'Bearer "{EDITOR_TOKEN}"'},
            "other-header": {"x-editor-token": EDITOR_TOKEN},
            "cookie": {"cookie": f"token={EDITOR_TOKEN}; editor_token={EDITOR_TOKEN}"},
            "query-token": {"?": f"token={EDITOR_TOKEN}"},
            "query-access-token": {"?": f"access_token={EDITOR_TOKEN}"},
            "query-authorization": {"?": f"authorization=Bearer%20{EDITOR_TOKEN}"}}
EDITOR_ROUTES = [("POST", "/api/v1/alerts", {"title": "x"}), ("GET", "/api/v1/alerts", NOTHING),
                 ("GET", "/api/v1/alerts/{alert_id}", NOTHING), ("DELETE", "/api/v1/alerts/{alert_id}", NOTHING),
                 ("GET", "/api/v1/stats", NOTHING)]
AUTH_ROWS = [
    # 13 — editor calls without the token in the Authorization header
    Bad(f"r13-{method}-{path.rsplit('/', 1)[-1].strip('{}')}-{name}", 401, "unauthorized", body=body, method=method,
        path=path + (("?" + headers["?"]) if "?" in headers else ""),
        headers={k: v for k, v in headers.items() if k != "?"}, profile="dev")
    for method, path, body in EDITOR_ROUTES for name, headers in NO_TOKEN.items()
    if method == "POST" or name in ("", "wrong", "query-token", "cookie")
]

EMOJI, ARABIC = "\U0001F4F0", "\u0639"  # 4 and 2 bytes in UTF-8
ALERT_ROWS = [
    # 14 — over the limits, in characters and in bytes
    alert({"title": "x" * 121}, code="text_length", field="title", mentions=("120",), id="r14-title-121"),
    alert({"title": ARABIC * 121}, code="text_length", field="title", mentions=("120",), id="r14-title-121-arabic"),
    alert({"title": ""}, code="text_length", field="title", id="r14-title-empty"),
    alert({"title": "   "}, code="text_length", field="title", id="r14-title-spaces"),
    alert({"title": "x", "body": "y" * 401}, code="text_length", field="body", mentions=("400",), id="r14-body-401"),
    alert({"title": EMOJI * 120, "body": EMOJI * 400}, code="payload_too_large", field="body",
          mentions=("2048 bytes",), id="r14-emoji-over-budget"),
    alert({"title": ARABIC * 120, "body": ARABIC * 400, "url": "/" + "a" * 1000, "image": "https://cdn.example/"
           + "i" * 900}, code="payload_too_large", field="body", mentions=("2048 bytes",),
          id="r14-arabic-with-long-urls-over-budget"),
    alert({"title": "x", "url": "/" + "a" * 1024}, code="text_length", field="url", mentions=("1024",),
          id="r14-url-too-long"),
    alert({"title": "x", "icon": "https://cdn.example/" + "i" * 1024}, code="text_length", field="icon",
          id="r14-icon-too-long"),
    # 15 — NUL, C0/C1 controls, lone surrogates
    *(alert({"title": f"a{ch}b"}, code="invalid_text", field="title", id=f"r15-title-{name}") for name, ch in [
        ("nul", "\x00"), ("bell", "\x07"), ("escape", "\x1b[31m"), ("cr", "\r"), ("newline", "\n"), ("tab", "\t"),
        ("del", "\x7f"), ("c1-nel", "\x85"), ("c1-csi", "\x9b"), ("lone-high-surrogate", "\ud800"),
        ("lone-low-surrogate", "\udfff"), ("reversed-pair", "\udc00\ud800")]),
    *(alert({"title": "x", "body": f"a{ch}b"}, code="invalid_text", field="body", id=f"r15-body-{name}")
      for name, ch in [("nul", "\x00"), ("vertical-tab", "\x0b"), ("cr", "\r"), ("lone-surrogate", "\ud83d")]),
    alert({"title": "x", "url": "/a\ud800"}, code="invalid_text", field="url", id="r15-url-lone-surrogate"),
    alert({"title": "x", "url": "/a\x00"}, code="invalid_url", field="url", id="r15-url-nul"),
    alert({"title": "x", "icon": "https://cdn.example/\ud800.png"}, code="invalid_text", field="icon",
          id="r15-icon-lone-surrogate"),
    alert({"title": "x", "image": "https://cdn.example/\x85.png"}, code="invalid_url", field="image",
          id="r15-image-c1"),
    alert({"title": "x", "topic": "\ud800"}, code="invalid_text", field="topic", id="r15-topic-lone-surrogate"),
    # 16 — click URLs that leave the site; icons and images that are not https
    click("javascript:alert(1)", id="javascript"),
    click("JavaScript:alert(document.domain)", id="javascript-mixed-case"),
    click("JAVASCRIPT://%0aalert(1)", id="javascript-upper-comment"),
    click("  javascript:alert(1)", "invalid_url", id="javascript-leading-spaces"),
    click("\tjavascript:alert(1)", "invalid_url", id="javascript-leading-tab"),
    click("java\nscript:alert(1)", "invalid_url", id="javascript-split"),
    click("\u00a0javascript:alert(1)", "invalid_url", id="javascript-nbsp"),
    click("data:text/html,<script>alert(1)</script>", id="data"),
    click("vbscript:msgbox(1)", id="vbscript"),
    click("file:///etc/passwd", id="file"),
    click("blob:http://127.0.0.1:8000/x", id="blob"),
    click("//evil.example", id="protocol-relative"),
    click("///evil.example", id="triple-slash"),
    click("/\\evil.example", "invalid_url", id="slash-backslash"),
    click("\\/evil.example", "invalid_url", id="backslash-slash"),
    click("https://evil.example/", id="other-origin"),
    click("http://127.0.0.1:8001/", id="other-port"),
    click("https://127.0.0.1:8000/", id="other-scheme"),
    click("http://127.0.0.1:8000.evil.example/", "invalid_url", id="origin-as-subdomain"),
    click("http://127.0.0.1.evil.example:8000/", id="origin-as-subdomain-with-port"),
    click("http://127.0.0.1:8000@evil.example/", id="origin-as-userinfo"),
    click("http://evil.example/http://127.0.0.1:8000/", id="origin-in-path"),
    click("http://[::1", "invalid_url", id="unparseable"),
    click("news/1", id="relative-without-slash"),
    click("", "text_length", id="empty"),
    asset("icon", "http://cdn.example/i.png", id="http"),
    asset("icon", "javascript:alert(1)", id="javascript"),
    asset("icon", "data:image/svg+xml,<svg/onload=alert(1)>", id="data"),
    asset("icon", "//cdn.example/i.png", id="protocol-relative"),
    asset("icon", "https://user@cdn.example/i.png", id="userinfo"),
    asset("image", "HTTP://cdn.example/i.png", id="http-upper"),
    asset("image", "https:///i.png", id="no-host"),
    asset("image", "https://[::1", "invalid_url", id="unparseable"),
    asset("image", "https://cdn.example:99999/i.png", "invalid_url", id="bad-port"),
    # 18 — out of range, never clamped: the error names the field and its range
    *(alert({"title": "x", "ttl_s": ttl}, code=code, field="ttl_s", mentions=("60", "2419200"), id=f"r18-ttl-{name}")
      for name, ttl, code in [("minus-one", -1, "out_of_range"), ("zero", 0, "out_of_range"),
                              ("59", 59, "out_of_range"), ("2419201", 2_419_201, "out_of_range"),
                              ("10e12", 10**12, "out_of_range"), ("abc", "abc", "wrong_type"),
                              ("float", 86400.5, "wrong_type"), ("true", True, "wrong_type"),
                              ("null", None, "wrong_type"), ("numeric-string", "86400", "wrong_type"),
                              ("huge", 10**30, "out_of_range")]),
    *(alert({"title": "x", "urgency": urgency}, code="invalid_choice", field="urgency",
            mentions=("very-low", "high"), id=f"r18-urgency-{name}")
      for name, urgency in [("urgent", "urgent"), ("upper", "HIGH"), ("empty", ""), ("number", 1)]),
    alert({"title": "x", "topic": "nope"}, code="unknown_topic", field="topic", mentions=("sports",),
          id="r18-unknown-topic"),
    alert({"title": "x", "topic": ""}, code="unknown_topic", field="topic", id="r18-empty-topic"),
    alert({"title": "x", "lang": "arabic"}, code="invalid_format", field="lang", id="r18-lang"),
    alert({"title": "x", "send_at": "tomorrow"}, code="wrong_type", field="send_at", id="r18-send-at-text"),
    alert({"title": "x", "send_at": "2030-01-01T08:00:00"}, code="invalid_datetime", field="send_at",
          id="r18-send-at-no-offset"),
    alert({"title": "x", "send_at": "2999-01-01T08:00:00+00:00"}, code="out_of_range", field="send_at",
          id="r18-send-at-far"),
    alert({"title": "x", "titel": "typo"}, code="unknown_field", field="titel", id="r18-unknown-field"),
    alert({"title": "x"}, code="invalid_idempotency_key", field="Idempotency-Key",
          headers={"idempotency-key": "a\x7fb"}, id="r19-idempotency-key-control"),
    alert({"title": "x"}, code="text_length", field="Idempotency-Key",
          headers={"idempotency-key": "k" * 201}, id="r19-idempotency-key-too-long"),
    Bad("r18-limit-zero", 422, "out_of_range", method="GET", path="/api/v1/alerts?limit=0", editor=True,
        field="limit", mentions=("1", "500"), profile="dev"),
    Bad("r18-limit-501", 422, "out_of_range", method="GET", path="/api/v1/alerts?limit=501", editor=True,
        field="limit", mentions=("500",), profile="dev"),
    Bad("r18-limit-text", 422, "wrong_type", method="GET", path="/api/v1/alerts?limit=abc", editor=True,
        field="limit", mentions=("500",), profile="dev"),
    # reader-side odds and ends
    Bad("rx-unsubscribe-traversal", 404, "not_found", method="DELETE",
        path="/api/v1/subscriptions/..%2F..%2Fetc", profile="dev"),
    Bad("rx-unsubscribe-bad-id", 422, "invalid_subscription_id", method="DELETE",
        path="/api/v1/subscriptions/not-an-id{{}}", profile="dev"),
    Bad("rx-unsubscribe-long-id", 422, "invalid_subscription_id", method="DELETE",
        path="/api/v1/subscriptions/" + "A" * 500, profile="dev"),
    Bad("rx-event-type", 422, "invalid_choice", path="/api/v1/events", body={"type": "opened", "alert": "x"},
        field="type", profile="dev"),
    Bad("rx-event-alert-braces", 422, "invalid_format", path="/api/v1/events",
        body={"type": "clicked", "alert": "{x}:y"}, field="alert", profile="dev"),
    Bad("rx-event-alert-surrogate", 422, "invalid_text", path="/api/v1/events",
        body={"type": "clicked", "alert": "\ud800"}, field="alert", profile="dev"),
    Bad("rx-event-alert-long", 422, "text_length", path="/api/v1/events",
        body={"type": "clicked", "alert": "a" * 65}, field="alert", profile="dev"),
]

ROWS = SUBSCRIBE_ROWS + CROSS_SITE_ROWS + AUTH_ROWS + ALERT_ROWS
assert len({row.id for row in ROWS}) == len(ROWS), "row ids must be unique"


async def send(w: World, row: Bad, ids: dict) -> httpx.Response:
    headers = {k: v for k, v in row.headers.items()}
    if row.editor:
        headers.setdefault("authorization", f"Bearer {EDITOR_TOKEN}")
    content = None
    if row.raw is not None:
        content = row.raw(w) if callable(row.raw) else row.raw
        headers.setdefault("content-type", "application/json")
    elif row.body is not NOTHING:
        value = row.body(w) if callable(row.body) else row.body
        content = json.dumps(value).encode()  # ASCII escapes: "\ud800" arrives as a lone surrogate
        headers.setdefault("content-type", "application/json")
    if headers.get("content-type") == "":
        del headers["content-type"]
    return await w.client.request(row.method, row.path.format(**ids), content=content, headers=headers)


async def prepare(w: World) -> dict:
    """A scheduled alert, so the rows that cancel or read one have a real target."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 86400 * 30))
    answer = await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                 json={"title": "later", "send_at": when})
    assert answer.status_code == 202, answer.text
    return {"alert_id": answer.json()["id"], "resident_id": subscription_id(w.resident.endpoint)}


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_bad_input_is_refused_and_leaves_nothing(make_settings, row: Bad):
    async with world(make_settings, row.profile) as w:
        ids = await prepare(w)
        before = await snapshot(w)
        started = time.monotonic()
        answer = await send(w, row, ids)
        elapsed = time.monotonic() - started
        after = await snapshot(w)
    assert answer.status_code == row.status, answer.text
    error = answer.json()["error"]
    assert error["code"] == row.code, error
    assert error["message"] and len(error["message"]) < 400, error
    if row.field is not None:
        assert error.get("field") == row.field, error
    for words in row.mentions:
        assert words in error["message"], error
    if row.status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["content-type"].startswith("application/json")
    assert after == before  # nothing stored: no subscription, alert, task, retry, nor any other key changed
    assert_nothing_sent(w)
    if row.id.startswith("r02-"):
        assert elapsed < 2.0  # refused cheaply


DEV_ROWS = [row for row in ROWS if row.profile == "dev"]


async def test_bad_rows_in_one_app_then_a_real_broadcast(make_settings):
    """Every row that could reach a fake, one after another in one app; then a real alert and a real worker:
    the resident (stored before) gets exactly that one alert, and the trap is never contacted."""
    async with world(make_settings, "dev") as w:
        ids = await prepare(w)
        before = await snapshot(w)
        for row in DEV_ROWS:
            answer = await send(w, row, ids)
            assert answer.status_code == row.status, (row.id, answer.text)
        assert await snapshot(w) == before
        ok = await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                 json={"title": "the only one"})
        assert ok.status_code == 202
        await drain_local(w.settings)
    assert [m["title"] for m in w.fake.messages_for(w.resident)] == ["the only one"]
    assert w.fake.count == 1 and not w.fake.errors
    assert w.trap.connections == 0


ACCEPTED = [
    ("fcm", FCM + "abc:def-ghi_jkl", FCM + "abc:def-ghi_jkl"),
    ("upper-case-host-and-trailing-dot", "HTTPS://FCM.GoogleAPIs.com./fcm/send/x", FCM + "x"),
    ("explicit-443", "https://fcm.googleapis.com:443/fcm/send/x", FCM + "x"),
    ("mozilla", "https://updates.push.services.mozilla.com/wpush/v2/gAAAA", None),
    ("apple-suffix", "https://web.push.apple.com/QGuQyavXutnMH", None),
    ("windows-suffix", "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA%2b%2f", None),
    ("self-hosted", "https://push.example.test/up/abc?x=1", None),
    ("percent-in-path", "https://fcm.googleapis.com/fcm/send/a%2Fb", None),
]


@pytest.mark.parametrize("endpoint,canonical", [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
async def test_good_endpoints_are_accepted_in_canonical_form(make_settings, endpoint, canonical):
    """The other side of the table: validation refuses what it must and not everything."""
    async with world(make_settings, "strict") as w:
        answer = await w.client.post("/api/v1/subscriptions", json=subscription(endpoint))
        assert answer.status_code == 201, answer.text
        stored = await w.state.subs.get(answer.json()["id"])
    assert stored.endpoint == (canonical or endpoint)
    assert answer.json()["id"] == subscription_id(canonical or endpoint)


@pytest.mark.parametrize("allow_insecure", [False, True], ids=["insecure-off", "insecure-on"])
async def test_push_allow_insecure_is_only_what_api_v1_says(make_settings, allow_insecure):
    """PUSH_ALLOW_INSECURE lets listed `host`/`host:port` entries be http://, loopback or private; never a
    `.suffix` entry, never an unlisted host, never another port."""
    async with FakePushService() as fake:
        settings = make_settings(push_allow_insecure=allow_insecure,
                                 push_allowed_hosts=[f"127.0.0.1:{fake.port}", "localhost", ".example.test"])
        async with api_client(settings) as client:
            async def code(endpoint):
                answer = await client.post("/api/v1/subscriptions", json=subscription(endpoint))
                return answer.status_code if answer.status_code < 400 else answer.json()["error"]["code"]

            listed_http = await code(f"http://127.0.0.1:{fake.port}/push/a")
            listed_https = await code(f"https://127.0.0.1:{fake.port}/push/a")
            listed_name = await code("http://localhost/push/a")
            suffix_http = await code("http://push.example.test/push/a")
            suffix_https = await code("https://push.example.test/push/a")
            other_port = await code(f"http://127.0.0.1:{fake.port + 1}/push/a")
            unlisted = await code("http://127.0.0.2/push/a")
    if allow_insecure:
        assert (listed_http, listed_https, listed_name) == (201, 201, 201)
    else:
        assert (listed_http, listed_https, listed_name) == ("endpoint_not_https", "endpoint_ip_literal",
                                                             "endpoint_not_https")
    assert suffix_http == "endpoint_not_https" and suffix_https == 201
    assert other_port == "endpoint_not_https" and unlisted == "endpoint_not_https"


# ----------------------------------------------------------------------------------------------- rows 10, 11


async def test_row10_same_subscription_twice_and_new_keys_one_record_one_message(make_settings):
    async with world(make_settings, "dev") as w:
        reader = w.fake.new_subscriber()
        first = await w.client.post("/api/v1/subscriptions", json={**reader.subscription_json(), "topics": ["sports"]})
        again = await w.client.post("/api/v1/subscriptions", json={**reader.subscription_json(), "topics": ["sports"]})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json() == again.json()
        # The browser made new keys for the same endpoint: the fake now decrypts with those only.
        rekeyed = Subscriber.generate(endpoint=reader.endpoint, token=reader.token)
        w.fake._subscribers[reader.token] = rekeyed  # the fake has no public "rekey"; it looks tokens up here
        third = await w.client.post("/api/v1/subscriptions", json={**rekeyed.subscription_json(), "topics": ["politics"]})
        assert third.status_code == 200 and third.json() == {"id": first.json()["id"], "topics": ["politics"]}
        stored = await w.state.subs.get(first.json()["id"])
        assert stored.p256dh == rekeyed.public_key_bytes and stored.auth == rekeyed.auth_secret
        snap = await snapshot(w)
        assert snap["subscriptions"] == snap["records"] == 2  # the resident and this reader
        answer = await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                     json={"title": "politics", "topic": "politics"})
        alert_id = answer.json()["id"]
        await drain_local(w.settings)
        status = (await w.client.get(f"/api/v1/alerts/{alert_id}",
                                     headers={"authorization": f"Bearer {EDITOR_TOKEN}"})).json()
    records = w.fake.records_for(reader)
    assert len(records) == 1 and records[0].error is None and records[0].accepted
    assert records[0].payload["title"] == "politics"
    assert status["counts"]["targeted"] == 2 and status["counts"]["sent"] == 2  # the resident takes every topic


async def test_row11_rate_limit_per_client_with_retry_after_and_no_raw_ip_stored(make_settings):
    async with world(make_settings, "strict") as w:
        statuses, refused = [], None
        for i in range(1000):
            answer = await w.client.post("/api/v1/subscriptions", json=subscription(FCM + f"reader-{i}"))
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                refused = answer
                if statuses.count(429) >= 5:
                    break
        allowed_first = statuses.index(429) if 429 in statuses else len(statuses)
        snap = await snapshot(w)
        # another client is not limited by this one
        other = httpx.ASGITransport(app=w.client.app, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=other, base_url="http://127.0.0.1:8000") as second:
            elsewhere = await second.post("/api/v1/subscriptions", json=subscription(FCM + "elsewhere"))
        stored = await everything_stored(w.state.store)
    assert 120 <= allowed_first < 1000, allowed_first
    assert set(statuses[:allowed_first]) == {201}
    assert refused is not None and refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert snap["records"] == allowed_first + 1  # a refused request stored nothing (+1: the resident)
    assert elsewhere.status_code == 201
    packed = socket.inet_aton(CLIENT_IP)
    for key, value in stored:
        assert CLIENT_IP.encode() not in value and packed not in value, (key, value)
        assert b"198.51.100.9" not in value and b"testclient" not in value, (key, value)


async def test_row11_invalid_requests_count_toward_the_limit_too(make_settings):
    """The limit is checked before the body is validated, so a flood of garbage is limited like the rest."""
    async with world(make_settings, "strict", subscribe_rate_per_minute=120) as w:
        statuses = [(await w.client.post("/api/v1/subscriptions", json={"endpoint": i})).status_code
                    for i in range(125)]
        valid = await w.client.post("/api/v1/subscriptions", json=subscription())
    assert 422 in statuses and statuses[-1] == 429
    assert valid.status_code == 429


async def test_row11_global_cap_refuses_new_endpoints_raises_an_alarm_refreshes_known_ones(make_settings, caplog):
    async with world(make_settings, "strict", max_subscriptions=3) as w:
        known = subscription(FCM + "known")
        assert (await w.client.post("/api/v1/subscriptions", json=known)).status_code == 201
        assert (await w.client.post("/api/v1/subscriptions", json=subscription(FCM + "two"))).status_code == 201
        before = await snapshot(w)  # three with the resident: at the cap
        with caplog.at_level(logging.ERROR, logger="nabaa.api"):
            refused = await w.client.post("/api/v1/subscriptions", json=subscription(FCM + "four"))
        after = await snapshot(w)
        refreshed = await w.client.post("/api/v1/subscriptions", json=known)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "subscription_cap"
    assert refused.headers["retry-after"]
    assert after == before
    assert any("ALARM" in r.getMessage() and "MAX_SUBSCRIPTIONS=3" in r.getMessage() for r in caplog.records)
    assert await w.state.store.redis.hget(w.state.store.keys.alarms, "subscription_cap") == b"1"
    assert refreshed.status_code == 200  # a reader already known keeps refreshing at the cap


# ----------------------------------------------------------------------------------------------- 13, 15, 17, 19


async def test_row13_audit_line_names_the_token_the_time_and_a_hash_of_the_payload(make_settings, caplog):
    async with world(make_settings, "dev") as w:
        with caplog.at_level(logging.INFO, logger="nabaa.audit"):
            answer = await w.client.post("/api/v1/alerts", headers={"authorization": f"bearer {EDITOR_TOKEN}"},
                                         json={"title": "audited"})
        assert answer.status_code == 202  # the scheme is case-insensitive (RFC 9110 §11.1)
        record = await w.state.alerts.get(answer.json()["id"])
    [line] = [r.getMessage() for r in caplog.records if r.name == "nabaa.audit"]
    assert answer.json()["id"] in line
    assert token_id(EDITOR_TOKEN) in line and EDITOR_TOKEN not in line  # which token, never the token
    assert f"payload_sha256={hashlib.sha256(record.payload).hexdigest()}" in line
    assert " at=20" in line and "audited" not in line


UNICODE = [
    ("arabic-with-harakat", "عاجلٌ: مَرْحَبًا بِكُمْ فِي نَبَأ", "تفاصيل الخبر كاملةً\nسطر ثانٍ"),
    ("emoji-zwj-skin-flags", "👩🏽‍💻 🇲🇦 ❤️ 👨‍👩‍👧‍👦", "🧑🏿‍🚀 1️⃣ 🏳️‍🌈"),
    ("combining-marks", "Cafe\u0301 Ñ n\u0303 a\u030a\u0323", "Z\u0351\u0364\u0361a\u0308l\u0300go"),
    ("mixed-scripts-bidi", "\u200fخبر\u200e ABC עִבְרִית हिन्दी 中文", "\u202bمُضمَّن\u202c \ufeffBOM"),
]


@pytest.mark.parametrize("title,body", [u[1:] for u in UNICODE], ids=[u[0] for u in UNICODE])
async def test_row15_valid_unicode_arrives_byte_identical(make_settings, title, body):
    async with world(make_settings, "dev") as w:
        answer = await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}",
                                                                "content-type": "application/json"},
                                     content=json.dumps({"title": title, "body": body}, ensure_ascii=False).encode())
        assert answer.status_code == 202, answer.text
        stored = (await w.client.get(f"/api/v1/alerts/{answer.json()['id']}",
                                     headers={"authorization": f"Bearer {EDITOR_TOKEN}"})).json()
        await drain_local(w.settings)
    [record] = w.fake.records_for(w.resident)
    assert record.error is None and record.accepted
    assert record.payload["title"] == title and record.payload["body"] == body
    assert title.encode("utf-8") in record.plaintext and json.dumps(body, ensure_ascii=False).encode() in record.plaintext
    assert stored["title"] == title and stored["body"] == body


async def test_row17_html_is_stored_and_sent_as_text(make_settings):
    title = '<script>alert("x")</script> & <b>عاجل</b>'
    body = "<img src=x onerror=alert(1)> &amp; &lt;i&gt; </textarea>"
    async with world(make_settings, "dev") as w:
        answer = await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                     json={"title": title, "body": body})
        assert answer.status_code == 202
        stored = (await w.client.get(f"/api/v1/alerts/{answer.json()['id']}",
                                     headers={"authorization": f"Bearer {EDITOR_TOKEN}"})).json()
        listed = (await w.client.get("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"})).json()
        await drain_local(w.settings)
    assert stored["title"] == title and stored["body"] == body
    assert listed["alerts"][0]["title"] == title
    [record] = w.fake.records_for(w.resident)
    assert record.payload["title"] == title and record.payload["body"] == body
    assert b'<script>alert(\\"x\\")</script> & <b>' in record.plaintext  # literal text, no entities or \u003c


async def test_row19_idempotency_key_same_body_same_id_other_body_409(make_settings):
    async with world(make_settings, "dev") as w:
        headers = {"authorization": f"Bearer {EDITOR_TOKEN}", "idempotency-key": "send-2026-05-01-1"}
        body = {"title": "مرة واحدة", "body": "نص"}
        one = await w.client.post("/api/v1/alerts", headers=headers, json=body)
        before = await snapshot(w)
        two = await w.client.post("/api/v1/alerts", headers=headers, json=body)
        same_defaults = await w.client.post("/api/v1/alerts", headers=headers, json={**body, "ttl_s": 86400})
        other = await w.client.post("/api/v1/alerts", headers=headers, json={**body, "title": "أخرى"})
        after = await snapshot(w)
        await drain_local(w.settings)
    assert one.status_code == two.status_code == same_defaults.status_code == 202
    assert one.json()["id"] == two.json()["id"] == same_defaults.json()["id"]
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["field"] == "Idempotency-Key"
    assert after == before and before["tasks"] == SHARDS  # one broadcast: one task per shard
    assert [m["title"] for m in w.fake.messages_for(w.resident)] == ["مرة واحدة"]


# ----------------------------------------------------------------------------------------------- row 20


def corrupt_records(good: bytes) -> dict[str, bytes]:
    """Stored records broken in the ways a bug, a manual edit or a half-applied migration could break them."""
    *head, rest = good.split(b"|", 6)  # six text fields, then the binary tail (which may hold a "|")
    meta = b"|".join(head)
    keys, path = rest[:81], rest[81:]
    return {
        "garbage": b"\x00\xffgarbage",
        "empty": b"",
        "other-version": b"|".join([b"2", *head[1:]]) + b"|" + rest,
        "short-tail": meta + b"|" + keys[:40],
        "off-curve-key": meta + b"|" + off_curve() + keys[65:] + path,
        "compressed-key": meta + b"|" + b"\x02" + X + bytes(32) + keys[65:] + path,
        "bad-number": b"|".join([*head[:4], b"abc", head[5]]) + b"|" + rest,
        "non-ascii-path": meta + b"|" + keys + b"/push/\xff\xfe",
        "non-ascii-origin": b"|".join([*head[:3], "أ".encode(), *head[4:]]) + b"|" + rest,
        "metadata-origin": b"|".join([*head[:3], b"http://169.254.169.254", *head[4:]]) + b"|" + keys + b"/latest",
        "missing-separators": b"1|sports|" + keys,
    }


async def test_row20_corrupted_records_are_skipped_counted_failed_and_the_broadcast_goes_on(make_settings, caplog):
    async with world(make_settings, "dev") as w:
        readers = [w.fake.new_subscriber() for _ in range(3)]
        for reader in readers:
            assert (await w.client.post("/api/v1/subscriptions", json=reader.subscription_json())).status_code == 201
        redis, keys = w.state.store.redis, w.state.store.keys
        good_id = subscription_id(readers[0].endpoint)
        good = await redis.hget(keys.subs(shard_of(good_id)), good_id)
        broken = corrupt_records(good)
        for name, raw in broken.items():
            sub_id = subscription_id(f"https://corrupt.example/{name}")
            await redis.hset(keys.subs(shard_of(sub_id)), sub_id, raw)
        answer = await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                     json={"title": "still delivered"})
        with caplog.at_level(logging.INFO):
            await drain_local(w.settings)
        status = (await w.client.get(f"/api/v1/alerts/{answer.json()['id']}",
                                     headers={"authorization": f"Bearer {EDITOR_TOKEN}"})).json()
        remaining = await snapshot(w)
    counts = status["counts"]
    assert status["status"] == "done"
    assert counts["targeted"] == 4 + len(broken) and counts["sent"] == 4 and counts["failed"] == len(broken)
    for sub in [w.resident, *readers]:
        assert [m["title"] for m in w.fake.messages_for(sub)] == ["still delivered"]
    assert w.fake.count == 4 and w.trap.connections == 0
    assert remaining["records"] == 4 + len(broken)  # skipped, not deleted: an operator can look at them
    assert not [r for r in caplog.records if r.exc_info]  # no traceback: each was expected and handled


# ----------------------------------------------------------------------------------------------- F11, F12


class LocalResolver(AbstractResolver):
    """Answers names from a table (address, port), so no test ever asks real DNS; an unknown name fails."""

    def __init__(self, table: dict[str, list[tuple[str, int]]] | None = None):
        self.table = table or {}
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"{host}: not in the test's table")
        return [{"hostname": host, "host": address, "port": real_port or port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST} for address, real_port in self.table[host]]

    async def close(self) -> None:
        pass


async def drain_local(settings, resolver: AbstractResolver | None = None, timeout_s: float = 30.0):
    """A worker in burst mode whose every name look-up goes through `resolver` (by default: none answers)."""
    transport = Transport(
        HostPolicy(tuple(settings.push_allowed_hosts), settings.push_allow_insecure),
        connect_timeout_s=2, read_timeout_s=5, max_connections=32, per_host_connections=8,
        ca_file=settings.push_ca_file, resolver=resolver or LocalResolver(),
    )
    return await drain(settings, timeout_s, transport=transport)


async def alert_status(client, alert_id):
    return (await client.get(f"/api/v1/alerts/{alert_id}", headers={"authorization": f"Bearer {EDITOR_TOKEN}"})).json()


async def test_f12_allow_listed_name_resolving_to_loopback_is_never_connected(make_settings):
    """PUSH_ALLOW_INSECURE off: push.example.test is listed; at send time it resolves to 127.0.0.1 (the
    fake's port), as DNS rebinding would make it. No connection, not deleted, counted failed."""
    async with FakePushService() as target:
        settings = make_settings(push_allow_insecure=False, push_allowed_hosts=["push.example.test"])
        resolver = LocalResolver({"push.example.test": [("127.0.0.1", target.port)]})
        async with api_client(settings) as client:
            reader = target.new_subscriber(origin="https://push.example.test")
            answer = await client.post("/api/v1/subscriptions", json=reader.subscription_json())
            assert answer.status_code == 201  # a good name at subscribe time
            alert_id = (await client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                          json={"title": "x"})).json()["id"]
            await drain_local(settings, resolver)
            status = await alert_status(client, alert_id)
            still = await client.app.state.nabaa.subs.get(answer.json()["id"])
    assert resolver.asked == ["push.example.test"]  # it was looked up, and then refused
    assert target.connections == 0 and target.count == 0
    assert still is not None  # never deleted: the subscription is not at fault
    assert status["counts"]["targeted"] == 1 and status["counts"]["failed"] == 1
    assert status["status"] in ("done", "failed")


@pytest.mark.parametrize("addresses", [
    [("127.0.0.1", None)], [("127.0.0.1", None), ("8.8.8.8", None)], [("10.1.2.3", None)],
    [("169.254.169.254", None)], [("::1", None)], [("::ffff:127.0.0.1", None)], [("fd00::1", None)],
], ids=["loopback", "public-and-loopback", "private", "metadata", "ipv6-loopback", "ipv4-mapped", "ula"])
async def test_f12_broadcast_goes_on_past_a_name_that_resolves_privately(make_settings, addresses):
    """PUSH_ALLOW_INSECURE on, the good fake listed by address; `.example.test` is a suffix entry, which is
    never allowed private addresses. The blocked name points at the trap; the rest is delivered."""
    async with FakePushService() as good, FakePushService() as trap:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{good.port}", ".example.test"])
        table = [(address, trap.port if address == "127.0.0.1" else None) for address, _ in addresses]
        resolver = LocalResolver({"rebind.example.test": table})
        async with api_client(settings) as client:
            readers = [good.new_subscriber() for _ in range(3)]
            blocked = trap.new_subscriber(origin="https://rebind.example.test")
            for reader in [*readers, blocked]:
                assert (await client.post("/api/v1/subscriptions", json=reader.subscription_json())).status_code == 201
            alert_id = (await client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                          json={"title": "for everyone"})).json()["id"]
            await drain_local(settings, resolver)
            status = await alert_status(client, alert_id)
            still = await client.app.state.nabaa.subs.get(subscription_id(blocked.endpoint))
    assert trap.connections == 0
    assert all(len(good.messages_for(r)) == 1 for r in readers)
    assert status["counts"] == {**status["counts"], "targeted": 4, "sent": 3, "failed": 1, "gone": 0}
    assert still is not None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_f11_a_redirect_is_not_followed(make_settings, status):
    async with FakePushService() as fake, FakePushService() as elsewhere:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{fake.port}", f"127.0.0.1:{elsewhere.port}"])
        async with api_client(settings) as client:
            reader = fake.new_subscriber()
            target = elsewhere.new_subscriber()
            fake.script(reader, [], then=(status, {"Location": target.endpoint}))
            answer = await client.post("/api/v1/subscriptions", json=reader.subscription_json())
            alert_id = (await client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                          json={"title": "x"})).json()["id"]
            await drain_local(settings)
            counts = (await alert_status(client, alert_id))["counts"]
            still = await client.app.state.nabaa.subs.get(answer.json()["id"])
    assert len(fake.records_for(reader)) == 1 and fake.records_for(reader)[0].status == status
    assert elsewhere.connections == 0 and elsewhere.count == 0
    assert counts["failed"] == 1 and counts["sent"] == 0 and still is not None


async def test_proxy_settings_from_the_environment_are_ignored(make_settings, monkeypatch):
    seen = []

    async def proxy(reader, writer):
        seen.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        async with world(make_settings, "dev") as w:
            await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                json={"title": "direct"})
            await drain_local(w.settings)
    finally:
        server.close()
        await server.wait_closed()
    assert seen == []
    assert [m["title"] for m in w.fake.messages_for(w.resident)] == ["direct"]


async def test_at_most_4_kib_of_an_answer_is_read_and_it_is_logged_without_the_endpoint(make_settings):
    """A push service (or something pretending to be one) answering 400 with 64 MiB that echo the endpoint."""
    written = 0

    async def huge(request: web.Request):
        nonlocal written
        response = web.StreamResponse(status=400)
        await response.prepare(request)
        chunk = (request.path + "\nX-Injected: yes\n").encode() * 4096
        try:
            while written < 64 * 1024 * 1024:
                await response.write(chunk)
                written += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    runner = web.AppRunner(web.Application(handler_args=None, client_max_size=8192))
    runner.app.router.add_post("/{tail:.*}", huge)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/push/secret-capability-token"
    transport = Transport(HostPolicy((f"127.0.0.1:{port}",), True), connect_timeout_s=2, read_timeout_s=5,
                          max_connections=4, per_host_connections=2, resolver=LocalResolver())
    try:
        started = time.monotonic()
        outcome = await transport.send(PushRequest(endpoint, {"TTL": "60"}, b"x"))
        elapsed = time.monotonic() - started
    finally:
        await transport.close()
        await runner.cleanup()
    assert outcome.status == 400 and elapsed < 5
    assert written < 32 * 1024 * 1024  # we hung up long before the end
    assert "secret-capability-token" not in outcome.reason and endpoint_hash(endpoint) in outcome.reason
    assert "\n" not in outcome.reason and len(outcome.reason) < 1000


@pytest.mark.parametrize("address,public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("127.255.0.1", False),
    ("10.0.0.1", False), ("172.16.0.1", False), ("192.168.0.1", False), ("169.254.169.254", False),
    ("100.64.0.1", False), ("0.0.0.0", False), ("255.255.255.255", False), ("224.0.0.1", False),
    ("240.0.0.1", False), ("198.18.0.1", False), ("192.0.2.1", False), ("::1", False), ("::", False),
    ("fe80::1", False), ("fd00::1", False), ("ff02::1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:8.8.8.8", True), ("64:ff9b::7f00:1", False), ("64:ff9b::808:808", True),
    ("2002:7f00:1::1", False), ("2002:808:808::1", True), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
])
async def test_guarded_resolver_refuses_every_non_public_address(address, public):
    """No connection is made here: the resolver's answer is checked before aiohttp would connect."""
    inner = LocalResolver({"push.example.test": [(address, 443)], "mixed.example.test": [("8.8.8.8", 443),
                                                                                        (address, 443)]})
    guarded = GuardedResolver(HostPolicy(("push.example.test", "mixed.example.test"), True), inner)
    guarded_suffix = GuardedResolver(HostPolicy((".example.test",), True), inner)
    assert is_public_address(address) is public
    for resolver in (guarded_suffix,):
        for name in ("push.example.test", "mixed.example.test"):
            if public:
                assert await resolver.resolve(name, 443)
            else:
                with pytest.raises(BlockedAddress):
                    await resolver.resolve(name, 443)
    # listed by name with PUSH_ALLOW_INSECURE: allowed to be private (tests, local push services)
    assert await guarded.resolve("push.example.test", 443)


async def test_ip_literal_endpoints_are_checked_at_send_time_too(make_settings):
    """aiohttp never asks a resolver about an IP literal; the transport checks it itself."""
    async with FakePushService() as fake:
        transport = Transport(HostPolicy((f"127.0.0.1:{fake.port}",), False), connect_timeout_s=2, read_timeout_s=5,
                              max_connections=4, per_host_connections=2, resolver=LocalResolver())
        try:
            outcome = await transport.send(PushRequest(f"http://127.0.0.1:{fake.port}/push/x", {"TTL": "60"}, b"x"))
        finally:
            await transport.close()
    assert outcome.action.value == "rejected" and fake.connections == 0


# ----------------------------------------------------------------------------------------------- privacy, browser


async def test_unsubscribe_deletes_everything_about_the_reader(make_settings):
    async with world(make_settings, "dev") as w:
        reader = w.fake.new_subscriber()
        created = await w.client.post("/api/v1/subscriptions",
                                      json={**reader.subscription_json(), "topics": ["sports"], "lang": "fr"})
        sub_id = created.json()["id"]
        assert (await w.client.delete(f"/api/v1/subscriptions/{sub_id}")).status_code == 204
        stored = await everything_stored(w.state.store)
        counters = await w.state.subs.counters()
    for secret in (reader.token.encode(), reader.public_key_bytes, reader.auth_secret, sub_id.encode(),
                   reader.p256dh.encode(), reader.auth.encode()):
        assert not [key for key, value in stored if secret in value], secret
    assert counters["all"] == 1 and counters.get("t:sports", 0) == 0 and counters.get("l:fr", 0) == 0


async def test_endpoints_are_never_logged(make_settings, caplog):
    async with world(make_settings, "dev", push_max_attempts=2) as w:
        readers = [w.fake.new_subscriber() for _ in range(6)]
        for reader, answers in zip(readers, [[400], [410], [413], [(503, {})] * 2, [(429, {"Retry-After": "1"})], [401]]):
            w.fake.script(reader, answers)
            await w.client.post("/api/v1/subscriptions", json=reader.subscription_json())
        with caplog.at_level(logging.DEBUG):
            await w.client.post("/api/v1/alerts", headers={"authorization": f"Bearer {EDITOR_TOKEN}"},
                                json={"title": "x", "ttl_s": 60})
            await drain_local(w.settings, timeout_s=60)
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert w.fake.count >= 5
    for reader in [w.resident, *readers]:
        assert reader.token not in text and reader.endpoint not in text


async def test_cors_only_for_the_site_origin_and_security_headers(make_settings):
    async with world(make_settings, "dev") as w:
        preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
        own = await w.client.options("/api/v1/subscriptions", headers={"origin": "http://127.0.0.1:8000", **preflight})
        foreign = await w.client.options("/api/v1/subscriptions", headers={"origin": EVIL, **preflight})
        foreign_get = await w.client.get("/api/v1/push/config", headers={"origin": EVIL})
        page = await w.client.get("/")
        admin = await w.client.get("/admin/")
        config = await w.client.get("/api/v1/push/config")
    assert own.headers["access-control-allow-origin"] == "http://127.0.0.1:8000"
    assert "access-control-allow-origin" not in foreign.headers and foreign.status_code == 400
    assert "access-control-allow-origin" not in foreign_get.headers
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'", "base-uri 'none'",
                      "frame-ancestors 'none'", "form-action 'self'", "connect-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert admin.headers["x-frame-options"] == "DENY" and len(admin.headers.get_list("cache-control")) == 1
    assert page.headers["x-content-type-options"] == "nosniff"
    assert config.headers.get_list("cache-control") == ["public, max-age=300"]  # one, the route's own
    assert config.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


SW_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const origin = "http://127.0.0.1:8000";
const self = { location: new URL(origin + "/sw.js"), addEventListener() {}, registration: {}, clients: {} };
const context = vm.createContext({ self, URL, console, caches: {}, fetch() {}, atob, Response: function () {} });
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const inputs = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(inputs.map((u) => context.safeTarget(u))));
"""
SW_CLICKS = {
    "/news/1?x=1#y": "http://127.0.0.1:8000/news/1?x=1#y",
    "http://127.0.0.1:8000/a": "http://127.0.0.1:8000/a",
    "javascript:alert(1)": "/", "JavaScript:alert(1)": "/", "  javascript:alert(1)": "/",
    "\tjava\nscript:alert(1)": "/", "data:text/html,x": "/", "vbscript:x": "/", "//evil.example/": "/",
    "/\\evil.example": "/", "\\/evil.example": "/", "https://evil.example/": "/", "http://127.0.0.1:8001/": "/",
    "http://127.0.0.1:8000@evil.example/": "/", "blob:http://127.0.0.1:8000/x": "/", "": "/", "   ": "/",
}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_row16_the_service_worker_opens_only_same_origin_urls(tmp_path):
    """web/sw.js checks the click URL again (the payload could come from an older server, or a bug)."""
    from pathlib import Path

    sw = Path(__file__).resolve().parent.parent / "web" / "sw.js"
    harness = tmp_path / "harness.js"
    harness.write_text(SW_HARNESS)
    done = subprocess.run(["node", str(harness), str(sw)], input=json.dumps(list(SW_CLICKS)), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    opened = dict(zip(SW_CLICKS, json.loads(done.stdout)))
    expected = {k: ("http://127.0.0.1:8000/" if v == "/" else v) for k, v in SW_CLICKS.items()}
    assert opened == expected
