"""Editor authentication: `Authorization: Bearer <EDITOR_TOKEN>`, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from service.errors import ApiError
from service.state import ApiState, get_state


def token_id(token: str) -> str:
    """A short, non-reversible name for a token, for audit lines."""
    return hashlib.sha256(token.encode()).hexdigest()[:10]


# Declares the scheme in the OpenAPI document; `editor` reads the header itself (and answers 401, not 403).
bearer = HTTPBearer(auto_error=False, scheme_name="EditorToken",
                    description="`Authorization: Bearer <EDITOR_TOKEN>`; anything else is 401")


async def editor(request: Request, state: ApiState = Depends(get_state), _: object = Depends(bearer)) -> str:
    """The id of the editor token the request carries; 401 otherwise (never from the query string)."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "unauthorized", "send the editor token as `Authorization: Bearer <token>`",
                       headers={"WWW-Authenticate": "Bearer"})
    # Digests of equal length, compared in constant time, every token each time: neither the content nor
    # the length of a token shows in how long a refusal takes.
    presented_digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    matched = None
    for token in state.settings.tokens():
        if hmac.compare_digest(presented_digest, hashlib.sha256(token.encode()).digest()):
            matched = token
    if matched is None:
        raise ApiError(401, "unauthorized", "the editor token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return token_id(matched)
