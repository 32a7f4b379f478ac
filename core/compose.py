"""Accepting an alert: the one way in, whether an editor, a CMS webhook or a feed asks.

`accept_alert()` checks the content, builds the payload once, applies quiet hours, links an update to the
alert it replaces, and stores and queues (or schedules) it in one step, idempotently.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, time as clock_time, timedelta, timezone
from zoneinfo import ZoneInfo

from core.alerts import AlertStore, new_alert_id
from core.errors import InvalidInput
from core.models import AlertIn, build_payload, check_alert
from core.settings import Settings
from core.store import Store
from core.subscriptions import SubscriptionStore
from core.webpush import topic_for

audit = logging.getLogger("nabaa.audit")


class IdempotencyConflict(InvalidInput):
    """The Idempotency-Key was used before for a different alert."""

    status = 409


@dataclass(frozen=True)
class Accepted:
    id: str
    status: str
    created: bool  # False: the same Idempotency-Key and body were seen before; nothing new was queued


def quiet_until(when: datetime, settings: Settings) -> datetime | None:
    """The end of the quiet hours `when` falls in (publisher's time zone), or None if it is outside them."""
    window = settings.quiet_hours
    if not window:
        return None
    start_text, end_text = window.split("-")
    start = clock_time.fromisoformat(start_text)
    end = clock_time.fromisoformat(end_text)
    local = when.astimezone(ZoneInfo(settings.publisher_timezone))
    now = local.time()
    inside = (start <= now < end) if start < end else (now >= start or now < end)
    if not inside:
        return None
    end_day = local.date() if (start < end or now < end) else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=local.tzinfo).astimezone(timezone.utc)


async def estimate(subs: SubscriptionStore, topic: str | None, lang: str) -> int:
    counters = await subs.counters()
    if topic:
        return counters.get(f"t:{topic}", 0) + counters.get("t:*", 0)
    if lang:
        return counters.get(f"l:{lang}", 0)
    return counters.get("all", 0)


async def accept_alert(store: Store, settings: Settings, data: AlertIn, *, source: str,
                       idempotency_key: str | None = None, now: datetime | None = None) -> Accepted:
    """Check, store and queue (or schedule) an alert. `source` names who asked (a token id, `feed:…`)."""
    alerts = AlertStore(store)
    now = now or datetime.now(timezone.utc)
    fields = check_alert(data, settings.site_origin, settings.topic_ids, now)
    created_ms = int(now.timestamp() * 1000)
    alert_id = new_alert_id(created_ms)
    tag, topic_header = alert_id, topic_for(alert_id)
    replaces = getattr(data, "replaces", None)
    if replaces:
        original = await alerts.get(replaces) if len(replaces) <= 32 else None
        if original is None:
            raise InvalidInput("unknown_alert", f"replaces: there is no alert {replaces!r} to update", "replaces")
        # Same tag (replaces the notification on screen) and same Topic (replaces one still queued).
        tag = original.raw.get("tag") or original.id
        topic_header = original.topic_header
        fields["tag"], fields["renotify"] = tag, True
    payload = build_payload(alert_id, fields, settings.site_origin, created_ms)

    send_at = fields["send_at"]
    deferred = None
    if data.urgency != "high":  # breaking news goes out at any hour; the rest waits for the morning
        morning = quiet_until(send_at if send_at and send_at > now else now, settings)
        if morning is not None:
            send_at, deferred = morning, "quiet_hours"
    scheduled = send_at is not None and send_at > now
    send_at_ms = int(send_at.timestamp() * 1000) if send_at is not None else 0

    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, ensure_ascii=False).encode()
    body_hash = hashlib.sha256(canonical).hexdigest()[:32]
    idempotency = None
    if idempotency_key is not None:
        if not idempotency_key or not idempotency_key.isascii() or not idempotency_key.isprintable():
            raise InvalidInput("invalid_idempotency_key", "Idempotency-Key must be 1–200 printable ASCII characters",
                               "Idempotency-Key")
        digest = hashlib.sha256(f"{source}:{idempotency_key}".encode()).hexdigest()[:32]
        idempotency = (digest, f"{alert_id}|{body_hash}")
    record = {
        "id": alert_id, "title": fields["title"], "body": fields["body"], "url": fields["url"],
        "icon": fields["icon"], "image": fields["image"], "topic": fields["topic"] or "", "lang": fields["lang"],
        "ttl_s": fields["ttl_s"], "urgency": fields["urgency"], "send_at_ms": send_at_ms or None,
        "created_at": created_ms, "status": "scheduled" if scheduled else "queued",
        "payload": payload.decode("utf-8"), "topic_header": topic_header, "tag": tag,
        "estimate": await estimate(SubscriptionStore(store), fields["topic"], fields["lang"]),
        "token": source, "body_hash": body_hash, "replaces": replaces or None, "deferred": deferred,
    }
    created, value = await alerts.create(alert_id, record, scheduled=scheduled, send_at_ms=send_at_ms,
                                         created_ms=created_ms, idempotency=idempotency)
    if not created:
        stored_id, _, stored_hash = value.partition("|")
        if stored_hash != body_hash:
            raise IdempotencyConflict(
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different alert; use a new key for a new alert",
                "Idempotency-Key")
        existing = await alerts.get(stored_id)
        return Accepted(stored_id, existing.status if existing else "queued", False)
    await store.make_durable()
    # The audit trail: who, when, and a hash of exactly what was sent (never the text itself).
    audit.info("alert %s accepted source=%s at=%s payload_sha256=%s status=%s%s", alert_id, source,
               now.isoformat(timespec="milliseconds"), hashlib.sha256(payload).hexdigest(), record["status"],
               f" deferred={deferred}" if deferred else "")
    return Accepted(alert_id, record["status"], True)
