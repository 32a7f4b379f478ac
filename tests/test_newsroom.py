"""What a newsroom needs: quiet hours (with a frozen clock) and updates that replace a notification."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from core.alerts import AlertStore
from core.compose import accept_alert
from core.models import AlertIn
from core.store import Store
from tests.conftest import api_client, auth, drain
from tests.fakepush import FakePushService

# 23:30 in Casablanca (UTC+1) on 1 December 2026: inside the default quiet hours 23:00–07:00.
NIGHT = datetime(2026, 12, 1, 22, 30, tzinfo=timezone.utc)
NOON = datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)


async def test_quiet_hours_hold_non_urgent_alerts_until_morning(make_settings):
    settings = make_settings(quiet_hours="23:00-07:00", publisher_timezone="Africa/Casablanca")
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    try:
        brief = await accept_alert(store, settings, AlertIn(title="موجز", urgency="normal"), source="t", now=NIGHT)
        breaking = await accept_alert(store, settings, AlertIn(title="عاجل", urgency="high"), source="t", now=NIGHT)
        daytime = await accept_alert(store, settings, AlertIn(title="نهار", urgency="low"), source="t", now=NOON)
        alerts = AlertStore(store)
        held = (await alerts.get(brief.id)).public()
    finally:
        await store.close()
    assert brief.status == "scheduled" and held["send_at"] == "2026-12-02T06:00:00.000Z"  # 07:00 local
    assert breaking.status == "queued" and daytime.status == "queued"


async def test_an_update_replaces_the_notification_on_screen(make_settings):
    async with FakePushService() as fake:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        reader = fake.new_subscriber()
        async with api_client(settings) as client:
            await client.post("/api/v1/subscriptions", json=reader.subscription_json())
            first = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "حصيلة أولية: 3"})).json()
            await drain(settings)
            update = await client.post("/api/v1/alerts", headers=auth(),
                                       json={"title": "حصيلة محدثة: 5", "replaces": first["id"]})
            assert update.status_code == 202, update.text
            await drain(settings)
            unknown = await client.post("/api/v1/alerts", headers=auth(),
                                        json={"title": "x", "replaces": "0000000000000000000ff"})
            assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "replaces"
    one, two = fake.records_for(reader)
    assert one.topic == two.topic  # the push service replaces one still waiting
    payloads = [json.loads(r.plaintext) for r in (one, two)]
    assert payloads[1]["tag"] == payloads[0]["tag"] == first["id"]  # the device replaces the one shown
    assert payloads[1]["renotify"] is True and payloads[1]["id"] != first["id"]


async def test_cms_webhook_is_signed_and_sends_one_alert_per_article(make_settings):
    import time as clock

    from service.hooks import signature

    secret = "cms-shared-secret-0123456789"
    settings = make_settings(webhook_secret=secret)
    article = json.dumps({"title": "مقال جديد", "url": "/2026/12/01/maqal", "summary": "ملخص المقال",
                          "topic": "culture", "urgency": "high", "guid": "wp-42"}, ensure_ascii=False).encode()
    stamp = str(int(clock.time()))
    good = {"content-type": "application/json", "x-nabaa-timestamp": stamp,
            "x-nabaa-signature": signature(secret, stamp, article)}
    async with api_client(settings) as client:
        wrong = await client.post("/api/v1/hooks/publish", content=article,
                                  headers={**good, "x-nabaa-signature": signature("another-secret-000000", stamp, article)})
        stale_stamp = str(int(clock.time()) - 3600)
        stale = await client.post("/api/v1/hooks/publish", content=article, headers={
            **good, "x-nabaa-timestamp": stale_stamp, "x-nabaa-signature": signature(secret, stale_stamp, article)})
        tampered = await client.post("/api/v1/hooks/publish", content=article.replace(b"wp-42", b"wp-43"),
                                     headers=good)
        assert [r.status_code for r in (wrong, stale, tampered)] == [401, 401, 401]
        assert (await client.get("/api/v1/alerts", headers=auth())).json()["alerts"] == []
        first = await client.post("/api/v1/hooks/publish", content=article, headers=good)
        again = await client.post("/api/v1/hooks/publish", content=article, headers=good)  # the CMS retried
        assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
        alerts = (await client.get("/api/v1/alerts", headers=auth())).json()["alerts"]
    assert len(alerts) == 1 and alerts[0]["title"] == "مقال جديد" and alerts[0]["topic"] == "culture"


async def test_cms_webhook_refuses_a_signed_but_invalid_article(make_settings):
    import time as clock

    from service.hooks import signature

    secret = "cms-shared-secret-0123456789"
    settings = make_settings(webhook_secret=secret)
    async with api_client(settings) as client:
        for article, field in ((b'{"title": "x", "url": "/a", "urgency": "urgent"}', "urgency"),
                               (b'{"title": "x", "url": "javascript:alert(1)"}', "url")):
            stamp = str(int(clock.time()))
            answer = await client.post("/api/v1/hooks/publish", content=article, headers={
                "content-type": "application/json", "x-nabaa-timestamp": stamp,
                "x-nabaa-signature": signature(secret, stamp, article)})
            assert answer.status_code == 422 and answer.json()["error"]["field"] == field, answer.text
        assert (await client.get("/api/v1/alerts", headers=auth())).json()["alerts"] == []
