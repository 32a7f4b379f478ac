"""The shapes of what readers and editors send, and their checks beyond shape.

Pydantic checks types and ranges (a wrong one is a 422 naming the field and the range); the functions
below apply the rules of `core.validation` and give the core's own objects.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from core import validation
from core.errors import InvalidInput, PayloadTooLarge
from core.records import Subscription, subscription_id
from core.webpush import MAX_PLAINTEXT_BYTES

MAX_TOPICS = 16
PAYLOAD_BUDGET_BYTES = 2048  # web-push-facts.md: Firefox for Android's bridge caps bodies at 2744 bytes
RTL_LANGS = {"ar", "fa", "he", "ur", "ps", "ku", "dv", "yi"}
TITLE_MAX, BODY_MAX = 120, 400
TTL_MIN_S, TTL_MAX_S = 60, 2_419_200
MAX_SCHEDULE_AHEAD = timedelta(days=366)
LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
TOPIC_ID_MAX = 32
TopicId = Annotated[StrictStr, Field(min_length=1, max_length=TOPIC_ID_MAX, description="a section id")]


class SubscriptionKeysIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    p256dh: StrictStr = Field(max_length=256, description="base64url of the 65-byte uncompressed P-256 point")
    auth: StrictStr = Field(max_length=64, description="base64url of the 16-byte auth secret")


class SubscriptionIn(BaseModel):
    """The browser's `PushSubscription.toJSON()`, plus the reader's sections and language."""

    model_config = ConfigDict(extra="ignore")
    endpoint: StrictStr = Field(max_length=validation.MAX_ENDPOINT_CHARS,
                                description="the push service URL: https, on PUSH_ALLOWED_HOSTS")
    expirationTime: StrictInt | float | None = None
    keys: SubscriptionKeysIn
    topics: list[TopicId] = Field(default_factory=list, max_length=MAX_TOPICS,
                                  description="section ids; empty: every section")
    lang: StrictStr | None = Field(None, max_length=16, pattern=LANG_PATTERN)


def to_subscription(data: SubscriptionIn, policy: validation.HostPolicy, topic_ids, now_s: int | None = None
                    ) -> Subscription:
    endpoint = validation.check_endpoint(data.endpoint, policy)
    p256dh = validation.check_p256dh(data.keys.p256dh)
    auth = validation.check_auth(data.keys.auth)
    topics = []
    for index, topic in enumerate(data.topics):
        if topic not in topic_ids:
            raise InvalidInput(
                "unknown_topic", f"topic {topic!r} is not one of this site's sections: {', '.join(sorted(topic_ids))}",
                f"topics[{index}]",
            )
        if topic not in topics:
            topics.append(topic)
    now_s = int(now_s if now_s is not None else time.time())
    return Subscription(
        id=subscription_id(endpoint), endpoint=endpoint, p256dh=p256dh, auth=auth,
        topics=tuple(topics), lang=(data.lang or "").split("-")[0], created_s=now_s, last_seen_s=now_s,
    )


class AlertIn(BaseModel):
    """What an editor (or a CMS) asks to send."""

    model_config = ConfigDict(extra="forbid")
    title: StrictStr = Field(min_length=1, max_length=TITLE_MAX, description=f"1–{TITLE_MAX} characters")
    body: StrictStr = Field("", max_length=BODY_MAX, description=f"0–{BODY_MAX} characters")
    url: StrictStr = Field("/", min_length=1, max_length=validation.MAX_URL_CHARS,
                           description="a path on the site or an absolute URL on SITE_ORIGIN")
    icon: StrictStr | None = Field(None, max_length=validation.MAX_URL_CHARS,
                                   description="an https:// URL or a path on the site")
    image: StrictStr | None = Field(None, max_length=validation.MAX_URL_CHARS,
                                    description="an https:// URL or a path on the site")
    topic: StrictStr | None = Field(None, max_length=TOPIC_ID_MAX, description="a section id; absent: everyone")
    lang: StrictStr | None = Field(None, pattern=LANG_PATTERN, description="absent: every language")
    ttl_s: StrictInt = Field(86400, ge=TTL_MIN_S, le=TTL_MAX_S)
    urgency: Literal["very-low", "low", "normal", "high"] = "high"
    send_at: AwareDatetime | None = None
    replaces: StrictStr | None = Field(None, max_length=32, description="the id of an earlier alert this one "
                                       "updates: it replaces that notification on readers' devices")


def detect_lang(text: str) -> str:
    for ch in text:
        if "\u0600" <= ch <= "\u06ff" or "\u0750" <= ch <= "\u077f" or "\ufb50" <= ch <= "\ufefc":
            return "ar"
        if ch.isalpha():
            return "en"
    return "ar"


def check_alert(data: AlertIn, site_origin: str, topic_ids, now: datetime | None = None) -> dict:
    """Check an alert's content and give the fields to store; raises InvalidInput naming the field."""
    title = validation.check_text(data.title, "title", min_chars=1, max_chars=TITLE_MAX)
    if not title.strip():
        raise InvalidInput("text_length", f"title must be 1–{TITLE_MAX} characters, not only spaces", "title")
    body = validation.check_text(data.body, "body", min_chars=0, max_chars=BODY_MAX, allow_newlines=True)
    url = validation.check_click_url(data.url, site_origin)
    icon = validation.check_asset_url(data.icon, site_origin, "icon") if data.icon else None
    image = validation.check_asset_url(data.image, site_origin, "image") if data.image else None
    if data.topic is not None and data.topic not in topic_ids:
        raise InvalidInput(
            "unknown_topic", f"topic must be one of this site's sections: {', '.join(sorted(topic_ids))}", "topic"
        )
    now = now or datetime.now(timezone.utc)
    send_at = data.send_at
    if send_at is not None and send_at - now > MAX_SCHEDULE_AHEAD:
        raise InvalidInput("out_of_range", "send_at must be within a year from now", "send_at")
    lang = (data.lang or "").split("-")[0]
    return {
        "title": title, "body": body, "url": url, "icon": icon, "image": image, "topic": data.topic,
        "lang": lang, "ttl_s": data.ttl_s, "urgency": data.urgency, "send_at": send_at,
    }


def absolute(url: str | None, site_origin: str) -> str | None:
    if url is None:
        return None
    return site_origin + url if url.startswith("/") else url


def build_payload(alert_id: str, fields: dict, site_origin: str, created_ms: int) -> bytes:
    """The JSON the service worker receives, UTF-8 and never ASCII-escaped; refused if over the budget."""
    display_lang = fields["lang"] or detect_lang(fields["title"])
    payload = {
        "id": alert_id,
        "title": fields["title"],
        "body": fields["body"],
        "url": absolute(fields["url"], site_origin),
        "icon": absolute(fields["icon"] or "/static/icon-192.png", site_origin),
        "badge": absolute("/static/badge-72.png", site_origin),
        "dir": "rtl" if display_lang in RTL_LANGS else "ltr",
        "lang": display_lang,
        "tag": fields.get("tag") or alert_id,
        "ts": created_ms,
    }
    if fields["image"]:
        payload["image"] = absolute(fields["image"], site_origin)
    if fields.get("renotify"):
        payload["renotify"] = True
    encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(encoded) > min(PAYLOAD_BUDGET_BYTES, MAX_PLAINTEXT_BYTES):
        raise PayloadTooLarge(
            "payload_too_large",
            f"the notification is {len(encoded)} bytes once encoded; the limit is {PAYLOAD_BUDGET_BYTES} bytes "
            "(UTF-8 JSON: Arabic letters take 2 bytes, emoji 4): shorten the title or body",
            "body",
        )
    return encoded

