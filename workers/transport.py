"""The one place that makes HTTP requests to push services.

One aiohttp session per worker process: connections are kept alive and reused across messages, connect and
read timeouts are always set, redirects are never followed, proxy settings from the environment are ignored,
at most 4 KiB of an answer is read, and every name is resolved through `GuardedResolver`, which refuses to
connect when any address of the host is not globally routable (this, not the subscribe-time check, is
what stops DNS rebinding). The connection goes to exactly the addresses that were checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from core.outcomes import Action, Outcome, classify, transient
from core.validation import HostPolicy
from core.webpush import PushRequest

log = logging.getLogger("nabaa.transport")

MAX_ANSWER_BYTES = 4096
USER_AGENT = "Nabaa/0.1 (+web push for news publishers)"


class BlockedAddress(OSError):
    """A push-service name resolved to an address we must never connect to."""


class GuardedResolver(AbstractResolver):
    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None):
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        infos = await self.inner.resolve(host, port, family)
        entry = self.policy.match(host.lower().rstrip("."), port if port not in (0, 443) else None)
        private_ok = entry is not None and self.policy.is_insecure_entry(entry)
        for info in infos:
            address = ipaddress.ip_address(info["host"])
            if not address.is_global and not private_ok:
                raise BlockedAddress(f"{host} resolves to {address}, which is not a public address")
        if not infos:
            raise OSError(f"{host} has no address")
        return infos

    async def close(self) -> None:
        await self.inner.close()


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.set_alpn_protocols(["http/1.1"])
    return context


class Transport:
    """POSTs push requests; answers with an `Outcome` from the one status table."""

    def __init__(self, policy: HostPolicy, *, connect_timeout_s: float, read_timeout_s: float,
                 max_connections: int, per_host_connections: int, ca_file: Path | None = None,
                 resolver: AbstractResolver | None = None):
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(
            total=connect_timeout_s + read_timeout_s + 5, sock_connect=connect_timeout_s,
            sock_read=read_timeout_s, connect=connect_timeout_s + 2,
        )
        self.connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=per_host_connections, ssl=ssl_context(ca_file),
            resolver=GuardedResolver(policy, resolver), ttl_dns_cache=30, keepalive_timeout=60,
        )
        self.session = aiohttp.ClientSession(
            connector=self.connector, timeout=self.timeout, trust_env=False, auto_decompress=False,
            headers={"User-Agent": USER_AGENT}, skip_auto_headers=("Accept-Encoding",),
        )

    async def send(self, request: PushRequest) -> Outcome:
        try:
            async with self.session.post(
                URL(request.endpoint, encoded=True), data=request.body, headers=request.headers,
                allow_redirects=False, max_redirects=0,
            ) as answer:
                outcome = classify(answer.status, answer.headers.get("Retry-After"))
                body = await answer.content.read(MAX_ANSWER_BYTES)
                if not answer.content.at_eof():
                    answer.close()  # an answer larger than we read: drop the connection, don't drain it
                if outcome.action not in (Action.SENT, Action.GONE) and body:
                    outcome = Outcome(outcome.action, outcome.status,
                                      f"{outcome.reason}: {body[:200].decode('utf-8', 'replace')}",
                                      outcome.retry_after_s)
                return outcome
        except asyncio.TimeoutError:
            return transient("timeout")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress) or isinstance(exc.__cause__, BlockedAddress):
                return Outcome(Action.REJECTED, None, str(exc.os_error))
            return transient(f"connect: {exc.os_error.__class__.__name__}")
        except BlockedAddress as exc:
            return Outcome(Action.REJECTED, None, str(exc))
        except (aiohttp.ClientError, OSError) as exc:
            return transient(f"{exc.__class__.__name__}")

    async def close(self) -> None:
        await self.session.close()
