"""An alert's results (issue 6): per push service and the click-through rate after a real broadcast, the
live progress stream, and the CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time

import httpx
import pytest

from service import results
from tests.browser_support import LiveServer, poll
from tests.conftest import EDITOR_TOKEN, api_client, auth, drain
from tests.fakepush import FakePushService

PUSH_ZERO = {"sent": 0, "gone": 0, "failed": 0, "retried": 0, "expired": 0}


def parse_events(text: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a text/event-stream body; comment lines are skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


def read_csv(body: bytes) -> list[dict]:
    assert body.startswith(b"\xef\xbb\xbf"), "no UTF-8 byte-order mark: Excel would misread the Arabic"
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


async def event(client, kind: str, alert_id: str) -> None:
    answer = await client.post("/api/v1/events", json={"type": kind, "alert": alert_id})
    assert answer.status_code == 202, answer.text


async def test_results_per_push_service_and_click_rate_after_a_broadcast(make_settings):
    async with FakePushService() as fake:
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{fake.port}", f"localhost:{fake.port}"])
        sent_a, gone_a, refused_a = (fake.new_subscriber() for _ in range(3))  # push service "127.0.0.1"
        sent_b, busy_b = (fake.new_subscriber(host_alias="localhost") for _ in range(2))  # push service "localhost"
        fake.script(gone_a, [], then=410)
        fake.script(refused_a, [], then=400)
        fake.script(busy_b, [(503, {"Retry-After": "1"})])  # once, then 201
        async with api_client(settings) as client:
            for reader in (sent_a, gone_a, refused_a, sent_b, busy_b):
                answer = await client.post("/api/v1/subscriptions", json=reader.subscription_json())
                assert answer.status_code == 201, answer.text
            alert_id = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "نتائج الإرسال"})).json()["id"]
            before = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
            assert before["by_push_service"] == {} and before["ctr"] is None

            await drain(settings)
            after = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
            assert after["status"] == "done"
            assert after["counts"] | {"pending": 0} == {"targeted": 5, "sent": 3, "gone": 1, "failed": 1,
                                                        "pending": 0, "delivered": 0, "clicked": 0}
            assert after["by_push_service"] == {
                "127.0.0.1": {**PUSH_ZERO, "sent": 1, "gone": 1, "failed": 1},
                "localhost": {**PUSH_ZERO, "sent": 2, "retried": 1},
            }
            assert after["ctr"] == 0.0  # sent, nobody clicked yet

            # No delivery reported yet: clicks per notification sent.
            await event(client, "clicked", alert_id)
            assert (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()["ctr"] == 0.3333
            # Once service workers report deliveries: clicks per notification delivered.
            await event(client, "delivered", alert_id)
            await event(client, "delivered", alert_id)
            shown = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
            assert shown["ctr"] == 0.5
            listed = (await client.get("/api/v1/alerts", headers=auth())).json()["alerts"]
            assert listed == [shown]  # the list shows the same results

            exported = await client.get("/api/v1/alerts.csv", headers=auth())
    [row] = read_csv(exported.content)
    assert {k: row[k] for k in ("id", "status", "targeted", "sent", "gone", "failed", "delivered", "clicked", "ctr")} == {
        "id": alert_id, "status": "done", "targeted": "5", "sent": "3", "gone": "1", "failed": "1",
        "delivered": "2", "clicked": "1", "ctr": "0.5"}


async def test_the_stream_follows_a_broadcast_to_done(make_settings, monkeypatch):
    monkeypatch.setattr(results, "STREAM_TICK_S", 0.05)
    async with FakePushService() as fake:
        fake.default = ("slow", 0.15)  # 24 readers, 4 at a time: about a second of sending
        settings = make_settings(push_allowed_hosts=[f"127.0.0.1:{fake.port}"], push_per_host_connections=4)
        async with api_client(settings) as client:
            for _ in range(24):
                answer = await client.post("/api/v1/subscriptions", json=fake.new_subscriber().subscription_json())
                assert answer.status_code == 201, answer.text
            alert_id = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "مباشر"})).json()["id"]
            streaming = asyncio.create_task(client.get(f"/api/v1/alerts/{alert_id}/stream", headers=auth()))
            await asyncio.sleep(0.2)  # the stream shows the alert queued before any worker takes it
            await drain(settings)
            answer = await asyncio.wait_for(streaming, 10)
            final = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
            assert client.app.state.nabaa.open_streams == 0
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["cache-control"] == "no-store"
    events = parse_events(answer.text)
    *updates, (last_name, last) = events
    assert last_name == "end" and last == {"id": alert_id, "reason": "done"}
    assert all(name == "alert" for name, _ in updates)
    views = [view for _, view in updates]
    statuses = [view["status"] for view in views]
    assert statuses[0] == "queued" and statuses[-1] == "done" and "sending" in statuses, statuses
    sent = [view["counts"]["sent"] for view in views]
    assert sent == sorted(sent) and len(set(sent)) >= 3, sent  # it moved, several times, never back
    assert views[-1] == final and final["counts"]["sent"] == 24
    assert all(a != b for a, b in zip(views, views[1:])), "an event that changed nothing"


async def test_the_stream_ends_on_time_and_refuses_what_it_should(make_settings, monkeypatch):
    monkeypatch.setattr(results, "STREAM_TICK_S", 0.02)
    monkeypatch.setattr(results, "STREAM_MAX_S", 0.3)
    async with api_client(make_settings()) as client:
        alert_id = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "لا عامل"})).json()["id"]
        started = time.monotonic()
        answer = await client.get(f"/api/v1/alerts/{alert_id}/stream", headers=auth())  # no worker: stays queued
        assert time.monotonic() - started < 5
        assert [name for name, _ in parse_events(answer.text)] == ["alert", "end"]
        assert parse_events(answer.text)[-1][1] == {"id": alert_id, "reason": "timeout"}

        # The token goes in the header, never in the URL.
        assert (await client.get(f"/api/v1/alerts/{alert_id}/stream")).status_code == 401
        assert (await client.get(f"/api/v1/alerts/{alert_id}/stream?token={EDITOR_TOKEN}")).status_code == 401
        for unknown in ("0000000000000000000ff", "nope", "0000000000000000000ff%0A"):
            missing = await client.get(f"/api/v1/alerts/{unknown}/stream", headers=auth())
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "alert_not_found"

        later = (await client.post("/api/v1/alerts", headers=auth(), json={
            "title": "لاحقاً", "send_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600))}))
        later_id = later.json()["id"]
        assert (await client.delete(f"/api/v1/alerts/{later_id}", headers=auth())).status_code == 204
        ended = parse_events((await client.get(f"/api/v1/alerts/{later_id}/stream", headers=auth())).text)
        assert [name for name, _ in ended] == ["alert", "end"] and ended[-1][1]["reason"] == "cancelled"

        monkeypatch.setattr(results, "MAX_STREAMS", 0)
        full = await client.get(f"/api/v1/alerts/{alert_id}/stream", headers=auth())
        assert full.status_code == 503 and full.headers["retry-after"]


def test_the_stream_stops_when_the_client_goes(make_settings):
    """Over real HTTP: the first event arrives at once, and a client that hangs up frees its stream."""
    server = LiveServer()
    server.start(make_settings(site_origin=server.origin))
    try:
        state = server.server.config.app.state.nabaa
        with httpx.Client(base_url=server.origin, timeout=10) as client:
            alert_id = client.post("/api/v1/alerts", headers=auth(), json={"title": "قيد الانتظار"}).json()["id"]
            with client.stream("GET", f"/api/v1/alerts/{alert_id}/stream", headers=auth()) as answer:
                assert answer.status_code == 200
                lines = answer.iter_lines()
                assert next(lines) == "event: alert"
                assert json.loads(next(lines).removeprefix("data: "))["status"] == "queued"
                assert state.open_streams == 1
            poll(lambda: state.open_streams == 0, "the stream to end after the client hung up", timeout_s=5)
    finally:
        server.stop()


FORMULAS = ['=HYPERLINK("https://evil.example","انقر")', "+212 600 000 000", "-5 درجات في إفران", "@SUM(A1:A9)"]
ARABIC = 'عاجل: "زلزال" بقوة 5,2 درجات، في الحسيمة'


async def test_csv_export_escapes_arabic_and_formulas(make_settings):
    settings = make_settings()
    async with api_client(settings) as client:
        ids = {}
        for title in (ARABIC, *FORMULAS):
            answer = await client.post("/api/v1/alerts", headers=auth(), json={"title": title, "topic": "sports"})
            assert answer.status_code == 202, answer.text
            ids[answer.json()["id"]] = title
        exported = await client.get("/api/v1/alerts.csv", headers=auth())
        assert exported.status_code == 200
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"
        disposition = exported.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="nabaa-alerts-') and disposition.endswith('.csv"')
        quoted = '"' + ARABIC.replace('"', '""') + '"'  # the comma and the quotes: quoted, quotes doubled
        assert f",{quoted},sports,".encode() in exported.content
        rows = read_csv(exported.content)
        assert list(rows[0]) == list(results.CSV_COLUMNS)
        assert [row["id"] for row in rows] == list(reversed(ids))  # newest first
        for row in rows:
            title = ids[row["id"]]
            assert row["title"] == (title if title == ARABIC else "'" + title), row
            assert row["topic"] == "sports" and row["status"] == "queued" and row["ctr"] == ""
            assert row["send_at"] == "" and row["created_at"].endswith("Z")

        assert len(read_csv((await client.get("/api/v1/alerts.csv?limit=2", headers=auth())).content)) == 2
        refused = await client.get("/api/v1/alerts.csv?limit=0", headers=auth())
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "limit"
        assert (await client.get("/api/v1/alerts.csv")).status_code == 401


@pytest.mark.parametrize("value, cell", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("a=b", "a=b"),
    ("", ""), (None, ""), (0, 0), (0.25, 0.25),
])
def test_csv_cell_neutralises_formulas_only(value, cell):
    assert results.csv_cell(value) == cell
