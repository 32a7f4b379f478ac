"""The stored form of a subscription: compact, and readable by the Lua scripts that keep the counters.

    1|<topics,comma>|<lang>|<origin>|<created_s>|<last_seen_s>|<p256dh 65 bytes><auth 16 bytes><path>

`origin` is the endpoint's host for `https://host` on the default port, else the whole origin
(`https://host:8443`, `http://127.0.0.1:9000` for a local push service); `path` is the rest of the
endpoint. The first six fields are text so Lua can split them; the keys are kept raw (81 bytes instead
of 109 in base64url). A subscription's id is a hash of its endpoint, so the same endpoint is always the
same record and needs no second index.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.errors import InvalidInput
from core.keys import SHARDS

VERSION = b"1"
KEYS_LEN = 65 + 16


def subscription_id(endpoint: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(endpoint.encode("ascii")).digest()[:16]).decode()[:22]


def endpoint_hash(endpoint: str) -> str:
    """How an endpoint appears in logs: a short hash. Endpoints are bearer capabilities, never logged."""
    return "ep:" + hashlib.sha256(endpoint.encode("utf-8", "replace")).hexdigest()[:12]


def shard_of(sub_id: str) -> int:
    return base64.urlsafe_b64decode(sub_id[:4])[0] % SHARDS


# The path of an FCM endpoint, `/fcm/send/<token>`, with each `:`-separated base64url part of the token
# kept as the 6 bits a character it spells (38 bytes less a subscriber, which takes a record into a
# smaller allocation class). Any other path is kept as text (it starts with `/` or `?`; a packed one, 0x01).
FCM_PATH = "/fcm/send/"
_PACKED_FCM = 0x01
_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def pack_path(path: str) -> bytes:
    if path.startswith(FCM_PATH):
        packed = bytearray([_PACKED_FCM])
        for part in path[len(FCM_PATH):].split(":"):
            if not 0 < len(part) <= 255 or not _B64URL_CHARS.issuperset(part):
                break
            # The part's bits, left-aligned, padded with zero bits ("A") to whole bytes.
            raw = base64.urlsafe_b64decode(part + "A" * (-len(part) % 4))
            packed.append(len(part))
            packed += raw[:(len(part) * 6 + 7) // 8]
        else:
            return bytes(packed)
    return path.encode("ascii")


def unpack_path(data: bytes) -> str:
    if not data or data[0] != _PACKED_FCM:
        return data.decode("ascii")
    parts, index = [], 1
    while index < len(data):
        chars = data[index]
        size = (chars * 6 + 7) // 8
        parts.append(base64.urlsafe_b64encode(data[index + 1:index + 1 + size])[:chars].decode("ascii"))
        index += 1 + size
    return FCM_PATH + ":".join(parts)


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """(origin as stored, path) of a validated endpoint."""
    parts = urlsplit(endpoint)
    host = parts.netloc
    origin = host if parts.scheme == "https" and ":" not in host else f"{parts.scheme}://{host}"
    return origin, endpoint[len(parts.scheme) + 3 + len(host):]


def origin_url(origin: str) -> str:
    return origin if "://" in origin else f"https://{origin}"


def service_host(origin: str) -> str:
    """The push service's name as operators see it in stats and metrics."""
    return urlsplit(origin_url(origin)).hostname or origin


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    endpoint: str
    p256dh: bytes
    auth: bytes
    topics: tuple[str, ...] = ()
    lang: str = ""
    created_s: int = 0
    last_seen_s: int = 0
    # Known when read from the store, so the send path need not work it out again per message:
    stored_origin: str = field(default="", compare=False)

    @property
    def origin(self) -> str:
        return self.stored_origin or split_endpoint(self.endpoint)[0]

    @property
    def audience(self) -> str:
        """The VAPID `aud`: scheme://host[:port] of the endpoint."""
        return origin_url(self.origin)

    def encode(self) -> bytes:
        origin, path = split_endpoint(self.endpoint)
        meta = "|".join(
            ("1", ",".join(self.topics), self.lang, origin, str(self.created_s), str(self.last_seen_s), "")
        )
        return meta.encode("ascii") + self.p256dh + self.auth + pack_path(path)


class CorruptRecord(ValueError):
    """A stored subscription that cannot be read (skipped and counted as failed)."""


def decode(sub_id: str, raw: bytes) -> Subscription:
    try:
        version, topics, lang, origin, created, seen, rest = raw.split(b"|", 6)
        if version != VERSION or len(rest) < KEYS_LEN:
            raise ValueError("unknown version or short record")
        # The key was checked on the curve when the reader subscribed; a record damaged since fails at
        # encryption, where it is refused and counted like any unreadable record.
        if rest[0] != 4:
            raise ValueError("the public key is not an uncompressed P-256 point")
        path = unpack_path(rest[KEYS_LEN:])
        origin_text = origin.decode("ascii")
        return Subscription(
            id=sub_id,
            endpoint=origin_url(origin_text) + path,
            stored_origin=origin_text,
            p256dh=rest[:65],
            auth=rest[65:KEYS_LEN],
            topics=tuple(topics.decode("ascii").split(",")) if topics else (),
            lang=lang.decode("ascii"),
            created_s=int(created),
            last_seen_s=int(seen),
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"subscription {sub_id}: {exc}") from None


def check_id(sub_id: str) -> str:
    if len(sub_id) != 22 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in sub_id):
        raise InvalidInput("invalid_subscription_id", "a subscription id is 22 characters of base64url", "id")
    return sub_id
