"""Every Redis key Nabaa uses, in one place, under one prefix (`REDIS_PREFIX`, default `nabaa`).

Keys carry Redis Cluster hash tags (`{…}`) so that what one Lua script or transaction touches lives in one
slot: a subscription shard and its counters share a tag; all alert state, the task stream and the retry
set share another. Shards spread the audience over the cluster's masters.

| key | type | lifetime | what |
|---|---|---|---|
| `{P:sN}:subs` | hash id → record | forever | shard N of the subscriptions (`core.records`) |
| `{P:sN}:count` | hash | forever | shard N's counters: `all`, `t:<topic>`, `l:<lang>`, `h:<host>` |
| `{P:a}:alert:<id>` | hash | forever (kept for the dashboard's history) | one alert: content, status, times, counts |
| `{P:a}:alerts` | zset id → created ms | forever (trimmed) | the alert index, newest last |
| `{P:a}:scheduled` | zset id → send_at ms | until fired | alerts waiting for their `send_at` |
| `{P:a}:idem:<sha>` | string → alert id + body hash | 24 h | `Idempotency-Key` of an editor request |
| `{P:a}:tasks` | stream | trimmed as acked | one entry per (alert, shard) to broadcast; group `workers` |
| `{P:a}:retry` | zset member → due ms | until final | single messages waiting for a retry, and leases of ones taken |
| `{P:a}:dead` | list | capped | alerts or tasks given up, with the reason (operators) |
| `{P:a}:events` | stream | capped | delivered / clicked / dismissed reports from service workers |
| `{P:h}:pauses` | hash origin → until ms | entries until then | push services that asked us to wait (429) or are stopped (401/403) |
| `{P:a}:push` | hash `"<host> <outcome>"` → count | forever | per push service: sent, gone, failed, retried, expired, …; beside the alerts, so a batch's commit counts them in the same script |
| `{P:m}:alarms` | hash kind → count | forever | alarms raised: storm breaker, auth refusals, payload too large, subscription cap |
| `{P:r}:rate:<bucket>` | string counter | 1 min | subscribe rate limit per hashed client address |
| `{P:l}:scheduler` | string → owner | lease, 15 s | the one active scheduler |
"""

from __future__ import annotations

from dataclasses import dataclass

SHARDS = 64  # fixed: a subscription's shard is derived from its id, so this never changes for a deployment
GROUP = "workers"


@dataclass(frozen=True)
class Keys:
    prefix: str = "nabaa"

    def subs(self, shard: int) -> str:
        return f"{{{self.prefix}:s{shard:02d}}}:subs"

    def counts(self, shard: int) -> str:
        return f"{{{self.prefix}:s{shard:02d}}}:count"

    def alert(self, alert_id: str) -> str:
        return f"{{{self.prefix}:a}}:alert:{alert_id}"

    @property
    def alerts(self) -> str:
        return f"{{{self.prefix}:a}}:alerts"

    @property
    def scheduled(self) -> str:
        return f"{{{self.prefix}:a}}:scheduled"

    def idempotency(self, digest: str) -> str:
        return f"{{{self.prefix}:a}}:idem:{digest}"

    @property
    def tasks(self) -> str:
        return f"{{{self.prefix}:a}}:tasks"

    @property
    def retry(self) -> str:
        return f"{{{self.prefix}:a}}:retry"

    @property
    def dead(self) -> str:
        return f"{{{self.prefix}:a}}:dead"

    @property
    def events(self) -> str:
        return f"{{{self.prefix}:a}}:events"

    @property
    def pauses(self) -> str:
        return f"{{{self.prefix}:h}}:pauses"

    @property
    def push_counters(self) -> str:
        return f"{{{self.prefix}:a}}:push"

    @property
    def alarms(self) -> str:
        return f"{{{self.prefix}:m}}:alarms"

    def rate(self, bucket: str) -> str:
        return f"{{{self.prefix}:r}}:rate:{bucket}"

    @property
    def scheduler_lease(self) -> str:
        return f"{{{self.prefix}:l}}:scheduler"
