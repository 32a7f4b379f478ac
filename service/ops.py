"""For operators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.state import ApiState, get_state

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
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
    stats = await state.subs.stats([])
    for host, count in stats["by_push_service"].items():
        subs.labels(host).set(count)
    queue.set(await state.alerts.queue_depth())
    retry.set(await state.alerts.retry_depth())
    return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)
