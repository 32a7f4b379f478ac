"""The one table that turns a push service's answer into what we do (web-push-facts.md, "What each answer means").

Every send goes through `classify()`; nothing else in the code looks at a status number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum


class Action(str, Enum):
    SENT = "sent"  # 201/202: accepted by the push service
    GONE = "gone"  # 404/410: the subscription is dead — delete it (behind the storm breaker)
    RETRY = "retry"  # 5xx, timeouts, resets, DNS: back off exponentially with full jitter
    THROTTLED = "throttled"  # 429 (and Microsoft's 406): pause that host for Retry-After
    AUTH = "auth"  # 401/403: our VAPID is wrong — never delete; stop the host after a threshold
    REJECTED = "rejected"  # 400 and other 4xx: bad request or subscription — no retry, record why
    TOO_LARGE = "too_large"  # 413: our size cap is broken — no retry, alarm
    REDIRECT = "redirect"  # 3xx: never followed — failure


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: int | None  # None: no HTTP answer (timeout, reset, refused, blocked address)
    reason: str = ""
    retry_after_s: float | None = None

    @property
    def final(self) -> bool:
        return self.action not in (Action.RETRY, Action.THROTTLED)


DEFAULT_RETRY_AFTER_S = 60.0
MAX_RETRY_AFTER_S = 3600.0


def classify(status: int, retry_after: str | None = None, now_s: float | None = None) -> Outcome:
    if status in (201, 202, 200, 204):
        return Outcome(Action.SENT, status)
    if status in (404, 410):
        return Outcome(Action.GONE, status, "subscription expired or unsubscribed")
    if status in (429, 406):
        return Outcome(Action.THROTTLED, status, "throttled", parse_retry_after(retry_after, now_s))
    if status in (401, 403):
        return Outcome(Action.AUTH, status, "VAPID token refused")
    if status == 413:
        return Outcome(Action.TOO_LARGE, status, "payload too large")
    if 300 <= status < 400:
        return Outcome(Action.REDIRECT, status, "redirect not followed")
    if status >= 500:
        return Outcome(Action.RETRY, status, f"push service error {status}",
                       parse_retry_after(retry_after, now_s) if retry_after else None)
    return Outcome(Action.REJECTED, status, f"refused with {status}")


def transient(reason: str) -> Outcome:
    """No HTTP answer: a timeout, a reset, a refused connection, a failed look-up."""
    return Outcome(Action.RETRY, None, reason)


def parse_retry_after(value: str | None, now_s: float | None = None) -> float:
    """`Retry-After` in seconds or as an HTTP-date (RFC 9110 §10.2.3), bounded to an hour."""
    import time

    if not value:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER_S
    now_s = now_s if now_s is not None else time.time()
    return min(max(when - now_s, 0.0), MAX_RETRY_AFTER_S)


def backoff_s(attempt: int, base_s: float = 1.0, cap_s: float = 300.0, rng: random.Random | None = None) -> float:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base·2^attempt)]."""
    rng = rng or random
    return rng.uniform(0, min(cap_s, base_s * (2 ** attempt)))
