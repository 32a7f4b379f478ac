"""VAPID (RFC 8292): the server's signing key and the tokens that identify us to push services.

A token is an ES256 JWT `{aud, exp, sub}`; `aud` is the origin of the endpoint. Tokens are signed once per
audience and reused until shortly before they expire (never per message, and never through a shared
mutable claims dict, which is how pywebpush sends the wrong `aud` to the second push service).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from core.errors import ConfigError

TOKEN_LIFETIME_S = 12 * 3600  # web-push-facts.md: exp ≤ 24 h ahead; 12 h leaves room for clock skew
TOKEN_RENEW_BEFORE_S = 3600  # sign a fresh token when less than an hour is left


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | None = None) -> ec.EllipticCurvePrivateKey:
    """Write a key as PEM with mode 0600; refuses to overwrite an existing file."""
    key = key or generate_private_key()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key))
    return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"VAPID_PRIVATE_KEY_FILE: {path} is not a readable unencrypted PEM key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"VAPID_PRIVATE_KEY_FILE: {path} must hold a P-256 (prime256v1) key")
    return key


def load_or_create_dev_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Development: the key in DATA_DIR, made on first use."""
    path = Path(path)
    if not path.exists():
        try:
            write_private_key(path)
        except FileExistsError:
            pass  # another process of `nabaa run` made it a moment ago
    return load_private_key(path)


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The 65-byte uncompressed public point, base64url: what browsers take as applicationServerKey."""
    raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(raw)


def sign_jwt(key: ec.EllipticCurvePrivateKey, claims: dict) -> str:
    header = b64url(json.dumps({"typ": "JWT", "alg": "ES256"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{header}.{body}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@dataclass
class Vapid:
    """Signs and caches one `Authorization` header per audience (push-service origin)."""

    key: ec.EllipticCurvePrivateKey
    subject: str
    clock: callable = time.time
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.public_key = public_key_b64(self.key)

    def header(self, audience: str) -> str:
        """`vapid t=<JWT>, k=<public key>` for an origin such as `https://fcm.googleapis.com`."""
        now = self.clock()
        cached = self._cache.get(audience)
        if cached is not None and cached[0] - now > TOKEN_RENEW_BEFORE_S:
            return cached[1]
        exp = int(now) + TOKEN_LIFETIME_S
        token = sign_jwt(self.key, {"aud": audience, "exp": exp, "sub": self.subject})
        value = f"vapid t={token}, k={self.public_key}"
        self._cache[audience] = (exp, value)
        return value
