"""The reader side: public, used by the widget and the service worker on the news site's pages."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from core.models import SubscriptionIn, to_subscription
from core.records import check_id
from service.errors import ApiError
from service.state import ApiState, get_state

router = APIRouter(prefix="/api/v1", tags=["reader"])

CAP_CACHE_S = 5.0


class TopicOut(BaseModel):
    id: str
    label: dict[str, str]


class ConfigOut(BaseModel):
    vapidPublicKey: str = Field(description="base64url of the 65-byte uncompressed P-256 point")
    topics: list[TopicOut]


class SubscriptionOut(BaseModel):
    id: str
    topics: list[str]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["delivered", "clicked", "dismissed"]
    alert: StrictStr = Field(max_length=64)
    subscription: StrictStr | None = Field(None, max_length=64)


async def rate_limited(request: Request, state: ApiState, kind: str) -> None:
    """A fixed one-minute window per client, keyed by a keyed hash of its address (no raw IP stored)."""
    address = request.client.host if request.client else "unknown"
    window = int(time.time() // 60)
    key = state.store.keys.rate(f"{kind}:{state.client_bucket(address)}:{window}")
    pipe = state.store.redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 120)
    count, _ = await pipe.execute()
    limit = state.settings.subscribe_rate_per_minute
    if int(count) > limit:
        retry_after = 60 - int(time.time() % 60) or 1
        raise ApiError(429, "rate_limited", f"too many requests from this client: at most {limit} a minute; "
                       f"try again in {retry_after} s", headers={"Retry-After": str(retry_after)})


@router.get("/push/config", response_model=ConfigOut)
async def push_config(state: ApiState = Depends(get_state)):
    """What the widget needs to subscribe: the VAPID public key and the site's sections."""
    return JSONResponse(
        {"vapidPublicKey": state.vapid_public_key, "topics": state.settings.topics},
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=201,
             responses={200: {"model": SubscriptionOut, "description": "the endpoint was known: refreshed"},
                        422: {"description": "invalid subscription"}, 429: {"description": "rate limited"}})
async def subscribe(data: SubscriptionIn, request: Request, state: ApiState = Depends(get_state)):
    """Store the browser's subscription (idempotent by endpoint: one record, refreshed)."""
    await rate_limited(request, state, "sub")
    sub = to_subscription(data, state.policy, state.settings.topic_ids)
    await check_cap(state)
    created = await state.subs.upsert(sub)
    return JSONResponse({"id": sub.id, "topics": list(sub.topics)}, status_code=201 if created else 200)


async def check_cap(state: ApiState) -> None:
    cached = getattr(state, "_total", None)
    if cached is None or time.monotonic() - cached[0] > CAP_CACHE_S:
        counters = await state.subs.counters()
        cached = (time.monotonic(), counters.get("all", 0))
        state._total = cached
    if cached[1] >= state.settings.max_subscriptions:
        import logging

        logging.getLogger("nabaa.api").error(
            "ALARM: %d subscriptions reached MAX_SUBSCRIPTIONS=%d; new ones are refused",
            cached[1], state.settings.max_subscriptions)
        raise ApiError(503, "subscription_cap", "this site cannot take new subscriptions right now",
                       headers={"Retry-After": "3600"})


@router.delete("/subscriptions/{sub_id}", status_code=204, response_class=Response)
async def unsubscribe(sub_id: str, state: ApiState = Depends(get_state)):
    """Delete everything stored about this subscription; 204 also when it was already gone."""
    await state.subs.delete(check_id(sub_id))
    return Response(status_code=204)


@router.post("/events", status_code=202)
async def report_event(event: EventIn, request: Request, state: ApiState = Depends(get_state)):
    """The service worker reports that a notification was shown, clicked or dismissed."""
    await rate_limited(request, state, "ev")
    await state.alerts.count_event(event.alert, event.type)
    return JSONResponse({"accepted": True}, status_code=202)
