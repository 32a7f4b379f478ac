"""Editor authentication: `Authorization: Bearer <EDITOR_TOKEN>`, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, Request

from service.errors import ApiError
from service.state import ApiState, get_state


def token_id(token: str) -> str:
    """A short, non-reversible name for a token, for audit lines."""
    return hashlib.sha256(token.encode()).hexdigest()[:10]


async def editor(request: Request, state: ApiState = Depends(get_state)) -> str:
    """The id of the editor token the request carries; 401 otherwise (never from the query string)."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "unauthorized", "send the editor token as `Authorization: Bearer <token>`",
                       headers={"WWW-Authenticate": "Bearer"})
    matched = None
    for token in state.settings.tokens():
        if hmac.compare_digest(presented.encode(), token.encode()):
            matched = token
    if matched is None:
        raise ApiError(401, "unauthorized", "the editor token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return token_id(matched)
