"""Articles that alert on their own: the scheduler polls the site's RSS/Atom feeds (feedparser).

Each feed in FEEDS_FILE — `[{"url": "https://news.example/rss", "topic": "sports", "urgency": "normal"}]` —
is fetched every FEED_POLL_S. The first poll of a feed only remembers what is in it (no backlog is
blasted); after that each item with a GUID not seen before becomes an alert: title, summary and image
from the item, the section from the feed's mapping. The item's GUID is the Idempotency-Key, so even two
schedulers polling at once send an article once.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import feedparser

from core.compose import accept_alert
from core.errors import ConfigError, InvalidInput
from core.models import BODY_MAX, TITLE_MAX, AlertIn
from core.settings import Settings
from core.store import Store
from core.validation import grapheme_truncate

log = logging.getLogger("nabaa.feeds")

MAX_FEED_BYTES = 4 * 1024 * 1024
MAX_NEW_PER_POLL = 5  # a feed that suddenly lists many unseen items is republishing, not breaking news
SEEN_KEEP = 5000
TAGS = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Feed:
    url: str
    topic: str | None = None
    urgency: str = "normal"
    lang: str | None = None


def load_feeds(path: Path | None, topic_ids) -> list[Feed]:
    if path is None:
        return []
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
        feeds = [Feed(str(item["url"]), item.get("topic"), item.get("urgency", "normal"), item.get("lang"))
                 for item in items]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"FEEDS_FILE {path}: expected a JSON list of {{url, topic?, urgency?, lang?}} ({exc})")
    for feed in feeds:
        if not feed.url.startswith(("https://", "http://")):
            raise ConfigError(f"FEEDS_FILE {path}: {feed.url!r} is not an http(s) URL")
        if feed.topic is not None and feed.topic not in topic_ids:
            raise ConfigError(f"FEEDS_FILE {path}: topic {feed.topic!r} is not a section of TOPICS_FILE")
        if feed.urgency not in ("very-low", "low", "normal", "high"):
            raise ConfigError(f"FEEDS_FILE {path}: urgency {feed.urgency!r} is not very-low, low, normal or high")
    return feeds


def plain_text(markup: str) -> str:
    return " ".join(html.unescape(TAGS.sub(" ", markup or "")).split())


def clean(text: str, limit: int) -> str:
    text = "".join(ch for ch in text if ch == "\n" or (ord(ch) >= 0x20 and not 0x7F <= ord(ch) < 0xA0))
    return grapheme_truncate(text.strip(), limit)


def item_image(entry) -> str | None:
    for media in list(entry.get("media_content") or []) + list(entry.get("media_thumbnail") or []):
        if str(media.get("url", "")).startswith("https://"):
            return media["url"]
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/") \
                and str(link.get("href", "")).startswith("https://"):
            return link["href"]
    return None


def item_alert(entry, feed: Feed) -> AlertIn | None:
    title = clean(plain_text(entry.get("title", "")), TITLE_MAX)
    link = entry.get("link")
    if not title or not link:
        return None
    summary = clean(plain_text(entry.get("summary", "")), BODY_MAX)
    return AlertIn(title=title, body=summary, url=link, image=item_image(entry), topic=feed.topic,
                   lang=feed.lang, urgency=feed.urgency)


class FeedPoller:
    def __init__(self, settings: Settings, store: Store, feeds: list[Feed], session: aiohttp.ClientSession):
        self.settings = settings
        self.store = store
        self.feeds = feeds
        self.session = session

    def _seen_key(self, feed: Feed) -> str:
        return f"{{{self.store.keys.prefix}:f}}:seen:{hashlib.sha256(feed.url.encode()).hexdigest()[:16]}"

    async def fetch(self, feed: Feed) -> bytes:
        async with self.session.get(feed.url, allow_redirects=True, max_redirects=3) as answer:
            if answer.status != 200:
                raise OSError(f"answered {answer.status}")
            body = await answer.content.read(MAX_FEED_BYTES + 1)
            if len(body) > MAX_FEED_BYTES:
                raise OSError(f"larger than {MAX_FEED_BYTES} bytes")
            return body

    async def poll(self) -> int:
        """Poll every feed once; returns how many alerts were accepted."""
        accepted = 0
        for feed in self.feeds:
            try:
                accepted += await self.poll_feed(feed)
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("feed %s: %s", feed.url, exc)
        return accepted

    async def poll_feed(self, feed: Feed) -> int:
        parsed = feedparser.parse(await self.fetch(feed))
        entries = [(entry.get("id") or entry.get("link"), entry) for entry in parsed.entries]
        entries = [(guid, entry) for guid, entry in entries if guid]
        key = self._seen_key(feed)
        redis = self.store.redis
        primed = await redis.exists(key)
        now = time.time()
        if not primed:
            await redis.zadd(key, {"\0primed": now, **{guid: now for guid, _ in entries}})
            log.info("feed %s: remembered %d items; new ones from now on will alert", feed.url, len(entries))
            return 0
        seen = await redis.zmscore(key, [guid for guid, _ in entries]) if entries else []
        new = [(guid, entry) for (guid, entry), score in zip(entries, seen) if score is None]
        accepted = 0
        for guid, entry in reversed(new[:MAX_NEW_PER_POLL]):  # oldest first
            alert = item_alert(entry, feed)
            if alert is not None:
                try:
                    result = await accept_alert(self.store, self.settings, alert, source="feed",
                                                idempotency_key=f"feed:{hashlib.sha256(guid.encode()).hexdigest()}")
                    accepted += int(result.created)
                    log.info("feed %s: alert %s for a new item", feed.url, result.id)
                except InvalidInput as exc:
                    log.warning("feed %s: item %s not sent: %s", feed.url, hashlib.sha256(guid.encode()).hexdigest()[:8],
                                exc.message)
        if new:
            await redis.zadd(key, {guid: now for guid, _ in new})
            await redis.zremrangebyrank(key, 0, -SEEN_KEEP - 1)  # forget the oldest; they left the feed long ago
        return accepted
