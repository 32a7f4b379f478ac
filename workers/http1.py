"""A lean HTTP/1.1 client for one job: POSTing pushes over kept-alive connections, fast.

Measured on the broadcast path, aiohttp's general-purpose client cost as much CPU per push as the
encryption itself; this one writes each request as one buffer and parses the answer with `httptools`
(the C parser uvicorn uses), reading at most `max_answer_bytes` of it. It does only what a push needs:

- one pool of idle connections per origin, at most `per_origin` open at once (others wait their turn);
- names resolved through the caller's `resolve(host, port)`, which checks the addresses; the connection
  goes to exactly one of the (address, port) pairs it returned (TLS still verifies the certificate for the name);
- connect and read timeouts on every request; a connection that timed out or broke is never reused;
- no redirects, no proxies, no cookies, no decompression.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools

IDLE_KEEP_S = 30.0  # drop an idle connection sooner than servers usually do (60 s and more)
CONNECTING_AT_ONCE = 4  # TLS handshakes one pool makes at the same time


class RequestFailed(Exception):
    """No answer: `kind` is timeout, connect, reset or blocked; `detail` says more."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass(slots=True)
class Answer:
    status: int
    retry_after: str | None
    body: bytes


class _Connection(asyncio.Protocol):
    __slots__ = ("transport", "parser", "waiter", "status", "retry_after", "body", "body_size", "limit",
                 "closed", "idle_since", "keep_alive", "_header_name")

    def __init__(self, limit: int):
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.limit = limit
        self.closed = False
        self.idle_since = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.retry_after = None
        self.body = []
        self.body_size = 0
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(RequestFailed("reset", "unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(RequestFailed("reset", f"malformed answer: {exc}"))
            return
        if self.body_size > self.limit and self.waiter is not None:
            self._answer()  # enough read: answer with what we have and hang up, never drain the rest
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(RequestFailed("reset", "connection closed before the answer"))

    def eof_received(self):
        self.closed = True
        return False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        room = self.limit - self.body_size
        if room > 0:
            self.body.append(body[:room])
        self.body_size += len(body)
        if self.body_size > self.limit:
            self.keep_alive = False

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self._answer()

    def _answer(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self.parser.get_status_code(), self.retry_after, b"".join(self.body)))

    def _fail(self, error: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def request(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        self._reset()
        self.waiter = loop.create_future()
        self.transport.write(data)
        return self.waiter

    def usable(self) -> bool:
        return (not self.closed and self.transport is not None and not self.transport.is_closing()
                and time.monotonic() - self.idle_since < IDLE_KEEP_S)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _OriginPool:
    def __init__(self, per_origin: int):
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(per_origin)
        self.connecting = asyncio.Semaphore(CONNECTING_AT_ONCE)
        self.addresses: list[tuple[str, int]] = []
        self.resolved_at = 0.0

    def take_idle(self) -> _Connection | None:
        """The most recently used idle connection that is still usable; the stale ones met are closed."""
        while self.idle:
            candidate = self.idle.pop()
            if candidate.usable():
                return candidate
            candidate.close()
        return None


class PushClient:
    """POST to push services; `post()` answers with an `Answer` or raises `RequestFailed`."""

    def __init__(self, resolve: Callable[[str, int], Awaitable[list[tuple[str, int]]]], *, ssl_context: ssl.SSLContext,
                 connect_timeout_s: float, read_timeout_s: float, per_origin: int, max_answer_bytes: int = 4096,
                 dns_ttl_s: float = 30.0):
        self.resolve = resolve
        self.ssl_context = ssl_context
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.per_origin = per_origin
        self.max_answer_bytes = max_answer_bytes
        self.dns_ttl_s = dns_ttl_s
        self.pools: dict[tuple[str, str, int], _OriginPool] = {}
        self.opened = 0  # connections opened, for metrics and tests

    def in_flight(self, scheme: str, host: str, port: int) -> int:
        pool = self.pools.get((scheme, host, port))
        return self.per_origin - pool.slots._value if pool else 0  # noqa: SLF001

    async def post(self, scheme: str, host: str, port: int, target: str, headers: dict[str, str],
                   body: bytes) -> Answer:
        key = (scheme, host, port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = _OriginPool(self.per_origin)
        authority = host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"
        head = [f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {len(body)}\r\n"]
        for name, value in headers.items():
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1") + body
        loop = asyncio.get_running_loop()
        async with pool.slots:
            connection = pool.take_idle()
            if connection is None:
                # A few handshakes at a time: the first answers come back sooner than if a burst opened
                # every connection at once, and the later sends find a connection free by then (looked
                # for again once this one's turn comes).
                async with pool.connecting:
                    connection = pool.take_idle() or await self._connect(pool, scheme, host, port)
            waiter = connection.request(data, loop)
            timer = loop.call_later(self.read_timeout_s, _expire, waiter)
            try:
                answer = await waiter
            except BaseException:
                connection.close()
                raise
            finally:
                timer.cancel()
            if connection.keep_alive and not connection.closed:
                connection.idle_since = time.monotonic()
                pool.idle.append(connection)
            else:
                connection.close()
            return answer

    async def _connect(self, pool: _OriginPool, scheme: str, host: str, port: int) -> _Connection:
        now = time.monotonic()
        if not pool.addresses or now - pool.resolved_at > self.dns_ttl_s:
            pool.addresses = await self.resolve(host, port)  # raises if any address is refused
            pool.resolved_at = now
        loop = asyncio.get_running_loop()
        last_error: Exception | None = None
        for address, address_port in pool.addresses:
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Connection(self.max_answer_bytes), address, address_port,
                        ssl=self.ssl_context if scheme == "https" else None,
                        server_hostname=host if scheme == "https" else None,
                    ),
                    self.connect_timeout_s,
                )
                self.opened += 1
                return connection
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                last_error = exc
        pool.addresses = []  # look the name up again next time
        if isinstance(last_error, asyncio.TimeoutError):
            raise RequestFailed("connect", "timed out")
        raise RequestFailed("connect", last_error.__class__.__name__ if last_error else "no address")

    async def close(self) -> None:
        for pool in self.pools.values():
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(RequestFailed("timeout", "no answer in time"))
