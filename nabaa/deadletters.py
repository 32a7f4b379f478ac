"""`nabaa dead list` and `nabaa dead retry ALERT_ID`: the alerts that were given up, for operators."""

from __future__ import annotations

import json
import time
from typing import IO

from core.alerts import AlertStore, new_alert_id
from core.settings import Settings
from core.store import Store


async def list_dead(settings: Settings, out: IO[str], limit: int = 100) -> int:
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    try:
        letters = await AlertStore(store).dead_letters(limit)
        for letter in letters:
            out.write(json.dumps(letter, ensure_ascii=False) + "\n")
        return len(letters)
    finally:
        await store.close()


async def retry_dead(settings: Settings, alert_id: str) -> str:
    """Send a given-up alert again, as a new alert with the same content (its own counts)."""
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    try:
        alerts = AlertStore(store)
        record = await alerts.get(alert_id)
        if record is None:
            raise LookupError(f"there is no alert {alert_id}")
        if record.status not in ("failed", "done"):
            raise LookupError(f"alert {alert_id} is {record.status}; only a finished alert can be sent again")
        now_ms = int(time.time() * 1000)
        new_id = new_alert_id(now_ms)
        keep = ("title", "body", "url", "icon", "image", "topic", "lang", "ttl_s", "urgency", "topic_header",
                "tag", "estimate", "token", "body_hash")
        fields = {name: record.raw[name] for name in keep if record.raw.get(name) is not None}
        # The payload names the alert it came from (its id is the notification tag), so a resend replaces
        # rather than duplicates a notification already shown.
        fields.update({"id": new_id, "created_at": now_ms, "status": "queued", "payload": record.raw["payload"],
                       "retry_of": alert_id})
        await alerts.create(new_id, fields, scheduled=False, send_at_ms=0, created_ms=now_ms)
        await store.redis.lrem(store.keys.dead, 0, *[
            raw for raw in await store.redis.lrange(store.keys.dead, 0, -1)
            if json.loads(raw).get("alert") == alert_id] or [b"-"])
        return new_id
    finally:
        await store.close()


