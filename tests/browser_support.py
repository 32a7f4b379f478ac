"""Support for the real-browser tests (tests/test_browser.py): Debian's Chromium driven by Playwright's
sync API, the app served by a real uvicorn on 127.0.0.1, the subscribe stub, polling and screenshots.

Follows /work/shared/docs/browser-testing.md: the launch flags below are the ones it gives; the
subscription is a stub built on PushSubscription.prototype (the real subscribe() never settles
without Google's servers); pushes reach the service worker through CDP ServiceWorker.deliverPushMessage;
notifications are read by polling getNotifications() with page.evaluate.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("NABAA_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL_HINT = "apt-get install -y chromium"

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
REFERENCE = Path(__file__).resolve().parent / "reference"

# Generous: a loaded 2-core machine. No assertion ever waits on a fixed sleep; these are upper bounds.
TIMEOUT_S = 20.0  # generous: a loaded 2-core machine runs Chromium, the API and a worker at once
PAGE_TIMEOUT_MS = 15_000


def chromium_or_skip() -> str:
    """The Chromium binary, or a loud skip that says how to install it."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"BROWSER TESTS NOT RUN: no Chromium at {CHROMIUM}. Install it with `{INSTALL_HINT}` "
                    f"(or point NABAA_CHROMIUM at a Chromium binary); never `playwright install`.")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("BROWSER TESTS NOT RUN: Python Playwright is missing; `pip install -e '.[test]'`")
    return CHROMIUM


# --------------------------------------------------------------------------- running things elsewhere


def launch_browser():
    """Headless Debian Chromium, launched as browser-testing.md says (a generator for a module fixture)."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


def stored_subscriptions(settings) -> list:
    """Every subscription in the store of `settings`, read from the test's thread."""
    from core.store import Store
    from core.subscriptions import SubscriptionStore

    async def read():
        store = await Store.open(settings.redis_url, settings.redis_prefix)
        try:
            return [sub async for sub in SubscriptionStore(store).iterate()]
        finally:
            await store.close()

    return run_async(read)


def run_async(factory: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """Run a coroutine on a fresh event loop in another thread and return its result.

    Playwright's sync API keeps its own loop on this thread, so asyncio.run() here is not an option."""
    box: queue.Queue = queue.Queue()

    def target() -> None:
        try:
            box.put((True, asyncio.run(factory())))
        except BaseException as exc:  # handed back to the caller
            box.put((False, exc))

    thread = threading.Thread(target=target, name="nabaa-run-async", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"coroutine did not finish within {timeout_s} s")
    ok, value = box.get_nowait()
    if not ok:
        raise value
    return value


class LiveServer:
    """The real app (`service.app.create_app`) under uvicorn in a background thread.

    The socket is bound first, so the origin (and therefore SITE_ORIGIN) is known before the settings
    are made: `LiveServer()` → `.origin` → settings → `.start(settings)`. `LiveServer(port)` binds that
    port again (a restart on the same origin, which keeps the browser's storage and service worker)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, settings) -> "LiveServer":
        import uvicorn

        from service.app import create_app

        config = uvicorn.Config(create_app(settings), log_config=None, log_level="warning", access_log=False,
                                lifespan="on", ws="none", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)

        def serve() -> None:
            try:
                self.server.run(sockets=[self.sock])
            except BaseException as exc:  # reported by start() or stop()
                self.error = exc

        self.thread = threading.Thread(target=serve, name="nabaa-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start within 20 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
        self.sock.close()


# --------------------------------------------------------------------------- the page side


def subscribe_stub(*subscriptions: dict) -> str:
    """An init script replacing PushManager.prototype.subscribe/getSubscription.

    The n-th subscribe() in this browser context hands out the n-th of `subscriptions` (the last one
    again once they run out), as an object built on PushSubscription.prototype whose toJSON() answers
    that endpoint and keys, and whose options.applicationServerKey is the key it was made with. It is
    kept in localStorage, so a reload finds it again, as in a real browser; its unsubscribe() forgets it.
    subscribe() without notification permission fails like Chromium's: NotAllowedError.
    `window.__nabaaPush` records this page's calls: `subscribeKeys` (base64url of each
    applicationServerKey passed to subscribe), `subscribeCalls`, `getCalls`, `unsubscribes`."""
    return """
(() => {
  const FAKES = %s;
  const STORE = "__nabaaFakeSubscription";
  const COUNT = "__nabaaFakeSubscribeCount";
  if (typeof PushManager === "undefined" || typeof PushSubscription === "undefined") return;
  const log = { subscribeKeys: [], subscribeCalls: 0, getCalls: 0, unsubscribes: 0 };
  Object.defineProperty(window, "__nabaaPush", { value: log });

  const b64url = (bytes) => btoa(String.fromCharCode.apply(null, Array.from(bytes)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const unb64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const toBytes = (key) => {
    if (typeof key === "string") return unb64url(key);
    if (key instanceof ArrayBuffer) return new Uint8Array(key);
    return new Uint8Array(key.buffer, key.byteOffset, key.byteLength);
  };

  function make(saved) {
    const fake = FAKES[Math.min(saved.i, FAKES.length - 1)];
    const sub = Object.create(PushSubscription.prototype);
    Object.defineProperties(sub, {
      endpoint: { value: fake.endpoint, enumerable: true },
      expirationTime: { value: null, enumerable: true },
      options: { value: Object.freeze({ userVisibleOnly: true, applicationServerKey: unb64url(saved.key).buffer }),
                 enumerable: true },
      getKey: { value: (name) => (name === "p256dh" || name === "auth") ? unb64url(fake.keys[name]).buffer : null },
      toJSON: { value: () => ({ endpoint: fake.endpoint, expirationTime: null,
                                keys: { p256dh: fake.keys.p256dh, auth: fake.keys.auth } }) },
      unsubscribe: { value: () => { log.unsubscribes += 1; localStorage.removeItem(STORE); return Promise.resolve(true); } }
    });
    return sub;
  }

  PushManager.prototype.subscribe = function (options) {
    log.subscribeCalls += 1;
    if (Notification.permission !== "granted") {
      return Promise.reject(new DOMException("Registration failed - permission denied", "NotAllowedError"));
    }
    const key = b64url(toBytes(options.applicationServerKey));
    log.subscribeKeys.push(key);
    const i = Number(localStorage.getItem(COUNT) || 0);
    localStorage.setItem(COUNT, String(i + 1));
    const saved = { key, i };
    localStorage.setItem(STORE, JSON.stringify(saved));
    return Promise.resolve(make(saved));
  };
  PushManager.prototype.getSubscription = function () {
    log.getCalls += 1;
    const raw = localStorage.getItem(STORE);
    return Promise.resolve(raw ? make(JSON.parse(raw)) : null);
  };
})();
""" % json.dumps(list(subscriptions))


def poll(fn: Callable[[], Any], what: str, timeout_s: float = TIMEOUT_S, interval_s: float = 0.05, *,
         page=None, describe: Callable[[], Any] | None = None) -> Any:
    """Call fn until it returns something truthy; the failure message names what and shows the last value
    (or describe()). With `page`, the pause between calls is page.wait_for_timeout, so Playwright keeps
    dispatching events (CDP, console) while we wait; a plain time.sleep would hold them back."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            shown = describe() if describe is not None else last
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last seen: {shown!r}")
        if page is not None:
            page.wait_for_timeout(interval_s * 1000)
        else:
            time.sleep(interval_s)


def widget_state(page) -> str | None:
    return page.evaluate(
        "() => { const w = document.querySelector('[data-nabaa=\"widget\"]'); return w && w.getAttribute('data-state'); }")


def wait_for_state(page, *states: str, timeout_s: float = TIMEOUT_S) -> str:
    def describe():
        return {"state": widget_state(page), "status": page.evaluate(
            "() => { const s = document.querySelector('[data-nabaa=\"status\"]'); return s && s.innerText; }")}

    return poll(lambda: (s := widget_state(page)) in states and s, f"widget data-state in {states}", timeout_s,
                describe=describe)


NOTIFICATIONS_JS = """async () => {
  const reg = await navigator.serviceWorker.ready;
  return (await reg.getNotifications()).map((n) => ({
    title: n.title, body: n.body, dir: n.dir, lang: n.lang, tag: n.tag, icon: n.icon, badge: n.badge,
    image: n.image, data: n.data
  }));
}"""


def notifications(page) -> list[dict]:
    return page.evaluate(NOTIFICATIONS_JS)


# --------------------------------------------------------------------------- screenshots


def image_difference(actual: Path, reference: Path) -> float:
    """Mean absolute difference of the two images' RGB values, 0–255, after a small blur.

    The blur (a 4× downscale) forgives sub-pixel anti-aliasing; a moved block, a missing glyph run or
    a colour change still shows. Images of different sizes compare as 255 (completely different)."""
    from PIL import Image, ImageChops, ImageStat

    with Image.open(actual) as a, Image.open(reference) as b:
        if a.size != b.size:
            return 255.0
        size = (max(1, a.width // 4), max(1, a.height // 4))
        small_a = a.convert("RGB").resize(size, Image.Resampling.BOX)
        small_b = b.convert("RGB").resize(size, Image.Resampling.BOX)
        diff = ImageChops.difference(small_a, small_b)
        return sum(ImageStat.Stat(diff).mean) / 3


def compare_with_reference(actual: Path, name: str, threshold: float) -> float:
    """Compare a screenshot with tests/reference/<name>.png; returns the difference.

    NABAA_UPDATE_REFERENCE=1 makes this run's screenshot the reference. A missing reference fails,
    saying how to make one; a difference over `threshold` fails and leaves <name>-diff.png beside the
    screenshot. Without Pillow: a loud skip that names the dependency (the screenshot is still saved)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        pytest.skip(f"SCREENSHOT NOT COMPARED (saved as {actual}): comparing needs Pillow; add `pillow>=10` to "
                    f"the `test` extra in pyproject.toml")
    reference = REFERENCE / f"{name}.png"
    if os.environ.get("NABAA_UPDATE_REFERENCE") == "1":
        REFERENCE.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(actual, reference)
        return 0.0
    assert reference.is_file(), (f"no reference image {reference}; look at {actual} and, if it is right, run "
                                 f"with NABAA_UPDATE_REFERENCE=1 to make it the reference")
    difference = image_difference(actual, reference)
    if difference > threshold:
        diff_path = actual.with_name(f"{actual.stem}-diff.png")
        _save_diff(actual, reference, diff_path)
        raise AssertionError(
            f"{actual} differs from {reference}: mean absolute difference {difference:.2f} > {threshold}; "
            f"changed pixels in {diff_path}. Look at both; if the change is intended, rerun with "
            f"NABAA_UPDATE_REFERENCE=1")
    return difference


def _save_diff(actual: Path, reference: Path, out: Path) -> None:
    from PIL import Image, ImageChops

    with Image.open(actual) as a, Image.open(reference) as b:
        if a.size != b.size:
            b = b.resize(a.size)
        diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).convert("L").point(lambda v: 255 if v > 16 else 0)
        Image.composite(Image.new("RGB", a.size, (255, 0, 255)), a.convert("RGB"), diff).save(out)
