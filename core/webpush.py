"""Building a Web Push request: pure, no I/O, testable against the RFC 8291 vector.

`build_request()` turns (subscription, plaintext, TTL, urgency, topic, VAPID header) into the method-less
triple the transport POSTs: the endpoint, the headers and the encrypted body. Its two halves, `encrypt()`
and `push_headers()`, are apart for the worker, which encrypts a batch ahead and adds the headers (with the
TTL then left) when each request goes out. Encryption is aes128gcm
(RFC 8291 + RFC 8188) through `http_ece`, the library pywebpush itself uses: a fresh ECDH key pair and a
random salt for every message, exactly one record.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

import http_ece
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.asymmetric import ec

# RFC 8291 §4: a push service need not accept more than 4096 bytes of body; the header is 86 bytes and
# the single record adds 1 padding delimiter and a 16-byte tag.
MAX_BODY_BYTES = 4096
HEADER_BYTES = 86
MAX_PLAINTEXT_BYTES = MAX_BODY_BYTES - HEADER_BYTES - 1 - 16  # 3993
URGENCIES = ("very-low", "low", "normal", "high")

# http_ece asks cryptography for its backend four times a message, and each ask runs an import statement
# (py-spy: about 3 % of a worker's CPU in a broadcast). The backend is one object for the life of
# the process, so http_ece is handed that object.
_BACKEND = default_backend()
http_ece.default_backend = lambda: _BACKEND


@dataclass(frozen=True, slots=True)
class PushRequest:
    endpoint: str
    headers: dict[str, str]
    body: bytes


def encrypt(plaintext: bytes, p256dh: bytes, auth: bytes, *, salt: bytes | None = None,
            sender_key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """aes128gcm body for one subscriber (`p256dh`: the 65-byte point the browser gave); `salt` and
    `sender_key` are for the RFC test vector only. Raises ValueError for a key that is not on the curve."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise ValueError(f"plaintext is {len(plaintext)} bytes; at most {MAX_PLAINTEXT_BYTES} fit one record")
    return http_ece.encrypt(
        plaintext,
        salt=salt if salt is not None else os.urandom(16),
        private_key=sender_key if sender_key is not None else ec.generate_private_key(ec.SECP256R1()),
        dh=p256dh,
        auth_secret=auth,
        version="aes128gcm",
        rs=MAX_BODY_BYTES,
    )


def topic_for(alert_id: str) -> str:
    """RFC 8030 §5.4 `Topic`: ≤ 32 base64url characters. Not encrypted, so a hash, never the text."""
    return base64.urlsafe_b64encode(hashlib.sha256(alert_id.encode()).digest()[:24]).decode("ascii")


def push_headers(*, ttl_s: int, urgency: str, topic: str, authorization: str) -> dict[str, str]:
    """The RFC 8030 / RFC 8292 headers of one push (everything but the body and its length)."""
    if ttl_s <= 0:
        raise ValueError("TTL must be positive: TTL 0 drops the message for an offline browser")
    if urgency not in URGENCIES:
        raise ValueError(f"urgency must be one of {', '.join(URGENCIES)}")
    return {
        "TTL": str(int(ttl_s)),
        "Urgency": urgency,
        "Topic": topic,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "Authorization": authorization,
    }


def build_request(endpoint: str, p256dh: bytes, auth: bytes, plaintext: bytes, *,
                  ttl_s: int, urgency: str, topic: str, authorization: str) -> PushRequest:
    headers = push_headers(ttl_s=ttl_s, urgency=urgency, topic=topic, authorization=authorization)
    return PushRequest(endpoint, headers, encrypt(plaintext, p256dh, auth))
