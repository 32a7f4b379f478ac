"""The one place that makes HTTP requests to push services.

One `PushClient` (workers/http1.py) per worker process: connections are kept alive and reused across
messages, connect and read timeouts are always set, redirects are never followed, proxy settings from the
environment are never read, at most 4 KiB of an answer is read, and every name is resolved through
`GuardedResolver`, which refuses to connect when any address of the host is not globally routable (this,
not the subscribe-time check, is what stops DNS rebinding). The connection goes to one of exactly the
addresses that were checked.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from pathlib import Path

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from core.outcomes import Action, Outcome, classify, transient
from core.records import endpoint_hash
from core.validation import HostPolicy, is_public_address
from core.webpush import PushRequest
from workers.http1 import PushClient, RequestFailed

log = logging.getLogger("nabaa.transport")

MAX_ANSWER_BYTES = 4096
USER_AGENT = "Nabaa/0.1 (+web push for news publishers)"


class BlockedAddress(OSError):
    """A push-service name resolved to an address we must never connect to."""


def _private_allowed(policy: HostPolicy, host: str, port: int | None) -> bool:
    """PUSH_ALLOW_INSECURE lets exactly the hosts listed by name (not by `.suffix`) be private."""
    host = host.lower().rstrip(".").strip("[]")
    entry = policy.match(host, None if port in (None, 0, 80, 443) else port) or policy.match(host, port)
    return entry is not None and policy.is_insecure_entry(entry)


class GuardedResolver(AbstractResolver):
    """Resolves through `inner`, then refuses the name if any of its addresses is not globally routable.

    aiohttp connects to the addresses this returns, so what was checked is what is connected to.
    """

    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None):
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        infos = await self.inner.resolve(host, port, family)
        if not infos:
            raise OSError(f"{host} has no address")
        if _private_allowed(self.policy, host, port):
            return infos
        for info in infos:
            try:
                public = is_public_address(info["host"])
            except (ValueError, KeyError, TypeError):
                public = False
            if not public:
                raise BlockedAddress(f"{host} resolves to {info.get('host')!s:.64}, which is not a public address")
        return infos

    async def close(self) -> None:
        await self.inner.close()


def _literal_refused(policy: HostPolicy, url: URL) -> str | None:
    """aiohttp never asks the resolver about an IP literal, so the same check is made here for one."""
    host = (url.raw_host or "").strip("[]")
    try:
        public = is_public_address(host.split("%", 1)[0])
    except ValueError:
        return None  # a name: the resolver checks it
    if public or _private_allowed(policy, host, url.explicit_port):
        return None
    return f"{host} is not a public address"


def _snippet(body: bytes, endpoint: str) -> str:
    """A push service's answer, fit for a log line: short, one line, the endpoint replaced by its hash."""
    text = body[:200].decode("utf-8", "replace")
    path = URL(endpoint, encoded=True).raw_path
    if len(path) > 1:
        text = text.replace(path, endpoint_hash(endpoint))
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else "?" for c in text)


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _split(endpoint: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of a validated endpoint."""
    scheme, _, rest = endpoint.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:] or "/"
    if target.startswith("?"):
        target = "/" + target
    if authority.startswith("["):
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = authority.partition(":")
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    return scheme, host, port, target


class Transport:
    """POSTs push requests over `workers.http1.PushClient`; answers with an `Outcome` from the one table."""

    def __init__(self, policy: HostPolicy, *, connect_timeout_s: float, read_timeout_s: float,
                 max_connections: int, per_host_connections: int, ca_file: Path | None = None,
                 resolver: AbstractResolver | None = None):
        self.policy = policy
        self.resolver = GuardedResolver(policy, resolver)
        self.client = PushClient(
            self._resolve, ssl_context=ssl_context(ca_file), connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s, per_origin=min(per_host_connections, max_connections),
            max_answer_bytes=MAX_ANSWER_BYTES,
        )

    async def _resolve(self, host: str, port: int) -> list[tuple[str, int]]:
        try:
            ipaddress.ip_address(host)
            return [(host, port)]  # a literal: checked by `_literal_refused` before the request
        except ValueError:
            pass
        infos = await self.resolver.resolve(host, port, socket.AF_UNSPEC)
        return [(info["host"], info.get("port") or port) for info in infos]

    async def send(self, request: PushRequest) -> Outcome:
        scheme, host, port, target = _split(request.endpoint)
        if host and (host[0].isdigit() or ":" in host):
            refused = _literal_refused(self.policy, URL(request.endpoint, encoded=True))
            if refused is not None:
                return Outcome(Action.REJECTED, None, refused)
        headers = {**request.headers, "User-Agent": USER_AGENT}
        try:
            answer = await self.client.post(scheme, host, port, target, headers, request.body)
        except RequestFailed as exc:
            return transient(f"{exc.kind}: {exc.detail}" if exc.detail else exc.kind)
        except BlockedAddress as exc:
            return Outcome(Action.REJECTED, None, str(exc))
        except OSError as exc:  # the name did not resolve
            return transient(f"dns: {exc.__class__.__name__}")
        outcome = classify(answer.status, answer.retry_after)
        if outcome.action not in (Action.SENT, Action.GONE) and answer.body:
            outcome = Outcome(outcome.action, outcome.status, f"{outcome.reason}: {_snippet(answer.body, request.endpoint)}",
                              outcome.retry_after_s)
        return outcome

    async def close(self) -> None:
        await self.client.close()
        await self.resolver.close()
