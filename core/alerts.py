"""Alerts: their record, the broadcast tasks, retries and counts, kept consistent by Lua scripts.

An accepted alert is one hash plus, when it is due, one stream entry per subscription shard (the tasks
that workers share through a consumer group). Every count moves in the same script that records why, so
when an alert is `done`, `sent + gone + failed == targeted` holds exactly:

    API ──create──▶ alert hash + 64 tasks ──XREADGROUP──▶ worker ──commit_batch──▶ counts, cursor, retries
    scheduler ──fire_due──▶ tasks                         worker ──finish_retries──▶ counts
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from functools import cached_property

from core.keys import GROUP, SHARDS
from core.store import Store
from core.webpush import topic_for

STATUSES = ("scheduled", "queued", "sending", "done", "cancelled", "failed")
IDEMPOTENCY_TTL_S = 24 * 3600
RETRY_LEASE_MS = 30_000
COUNT_FIELDS = ("targeted", "sent", "gone", "failed", "delivered", "clicked", "dismissed")


def new_alert_id(now_ms: int | None = None) -> str:
    now_ms = int(now_ms if now_ms is not None else time.time() * 1000)
    return f"{now_ms:011x}{secrets.token_hex(5)}"


# Shared by the scripts that can finish an alert: `key` the alert hash, `dead` the dead-letter list.
# An alert none of whose sends succeeded ends `failed` and goes to the dead letters with its last reason.
_LUA_DONE = f"""
local function check_done(key, now, dead)
  local v = redis.call('HMGET', key, 'status', 'shards_done', 'targeted', 'sent', 'gone', 'failed')
  if v[1] ~= 'sending' or tonumber(v[2] or '0') < {SHARDS} then return 1 end
  local targeted, sent, gone, failed = tonumber(v[3] or '0'), tonumber(v[4] or '0'), tonumber(v[5] or '0'), tonumber(v[6] or '0')
  if sent + gone + failed < targeted then return 1 end
  local status = 'done'
  if failed > 0 and sent == 0 and gone == 0 then status = 'failed' end
  redis.call('HSET', key, 'status', status, 'finished_at', now)
  if status == 'failed' then
    local reason = redis.call('HGET', key, 'last_error') or 'every send failed'
    redis.call('LPUSH', dead, cjson.encode({{alert = redis.call('HGET', key, 'id'), reason = reason, at = tonumber(now)}}))
    redis.call('LTRIM', dead, 0, 9999)
  end
  return 2
end
"""

# KEYS: alert, alerts index, tasks, scheduled, idempotency key.
# ARGV: id, idempotency value ('' = none), idempotency ttl, mode ('queue'|'schedule'), send_at ms,
#       created ms, then field/value pairs of the alert hash.
# Returns {1, id} when created, {0, stored idempotency value} when the key was seen before.
CREATE = f"""
if ARGV[2] ~= '' then
  local seen = redis.call('GET', KEYS[5])
  if seen then return {{0, seen}} end
end
local id = ARGV[1]
local fields = {{}}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[6], id)
if ARGV[4] == 'schedule' then
  redis.call('ZADD', KEYS[4], ARGV[5], id)
else
  for s = 0, {SHARDS - 1} do redis.call('XADD', KEYS[3], '*', 'a', id, 's', s) end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[5], ARGV[2], 'EX', ARGV[3]) end
return {{1, id}}
"""

# KEYS: scheduled, alert, tasks. ARGV: id, now ms. Moves one due alert to the queue, exactly once.
FIRE = f"""
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[2], 'status') ~= 'scheduled' then return 0 end
redis.call('HSET', KEYS[2], 'status', 'queued', 'fired_at', ARGV[2])
for s = 0, {SHARDS - 1} do redis.call('XADD', KEYS[3], '*', 'a', ARGV[1], 's', s) end
return 1
"""

# KEYS: alert, scheduled. ARGV: id, now ms. 1 cancelled, 0 unknown, -1 too late (sending or over).
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'cancelled' then return 1 end
if status ~= 'scheduled' then return -1 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
return 1
"""

# KEYS: alert. ARGV: shard, now ms. Marks the alert sending; returns {status, cursor, shard done?}.
BEGIN = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {false, false, false} end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'sending')
  redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
  status = 'sending'
end
return {status, redis.call('HGET', KEYS[1], 'cur:' .. ARGV[1]), redis.call('HGET', KEYS[1], 'done:' .. ARGV[1])}
"""

# Counters that ride in a commit (one round trip a batch, and counted exactly once with it): from ARGV[i],
# n, then n field/increment pairs onto the alert (per push service `svc:<host> <word>`, the breaker's
# `ans:<origin>`), then m, then m name/increment pairs onto the push-service counters (KEYS[4], metrics).
# Returns the index after them.
_LUA_COUNTERS = """
local function add_counters(alert, push, i)
  local exists = redis.call('EXISTS', alert) == 1
  local n = tonumber(ARGV[i])
  for j = i + 1, i + 2 * n, 2 do
    if exists then redis.call('HINCRBY', alert, ARGV[j], ARGV[j + 1]) end
  end
  i = i + 1 + 2 * n
  local m = tonumber(ARGV[i])
  for j = i + 1, i + 2 * m, 2 do redis.call('HINCRBY', push, ARGV[j], ARGV[j + 1]) end
  return i + 1 + 2 * m
end
"""

# KEYS: alert, retry, dead, push counters. ARGV: shard, cursor, final (0/1), targeted, sent, gone, failed,
#       now ms, last error ('' = none), the counters (above), then due/member pairs for the retry set.
#       One batch of a shard, atomically.
COMMIT_BATCH = _LUA_DONE + _LUA_COUNTERS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local shard = ARGV[1]
if redis.call('HEXISTS', KEYS[1], 'done:' .. shard) == 1 then return 0 end
redis.call('HINCRBY', KEYS[1], 'targeted', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'sent', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'gone', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[7])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[9]) end
for i = add_counters(KEYS[1], KEYS[4], 10), #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'done:' .. shard, 1)
  redis.call('HDEL', KEYS[1], 'cur:' .. shard)
  redis.call('HINCRBY', KEYS[1], 'shards_done', 1)
else
  redis.call('HSET', KEYS[1], 'cur:' .. shard, ARGV[2])
end
return check_done(KEYS[1], ARGV[8], KEYS[3])
"""

# KEYS: retry. ARGV: now ms, lease ms, limit. Takes due retries, leasing them so a crash gives them back.
TAKE_RETRIES = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], member) end
return due
"""

# KEYS: alert, retry, dead, push counters. ARGV: now ms, last error ('' = none), the counters (above), then
# triples (member, outcome, next), outcome one of sent|gone|failed|retry; for retry, next is
# '<due ms> <next member>'.
FINISH_RETRIES = _LUA_DONE + _LUA_COUNTERS + """
local moved = 0
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_error', ARGV[2]) end
for i = add_counters(KEYS[1], KEYS[4], 3), #ARGV, 3 do
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then
    local outcome = ARGV[i + 1]
    if outcome == 'retry' then
      local sp = string.find(ARGV[i + 2], ' ', 1, true)
      redis.call('ZADD', KEYS[2], string.sub(ARGV[i + 2], 1, sp - 1), string.sub(ARGV[i + 2], sp + 1))
    elseif redis.call('EXISTS', KEYS[1]) == 1 then
      redis.call('HINCRBY', KEYS[1], outcome, 1)
      moved = moved + 1
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then check_done(KEYS[1], ARGV[1], KEYS[3]) end
return moved
"""

# KEYS: alert. ARGV: origin, answers, gone answers, threshold. The storm breaker of one broadcast:
# returns 2 when it trips (the origin's gone answers are now more than half its answers and more than
# the threshold), 1 once tripped; then nothing more is deleted for that origin in this broadcast.
TALLY_GONE = """
if redis.call('HEXISTS', KEYS[1], 'breaker:' .. ARGV[1]) == 1 then return 1 end
local answers = redis.call('HINCRBY', KEYS[1], 'ans:' .. ARGV[1], ARGV[2])
local gone = redis.call('HINCRBY', KEYS[1], 'gone:' .. ARGV[1], ARGV[3])
if gone > tonumber(ARGV[4]) and gone * 2 > answers then
  redis.call('HSET', KEYS[1], 'breaker:' .. ARGV[1], gone)
  return 2
end
return 0
"""

# KEYS: alert. ARGV: field. Counts a service-worker report for an alert that exists.
COUNT_EVENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""


@dataclass
class Counters:
    """Increments committed with a batch or a round of retries: onto the alert's hash, and onto the
    push-service counters behind /metrics."""

    alert: dict[str, int] = field(default_factory=dict)
    push: dict[str, int] = field(default_factory=dict)


def _counter_args(counters: Counters | None) -> list:
    flat: list = []
    for table in (counters.alert, counters.push) if counters else ({}, {}):
        flat.append(len(table))
        for name, count in table.items():
            flat += [name, count]
    return flat


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class AlertRecord:
    """An alert as stored: the fields of its hash, decoded."""

    raw: dict[str, str]

    @property
    def id(self) -> str:
        return self.raw["id"]

    @property
    def status(self) -> str:
        return self.raw.get("status", "queued")

    def int(self, name: str) -> int:
        return int(self.raw.get(name) or 0)

    # A record is read once and then serves every message of its batches: what each message needs of it is
    # worked out on first use only.

    @cached_property
    def payload(self) -> bytes:
        """What each subscriber's message encrypts."""
        return self.raw["payload"].encode("utf-8")

    @cached_property
    def topic_header(self) -> str:
        """The `Topic` its pushes carry: its own, or (for an update) the one of the alert it replaces."""
        return self.raw.get("topic_header") or topic_for(self.id)

    @cached_property
    def expires_ms(self) -> int:
        """When the alert's TTL runs out: counted from its send time (or its creation)."""
        base = int(self.raw.get("send_at_ms") or 0) or self.int("created_at")
        return base + self.int("ttl_s") * 1000

    def by_push_service(self) -> dict[str, dict[str, int]]:
        """What each push service answered for this alert: {host: {sent, gone, failed, retried, expired}}."""
        out: dict[str, dict[str, int]] = {}
        for name, value in self.raw.items():
            if name.startswith("svc:"):
                host, _, word = name[4:].rpartition(" ")
                out.setdefault(host, {})[word] = int(value)
        return out

    def public(self) -> dict:
        counts = {name: self.int(name) for name in COUNT_FIELDS if name != "dismissed"}
        final = counts["sent"] + counts["gone"] + counts["failed"]
        counts["pending"] = max(counts["targeted"] - final, 0)
        if self.status == "sending" and self.int("shards_done") < SHARDS:
            counts["pending"] = max(counts["pending"], self.int("estimate") - final)
        return {
            "id": self.id,
            "status": self.status,
            "title": self.raw.get("title", ""),
            "body": self.raw.get("body", ""),
            "url": self.raw.get("url", "/"),
            "topic": self.raw.get("topic") or None,
            "lang": self.raw.get("lang") or None,
            "urgency": self.raw.get("urgency", "high"),
            "ttl_s": self.int("ttl_s"),
            "created_at": _iso(self.raw.get("created_at")),
            "send_at": _iso(self.raw.get("send_at_ms")),
            "started_at": _iso(self.raw.get("started_at")),
            "finished_at": _iso(self.raw.get("finished_at")),
            "counts": counts,
        }


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


@dataclass
class AlertStore:
    store: Store

    @property
    def keys(self):
        return self.store.keys

    async def create(self, alert_id: str, fields: dict, *, scheduled: bool, send_at_ms: int, created_ms: int,
                     idempotency: tuple[str, str] | None = None) -> tuple[bool, str]:
        """Store an alert and queue (or schedule) it in one step. Returns (created, id or stored key value)."""
        flat: list = []
        for name, value in fields.items():
            if value is not None:
                flat += [name, value]
        idem_key, idem_value = idempotency or ("none", "")
        created, value = await self.store.script(CREATE)(
            keys=[self.keys.alert(alert_id), self.keys.alerts, self.keys.tasks, self.keys.scheduled,
                  self.keys.idempotency(idem_key)],
            args=[alert_id, idem_value, IDEMPOTENCY_TTL_S, "schedule" if scheduled else "queue", send_at_ms,
                  created_ms, *flat],
        )
        return bool(created), _text(value)

    async def get(self, alert_id: str) -> AlertRecord | None:
        raw = await self.store.redis.hgetall(self.keys.alert(alert_id))
        if not raw:
            return None
        return AlertRecord({_text(k): _text(v) for k, v in raw.items()})

    async def recent(self, limit: int) -> list[AlertRecord]:
        ids = await self.store.redis.zrevrange(self.keys.alerts, 0, limit - 1)
        if not ids:
            return []
        pipe = self.store.redis.pipeline(transaction=False)
        for alert_id in ids:
            pipe.hgetall(self.keys.alert(_text(alert_id)))
        records = []
        for raw in await pipe.execute():
            if raw:
                records.append(AlertRecord({_text(k): _text(v) for k, v in raw.items()}))
        return records

    async def cancel(self, alert_id: str) -> int:
        return int(await self.store.script(CANCEL)(
            keys=[self.keys.alert(alert_id), self.keys.scheduled], args=[alert_id, int(time.time() * 1000)]
        ))

    async def count_event(self, alert_id: str, kind: str) -> bool:
        return bool(await self.store.script(COUNT_EVENT)(keys=[self.keys.alert(alert_id)], args=[kind]))

    async def record_event(self, event: dict) -> None:
        await self.store.redis.xadd(self.keys.events, {"e": json.dumps(event)}, maxlen=100_000, approximate=True)

    # ----- scheduling -----------------------------------------------------------------------------

    async def due(self, now_ms: int, limit: int = 100) -> list[str]:
        ids = await self.store.redis.zrangebyscore(self.keys.scheduled, "-inf", now_ms, start=0, num=limit)
        return [_text(i) for i in ids]

    async def fire(self, alert_id: str, now_ms: int) -> bool:
        return bool(await self.store.script(FIRE)(
            keys=[self.keys.scheduled, self.keys.alert(alert_id), self.keys.tasks], args=[alert_id, now_ms]
        ))

    async def scheduled(self) -> list[str]:
        return [_text(i) for i in await self.store.redis.zrange(self.keys.scheduled, 0, -1)]

    # ----- the broadcast, as workers see it -------------------------------------------------------

    async def ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            await self.store.redis.xgroup_create(self.keys.tasks, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def begin(self, alert_id: str, shard: int, now_ms: int) -> tuple[str | None, int | None, bool]:
        status, cursor, done = await self.store.script(BEGIN)(
            keys=[self.keys.alert(alert_id)], args=[shard, now_ms]
        )
        return _text(status), (int(cursor) if cursor else None), bool(done)

    async def commit_batch(self, alert_id: str, shard: int, cursor: int, final: bool, targeted: int,
                           sent: int, gone: int, failed: int, retries: list[tuple[int, str]], now_ms: int,
                           reason: str = "", counters: Counters | None = None) -> int:
        flat: list = _counter_args(counters)
        for due_ms, member in retries:
            flat += [due_ms, member]
        return int(await self.store.script(COMMIT_BATCH)(
            keys=[self.keys.alert(alert_id), self.keys.retry, self.keys.dead, self.keys.push_counters],
            args=[shard, cursor, 1 if final else 0, targeted, sent, gone, failed, now_ms, reason, *flat],
        ))

    async def tally_gone(self, alert_id: str, origin: str, answers: int, gone: int, threshold: int) -> int:
        """Count one batch's answers for the storm breaker: 0 delete on, 2 it trips now, 1 it had tripped."""
        return int(await self.store.script(TALLY_GONE)(
            keys=[self.keys.alert(alert_id)], args=[origin, answers, gone, threshold]))

    async def dead_letters(self, limit: int = 100) -> list[dict]:
        return [json.loads(_text(item)) for item in await self.store.redis.lrange(self.keys.dead, 0, limit - 1)]

    async def take_retries(self, now_ms: int, limit: int) -> list[str]:
        members = await self.store.script(TAKE_RETRIES)(keys=[self.keys.retry], args=[now_ms, RETRY_LEASE_MS, limit])
        return [_text(m) for m in members]

    async def finish_retries(self, alert_id: str, outcomes: list[tuple[str, str, str]], now_ms: int,
                             reason: str = "", counters: Counters | None = None) -> int:
        flat: list = _counter_args(counters)
        for member, outcome, following in outcomes:
            flat += [member, outcome, following]
        return int(await self.store.script(FINISH_RETRIES)(
            keys=[self.keys.alert(alert_id), self.keys.retry, self.keys.dead, self.keys.push_counters],
            args=[now_ms, reason, *flat],
        ))

    async def retry_depth(self) -> int:
        return int(await self.store.redis.zcard(self.keys.retry))

    async def queue_depth(self) -> int:
        """Tasks not yet read by any worker plus those read and not acknowledged."""
        try:
            groups = await self.store.redis.xinfo_groups(self.keys.tasks)
        except Exception:  # no stream yet
            return 0
        depth = 0
        for group in groups:
            lag = group.get("lag") if isinstance(group, dict) else None
            depth += int(lag or 0) + int(group.get("pending", 0))
        return depth


def retry_member(alert_id: str, sub_id: str, attempt: int) -> str:
    return f"{alert_id}|{sub_id}|{attempt}"


def parse_retry_member(member: str) -> tuple[str, str, int]:
    alert_id, sub_id, attempt = member.split("|")
    return alert_id, sub_id, int(attempt)
