"""The reader side: public, used by the widget and the service worker on the news site's pages."""

from __future__ import annotations

import logging
import time
from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from core.models import SubscriptionIn, to_subscription
from core.records import check_id, shard_of
from service.errors import WRITE_ERRORS, ApiError, responses
from service.state import ApiState, get_state

router = APIRouter(prefix="/api/v1", tags=["reader"])
log = logging.getLogger("nabaa.api")

CAP_CACHE_S = 5.0
CAP_ALARM_EVERY_S = 60.0
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


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
    alert: StrictStr = Field(max_length=64, pattern=ID_PATTERN, description="the alert id (the notification's tag)")
    subscription: StrictStr | None = Field(None, max_length=64, pattern=ID_PATTERN)


class EventAccepted(BaseModel):
    accepted: bool


async def rate_limited(request: Request, state: ApiState, kind: str) -> None:
    """A fixed one-minute window per client, keyed by a keyed hash of its address (no raw IP stored).

    A window holds at most SUBSCRIBE_RATE_PER_MINUTE requests (at least 120), so a client can always make
    120 a minute, even in one burst; across a window boundary it can make up to twice the limit in 60 s,
    which keeps api-v1.md's "a 429 well before 1,000 a minute" only for limits below 500 (default 300).
    Refused requests count too, so a client that keeps flooding stays refused."""
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


@router.get("/push/config", response_model=ConfigOut, responses=responses(503))
async def push_config(state: ApiState = Depends(get_state)):
    """What the widget needs to subscribe: the VAPID public key and the site's sections."""
    return JSONResponse(
        {"vapidPublicKey": state.vapid_public_key, "topics": state.settings.topics},
        headers={"Cache-Control": "public, max-age=300"},
    )


async def subscribe_rate(request: Request, state: ApiState = Depends(get_state)) -> None:
    # A dependency runs before the body is validated, so invalid requests count against the limit too.
    await rate_limited(request, state, "sub")


async def event_rate(request: Request, state: ApiState = Depends(get_state)) -> None:
    await rate_limited(request, state, "ev")


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=201,
             dependencies=[Depends(subscribe_rate)],
             responses={200: {"model": SubscriptionOut, "description": "the endpoint was known: keys, topics and "
                                                                        "last-seen refreshed"},
                        201: {"description": "a new subscription was stored"},
                        **responses(*WRITE_ERRORS, 429, e503="the store is not answering, or the site reached "
                                                             "MAX_SUBSCRIPTIONS: try again after `Retry-After`")})
async def subscribe(data: SubscriptionIn, state: ApiState = Depends(get_state)):
    """Store the browser's subscription (idempotent by endpoint: one record, refreshed)."""
    sub = to_subscription(data, state.policy, state.settings.topic_ids)
    await check_cap(state, sub)
    created = await state.subs.upsert(sub)
    if created and state.cap_total is not None:
        state.cap_total = (state.cap_total[0], state.cap_total[1] + 1)
    return JSONResponse({"id": sub.id, "topics": list(sub.topics)}, status_code=201 if created else 200)


async def check_cap(state: ApiState, sub) -> None:
    """MAX_SUBSCRIPTIONS: past it, new endpoints are refused (and an alarm raised); known ones still refresh."""
    cached = state.cap_total
    if cached is None or time.monotonic() - cached[0] > CAP_CACHE_S:
        counters = await state.subs.counters()
        cached = state.cap_total = (time.monotonic(), counters.get("all", 0))
    limit = state.settings.max_subscriptions
    if cached[1] < limit or await state.store.redis.hexists(state.store.keys.subs(shard_of(sub.id)), sub.id):
        return
    if time.monotonic() - state.cap_alarm_at > CAP_ALARM_EVERY_S:
        state.cap_alarm_at = time.monotonic()
        log.error("ALARM subscription_cap: %d subscriptions reached MAX_SUBSCRIPTIONS=%d; new ones are refused "
                  "until it is raised", cached[1], limit)
        await state.store.redis.hincrby(state.store.keys.alarms, "subscription_cap", 1)
    raise ApiError(503, "subscription_cap", "this site cannot take new subscriptions right now; try again later",
                   headers={"Retry-After": "3600"})


@router.delete("/subscriptions/{sub_id}", status_code=204, response_class=Response,
               responses={204: {"description": "deleted, or already gone"}, **responses(*WRITE_ERRORS)})
async def unsubscribe(sub_id: str, state: ApiState = Depends(get_state)):
    """Delete everything stored about this subscription; 204 also when it was already gone."""
    await state.subs.delete(check_id(sub_id))
    return Response(status_code=204)


@router.post("/events", status_code=202, response_model=EventAccepted, dependencies=[Depends(event_rate)],
             responses={202: {"description": "counted (an unknown alert is accepted and ignored)"},
                        **responses(*WRITE_ERRORS, 429)})
async def report_event(event: EventIn, state: ApiState = Depends(get_state)):
    """The service worker reports that a notification was shown, clicked or dismissed."""
    await state.alerts.count_event(event.alert, event.type)
    return JSONResponse({"accepted": True}, status_code=202)
