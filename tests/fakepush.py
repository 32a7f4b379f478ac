"""A fake Web Push service that speaks the real protocol, for Nabaa's tests.

It holds each subscriber's private key, decrypts every message (RFC 8291 / RFC 8188 ``aes128gcm``),
verifies the VAPID token (RFC 8292) and the RFC 8030 headers, records everything it saw, and can be
scripted to answer like a real push service on a bad day (404/410/413/429/5xx, hang, reset, redirect).
All traffic stays on 127.0.0.1.

Quick start
-----------
Async test (the server runs on the test's own event loop)::

    async with FakePushService() as fps:
        sub = fps.new_subscriber()
        await send(sub.subscription_json(), ...)      # code under test
        [rec] = fps.received
        assert rec.status == 201 and rec.error is None
        assert fps.messages_for(sub) == [{"title": "..."}]

Sync test, or the sender running in another thread or process (the server runs its own event loop
in a background thread)::

    with FakePushService.in_thread(tls=True) as fps:
        settings.PUSH_CA_FILE = fps.ca_file           # trust the fake's throw-away CA
        sub = fps.new_subscriber()
        ...
        fps.wait_for(1)                               # block until one request was recorded

Endpoints look like ``{fps.base_url}/push/{token}``; ``fps.new_subscriber(host_alias="localhost")``
hands out ``http://localhost:{port}/push/{token}`` instead (same server, a different "push host"),
``fps.new_subscriber(origin="https://fcm.googleapis.com")`` hands out an endpoint at that origin (the
test must route the connection to ``fps.port`` itself, e.g. with a resolver override).

What is verified on ``POST /push/{token}``
------------------------------------------
In this order; the first failure is recorded in ``record.error`` as ``"<field>: <reason>"`` and,
with ``reject_invalid=True`` (the default), answered ``400 {"status": 400, "reason": ...}``
(``413`` for a body over ``max_body``). An invalid request does not consume a scripted response.

1. body ≤ ``max_body`` (4096) bytes                               -> else 413
2. ``Content-Encoding: aes128gcm``
3. ``TTL``: an integer > 0 (digits only)
4. ``Urgency``, if present: ``very-low|low|normal|high``
5. ``Topic``, if present: 1–32 chars of the base64url alphabet
6. ``Content-Type`` present (``require_content_type=False`` to skip)
7. ``Authorization: vapid t=<JWT>, k=<key>``: ES256 signature (raw 64-byte R||S) valid for ``k``
   (65-byte uncompressed P-256 point, unpadded base64url); ``aud`` == the expected origin;
   ``now < exp <= now + 24 h``; ``sub`` starts with ``mailto:`` or ``https:``.
   The expected ``aud`` is ``sub.expected_aud`` if set, else ``fps.expected_aud`` if set, else the
   serialised origin of the endpoint handed out (``scheme://host[:port]``, default port omitted).
8. the RFC 8188 header: salt(16) | rs(uint32, ≥ 18) | idlen(=65) | keyid(65-byte sender ECDH
   public key on P-256, and not the VAPID key); exactly one record (``len(body) - 86 <= rs``).
9. decryption with the subscriber's private key and auth secret (padding delimiter checked by
   http_ece); ``record.payload`` is the JSON it decodes to (``None`` if the plaintext is not JSON).

Unknown tokens are answered 404, tokens removed with ``fps.unsubscribe(sub)`` 410 (both recorded).

Scripting the answers
---------------------
An *action* is one of::

    201                           answer with that status (any 100–599); 2xx get a Location and TTL header
    (429, {"Retry-After": "2"})   status plus response headers, e.g. (301, {"Location": "http://127.0.0.1:1/x"})
    "hang"                        read the request, never answer; ends when the client gives up
                                  or the service stops (``record.status`` stays None)
    "reset"                       read the request, then abort the TCP connection (no response)
    ("slow", 1.5)                 wait 1.5 s, then answer 201
    ("slow", 1.5, 503)            wait 1.5 s, then perform the given action
    callable(record) -> action    decide per request (e.g. from ``record.payload``)

``fps.script(target, [a1, a2, ...], then=None)`` queues actions for ``target`` (a ``Subscriber``, a
token string, or ``None`` = every subscriber); ``fps.script_host(host, [...], then=None)`` for every
subscriber whose endpoint host is ``host``. Each valid request takes the next queued action of the
most specific scope that still has one (subscriber, then host, then all). When no queue has one left,
the most specific ``then`` applies (sticky, never consumed), and when none is set ``fps.default``
(initially 201). Calling ``script`` again for a scope replaces its queue and its ``then``;
``fps.clear_scripts()`` drops them all. Examples::

    fps.script(sub, [(429, {"Retry-After": "1"})])        # one 429, then back to 201
    fps.script(sub, [503, 503])                           # two 503s, then 201
    fps.script(sub, [], then=410)                          # gone for good
    fps.script_host("localhost", [], then="hang")          # that whole host hangs
    fps.default = (503, {})                                # everything fails unless scripted

Records and counters
--------------------
``fps.received`` (a copy; safe to read from any thread) holds one ``PushRecord`` per request, appended
when the request has been read and verified (before a hang/slow action completes): method, path,
token, subscriber, host (the Host header), headers (lower-case names), body, time/monotonic, ttl,
urgency, topic, plaintext, payload, vapid_claims, vapid_key, salt, rs, keyid, error, action, status,
answered_at; ``record.accepted`` is True for a 2xx answer.
``fps.count``, ``fps.errors``, ``fps.records_for(sub)``, ``fps.messages_for(sub)`` (payloads of the
accepted = 2xx requests), ``fps.connections`` (TCP connections accepted, counted at accept time, so
also failed TLS handshakes), ``fps.open_connections`` (HTTP connections open now), ``fps.in_flight``,
``fps.max_in_flight``, ``fps.max_in_flight_by_host``; ``fps.wait_for(n)`` / ``await
fps.wait_for_async(n)``; ``fps.clear_received()``.

Standalone helpers (no server needed): ``verify_vapid(authorization, expected_aud)``,
``verify_push_request(headers, body, subscriber)``, ``parse_ece_header(body)``, ``Subscriber.generate()``,
``Subscriber.from_raw(private_raw, auth_secret)``, ``b64url_encode`` / ``b64url_decode``, ``origin_of(url)``.

Exceptions::

    ValueError
     └── PushVerificationError      .field, .reason, .status (400 or 413)
          └── VapidError            the Authorization header / VAPID token is wrong
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import http_ece
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "FakePushService",
    "PushRecord",
    "PushVerificationError",
    "Subscriber",
    "VapidError",
    "VerifiedPush",
    "b64url_decode",
    "b64url_encode",
    "origin_of",
    "parse_ece_header",
    "parse_vapid_authorization",
    "verify_push_request",
    "verify_vapid",
]

MAX_BODY = 4096  # RFC 8291 §4: a push service need not accept more
ECE_HEADER_LEN = 86  # salt 16 + rs 4 + idlen 1 + keyid 65 (RFC 8188 §2.1, RFC 8291 §4)
ECE_MIN_RECORD = 17  # padding delimiter + 16-byte AEAD tag
VAPID_MAX_EXP_S = 24 * 60 * 60  # RFC 8292 §2: exp no more than 24 hours ahead
URGENCIES = frozenset({"very-low", "low", "normal", "high"})  # RFC 8030 §5.3
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_B64URL_PADDED = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # RFC 8030 §5.4
_TTL = re.compile(r"^[0-9]+$")
_PUSH_PATH = re.compile(r"^/push/([A-Za-z0-9_-]+)$")


# --------------------------------------------------------------------------- encoding helpers


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str | bytes, *, allow_padding: bool = True) -> bytes:
    """Strict base64url: raises ValueError for any character outside the alphabet."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    pattern = _B64URL_PADDED if allow_padding else _B64URL
    if not pattern.match(value) or (not allow_padding and "=" in value):
        raise ValueError(f"not strict base64url{'' if allow_padding else ' (no padding)'}: {value[:40]!r}")
    stripped = value.rstrip("=")
    if len(stripped) % 4 == 1:
        raise ValueError(f"impossible base64url length: {value[:40]!r}")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except binascii.Error as exc:  # pragma: no cover - guarded by the regex
        raise ValueError(str(exc)) from exc


def origin_of(url: str) -> str:
    """The serialised origin ``scheme://host[:port]`` (RFC 6454 §6.1; default port omitted)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == {"http": 80, "https": 443}.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _public_raw(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _load_point(raw: bytes, what: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a 65-byte uncompressed point; ValueError naming ``what`` otherwise."""
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError(f"{what} must be a 65-byte uncompressed P-256 point, got {len(raw)} bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise ValueError(f"{what} is not a point on P-256 ({exc})") from exc


# --------------------------------------------------------------------------- errors


class PushVerificationError(ValueError):
    """A push request the fake refuses; ``status`` is what the fake answers (400, or 413 for size)."""

    def __init__(self, field_name: str, reason: str, status: int = 400) -> None:
        self.field = field_name
        self.reason = reason
        self.status = status
        super().__init__(f"{field_name}: {reason}")


class VapidError(PushVerificationError):
    """The ``Authorization`` header or its VAPID JWT is wrong (RFC 8292)."""

    def __init__(self, reason: str, field_name: str = "vapid") -> None:
        super().__init__(field_name, reason, 400)


# --------------------------------------------------------------------------- VAPID


def parse_vapid_authorization(authorization: str) -> tuple[str, str]:
    """Split ``vapid t=<jwt>, k=<key>`` (RFC 8292 §3) into ``(token, k)``."""
    if not authorization:
        raise VapidError("missing Authorization header", "authorization")
    scheme, _, params = authorization.strip().partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError(f"scheme must be 'vapid' (RFC 8292 §3), got {scheme!r}", "authorization")
    parts: dict[str, str] = {}
    for item in params.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise VapidError(f"malformed parameter {item[:40]!r}", "authorization")
        parts[name.strip().lower()] = value.strip()
    for name in ("t", "k"):
        if not parts.get(name):
            raise VapidError(f"missing '{name}=' parameter", "authorization")
    return parts["t"], parts["k"]


def _verify_vapid(
    authorization: str,
    expected_aud: str | None,
    *,
    check_exp: bool = True,
    now: float | None = None,
    max_exp_s: float = VAPID_MAX_EXP_S,
) -> tuple[dict[str, Any], bytes]:
    token, k = parse_vapid_authorization(authorization)
    try:
        key_raw = b64url_decode(k, allow_padding=False)
    except ValueError as exc:
        raise VapidError(f"k is {exc}") from exc
    try:
        public_key = _load_point(key_raw, "k")
    except ValueError as exc:
        raise VapidError(str(exc)) from exc

    pieces = token.split(".")
    if len(pieces) != 3:
        raise VapidError(f"token must be a JWS compact serialisation of 3 parts, got {len(pieces)}")
    try:
        header_raw, claims_raw, sig = (b64url_decode(p, allow_padding=False) for p in pieces)
    except ValueError as exc:
        raise VapidError(f"token part is {exc}") from exc
    try:
        header = json.loads(header_raw)
        claims = json.loads(claims_raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VapidError(f"token header or claims are not JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise VapidError(f"JWT alg must be ES256, header is {header!r}")
    if "typ" in header and str(header["typ"]).upper() != "JWT":
        raise VapidError(f"JWT typ must be JWT, header is {header!r}")
    if len(sig) != 64:
        raise VapidError(f"ES256 signature must be 64 raw bytes (R||S, RFC 7518 §3.4), got {len(sig)}")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    signing_input = f"{pieces[0]}.{pieces[1]}".encode("ascii")
    try:
        public_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VapidError("bad ES256 signature for key k") from None
    if not isinstance(claims, dict):
        raise VapidError(f"claims must be a JSON object, got {type(claims).__name__}")

    aud = claims.get("aud")
    if not isinstance(aud, str) or not aud:
        raise VapidError("missing aud claim")
    if expected_aud is not None and aud != expected_aud:
        raise VapidError(f"aud {aud!r} != expected origin {expected_aud!r}")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise VapidError(f"exp must be a number, got {exp!r}")
    if check_exp:
        now = time.time() if now is None else now
        if exp <= now:
            raise VapidError(f"exp {exp} is in the past (now {int(now)})")
        if exp > now + max_exp_s:
            raise VapidError(f"exp {exp} is {exp - now:.0f} s ahead, more than {max_exp_s:.0f} s")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not (
        (sub.startswith("mailto:") and len(sub) > 7) or (sub.startswith("https:") and len(sub) > 6)
    ):
        raise VapidError(f"sub must be a mailto: or https: contact, got {sub!r}")
    return claims, key_raw


def verify_vapid(
    authorization_header: str,
    expected_aud: str | None,
    *,
    check_exp: bool = True,
    now: float | None = None,
    max_exp_s: float = VAPID_MAX_EXP_S,
) -> dict[str, Any]:
    """Verify an ``Authorization: vapid t=..., k=...`` header; return the JWT claims.

    ``expected_aud=None`` skips the audience check; ``check_exp=False`` skips the expiry window
    (for the RFC 8292 example token, which expired in 2016). Raises ``VapidError``.
    """
    claims, _ = _verify_vapid(
        authorization_header, expected_aud, check_exp=check_exp, now=now, max_exp_s=max_exp_s
    )
    return claims


# --------------------------------------------------------------------------- aes128gcm


@dataclass(frozen=True)
class EceHeader:
    salt: bytes
    rs: int
    keyid: bytes


def parse_ece_header(body: bytes) -> EceHeader:
    """Parse and check the RFC 8188 §2.1 header of a one-record Web Push body."""
    if len(body) < ECE_HEADER_LEN + ECE_MIN_RECORD:
        raise PushVerificationError("body", f"{len(body)} bytes is shorter than header + one record (103)")
    salt = body[:16]
    (rs,) = struct.unpack("!I", body[16:20])
    idlen = body[20]
    if idlen != 65:
        raise PushVerificationError("body", f"idlen must be 65 (RFC 8291 §4), got {idlen}")
    keyid = body[21:ECE_HEADER_LEN]
    try:
        _load_point(keyid, "keyid (the sender's ECDH key)")
    except ValueError as exc:
        raise PushVerificationError("body", str(exc)) from exc
    if rs < 18:
        raise PushVerificationError("body", f"rs {rs} < 18 (RFC 8188 §2.1)")
    if len(body) - ECE_HEADER_LEN > rs:
        raise PushVerificationError(
            "body", f"more than one record: {len(body) - ECE_HEADER_LEN} bytes of records with rs={rs}"
        )
    return EceHeader(salt=salt, rs=rs, keyid=keyid)


# --------------------------------------------------------------------------- subscriber


@dataclass(eq=False)
class Subscriber:
    """A browser's push subscription: P-256 key pair, 16-byte auth secret, endpoint URL."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth_secret: bytes = field(repr=False)
    token: str = ""
    expected_aud: str | None = None  # overrides the aud the fake expects for this subscriber

    @classmethod
    def generate(cls, endpoint: str = "https://push.invalid/push/test", **kwargs: Any) -> Subscriber:
        return cls(
            endpoint=endpoint,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
            **kwargs,
        )

    @classmethod
    def from_raw(
        cls, private_raw: bytes | str, auth_secret: bytes | str, endpoint: str = "https://push.invalid/push/test"
    ) -> Subscriber:
        """From a raw 32-byte private scalar and auth secret (bytes or base64url), e.g. RFC 8291 App. A."""
        if isinstance(private_raw, str):
            private_raw = b64url_decode(private_raw)
        if isinstance(auth_secret, str):
            auth_secret = b64url_decode(auth_secret)
        key = ec.derive_private_key(int.from_bytes(private_raw, "big"), ec.SECP256R1())
        return cls(endpoint=endpoint, private_key=key, auth_secret=auth_secret)

    @property
    def public_key_bytes(self) -> bytes:
        return _public_raw(self.private_key.public_key())

    @property
    def p256dh(self) -> str:
        return b64url_encode(self.public_key_bytes)

    @property
    def auth(self) -> str:
        return b64url_encode(self.auth_secret)

    @property
    def origin(self) -> str:
        return origin_of(self.endpoint)

    @property
    def host(self) -> str:
        return (urlsplit(self.endpoint).hostname or "").lower()

    def subscription_json(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives in a browser."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }

    def decrypt(self, body: bytes) -> bytes:
        return http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm"
        )


# --------------------------------------------------------------------------- request verification


@dataclass
class VerifiedPush:
    """What ``verify_push_request`` extracted (fields are filled as far as verification got)."""

    ttl: int | None = None
    urgency: str | None = None
    topic: str | None = None
    vapid_claims: dict[str, Any] | None = None
    vapid_key: bytes | None = None
    salt: bytes | None = None
    rs: int | None = None
    keyid: bytes | None = None
    plaintext: bytes | None = None
    payload: Any = None


def _verify_into(
    out: Any,
    headers: Mapping[str, str],
    body: bytes,
    subscriber: Subscriber,
    *,
    expected_aud: str | None,
    require_content_type: bool = True,
    max_body: int = MAX_BODY,
    now: float | None = None,
    max_exp_s: float = VAPID_MAX_EXP_S,
) -> None:
    h = {k.lower(): v for k, v in headers.items()}
    if len(body) > max_body:
        raise PushVerificationError("body", f"{len(body)} bytes > {max_body}", status=413)

    encoding = h.get("content-encoding")
    if encoding is None or encoding.strip().lower() != "aes128gcm":
        raise PushVerificationError("content-encoding", f"must be aes128gcm, got {encoding!r}")

    ttl = h.get("ttl")
    if ttl is None:
        raise PushVerificationError("ttl", "missing TTL header (RFC 8030 §5.2)")
    if not _TTL.match(ttl.strip()) or int(ttl) <= 0:
        raise PushVerificationError("ttl", f"must be an integer > 0, got {ttl!r}")
    out.ttl = int(ttl)

    urgency = h.get("urgency")
    if urgency is not None and urgency not in URGENCIES:
        raise PushVerificationError("urgency", f"must be one of very-low|low|normal|high, got {urgency!r}")
    out.urgency = urgency

    topic = h.get("topic")
    if topic is not None and not _TOPIC.match(topic):
        raise PushVerificationError("topic", f"must be 1-32 base64url characters, got {topic!r}")
    out.topic = topic

    if require_content_type and not h.get("content-type"):
        raise PushVerificationError("content-type", "missing Content-Type header")

    claims, vapid_key = _verify_vapid(
        h.get("authorization", ""), expected_aud, now=now, max_exp_s=max_exp_s
    )
    out.vapid_claims, out.vapid_key = claims, vapid_key

    ece = parse_ece_header(body)
    out.salt, out.rs, out.keyid = ece.salt, ece.rs, ece.keyid
    if ece.keyid == vapid_key:
        raise PushVerificationError("body", "the message's ECDH key is the VAPID key; it must be fresh per message")

    try:
        plaintext = subscriber.decrypt(body)
    except Exception as exc:  # http_ece raises ECEException, cryptography InvalidTag
        raise PushVerificationError("decrypt", f"{type(exc).__name__}: {exc}") from exc
    out.plaintext = plaintext
    try:
        out.payload = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        out.payload = None


def verify_push_request(
    headers: Mapping[str, str],
    body: bytes,
    subscriber: Subscriber,
    *,
    expected_aud: str | None = None,
    require_content_type: bool = True,
    max_body: int = MAX_BODY,
    now: float | None = None,
) -> VerifiedPush:
    """Check a push request (headers, body) as the fake service does, without any network.

    ``expected_aud`` defaults to ``subscriber.expected_aud`` or else the subscriber endpoint's origin.
    Raises ``PushVerificationError`` / ``VapidError``; returns the decrypted result.
    """
    out = VerifiedPush()
    _verify_into(
        out,
        headers,
        body,
        subscriber,
        expected_aud=expected_aud or subscriber.expected_aud or subscriber.origin,
        require_content_type=require_content_type,
        max_body=max_body,
        now=now,
    )
    return out


# --------------------------------------------------------------------------- records


@dataclass(eq=False)
class PushRecord:
    """One request the fake received."""

    method: str
    path: str
    token: str | None
    subscriber: Subscriber | None
    host: str | None  # the Host header
    headers: dict[str, str]  # lower-case names
    body: bytes
    time: float  # time.time() when the request was read
    monotonic: float  # time.monotonic() when the request was read
    ttl: int | None = None
    urgency: str | None = None
    topic: str | None = None
    vapid_claims: dict[str, Any] | None = None
    vapid_key: bytes | None = None  # raw 65-byte VAPID public key (k)
    salt: bytes | None = None
    rs: int | None = None
    keyid: bytes | None = None  # the sender's per-message ECDH public key
    plaintext: bytes | None = None
    payload: Any = None  # JSON-decoded plaintext, or None
    error: str | None = None  # verification failure "<field>: <reason>", or None
    action: str | None = None  # what the script did, e.g. "201", "hang", "slow 1.5 -> 201"
    status: int | None = None  # answered status; None while pending, for hang and reset
    answered_at: float | None = None  # time.monotonic() when answered

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def endpoint_host(self) -> str | None:
        return self.subscriber.host if self.subscriber else None


# --------------------------------------------------------------------------- scripted actions


@dataclass(frozen=True)
class _Action:
    kind: str  # respond | hang | reset | slow | call
    status: int = 201
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    then: _Action | None = None
    fn: Callable[[PushRecord], Any] | None = None

    def describe(self) -> str:
        if self.kind == "respond":
            return str(self.status)
        if self.kind == "slow":
            return f"slow {self.delay_s:g} -> {self.then.describe() if self.then else '201'}"
        if self.kind == "call":
            return f"call {getattr(self.fn, '__name__', 'fn')}"
        return self.kind


_ACTION_HELP = "use 201, (429, {'Retry-After': '2'}), 'hang', 'reset', ('slow', s), ('slow', s, action) or a callable"


def _action(spec: Any) -> _Action:
    if isinstance(spec, _Action):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not 100 <= spec <= 599:
            raise ValueError(f"status {spec} out of range; {_ACTION_HELP}")
        return _Action("respond", status=spec)
    if spec in ("hang", "reset"):
        return _Action(spec)
    if isinstance(spec, tuple) and spec:
        if spec[0] == "slow" and len(spec) in (2, 3) and isinstance(spec[1], (int, float)):
            then = _action(spec[2]) if len(spec) == 3 else _Action("respond", status=201)
            return _Action("slow", delay_s=float(spec[1]), then=then)
        if len(spec) == 2 and isinstance(spec[1], Mapping):
            base = _action(spec[0])
            if base.kind != "respond":
                raise ValueError(f"headers go with a status, got {spec!r}; {_ACTION_HELP}")
            return _Action("respond", status=base.status, headers=tuple((str(k), str(v)) for k, v in spec[1].items()))
    if callable(spec) and not isinstance(spec, (str, bytes)):
        return _Action("call", fn=spec)
    raise ValueError(f"unknown fake push action {spec!r}; {_ACTION_HELP}")


# --------------------------------------------------------------------------- TLS material


def _make_tls_files(directory: str, hostnames: Iterable[str]) -> tuple[str, str, str]:
    """A throw-away CA and a server certificate signed by it; returns (ca_file, cert_file, key_file)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nabaa fakepush test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys(hostnames):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = os.path.join(directory, "ca.pem")
    cert_file = os.path.join(directory, "server.pem")
    key_file = os.path.join(directory, "server.key")
    with open(ca_file, "wb") as f:
        f.write(ca_cert.public_bytes(pem))
    with open(cert_file, "wb") as f:
        f.write(leaf.public_bytes(pem) + ca_cert.public_bytes(pem))
    with open(key_file, "wb") as f:
        f.write(
            leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return ca_file, cert_file, key_file


# --------------------------------------------------------------------------- the service


_ALL = ("all",)


class _CountingServer(web.Server):
    """aiohttp's low-level server, counting accepted and open connections for the fake.

    ``__call__`` is the protocol factory asyncio calls once per accepted TCP connection (before any
    TLS handshake); ``connection_made``/``connection_lost`` are called by each RequestHandler once
    its (TLS) connection is up and when it goes away.
    """

    def __init__(self, fake: FakePushService, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._fake = fake

    def __call__(self) -> Any:
        self._fake._on_accept()
        return super().__call__()

    def connection_made(self, handler: Any, transport: Any) -> None:
        self._fake._on_open(+1)
        super().connection_made(handler, transport)

    def connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
        self._fake._on_open(-1)
        super().connection_lost(handler, exc)


class FakePushService:
    """A scripted Web Push service on 127.0.0.1 (see the module docstring).

    ``async with FakePushService() as fps`` runs it on the current loop;
    ``with FakePushService.in_thread() as fps`` runs it on its own loop in a daemon thread.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        bind_host: str = "127.0.0.1",
        port: int = 0,
        endpoint_host: str = "127.0.0.1",
        hostnames: Iterable[str] = (),
        expected_aud: str | None = None,
        reject_invalid: bool = True,
        require_content_type: bool = True,
        max_body: int = MAX_BODY,
        max_ttl_s: int = 28 * 24 * 3600,
        vapid_max_exp_s: float = VAPID_MAX_EXP_S,
        shutdown_timeout_s: float = 2.0,
    ) -> None:
        self.tls = tls
        self.bind_host = bind_host
        self.endpoint_host = endpoint_host
        self.expected_aud = expected_aud
        self.reject_invalid = reject_invalid
        self.require_content_type = require_content_type
        self.max_body = max_body
        self.max_ttl_s = max_ttl_s
        self.vapid_max_exp_s = vapid_max_exp_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._requested_port = port
        self._tls_names = tuple(dict.fromkeys(["localhost", "127.0.0.1", "::1", endpoint_host, *hostnames]))
        self.ca_file: str | None = None  # PEM of the CA that signed the server certificate (TLS only)

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._subscribers: dict[str, Subscriber] = {}
        self._gone: set[str] = set()
        self._records: list[PushRecord] = []
        self._queues: dict[tuple[str, ...], collections.deque[_Action]] = {}
        self._thens: dict[tuple[str, ...], _Action] = {}
        self._default = _Action("respond", status=201)
        self._connections = 0
        self._open_connections = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._in_flight_by_host: collections.Counter[str] = collections.Counter()
        self._max_in_flight_by_host: dict[str, int] = {}

        self._port: int | None = None
        self._tmpdir: str | None = None
        self._web_server: web.Server | None = None
        self._server: asyncio.AbstractServer | None = None
        self._closing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._threaded = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def in_thread(cls, **kwargs: Any) -> FakePushService:
        """A service to use as ``with FakePushService.in_thread(...) as fps:`` from sync code."""
        return cls(**kwargs)

    async def start(self) -> None:
        """Bind and start serving on the running loop (``async with`` does this)."""
        if self._server is not None:
            raise RuntimeError("FakePushService already started")
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        ssl_ctx = None
        if self.tls:
            self._tmpdir = tempfile.mkdtemp(prefix="fakepush-")
            self.ca_file, cert_file, key_file = _make_tls_files(self._tmpdir, self._tls_names)
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_ctx.load_cert_chain(cert_file, key_file)
        sock = socket.socket(socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.bind_host, self._requested_port))
            sock.listen(128)
            sock.setblocking(False)
            self._port = sock.getsockname()[1]
            self._web_server = _CountingServer(self, self._handle, access_log=None)
            self._server = await self._loop.create_server(self._web_server, sock=sock, ssl=ssl_ctx)
        except BaseException:
            sock.close()
            self._cleanup_files()
            raise

    async def stop(self) -> None:
        """Stop listening, wake hung requests, close every connection."""
        if self._server is None:
            return
        assert self._closing is not None and self._web_server is not None
        self._closing.set()
        self._server.close()
        self._web_server.pre_shutdown()
        await self._web_server.shutdown(self.shutdown_timeout_s)
        try:
            await asyncio.wait_for(self._server.wait_closed(), self.shutdown_timeout_s)
        except asyncio.TimeoutError:  # pragma: no cover - a client that never lets go
            pass
        self._server = None
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    async def __aenter__(self) -> FakePushService:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def __enter__(self) -> FakePushService:
        loop = asyncio.new_event_loop()
        self._threaded = True
        self._thread = threading.Thread(target=self._run_loop, args=(loop,), name="fakepush", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=self.shutdown_timeout_s * 3 + 5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakePushService not started")
        return self._port

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def origin_for(self, host: str | None = None) -> str:
        host = host or self.endpoint_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin_for()

    @property
    def origin(self) -> str:
        return self.origin_for()

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSLContext that trusts only this service's CA (TLS mode)."""
        if not self.ca_file:
            raise RuntimeError("not a TLS FakePushService (pass tls=True)")
        return ssl.create_default_context(cafile=self.ca_file)

    # ------------------------------------------------------------------ subscribers

    def new_subscriber(
        self,
        host_alias: str | None = None,
        *,
        origin: str | None = None,
        expected_aud: str | None = None,
    ) -> Subscriber:
        """Register a subscriber; the service keeps its private key to decrypt.

        ``host_alias`` replaces the endpoint's host (``{scheme}://{alias}:{port}/push/{token}``);
        ``origin`` replaces the whole origin (``{origin}/push/{token}``), e.g. to pass an allow-list.
        """
        if host_alias and origin:
            raise ValueError("pass host_alias or origin, not both")
        if host_alias and self.tls and host_alias not in self._tls_names:
            raise ValueError(
                f"host alias {host_alias!r} is not in the TLS certificate; "
                f"pass FakePushService(tls=True, hostnames=[{host_alias!r}])"
            )
        token = secrets.token_urlsafe(24)
        base = origin.rstrip("/") if origin else self.origin_for(host_alias)
        sub = Subscriber.generate(f"{base}/push/{token}", token=token, expected_aud=expected_aud)
        with self._lock:
            self._subscribers[token] = sub
        return sub

    def unsubscribe(self, subscriber: Subscriber | str) -> None:
        """From now on, pushes to this subscriber are answered 410 Gone."""
        token = self._token(subscriber)
        with self._lock:
            self._gone.add(token)

    @property
    def subscribers(self) -> list[Subscriber]:
        with self._lock:
            return list(self._subscribers.values())

    def _token(self, subscriber: Subscriber | str) -> str:
        return subscriber.token if isinstance(subscriber, Subscriber) else subscriber

    # ------------------------------------------------------------------ scripting

    @property
    def default(self) -> _Action:
        return self._default

    @default.setter
    def default(self, spec: Any) -> None:
        action = _action(spec)
        with self._lock:
            self._default = action

    def script(self, target: Subscriber | str | None, responses: Iterable[Any] = (), *, then: Any = None) -> None:
        """Queue actions for a subscriber / token, or for everyone (``None``); see the module docstring."""
        scope = _ALL if target is None else ("sub", self._token(target))
        self._set_script(scope, responses, then)

    def script_host(self, host: str, responses: Iterable[Any] = (), *, then: Any = None) -> None:
        """Queue actions for every subscriber whose endpoint host is ``host``."""
        self._set_script(("host", host.lower()), responses, then)

    def _set_script(self, scope: tuple[str, ...], responses: Iterable[Any], then: Any) -> None:
        if isinstance(responses, (int, str, bytes, tuple, Mapping)):
            # A bare action here is a likely slip: (429, {...}) would otherwise be two actions.
            raise TypeError(f"responses must be a list of actions, e.g. [410] or [(429, {{'Retry-After': '1'}})], got {responses!r}")
        queue = collections.deque(_action(r) for r in responses)
        then_action = None if then is None else _action(then)
        with self._lock:
            self._queues[scope] = queue
            if then_action is None:
                self._thens.pop(scope, None)
            else:
                self._thens[scope] = then_action

    def clear_scripts(self) -> None:
        with self._lock:
            self._queues.clear()
            self._thens.clear()
            self._default = _Action("respond", status=201)

    def _next_action(self, sub: Subscriber) -> _Action:
        scopes = (("sub", sub.token), ("host", sub.host), _ALL)
        with self._lock:
            for scope in scopes:
                queue = self._queues.get(scope)
                if queue:
                    return queue.popleft()
            for scope in scopes:
                if scope in self._thens:
                    return self._thens[scope]
            return self._default

    # ------------------------------------------------------------------ records

    @property
    def received(self) -> list[PushRecord]:
        with self._lock:
            return list(self._records)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def last(self) -> PushRecord | None:
        with self._lock:
            return self._records[-1] if self._records else None

    @property
    def errors(self) -> list[PushRecord]:
        return [r for r in self.received if r.error]

    def records_for(self, subscriber: Subscriber | str) -> list[PushRecord]:
        token = self._token(subscriber)
        return [r for r in self.received if r.token == token]

    def records_for_host(self, host: str) -> list[PushRecord]:
        return [r for r in self.received if r.endpoint_host == host.lower()]

    def messages_for(self, subscriber: Subscriber | str, *, accepted_only: bool = True) -> list[Any]:
        """Decrypted payloads for a subscriber, oldest first (JSON-decoded; raw bytes if not JSON).

        Only requests answered 2xx unless ``accepted_only=False``.
        """
        return [
            r.payload if r.payload is not None else r.plaintext
            for r in self.records_for(subscriber)
            if r.plaintext is not None and (r.accepted or not accepted_only)
        ]

    def clear_received(self) -> None:
        with self._lock:
            self._records.clear()
            self._max_in_flight = self._in_flight
            self._max_in_flight_by_host = {h: n for h, n in self._in_flight_by_host.items() if n}

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (counted at accept, before any TLS handshake)."""
        with self._lock:
            return self._connections

    @property
    def open_connections(self) -> int:
        """HTTP connections open right now."""
        with self._lock:
            return self._open_connections

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def max_in_flight_by_host(self) -> dict[str, int]:
        with self._lock:
            return dict(self._max_in_flight_by_host)

    def wait_for(
        self, n: int = 1, timeout: float = 5.0, *, predicate: Callable[[PushRecord], bool] | None = None
    ) -> list[PushRecord]:
        """Block until ``n`` records (matching ``predicate``) exist; returns them. Thread mode only."""
        if self._loop is not None and not self._threaded:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                raise RuntimeError("wait_for would block the service's own loop; use await fps.wait_for_async()")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matching = [r for r in self._records if predicate is None or predicate(r)]
                if len(matching) >= n:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake push service saw {len(matching)} of {n} expected requests")
                self._cond.wait(remaining)

    async def wait_for_async(
        self, n: int = 1, timeout: float = 5.0, *, predicate: Callable[[PushRecord], bool] | None = None
    ) -> list[PushRecord]:
        """Like ``wait_for`` for async tests: polls without blocking the loop."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [r for r in self.received if predicate is None or predicate(r)]
            if len(matching) >= n:
                return matching
            if time.monotonic() >= deadline:
                raise TimeoutError(f"fake push service saw {len(matching)} of {n} expected requests")
            await asyncio.sleep(0.01)

    def _append(self, rec: PushRecord) -> None:
        with self._cond:
            self._records.append(rec)
            self._cond.notify_all()

    # ------------------------------------------------------------------ connections

    def _on_accept(self) -> None:
        with self._lock:
            self._connections += 1

    def _on_open(self, delta: int) -> None:
        with self._lock:
            self._open_connections += delta

    # ------------------------------------------------------------------ request handling

    def _json(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response({"status": status, "reason": reason}, status=status, headers=headers)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            body = b""
            too_large = True
        else:
            too_large = False
        match = _PUSH_PATH.match(request.path)
        token = match.group(1) if match else None
        with self._lock:
            sub = self._subscribers.get(token) if token else None
            gone = token in self._gone if token else False
        rec = PushRecord(
            method=request.method,
            path=request.path,
            token=token,
            subscriber=sub,
            host=request.headers.get("Host"),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            time=time.time(),
            monotonic=time.monotonic(),
        )

        def answer(status: int, reason: str, error: str | None = None) -> web.Response:
            rec.error, rec.status, rec.answered_at = error, status, time.monotonic()
            self._append(rec)
            return self._json(status, reason)

        if sub is None:
            return answer(404, "unknown subscription")
        if request.method != "POST":
            return answer(405, "push with POST", f"method: {request.method}")
        if gone:
            return answer(410, "subscription expired or unsubscribed")
        if too_large:
            return answer(413, "payload too large", f"body: more than {request.client_max_size} bytes")

        try:
            _verify_into(
                rec,
                rec.headers,
                body,
                sub,
                expected_aud=sub.expected_aud or self.expected_aud or sub.origin,
                require_content_type=self.require_content_type,
                max_body=self.max_body,
                max_exp_s=self.vapid_max_exp_s,
            )
        except PushVerificationError as exc:
            rec.error = str(exc)
            if self.reject_invalid:
                return answer(exc.status, str(exc), str(exc))
        except Exception as exc:  # a bug in the fake: make it loud in the test
            return answer(500, "fake push service error", f"internal: {type(exc).__name__}: {exc}")

        host = sub.host
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._in_flight_by_host[host] += 1
            self._max_in_flight_by_host[host] = max(
                self._max_in_flight_by_host.get(host, 0), self._in_flight_by_host[host]
            )
        try:
            action = self._next_action(sub)
            rec.action = action.describe()
            self._append(rec)
            return await self._perform(action, rec, request)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._in_flight_by_host[host] -= 1

    async def _perform(self, action: _Action, rec: PushRecord, request: web.BaseRequest) -> web.StreamResponse:
        assert self._closing is not None
        for _ in range(10):  # callables may return callables; bound it
            if action.kind != "call":
                break
            assert action.fn is not None
            action = _action(action.fn(rec))
            rec.action = f"{rec.action} -> {action.describe()}"

        if action.kind == "respond":
            headers = dict(action.headers)
            if 200 <= action.status < 300:
                headers.setdefault("Location", f"{self.origin_for()}/message/{uuid.uuid4().hex}")
                if rec.ttl is not None:
                    headers.setdefault("TTL", str(min(rec.ttl, self.max_ttl_s)))
            rec.status, rec.answered_at = action.status, time.monotonic()
            if action.status >= 400:
                return self._json(action.status, f"scripted {action.status}", headers)
            return web.Response(status=action.status, headers=headers)

        if action.kind == "slow":
            try:
                await asyncio.wait_for(self._closing.wait(), action.delay_s)
            except asyncio.TimeoutError:
                pass
            if self._closing.is_set():
                return self._drop(request)
            assert action.then is not None
            return await self._perform(action.then, rec, request)

        if action.kind == "hang":
            # Until the client gives up or the service stops; never answer.
            while not self._closing.is_set():
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                try:
                    await asyncio.wait_for(self._closing.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass
            return self._drop(request)

        if action.kind == "reset":
            return self._drop(request)

        raise AssertionError(f"unhandled action {action!r}")  # pragma: no cover

    @staticmethod
    def _drop(request: web.BaseRequest) -> web.StreamResponse:
        """Abort the connection without an answer (aiohttp then fails to write the dummy response quietly)."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=503)
