"""The subscription store: upsert by endpoint, delete, stream a shard, count.

Each write is one Lua script on one shard's slot, so the record and the shard's counters change together.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from core.keys import SHARDS
from core.records import CorruptRecord, Subscription, decode, pack_path, service_host, shard_of, split_endpoint
from core.store import Store

# Shared by the scripts: the first six `|`-separated fields of a record, and the counter updates.
_LUA_COMMON = """
local function fields(rec)
  local out, pos = {}, 1
  for i = 1, 6 do
    local e = string.find(rec, '|', pos, true)
    if not e then return nil end
    out[i] = string.sub(rec, pos, e - 1)
    pos = e + 1
  end
  return out
end
local function count(key, f, by)
  redis.call('HINCRBY', key, 'all', by)
  redis.call('HINCRBY', key, 'h:' .. f[4], by)
  if f[3] ~= '' then redis.call('HINCRBY', key, 'l:' .. f[3], by) end
  if f[2] == '' then
    redis.call('HINCRBY', key, 't:*', by)
  else
    for t in string.gmatch(f[2], '[^,]+') do redis.call('HINCRBY', key, 't:' .. t, by) end
  end
end
"""

# KEYS: subs, counts. ARGV: id, topics, lang, origin, now_s, binary tail (keys + path), day (YYYYMMDD).
# Returns 1 when the endpoint is new, 0 when an existing record was refreshed (created_s kept).
UPSERT = _LUA_COMMON + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local created = ARGV[5]
if old then
  local f = fields(old)
  if f then
    count(KEYS[2], f, -1)
    created = f[5]
  end
end
local rec = '1|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. created .. '|' .. ARGV[5] .. '|' .. ARGV[6]
redis.call('HSET', KEYS[1], ARGV[1], rec)
count(KEYS[2], fields(rec), 1)
if old then return 0 end
if ARGV[7] then redis.call('HINCRBY', KEYS[2], 'n:' .. ARGV[7], 1) end
return 1
"""

# KEYS: subs, counts. ARGV: id, day (YYYYMMDD), and optionally a cutoff in seconds: then the record is
# deleted only if it was last seen before the cutoff (a reader who came back meanwhile is kept).
# Returns 1 if a record was deleted.
DELETE = _LUA_COMMON + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local f = fields(old)
if ARGV[3] and f and tonumber(f[6]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if f then count(KEYS[2], f, -1) end
if ARGV[2] then redis.call('HINCRBY', KEYS[2], 'u:' .. ARGV[2], 1) end
return 1
"""


def day(now_s: float | None = None) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now_s if now_s is not None else time.time()))


@dataclass
class SubscriptionStore:
    store: Store

    async def upsert(self, sub: Subscription, now_s: int | None = None) -> bool:
        """Store or refresh a validated subscription; True when its endpoint was new."""
        now_s = int(now_s if now_s is not None else time.time())
        origin, path = split_endpoint(sub.endpoint)
        shard = shard_of(sub.id)
        keys = self.store.keys
        created = await self.store.script(UPSERT)(
            keys=[keys.subs(shard), keys.counts(shard)],
            args=[sub.id, ",".join(sub.topics), sub.lang, origin, now_s, sub.p256dh + sub.auth + pack_path(path),
                  day(now_s)],
        )
        return bool(created)

    async def delete(self, sub_id: str) -> bool:
        shard = shard_of(sub_id)
        keys = self.store.keys
        return bool(await self.store.script(DELETE)(keys=[keys.subs(shard), keys.counts(shard)],
                                                    args=[sub_id, day()]))

    async def expire_unseen(self, max_age_s: int, now_s: float | None = None) -> int:
        """Delete subscriptions not seen for `max_age_s` (push services may keep accepting pushes for
        readers who revoked permission); the widget refreshes last-seen on every visit. Streams the
        shards; returns how many were deleted."""
        now_s = now_s if now_s is not None else time.time()
        cutoff = int(now_s - max_age_s)
        keys = self.store.keys
        script = self.store.script(DELETE)
        deleted = 0
        for shard in range(SHARDS):
            cursor = 0
            while True:
                cursor, items = await self.scan_shard(shard, cursor, 1000)
                stale = []
                for sub_id, raw in items:
                    parts = raw.split(b"|", 6)
                    try:
                        if int(parts[5]) < cutoff:
                            stale.append(sub_id)
                    except (IndexError, ValueError):
                        continue  # unreadable: the worker counts it failed; not ours to judge by age
                if stale:
                    pipe = self.store.redis.pipeline(transaction=False)
                    for sub_id in stale:
                        await script(keys=[keys.subs(shard), keys.counts(shard)], args=[sub_id, day(now_s), cutoff],
                                     client=pipe)
                    deleted += sum(int(r) for r in await pipe.execute())
                if cursor == 0:
                    break
        return deleted

    async def delete_many(self, sub_ids: list[str]) -> int:
        """Delete several (the push service said they are gone), pipelined; how many existed."""
        keys = self.store.keys
        script = self.store.script(DELETE)
        pipe = self.store.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            shard = shard_of(sub_id)
            await script(keys=[keys.subs(shard), keys.counts(shard)], args=[sub_id, day()], client=pipe)
        return sum(int(r) for r in await pipe.execute())

    async def get_many(self, sub_ids: list[str]) -> list[Subscription | CorruptRecord | None]:
        pipe = self.store.redis.pipeline(transaction=False)
        for sub_id in sub_ids:
            pipe.hget(self.store.keys.subs(shard_of(sub_id)), sub_id)
        out: list[Subscription | CorruptRecord | None] = []
        for sub_id, raw in zip(sub_ids, await pipe.execute()):
            if raw is None:
                out.append(None)
                continue
            try:
                out.append(decode(sub_id, raw))
            except CorruptRecord as exc:
                out.append(exc)
        return out

    async def get(self, sub_id: str) -> Subscription | None:
        raw = await self.store.redis.hget(self.store.keys.subs(shard_of(sub_id)), sub_id)
        return decode(sub_id, raw) if raw is not None else None

    async def scan_shard(self, shard: int, cursor: int = 0, count: int = 256):
        """One HSCAN step: (next cursor, [(id, raw record)]). Cursor 0 back means the shard is done."""
        cursor, items = await self.store.redis.hscan(self.store.keys.subs(shard), cursor, count=count)
        return int(cursor), [(k.decode() if isinstance(k, bytes) else k, v) for k, v in items.items()]

    async def iterate(self) -> AsyncIterator[Subscription | CorruptRecord]:
        """Every subscription, shard by shard, streamed (never all in memory)."""
        for shard in range(SHARDS):
            cursor = 0
            while True:
                cursor, items = await self.scan_shard(shard, cursor, 500)
                for sub_id, raw in items:
                    try:
                        yield decode(sub_id, raw)
                    except CorruptRecord as exc:
                        yield exc
                if cursor == 0:
                    break

    async def counters(self) -> dict[str, int]:
        """All shards' counters added up: `all`, `t:<topic>`, `l:<lang>`, `h:<origin>`."""
        pipe = self.store.redis.pipeline(transaction=False)
        for shard in range(SHARDS):
            pipe.hgetall(self.store.keys.counts(shard))
        total: dict[str, int] = {}
        for result in await pipe.execute():
            for name, value in result.items():
                name = name.decode() if isinstance(name, bytes) else name
                total[name] = total.get(name, 0) + int(value)
        return total

    async def stats(self, topic_ids) -> dict:
        counters = await self.counters()
        everyone = counters.get("t:*", 0)
        by_service: dict[str, int] = {}
        for name, value in counters.items():
            if name.startswith("h:") and value > 0:
                host = service_host(name[2:])
                by_service[host] = by_service.get(host, 0) + value
        growth: dict[str, dict[str, int]] = {}
        for name, value in counters.items():
            if name[:2] in ("n:", "u:") and len(name) == 10:
                date = f"{name[2:6]}-{name[6:8]}-{name[8:10]}"
                growth.setdefault(date, {"new": 0, "removed": 0})["new" if name[0] == "n" else "removed"] += value
        return {
            "subscriptions": counters.get("all", 0),
            "by_topic": {topic: counters.get(f"t:{topic}", 0) + everyone for topic in topic_ids},
            "by_push_service": dict(sorted(by_service.items(), key=lambda kv: -kv[1])),
            "growth": dict(sorted(growth.items())[-90:]),
        }
