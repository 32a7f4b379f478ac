"""For operators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.records import service_host
from service.state import ApiState, get_state


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Redis does not answer"}})
async def readyz(state: ApiState = Depends(get_state)):
    if await state.store.ping():
        return {"status": "ready"}
    return JSONResponse({"error": {"code": "store_unavailable", "message": "Redis does not answer"}},
                        status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: ApiState = Depends(get_state)):
    """Gauges read from Redis at scrape time, so every API process reports the same picture."""
    registry = CollectorRegistry()
    subs = Gauge("nabaa_subscriptions", "stored subscriptions", ["push_service"], registry=registry)
    queue = Gauge("nabaa_queue_tasks", "broadcast tasks waiting or held by workers", registry=registry)
    retry = Gauge("nabaa_retry_messages", "single messages waiting for a retry", registry=registry)
    pushes = Gauge("nabaa_push_total", "pushes by push service and outcome, as workers recorded them "
                   "(a counter kept in Redis)", ["push_service", "outcome"], registry=registry)
    alarms = Gauge("nabaa_alarms_total", "alarms raised, by kind (storm_breaker, vapid_refused, payload_too_large, "
                   "subscription_cap)", ["kind"], registry=registry)
    paused = Gauge("nabaa_push_service_paused_seconds", "seconds until a paused push service is tried again",
                   ["push_service"], registry=registry)
    dead = Gauge("nabaa_dead_letters", "alerts given up, kept for operators", registry=registry)
    stats = await state.subs.stats([])
    for host, count in stats["by_push_service"].items():
        subs.labels(host).set(count)
    queue.set(await state.alerts.queue_depth())
    retry.set(await state.alerts.retry_depth())
    redis, keys = state.store.redis, state.store.keys
    for name, value in (await redis.hgetall(keys.push_counters)).items():
        host, _, outcome = _text(name).rpartition(" ")
        pushes.labels(host, outcome).set(int(value))
    for name, value in (await redis.hgetall(keys.alarms)).items():
        alarms.labels(_text(name)).set(int(value))
    now_ms = time.time() * 1000
    for origin, until in (await redis.hgetall(keys.pauses)).items():
        if int(until) > now_ms:
            paused.labels(service_host(_text(origin))).set((int(until) - now_ms) / 1000)
    dead.set(await redis.llen(keys.dead))
    return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)
