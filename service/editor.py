"""The editor side: compose and send alerts, follow them, read the audience's size."""

from __future__ import annotations

import hashlib
import json
import logging
import re

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.alerts import new_alert_id
from core.models import AlertIn, build_payload, check_alert
from core.webpush import topic_for
from service.auth import editor
from service.errors import WRITE_ERRORS, ApiError, responses
from service.state import ApiState, get_state

router = APIRouter(prefix="/api/v1", tags=["editor"])
audit = logging.getLogger("nabaa.audit")
ALERT_ID = re.compile(r"^[0-9a-f]{21}$")


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


class AlertList(BaseModel):
    alerts: list[AlertOut]


class Stats(BaseModel):
    subscriptions: int
    by_topic: dict[str, int]
    by_push_service: dict[str, int]


async def estimate(state: ApiState, topic: str | None, lang: str) -> int:
    counters = await state.subs.counters()
    if topic:
        return counters.get(f"t:{topic}", 0) + counters.get("t:*", 0)
    if lang:
        return counters.get(f"l:{lang}", 0)
    return counters.get("all", 0)


@router.post("/alerts", status_code=202, response_model=AlertAccepted,
             responses={202: {"description": "accepted: queued now, or scheduled for `send_at`"},
                        **responses(401, *WRITE_ERRORS, 409,
                                    e409="Idempotency-Key reused with a different body",
                                    e422="invalid alert (the error names the field and the limit, e.g. the "
                                         "payload's byte budget); nothing was queued")})
async def send_alert(data: AlertIn, state: ApiState = Depends(get_state), token: str = Depends(editor),
                     idempotency_key: str | None = Header(None, max_length=200)):
    """Accept an alert: queue it now, or schedule it for `send_at`. Nothing is queued unless it is valid."""
    settings = state.settings
    now = datetime.now(timezone.utc)
    fields = check_alert(data, settings.site_origin, settings.topic_ids, now)
    created_ms = int(now.timestamp() * 1000)
    alert_id = new_alert_id(created_ms)
    payload = build_payload(alert_id, fields, settings.site_origin, created_ms)
    send_at = fields["send_at"]
    scheduled = send_at is not None and send_at > now
    send_at_ms = int(send_at.timestamp() * 1000) if send_at is not None else 0
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode()
    body_hash = hashlib.sha256(canonical).hexdigest()[:32]
    idempotency = None
    if idempotency_key is not None:
        if not idempotency_key or not idempotency_key.isascii() or not idempotency_key.isprintable():
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key must be 1–200 printable ASCII characters",
                           "Idempotency-Key")
        digest = hashlib.sha256(f"{token}:{idempotency_key}".encode()).hexdigest()[:32]
        idempotency = (digest, f"{alert_id}|{body_hash}")
    record = {
        "id": alert_id, "title": fields["title"], "body": fields["body"], "url": fields["url"],
        "icon": fields["icon"], "image": fields["image"], "topic": fields["topic"] or "", "lang": fields["lang"],
        "ttl_s": fields["ttl_s"], "urgency": fields["urgency"], "send_at_ms": send_at_ms or None,
        "created_at": created_ms, "status": "scheduled" if scheduled else "queued",
        "payload": payload.decode("utf-8"), "topic_header": topic_for(alert_id), "tag": alert_id,
        "estimate": await estimate(state, fields["topic"], fields["lang"]), "token": token, "body_hash": body_hash,
    }
    created, value = await state.alerts.create(alert_id, record, scheduled=scheduled, send_at_ms=send_at_ms,
                                               created_ms=created_ms, idempotency=idempotency)
    if not created:
        stored_id, _, stored_hash = value.partition("|")
        if stored_hash != body_hash:
            raise ApiError(409, "idempotency_key_reused",
                           "this Idempotency-Key was used for a different alert; use a new key for a new alert",
                           "Idempotency-Key")
        existing = await state.alerts.get(stored_id)
        return JSONResponse({"id": stored_id, "status": existing.status if existing else "queued"}, status_code=202)
    await state.store.make_durable()
    # The audit trail: which token, when, and a hash of exactly what was sent (never the text itself).
    audit.info("alert %s accepted token=%s at=%s payload_sha256=%s status=%s", alert_id, token,
               now.isoformat(timespec="milliseconds"), hashlib.sha256(payload).hexdigest(), record["status"])
    return JSONResponse({"id": alert_id, "status": record["status"]}, status_code=202)


def _check_alert_id(alert_id: str) -> str:
    if not ALERT_ID.match(alert_id):
        raise ApiError(404, "alert_not_found", f"there is no alert {alert_id!r}")
    return alert_id


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses=responses(401, 404, 503, e404="no such alert"))
async def get_alert(alert_id: str, state: ApiState = Depends(get_state), _: str = Depends(editor)):
    record = await state.alerts.get(_check_alert_id(alert_id))
    if record is None:
        raise ApiError(404, "alert_not_found", f"there is no alert {alert_id!r}")
    return JSONResponse(record.public())


@router.get("/alerts", response_model=AlertList, responses=responses(401, 422, 503))
async def list_alerts(limit: int = Query(50, ge=1, le=500), state: ApiState = Depends(get_state),
                      _: str = Depends(editor)):
    """The most recent alerts, newest first."""
    return JSONResponse({"alerts": [record.public() for record in await state.alerts.recent(limit)]})


@router.delete("/alerts/{alert_id}", status_code=204, response_class=Response,
               responses={204: {"description": "cancelled"},
                          **responses(401, *WRITE_ERRORS, 404, 409, e404="no such alert",
                                      e409="the alert is already sending or over")})
async def cancel_alert(alert_id: str, state: ApiState = Depends(get_state), token: str = Depends(editor)):
    """Cancel a scheduled alert."""
    result = await state.alerts.cancel(_check_alert_id(alert_id))
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


