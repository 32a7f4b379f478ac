"""An alert's results: what the editor API shows of one (counts, per push service, click-through rate), its
live progress as server-sent events, and a CSV export of recent alerts for the newsroom's spreadsheets.

    GET /api/v1/alerts/{id}/stream   text/event-stream: `event: alert` with the alert's JSON each time it
                                     changes (checked every STREAM_TICK_S), then `event: end` once it is
                                     done, failed or cancelled, after STREAM_MAX_S, when it is gone or
                                     when the store stops answering
    GET /api/v1/alerts.csv?limit=    one row per alert, UTF-8 with a BOM (Excel reads the Arabic right)

Both need the editor token in the `Authorization` header, never in the URL: a browser's EventSource cannot
send headers, so the dashboard reads the stream with fetch() and a ReadableStream reader.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from redis.exceptions import RedisError

from core.alerts import AlertRecord, AlertStore
from service.auth import editor
from service.errors import ApiError, responses
from service.state import ApiState, get_state

router = APIRouter(prefix="/api/v1", tags=["editor"])
ALERT_ID = re.compile(r"[0-9a-f]{21}")  # 11 hex digits of milliseconds, 10 random (core.alerts.new_alert_id)

PUSH_SERVICE_WORDS = ("sent", "gone", "failed", "retried", "expired")
FINAL_STATUSES = frozenset({"done", "failed", "cancelled"})
STREAM_TICK_S = 0.5  # how often a stream looks at its alert
STREAM_MAX_S = 600.0  # a stream ends after 10 minutes; the dashboard opens a new one if the alert still runs
KEEPALIVE_S = 15.0  # a comment line when nothing changed, so proxies keep the connection and a gone client shows
MAX_STREAMS = 200  # open streams per API process; past it, 503 with Retry-After
CSV_COLUMNS = ("id", "created_at", "send_at", "status", "title", "topic", "targeted", "sent", "gone", "failed",
               "delivered", "clicked", "ctr")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may read as a formula (OWASP CSV injection)


def click_rate(counts: dict) -> float | None:
    """Clicks per delivered notification, or per sent one while no service worker reported a delivery;
    None when there is nothing to divide by."""
    base = counts.get("delivered") or counts.get("sent") or 0
    return round(counts.get("clicked", 0) / base, 4) if base else None


def alert_view(record: AlertRecord) -> dict:
    """The alert as the editor API shows it: `AlertRecord.public()` plus its results and what an update
    needs to start from (icon, image, the alert it replaced)."""
    view = record.public()
    view["icon"] = record.raw.get("icon") or None
    view["image"] = record.raw.get("image") or None
    view["replaces"] = record.raw.get("replaces") or None
    view["by_push_service"] = {
        host: {word: words.get(word, 0) for word in PUSH_SERVICE_WORDS}
        for host, words in sorted(record.by_push_service().items())
    }
    view["ctr"] = click_rate(view["counts"])
    return view


def check_alert_id(alert_id: str) -> str:
    if not ALERT_ID.fullmatch(alert_id):
        raise ApiError(404, "alert_not_found", f"there is no alert {alert_id!r}")
    return alert_id


# --------------------------------------------------------------------------- live progress


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


def sse(event: str, data: dict) -> bytes:
    """One server-sent event; the JSON is on one line, so one `data:` field carries it."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


async def progress(request: Request, alerts: AlertStore, first: AlertRecord, *, tick_s: float, max_s: float,
                   keepalive_s: float) -> AsyncIterator[bytes]:
    """The events of one stream: the alert now, then each change, then `end` with why it ended."""
    started = last_write = time.monotonic()
    record: AlertRecord | None = first
    shown = None
    while True:
        if record is None:
            yield sse("end", {"id": first.id, "reason": "gone"})
            return
        view = alert_view(record)
        if view != shown:
            yield sse("alert", view)
            shown, last_write = view, time.monotonic()
        if record.status in FINAL_STATUSES:
            yield sse("end", {"id": record.id, "reason": record.status})
            return
        if time.monotonic() - started >= max_s:
            yield sse("end", {"id": record.id, "reason": "timeout"})
            return
        if time.monotonic() - last_write >= keepalive_s:
            yield b": keep-alive\n\n"
            last_write = time.monotonic()
        await asyncio.sleep(tick_s)
        if await request.is_disconnected():
            return
        try:
            record = await alerts.get(first.id)
        except (RedisError, OSError):
            # Headers are long gone, so no 503 now: say why it ended; the dashboard falls back to polling.
            yield sse("end", {"id": first.id, "reason": "unavailable"})
            return


async def _held(events: AsyncIterator[bytes], state: ApiState) -> AsyncIterator[bytes]:
    # The slot is held while the stream runs: taken on its first step, given back when it ends or the client goes.
    state.open_streams += 1
    try:
        async for chunk in events:
            yield chunk
    finally:
        state.open_streams -= 1


@router.get("/alerts/{alert_id}/stream", response_class=Response,  # errors are JSON; the 200 is described below
            responses={200: {"description": "server-sent events: `event: alert` with the alert's JSON (as GET "
                                            "/api/v1/alerts/{id}) whenever it changes, then `event: end` with "
                                            "`{id, reason}`: done, failed, cancelled, timeout (after 10 minutes; "
                                            "open a new stream), gone, or unavailable (the store stopped "
                                            "answering)",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **responses(401, 404, 503, e404="no such alert",
                                   e503="the store is not answering, or too many streams are open: try again "
                                        "after `Retry-After`")})
async def stream_alert(alert_id: str, request: Request, state: ApiState = Depends(get_state),
                       _: str = Depends(editor)):
    """Follow one alert as it is sent. Send the token in the `Authorization` header (read the stream with
    fetch(); EventSource cannot send headers)."""
    record = await state.alerts.get(check_alert_id(alert_id))
    if record is None:
        raise ApiError(404, "alert_not_found", f"there is no alert {alert_id!r}")
    if state.open_streams >= MAX_STREAMS:
        raise ApiError(503, "too_many_streams", f"this server already has {MAX_STREAMS} progress streams open; "
                       "try again shortly, or poll GET /api/v1/alerts/{id}", headers={"Retry-After": "5"})
    events = progress(request, state.alerts, record, tick_s=STREAM_TICK_S, max_s=STREAM_MAX_S, keepalive_s=KEEPALIVE_S)
    return EventStream(_held(events, state),
                       headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --------------------------------------------------------------------------- CSV export


def csv_cell(value) -> str | int | float:
    """A cell a spreadsheet shows as text: one that could start a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_row(view: dict) -> list:
    counts = view["counts"]
    return [csv_cell(v) for v in (
        view["id"], view["created_at"], view["send_at"], view["status"], view["title"], view["topic"],
        counts["targeted"], counts["sent"], counts["gone"], counts["failed"], counts["delivered"],
        counts["clicked"], view["ctr"],
    )]


def alerts_csv(views: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)  # quotes what needs it; rows end with CRLF, as RFC 4180 and Excel expect
    writer.writerow(CSV_COLUMNS)
    for view in views:
        writer.writerow(csv_row(view))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


@router.get("/alerts.csv", response_class=Response,
            responses={200: {"description": "the most recent alerts, newest first, one row each (UTF-8 with a "
                                            "byte-order mark; `ctr` is a fraction, empty when there is nothing to "
                                            "divide by)",
                             "content": {"text/csv": {"schema": {"type": "string"}}}},
                       **responses(401, 422, 503)})
async def export_alerts(limit: int = Query(500, ge=1, le=500), state: ApiState = Depends(get_state),
                        _: str = Depends(editor)):
    """Download recent alerts and their results as CSV, for a spreadsheet."""
    views = [alert_view(record) for record in await state.alerts.recent(limit)]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    return Response(alerts_csv(views), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="nabaa-alerts-{stamp}.csv"'})
