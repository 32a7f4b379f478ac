"""The "post published" webhook for a CMS (a WordPress plugin, say): a new article becomes an alert.

The CMS signs each call with the shared WEBHOOK_SECRET:

    X-Nabaa-Timestamp: <unix seconds>
    X-Nabaa-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

A call more than five minutes off, or with a wrong signature, is refused; the article's `guid` (or its
`url`) is the idempotency key, so a CMS that retries sends one alert.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from core.compose import accept_alert
from core.models import BODY_MAX, TITLE_MAX, AlertIn
from core.validation import grapheme_truncate
from service.errors import WRITE_ERRORS, ApiError, responses
from service.state import ApiState, get_state

router = APIRouter(prefix="/api/v1/hooks", tags=["webhooks"])
MAX_SKEW_S = 300


class PostPublished(BaseModel):
    """What the CMS sends when an article is published."""

    model_config = ConfigDict(extra="ignore")
    title: StrictStr = Field(min_length=1, max_length=1000)
    url: StrictStr = Field(max_length=1024)
    summary: StrictStr = Field("", max_length=5000)
    image: StrictStr | None = Field(None, max_length=1024)
    topic: StrictStr | None = None
    lang: StrictStr | None = None
    urgency: str = "normal"
    guid: StrictStr | None = Field(None, max_length=512)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@router.post("/publish", status_code=202, responses={
    202: {"description": "accepted: queued, or scheduled past the quiet hours"},
    **responses(401, *WRITE_ERRORS, 404, 409, e401="missing, stale or wrong signature",
                e404="no WEBHOOK_SECRET is set", e409="the article's guid was sent before with other content",
                e422="invalid article")})
async def post_published(request: Request, state: ApiState = Depends(get_state)):
    """A CMS tells us an article was published; it is sent as an alert (quiet hours apply to non-urgent)."""
    secret = state.settings.webhook_secret
    if not secret:
        raise ApiError(404, "webhook_not_configured", "set WEBHOOK_SECRET to receive CMS webhooks")
    body = await request.body()
    timestamp = request.headers.get("x-nabaa-timestamp", "")
    presented = request.headers.get("x-nabaa-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
        raise ApiError(401, "bad_signature", "X-Nabaa-Timestamp must be the current unix time (±5 minutes)")
    if not hmac.compare_digest(presented.encode(), signature(secret, timestamp, body).encode()):
        raise ApiError(401, "bad_signature", "X-Nabaa-Signature does not match: sign \"<timestamp>.<body>\" "
                       "with HMAC-SHA256 and WEBHOOK_SECRET")
    try:
        post = PostPublished.model_validate(json.loads(body))
        alert = AlertIn(title=grapheme_truncate(" ".join(post.title.split()), TITLE_MAX),
                        body=grapheme_truncate(post.summary.strip(), BODY_MAX), url=post.url, image=post.image,
                        topic=post.topic, lang=post.lang, urgency=post.urgency)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error.get("loc", ())) or "body"
        raise ApiError(422, "invalid_article", f"{field}: {error.get('type', 'invalid')}; the body must be a JSON "
                       "article {title, url, summary?, image?, topic?, urgency?, guid?}", field) from None
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON: send a JSON object") from None
    key = "hook:" + hashlib.sha256((post.guid or post.url).encode()).hexdigest()
    accepted = await accept_alert(state.store, state.settings, alert, source="webhook", idempotency_key=key)
    return JSONResponse({"id": accepted.id, "status": accepted.status}, status_code=202)
