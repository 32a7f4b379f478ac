"""Faults (test-plan.md, "Faults" F1–F15): nothing accepted is ever lost; nothing is sent twice to a
subscriber beyond the in-flight window.

Every test asserts, per subscriber, how many messages the fake push service accepted for the alert and
that each one decrypts to that alert (`fake.messages_for(sub)`).

- Most rows run the real `Worker` (workers/delivery.py) in this process against one or two fake push
  services (two ports of 127.0.0.1 = two push services), on the machine's Redis under the test's prefix.
- The rows about crashes and restarts use a real `redis-server` that the test starts and kills
  (`EmbeddedRedis`, AOF on, in tmp_path) and real `nabaa worker` processes (F1, F2, graceful shutdown,
  the soak).
- F12 (a listed name that resolves to a private address at send time) is covered in tests/test_hostile.py
  (`test_f12_*`), with a resolver table, so it is not repeated here.

The numbers the operators care about (takeover time after a crash, re-sends, soak throughput) are printed
(`pytest -s` shows them) and carried in the assertion messages.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from pathlib import Path

import pytest
import redis as sync_redis

from core import outcomes
from core.alerts import AlertStore
from core.keys import GROUP, SHARDS, Keys
from core.models import SubscriptionIn, to_subscription
from core.store import Store
from core.subscriptions import SubscriptionStore
from core.validation import HostPolicy
from nabaa.embedded_redis import EmbeddedRedis
from tests.conftest import EDITOR_TOKEN, api_client, auth, drain
from tests.fakepush import FakePushService, Subscriber
from workers import delivery
from workers.scheduler import Scheduler

REPO = Path(__file__).resolve().parent.parent
IN_FLIGHT_WINDOW = 256  # api-v1.md: re-sends caused by a crash are bounded by this, per worker
TAKEOVER_BOUND_S = 30.0  # api-v1.md: a dead worker's work is taken over within 30 s


def report(line: str) -> None:
    print(f"\n[faults] {line}", flush=True)


# ----------------------------------------------------------------------------------------------- helpers


async def open_store(settings) -> Store:
    return await Store.open(settings.redis_url, settings.redis_prefix)


async def add_subscribers(settings, fake: FakePushService, n: int, *, topics=(), host_alias=None) -> list[Subscriber]:
    """n readers of `fake`, stored as the API stores them (validated by the same rules), concurrently."""
    policy = HostPolicy(tuple(settings.push_allowed_hosts), settings.push_allow_insecure)
    readers = [fake.new_subscriber(host_alias) for _ in range(n)]
    store = await open_store(settings)
    subs = SubscriptionStore(store)
    try:
        for start in range(0, n, 200):
            chunk = readers[start:start + 200]
            await asyncio.gather(*(subs.upsert(to_subscription(
                SubscriptionIn(**r.subscription_json(), topics=list(topics)), policy, settings.topic_ids))
                for r in chunk))
    finally:
        await store.close()
    return readers


async def post_alert(settings, title: str = "عاجل", **body) -> str:
    async with api_client(settings) as client:
        answer = await client.post("/api/v1/alerts", headers=auth(), json={"title": title, **body})
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]


async def alert_record(settings, alert_id: str):
    store = await open_store(settings)
    try:
        return await AlertStore(store).get(alert_id)
    finally:
        await store.close()


async def subscription_count(settings) -> int:
    store = await open_store(settings)
    try:
        return (await SubscriptionStore(store).counters()).get("all", 0)
    finally:
        await store.close()


async def redis_hash(settings, key: str) -> dict[str, str]:
    store = await open_store(settings)
    try:
        raw = await store.redis.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()}
    finally:
        await store.close()


def messages(fake: FakePushService, sub: Subscriber, alert_id: str) -> list[dict]:
    """The accepted, decrypted messages of one alert for one subscriber."""
    return [m for m in fake.messages_for(sub) if isinstance(m, dict) and m.get("tag") == alert_id]


def accepted_records(fake: FakePushService, sub: Subscriber, alert_id: str):
    return [r for r in fake.records_for(sub)
            if r.accepted and isinstance(r.payload, dict) and r.payload.get("tag") == alert_id]


def assert_each_got(fake: FakePushService, readers, alert_id: str, title: str, count: int = 1) -> None:
    """Every reader got exactly `count` accepted messages of the alert, each decrypting to it."""
    wrong = {}
    for reader in readers:
        got = messages(fake, reader, alert_id)
        if len(got) != count or any(m["title"] != title or m["id"] != alert_id for m in got):
            wrong[reader.token[:8]] = [m.get("title") for m in got]
    assert not wrong, f"{len(wrong)} of {len(readers)} readers did not get the alert exactly {count}×: " \
                      f"{dict(list(wrong.items())[:5])}"


def assert_counts_consistent(record, **expected) -> dict:
    counts = record.public()["counts"]
    assert counts["sent"] + counts["gone"] + counts["failed"] == counts["targeted"], counts
    for name, value in expected.items():
        assert counts[name] == value, (name, counts)
    return counts


def two_hosts(make_settings, a: FakePushService, b: FakePushService, **overrides):
    return make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], **overrides)


@pytest.fixture
def fast_backoff(monkeypatch):
    """The real `backoff_s` (full jitter, capped exponential) with a base of 0.2 s instead of 1 s, so retries
    come back within the test's time; every delay drawn is recorded as (attempt, seconds)."""
    drawn: list[tuple[int, float]] = []
    real = outcomes.backoff_s

    def backoff(attempt: int, base_s: float = 1.0, cap_s: float = 300.0, rng=None) -> float:
        value = real(attempt, base_s=0.2, cap_s=cap_s, rng=rng)
        drawn.append((attempt, value))
        return value

    monkeypatch.setattr(delivery, "backoff_s", backoff)
    return drawn


# ----------------------------------------------------------------------------------------------- F4


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_f4_429_pauses_that_host_only_until_retry_after(make_settings, form):
    """The first request to host A is answered 429 with Retry-After (3 s, or an HTTP-date about 3 s ahead).
    No request reaches A again before that time (beyond the few already on the wire), B is unaffected,
    and A's readers get the alert later, within its TTL, once each."""
    async with FakePushService() as a, FakePushService() as b:
        settings = two_hosts(make_settings, a, b)
        readers_a = await add_subscribers(settings, a, 40)
        readers_b = await add_subscribers(settings, b, 40)
        throttled: dict = {}

        def first_429(record):
            if throttled:
                return 201
            if form == "seconds":
                until, value = time.time() + 3, "3"
            else:
                until = float(int(time.time()) + 3)  # HTTP-dates have whole seconds
                value = formatdate(until, usegmt=True)
            throttled.update(record=record, until=until, value=value)
            return (429, {"Retry-After": value})

        a.default = first_429
        alert_id = await post_alert(settings, "F4 throttled")
        await drain(settings)
        record = await alert_record(settings, alert_id)

    assert throttled, "host A was never asked"
    answered = throttled["record"].answered_at  # monotonic, the fake's clock = ours
    until_wall = throttled["until"]
    on_the_wire = [r for r in a.received if answered < r.monotonic < answered + 0.25]
    early = [r for r in a.received if r.monotonic >= answered + 0.25 and r.time < until_wall - 0.05]
    late = [r for r in a.received if r.time >= until_wall - 0.05]
    report(f"F4 ({form}, Retry-After: {throttled['value']}): {len(on_the_wire)} requests to A were already on "
           f"the wire, {len(early)} sent before the time, {len(late)} after it")
    assert not early, [(round(r.time - until_wall, 3)) for r in early]
    assert len(on_the_wire) <= 2 * delivery.PARALLEL_TASKS  # only what had been sent before the answer
    assert late, "A's readers were never retried"
    assert_each_got(a, readers_a, alert_id, "F4 throttled")
    assert_each_got(b, readers_b, alert_id, "F4 throttled")
    # B was not held back: all of it went out before A's pause was over.
    assert max(r.time for r in b.received) < until_wall - 1.0
    # Delivered later, within the TTL: the TTL header says what was left of the alert's 86400 s.
    assert all(0 < r.ttl <= 86400 for r in late)
    assert len(a.records_for(throttled["record"].subscriber)) == 2  # the 429, then the delivery
    assert record.status == "done"
    assert_counts_consistent(record, targeted=80, sent=80, failed=0, gone=0)
    assert not a.errors and not b.errors


@pytest.mark.parametrize("value", ["0", "past-date"])
async def test_f4_retry_after_zero_or_in_the_past_does_not_stop_the_host_for_a_minute(make_settings, value):
    """`Retry-After: 0`, or an HTTP-date that has just passed (dates have whole seconds, clocks differ), means
    "try again now": the host is retried within seconds, not after the 60 s default."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 10)
        header = "0" if value == "0" else formatdate(time.time() - 2, usegmt=True)
        a.script_host("127.0.0.1", [(429, {"Retry-After": header})])
        alert_id = await post_alert(settings, "F4 zero")
        started = time.monotonic()
        await drain(settings, timeout_s=20)
        took = time.monotonic() - started
    assert_each_got(a, readers, alert_id, "F4 zero")
    assert took < 10, f"a 429 with Retry-After {header!r} held the host back {took:.1f} s"


async def test_f4_a_long_throttle_does_not_use_up_attempts_of_messages_never_sent(make_settings):
    """A host that keeps throttling a large audience: each round only part of the waiting messages can be
    taken (WORKER_CONCURRENCY at a time) before the next 429 pauses the host again. Messages held back by
    the pause were never sent, so that must not count as an attempt: within the TTL they are all delivered,
    even with PUSH_MAX_ATTEMPTS=2."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"], push_max_attempts=2,
                                 worker_concurrency=32)
        readers = await add_subscribers(settings, a, 200)
        state = {"last": 0.0, "left": 3, "seen": set()}

        def throttle(record):  # one 429 a second, for 3 s, never twice to the same reader
            now = time.monotonic()
            if state["left"] and now - state["last"] >= 1.0 and record.token not in state["seen"]:
                state.update(last=now, left=state["left"] - 1)
                state["seen"].add(record.token)
                return (429, {"Retry-After": "1"})
            return 201

        a.default = throttle
        alert_id = await post_alert(settings, "F4 long throttle")
        await drain(settings, timeout_s=40)
        record = await alert_record(settings, alert_id)
    counts = record.public()["counts"]
    assert counts["failed"] == 0, f"messages given up while the host was only paused: {counts}"
    assert_each_got(a, readers, alert_id, "F4 long throttle")
    assert_counts_consistent(record, targeted=200, sent=200)


# ----------------------------------------------------------------------------------------------- F5


def test_f5_backoff_is_capped_exponential_with_full_jitter():
    rng = random.Random(7)
    for attempt in range(20):
        bound = min(300.0, 2.0 ** attempt)
        draws = [outcomes.backoff_s(attempt, rng=rng) for _ in range(400)]
        assert all(0 <= d <= bound for d in draws)
        # full jitter: spread over the whole range, not clustered at the top
        assert min(draws) < 0.1 * bound and max(draws) > 0.9 * bound and len(set(draws)) == len(draws)


async def test_f5_5xx_for_a_while_then_delivered_nothing_deleted(make_settings, fast_backoff):
    """Each reader of A is answered 500, 502, 503, then 201: three retries with back-off and jitter, then
    delivered once; B, beside it, once at the first try; no subscription is deleted."""
    async with FakePushService() as a, FakePushService() as b:
        settings = two_hosts(make_settings, a, b)
        readers_a = await add_subscribers(settings, a, 30)
        readers_b = await add_subscribers(settings, b, 30)
        for reader in readers_a:
            a.script(reader, [500, 502, 503])
        before = await subscription_count(settings)
        alert_id = await post_alert(settings, "F5 recovers")
        await drain(settings)
        record = await alert_record(settings, alert_id)
        after = await subscription_count(settings)
    assert before == after == 60
    assert_each_got(a, readers_a, alert_id, "F5 recovers")
    assert_each_got(b, readers_b, alert_id, "F5 recovers")
    for reader in readers_a:
        statuses = [r.status for r in a.records_for(reader)]
        assert statuses == [500, 502, 503, 201], statuses
        times = [r.monotonic for r in a.records_for(reader)]
        assert all(later > earlier for earlier, later in zip(times, times[1:]))
    assert all([r.status for r in b.records_for(reader)] == [201] for reader in readers_b)
    # The worker drew one back-off per 5xx: attempts 0, 1 and 2, each within [0, base·2^attempt] (the base
    # is 0.2 s here), all different (jitter).
    by_attempt = collections.defaultdict(list)
    for attempt, value in fast_backoff:
        by_attempt[attempt].append(value)
    assert sorted(by_attempt) == [0, 1, 2] and all(len(v) == 30 for v in by_attempt.values()), dict(by_attempt)
    for attempt, values in by_attempt.items():
        assert all(0 <= v <= 0.2 * 2 ** attempt for v in values)
        assert len(set(values)) == len(values)
    assert record.status == "done"
    assert_counts_consistent(record, targeted=60, sent=60, failed=0, gone=0)
    push = await redis_hash(settings, Keys(settings.redis_prefix).push_counters)
    assert int(push["127.0.0.1 retried"]) == 90


async def test_f5_5xx_past_the_ttl_is_counted_failed_never_sent_late(make_settings, fast_backoff):
    """A host answers 503 for ever; the alert's TTL (cut to 4 s in its stored record) runs out while
    retrying: every message ends failed, no request is made after the TTL, nothing is deleted, and the
    alert, none of whose sends succeeded, lands in the dead letters."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 10)
        a.default = 503
        alert_id = await post_alert(settings, "F5 expires")
        store = await open_store(settings)
        await store.redis.hset(store.keys.alert(alert_id), "ttl_s", 4)  # no worker has read it yet
        await store.close()
        record = await alert_record(settings, alert_id)
        await drain(settings)
        final = await alert_record(settings, alert_id)
        dead = [d for d in await dead_letters(settings) if d["alert"] == alert_id]
        remaining = await subscription_count(settings)
    expires_s = record.expires_ms / 1000
    assert all(r.time < expires_s for r in a.received), "a push was made after the TTL ran out"
    assert all(r.ttl <= 4 for r in a.received)
    per_reader = [len(a.records_for(reader)) for reader in readers]
    assert min(per_reader) >= 2, per_reader  # it was retried while there was time
    assert all(messages(a, reader, alert_id) == [] for reader in readers)
    assert final.status == "failed"
    assert_counts_consistent(final, targeted=10, sent=0, failed=10, gone=0)
    assert remaining == 10
    assert dead and ("TTL" in dead[0]["reason"] or "expired" in dead[0]["reason"]), dead


async def dead_letters(settings) -> list[dict]:
    store = await open_store(settings)
    try:
        return await AlertStore(store).dead_letters()
    finally:
        await store.close()


# ----------------------------------------------------------------------------------------------- F6, F7


async def sample(fake: FakePushService, stop: asyncio.Event, out: list) -> None:
    while not stop.is_set():
        out.append((time.monotonic(), fake.open_connections, fake.in_flight))
        await asyncio.sleep(0.02)


async def test_f6_a_host_that_never_answers_times_out_and_frees_its_slots(make_settings):
    """A's first request for each reader hangs (accepted, never answered). With a 1 s read timeout each one
    times out, is retried and delivered; B keeps flowing meanwhile; the worker's slots all come back and
    no connection is left open."""
    async with FakePushService() as a, FakePushService() as b:
        settings = two_hosts(make_settings, a, b, push_read_timeout_s=1.0, push_per_host_connections=8)
        readers_a = await add_subscribers(settings, a, 12)
        readers_b = await add_subscribers(settings, b, 300)
        for reader in readers_a:
            a.script(reader, ["hang"])
        stop, samples = asyncio.Event(), []
        sampler = asyncio.create_task(sample(a, stop, samples))
        alert_id = await post_alert(settings, "F6 hang")
        started = time.monotonic()
        worker = await drain(settings)
        took = time.monotonic() - started
        await asyncio.sleep(0.3)
        stop.set()
        await sampler
        record = await alert_record(settings, alert_id)
    hung = [r for r in a.received if r.status is None]
    assert len(hung) == 12
    first_hang = min(r.monotonic for r in hung)
    b_times = sorted(r.monotonic for r in b.received)
    during = [t for t in b_times if first_hang < t < first_hang + 1.0]
    report(f"F6: {len(hung)} hung requests; B got {len(during)} of its {len(b_times)} messages during the first "
           f"hang's second; broadcast took {took:.1f} s; A open connections peak "
           f"{max(s[1] for s in samples)}, now {a.open_connections}")
    assert_each_got(a, readers_a, alert_id, "F6 hang")
    assert_each_got(b, readers_b, alert_id, "F6 hang")
    assert all(len(a.records_for(reader)) == 2 for reader in readers_a)
    assert b_times[-1] - b_times[0] < 4.0  # B was never held back for long
    assert worker.in_flight._value == settings.worker_concurrency  # every slot came back
    assert max(s[1] for s in samples) <= settings.push_per_host_connections
    assert a.open_connections == 0 and b.open_connections == 0  # no socket left behind
    assert_counts_consistent(record, targeted=312, sent=312, failed=0)


async def test_f7_a_slow_host_stays_under_its_cap_and_does_not_hold_back_the_others(make_settings):
    """Two alerts to 24 readers on A and 600 on B: first with A quick, then with A answering after 1 s. With
    A slow, at most PUSH_PER_HOST_CONNECTIONS (4) requests are in flight to it, every reader still gets each
    alert once, and B is served about as fast as beside a quick A: batches stop waiting for A once it is
    seen to be slow, so B loses at most one batch-patience window (BATCH_PATIENCE_S) while that is learnt."""
    async with FakePushService() as a, FakePushService() as b:
        settings = two_hosts(make_settings, a, b, push_per_host_connections=4)
        readers_a = await add_subscribers(settings, a, 24)
        readers_b = await add_subscribers(settings, b, 600)

        async def broadcast(title: str):
            a.clear_received()
            b.clear_received()
            alert_id = await post_alert(settings, title)
            worker = await drain(settings)
            assert_each_got(a, readers_a, alert_id, title)
            assert_each_got(b, readers_b, alert_id, title)
            record = await alert_record(settings, alert_id)
            assert_counts_consistent(record, targeted=624, sent=624, failed=0)
            assert worker.in_flight._value == settings.worker_concurrency  # every slot came back
            a_times = sorted(r.monotonic for r in a.received)
            b_times = sorted(r.monotonic for r in b.received)
            return b_times[-1] - b_times[0], a_times[-1] - a_times[0]

        quick, _ = await broadcast("F7 quick")
        a.default = ("slow", 1.0)
        stop, samples = asyncio.Event(), []
        sampler = asyncio.create_task(sample(a, stop, samples))
        slow, a_span = await broadcast("F7 slow")
        stop.set()
        await sampler
    patience = getattr(delivery, "BATCH_PATIENCE_S", 2.0)
    report(f"F7: B's 600 messages took {quick:.2f} s beside a quick A, {slow:.2f} s beside A answering in 1 s; "
           f"A's 24 took {a_span + 1:.1f} s with at most {a.max_in_flight_by_host['127.0.0.1']} in flight (cap 4)")
    assert a.max_in_flight_by_host["127.0.0.1"] <= 4 and max(s[2] for s in samples) <= 4
    assert a_span + 1 >= 24 / 4 * 1.0 - 0.5  # the cap really held A to 4 at a time
    assert slow <= quick + patience + 1.0, f"B slowed from {quick:.2f} s to {slow:.2f} s by a slow host A"


# ----------------------------------------------------------------------------------------------- F8


async def test_f8_a_404_410_storm_trips_the_breaker_for_that_host_only(make_settings):
    """A answers 410 for all 150 of its readers (more than 100, more than half): deletions stop once the
    breaker trips, an alarm is raised, the rest are kept (counted failed). B, in the same broadcast, has 10
    of 60 readers gone: those are deleted, the other 50 kept and delivered."""
    async with FakePushService() as a, FakePushService() as b:
        settings = two_hosts(make_settings, a, b)
        readers_a = await add_subscribers(settings, a, 150)
        readers_b = await add_subscribers(settings, b, 60)
        a.default = 410
        gone_b, live_b = readers_b[:10], readers_b[10:]
        for reader in gone_b:
            b.script(reader, [], then=404)
        alert_id = await post_alert(settings, "F8 storm")
        await drain(settings)
        record = await alert_record(settings, alert_id)
        keys = Keys(settings.redis_prefix)
        alarms = await redis_hash(settings, keys.alarms)
        store = await open_store(settings)
        subs = SubscriptionStore(store)
        counters = await subs.counters()
        await store.close()
    kept_a = counters.get(f"h:http://127.0.0.1:{a.port}", 0)
    kept_b = counters.get(f"h:http://127.0.0.1:{b.port}", 0)
    counts = record.public()["counts"]
    report(f"F8: A kept {kept_a} of 150 after its storm (deleted {150 - kept_a}); B kept {kept_b} of 60; "
           f"counts {counts}; alarms {alarms}")
    assert int(alarms.get("storm_breaker", 0)) == 1  # one alarm for one storm, not one per batch
    assert 150 - kept_a <= delivery.STORM_THRESHOLD  # deletions stopped at the threshold
    assert kept_a >= 150 - delivery.STORM_THRESHOLD
    assert kept_b == 50  # B's gone ones deleted (B is below the threshold), B's live ones all kept
    assert all(len(a.records_for(reader)) == 1 for reader in readers_a)  # 410 is final: never retried
    assert all(messages(a, reader, alert_id) == [] for reader in readers_a)
    assert_each_got(b, live_b, alert_id, "F8 storm")
    assert all(messages(b, reader, alert_id) == [] for reader in gone_b)
    assert_counts_consistent(record, targeted=210, sent=50, gone=(150 - kept_a) + 10, failed=kept_a)
    assert "storm" in record.raw.get("last_error", "")


@pytest.mark.parametrize("gone, live", [(100, 0), (120, 280)])
async def test_f8_below_the_breaker_every_404_410_deletes(make_settings, gone, live):
    """100 gone answers (not more than 100), or 120 that are not more than half of the host's answers:
    the breaker does not trip and every one of them is deleted; no alarm."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, gone + live)
        dead, alive = readers[:gone], readers[gone:]
        for reader in dead:
            a.script(reader, [], then=410 if len(dead) % 2 else 404)
        alert_id = await post_alert(settings, "F8 below")
        await drain(settings)
        record = await alert_record(settings, alert_id)
        alarms = await redis_hash(settings, Keys(settings.redis_prefix).alarms)
        remaining = await subscription_count(settings)
    assert "storm_breaker" not in alarms
    assert remaining == live
    assert_each_got(a, alive, alert_id, "F8 below")
    assert_counts_consistent(record, targeted=gone + live, sent=live, gone=gone, failed=0)


async def test_f8_the_breaker_counts_all_of_a_hosts_answers_not_only_batches_with_gone_ones(make_settings,
                                                                                           monkeypatch):
    """A host with one reader in each of 40 shards (so at most one answer per batch), 11 of them gone:
    27 % of its answers, not more than half, so (threshold lowered to 10) nothing trips and all 11 are
    deleted. Counting only the batches that had a gone answer would see 11 of 11 and trip."""
    from core.records import shard_of, subscription_id

    monkeypatch.setattr(delivery, "STORM_THRESHOLD", 10)
    async with FakePushService() as a, FakePushService() as b:
        settings = two_hosts(make_settings, a, b)
        by_shard: dict[int, Subscriber] = {}
        while len(by_shard) < 40:
            candidate = a.new_subscriber()
            by_shard.setdefault(shard_of(subscription_id(candidate.endpoint)), candidate)
        readers_a = list(by_shard.values())
        policy = HostPolicy(tuple(settings.push_allowed_hosts), settings.push_allow_insecure)
        store = await open_store(settings)
        for reader in readers_a:
            await SubscriptionStore(store).upsert(to_subscription(
                SubscriptionIn(**reader.subscription_json()), policy, settings.topic_ids))
        await store.close()
        readers_b = await add_subscribers(settings, b, 100)
        for reader in readers_a[:11]:
            a.script(reader, [], then=410)
        alert_id = await post_alert(settings, "F8 sparse")
        await drain(settings)
        record = await alert_record(settings, alert_id)
        alarms = await redis_hash(settings, Keys(settings.redis_prefix).alarms)
        remaining = await subscription_count(settings)
    assert "storm_breaker" not in alarms, alarms
    assert remaining == 140 - 11
    assert_each_got(a, readers_a[11:], alert_id, "F8 sparse")
    assert_each_got(b, readers_b, alert_id, "F8 sparse")
    assert_counts_consistent(record, targeted=140, sent=129, gone=11, failed=0)


# ----------------------------------------------------------------------------------------------- F9, F10, F11


@pytest.mark.parametrize("status", [401, 403])
async def test_f9_vapid_refused_never_deletes_and_stops_the_host(make_settings, monkeypatch, fast_backoff, status):
    """A refuses our VAPID token for everyone. After AUTH_STOP_AFTER refusals (5 here) A is stopped, with an
    alarm; nothing is deleted; B is delivered. A's readers are counted failed once the TTL (60 s, the
    minimum) cannot outlast the stop."""
    monkeypatch.setattr(delivery, "AUTH_STOP_AFTER", 5)
    async with FakePushService() as a, FakePushService() as b:
        settings = two_hosts(make_settings, a, b)
        readers_a = await add_subscribers(settings, a, 30)
        readers_b = await add_subscribers(settings, b, 30)
        a.default = status
        alert_id = await post_alert(settings, "F9 refused", ttl_s=60)
        await drain(settings)
        record = await alert_record(settings, alert_id)
        keys = Keys(settings.redis_prefix)
        alarms = await redis_hash(settings, keys.alarms)
        pauses = await redis_hash(settings, keys.pauses)
        remaining = await subscription_count(settings)
    refusals = sorted(a.received, key=lambda r: r.answered_at)
    fifth = refusals[4].answered_at
    after_stop = [r for r in refusals if r.monotonic > fifth + 0.25]
    report(f"F9 ({status}): {len(refusals)} requests reached A before it was stopped "
           f"(AUTH_STOP_AFTER=5); {len(after_stop)} after; alarms {alarms}")
    assert remaining == 60  # never deleted
    assert int(alarms.get("vapid_refused", 0)) == 1
    assert int(pauses[f"http://127.0.0.1:{a.port}"]) > time.time() * 1000 + 500_000  # stopped for ~600 s
    assert len(refusals) <= 5 + 2 * delivery.PARALLEL_TASKS and not after_stop
    assert all(messages(a, reader, alert_id) == [] for reader in readers_a)
    assert_each_got(b, readers_b, alert_id, "F9 refused")
    assert_counts_consistent(record, targeted=60, sent=30, failed=30, gone=0)
    assert record.status == "done"


async def test_f10_413_is_not_retried_raises_an_alarm_and_the_rest_goes_on(make_settings):
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 40)
        too_large, fine = readers[:5], readers[5:]
        for reader in too_large:
            a.script(reader, [], then=413)
        alert_id = await post_alert(settings, "F10 large")
        await drain(settings)
        record = await alert_record(settings, alert_id)
        alarms = await redis_hash(settings, Keys(settings.redis_prefix).alarms)
        remaining = await subscription_count(settings)
    assert all(len(a.records_for(reader)) == 1 for reader in too_large)  # no retry
    assert all(messages(a, reader, alert_id) == [] for reader in too_large)
    assert_each_got(a, fine, alert_id, "F10 large")
    assert int(alarms.get("payload_too_large", 0)) == 5
    assert remaining == 40
    assert_counts_consistent(record, targeted=40, sent=35, failed=5, gone=0)
    assert "413" in record.raw.get("last_error", "") or "large" in record.raw.get("last_error", "")


async def test_f11_redirects_are_not_followed_in_a_broadcast(make_settings):
    """(tests/test_hostile.py checks each redirect status alone.) In a broadcast: the redirected readers get
    one request each, never retried, the redirect target sees nothing, the rest is delivered."""
    async with FakePushService() as a, FakePushService() as elsewhere:
        settings = two_hosts(make_settings, a, elsewhere)
        readers = await add_subscribers(settings, a, 20)
        target = elsewhere.new_subscriber()
        redirected = readers[:4]
        for reader, code in zip(redirected, (301, 302, 307, 308)):
            a.script(reader, [], then=(code, {"Location": target.endpoint}))
        alert_id = await post_alert(settings, "F11 redirect")
        await drain(settings)
        record = await alert_record(settings, alert_id)
        remaining = await subscription_count(settings)
    assert elsewhere.connections == 0 and elsewhere.count == 0
    assert [len(a.records_for(reader)) for reader in redirected] == [1, 1, 1, 1]
    assert_each_got(a, readers[4:], alert_id, "F11 redirect")
    assert remaining == 20
    assert_counts_consistent(record, targeted=20, sent=16, failed=4)


# ----------------------------------------------------------------------------------------------- F13


async def test_f13_double_click_send_is_one_alert_one_broadcast(make_settings):
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 20)
        body = {"title": "F13 once", "body": "نقرتان", "url": "/news/13"}
        headers = {**auth(), "Idempotency-Key": "send-13"}
        async with api_client(settings) as client:
            first, second = await asyncio.gather(
                client.post("/api/v1/alerts", headers=headers, json=body),
                client.post("/api/v1/alerts", headers=headers, json=body))
            third = await client.post("/api/v1/alerts", headers=headers, json=body)
            store = client.app.state.nabaa.store
            listed = (await client.get("/api/v1/alerts", headers=auth())).json()["alerts"]
            tasks = await store.redis.xlen(store.keys.tasks)
        assert first.status_code == second.status_code == third.status_code == 202, (first.text, second.text)
        alert_id = first.json()["id"]
        assert second.json()["id"] == third.json()["id"] == alert_id
        assert [alert["id"] for alert in listed] == [alert_id]
        assert tasks == SHARDS  # one broadcast's tasks, not two
        await drain(settings)
        record = await alert_record(settings, alert_id)
    assert_each_got(a, readers, alert_id, "F13 once")
    assert len(a.received) == 20
    assert_counts_consistent(record, targeted=20, sent=20)


# ----------------------------------------------------------------------------------------------- F14


async def tick_for(schedulers, seconds: float, fired: list) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fired.extend(await asyncio.gather(*(s.tick() for s in schedulers)))
        await asyncio.sleep(0.2)


async def test_f14_two_schedulers_fire_a_scheduled_alert_once(make_settings, monkeypatch):
    """Two schedulers tick side by side: one holds the lease and fires the alert once. Then, to show the
    firing itself is exactly-once, both are made active at the same time for a second alert."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 10)
        store = await open_store(settings)
        one, two = Scheduler(settings, store, owner="sched-1"), Scheduler(settings, store, owner="sched-2")
        send_at = (datetime.now(timezone.utc) + timedelta(seconds=1.5)).isoformat()
        first = await post_alert(settings, "F14 once", send_at=send_at)
        assert (await alert_record(settings, first)).status == "scheduled"
        fired: list[int] = []
        await tick_for([one, two], 2.5, fired)
        assert sum(fired) == 1 and [one.active, two.active].count(True) == 1
        # Both active at once (a lease lost to a network split, say): still fired once.
        monkeypatch.setattr(Scheduler, "hold_lease", lambda self: asyncio.sleep(0, True))
        send_at = (datetime.now(timezone.utc) + timedelta(seconds=1.0)).isoformat()
        second = await post_alert(settings, "F14 split", send_at=send_at)
        fired_split: list[int] = []
        await tick_for([one, two], 2.0, fired_split)
        tasks = await store.redis.xlen(store.keys.tasks)
        await store.close()
        assert sum(fired_split) == 1
        assert tasks == 2 * SHARDS
        await drain(settings)
    assert_each_got(a, readers, first, "F14 once")
    assert_each_got(a, readers, second, "F14 split")


async def test_f14_scheduler_lease_passes_to_the_standby_when_the_active_one_dies(make_settings, monkeypatch):
    import workers.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "LEASE_MS", 1500)
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 5)
        store = await open_store(settings)
        one, two = Scheduler(settings, store, owner="sched-1"), Scheduler(settings, store, owner="sched-2")
        await one.tick()
        await two.tick()
        assert one.active and not two.active
        # sched-1 dies (stops ticking, never releases); the alert falls due while only sched-2 runs.
        send_at = (datetime.now(timezone.utc) + timedelta(seconds=0.5)).isoformat()
        alert_id = await post_alert(settings, "F14 failover", send_at=send_at)
        fired: list[int] = []
        await tick_for([two], 3.0, fired)
        await store.close()
        assert sum(fired) == 1 and two.active
        await drain(settings)
    assert_each_got(a, readers, alert_id, "F14 failover")


async def test_f14_missed_fire_time_is_fired_late_once_or_failed_and_reported(make_settings):
    """No scheduler runs at the fire times. Started 2 s late, it fires both alerts once: the one whose TTL
    is still running is delivered late, with a TTL header counted from its planned time; the one whose
    TTL (cut to 1 s in its stored record) ran out is never sent, and ends failed in the dead letters."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 10)
        planned = datetime.now(timezone.utc) + timedelta(seconds=1.0)
        late = await post_alert(settings, "F14 late", send_at=planned.isoformat(), ttl_s=60)
        expired = await post_alert(settings, "F14 expired", send_at=planned.isoformat(), ttl_s=60)
        store = await open_store(settings)
        await store.redis.hset(store.keys.alert(expired), "ttl_s", 1)
        await asyncio.sleep(max(0.0, (planned - datetime.now(timezone.utc)).total_seconds()) + 2.0)
        scheduler = Scheduler(settings, store, owner="late")
        fired = await scheduler.tick() + await scheduler.tick()
        await store.close()
        assert fired == 2
        await drain(settings)
        late_record = await alert_record(settings, late)
        expired_record = await alert_record(settings, expired)
        dead = {d["alert"]: d for d in await dead_letters(settings)}
    assert_each_got(a, readers, late, "F14 late")
    assert all(r.ttl <= 58 for r in a.received)  # 60 s from the planned time, 2 s of it gone
    assert all(messages(a, reader, expired) == [] for reader in readers)
    assert not [r for r in a.received if r.payload and r.payload.get("tag") == expired]
    assert late_record.status == "done" and expired_record.status == "failed"
    assert_counts_consistent(expired_record, targeted=10, failed=10, sent=0)
    assert expired in dead and late not in dead
    assert "expired" in dead[expired]["reason"]


# ----------------------------------------------------------------------------------------------- F15


async def test_f15_a_poison_alert_ends_in_the_dead_letters_and_later_alerts_flow(make_settings):
    """Every send of the poison alert is refused (400); it ends `failed` in the dead letters, with the
    reason; the next alert to the same readers is delivered."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 30)
        poison: dict = {}
        a.default = lambda record: 400 if record.payload and record.payload.get("tag") == poison.get("id") else 201
        poison["id"] = await post_alert(settings, "F15 poison")
        later = await post_alert(settings, "F15 later")
        await drain(settings)
        poisoned = await alert_record(settings, poison["id"])
        fine = await alert_record(settings, later)
        dead = await dead_letters(settings)
        remaining = await subscription_count(settings)
    assert poisoned.status == "failed"
    assert_counts_consistent(poisoned, targeted=30, failed=30, sent=0)
    assert [d["alert"] for d in dead] == [poison["id"]]
    assert "400" in dead[0]["reason"], dead
    assert all(len([r for r in a.records_for(reader) if r.payload.get("tag") == poison["id"]]) == 1
               for reader in readers)  # 400 is final
    assert_each_got(a, readers, later, "F15 later")
    assert fine.status == "done" and remaining == 30


async def test_f15_an_alert_that_fails_every_retry_ends_in_the_dead_letters(make_settings, fast_backoff):
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"], push_max_attempts=3)
        readers = await add_subscribers(settings, a, 10)
        a.default = 500
        alert_id = await post_alert(settings, "F15 500")
        await drain(settings)
        a.default = 201
        later = await post_alert(settings, "F15 after")
        await drain(settings)
        record = await alert_record(settings, alert_id)
        dead = await dead_letters(settings)
    assert all(len(accepted_records(a, reader, alert_id)) == 0 for reader in readers)
    assert all(len([r for r in a.records_for(reader) if r.payload.get("tag") == alert_id]) == 3 for reader in readers)
    assert record.status == "failed" and [d["alert"] for d in dead] == [alert_id]
    assert "500" in dead[0]["reason"]
    assert_each_got(a, readers, later, "F15 after")


async def test_f15_an_alert_the_worker_cannot_even_build_ends_failed_not_retried_for_ever(make_settings):
    """A stored alert that is corrupt (its urgency is not one of the four, as only a damaged record can be):
    every push of it fails to build. It must end failed in the dead letters, not loop as a task that raises
    and is taken over again every 15 s; the next alert flows."""
    async with FakePushService() as a:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{a.port}"])
        readers = await add_subscribers(settings, a, 10)
        broken = await post_alert(settings, "F15 broken")
        store = await open_store(settings)
        await store.redis.hset(store.keys.alert(broken), "urgency", "urgent")
        await store.close()
        later = await post_alert(settings, "F15 next")
        await drain(settings, timeout_s=20)
        record = await alert_record(settings, broken)
        dead = await dead_letters(settings)
    assert a.count == 10  # only the good alert's
    assert_each_got(a, readers, later, "F15 next")
    assert record.status == "failed"
    assert_counts_consistent(record, targeted=10, failed=10)
    assert [d["alert"] for d in dead] == [broken] and "urgency" in dead[0]["reason"]


# ----------------------------------------------------------------------------------------------- processes


def worker_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NABAA", "REDIS", "PUSH_", "VAPID"))}
    env.update(
        NABAA_ENV="development", REDIS_URL=settings.redis_url, REDIS_PREFIX=settings.redis_prefix,
        DATA_DIR=str(settings.data_dir), PUSH_ALLOWED_HOSTS=",".join(settings.push_allowed_hosts),
        PUSH_ALLOW_INSECURE="1", SITE_ORIGIN=settings.site_origin, EDITOR_TOKEN=EDITOR_TOKEN,
        QUIET_HOURS="", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
    )
    return env


class WorkerProcess:
    """One `nabaa worker` process, its log in a file, its consumer name found in the group."""

    def __init__(self, settings, log_path: Path):
        from workers.runtime import vapid_from

        vapid_from(settings)  # the dev key exists before any process starts, so they all read the same one
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "nabaa", "worker"], env=worker_env(settings),
                                        cwd=str(REPO), stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def consumer(self, client: sync_redis.Redis, keys: Keys) -> str | None:
        for info in client.xinfo_consumers(keys.tasks, GROUP):
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if f":{self.pid}:" in name:
                return name
        return None

    def text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    async def wait(self, timeout_s: float) -> int | None:
        """Wait for the process to exit without blocking the loop (the fake push service runs on it)."""
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.process.poll()

    async def stop(self, timeout_s: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if await self.wait(timeout_s) is None:
                self.process.kill()
                self.process.wait()
        self.log.close()


@asynccontextmanager
async def workers_running(settings, tmp_path: Path, count: int):
    procs = [WorkerProcess(settings, tmp_path / f"worker{i}.log") for i in range(count)]
    try:
        yield procs
    finally:
        await asyncio.gather(*(proc.stop() for proc in procs))


@pytest.fixture
def embedded(tmp_path):
    """A real redis-server of this test's own, AOF on (appendfsync everysec), killed at the end."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.kill()


def restart(server: EmbeddedRedis) -> EmbeddedRedis:
    """The same server again: same port, same data directory (so the same AOF)."""
    again = EmbeddedRedis(server.data_dir, port=server.port)
    deadline = time.monotonic() + 10
    while True:
        try:
            again.start()
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    server.process = again.process
    return server


def pending_by_consumer(client: sync_redis.Redis, keys: Keys) -> dict[str, str]:
    """Pending task entry id → the consumer holding it."""
    rows = client.xpending_range(keys.tasks, GROUP, min="-", max="+", count=10_000)
    return {row["message_id"].decode(): row["consumer"].decode() for row in rows}


async def wait_for(predicate, timeout_s: float, what: str, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)


async def alert_done(settings, alert_id: str) -> bool:
    record = await alert_record(settings, alert_id)
    return record is not None and record.status in ("done", "failed")


def duplicates_report(fake: FakePushService, readers, alert_id: str, title: str) -> tuple[int, int]:
    """Asserts every reader got the alert at least once, each copy decrypting to it with the same Topic and
    tag; returns (messages accepted, re-sends)."""
    total, missing, mixed = 0, [], []
    for reader in readers:
        got = accepted_records(fake, reader, alert_id)
        total += len(got)
        if not got:
            missing.append(reader.token[:8])
        if len({r.topic for r in got}) > 1 or any(r.payload["title"] != title or r.payload["id"] != alert_id
                                                  for r in got):
            mixed.append(reader.token[:8])
    assert not missing, f"{len(missing)} of {len(readers)} readers never got the alert: {missing[:5]}"
    assert not mixed, f"copies that differ in Topic or content: {mixed[:5]}"
    return total, total - len(readers)


# ----------------------------------------------------------------------------------------------- F1


async def test_f1_a_worker_sigkilled_mid_broadcast_is_taken_over(make_settings, embedded, tmp_path):
    """Two `nabaa worker` processes broadcast to 2,000 readers of a push service answering in 0.25 s; one is
    SIGKILLed while it holds tasks. The other takes them over (XAUTOCLAIM after 15 s idle): every reader
    gets the alert, re-sends stay within the in-flight window, every copy has the same Topic and tag."""
    async with FakePushService() as fake:
        fake.default = ("slow", 0.25)
        settings = make_settings(redis_url=embedded.url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        readers = await add_subscribers(settings, fake, 2000)
        keys = Keys(settings.redis_prefix)
        client = sync_redis.Redis.from_url(embedded.url)
        async with workers_running(settings, tmp_path, 2) as procs:
            await wait_for(lambda: all(" started" in p.text() for p in procs), 20, "both workers to start")
            alert_id = await post_alert(settings, "F1 crash")
            started = time.monotonic()

            def holding():
                if fake.count < 300:
                    return None
                owners = pending_by_consumer(client, keys)
                for proc in procs:
                    mine = {entry for entry, owner in owners.items() if owner == proc.consumer(client, keys)}
                    if len(mine) >= 2:
                        return proc, mine
                return None

            victim, held = await wait_for(holding, 30, "a worker holding tasks mid-broadcast", every_s=0.02)
            victim_name = victim.consumer(client, keys)
            survivor = next(p for p in procs if p is not victim)
            sent_before_kill = fake.count
            victim.process.kill()
            killed = time.monotonic()
            await victim.wait(10)
            held = {e for e, owner in pending_by_consumer(client, keys).items() if owner == victim_name}

            def taken_over():
                owners = pending_by_consumer(client, keys)
                return all(owners.get(entry) not in (victim_name,) for entry in held)

            await wait_for(taken_over, TAKEOVER_BOUND_S + 10, "the killed worker's tasks to be taken over")
            takeover_s = time.monotonic() - killed
            await wait_for(lambda: alert_done(settings, alert_id), 60, "the broadcast to finish")
            finished_s = time.monotonic() - started
            survivor_log = survivor.text()
        record = await alert_record(settings, alert_id)
        client.close()
    total, resends = duplicates_report(fake, readers, alert_id, "F1 crash")
    numbers = (f"F1: killed pid {victim.pid} holding {len(held)} tasks after {sent_before_kill} sends; taken over "
               f"in {takeover_s:.1f} s (bound {TAKEOVER_BOUND_S:.0f} s); {total} messages accepted for 2000 "
               f"readers = {resends} re-sends (window {IN_FLIGHT_WINDOW}); broadcast done in {finished_s:.1f} s; "
               f"survivor logged {survivor_log.count('took over task')} take-overs")
    report(numbers)
    assert held, "the victim held no task when it was killed: nothing was tested"
    assert takeover_s < TAKEOVER_BOUND_S, numbers
    assert 0 <= resends <= IN_FLIGHT_WINDOW, numbers
    assert "took over task" in survivor_log
    assert record.status == "done"
    assert_counts_consistent(record, targeted=2000, sent=2000, failed=0, gone=0)
    assert not fake.errors


async def _hang(*_args, **_kwargs):
    await asyncio.Event().wait()


class _FrozenPipeline:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: self

    execute = staticmethod(_hang)


class _FrozenRedis:
    """Every call from now on waits for ever: what a dead process looks like from Redis' side."""

    def __getattr__(self, _name):
        return _hang

    def register_script(self, _source):
        return _hang

    def pipeline(self, **_kwargs):
        return _FrozenPipeline()


class InProcessWorker:
    """A `Worker` running on this loop, that the test can kill: from that instant none of its Redis calls
    gets through (no commit, no XACK, no heartbeat), as if the process had died, while the requests it had
    already made to the push service run to their end."""

    def __init__(self, settings, name: str):
        self.settings, self.name = settings, name

    async def start(self) -> "InProcessWorker":
        from workers.runtime import transport_from, vapid_from

        self.store = await open_store(self.settings)
        self.real_redis = self.store.redis
        self.transport = transport_from(self.settings)
        self.worker = delivery.Worker(self.settings, self.store, self.transport, vapid_from(self.settings),
                                      name=self.name)
        self.task = asyncio.create_task(self.worker.run())
        return self

    def kill(self) -> None:
        self.store.redis = _FrozenRedis()
        self.store._scripts = {}

    async def close(self) -> None:
        if self.store.redis is not self.real_redis:  # killed: nothing of it may run on
            for task in [self.task, *self.worker._tasks]:
                task.cancel()
            await asyncio.gather(self.task, *self.worker._tasks, return_exceptions=True)
        elif not self.task.done():
            self.worker.stop()
            await asyncio.wait_for(self.task, 20)
        await self.transport.close()
        await self.real_redis.aclose()


async def test_f1_a_busy_survivor_still_takes_over_a_dead_workers_tasks_in_time(make_settings, monkeypatch):
    """Scaled down (a task is stale after 2 s instead of 15, heartbeats every 0.5 s instead of 5): worker A
    dies holding tasks while two alerts' worth of tasks still wait in the stream. Worker B, busy with that
    backlog for many seconds, must take A's tasks over within the idle time plus a few heartbeats, not
    only once the backlog is gone (in production: within 30 s, however long the broadcast)."""
    monkeypatch.setattr(delivery, "CLAIM_IDLE_MS", 2000)
    monkeypatch.setattr(delivery, "HEARTBEAT_S", 0.5)
    bound_s = 2.0 + 3 * 0.5 + 2.0
    async with FakePushService() as fake:
        fake.default = ("slow", 0.3)
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        readers = await add_subscribers(settings, fake, 640)
        alert_ids = [await post_alert(settings, f"F1 busy {i}") for i in range(2)]
        a = await InProcessWorker(settings, "worker-a").start()
        b = await InProcessWorker(settings, "worker-b").start()
        client = sync_redis.Redis.from_url(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        try:
            await wait_for(lambda: sum(o == "worker-a" for o in pending_by_consumer(client, keys).values()) >= 3,
                           20, "worker A to hold tasks", every_s=0.02)
            a.kill()
            crashed = time.monotonic()
            held = {e for e, owner in pending_by_consumer(client, keys).items() if owner == "worker-a"}
            backlog = client.xinfo_groups(keys.tasks)[0]["lag"]
            await wait_for(lambda: all(pending_by_consumer(client, keys).get(e) != "worker-a" for e in held),
                           60, "worker A's tasks to be taken over")
            takeover_s = time.monotonic() - crashed
            backlog_left = client.xinfo_groups(keys.tasks)[0]["lag"]
            for alert_id in alert_ids:
                await wait_for(lambda: alert_done(settings, alert_id), 60, "the broadcasts to finish")
        finally:
            await a.close()
            await b.close()
            client.close()
    report(f"F1 (busy survivor, scaled): A died holding {len(held)} tasks with {backlog} unread behind them; B "
           f"took them over after {takeover_s:.1f} s (bound {bound_s:.0f} s) with {backlog_left} still unread")
    assert held, "worker A held no task when it crashed: nothing was tested"
    assert takeover_s < bound_s, f"took {takeover_s:.1f} s: the survivor first worked off its backlog"
    for index, alert_id in enumerate(alert_ids):
        total, resends = duplicates_report(fake, readers, alert_id, f"F1 busy {index}")
        assert resends <= IN_FLIGHT_WINDOW


# ----------------------------------------------------------------------------------------------- F2


def stored_state(client: sync_redis.Redis, keys: Keys, alert_id: str) -> dict:
    return {
        "subscriptions": sum(client.hlen(keys.subs(shard)) for shard in range(SHARDS)),
        "alert": (client.hget(keys.alert(alert_id), "status") or b"").decode(),
        "tasks": client.xlen(keys.tasks) if client.exists(keys.tasks) else 0,
        "group": bool(client.exists(keys.tasks)) and any(
            (g["name"].decode() if isinstance(g["name"], bytes) else g["name"]) == GROUP
            for g in client.xinfo_groups(keys.tasks)),
    }


async def test_f2_redis_killed_between_accepting_and_sending(make_settings, embedded):
    """The alert is accepted (202); more than a second later (appendfsync everysec has written it to disk;
    this server is 7.0, so there is no WAITAOF) Redis is SIGKILLed and started again on the same AOF. The
    alert, its 64 tasks and all 300 subscriptions are there; a worker started afterwards delivers it to
    every reader exactly once."""
    async with FakePushService() as fake:
        settings = make_settings(redis_url=embedded.url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        readers = await add_subscribers(settings, fake, 300)
        keys = Keys(settings.redis_prefix)
        # the consumer group exists before the crash, as it does once any worker has run
        store = await open_store(settings)
        await AlertStore(store).ensure_group()
        await store.close()
        alert_id = await post_alert(settings, "F2 survives")
        client = sync_redis.Redis.from_url(embedded.url)
        before = stored_state(client, keys, alert_id)
        client.close()
        await asyncio.sleep(1.5)
        embedded.kill()
        restart(embedded)
        client = sync_redis.Redis.from_url(embedded.url)
        after = stored_state(client, keys, alert_id)
        client.close()
        assert before == after == {"subscriptions": 300, "alert": "queued", "tasks": SHARDS, "group": True}
        await drain(settings)
        record = await alert_record(settings, alert_id)
    assert_each_got(fake, readers, alert_id, "F2 survives")
    assert record.status == "done"
    assert_counts_consistent(record, targeted=300, sent=300)


async def test_f2_a_running_worker_reconnects_after_a_redis_restart_and_finishes(make_settings, embedded, tmp_path):
    """A `nabaa worker` process is running; an alert scheduled 8 s ahead is accepted; Redis is SIGKILLed
    after the fsync and stays down for 6 s (longer than the client's own retries, ~5 s), then comes back on
    the same AOF. The worker backs off, reconnects, a scheduler fires the alert, and every reader gets it
    exactly once."""
    async with FakePushService() as fake:
        settings = make_settings(redis_url=embedded.url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        readers = await add_subscribers(settings, fake, 300)
        async with workers_running(settings, tmp_path, 1) as (proc,):
            await wait_for(lambda: " started" in proc.text(), 20, "the worker to start")
            send_at = datetime.now(timezone.utc) + timedelta(seconds=8)
            alert_id = await post_alert(settings, "F2 reconnect", send_at=send_at.isoformat())
            await asyncio.sleep(1.2)
            embedded.kill()
            await asyncio.sleep(6.0)
            restart(embedded)
            store = await open_store(settings)
            scheduler = Scheduler(settings, store, owner="f2")
            fired: list[int] = []
            await wait_for(lambda: tick_until_fired(scheduler, fired), 15, "the scheduler to fire the alert")
            await store.close()
            await wait_for(lambda: alert_done(settings, alert_id), 30, "the broadcast to finish")
            log = proc.text()
        record = await alert_record(settings, alert_id)
    warnings = [line for line in log.splitlines() if "WARNING" in line and "INSECURE" not in line]
    report(f"F2: the worker logged {len(warnings)} warnings while Redis was down, e.g. "
           f"{warnings[0][24:180] if warnings else '-'}")
    assert any("reading tasks" in line for line in warnings)  # it noticed, and backed off
    assert proc.process.returncode == 0  # stopped by SIGTERM, cleanly
    assert sum(fired) == 1
    assert_each_got(fake, readers, alert_id, "F2 reconnect")
    assert record.status == "done"
    assert_counts_consistent(record, targeted=300, sent=300)


async def tick_until_fired(scheduler: Scheduler, fired: list) -> bool:
    fired.append(await scheduler.tick())
    return sum(fired) > 0


# ----------------------------------------------------------------------------------------------- F3


async def everything_stored(client: sync_redis.Redis, prefix: str) -> list[bytes]:
    return sorted(key for key in client.scan_iter(match=f"{{{prefix}:*", count=1000)
                  if b":rate:" not in key)  # the rate-limit counters are not data


async def test_f3_redis_down_means_503_with_retry_after_and_nothing_half_written(make_settings, embedded):
    """With Redis killed, a reader subscribing and an editor sending both get 503 with Retry-After, never a
    201/202. When it is back, nothing of either request is stored (no subscription, alert, task or
    idempotency key), and the same requests then succeed."""
    async with FakePushService() as fake:
        settings = make_settings(redis_url=embedded.url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        reader = fake.new_subscriber()
        body = {"title": "F3 down", "body": "…"}
        async with api_client(settings) as client:
            assert (await client.get("/readyz")).status_code == 200
            await asyncio.sleep(1.2)
            redis_client = sync_redis.Redis.from_url(embedded.url)
            keys_before = await everything_stored(redis_client, settings.redis_prefix)
            redis_client.close()
            embedded.kill()
            started = time.monotonic()
            subscribed, sent, ready = await asyncio.gather(
                client.post("/api/v1/subscriptions", json=reader.subscription_json()),
                client.post("/api/v1/alerts", headers={**auth(), "Idempotency-Key": "f3"}, json=body),
                client.get("/readyz"))
            took = time.monotonic() - started
            restart(embedded)
            redis_client = sync_redis.Redis.from_url(embedded.url)
            keys_after = await everything_stored(redis_client, settings.redis_prefix)
            redis_client.close()
            again_subscribed = await client.post("/api/v1/subscriptions", json=reader.subscription_json())
            again_sent = await client.post("/api/v1/alerts", headers={**auth(), "Idempotency-Key": "f3"}, json=body)
        report(f"F3: with Redis down the two requests took {took:.1f} s to answer "
               f"{subscribed.status_code} and {sent.status_code}")
        for answer in (subscribed, sent):
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) > 0
            assert answer.json()["error"]["code"] == "store_unavailable"
        assert ready.status_code != 200
        assert keys_after == keys_before  # nothing half-written
        assert again_subscribed.status_code == 201 and again_sent.status_code == 202
        await drain(settings)
    assert_each_got(fake, [reader], again_sent.json()["id"], "F3 down")


async def test_f3_redis_dying_inside_the_request_is_never_a_202(make_settings, embedded, monkeypatch):
    """Redis is killed at the moment an alert and a subscription are being stored (both requests held just
    before their one Lua script, then the server killed): 503 for both, and after a restart nothing of
    either exists."""
    async with FakePushService() as fake:
        settings = make_settings(redis_url=embedded.url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        reader = fake.new_subscriber()
        real_create, real_upsert = AlertStore.create, SubscriptionStore.upsert
        arrived: list[str] = []
        both_there = asyncio.Event()

        async def kill_when_both_arrive(what: str) -> None:
            arrived.append(what)
            if len(arrived) == 2:
                embedded.kill()
                both_there.set()
            await asyncio.wait_for(both_there.wait(), 10)

        async def dying_create(self, *args, **kwargs):
            await kill_when_both_arrive("alert")
            return await real_create(self, *args, **kwargs)

        async def dying_upsert(self, *args, **kwargs):
            await kill_when_both_arrive("subscription")
            return await real_upsert(self, *args, **kwargs)

        async with api_client(settings) as client:
            await asyncio.sleep(1.2)
            redis_client = sync_redis.Redis.from_url(embedded.url)
            keys_before = await everything_stored(redis_client, settings.redis_prefix)
            redis_client.close()
            monkeypatch.setattr(AlertStore, "create", dying_create)
            monkeypatch.setattr(SubscriptionStore, "upsert", dying_upsert)
            sent, subscribed = await asyncio.gather(
                client.post("/api/v1/alerts", headers=auth(), json={"title": "F3 inside"}),
                client.post("/api/v1/subscriptions", json=reader.subscription_json()))
            restart(embedded)
            redis_client = sync_redis.Redis.from_url(embedded.url)
            keys_after = await everything_stored(redis_client, settings.redis_prefix)
            redis_client.close()
    assert sorted(arrived) == ["alert", "subscription"]
    assert sent.status_code == 503 and "Retry-After" in sent.headers, sent.text
    assert subscribed.status_code == 503 and "Retry-After" in subscribed.headers, subscribed.text
    assert keys_after == keys_before


# ----------------------------------------------------------------------------------------------- SIGTERM


async def add_filler(settings, fake: FakePushService, n: int, topic: str) -> None:
    """n stored subscriptions that the test's alert does not target (another section): they make each shard
    two batches long without adding sends. One key pair for all (they are never encrypted to)."""
    policy = HostPolicy(tuple(settings.push_allowed_hosts), settings.push_allow_insecure)
    keys = fake.new_subscriber().subscription_json()["keys"]
    store = await open_store(settings)
    subs = SubscriptionStore(store)
    try:
        for start in range(0, n, 500):
            await asyncio.gather(*(subs.upsert(to_subscription(SubscriptionIn(
                endpoint=f"{fake.base_url}/push/filler{i}", keys=keys, topics=[topic]), policy, settings.topic_ids))
                for i in range(start, min(n, start + 500))))
    finally:
        await store.close()


async def test_a_worker_stops_even_where_a_cancellation_is_swallowed_below_it(make_settings, monkeypatch):
    """On Python 3.11 redis-py writes every command through `asyncio.wait_for`, which drops a cancellation that
    arrives as the write completes. A background loop cancelled at that instant went on for ever, and a burst
    worker with nothing left to do never returned (seen once in CI as a 30 s drain timeout). Here the host
    refresh swallows every cancellation it gets: the worker must still stop."""
    swallowed = []
    honest = asyncio.Event()  # set at the end, so that a worker left running (the bug) can be cleaned up

    async def refresh_that_swallows(self):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if honest.is_set():
                raise
            swallowed.append(True)

    monkeypatch.setattr(delivery.HostStates, "refresh", refresh_that_swallows)
    settings = make_settings()
    from workers.runtime import transport_from, vapid_from

    store = await open_store(settings)
    transport = transport_from(settings)
    worker = delivery.Worker(settings, store, transport, vapid_from(settings), burst=True)
    run = asyncio.create_task(worker.run())
    try:
        done, _ = await asyncio.wait([run], timeout=10)
        assert swallowed, "the worker never cancelled its background steps"
        assert run in done, "a swallowed cancellation kept the worker running"
        run.result()  # it ended cleanly, not with an error
    finally:
        honest.set()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await transport.close()
        await store.close()


async def test_graceful_shutdown_mid_broadcast_exits_soon_and_the_rest_is_finished(make_settings, embedded,
                                                                                   tmp_path):
    """Two `nabaa worker` processes; one gets SIGTERM mid-broadcast, while its shards are half sent. It
    finishes and commits the batches it is sending, hands the rest of each shard back as a new task, and
    exits within 15 s; the other worker finishes the broadcast at once (no wait for the 15 s idle time).
    Nothing is sent twice (each batch it sent was committed)."""
    async with FakePushService() as fake:
        fake.default = ("slow", 0.25)
        settings = make_settings(redis_url=embedded.url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        readers = await add_subscribers(settings, fake, 2000)
        await add_filler(settings, fake, 6200, "sports")  # ~128 a shard: two batches each
        keys = Keys(settings.redis_prefix)
        client = sync_redis.Redis.from_url(embedded.url)
        async with workers_running(settings, tmp_path, 2) as procs:
            await wait_for(lambda: all(" started" in p.text() for p in procs), 20, "both workers to start")
            alert_id = await post_alert(settings, "SIGTERM", topic="politics")

            def holding():
                if fake.count < 300:
                    return None
                owners = pending_by_consumer(client, keys)
                for proc in procs:
                    if sum(owner == proc.consumer(client, keys) for owner in owners.values()) >= 2:
                        return proc
                return None

            victim = await wait_for(holding, 30, "a worker holding tasks mid-broadcast", every_s=0.02)
            victim_name = victim.consumer(client, keys)
            victim.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await victim.wait(30)
            exit_s = time.monotonic() - signalled
            left = {e for e, owner in pending_by_consumer(client, keys).items() if owner == victim_name}
            await wait_for(lambda: alert_done(settings, alert_id), 60, "the broadcast to finish")
            done_s = time.monotonic() - signalled
            victim_log = victim.text()
        record = await alert_record(settings, alert_id)
        client.close()
    total, resends = duplicates_report(fake, readers, alert_id, "SIGTERM")
    handed_back = victim_log.count("handed back")
    numbers = (f"SIGTERM: pid {victim.pid} exited {exit_s:.1f} s after the signal (code "
               f"{victim.process.returncode}), handing back {handed_back} half-done shards ({len(left)} left "
               f"pending); broadcast done {done_s:.1f} s after the signal; {total} messages for 2000 readers = "
               f"{resends} re-sends")
    report(numbers)
    assert exit_s < 15, numbers
    assert victim.process.returncode == 0 and "stopped" in victim_log, victim_log[-500:]
    assert not left, numbers  # nothing waits for a take-over
    assert done_s < 20, numbers
    assert resends == 0, numbers
    assert record.status == "done"
    assert_counts_consistent(record, targeted=2000, sent=2000, failed=0)


# ----------------------------------------------------------------------------------------------- soak

SOAK_READERS = 5000
SOAK_ALERTS = 10
SOAK_HOSTS = 4


class Faulty:
    """About 10 % of answers go wrong: 500 (6 %), connection reset (4 %), and 429 with `Retry-After: 1`
    (at most one every 5 s for a host, as a push service's quota would; each pauses the whole host)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.last_429 = 0.0
        self.counts = collections.Counter()

    def __call__(self, record):
        roll = self.rng.random()
        if roll < 0.06:
            answer = 500
        elif roll < 0.10:
            answer = "reset"
        elif roll < 0.11 and time.monotonic() - self.last_429 > 5.0:
            self.last_429 = time.monotonic()
            answer = (429, {"Retry-After": "1"})
        else:
            answer = 201
        self.counts[answer if not isinstance(answer, tuple) else 429] += 1
        return answer


@pytest.mark.soak
@pytest.mark.timeout(300)
async def test_soak_ten_broadcasts_to_5000_readers_with_faulty_push_services_lose_nothing(make_settings, tmp_path):
    """10 alerts to 5,000 readers on 4 push services, ~10 % of whose answers are 500, resets or 429s, sent by
    two `nabaa worker` processes: every reader gets all 10 (at least once each), every alert ends done with
    sent + gone + failed == targeted and nothing failed (the TTL is a day)."""
    async with contextlib.AsyncExitStack() as stack:
        fakes = [await stack.enter_async_context(FakePushService()) for _ in range(SOAK_HOSTS)]
        faults = [Faulty(seed) for seed in range(SOAK_HOSTS)]
        for fake, faulty in zip(fakes, faults):
            fake.default = faulty
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{fake.port}" for fake in fakes])
        readers = {}
        for fake in fakes:
            readers[fake] = await add_subscribers(settings, fake, SOAK_READERS // SOAK_HOSTS)
        async with workers_running(settings, tmp_path, 2) as procs:
            await wait_for(lambda: all(" started" in p.text() for p in procs), 20, "the workers to start")
            started = time.monotonic()
            alert_ids = [await post_alert(settings, f"soak {i}") for i in range(SOAK_ALERTS)]
            for alert_id in alert_ids:
                await wait_for(lambda: alert_done(settings, alert_id), 240, "the soak's broadcasts", every_s=0.5)
            duration = time.monotonic() - started
        records = [await alert_record(settings, alert_id) for alert_id in alert_ids]
    requests = sum(fake.count for fake in fakes)
    accepted = resends = 0
    missing = []
    for fake in fakes:
        got = collections.defaultdict(list)  # (reader token, alert id) → decrypted accepted messages
        for record in fake.received:
            if record.accepted and isinstance(record.payload, dict):
                got[record.token, record.payload.get("tag")].append(record.payload)
        for reader in readers[fake]:
            for index, alert_id in enumerate(alert_ids):
                copies = got[reader.token, alert_id]
                accepted += len(copies)
                resends += max(len(copies) - 1, 0)
                if not copies or any(m["title"] != f"soak {index}" or m["id"] != alert_id for m in copies):
                    missing.append((reader.token[:8], index))
    faulty = sum(sum(n for answer, n in f.counts.items() if answer != 201) for f in faults)
    expected = SOAK_READERS * SOAK_ALERTS
    numbers = (f"soak: {expected} messages ({SOAK_ALERTS} alerts × {SOAK_READERS} readers on {SOAK_HOSTS} push "
               f"services, 2 worker processes) in {duration:.1f} s = {expected / duration:.0f} a second; "
               f"{requests} requests, {faulty} answered badly "
               f"({', '.join(f'{k}: {sum(f.counts[k] for f in faults)}' for k in (500, 'reset', 429))}); "
               f"{accepted} accepted = {resends} duplicates; {len(missing)} missing")
    report(numbers)
    assert not missing, f"{numbers}; e.g. {missing[:5]}"
    for record in records:
        assert record.status == "done", (record.id, record.status)
        assert_counts_consistent(record, targeted=SOAK_READERS, sent=SOAK_READERS, failed=0, gone=0)
    assert faulty > expected * 0.05  # the faults really happened
    assert resends <= 2 * IN_FLIGHT_WINDOW, numbers
