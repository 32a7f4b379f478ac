"""A fast local TLS push service for the benchmark: checks every request, decrypts none.

Each request must carry `Content-Encoding: aes128gcm`, a positive `TTL`, a valid `Urgency`, a `Topic` of at
most 32 base64url characters, a `Content-Type`, and `Authorization: vapid t=…, k=…` whose JWT verifies
(ES256, `aud` = this origin, `exp` ahead); the body must be one aes128gcm record of at most 4096 bytes with
a 65-byte key id that is not the VAPID key. Each distinct token is verified once and remembered, as a
real push service would. It answers 201, and counts per tenth of a second, so a run can plot throughput.

    python -m bench.sink --port 0 --stats-file FILE   # prints "PORT <n>" once listening; SIGUSR1: new round
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import ssl
import struct
import sys
import time

import httptools
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from workers.runtime import steady_malloc

URGENCIES = {b"very-low", b"low", b"normal", b"high"}
B64URL = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nLocation: /m\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Checker:
    def __init__(self, audience: str):
        self.audience = audience
        self.tokens: dict[bytes, bytes] = {}  # Authorization header → VAPID key (verified)
        self.accepted = 0
        self.connections = 0  # TLS connections made to this push service
        self.rejected = 0
        self.reasons: dict[str, int] = {}
        self.per_tenth: dict[int, int] = {}  # tenth of a second since the epoch → pushes accepted
        self.first_at: float | None = None
        self.last_at: float | None = None

    def new_round(self) -> None:
        """SIGUSR1: the next request accepted is a new broadcast's first (the totals go on)."""
        self.first_at = self.last_at = None

    def vapid_key(self, header: bytes) -> bytes:
        known = self.tokens.get(header)
        if known is not None:
            return known
        scheme, _, rest = header.decode().partition(" ")
        if scheme != "vapid":
            raise ValueError("authorization scheme")
        params = dict(part.strip().split("=", 1) for part in rest.split(","))
        token, key = params["t"], b64d(params["k"])
        head, claims, signature = token.split(".")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
        raw = b64d(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
        body = json.loads(b64d(claims))
        if json.loads(b64d(head)).get("alg") != "ES256":
            raise ValueError("alg")
        if body["aud"] != self.audience:
            raise ValueError(f"aud {body['aud']} != {self.audience}")
        if not 0 < body["exp"] - time.time() <= 86400:
            raise ValueError("exp")
        if not str(body["sub"]).startswith(("mailto:", "https:")):
            raise ValueError("sub")
        self.tokens[header] = key
        return key

    def check(self, headers: dict[bytes, bytes], body: bytes) -> str | None:
        if headers.get(b"content-encoding") != b"aes128gcm":
            return "content-encoding"
        ttl = headers.get(b"ttl", b"")
        if not ttl.isdigit() or int(ttl) <= 0:
            return "ttl"
        if headers.get(b"urgency", b"normal") not in URGENCIES:
            return "urgency"
        topic = headers.get(b"topic")
        if topic is not None and (len(topic) > 32 or not set(topic) <= B64URL):
            return "topic"
        if b"content-type" not in headers:
            return "content-type"
        try:
            vapid = self.vapid_key(headers.get(b"authorization", b""))
        except Exception as exc:  # noqa: BLE001 — any failure is a refusal
            return f"vapid: {exc}"
        if len(body) > 4096 or len(body) < 86 + 17:
            return "size"
        rs, idlen = struct.unpack("!IB", body[16:21])
        if idlen != 65 or body[21] != 4 or rs < len(body) - 86 or body[21:86] == vapid:
            return "header"
        return None


class SinkProtocol(asyncio.Protocol):
    def __init__(self, checker: Checker):
        self.checker = checker
        self.parser = httptools.HttpRequestParser(self)
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport
        self.checker.connections += 1

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self):
        self.headers = {}
        self.body = []

    def on_header(self, name, value):
        self.headers[name.lower()] = value

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        checker = self.checker
        reason = checker.check(self.headers, b"".join(self.body))
        now = time.time()
        if reason is None:
            checker.accepted += 1
            tenth = int(now * 10)
            checker.per_tenth[tenth] = checker.per_tenth.get(tenth, 0) + 1
            if checker.first_at is None:
                checker.first_at = now
            checker.last_at = now
            self.transport.write(CREATED)
        else:
            checker.rejected += 1
            checker.reasons[reason] = checker.reasons.get(reason, 0) + 1
            message = reason.encode()
            self.transport.write(BAD % (len(message), message))


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def serve(port: int, cert: str, key: str, stats_file: str) -> None:
    loop = asyncio.get_running_loop()
    audience = f"https://localhost:{port}" if port else None
    checker = Checker(audience or "")
    server = await loop.create_server(lambda: SinkProtocol(checker), "127.0.0.1", port,
                                      ssl=tls_context(cert, key), backlog=1024)
    actual = server.sockets[0].getsockname()[1]
    checker.audience = f"https://localhost:{actual}"
    print(f"PORT {actual}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, checker.new_round)

    async def dump():
        while True:
            write_stats(checker, stats_file)
            await asyncio.sleep(0.5)

    dumper = asyncio.create_task(dump())
    await stop.wait()
    dumper.cancel()
    server.close()
    write_stats(checker, stats_file)


def write_stats(checker: Checker, path: str) -> None:
    data = {"accepted": checker.accepted, "rejected": checker.rejected, "connections": checker.connections,
            "reasons": checker.reasons,
            "first_at": checker.first_at, "last_at": checker.last_at,
            "per_tenth": sorted(checker.per_tenth.items())}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--stats-file", required=True)
    args = parser.parse_args()
    steady_malloc()
    try:
        import uvloop

        uvloop.run(serve(args.port, args.cert, args.key, args.stats_file))
    except ImportError:
        asyncio.run(serve(args.port, args.cert, args.key, args.stats_file))


if __name__ == "__main__":
    sys.exit(main())
