"""The whole path without a browser: subscribe → alert → worker → fake push service decrypts."""

from __future__ import annotations

import pytest

from tests.conftest import api_client, auth, drain
from tests.fakepush import FakePushService


@pytest.fixture
async def fake():
    async with FakePushService() as service:
        yield service


async def test_alert_reaches_every_subscriber_and_decrypts(make_settings, fake):
    settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
    subscribers = [fake.new_subscriber() for _ in range(5)]
    async with api_client(settings) as client:
        config = (await client.get("/api/v1/push/config")).json()
        assert len(config["vapidPublicKey"]) == 87
        for sub in subscribers:
            answer = await client.post("/api/v1/subscriptions", json={**sub.subscription_json(), "lang": "ar"})
            assert answer.status_code == 201, answer.text
        answer = await client.post("/api/v1/alerts", headers=auth(),
                                   json={"title": "عاجل: حموشي في أنقرة", "body": "تفاصيل الزيارة", "url": "/news/1"})
        assert answer.status_code == 202, answer.text
        alert_id = answer.json()["id"]
        await drain(settings)
        status = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
    assert status["status"] == "done"
    assert status["counts"]["targeted"] == 5 and status["counts"]["sent"] == 5
    for sub in subscribers:
        messages = fake.messages_for(sub)
        assert len(messages) == 1
        assert messages[0]["title"] == "عاجل: حموشي في أنقرة"
        assert messages[0]["dir"] == "rtl" and messages[0]["lang"] == "ar" and messages[0]["tag"] == alert_id
        assert messages[0]["url"] == "http://127.0.0.1:8000/news/1"
    assert not fake.errors
