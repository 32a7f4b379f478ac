"""`nabaa subscriptions import / export`: JSON lines, one PushSubscription object per line."""

from __future__ import annotations

import json
from typing import IO

from pydantic import ValidationError

from core.errors import InvalidInput
from core.models import SubscriptionIn, to_subscription
from core.records import CorruptRecord
from core.settings import Settings
from core.store import Store
from core.subscriptions import SubscriptionStore
from core.validation import HostPolicy
from core.vapid import b64url

MAX_LINE_BYTES = 16 * 1024


async def import_subscriptions(settings: Settings, lines: IO[str], report: IO[str]) -> dict:
    """Validate each line with the API's rules; store the good ones, report the bad ones by line number."""
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    subs = SubscriptionStore(store)
    policy = HostPolicy(tuple(settings.push_allowed_hosts), settings.push_allow_insecure)
    counts = {"created": 0, "updated": 0, "bad": 0}
    try:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                if len(line) > MAX_LINE_BYTES:
                    raise InvalidInput("line_too_long", f"a line may be at most {MAX_LINE_BYTES} bytes")
                data = SubscriptionIn.model_validate_json(line)
                sub = to_subscription(data, policy, settings.topic_ids)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error.get("loc", ())) or "line"
                print(f"line {number}: {where}: {error.get('msg')}", file=report)
                counts["bad"] += 1
                continue
            except InvalidInput as exc:
                print(f"line {number}: {exc.field or 'line'}: {exc.message}", file=report)
                counts["bad"] += 1
                continue
            created = await subs.upsert(sub)
            counts["created" if created else "updated"] += 1
    finally:
        await store.close()
    return counts


async def export_subscriptions(settings: Settings, out: IO[str]) -> int:
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    count = 0
    try:
        async for sub in SubscriptionStore(store).iterate():
            if isinstance(sub, CorruptRecord):
                continue
            line = {"endpoint": sub.endpoint, "expirationTime": None,
                    "keys": {"p256dh": b64url(sub.p256dh), "auth": b64url(sub.auth)},
                    "topics": list(sub.topics), "lang": sub.lang or None}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
    finally:
        await store.close()
    return count
