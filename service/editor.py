"""The editor side: compose and send alerts, follow them, read the audience's size."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.compose import accept_alert
from core.models import AlertIn
from service.auth import editor
from service.errors import WRITE_ERRORS, ApiError, responses
from service.results import alert_view, check_alert_id
from service.state import ApiState, get_state

router = APIRouter(prefix="/api/v1", tags=["editor"])
audit = logging.getLogger("nabaa.audit")


class AlertAccepted(BaseModel):
    id: str
    status: str


class Counts(BaseModel):
    targeted: int
    sent: int
    gone: int
    failed: int
    pending: int
    delivered: int
    clicked: int


class PushServiceResults(BaseModel):
    """What one push service answered for one alert."""

    sent: int = Field(description="accepted (201/202)")
    gone: int = Field(description="404/410: the subscription was removed")
    failed: int = Field(description="refused for good, or given up on")
    retried: int = Field(description="answers that were retried later (429, 5xx, timeouts)")
    expired: int = Field(description="given up because the alert's TTL ran out while retrying")


class AlertOut(BaseModel):
    id: str
    status: str
    title: str
    body: str
    url: str
    topic: str | None
    lang: str | None
    urgency: str
    ttl_s: int
    created_at: str | None
    send_at: str | None
    started_at: str | None
    finished_at: str | None
    counts: Counts
    icon: str | None = Field(None, description="as composed; null: the site's default icon")
    image: str | None = None
    replaces: str | None = Field(None, description="the alert this one updates, if any")
    by_push_service: dict[str, PushServiceResults] = Field(
        description="per push-service host (e.g. fcm.googleapis.com): what it answered for this alert")
    ctr: float | None = Field(description="click-through rate: clicked / delivered, or clicked / sent while no "
                              "delivery was reported; null when both are 0")


class AlertList(BaseModel):
    alerts: list[AlertOut]


class GrowthDay(BaseModel):
    new: int
    removed: int


class Stats(BaseModel):
    subscriptions: int
    by_topic: dict[str, int]
    by_push_service: dict[str, int]
    growth: dict[str, GrowthDay] = Field(description="per UTC day (YYYY-MM-DD, the last 90 with changes): "
                                         "subscriptions made and removed")


@router.post("/alerts", status_code=202, response_model=AlertAccepted,
             responses={202: {"description": "accepted: queued now, or scheduled for `send_at`"},
                        **responses(401, *WRITE_ERRORS, 409,
                                    e409="Idempotency-Key reused with a different body",
                                    e422="invalid alert (the error names the field and the limit, e.g. the "
                                         "payload's byte budget); nothing was queued")})
async def send_alert(data: AlertIn, state: ApiState = Depends(get_state), token: str = Depends(editor),
                     idempotency_key: str | None = Header(None, max_length=200)):
    """Accept an alert: queue it now, or schedule it for `send_at` (non-urgent ones wait out the quiet
    hours). Nothing is queued unless it is valid."""
    accepted = await accept_alert(state.store, state.settings, data, source=token, idempotency_key=idempotency_key)
    return JSONResponse({"id": accepted.id, "status": accepted.status}, status_code=202)


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses=responses(401, 404, 503, e404="no such alert"))
async def get_alert(alert_id: str, state: ApiState = Depends(get_state), _: str = Depends(editor)):
    record = await state.alerts.get(check_alert_id(alert_id))
    if record is None:
        raise ApiError(404, "alert_not_found", f"there is no alert {alert_id!r}")
    return JSONResponse(alert_view(record))


@router.get("/alerts", response_model=AlertList, responses=responses(401, 422, 503))
async def list_alerts(limit: int = Query(50, ge=1, le=500), state: ApiState = Depends(get_state),
                      _: str = Depends(editor)):
    """The most recent alerts, newest first."""
    return JSONResponse({"alerts": [alert_view(record) for record in await state.alerts.recent(limit)]})


@router.delete("/alerts/{alert_id}", status_code=204, response_class=Response,
               responses={204: {"description": "cancelled"},
                          **responses(401, *WRITE_ERRORS, 404, 409, e404="no such alert",
                                      e409="the alert is already sending or over")})
async def cancel_alert(alert_id: str, state: ApiState = Depends(get_state), token: str = Depends(editor)):
    """Cancel a scheduled alert."""
    result = await state.alerts.cancel(check_alert_id(alert_id))
    if result == 0:
        raise ApiError(404, "alert_not_found", f"there is no alert {alert_id!r}")
    if result < 0:
        raise ApiError(409, "alert_not_cancellable", "only a scheduled alert can be cancelled; this one is "
                       "already sending or over")
    audit.info("alert %s cancelled token=%s at=%s", alert_id, token,
               datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
    return Response(status_code=204)


@router.get("/stats", response_model=Stats, responses=responses(401, 503))
async def stats(state: ApiState = Depends(get_state), _: str = Depends(editor)):
    return JSONResponse(await state.subs.stats([t["id"] for t in state.settings.topics]))


