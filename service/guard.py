"""An ASGI middleware in front of every route: what is refused before any parsing, and the headers every
answer carries.

- bodies over `MAX_BODY_BYTES` → 413, read no further;
- writes to the API must be `application/json` (so a cross-site HTML form cannot make one) → 415;
- a write whose `Origin` is another site → 403;
- JSON nested deeper than `MAX_JSON_DEPTH` → 400, before the JSON parser sees it;
- security headers on every answer, and a Content-Security-Policy on pages.
"""

from __future__ import annotations

import json

MAX_BODY_BYTES = 16 * 1024
MAX_JSON_DEPTH = 16
WRITE_METHODS = {b"POST", b"PUT", b"PATCH", b"DELETE"}

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit` (a cheap scan, no parsing)."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


class Guard:
    def __init__(self, app, site_origin: str):
        self.app = app
        self.site_origin = site_origin.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        method: bytes = scope["method"].encode()
        headers = dict(scope["headers"])
        is_api = path.startswith("/api/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                existing = list(message.get("headers", []))
                present = {name.lower() for name, _ in existing}
                extra = list(COMMON_HEADERS)
                content_type = dict(existing).get(b"content-type", b"")
                extra.append((b"content-security-policy", PAGE_CSP.encode() if content_type.startswith(b"text/html")
                              else API_CSP.encode()))
                if path.startswith("/admin") or path.startswith("/api/"):
                    extra.append((b"x-frame-options", b"DENY"))
                    extra.append((b"cache-control", b"no-store"))
                # A route that set one of these (e.g. a public Cache-Control on the config) keeps its own.
                message = {**message, "headers": existing + [(k, v) for k, v in extra if k not in present]}
            await send(message)

        if is_api and method in WRITE_METHODS:
            origin = headers.get(b"origin")
            if origin is not None and origin not in (self.site_origin, _own_origin(scope, headers)):
                return await _refuse(send_with_headers, 403, "cross_site_request",
                                     "writes are accepted only from the news site's own pages")
            length = headers.get(b"content-length")
            if length is not None and not length.isdigit():
                return await _refuse(send_with_headers, 400, "invalid_content_length",
                                     "Content-Length must be a number of bytes")
            if length is not None and int(length) > MAX_BODY_BYTES:
                return await _refuse(send_with_headers, 413, "body_too_large",
                                     f"the body must be at most {MAX_BODY_BYTES} bytes")
            body = await _read_body(receive, MAX_BODY_BYTES)
            if body is None:
                return await _refuse(send_with_headers, 413, "body_too_large",
                                     f"the body must be at most {MAX_BODY_BYTES} bytes")
            if method != b"DELETE" or body:
                content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
                if content_type != b"application/json":
                    return await _refuse(send_with_headers, 415, "unsupported_media_type",
                                         "send the body as JSON with Content-Type: application/json")
                if json_depth_exceeds(body, MAX_JSON_DEPTH):
                    return await _refuse(send_with_headers, 400, "json_too_deep",
                                         f"JSON may nest at most {MAX_JSON_DEPTH} levels")
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, replay, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


def _own_origin(scope, headers) -> bytes:
    host = headers.get(b"host", b"")
    return (scope.get("scheme", "http").encode() + b"://" + host) if host else b""


async def _read_body(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _refuse(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
