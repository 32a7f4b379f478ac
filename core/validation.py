"""Checks on everything a reader or an editor sends, with the stable error codes the API answers.

The subscription endpoint is attacker-chosen and every alert makes the workers POST to it, so it is
checked here strictly (web-push-facts.md, "Validating a subscription") at subscribe time, and the
host is checked again, with DNS, at send time (`workers.transport`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from yarl import URL

from core.errors import InvalidInput

MAX_ENDPOINT_CHARS = 2048
MAX_URL_CHARS = 1024
B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOT_SEGMENTS = {".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# ----- push service hosts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPolicy:
    """Which push-service hosts a subscription may point at (`PUSH_ALLOWED_HOSTS`, `PUSH_ALLOW_INSECURE`)."""

    allowed: tuple[str, ...]
    allow_insecure: bool = False

    def match(self, host: str, port: int | None) -> str | None:
        """The allow-list entry that admits host[:port], or None."""
        for entry in self.allowed:
            if entry.startswith("."):
                if port is None and host.endswith(entry) and len(host) > len(entry):
                    return entry
                continue
            entry_host, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
            if entry_port == "443":
                entry_port = ""
            if host == entry_host.strip("[]") and (port is None if not entry_port else str(port) == entry_port):
                return entry
        return None

    def is_insecure_entry(self, entry: str) -> bool:
        return self.allow_insecure and not entry.startswith(".")


def _has_port(entry: str) -> bool:
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def _is_ip_literal(host: str) -> bool:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate)
        return True
    except ValueError:
        pass
    # Other spellings that resolvers and HTTP clients accept as addresses: 2130706433, 0x7f.1, 127.1, 0177.0.0.1
    last = candidate.rsplit(".", 1)[-1]
    return bool(re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", last))


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address a push may go to: globally routable unicast, also for an IPv4 address carried
    inside IPv6 (mapped, 6to4, Teredo, NAT64), which reaches the IPv4 host it names. Raises ValueError
    for something that is not an address."""
    ip = address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ipaddress.ip_address(address)
    if ip.is_multicast or not ip.is_global:
        return False
    if ip.version == 6:
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(is_public_address(v4) for v4 in embedded if v4 is not None)
    return True


def check_endpoint(endpoint: object, policy: HostPolicy, field: str = "endpoint") -> str:
    """Return the endpoint in canonical form, or raise InvalidInput saying what is wrong with it.

    Canonical: lower-case host without a trailing dot, no `:443`; the path and query exactly as given
    (push services compare their tokens byte for byte). The id of a subscription is derived from it.
    """

    def bad(code: str, message: str) -> InvalidInput:
        return InvalidInput(code, message, field)

    if not isinstance(endpoint, str) or not endpoint:
        raise bad("invalid_endpoint", "endpoint must be the push service URL from PushSubscription.toJSON()")
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        raise bad("endpoint_too_long", f"endpoint must be at most {MAX_ENDPOINT_CHARS} characters")
    if not endpoint.isascii() or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in endpoint):
        raise bad("invalid_endpoint", "endpoint must be ASCII with no spaces or control characters")
    if "\\" in endpoint:
        raise bad("invalid_endpoint", "endpoint must not contain a backslash")
    match = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(/[^?#]*)?(\?[^#]*)?", endpoint)
    if match is None:
        raise bad("invalid_endpoint", "endpoint must be an absolute https:// URL without a #fragment")
    scheme, authority = match.group(1).lower(), match.group(2)
    path, query = match.group(3) or "", match.group(4) or ""
    if "@" in authority or "%" in authority:
        raise bad("invalid_endpoint", "endpoint must not carry user-info or escapes in its host")
    host, port = _split_authority(authority)
    if host is None:
        raise bad("invalid_endpoint", "endpoint has no valid host[:port]")
    if host.endswith("."):
        host = host[:-1]
    if any(segment.lower() in _DOT_SEGMENTS for segment in path.split("/")):
        raise bad("invalid_endpoint", "endpoint must not contain '.' or '..' path segments")
    default_port = port in (None, 443)
    bracketed = f"[{host}]" if ":" in host else host
    canonical = f"{scheme}://{bracketed}{'' if default_port else ':' + str(port)}{path}{query}"
    try:
        # The parser of the HTTP client (aiohttp's yarl) must read the same scheme, host, port, target and
        # no user-info, both from the input and from the canonical form we store and send to.
        url = URL(endpoint, encoded=True)
        stored = URL(canonical, encoded=True)
    except ValueError:
        raise bad("invalid_endpoint", "endpoint is not a valid URL") from None
    parsed_host = (url.raw_host or "").lower()
    parsed_host = parsed_host[:-1] if parsed_host.endswith(".") else parsed_host
    if (url.scheme != scheme or parsed_host != host or url.explicit_port != port
            or url.raw_path != (path or "/") or url.raw_query_string != query[1:]
            or url.raw_user is not None or url.raw_password is not None or url.raw_fragment
            or str(stored) != canonical or (stored.raw_host or "") != host
            or (stored.explicit_port or None) != (None if default_port else port)):
        raise bad("invalid_endpoint", "endpoint is not a canonical URL (it must read back the same once parsed)")
    entry = policy.match(host, None if default_port else port)
    insecure_ok = entry is not None and policy.is_insecure_entry(entry)
    if scheme != "https" and not (scheme == "http" and insecure_ok):
        raise bad("endpoint_not_https", "endpoint must use https://")
    ip_literal = _is_ip_literal(host)
    if ip_literal and not insecure_ok:
        raise bad("endpoint_ip_literal", "endpoint must name a push service host, not an IP address")
    if not ip_literal and not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise bad("invalid_endpoint", "endpoint host is not a valid DNS name")
    if entry is None and not default_port and policy.match(host, None) is not None:
        raise bad("endpoint_bad_port", "endpoint must use the default https port 443")
    if entry is None:
        raise bad(
            "endpoint_host_not_allowed",
            "endpoint host is not a known push service (the operator can add one to PUSH_ALLOWED_HOSTS)",
        )
    return canonical


def _split_authority(authority: str) -> tuple[str | None, int | None]:
    """host (lower-case, IPv6 without brackets) and port of `host[:port]`; (None, None) if malformed."""
    authority = authority.lower()
    m = re.fullmatch(r"\[([0-9a-f:.]+)\](?::([0-9]{1,5}))?|([^:\[\]]+)(?::([0-9]{1,5}))?", authority)
    if m is None:
        return None, None
    host = m.group(1) or m.group(3)
    port_text = m.group(2) or m.group(4)
    if port_text and port_text.startswith("0"):
        return None, None
    port = int(port_text) if port_text else None
    if port is not None and not (0 < port < 65536):
        return None, None
    return host, port


# ----- subscription keys ------------------------------------------------------------------------------


def strict_b64url(value: object, field: str) -> bytes:
    """Decode base64url strictly: only its alphabet, `=` padding only where it belongs, and only the one
    spelling of the bytes (`urlsafe_b64decode` silently drops stray characters; we never let it)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("invalid_key", f"{field} must be a non-empty base64url string", field)
    if len(value) > 256 or not B64URL.match(value):
        raise InvalidInput("invalid_key", f"{field} must be base64url (A–Z a–z 0–9 - _), without spaces", field)
    stripped = value.rstrip("=")
    if len(stripped) != len(value) and len(value) % 4:
        raise InvalidInput("invalid_key", f"{field} has stray '=' padding", field)
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (ValueError, binascii.Error):
        raise InvalidInput("invalid_key", f"{field} is not valid base64url", field) from None
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != stripped:
        raise InvalidInput("invalid_key", f"{field} is not valid base64url (stray bits in its last character)", field)
    return raw


def check_p256dh(value: object, field: str = "keys.p256dh") -> bytes:
    raw = strict_b64url(value, field)
    if len(raw) != 65 or raw[0] != 0x04:
        raise InvalidInput(
            "invalid_p256dh", f"{field} must be a 65-byte uncompressed P-256 point (starting 0x04)", field
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise InvalidInput("invalid_p256dh", f"{field} is not a point on the P-256 curve", field) from None
    return raw


def check_auth(value: object, field: str = "keys.auth") -> bytes:
    raw = strict_b64url(value, field)
    if len(raw) != 16:
        raise InvalidInput("invalid_auth", f"{field} must be exactly 16 bytes", field)
    return raw


# ----- text and links of an alert ---------------------------------------------------------------------


def check_text(value: str, field: str, *, min_chars: int, max_chars: int, allow_newlines: bool = False) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("invalid_text", f"{field} contains a lone surrogate: send valid Unicode", field) from None
    for ch in value:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            if allow_newlines and ch == "\n":
                continue
            raise InvalidInput(
                "invalid_text", f"{field} contains a control character (U+{code:04X}); remove it", field
            )
    length = len(value)
    if length < min_chars or length > max_chars:
        raise InvalidInput(
            "text_length", f"{field} must be {min_chars}–{max_chars} characters (it has {length})", field
        )
    return value


def _check_url_text(value: object, field: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS:
        raise InvalidInput("invalid_url", f"{field} must be {what} of 1–{MAX_URL_CHARS} characters", field)
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in value):
        raise InvalidInput("invalid_url", f"{field} must not contain spaces, control characters or lone "
                           "surrogates", field)
    if "\\" in value:
        raise InvalidInput("invalid_url", f"{field} must not contain '\\'", field)
    return value


def _split(value: str, field: str):
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — a port that is not a number raises here
        return parts
    except ValueError:
        raise InvalidInput("invalid_url", f"{field} is not a valid URL", field) from None


def check_click_url(value: str, site_origin: str, field: str = "url") -> str:
    """A path on the site (`/…`) or an absolute URL on SITE_ORIGIN; anything else is refused."""
    _check_url_text(value, field, "a path or URL")
    if value.startswith("/"):
        if value.startswith("//"):
            raise InvalidInput("url_not_same_origin", f"{field} must stay on {site_origin}", field)
        return value
    parts = _split(value, field)
    origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
    if parts.scheme.lower() not in ("http", "https") or origin != site_origin or "@" in parts.netloc:
        raise InvalidInput(
            "url_not_same_origin", f"{field} must be a path like /news/1 or a URL on {site_origin}", field
        )
    return value


def check_asset_url(value: str, site_origin: str, field: str) -> str:
    """An icon or image: https://… anywhere, or a path on the site."""
    _check_url_text(value, field, "a URL")
    if value.startswith("/") and not value.startswith("//"):
        return value
    parts = _split(value, field)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        raise InvalidInput("url_not_https", f"{field} must be an https:// URL or a path on the site", field)
    return value


def grapheme_truncate(text: str, max_chars: int) -> str:
    """Cut at most `max_chars` characters without splitting a base letter from its combining marks."""
    if len(text) <= max_chars:
        return text
    cut = max_chars
    while cut > 0 and unicodedata.combining(text[cut]):
        cut -= 1
    return text[:cut]
