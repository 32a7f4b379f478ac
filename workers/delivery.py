"""The delivery worker: takes broadcast tasks from the stream, sends, records outcomes.

A task is one (alert, shard). The worker walks the shard with HSCAN in batches, sends each batch with up to
`WORKER_CONCURRENCY` requests in flight, and commits every batch (counts, retries, the shard cursor) in
one script, so a worker killed at any instant leaves at most the uncommitted batches to be sent again by
whoever takes its tasks over (`XAUTOCLAIM` after `CLAIM_IDLE_MS`). Single messages that must be tried
again wait in the retry set and are taken with a lease.

    stream {P:a}:tasks ──▶ process_task ──▶ scan shard ──▶ send_batch ──▶ commit_batch
    zset {P:a}:retry   ──▶ process_retries ──────────────▶ send ───────▶ finish_retries
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from core.alerts import RETRY_LEASE_MS, AlertRecord, AlertStore, Counters, parse_retry_member, retry_member
from core.keys import GROUP
from core.outcomes import DEFAULT_RETRY_AFTER_S, Action, Outcome, backoff_s, transient
from core.records import CorruptRecord, Subscription, decode, origin_url, service_host
from core.settings import Settings
from core.store import Store
from core.subscriptions import SubscriptionStore
from core.validation import HostPolicy, check_endpoint
from core.errors import InvalidInput
from core.vapid import Vapid
from core.webpush import PushRequest, encrypt, push_headers
from workers.transport import Transport

log = logging.getLogger("nabaa.worker")

BATCH = 64  # subscriptions per committed batch
FIRST_BATCH = 16  # the first batch of a shard
PARALLEL_TASKS = 4  # shard tasks a worker works on at once: BATCH × PARALLEL_TASKS ≤ the in-flight window
CLAIM_IDLE_MS = 15_000  # a task untouched this long belongs to a dead worker
HEARTBEAT_S = 5.0
RETRY_POLL_S = 0.5
ALERT_CACHE_S = 30.0
BATCH_PATIENCE_S = 2.0  # how long a batch waits for its slowest sends before it is committed without them
SLOW_S = 0.5  # a push service whose answers take this long (moving average) is slow: batches don't wait for it
MAX_DETACHED = 2048  # slow sends a worker holds beyond its batches (each is a coroutine waiting its turn)
STORM_THRESHOLD = 100  # api-v1.md: the breaker trips above 100 gone answers that are over half of all
AUTH_STOP_AFTER = 20  # 401/403 answers from one push service before it is stopped
AUTH_STOP_S = 600
MIN_PAUSE_S = 1.0  # a 429 with `Retry-After: 0` (or a date just past) still pauses the host this long


def now_ms() -> int:
    return int(time.time() * 1000)


def raise_if_cancelled() -> None:
    """Raise the cancellation the current task was sent if something below swallowed it.

    On Python 3.11, `asyncio.wait_for` returns the awaited result instead of raising when a cancellation
    arrives just as that result does (fixed in 3.12), and redis-py wraps every command's write in it: a loop
    that makes Redis calls can be cancelled and go on running. `Task.cancelling()` still counts the request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass
class BatchResult:
    targeted: int = 0
    sent: int = 0
    gone: int = 0
    failed: int = 0
    retries: list[tuple[int, str]] = field(default_factory=list)
    reason: str = ""  # the last reason a send failed, kept on the alert for operators
    detached: list = field(default_factory=list)  # (lease member, subscription, send) still in flight
    counters: Counters = field(default_factory=Counters)  # committed with the batch (or the retries)


# KEYS: pauses. ARGV: origin, until ms. A pause only ever grows (a 1 s 429 never shortens another worker's
# 600 s stop); returns the pause now in force.
PAUSE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if current >= tonumber(ARGV[2]) then return current end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return tonumber(ARGV[2])
"""

# KEYS: pauses. ARGV: now ms, origins. Drops the pauses that are over, and only those (not one set meanwhile).
DROP_EXPIRED = """
for i = 2, #ARGV do
  local until_ms = redis.call('HGET', KEYS[1], ARGV[i])
  if until_ms and tonumber(until_ms) <= tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
"""


def _retry_outcomes(members: list[str], words: list[str], result: BatchResult) -> list[tuple[str, str, str]]:
    """What `finish_retries` records for leased members, from `settle`'s words: retries carry their next
    (due, member), which `settle` appended to `result.retries` in the same order."""
    following = iter(result.retries)
    outcomes = []
    for member, word in zip(members, words):
        if word == "retry":
            due, next_member = next(following)
            outcomes.append((member, "retry", f"{due} {next_member}"))
        else:
            outcomes.append((member, "failed" if word == "expired" else word, ""))
    return outcomes


def _outcome_of(send: asyncio.Future) -> Outcome:
    if send.cancelled():
        return transient("cancelled")
    error = send.exception()
    if error is not None:
        log.warning("a send raised %r", error)
        return transient(error.__class__.__name__)
    return send.result()


class HostStates:
    """Which push services asked us to wait, until when: shared through Redis, refreshed once a second.

    Looking it up is a dict read on the hot path; `refresh()` runs beside the sends, so what it read must be
    merged with pauses set here while it was reading, never replace them.
    """

    def __init__(self, store: Store):
        self.store = store
        self._until: dict[str, int] = {}  # origin → paused until (ms)

    def paused_until(self, origin: str) -> int:
        return self._until.get(origin, 0)

    async def refresh(self) -> None:
        raw = await self.store.redis.hgetall(self.store.keys.pauses)
        now = now_ms()
        current, expired = {}, []
        for origin, until in raw.items():
            origin = origin.decode() if isinstance(origin, bytes) else origin
            if int(until) > now:
                current[origin] = int(until)
            else:
                expired.append(origin)
        for origin, until in self._until.items():  # set by pause() after the read above was sent
            if until > now and until > current.get(origin, 0):
                current[origin] = until
        self._until = current
        if expired:
            await self.store.script(DROP_EXPIRED)(keys=[self.store.keys.pauses], args=[now, *expired])

    async def pause(self, origin: str, seconds: float) -> int:
        until = now_ms() + int(seconds * 1000)
        if self._until.get(origin, 0) >= until:
            return self._until[origin]
        self._until[origin] = until
        until = int(await self.store.script(PAUSE)(keys=[self.store.keys.pauses], args=[origin, until]))
        self._until[origin] = max(self._until.get(origin, 0), until)
        log.warning("push service %s paused for %.0f s", service_host(origin), (until - now_ms()) / 1000)
        return until


class Worker:
    def __init__(self, settings: Settings, store: Store, transport: Transport, vapid: Vapid, *,
                 name: str | None = None, burst: bool = False):
        self.settings = settings
        self.store = store
        self.alerts = AlertStore(store)
        self.subs = SubscriptionStore(store)
        self.transport = transport
        self.vapid = vapid
        self.policy = HostPolicy(tuple(settings.push_allowed_hosts), settings.push_allow_insecure)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.burst = burst
        self.hosts = HostStates(store)
        self.in_flight = asyncio.Semaphore(settings.worker_concurrency)
        self.task_slots = asyncio.Semaphore(PARALLEL_TASKS)
        self._working: set[str] = set()  # stream ids of the tasks this worker holds
        self._alert_cache: dict[str, tuple[float, AlertRecord]] = {}
        self._origins: dict[str, bool] = {}  # push-service origin → still allowed by the policy
        self._origin_slots: dict[str, asyncio.Semaphore] = {}
        self.detached_count = 0
        self._latency: dict[str, float] = {}  # push-service origin → moving average of answer time (s)
        self.auth_failures: dict[str, int] = {}
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # ----- the main loop --------------------------------------------------------------------------

    async def run(self) -> None:
        await self._until_redis(self.alerts.ensure_group)
        background = [asyncio.create_task(self._every(HEARTBEAT_S, self._heartbeat)),
                      asyncio.create_task(self._every(HEARTBEAT_S, self._claim_stale)),
                      asyncio.create_task(self._every(RETRY_POLL_S, self._process_retries)),
                      asyncio.create_task(self._every(1.0, self.hosts.refresh))]
        log.info("worker %s started", self.name)
        try:
            await self._read_tasks()
        finally:
            self._stopping.set()  # the loops end by themselves even where a cancellation goes missing
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)
            log.info("worker %s stopped", self.name)

    def stop(self) -> None:
        self._stopping.set()

    async def _read_tasks(self) -> None:
        delay = 0.1
        idle_rounds = 0
        while not self._stopping.is_set():
            raise_if_cancelled()
            await self.task_slots.acquire()
            try:
                entries = await self.store.redis.xreadgroup(
                    GROUP, self.name, {self.store.keys.tasks: ">"}, count=1, block=500 if not self.burst else 100
                )
                delay = 0.1
            except (RedisError, OSError) as exc:
                self.task_slots.release()
                log.warning("reading tasks: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not entries:
                self.task_slots.release()
                if self.burst:
                    idle_rounds += 1
                    if idle_rounds >= 3 and await self._drained():
                        return
                continue
            idle_rounds = 0
            for _stream, messages in entries:
                for entry_id, fields in messages:
                    self._spawn(self._process_task_entry(entry_id, fields))

    async def _drained(self) -> bool:
        """Burst mode: nothing left for any worker (no tasks held, pending or waiting; no retries)."""
        if self._tasks:
            return False
        info = await self.store.redis.xpending(self.store.keys.tasks, GROUP)
        return int(info["pending"]) == 0 and await self.alerts.retry_depth() == 0

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, seconds: float, step) -> None:
        while not self._stopping.is_set():
            try:
                await step()
            except (RedisError, OSError) as exc:
                log.warning("%s: %s", step.__name__, exc)
            except Exception:
                log.exception("%s failed", step.__name__)
            raise_if_cancelled()
            await asyncio.sleep(seconds)

    async def _until_redis(self, step) -> None:
        delay = 0.1
        while True:
            try:
                return await step()
            except (RedisError, OSError) as exc:
                log.warning("waiting for Redis: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _heartbeat(self) -> None:
        """Touch the tasks we hold, so that no one takes them over while we work on them."""
        if self._working:
            await self.store.redis.xclaim(self.store.keys.tasks, GROUP, self.name, min_idle_time=0,
                                          message_ids=list(self._working), justid=True)

    async def _claim_stale(self) -> None:
        """Take over tasks held by a worker that stopped touching them (it died).

        Also when every slot is busy: a busy worker would otherwise leave a dead one's tasks waiting until
        its whole backlog is read. Claimed tasks are heartbeated while they wait for the next free slot.
        """
        _next, claimed, *_ = await self.store.redis.xautoclaim(
            self.store.keys.tasks, GROUP, self.name, min_idle_time=CLAIM_IDLE_MS, start_id="0-0",
            count=PARALLEL_TASKS,
        )
        claimed = [(entry_id, fields) for entry_id, fields in claimed if fields is not None]
        for entry_id, _fields in claimed:
            self._working.add(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
        for entry_id, fields in claimed:
            await self.task_slots.acquire()
            log.info("took over task %s", entry_id)
            self._spawn(self._process_task_entry(entry_id, fields))

    # ----- one task: an alert on one shard -----------------------------------------------------------

    async def _process_task_entry(self, entry_id, fields) -> None:
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        self._working.add(entry_id)
        try:
            alert_id = fields[b"a"].decode()
            shard = int(fields[b"s"])
            finished = await self.process_task(alert_id, shard)
            if finished:
                pipe = self.store.redis.pipeline(transaction=False)
                pipe.xack(self.store.keys.tasks, GROUP, entry_id)
                pipe.xdel(self.store.keys.tasks, entry_id)
                await pipe.execute()
            elif self._stopping.is_set():
                # Stopping with the shard half done (its batches so far committed, the cursor saved): hand
                # the rest back as a new task that any worker reads at once, instead of leaving it pending
                # for CLAIM_IDLE_MS. One transaction, so the task is neither lost nor held twice.
                pipe = self.store.redis.pipeline(transaction=True)
                pipe.xadd(self.store.keys.tasks, {"a": alert_id, "s": shard})
                pipe.xack(self.store.keys.tasks, GROUP, entry_id)
                pipe.xdel(self.store.keys.tasks, entry_id)
                await pipe.execute()
                log.info("task %s (alert %s, shard %d) handed back", entry_id, alert_id, shard)
        except (RedisError, OSError) as exc:
            log.warning("task %s left for later: %s", entry_id, exc)
        except Exception:
            log.exception("task %s failed; it stays pending", entry_id)
        finally:
            self._working.discard(entry_id)
            self.task_slots.release()

    async def process_task(self, alert_id: str, shard: int) -> bool:
        """Send one alert to one shard; True when the task is over (done, or nothing to do)."""
        status, cursor, shard_done = await self.alerts.begin(alert_id, shard, now_ms())
        if status is None or shard_done or status in ("done", "cancelled", "failed", "scheduled"):
            return True
        alert = await self._alert(alert_id)
        cursor = cursor or 0
        seen: set[str] = set()
        # A shard's first batch is small: a batch goes out only once all of it is encrypted, and the first
        # pushes of a broadcast should not wait for four whole batches per worker.
        size = FIRST_BATCH if cursor == 0 else BATCH
        while True:
            next_cursor, items = await self.subs.scan_shard(shard, cursor, size)
            size = BATCH
            result = await self.send_batch(alert, items, seen)
            final = next_cursor == 0
            await self.alerts.commit_batch(alert_id, shard, next_cursor, final, result.targeted, result.sent,
                                           result.gone, result.failed, result.retries, now_ms(), result.reason,
                                           result.counters)
            if result.detached:
                self._spawn(self._finish_detached(alert, result.detached))
            if final:
                return True
            if self._stopping.is_set():
                return False  # committed so far; the rest stays pending for another worker
            cursor = next_cursor

    async def _alert(self, alert_id: str) -> AlertRecord:
        cached = self._alert_cache.get(alert_id)
        if cached is not None and time.monotonic() - cached[0] < ALERT_CACHE_S:
            return cached[1]
        record = await self.alerts.get(alert_id)
        if record is None:
            raise LookupError(f"alert {alert_id} vanished")
        self._alert_cache[alert_id] = (time.monotonic(), record)
        if len(self._alert_cache) > 256:
            oldest = min(self._alert_cache, key=lambda k: self._alert_cache[k][0])
            self._alert_cache.pop(oldest, None)
        return record

    @staticmethod
    def targets(alert: AlertRecord, sub: Subscription) -> bool:
        topic = alert.raw.get("topic")
        if topic and sub.topics and topic not in sub.topics:
            return False
        lang = alert.raw.get("lang")
        if lang and sub.lang and sub.lang != lang:
            return False
        return True

    async def send_batch(self, alert: AlertRecord, items, seen: set[str]) -> BatchResult:
        result = BatchResult()
        chosen: list[Subscription] = []
        for sub_id, raw in items:
            if sub_id in seen:
                continue  # HSCAN may return an entry twice while the hash is rehashed
            seen.add(sub_id)
            try:
                sub = decode(sub_id, raw)
            except CorruptRecord as exc:
                log.warning("%s", exc)
                result.targeted += 1
                result.failed += 1
                result.reason = "corrupt subscription record"
                continue
            if self.targets(alert, sub):
                chosen.append(sub)
        result.targeted += len(chosen)
        if chosen:
            sends = self.start_sends(alert, chosen)
            # The batch waits for the sends to push services that answer quickly; those to a service seen to
            # be slow are not waited for at all. Bounded: past MAX_DETACHED slow sends held, a batch waits
            # for all of its own (back-pressure).
            if self.detached_count < MAX_DETACHED:
                quick = [send for sub, send in zip(chosen, sends) if self._latency.get(sub.origin, 0.0) < SLOW_S]
                if quick:
                    await asyncio.wait(quick, timeout=BATCH_PATIENCE_S)
            else:
                await asyncio.wait(sends)
            done = {send for send in sends if send.done()}
            finished = [(sub, 0, _outcome_of(send)) for sub, send in zip(chosen, sends) if send in done]
            await self.settle(alert, finished, result)
            # A slow push service must not hold back the batch (and every other service in it): its sends
            # go on, under a lease in the retry set committed with the batch; `_finish_detached` records
            # them when they answer, and if this worker dies the lease runs out and another sends them.
            lease = now_ms() + RETRY_LEASE_MS
            for sub, send in zip(chosen, sends):
                if send not in done:
                    member = retry_member(alert.id, sub.id, 0)
                    result.retries.append((lease, member))
                    result.detached.append((member, sub, send))
            self.detached_count += len(result.detached)
        return result

    async def _finish_detached(self, alert: AlertRecord, detached) -> None:
        """Record the sends a batch did not wait for, once they answer (the batch is committed by now).
        Should this fail, their leases run out and the retry poller sends them again: nothing is lost."""
        try:
            await self._record_detached(alert, detached)
        except (RedisError, OSError) as exc:
            log.warning("alert %s: recording %d slow sends: %s (their leases will bring them back)",
                        alert.id, len(detached), exc)
        finally:
            self.detached_count -= len(detached)

    async def _record_detached(self, alert: AlertRecord, detached) -> None:
        await asyncio.wait([send for _, _, send in detached])
        result = BatchResult()
        attempts = [(sub, 0, _outcome_of(send)) for _, sub, send in detached]
        words = await self.settle(alert, attempts, result)
        outcomes = _retry_outcomes([member for member, _, _ in detached], words, result)
        await self.alerts.finish_retries(alert.id, outcomes, now_ms(), result.reason, result.counters)

    async def settle(self, alert: AlertRecord, attempts: list[tuple[Subscription, int, Outcome]],
                     result: BatchResult) -> list[str]:
        """Turn outcomes into counts, deletions, pauses and retries; one word per attempt, in order. The
        counters go into `result.counters`, for the caller's commit to write."""
        words: list[str] = []
        gone_by_origin: dict[str, list[Subscription]] = {}
        answers_by_origin: dict[str, int] = {}
        for sub, _attempt, outcome in attempts:
            if outcome.status is not None:
                answers_by_origin[sub.origin] = answers_by_origin.get(sub.origin, 0) + 1
            if outcome.action is Action.GONE:
                gone_by_origin.setdefault(sub.origin, []).append(sub)
        tripped: set[str] = set()
        # Every origin that answered is counted, with or without gone answers in this batch: the breaker
        # compares gone answers with all of that origin's answers in the broadcast. Answers without a gone
        # one among them cannot trip it: their count rides in the commit instead of a round trip of its own.
        for origin in answers_by_origin.keys() | gone_by_origin.keys():
            if origin not in gone_by_origin:
                name = f"ans:{origin}"
                result.counters.alert[name] = result.counters.alert.get(name, 0) + answers_by_origin[origin]
                continue
            breaker = await self.alerts.tally_gone(alert.id, origin, answers_by_origin.get(origin, 0),
                                                   len(gone_by_origin.get(origin, ())), STORM_THRESHOLD)
            if breaker:
                tripped.add(origin)
            if breaker == 2:  # one alarm when it trips, not one per batch after
                await self.alarm("storm_breaker", f"alert {alert.id}: {service_host(origin)} answered 404/410 for "
                                 "most subscriptions; deletions stopped for this broadcast")
        deletions = [sub.id for subs in gone_by_origin.values() for sub in subs if sub.origin not in tripped]
        if deletions:
            await self.subs.delete_many(deletions)
        for sub, attempt, outcome in attempts:
            words.append(await self._tally(alert, sub, attempt, outcome, result, sub.origin in tripped))
        self._count_metrics(attempts, words, result.counters)
        return words

    async def _tally(self, alert: AlertRecord, sub: Subscription, attempt: int, outcome: Outcome,
                     result: BatchResult, breaker_tripped: bool) -> str:
        action = outcome.action
        if action is Action.SENT:
            self.auth_failures.pop(sub.origin, None)
            result.sent += 1
            return "sent"
        if action is Action.GONE:
            if breaker_tripped:
                result.failed += 1
                result.reason = "404/410 storm: not deleted"
                return "failed"
            result.gone += 1
            return "gone"
        if action is Action.AUTH:
            failures = self.auth_failures[sub.origin] = self.auth_failures.get(sub.origin, 0) + 1
            if failures == AUTH_STOP_AFTER:
                await self.hosts.pause(sub.origin, AUTH_STOP_S)
                await self.alarm("vapid_refused", f"{service_host(sub.origin)} refused our VAPID token "
                                 f"{failures} times ({outcome.status}); stopped for {AUTH_STOP_S} s. Check "
                                 "VAPID_PRIVATE_KEY_FILE, VAPID_SUBJECT and the clock")
        if action is Action.TOO_LARGE:
            await self.alarm("payload_too_large", f"alert {alert.id}: {service_host(sub.origin)} answered 413")
        retryable = action in (Action.RETRY, Action.THROTTLED, Action.AUTH)
        # Held back because the host is paused: no request was made, so it is not an attempt (only the TTL
        # bounds how long a message waits for its host).
        deferred = outcome.status is None and outcome.retry_after_s is not None
        if not retryable or (not deferred and attempt + 1 >= self.settings.push_max_attempts):
            result.failed += 1
            result.reason = outcome.reason or action.value
            return "expired" if outcome.reason == "expired" else "failed"
        if action is Action.THROTTLED:
            wait_s = DEFAULT_RETRY_AFTER_S if outcome.retry_after_s is None else outcome.retry_after_s
            due = await self.hosts.pause(sub.origin, max(wait_s, MIN_PAUSE_S))  # `Retry-After: 0` is not 60 s
        elif deferred:
            due = now_ms() + int(outcome.retry_after_s * 1000)  # the host is paused: come back when it is not
        else:
            due = now_ms() + int(backoff_s(attempt) * 1000)
        if due >= alert.expires_ms - 1000:
            result.failed += 1
            result.reason = f"TTL ran out while retrying ({outcome.reason})"
            return "expired"
        result.retries.append((due, retry_member(alert.id, sub.id, attempt if deferred else attempt + 1)))
        return "retry"

    async def alarm(self, kind: str, message: str) -> None:
        log.error("ALARM %s: %s", kind, message)
        try:
            await self.store.redis.hincrby(self.store.keys.alarms, kind, 1)
        except (RedisError, OSError):
            pass

    @staticmethod
    def _count_metrics(attempts, words, counters: Counters) -> None:
        """Per push service: for the global counters (metrics) and the alert's own (its results page)."""
        for (sub, _attempt, _outcome), word in zip(attempts, words):
            name = f"{service_host(sub.origin)} {'retried' if word == 'retry' else word}"
            counters.push[name] = counters.push.get(name, 0) + 1
            field_name = f"svc:{name}"
            counters.alert[field_name] = counters.alert.get(field_name, 0) + 1

    def _allowed_origin(self, origin: str) -> bool:
        allowed = self._origins.get(origin)
        if allowed is None:
            try:
                check_endpoint(origin_url(origin) + "/", self.policy)
                allowed = True
            except InvalidInput:
                allowed = False
            self._origins[origin] = allowed
        return allowed

    def start_sends(self, alert: AlertRecord, subs: list[Subscription]) -> list[asyncio.Future]:
        """Encrypt every message of a batch first, then let them all go out: their writes leave together
        (the push service's host wakes once for the lot, and each kind of work stays hot in the CPU's
        caches), which measured a quarter less CPU a message than encrypting each just before its write.
        One future per subscription, in order, each resolving to its `Outcome`."""
        loop = asyncio.get_running_loop()
        sends: list[asyncio.Future] = []
        for sub in subs:
            prepared = self._encrypt(alert, sub)
            if isinstance(prepared, Outcome):
                done = loop.create_future()
                done.set_result(prepared)
                sends.append(done)
            else:
                sends.append(loop.create_task(self._post(alert, sub, prepared)))
        return sends

    def _encrypt(self, alert: AlertRecord, sub: Subscription) -> bytes | Outcome:
        """The message's encrypted body, or the outcome that says why it is not sent."""
        if alert.expires_ms - now_ms() < 1000:
            return Outcome(Action.REJECTED, None, "expired")
        paused = self.hosts.paused_until(sub.origin)
        if paused > now_ms():
            return Outcome(Action.RETRY, None, "host paused", (paused - now_ms()) / 1000)
        # Again at send time, per push service: the allow-list may have changed since the reader subscribed.
        if not self._allowed_origin(sub.origin):
            return Outcome(Action.REJECTED, None, "push service no longer allowed")
        try:
            return encrypt(alert.payload, sub.p256dh, sub.auth)
        except (ValueError, KeyError, TypeError) as exc:  # a damaged key or alert record: refused, never a
            return Outcome(Action.REJECTED, None, f"cannot build the push: {exc}")  # task that raises for ever

    async def _post(self, alert: AlertRecord, sub: Subscription, body: bytes) -> Outcome:
        slots = self._origin_slots.get(sub.origin)
        if slots is None:
            slots = self._origin_slots[sub.origin] = asyncio.Semaphore(self.settings.push_per_host_connections)
        # The push service's own cap first: sends queued for a slow service must not hold the worker's
        # in-flight slots that every other service needs.
        async with slots, self.in_flight:
            ttl_ms = alert.expires_ms - now_ms()  # the TTL left now, after any wait for a slot
            if ttl_ms < 1000:
                return Outcome(Action.REJECTED, None, "expired")
            try:
                headers = push_headers(ttl_s=ttl_ms // 1000, urgency=alert.raw.get("urgency", "high"),
                                       topic=alert.topic_header,
                                       authorization=self.vapid.header(sub.audience))
            except (ValueError, KeyError, TypeError) as exc:  # a damaged alert record
                return Outcome(Action.REJECTED, None, f"cannot build the push: {exc}")
            started = time.monotonic()
            outcome = await self.transport.send(PushRequest(sub.endpoint, headers, body))
            took = time.monotonic() - started
            self._latency[sub.origin] = 0.8 * self._latency.get(sub.origin, took) + 0.2 * took
            return outcome

    # ----- retries ------------------------------------------------------------------------------------

    async def _process_retries(self) -> None:
        # Round after round while rounds come back full: when a pause ends, a whole host's share of a
        # broadcast can be due at once, and one round per RETRY_POLL_S would make it wait many seconds.
        limit = self.settings.worker_concurrency
        while True:
            members = await self.alerts.take_retries(now_ms(), limit)
            if not members:
                return
            by_alert: dict[str, list[tuple[str, str, int]]] = {}
            for member in members:
                alert_id, sub_id, attempt = parse_retry_member(member)
                by_alert.setdefault(alert_id, []).append((member, sub_id, attempt))
            await asyncio.gather(*(self._retry_alert(alert_id, items) for alert_id, items in by_alert.items()))
            if len(members) < limit or self._stopping.is_set():
                return

    async def _retry_alert(self, alert_id: str, items: list[tuple[str, str, int]]) -> None:
        record = await self.alerts.get(alert_id)
        if record is None or record.status == "cancelled":
            if record is not None:
                await self.alerts.finish_retries(alert_id, [(m, "failed", "") for m, _, _ in items], now_ms(),
                                                 "cancelled")
            return
        self._alert_cache[alert_id] = (time.monotonic(), record)
        outcomes: list[tuple[str, str, str]] = []
        live: list[tuple[str, Subscription, int]] = []
        subs = await self.subs.get_many([sub_id for _, sub_id, _ in items])
        for (member, sub_id, attempt), sub in zip(items, subs):
            if isinstance(sub, Subscription):
                live.append((member, sub, attempt))
            else:  # unsubscribed meanwhile, or the record is unreadable
                outcomes.append((member, "failed", ""))
        result = BatchResult()
        if live:
            answers = await asyncio.gather(*self.start_sends(record, [sub for _, sub, _ in live]))
            attempts = [(sub, attempt, outcome) for (_, sub, attempt), outcome in zip(live, answers)]
            words = await self.settle(record, attempts, result)
            outcomes += _retry_outcomes([member for member, _, _ in live], words, result)
        await self.alerts.finish_retries(alert_id, outcomes, now_ms(), result.reason, result.counters)
