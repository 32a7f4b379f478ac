"""The widget against Chromium's real `pushManager.subscribe()`, with no subscribe stub.

Chromium's push subscriptions come from its GCM client: a check-in at Google (a protobuf
AndroidCheckinResponse handing out an android id and a security token), then a registration (a form
POST, answered `token=<registration token>`). `--gcm-checkin-url` and `--gcm-registration-url` point both
at FakeGcm below, plain HTTP on 127.0.0.1 (Chromium 156 takes http:// for both);
`--gcm-mcs-endpoint=https://127.0.0.1:1` keeps its message channel on the machine (it never connects, and
subscribing does not need it). A persistent context is needed: an incognito one refuses at once with
`AbortError: Registration failed - permission denied` (/work/shared/docs/browser-testing.md).

What this checks that the stubbed tests (tests/test_browser.py) cannot: that Chromium itself subscribes
with the VAPID key from /api/v1/push/config (the registration's `sender` field), and that the
subscription Chromium really produces — its endpoint, its P-256 `p256dh` and 16-byte `auth` — is taken
and stored by the API as it is. Pushes cannot go further here: the endpoint is Google's.

Seen on Debian's Chromium 156 (built without Google API keys): endpoints are
`https://jmt17.google.com/fcm/send/<token>`; Google Chrome's are on `fcm.googleapis.com`. The default
PUSH_ALLOWED_HOSTS (core/settings.py) lists both.
"""

from __future__ import annotations

import base64
import http.server
import re
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.settings import DEFAULT_PUSH_HOSTS
from tests.browser_support import (LAUNCH_ARGS, PAGE_TIMEOUT_MS, LiveServer, chromium_or_skip, run_async,
                                   stored_subscriptions, wait_for_state)
from tests.conftest import api_client

pytestmark = pytest.mark.timeout(90)

# The host Debian's Chromium puts in its endpoints (Google Chrome: fcm.googleapis.com).
CHROMIUM_FCM_HOST = "jmt17.google.com"
FCM_HOSTS = ("fcm.googleapis.com", CHROMIUM_FCM_HOST)

ERR_PUSH_AR = "رفضت خدمة الإشعارات في متصفحك طلب الاشتراك."
SUBSCRIBED_AR = "أنت مشترك. ستصلك أهم الأخبار فور نشرها."


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- the fake of Google's GCM


@dataclass
class GcmRequest:
    path: str
    authorization: str
    form: dict[str, str]
    answer: str


@dataclass
class FakeGcm:
    """Google's check-in (`/checkin`) and registration (`/c2dm/register3`) endpoints, as Chromium's GCM client
    uses them. `refuse` set: every registration is answered `Error=<refuse>` (HTTP 200, as Google does)."""

    android_id: int = 4_815_162_342_108
    security_token: int = 7_001_002_003_004_005
    refuse: str | None = None
    checkins: int = 0
    registrations: list[GcmRequest] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # X-subtype → the token handed out
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def checkin_answer(self) -> bytes:
        # AndroidCheckinResponse (google_apis/gcm/protocol/checkin.proto): stats_ok = 1 (bool),
        # time_msec = 3 (int64), android_id = 7 (fixed64), security_token = 8 (fixed64).
        millis = int(time.time() * 1000)
        varint = bytearray()
        while True:
            byte, millis = millis & 0x7F, millis >> 7
            varint.append(byte | (0x80 if millis else 0))
            if not millis:
                break
        return (b"\x08\x01" + b"\x18" + bytes(varint) + b"\x39" + struct.pack("<Q", self.android_id)
                + b"\x41" + struct.pack("<Q", self.security_token))

    def register_answer(self, form: dict[str, str]) -> str:
        if self.refuse:
            return f"Error={self.refuse}"
        if form.get("delete") == "true":
            return f"deleted={form.get('app', '')}"
        # Shaped like FCM's: the instance id Chromium sent, then an APA91b registration.
        token = f"{form.get('appid', 'x')}:APA91b{secrets.token_urlsafe(101)[:134]}"
        self.tokens[form.get("X-subtype", "")] = token
        return f"token={token}"

    def web_push_registrations(self, origin: str) -> list[GcmRequest]:
        """The registrations Chromium made for the site's service worker (X-subtype `wp:<origin>/#<id>`)."""
        return [r for r in self.registrations if r.form.get("X-subtype", "").startswith(f"wp:{origin}/#")]

    def __enter__(self) -> "FakeGcm":
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/checkin":
                    fake.checkins += 1
                    self.answer(fake.checkin_answer(), "application/x-protobuf")
                elif self.path == "/c2dm/register3":
                    form = {k: v[0] for k, v in parse_qs(body.decode("ascii"), keep_blank_values=True).items()}
                    answer = fake.register_answer(form)
                    fake.registrations.append(GcmRequest(self.path, self.headers.get("Authorization", ""), form, answer))
                    self.answer(answer.encode("ascii"), "text/plain")
                else:
                    self.send_error(404)

            def answer(self, body: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="nabaa-fake-gcm", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def playwright_sync():
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def gcm():
    with FakeGcm() as fake:
        yield fake


@dataclass
class Site:
    server: LiveServer
    settings: object
    api: httpx.Client
    logs: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.server.origin

    def stored_subscriptions(self) -> list:
        return stored_subscriptions(self.settings)


@pytest.fixture
def site(make_settings):
    server = LiveServer()
    settings = make_settings(site_origin=server.origin, push_allowed_hosts=[*DEFAULT_PUSH_HOSTS, CHROMIUM_FCM_HOST])
    server.start(settings)
    running = Site(server, settings, httpx.Client(base_url=server.origin, timeout=15))
    try:
        yield running
    finally:
        running.api.close()
        server.stop()
        for line in running.logs:  # shown by pytest when the test failed
            print(line)


@pytest.fixture
def real_chromium(playwright_sync, gcm, site, tmp_path):
    """A persistent Chromium profile whose GCM client talks to `gcm`; notifications granted for the site."""
    started = time.monotonic()
    context = playwright_sync.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=chromium_or_skip(), timeout=60_000,
        args=[*LAUNCH_ARGS, f"--gcm-checkin-url={gcm.base}/checkin",
              f"--gcm-registration-url={gcm.base}/c2dm/register3", "--gcm-mcs-endpoint=https://127.0.0.1:1"],
        viewport={"width": 1280, "height": 900}, locale="ar-MA")
    site.logs.append(f"launch took {time.monotonic() - started:.2f} s")
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.grant_permissions(["notifications"], origin=site.origin)
    context.on("console", lambda m: site.logs.append(f"console {m.type}: {m.text}"))
    context.on("weberror", lambda e: site.logs.append(f"page error: {e.error}"))
    try:
        yield context
    finally:
        context.close()
        site.logs.append(f"gcm check-ins: {gcm.checkins}; registrations: {[r.form for r in gcm.registrations]}")


def open_article(context, site: Site):
    page = context.new_page()
    requests: list[tuple[str, str, int]] = []
    page.on("response", lambda r: requests.append((r.request.method, httpx.URL(r.url).path, r.status)))
    page.goto(site.origin + "/")
    wait_for_state(page, "default")
    # No stub anywhere: these are Chromium's own.
    assert page.evaluate("PushManager.prototype.subscribe.toString()").endswith("{ [native code] }")
    return page, requests


BROWSER_SUBSCRIPTION_JS = """async () => {
  const sub = await (await navigator.serviceWorker.ready).pushManager.getSubscription();
  if (!sub) return null;
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  return { json: sub.toJSON(), applicationServerKey: b64(sub.options.applicationServerKey),
           native: Object.getPrototypeOf(sub) === PushSubscription.prototype && !Object.hasOwn(sub, "toJSON") };
}"""


# --------------------------------------------------------------------------- tests


def test_real_subscribe_is_stored_as_chromium_made_it(site, gcm, real_chromium):
    page, requests = open_article(real_chromium, site)
    config = site.api.get("/api/v1/push/config").json()

    clicked = time.monotonic()
    page.click('[data-nabaa="subscribe"]')
    wait_for_state(page, "subscribed", timeout_s=30)
    took = time.monotonic() - clicked
    site.logs.append(f"click → subscribed took {took:.2f} s")
    assert SUBSCRIBED_AR in page.inner_text('[data-nabaa="status"]')

    # Chromium checked in and registered with the server's VAPID key as the sender.
    assert gcm.checkins >= 1
    [registration] = gcm.web_push_registrations(site.origin)
    assert registration.form["sender"] == config["vapidPublicKey"], registration.form
    assert registration.authorization == f"AidLogin {gcm.android_id}:{gcm.security_token}"
    assert registration.form["device"] == str(gcm.android_id)
    token = gcm.tokens[registration.form["X-subtype"]]

    # The browser's own subscription: its endpoint carries the token, its key is the VAPID key.
    browser = page.evaluate(BROWSER_SUBSCRIPTION_JS)
    assert browser["native"], browser
    assert browser["applicationServerKey"] == config["vapidPublicKey"]
    endpoint = browser["json"]["endpoint"]
    match = re.fullmatch(r"https://([a-z0-9.-]+)/fcm/send/(.+)", endpoint)
    assert match and match.group(1) in FCM_HOSTS and match.group(2) == token, endpoint
    site.logs.append(f"endpoint host: {match.group(1)}")

    # ... stored by the API exactly as Chromium made it.
    assert ("POST", "/api/v1/subscriptions", 201) in requests
    [stored] = site.stored_subscriptions()
    assert stored.endpoint == endpoint
    p256dh, auth = b64url_decode(browser["json"]["keys"]["p256dh"]), b64url_decode(browser["json"]["keys"]["auth"])
    assert stored.p256dh == p256dh and stored.auth == auth
    assert len(p256dh) == 65 and p256dh[0] == 4 and len(auth) == 16
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)  # a point on P-256, or it raises
    assert page.evaluate("localStorage.getItem('nabaa.subscriptionId')") == stored.id
    assert took < 15, f"the real subscribe took {took:.1f} s"

    # A later visit finds the same subscription and only refreshes it: no second registration.
    page.reload()
    wait_for_state(page, "subscribed")
    assert len(gcm.web_push_registrations(site.origin)) == 1
    [again] = site.stored_subscriptions()
    assert again.id == stored.id and again.endpoint == endpoint


def test_real_unsubscribe_deletes_at_the_push_service_and_on_the_server(site, gcm, real_chromium):
    page, requests = open_article(real_chromium, site)
    page.click('[data-nabaa="subscribe"]')
    wait_for_state(page, "subscribed", timeout_s=30)
    [stored] = site.stored_subscriptions()
    [registration] = gcm.web_push_registrations(site.origin)

    page.click('[data-nabaa="unsubscribe"]')
    wait_for_state(page, "unsubscribed", timeout_s=30)
    assert ("DELETE", f"/api/v1/subscriptions/{stored.id}", 204) in requests
    assert site.stored_subscriptions() == []
    assert page.evaluate(BROWSER_SUBSCRIPTION_JS) is None
    # Chromium told the registration service to drop that registration.
    deletes = [r for r in gcm.web_push_registrations(site.origin) if r.form.get("delete") == "true"]
    assert [r.form["X-subtype"] for r in deletes] == [registration.form["X-subtype"]], deletes


def test_push_service_refusal_shows_the_error_and_stores_nothing(site, gcm, real_chromium):
    gcm.refuse = "INVALID_SENDER"
    page, requests = open_article(real_chromium, site)
    config = site.api.get("/api/v1/push/config").json()

    page.click('[data-nabaa="subscribe"]')
    wait_for_state(page, "error", timeout_s=30)
    status = page.inner_text('[data-nabaa="status"]')
    assert ERR_PUSH_AR in status, status
    assert "AbortError" in status, status  # the detail line names what the browser said
    assert page.locator('[data-nabaa="subscribe"]').is_visible(), "no way to try again"

    # Chromium asked, with the right sender, and was refused.
    [registration] = gcm.web_push_registrations(site.origin)
    assert registration.form["sender"] == config["vapidPublicKey"]
    assert registration.answer == "Error=INVALID_SENDER"
    assert page.evaluate(BROWSER_SUBSCRIPTION_JS) is None
    assert not [r for r in requests if r[0] == "POST"], requests
    assert site.stored_subscriptions() == []
    assert page.evaluate("localStorage.getItem('nabaa.subscriptionId')") is None


def test_default_allow_list_takes_what_debian_chromium_makes(make_settings):
    """An endpoint shaped exactly as the real subscribe above produced it, against the default allow-list.
    (Sync, the API run on another thread: Playwright's sync API holds this thread's event loop.)"""
    token = f"cIvzSWjqlHU:APA91b{secrets.token_urlsafe(101)[:134]}"
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    body = {"endpoint": f"https://{CHROMIUM_FCM_HOST}/fcm/send/{token}", "expirationTime": None, "lang": "ar",
            "keys": {"p256dh": base64.urlsafe_b64encode(key).rstrip(b"=").decode(),
                     "auth": base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()}}
    settings = make_settings(push_allow_insecure=False)
    assert "fcm.googleapis.com" in settings.push_allowed_hosts  # the defaults

    async def post():
        async with api_client(settings) as client:
            return await client.post("/api/v1/subscriptions", json=body)

    answer = run_async(post)
    assert answer.status_code == 201, answer.text
