"""The HTTP API as api-v1.md writes it: reader side, editor side, errors, operations."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from core.records import subscription_id
from tests.conftest import EDITOR_TOKEN, api_client, auth
from tests.fakepush import Subscriber

FCM = "https://fcm.googleapis.com/fcm/send/"


def subscription(endpoint: str | None = None, **extra) -> dict:
    sub = Subscriber.generate(endpoint=endpoint or FCM + Subscriber.generate().p256dh[:40])
    return {**sub.subscription_json(), **extra}


@pytest.fixture
async def client(make_settings):
    async with api_client(make_settings()) as client:
        yield client


async def test_config_publishes_the_vapid_key_and_topics(client):
    answer = await client.get("/api/v1/push/config")
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["vapidPublicKey"]) == 87 and body["vapidPublicKey"].startswith("B")
    assert {"id": "sports", "label": {"ar": "رياضة", "en": "Sports"}} in body["topics"]
    assert "رياضة".encode() in answer.content  # UTF-8, never ASCII-escaped


async def test_subscribe_is_idempotent_by_endpoint(client):
    first = subscription(topics=["sports"], lang="ar")
    one = await client.post("/api/v1/subscriptions", json=first)
    assert one.status_code == 201
    assert one.json() == {"id": subscription_id(first["endpoint"]), "topics": ["sports"]}
    new_keys = subscription(first["endpoint"], topics=["politics"])
    two = await client.post("/api/v1/subscriptions", json=new_keys)
    assert two.status_code == 200 and two.json()["id"] == one.json()["id"]
    stats = (await client.get("/api/v1/stats", headers=auth())).json()
    assert stats["subscriptions"] == 1
    assert stats["by_push_service"] == {"fcm.googleapis.com": 1}
    assert stats["by_topic"]["politics"] == 1 and stats["by_topic"]["sports"] == 0
    state = client.app.state.nabaa
    stored = await state.subs.get(one.json()["id"])
    assert stored.p256dh == base64.urlsafe_b64decode(new_keys["keys"]["p256dh"] + "=")
    assert stored.topics == ("politics",)


async def test_unsubscribe_deletes_and_is_idempotent(client):
    created = (await client.post("/api/v1/subscriptions", json=subscription())).json()
    assert (await client.delete(f"/api/v1/subscriptions/{created['id']}")).status_code == 204
    assert (await client.delete(f"/api/v1/subscriptions/{created['id']}")).status_code == 204
    assert (await client.get("/api/v1/stats", headers=auth())).json()["subscriptions"] == 0


async def test_alert_lifecycle_and_listing(client):
    answer = await client.post("/api/v1/alerts", headers=auth(), json={"title": "خبر", "url": "/a"})
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    alert_id = answer.json()["id"]
    alert = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
    assert alert["title"] == "خبر" and alert["status"] == "queued" and alert["url"] == "/a"
    assert set(alert["counts"]) == {"targeted", "sent", "gone", "failed", "pending", "delivered", "clicked"}
    second = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "ثان"})).json()["id"]
    listed = (await client.get("/api/v1/alerts?limit=50", headers=auth())).json()["alerts"]
    assert [a["id"] for a in listed[:2]] == [second, alert_id]


async def test_idempotency_key(client):
    body = {"title": "عاجل", "body": "نص"}
    headers = {**auth(), "Idempotency-Key": "k-1"}
    one = await client.post("/api/v1/alerts", headers=headers, json=body)
    two = await client.post("/api/v1/alerts", headers=headers, json=body)
    assert one.status_code == two.status_code == 202 and one.json()["id"] == two.json()["id"]
    other = await client.post("/api/v1/alerts", headers=headers, json={**body, "title": "آخر"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len((await client.get("/api/v1/alerts", headers=auth())).json()["alerts"]) == 1
    depth = await client.app.state.nabaa.store.redis.xlen(client.app.state.nabaa.store.keys.tasks)
    assert depth == 64  # one broadcast: one task per shard


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-000000000"},
                                     {"Authorization": f"Basic {EDITOR_TOKEN}"}])
async def test_editor_calls_need_the_token(client, headers):
    answer = await client.post("/api/v1/alerts", headers=headers, json={"title": "x"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    query = await client.get(f"/api/v1/alerts?token={EDITOR_TOKEN}")
    assert query.status_code == 401
    assert (await client.get("/api/v1/alerts", headers=auth())).json()["alerts"] == []


async def test_scheduled_alert_can_be_cancelled_but_not_once_sending(client):
    when = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
    local = when.astimezone(timezone(timedelta(hours=1))).isoformat()
    answer = await client.post("/api/v1/alerts", headers=auth(), json={"title": "موجز الصباح", "send_at": local})
    assert answer.json()["status"] == "scheduled"
    alert_id = answer.json()["id"]
    alert = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
    assert alert["send_at"] == when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert (await client.delete(f"/api/v1/alerts/{alert_id}", headers=auth())).status_code == 204
    assert (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()["status"] == "cancelled"
    now = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "الآن"})).json()["id"]
    refused = await client.delete(f"/api/v1/alerts/{now}", headers=auth())
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "alert_not_cancellable"
    assert (await client.delete("/api/v1/alerts/0000000000000000000ff", headers=auth())).status_code == 404


async def test_events_count_on_the_alert(client):
    alert_id = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "x"})).json()["id"]
    for kind in ("delivered", "delivered", "clicked"):
        assert (await client.post("/api/v1/events", json={"type": kind, "alert": alert_id})).status_code == 202
    counts = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()["counts"]
    assert counts["delivered"] == 2 and counts["clicked"] == 1
    bad = await client.post("/api/v1/events", json={"type": "opened", "alert": alert_id})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "type"


async def test_operations_endpoints(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await client.post("/api/v1/subscriptions", json=subscription())
    metrics = (await client.get("/metrics")).text
    assert 'nabaa_subscriptions{push_service="fcm.googleapis.com"} 1.0' in metrics
    assert "nabaa_queue_tasks" in metrics
    spec = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/push/config", "/api/v1/subscriptions", "/api/v1/subscriptions/{sub_id}",
                 "/api/v1/alerts", "/api/v1/alerts/{alert_id}", "/api/v1/stats", "/api/v1/events"):
        assert path in spec["paths"]


async def test_pages_are_served_with_security_headers(client):
    page = await client.get("/")
    assert page.status_code == 200 and 'dir="rtl"' in page.text
    assert "احصل على تحديثات في الوقت الفعلي مباشرة على جهازك، اشترك الآن" in (await client.get("/widget.js")).text \
        or "احصل على تحديثات في الوقت الفعلي مباشرة على جهازك، اشترك الآن" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    sw = await client.get("/sw.js")
    assert sw.status_code == 200 and sw.headers["content-type"].startswith("text/javascript")
    assert (await client.get("/admin/")).status_code == 200


async def test_growth_per_day_and_expiry_of_unseen_subscriptions(make_settings):
    import time

    from core.models import SubscriptionIn, to_subscription

    settings = make_settings()
    async with api_client(settings) as client:
        state = client.app.state.nabaa
        old = subscription()
        fresh = subscription()
        now = time.time()
        for data, seen in ((old, now - 91 * 86400), (fresh, now - 89 * 86400)):
            sub = to_subscription(SubscriptionIn.model_validate(data), state.policy, settings.topic_ids, int(seen))
            await state.subs.upsert(sub, now_s=int(seen))
        assert await state.subs.expire_unseen(90 * 86400, now_s=now) == 1
        stats = (await client.get("/api/v1/stats", headers=auth())).json()
        assert stats["subscriptions"] == 1
        days = stats["growth"]
        assert sum(d["new"] for d in days.values()) == 2 and sum(d["removed"] for d in days.values()) == 1
        # The reader came back: a refresh keeps them for another 90 days.
        assert (await client.post("/api/v1/subscriptions", json=fresh)).status_code == 200
        assert await state.subs.expire_unseen(90 * 86400, now_s=now + 5 * 86400) == 0
