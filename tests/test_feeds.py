"""Feeds that alert on their own: a real RSS file served on 127.0.0.1, polled by the scheduler's poller."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from core.alerts import AlertStore
from core.store import Store
from workers.feeds import Feed, FeedPoller

ITEM = """<item><title>{title}</title><link>http://127.0.0.1:8000/news/{n}</link><guid>urn:news:{n}</guid>
<description><![CDATA[<p>{summary}</p>]]></description>
<enclosure url="https://cdn.example/img/{n}.jpg" type="image/jpeg" length="1"/></item>"""


def rss(items: list[tuple[int, str, str]]) -> str:
    body = "".join(ITEM.format(n=n, title=t, summary=s) for n, t, s in items)
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>نبأ</title>{body}</channel></rss>'


@pytest.fixture
async def feed_server():
    state = {"items": [(1, "قديم", "خبر سابق"), (2, "أقدم", "خبر أقدم")]}

    async def handler(_request):
        return web.Response(text=rss(state["items"]), content_type="application/rss+xml", charset="utf-8")

    app = web.Application()
    app.router.add_get("/rss", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/rss", state
    await runner.cleanup()


async def test_new_items_alert_once_and_the_backlog_never(make_settings, feed_server):
    url, state = feed_server
    settings = make_settings()
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    alerts = AlertStore(store)
    async with aiohttp.ClientSession() as session:
        poller = FeedPoller(settings, store, [Feed(url, topic="sports", urgency="high")], session)
        assert await poller.poll() == 0  # the first poll only remembers the backlog
        assert await alerts.recent(10) == []
        state["items"].insert(0, (3, "عاجل: <b>الأسود</b> يتأهلون", "تأهل المنتخب &amp; الجمهور يحتفل"))
        state["items"].insert(0, (4, "ثان", "ملخص"))
        # Two pollers at once (two schedulers): each new article still alerts once.
        other = FeedPoller(settings, store, [Feed(url, topic="sports", urgency="high")], session)
        results = await asyncio.gather(poller.poll(), other.poll())
        assert sum(results) == 2
        assert await poller.poll() == 0
    recent = await alerts.recent(10)
    await store.close()
    assert [a.raw["title"] for a in recent] == ["ثان", "عاجل: الأسود يتأهلون"]
    first = recent[1].public()
    assert first["body"] == "تأهل المنتخب & الجمهور يحتفل" and first["url"] == "http://127.0.0.1:8000/news/3"
    assert first["topic"] == "sports" and first["status"] == "queued"
    assert '"image":"https://cdn.example/img/3.jpg"' in recent[1].raw["payload"]


async def test_items_linking_off_the_site_are_not_sent(make_settings, feed_server):
    url, state = feed_server
    settings = make_settings()
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    async with aiohttp.ClientSession() as session:
        poller = FeedPoller(settings, store, [Feed(url)], session)
        await poller.poll()
        state["items"].insert(0, (5, "x", "y"))
        state["items"][0] = (5, "x", "y")
        # Point the new item's link elsewhere.
        original = ITEM
        try:
            globals()["ITEM"] = original.replace("http://127.0.0.1:8000/news/{n}", "https://evil.example/{n}")
            assert await poller.poll() == 0
        finally:
            globals()["ITEM"] = original
    assert await AlertStore(store).recent(10) == []
    await store.close()
