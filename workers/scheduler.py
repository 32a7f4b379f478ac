"""The scheduler process: fires scheduled alerts when they are due (APScheduler drives the clock).

Only one scheduler is active at a time: each holds a lease in Redis and a second one waits until the lease
is free. A fired job only enqueues, and `AlertStore.fire` moves an alert from scheduled to queued exactly
once, so even two active schedulers could not send an alert twice. An alert whose send time passed while
no scheduler ran is fired late, its TTL counting from the planned time (the worker never sends it late
past its TTL, and counts it failed instead).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.exceptions import RedisError

from core.alerts import AlertStore
from core.settings import Settings
from core.store import Store
from core.subscriptions import SubscriptionStore

log = logging.getLogger("nabaa.scheduler")

LEASE_MS = 15_000
TICK_S = 1.0

# KEYS: lease. ARGV: owner, ms. Take the lease if free, or renew it if ours.
TAKE_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class Scheduler:
    def __init__(self, settings: Settings, store: Store, owner: str | None = None):
        self.settings = settings
        self.store = store
        self.alerts = AlertStore(store)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.active = False

    async def hold_lease(self) -> bool:
        taken = await self.store.script(TAKE_LEASE)(keys=[self.store.keys.scheduler_lease],
                                                    args=[self.owner, LEASE_MS])
        if bool(taken) != self.active:
            log.info("scheduler %s is %s", self.owner, "active" if taken else "standing by")
        self.active = bool(taken)
        return self.active

    async def tick(self) -> int:
        """Fire every due alert; returns how many were fired."""
        try:
            if not await self.hold_lease():
                return 0
            fired = 0
            now = int(time.time() * 1000)
            for alert_id in await self.alerts.due(now):
                if await self.alerts.fire(alert_id, now):
                    fired += 1
                    log.info("alert %s fired", alert_id)
            return fired
        except (RedisError, OSError) as exc:
            log.warning("scheduler tick: %s", exc)
            return 0

    async def expire_subscriptions(self) -> int:
        """Drop subscriptions not seen for SUBSCRIPTION_MAX_AGE_DAYS (only the active scheduler does it)."""
        days = self.settings.subscription_max_age_days
        if not days or not self.active:
            return 0
        try:
            deleted = await SubscriptionStore(self.store).expire_unseen(days * 86400)
        except (RedisError, OSError) as exc:
            log.warning("expiring subscriptions: %s", exc)
            return 0
        if deleted:
            log.info("expired %d subscriptions not seen for %d days", deleted, days)
        return deleted

    async def release(self) -> None:
        try:
            if await self.store.redis.get(self.store.keys.scheduler_lease) == self.owner.encode():
                await self.store.redis.delete(self.store.keys.scheduler_lease)
        except (RedisError, OSError):
            pass


async def run_scheduler(settings: Settings) -> None:
    from workers.runtime import on_stop_signals

    store = await Store.open(settings.redis_url, settings.redis_prefix)
    scheduler = Scheduler(settings, store)
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not two lines a second for every tick
    aps = AsyncIOScheduler(timezone="UTC")
    # misfire_grace_time and coalesce set on purpose: a late tick still runs, and a backlog runs once.
    aps.add_job(scheduler.tick, "interval", seconds=TICK_S, id="fire-due", max_instances=1,
                coalesce=True, misfire_grace_time=30)
    from workers.feeds import FeedPoller, load_feeds

    feeds = load_feeds(settings.feeds_file, settings.topic_ids)
    session = None
    if feeds:
        import aiohttp

        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, sock_connect=10),
                                        headers={"User-Agent": "Nabaa feed reader"})
        poller = FeedPoller(settings, store, feeds, session)

        async def poll_feeds():
            if scheduler.active:
                await poller.poll()

        aps.add_job(poll_feeds, "interval", seconds=settings.feed_poll_s, id="poll-feeds", max_instances=1,
                    coalesce=True, misfire_grace_time=settings.feed_poll_s)
        log.info("polling %d feeds every %d s", len(feeds), settings.feed_poll_s)
    aps.add_job(scheduler.expire_subscriptions, "interval", hours=1, id="expire-unseen", max_instances=1,
                coalesce=True, misfire_grace_time=3600)
    aps.start()
    log.info("scheduler %s started", scheduler.owner)
    try:
        await stop.wait()
    finally:
        aps.shutdown(wait=False)
        if session is not None:
            await session.close()
        await scheduler.release()
        await store.close()
