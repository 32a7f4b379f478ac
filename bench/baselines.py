"""The baselines the benchmark measures Nabaa against, each run as its own process on the same audience.

- `documented`: pywebpush as its README shows it — `webpush()` per message (a new TLS connection each).
- `tuned`: pywebpush at its best — `WebPusher.send_async` with one shared aiohttp session, one VAPID
  header signed per origin, 32 requests in flight.

    python -m bench.baselines MODE --redis URL --prefix P --key PEM --ca CA --limit N --seconds S --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import time

from core.records import CorruptRecord, decode
from core.keys import Keys, SHARDS
from core.vapid import b64url

PAYLOAD = json.dumps({"id": "bench", "title": "عاجل: اختبار السرعة", "body": "نص الخبر " * 8, "url": "/",
                      "dir": "rtl", "lang": "ar", "tag": "bench"}, ensure_ascii=False)


def load_subscriptions(url: str, prefix: str, limit: int) -> list[dict]:
    import redis

    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    out = []
    for shard in range(SHARDS):
        for sub_id, raw in client.hscan_iter(keys.subs(shard), count=1000):
            try:
                sub = decode(sub_id.decode(), raw)
            except CorruptRecord:
                continue
            out.append({"endpoint": sub.endpoint, "keys": {"p256dh": b64url(sub.p256dh), "auth": b64url(sub.auth)}})
            if len(out) >= limit:
                return out
    return out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def documented(subs, key_file, ca_file, seconds):
    from pywebpush import webpush

    os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    sent = failed = 0
    start = time.monotonic()
    for sub in subs:
        try:
            webpush(sub, PAYLOAD, vapid_private_key=key_file, vapid_claims={"sub": "mailto:bench@nabaa.example"},
                    ttl=3600, headers={"Content-Type": "application/octet-stream", "Urgency": "high"}, timeout=10)
            sent += 1
        except Exception:  # noqa: BLE001 — counted
            failed += 1
        if time.monotonic() - start > seconds:
            break
    return sent, failed, time.monotonic() - start


async def tuned(subs, key_file, ca_file, seconds):
    import aiohttp
    from py_vapid import Vapid
    from pywebpush import WebPusher

    vapid = Vapid.from_file(key_file)
    headers_by_origin: dict[str, dict] = {}
    context = ssl.create_default_context(cafile=ca_file)
    connector = aiohttp.TCPConnector(ssl=context, limit=32)
    sent = failed = 0
    semaphore = asyncio.Semaphore(32)
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(sub):
            nonlocal sent, failed
            if time.monotonic() - start > seconds:
                return
            origin = "/".join(sub["endpoint"].split("/")[:3])
            headers = headers_by_origin.get(origin)
            if headers is None:
                signed = vapid.sign({"sub": "mailto:bench@nabaa.example", "aud": origin,
                                     "exp": int(time.time()) + 12 * 3600})
                headers = headers_by_origin[origin] = {**signed, "Content-Type": "application/octet-stream",
                                                        "Urgency": "high"}
            async with semaphore:
                try:
                    answer = await WebPusher(sub, aiohttp_session=session).send_async(
                        PAYLOAD, dict(headers), ttl=3600, timeout=10)
                    if answer.status in (201, 202):
                        sent += 1
                    else:
                        failed += 1
                except Exception:  # noqa: BLE001 — counted
                    failed += 1

        await asyncio.gather(*(one(sub) for sub in subs))
    return sent, failed, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["documented", "tuned"])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--limit", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    subs = load_subscriptions(args.redis, args.prefix, args.limit)
    cpu_before = cpu_seconds()
    if args.mode == "documented":
        sent, failed, wall = documented(subs, args.key, args.ca, args.seconds)
    else:
        sent, failed, wall = asyncio.run(tuned(subs, args.key, args.ca, args.seconds))
    cpu = cpu_seconds() - cpu_before
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(args.out, "w") as handle:
        json.dump({"mode": args.mode, "sent": sent, "failed": failed, "wall_s": wall, "cpu_s": cpu,
                   "rate": sent / wall if wall else 0, "per_cpu_s": sent / cpu if cpu else 0,
                   "peak_rss_mb": peak_kb / 1024}, handle)


if __name__ == "__main__":
    main()
