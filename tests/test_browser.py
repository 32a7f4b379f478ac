"""The reader's and the editor's side in a real Chromium (Debian's, driven by Playwright's sync API).

How, and why this way: /work/shared/docs/browser-testing.md. The app runs under a real uvicorn on
http://127.0.0.1:<port> (loopback http is a secure context, so service workers and PushManager work) with
SITE_ORIGIN set to exactly that origin; the push service is tests/fakepush.py in a thread; the browser's
own push subscription is a stub (tests/browser_support.subscribe_stub) handing out the fake subscriber's
endpoint and keys; what the fake decrypts is handed to the real service worker with CDP
ServiceWorker.deliverPushMessage.

Without /usr/bin/chromium every test here is skipped, loudly, with the command that installs it.
Screenshots go to test-artifacts/ (gitignored) and are compared with tests/reference/*.png;
NABAA_UPDATE_REFERENCE=1 makes this run's screenshots the new references.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.browser_support import (
    ARTIFACTS,
    PAGE_TIMEOUT_MS,
    LiveServer,
    compare_with_reference,
    launch_browser,
    notifications,
    poll,
    run_async,
    stored_subscriptions,
    subscribe_stub,
    wait_for_state,
)
from tests.conftest import EDITOR_TOKEN, auth, drain
from tests.fakepush import FakePushService, Subscriber, b64url_encode

pytestmark = pytest.mark.timeout(60)

VIEWPORT = {"width": 1280, "height": 900}
# Mean absolute RGB difference (0–255, after a 4× downscale) allowed against a reference screenshot.
# Two runs on one machine differ by 0 (the dashboard by ~0.04: a relative time's width moves a masked box);
# the smallest real change measured, the widget's default state against its subscribed one (one card of
# the page), is 2.3.
SCREENSHOT_TOLERANCE = 1.0

# The widget's texts (web/widget.js), as a reader sees them.
PROMPT_AR = "احصل على تحديثات في الوقت الفعلي مباشرة على جهازك، اشترك الآن"
SUBSCRIBED_AR = "أنت مشترك. ستصلك أهم الأخبار فور نشرها."
DENIED_AR = "الإشعارات محظورة لهذا الموقع."
DENIED_HOW_AR = "لإعادة تفعيلها: اضغط رمز القفل أو الإعدادات بجوار عنوان الموقع"
UNSUBSCRIBED_AR = "تم إلغاء اشتراكك، ولن تصلك إشعارات بعد الآن."
HEADLINE_AR = "حموشي يقود وفداً أمنياً مغربياً إلى معرض «IGEF 2025» بأنقرة"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    yield from launch_browser()


@dataclass
class Site:
    """One running Nabaa: the live server, its settings, the fake push service and an HTTP client."""

    server: LiveServer
    settings: Any
    fake: FakePushService
    api: httpx.Client
    make_settings: Any
    logs: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.server.origin

    def config(self) -> dict:
        answer = self.api.get("/api/v1/push/config")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stats(self) -> dict:
        answer = self.api.get("/api/v1/stats", headers=auth())
        assert answer.status_code == 200, answer.text
        return answer.json()

    def alert(self, alert_id: str) -> dict:
        answer = self.api.get(f"/api/v1/alerts/{alert_id}", headers=auth())
        assert answer.status_code == 200, answer.text
        return answer.json()

    def send_alert(self, **fields) -> str:
        answer = self.api.post("/api/v1/alerts", headers=auth(), json=fields)
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    def drain(self) -> None:
        """A real delivery worker, in burst mode, until nothing is left to send."""
        run_async(lambda: drain(self.settings))

    def stored_subscriptions(self) -> list:
        return stored_subscriptions(self.settings)

    def restart(self, **overrides) -> None:
        """Stop the server and start it again on the same origin with other settings."""
        port = self.server.port
        self.server.stop()
        self.server = LiveServer(port)
        self.settings = self.make_settings(site_origin=self.server.origin,
                                           push_allowed_hosts=[f"127.0.0.1:{self.fake.port}"], **overrides)
        self.server.start(self.settings)


@pytest.fixture
def site(make_settings):
    with FakePushService.in_thread() as fake:
        server = LiveServer()
        settings = make_settings(site_origin=server.origin, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        server.start(settings)
        running = Site(server, settings, fake, httpx.Client(base_url=server.origin, timeout=15), make_settings)
        try:
            yield running
        finally:
            running.api.close()
            running.server.stop()
            for line in running.logs:  # shown by pytest when the test failed
                print(line)


@pytest.fixture
def open_context(browser, site):
    """Makes browser contexts for the site (closed after the test).

    permission: "granted", "denied" (as if the reader blocked the site before) or None (never asked:
    headless Chromium then denies the prompt by itself after ~2 s). subscriptions: what the stub hands out."""
    made, sessions = [], []

    def make(*subscriptions: Subscriber, permission: str | None = "granted"):
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, locale="ar-MA",
                                      timezone_id="Africa/Casablanca", color_scheme="light", reduced_motion="reduce")
        made.append(context)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        if permission == "granted":
            context.grant_permissions(["notifications"], origin=site.origin)
        elif permission == "denied":
            blank = context.new_page()
            info = context.new_cdp_session(blank).send("Target.getTargetInfo")
            # Chromium drops the override when the session that set it detaches: kept till the end.
            session = browser.new_browser_cdp_session()
            sessions.append(session)
            session.send("Browser.setPermission", {
                "permission": {"name": "notifications"}, "setting": "denied", "origin": site.origin,
                "browserContextId": info["targetInfo"]["browserContextId"]})
            blank.close()
        if subscriptions:
            context.add_init_script(subscribe_stub(*(s.subscription_json() for s in subscriptions)))
        context.on("console", lambda m: site.logs.append(f"console {m.type}: {m.text}"))
        context.on("weberror", lambda e: site.logs.append(f"page error: {e.error}"))
        return context

    yield make
    for context in made:
        context.close()
    for session in sessions:
        session.detach()


def record_requests(page) -> list[tuple[str, str, int]]:
    """(method, path, status) of every answered request the page makes."""
    seen: list[tuple[str, str, int]] = []
    page.on("response", lambda r: seen.append((r.request.method, httpx.URL(r.url).path, r.status)))
    return seen


def open_article(context, site: Site, state: str = "default"):
    page = context.new_page()
    requests = record_requests(page)
    page.goto(site.origin + "/")
    wait_for_state(page, state)
    assert page.evaluate("window.isSecureContext") is True
    return page, requests


def subscribe(page) -> None:
    page.click('[data-nabaa="subscribe"]')
    wait_for_state(page, "subscribed")


def local(page, key: str) -> str | None:
    return page.evaluate("(k) => localStorage.getItem(k)", key)


def worker_state(page) -> dict:
    """What the service worker remembers from the widget (its nabaa-ping answer)."""
    return page.evaluate("""async () => {
      const reg = await navigator.serviceWorker.ready;
      return await new Promise((resolve, reject) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = (e) => resolve(e.data);
        setTimeout(() => reject(new Error("no answer to nabaa-ping")), 5000);
        reg.active.postMessage({ type: "nabaa-ping" }, [channel.port2]);
      });
    }""")


class PushDelivery:
    """Hands bytes to the site's service worker as its push service would: CDP deliverPushMessage."""

    def __init__(self, context, page, origin: str):
        self.page, self.origin = page, origin
        self.registrations: list[dict] = []
        self.cdp = context.new_cdp_session(page)
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: self.registrations.extend(e["registrations"]))
        self.cdp.send("ServiceWorker.enable")

    def registration_id(self) -> str:
        """The registration of the site's root scope, as CDP names it."""
        def find():
            for reg in reversed(self.registrations):
                if reg["scopeURL"] == self.origin + "/" and not reg.get("isDeleted"):
                    return reg["registrationId"]
            return None

        return poll(find, "the service worker registration in ServiceWorker.workerRegistrationUpdated",
                    page=self.page, describe=lambda: self.registrations)

    def push(self, data: str) -> None:
        # A wrong id or origin is answered {} too: the caller checks that a notification appears.
        self.cdp.send("ServiceWorker.deliverPushMessage",
                      {"origin": self.origin, "registrationId": self.registration_id(), "data": data})


def service_worker(context, origin: str):
    return poll(lambda: next((w for w in context.service_workers if w.url == origin + "/sw.js"), None),
                "the service worker in context.service_workers")


# The real notificationclick listener of sw.js, called from inside the worker with a stand-in event (a
# script-made NotificationEvent cannot waitUntil) whose waitUntil promises are awaited here;
# clients.openWindow is replaced by a recorder (outside a real click the browser refuses to open windows).
CLICK_JS = """async ({ tag, action }) => {
  const opened = [];
  const focused = [];
  self.clients.openWindow = (url) => { opened.push(url); return Promise.resolve(null); };
  const notes = await self.registration.getNotifications({ tag });
  if (notes.length !== 1) throw new Error("expected one notification tagged " + tag + ", found " + notes.length);
  const event = new Event("notificationclick");
  const pending = [];
  Object.defineProperties(event, {
    notification: { value: notes[0] },
    action: { value: action || "" },
    waitUntil: { value: (p) => { pending.push(p); } }
  });
  self.dispatchEvent(event);
  await Promise.all(pending);
  return { opened, waited: pending.length, left: (await self.registration.getNotifications({ tag })).length };
}"""


# --------------------------------------------------------------------------- the whole path


def test_whole_path_subscribe_push_show_click(site, open_context):
    started = time.monotonic()
    reader = site.fake.new_subscriber()
    context = open_context(reader)
    page, requests = open_article(context, site)
    config = site.config()

    # The prompt, as the contract words it.
    prompt = page.locator('[data-nabaa="widget"] .nabaa-title')
    assert PROMPT_AR in prompt.inner_text()
    page.click('[data-nabaa="subscribe"]')
    wait_for_state(page, "subscribed")
    assert SUBSCRIBED_AR in page.inner_text('[data-nabaa="status"]')

    # The page subscribed with the server's VAPID key, once, and stored exactly that subscription.
    push_log = page.evaluate("window.__nabaaPush")
    assert push_log["subscribeKeys"] == [config["vapidPublicKey"]], push_log
    assert ("POST", "/api/v1/subscriptions", 201) in requests
    [stored] = site.stored_subscriptions()
    assert stored.endpoint == reader.endpoint
    assert stored.p256dh == reader.public_key_bytes and stored.auth == reader.auth_secret
    assert stored.lang == "ar" and stored.topics == ()
    assert local(page, "nabaa.subscriptionId") == stored.id
    assert local(page, "nabaa.vapidKey") == config["vapidPublicKey"]
    assert site.stats()["subscriptions"] == 1
    # ... and told the service worker, which puts the id on its events.
    poll(lambda: worker_state(page)["state"].get("id") == stored.id, "the service worker to learn the id")

    # The editor sends; a real worker encrypts and posts to the fake push service, which decrypts.
    title, body = "عاجل: المغرب يحتضن الجمعية العامة للإنتربول", "تنطلق أشغال الدورة الثالثة والتسعين بمراكش 🇲🇦"
    alert_id = site.send_alert(title=title, body=body, url="/?utm_source=nabaa")
    site.drain()
    [record] = site.fake.records_for(reader)
    assert record.error is None and record.status == 201, (record.error, record.status)
    assert b64url_encode(record.vapid_key) == config["vapidPublicKey"]
    payload = record.payload
    assert payload["title"] == title and payload["body"] == body and payload["tag"] == alert_id
    assert site.alert(alert_id)["counts"]["sent"] == 1

    # The decrypted bytes, handed to the service worker as the browser's push service would.
    PushDelivery(context, page, site.origin).push(record.plaintext.decode("utf-8"))

    [shown] = poll(lambda: notifications(page), "the notification to be shown")
    assert shown["title"] == title
    assert shown["body"] == body
    assert shown["dir"] == "rtl" and shown["lang"] == "ar"
    assert shown["tag"] == alert_id
    assert shown["icon"] == site.origin + "/static/icon-192.png"
    assert shown["badge"] == site.origin + "/static/badge-72.png"
    assert shown["data"] == {"url": site.origin + "/?utm_source=nabaa", "id": alert_id}
    poll(lambda: site.alert(alert_id)["counts"]["delivered"] == 1, "counts.delivered == 1")

    # The reader clicks it: the worker opens the article and reports the click.
    clicked = service_worker(context, site.origin).evaluate(CLICK_JS, {"tag": alert_id, "action": ""})
    assert clicked["opened"] == [site.origin + "/?utm_source=nabaa"], clicked
    assert clicked["left"] == 0, "the clicked notification was not closed"
    article = context.new_page()
    assert article.goto(clicked["opened"][0]).status == 200
    assert HEADLINE_AR in article.inner_text("h1")
    wait_for_state(article, "subscribed")  # the same reader, still subscribed on the next visit
    counts = poll(lambda: (c := site.alert(alert_id)["counts"])["clicked"] == 1 and c, "counts.clicked == 1")
    assert counts["delivered"] == 1 and counts["targeted"] == 1 and counts["sent"] == 1, counts
    assert not site.fake.errors
    assert time.monotonic() - started < 20


def test_service_worker_opens_only_its_own_origin_and_survives_garbage(site, open_context):
    """Payloads a compromised or buggy sender could make: the worker still shows something and never
    opens another site (test plan, bad input #16)."""
    context = open_context(site.fake.new_subscriber())
    page, _ = open_article(context, site)
    subscribe(page)
    delivery = PushDelivery(context, page, site.origin)
    worker = service_worker(context, site.origin)
    home = site.origin + "/"
    for n, url in enumerate(["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x", "//evil.example/x",
                             "/\\evil.example/x", "https://evil.example/", "vbscript:x"]):
        tag = f"hostile{n}"
        delivery.push(json.dumps({"id": tag, "title": "عاجل", "body": "", "url": url}))
        poll(lambda: any(x["tag"] == tag for x in notifications(page)), f"the notification for {url!r}")
        clicked = worker.evaluate(CLICK_JS, {"tag": tag, "action": ""})
        assert clicked["opened"] == [home], (url, clicked)

    # Not JSON at all: the generic notification, still RTL Arabic, and its click opens the home page.
    delivery.push("\u0000not json")
    [shown] = poll(lambda: [x for x in notifications(page) if x["title"] == "نبأ: خبر جديد"], "the generic notification")
    assert shown["dir"] == "rtl" and shown["lang"] == "ar" and shown["data"]["url"] == "/"

    # English alerts read left to right.
    delivery.push(json.dumps({"id": "en1", "title": "Breaking", "body": "News", "url": "/", "dir": "ltr", "lang": "en"}))
    [english] = poll(lambda: [x for x in notifications(page) if x["tag"] == "en1"], "the English notification")
    assert english["dir"] == "ltr" and english["lang"] == "en"


# --------------------------------------------------------------------------- refusals and unsubscribing


def test_denied_prompt_explains_and_stores_nothing(site, open_context):
    context = open_context(site.fake.new_subscriber(), permission=None)
    page, requests = open_article(context, site)
    page.click('[data-nabaa="subscribe"]')
    # Headless Chromium answers the permission prompt itself: denied.
    wait_for_state(page, "denied", timeout_s=20)
    assert page.evaluate("Notification.permission") == "denied"
    status = page.inner_text('[data-nabaa="status"]')
    assert DENIED_AR in status and DENIED_HOW_AR in status, status
    assert page.locator('[data-nabaa="subscribe"]').is_hidden()
    assert page.evaluate("window.__nabaaPush.subscribeCalls") == 0
    assert not [r for r in requests if r[0] == "POST"], requests
    assert local(page, "nabaa.subscriptionId") is None
    assert site.stored_subscriptions() == []


def test_blocked_site_shows_denied_at_once_and_forgets_a_stale_subscription(site, open_context):
    reader = site.fake.new_subscriber()
    answer = site.api.post("/api/v1/subscriptions", json={**reader.subscription_json(), "lang": "ar"})
    assert answer.status_code == 201, answer.text
    stale_id = answer.json()["id"]
    context = open_context(reader, permission="denied")
    # A reader who subscribed on an earlier visit, then blocked notifications for the site.
    context.add_init_script(f"location.origin === {site.origin!r} && localStorage.getItem('nabaa.subscriptionId') === null"
                            f" && localStorage.setItem('nabaa.subscriptionId', {stale_id!r})")
    page, requests = open_article(context, site, state="denied")
    status = page.inner_text('[data-nabaa="status"]')
    assert DENIED_AR in status and DENIED_HOW_AR in status, status
    # Permission revoked: the widget deletes the subscription the server still had.
    poll(lambda: ("DELETE", f"/api/v1/subscriptions/{stale_id}", 204) in requests, "the stale DELETE")
    assert not [r for r in requests if r[0] == "POST"], requests
    poll(lambda: site.stats()["subscriptions"] == 0, "stats to show no subscription")
    assert local(page, "nabaa.subscriptionId") is None


def test_unsubscribe_deletes_on_the_server(site, open_context):
    reader = site.fake.new_subscriber()
    context = open_context(reader)
    page, requests = open_article(context, site)
    subscribe(page)
    sub_id = local(page, "nabaa.subscriptionId")
    assert site.stats()["subscriptions"] == 1

    page.click('[data-nabaa="unsubscribe"]')
    wait_for_state(page, "unsubscribed")
    assert UNSUBSCRIBED_AR in page.inner_text('[data-nabaa="status"]')
    assert ("DELETE", f"/api/v1/subscriptions/{sub_id}", 204) in requests
    assert page.evaluate("window.__nabaaPush.unsubscribes") == 1
    assert site.stats()["subscriptions"] == 0
    assert site.stored_subscriptions() == []
    assert local(page, "nabaa.subscriptionId") is None
    poll(lambda: worker_state(page)["state"].get("id", "missing") is None, "the service worker to forget the id")
    assert page.locator('[data-nabaa="subscribe"]').is_visible()

    # Nothing is sent to the reader any more.
    alert_id = site.send_alert(title="بعد إلغاء الاشتراك", url="/")
    site.drain()
    assert site.alert(alert_id)["counts"]["targeted"] == 0
    assert site.fake.records_for(reader) == []


def test_vapid_key_change_resubscribes_silently(site, open_context):
    first, second = site.fake.new_subscriber(), site.fake.new_subscriber()
    context = open_context(first, second)
    page, requests = open_article(context, site)
    subscribe(page)
    old_key = site.config()["vapidPublicKey"]
    old_id = local(page, "nabaa.subscriptionId")

    # The operator rotates the VAPID key: the same site, a new key (a fresh DATA_DIR makes one).
    site.restart(data_dir=site.settings.data_dir.parent / "rotated")
    new_key = site.config()["vapidPublicKey"]
    assert new_key != old_key

    requests.clear()
    page.reload()
    wait_for_state(page, "subscribed")
    push_log = page.evaluate("window.__nabaaPush")
    # The old subscription is dropped and a new one made with the new key, without asking the reader.
    assert push_log["unsubscribes"] == 1 and push_log["subscribeKeys"] == [new_key], push_log
    assert ("POST", "/api/v1/subscriptions", 201) in requests
    new_id = local(page, "nabaa.subscriptionId")
    assert new_id != old_id
    poll(lambda: ("DELETE", f"/api/v1/subscriptions/{old_id}", 204) in requests, "the old id's DELETE")
    [stored] = site.stored_subscriptions()
    assert stored.id == new_id and stored.endpoint == second.endpoint
    assert local(page, "nabaa.vapidKey") == new_key

    alert_id = site.send_alert(title="بعد تغيير المفتاح", url="/")
    site.drain()
    assert site.fake.records_for(first) == []
    [record] = site.fake.records_for(second)
    assert record.error is None and b64url_encode(record.vapid_key) == new_key
    assert site.alert(alert_id)["counts"]["sent"] == 1


# --------------------------------------------------------------------------- how it looks


def screenshot(page, name: str, **kwargs) -> Any:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide", **kwargs)
    return path


def test_article_page_screenshots(site, open_context):
    context = open_context(site.fake.new_subscriber())
    page, _ = open_article(context, site)
    page.evaluate("document.fonts.ready")
    assert page.evaluate("document.documentElement.dir") == "rtl"
    # Right to left: the sidebar with the prompt sits to the left of the article.
    article = page.locator("article.article").bounding_box()
    card = page.locator('[data-nabaa="widget"]').bounding_box()
    assert card["x"] + card["width"] <= article["x"] + 1, (card, article)
    assert card["y"] + card["height"] <= VIEWPORT["height"], "the prompt is not in the first screen"

    shots = {"article-default": screenshot(page, "article-default")}
    page.click('[data-nabaa="subscribe"]')
    wait_for_state(page, "subscribed")
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    shots["article-subscribed"] = screenshot(page, "article-subscribed")

    blocked = open_context(site.fake.new_subscriber(), permission="denied")
    denied, _ = open_article(blocked, site, state="denied")
    denied.evaluate("document.fonts.ready")
    shots["article-denied"] = screenshot(denied, "article-denied")

    for name, path in shots.items():
        compare_with_reference(path, name, SCREENSHOT_TOLERANCE)


# --------------------------------------------------------------------------- the dashboard


def sign_in(page, site: Site, token: str = EDITOR_TOKEN) -> None:
    page.goto(site.origin + "/admin/")
    page.locator('[data-nabaa="signin"]').wait_for(state="visible")
    page.fill("#token", token)
    page.click('[data-nabaa="signin-submit"]')


def row_counts(row) -> dict[str, str]:
    return {k: row.locator(f".count-{k} .count-v").inner_text()
            for k in ("targeted", "sent", "gone", "failed", "pending", "delivered", "clicked")}


DONE_DELIVERED = {"targeted": "1", "sent": "1", "gone": "0", "failed": "0", "pending": "0", "delivered": "1",
                  "clicked": "0"}
HTML_TITLE = "عاجل: <b>افتتاح</b> الجمعية العامة للإنتربول بمراكش"


def test_dashboard_sign_in_compose_send_and_watch(site, open_context):
    reader = site.fake.new_subscriber()
    answer = site.api.post("/api/v1/subscriptions", json={**reader.subscription_json(), "lang": "ar"})
    assert answer.status_code == 201, answer.text

    page = open_context().new_page()
    sign_in(page, site, "a-wrong-token-0123456789")
    poll(lambda: page.inner_text("#token-error").strip(), "the wrong-token message")
    assert "الرمز غير صحيح" in page.inner_text("#token-error")
    assert page.locator('[data-nabaa="compose"]').is_hidden()

    page.fill("#token", EDITOR_TOKEN)
    page.click('[data-nabaa="signin-submit"]')
    page.locator('[data-nabaa="compose"]').wait_for(state="visible")
    poll(lambda: page.inner_text('[data-nabaa="stat-subscriptions"]') == "1", "the subscriber count")

    # HTML in the title is text: stored, sent and shown as typed, never as markup (test plan #17).
    page.fill("#f-title", HTML_TITLE)
    page.fill("#f-body", "قادة الشرطة من 196 دولة في المدينة الحمراء")
    page.fill("#f-url", "/?utm_source=dashboard")
    assert page.locator('.pv-desktop [data-pv="title"]').inner_text() == HTML_TITLE
    page.click('[data-nabaa="send"]')
    page.locator('[data-nabaa="toast"] .toast', has_text="تم قبول التنبيه").wait_for(state="visible")

    row = page.locator('[data-nabaa="alerts"] [data-alert-id]').first
    row.wait_for(state="visible")
    alert_id = row.get_attribute("data-alert-id")
    assert site.alert(alert_id)["title"] == HTML_TITLE
    assert row.locator(".alert-title").inner_text() == HTML_TITLE
    assert row.locator(".alert-title b").count() == 0
    assert page.input_value("#f-title") == "", "the form is not cleared after a send"

    site.drain()
    [record] = site.fake.records_for(reader)
    assert record.payload["title"] == HTML_TITLE
    assert record.payload["url"] == site.origin + "/?utm_source=dashboard"
    answer = site.api.post("/api/v1/events", json={"type": "delivered", "alert": alert_id})
    assert answer.status_code == 202, answer.text

    # The list polls every 2 s: the row turns "done" with its counts.
    poll(lambda: row.get_attribute("data-status") == "done", "the row to show done", timeout_s=15)
    poll(lambda: row_counts(row)["delivered"] == "1", "the delivered count in the row", timeout_s=15,
         describe=lambda: row_counts(row))
    assert row_counts(row) == DONE_DELIVERED
    assert page.locator('[data-nabaa="alerts"] [data-alert-id]').count() == 1
    assert site.alert(alert_id)["counts"]["sent"] == 1


def test_dashboard_screenshot(site, open_context):
    reader = site.fake.new_subscriber()
    answer = site.api.post("/api/v1/subscriptions", json={**reader.subscription_json(), "lang": "ar"})
    assert answer.status_code == 201, answer.text
    alert_id = site.send_alert(title=HTML_TITLE, body="قادة الشرطة من 196 دولة في المدينة الحمراء",
                               url="/?utm_source=dashboard")
    site.drain()
    answer = site.api.post("/api/v1/events", json={"type": "delivered", "alert": alert_id})
    assert answer.status_code == 202, answer.text

    page = open_context().new_page()
    sign_in(page, site)
    row = page.locator(f'[data-nabaa="alerts"] [data-alert-id="{alert_id}"]')
    row.wait_for(state="visible")
    poll(lambda: row_counts(row) == DONE_DELIVERED, "the row's counts", describe=lambda: row_counts(row))
    poll(lambda: page.inner_text('[data-nabaa="stat-subscriptions"]') == "1", "the subscriber count")
    page.evaluate("document.fonts.ready")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    # What changes from run to run (times, the server's port) is masked.
    path = screenshot(page, "dashboard", full_page=True,
                      mask=[page.locator(".alert-when"), page.locator("#alerts-updated"),
                            page.locator('[data-pv="origin"]'), page.locator('[data-pv="url"]'),
                            page.locator("#stat-services code.host"), page.locator(".growth-axis")])
    compare_with_reference(path, "dashboard", SCREENSHOT_TOLERANCE)
