"""What a newsroom needs (issue 6), in a real Chromium: the dashboard schedules and cancels, sends and follows
an alert live to done, shows its results per push service, sends an update that replaces it, exports CSV
and draws the audience's growth; a reader changes sections after subscribing.

Same machinery as tests/test_browser.py (its fixtures and helpers are reused): the real app under uvicorn,
tests/fakepush.py in a thread, a real delivery worker, Debian's Chromium; skipped loudly without it.
"""

from __future__ import annotations

import csv
import io
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.browser_support import poll, wait_for_state
from tests.conftest import EDITOR_TOKEN
from tests.test_browser import (  # noqa: F401  (fixtures)
    browser,
    open_article,
    open_context,
    row_counts,
    screenshot,
    sign_in,
    site,
    subscribe,
)

pytestmark = pytest.mark.timeout(90)

READERS = 12
SENT_AT_ONCE = 2  # push_per_host_connections: with a slow push service the counts visibly move
SCHEDULED_TITLE = "موجز المساء: أبرز عناوين اليوم"
BREAKING_TITLE = "عاجل: زلزال بقوة 5,2 درجات يضرب إقليم الحسيمة"
UPDATE_TITLE = "تحديث: لا خسائر بشرية في زلزال الحسيمة"


def rows(page):
    return page.locator('[data-nabaa="alerts"] [data-alert-id]')


def row_of(page, alert_id: str):
    return page.locator(f'[data-nabaa="alerts"] [data-alert-id="{alert_id}"]')


def newest_row_id(page, not_in: set[str]) -> str:
    def find():
        ids = rows(page).evaluate_all("(els) => els.map((e) => e.getAttribute('data-alert-id'))")
        fresh = [i for i in ids if i not in not_in]
        return fresh[0] if fresh else None

    return poll(find, "a new row in the alerts list", page=page)


def wait_toast(page, text: str) -> None:
    page.locator('[data-nabaa="toast"] .toast', has_text=text).first.wait_for(state="visible")


def look(page, name: str) -> None:
    """Screenshots to look at (test-artifacts/): the whole page from the top, without toasts or focus rings."""
    page.evaluate("document.fonts.ready")
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); "
                  "document.querySelectorAll('.toast').forEach((t) => t.remove()); }")
    page.mouse.move(0, 0)
    # As tall as the page, so the sticky bar and preview stay where they belong in the picture.
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": page.evaluate("document.documentElement.scrollHeight")})
    screenshot(page, name)
    page.set_viewport_size(size)


def test_dashboard_schedules_cancels_sends_live_updates_and_exports(site, open_context):
    site.restart(push_per_host_connections=SENT_AT_ONCE)
    readers = [site.fake.new_subscriber() for _ in range(READERS)]
    for reader in readers:
        answer = site.api.post("/api/v1/subscriptions", json={**reader.subscription_json(), "lang": "ar"})
        assert answer.status_code == 201, answer.text
    site.fake.default = ("slow", 0.25)

    context = open_context()
    page = context.new_page()
    streams: list[tuple[str, dict]] = []
    page.on("request", lambda r: streams.append((r.url, r.headers)) if "/stream" in r.url else None)
    sign_in(page, site)
    page.locator('[data-nabaa="compose"]').wait_for(state="visible")
    poll(lambda: page.inner_text('[data-nabaa="stat-subscriptions"]') == str(READERS), "the subscriber count")

    # The growth chart: today's bar holds the readers who just subscribed.
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    growth = page.locator('[data-nabaa="growth"]')
    assert growth.locator("svg[role=img] g.growth-day").count() == 30
    assert growth.locator(f'g[data-day="{today}"] rect.growth-new').count() == 1
    assert page.inner_text("#growth-new") == f"+{READERS}"
    # Right to left: today, the newest day, is drawn at the left end.
    bars = growth.locator("g.growth-day rect.growth-hit")
    assert bars.last.bounding_box()["x"] < bars.first.bounding_box()["x"]

    # ---- schedule one for two hours from now: it is listed as scheduled, and cancel works.
    later = datetime.now(ZoneInfo("Africa/Casablanca")) + timedelta(hours=2)
    page.fill("#f-title", SCHEDULED_TITLE)
    page.fill("#f-send-at", later.strftime("%Y-%m-%dT%H:%M"))
    assert "جدولة الإرسال" in page.inner_text('[data-nabaa="send"]')
    page.click('[data-nabaa="send"]')
    wait_toast(page, "تمت جدولة التنبيه")
    scheduled_id = newest_row_id(page, set())
    scheduled = row_of(page, scheduled_id)
    poll(lambda: scheduled.get_attribute("data-status") == "scheduled", "the scheduled row")
    assert site.alert(scheduled_id)["status"] == "scheduled"
    # The time typed, in the browser's zone (its own tz data: Chromium's may differ from Python's).
    typed = page.evaluate("(v) => new Date(v).toISOString()", later.strftime("%Y-%m-%dT%H:%M"))
    assert site.alert(scheduled_id)["send_at"] == typed
    assert scheduled.locator('[data-nabaa="update"]').is_hidden()
    page.click('[data-nabaa="filter"][data-filter="scheduled"]')
    assert page.inner_text('[data-nabaa="filter"][data-filter="scheduled"] .filter-n') == "1"
    scheduled.locator('[data-nabaa="cancel"]').click()
    wait_toast(page, "أُلغي التنبيه المجدول")
    poll(lambda: scheduled.get_attribute("data-status") == "cancelled", "the row to show cancelled", timeout_s=10)
    assert site.alert(scheduled_id)["status"] == "cancelled"
    assert scheduled.locator('[data-nabaa="cancel"]').is_hidden()
    assert scheduled.is_hidden()  # no longer scheduled: out of the "scheduled" filter
    assert page.locator("#alerts-filtered").is_visible()
    page.click('[data-nabaa="filter"][data-filter="all"]')

    # ---- send one now and follow it live while a real worker sends it.
    page.fill("#f-title", BREAKING_TITLE)
    page.fill("#f-body", "لم تُسجَّل خسائر حتى الآن، والسلطات تتابع الوضع")
    page.fill("#f-url", "/society/zilzal")
    page.click('[data-nabaa="send"]')
    wait_toast(page, "تم قبول التنبيه")
    sent_id = newest_row_id(page, {scheduled_id})
    row = row_of(page, sent_id)
    poll(lambda: row.get_attribute("data-live") == "true", "the row to follow its stream", page=page)

    worker = threading.Thread(target=site.drain, name="nabaa-drain", daemon=True)
    worker.start()
    seen: list[tuple[str | None, int]] = []

    def watch():
        seen.append((row.get_attribute("data-status"), int(row_counts(row)["sent"])))
        return seen[-1][0] == "done"

    poll(watch, "the row to reach done", timeout_s=40, interval_s=0.05, page=page, describe=lambda: seen[-5:])
    worker.join(30)
    assert not worker.is_alive()
    moving = [sent for status, sent in seen if status == "sending" and 0 < sent < READERS]
    assert moving, f"the counts never showed a sending alert part way: {seen}"
    assert [sent for _, sent in seen] == sorted(sent for _, sent in seen), "a count went backwards"
    assert row_counts(row) | {"delivered": "0", "clicked": "0"} == {
        "targeted": str(READERS), "sent": str(READERS), "gone": "0", "failed": "0", "pending": "0",
        "delivered": "0", "clicked": "0"}
    poll(lambda: row.get_attribute("data-live") is None, "the stream to end with the alert", page=page)
    # The stream carried the token in its header, never in its URL.
    assert streams and all("?" not in url and EDITOR_TOKEN not in url for url, _ in streams)
    assert all(headers.get("authorization") == f"Bearer {EDITOR_TOKEN}" for _, headers in streams)

    # Readers' service workers report back: CTR is clicks per delivered notification.
    for kind in ("delivered", "delivered", "delivered", "delivered", "clicked"):
        answer = site.api.post("/api/v1/events", json={"type": kind, "alert": sent_id})
        assert answer.status_code == 202, answer.text
    poll(lambda: row.locator(".count-ctr .count-v").inner_text() == "25%", "the CTR tile", timeout_s=10,
         describe=lambda: row.locator(".count-ctr .count-v").inner_text())
    assert row_counts(row)["delivered"] == "4" and row_counts(row)["clicked"] == "1"

    # ---- the results per push service, on expanding the row.
    details = row.locator('[data-nabaa="details"]')
    assert details.get_attribute("aria-expanded") == "false"
    details.click()
    breakdown = row.locator('[data-nabaa="breakdown"]')
    breakdown.wait_for(state="visible")
    host_row = breakdown.locator('tr[data-push-service="127.0.0.1"]')
    assert host_row.locator("td.svc-sent").inner_text() == str(READERS)
    assert host_row.locator("td.svc-gone").inner_text() == "0"
    assert details.get_attribute("aria-expanded") == "true"
    look(page, "dashboard-newsroom")

    # ---- an update: the form starts from the sent alert, and the new one replaces it on devices.
    row.locator('[data-nabaa="update"]').click()
    page.locator('[data-nabaa="replacing"]').wait_for(state="visible")
    assert page.input_value("#f-title") == BREAKING_TITLE
    assert page.input_value("#f-url") == "/society/zilzal"
    assert BREAKING_TITLE in page.inner_text('[data-nabaa="replacing"]')
    assert "أرسل التحديث" in page.inner_text('[data-nabaa="send"]')
    page.fill("#f-title", UPDATE_TITLE)
    look(page, "dashboard-update")
    page.click('[data-nabaa="send"]')
    wait_toast(page, "تم قبول التحديث")
    update_id = newest_row_id(page, {scheduled_id, sent_id})
    assert page.locator('[data-nabaa="replacing"]').is_hidden()
    assert site.alert(update_id)["replaces"] == sent_id
    update_row = row_of(page, update_id)
    assert update_row.locator(".chip-update").is_visible()
    site.fake.default = 201
    site.drain()
    poll(lambda: update_row.get_attribute("data-status") == "done", "the update to be sent", timeout_s=15)
    first, second = site.fake.records_for(readers[0])
    assert second.payload["title"] == UPDATE_TITLE
    assert second.payload["tag"] == first.payload["tag"] == sent_id and second.payload["renotify"] is True

    # ---- CSV: fetched with the token in its header and saved as a file.
    with page.expect_download() as download:
        page.click('[data-nabaa="export"]')
    saved = download.value
    assert saved.suggested_filename.startswith("nabaa-alerts-") and saved.suggested_filename.endswith(".csv")
    body = open(saved.path(), "rb").read()
    assert body.startswith(b"\xef\xbb\xbf")
    table = {r["id"]: r for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""))}
    assert set(table) == {scheduled_id, sent_id, update_id}
    assert table[sent_id]["title"] == BREAKING_TITLE and table[sent_id]["ctr"] == "0.25"
    assert table[scheduled_id]["status"] == "cancelled"
    # Without the header the export is refused: the dashboard never puts the token in a URL.
    assert httpx.get(site.origin + "/api/v1/alerts.csv").status_code == 401
    # Under the page's CSP (no inline styles, nothing from elsewhere) nothing was refused, nothing threw.
    assert not [line for line in site.logs if "Content Security Policy" in line or line.startswith("page error")], \
        site.logs


def test_preview_follows_the_alerts_language(site, open_context):
    page = open_context().new_page()
    sign_in(page, site)
    page.locator('[data-nabaa="compose"]').wait_for(state="visible")
    page.fill("#f-title", "عاجل: افتتاح المعرض الدولي للكتاب")
    title = page.locator('.pv-android [data-pv="title"]')
    assert title.get_attribute("dir") == "rtl" and title.get_attribute("lang") == "ar"
    assert page.inner_text('.pv-android [data-pv-action="open"]') == "اقرأ الآن"
    page.fill("#f-title", "Breaking: the book fair opens in Rabat")
    assert title.get_attribute("dir") == "ltr" and title.get_attribute("lang") == "en"
    assert page.inner_text('.pv-desktop [data-pv-action="open"]') == "Read now"
    page.select_option("#f-lang", "ar")  # readers of Arabic: shown right to left, whatever the title
    assert title.get_attribute("dir") == "rtl"


def test_reader_changes_sections_after_subscribing(site, open_context):
    reader = site.fake.new_subscriber()
    context = open_context(reader)
    page, requests = open_article(context, site)
    subscribe(page)
    [stored] = site.stored_subscriptions()
    assert stored.topics == ()

    # Subscribed, the sections are still there to change; a change is saved on the same subscription.
    topics = page.locator('[data-nabaa="topics"]')
    assert topics.is_visible()
    page.check('[data-nabaa="topics"] input[value="sports"]')
    page.check('[data-nabaa="topics"] input[value="culture"]')
    poll(lambda: "تم حفظ اختيارك للأقسام" in page.inner_text('[data-nabaa="status"]'), "the saved message")
    assert wait_for_state(page, "subscribed") == "subscribed"
    [stored] = site.stored_subscriptions()
    assert stored.id == page.evaluate("localStorage.getItem('nabaa.subscriptionId')")
    assert sorted(stored.topics) == ["culture", "sports"]
    assert "رياضة" in page.inner_text('[data-nabaa="status"]')

    # A later visit keeps the choice, and unticking everything means every section again.
    page.reload()
    wait_for_state(page, "subscribed")
    assert page.is_checked('[data-nabaa="topics"] input[value="sports"]')
    page.uncheck('[data-nabaa="topics"] input[value="sports"]')
    page.uncheck('[data-nabaa="topics"] input[value="culture"]')
    poll(lambda: site.stored_subscriptions()[0].topics == (), "the sections to be cleared on the server")
    assert len(site.stored_subscriptions()) == 1
    posts = [r for r in requests if r[:2] == ("POST", "/api/v1/subscriptions")]
    assert posts and all(status in (200, 201) for *_, status in posts)
    assert site.stats()["by_topic"]["sports"] == 1  # "everything" counts in every section
