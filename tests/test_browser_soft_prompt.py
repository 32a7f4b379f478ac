"""The widget's soft prompt in a real Chromium: `data-delay-ms` and `data-scroll-percent` (web/README.md).

The test pages are not the product's: each is made here and handed to the browser by Playwright's
`page.route` at a URL of the live site's origin, with the Content-Security-Policy the site's own `/`
answers, so `/widget.js`, `/api/v1/...` and `/sw.js` are the real ones from the real server and the
widget reads its options from its own <script> tag as on any publisher's page. An init script records
when the card's root was inserted and when it lost `hidden` (with the scroll depth at that moment), and
every CSP violation.
"""

from __future__ import annotations

import html

import httpx
import pytest

from tests.browser_support import PAGE_TIMEOUT_MS, LiveServer, launch_browser, poll, wait_for_state

pytestmark = pytest.mark.timeout(60)

VIEWPORT = {"width": 1280, "height": 900}
PAGE_PATH = "/soft-prompt-test.html"

RECORDER_JS = """
(() => {
  const log = { insertedAt: null, shownAt: null, depthAtShow: null, csp: [] };
  Object.defineProperty(window, "__softPrompt", { value: log });
  const depth = () => {
    const d = document.documentElement;
    return (window.scrollY + window.innerHeight) / Math.max(d.scrollHeight, document.body.scrollHeight) * 100;
  };
  document.addEventListener("securitypolicyviolation", (e) => log.csp.push(e.violatedDirective + " " + e.blockedURI));
  new MutationObserver(() => {
    const root = document.querySelector('[data-nabaa="widget"]');
    if (!root) return;
    if (log.insertedAt === null) log.insertedAt = performance.now();
    if (log.shownAt === null && !root.hidden) { log.shownAt = performance.now(); log.depthAtShow = depth(); }
  }).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["hidden"] });
})();
"""

# Scrolls so that the bottom of the window is at `percent` of the page, then lets the scroll event run.
SCROLL_TO_JS = """async (percent) => {
  const height = Math.max(document.documentElement.scrollHeight, document.body.scrollHeight);
  window.scrollTo(0, Math.max(0, height * percent / 100 - window.innerHeight));
  for (let i = 0; i < 3; i++) await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  return (window.scrollY + window.innerHeight) / height * 100;
}"""


def soft_prompt_page(paragraphs: int, **options: str) -> str:
    attributes = "".join(f' {name.replace("_", "-")}="{html.escape(value)}"' for name, value in options.items())
    text = "مراكش تستعد لاحتضان الجمعية العامة الثالثة والتسعين للإنتربول في نونبر المقبل."
    body = "\n".join(f"<p>{n}. {text}</p>" for n in range(paragraphs))
    return (f'<!doctype html><html lang="ar" dir="rtl"><head><meta charset="utf-8"><title>صفحة اختبار</title>'
            f'<script src="/widget.js"{attributes} defer></script></head><body><main>{body}</main></body></html>')


@pytest.fixture(scope="module")
def browser():
    yield from launch_browser()


@pytest.fixture
def site(make_settings):
    server = LiveServer()
    server.start(make_settings(site_origin=server.origin))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def open_page(browser, site):
    """Opens a made-up page of the site with the widget tag carrying `options`; checks no CSP violation."""
    csp = httpx.get(site.origin + "/", timeout=15).headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp, csp
    contexts, pages = [], []

    def make(paragraphs: int = 400, **options: str):
        context = browser.new_context(viewport=VIEWPORT, locale="ar-MA", reduced_motion="reduce")
        contexts.append(context)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.add_init_script(RECORDER_JS)
        body = soft_prompt_page(paragraphs, **options)
        context.route(site.origin + PAGE_PATH, lambda route: route.fulfill(
            status=200, body=body, headers={"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": csp}))
        page = context.new_page()
        pages.append(page)
        page.goto(site.origin + PAGE_PATH)  # returns after the load event
        wait_for_state(page, "default")  # the visit's checks ran, shown or not
        return page

    yield make
    try:
        for page in pages:
            assert record(page)["csp"] == [], "the widget broke the page's Content-Security-Policy"
    finally:
        for context in contexts:
            context.close()


def record(page) -> dict:
    return page.evaluate("({...window.__softPrompt})")


def card_visible(page) -> bool:
    return page.locator('[data-nabaa="widget"]').is_visible()


def wait_until_shown(page, timeout_s: float = 10.0) -> dict:
    poll(lambda: card_visible(page), "the card to show", timeout_s, page=page, describe=lambda: record(page))
    return record(page)


# --------------------------------------------------------------------------- tests


def test_scroll_depth_shows_the_card_once_the_reader_got_that_far(open_page):
    page = open_page(data_scroll_percent="50")
    # Only a scroll depth: no timer, so not shown at load, nor while the reader is short of it.
    assert not card_visible(page) and record(page)["shownAt"] is None
    depth = page.evaluate(SCROLL_TO_JS, 40)
    assert 35 < depth < 50, depth
    assert not card_visible(page), f"shown at {depth:.0f}% of the page"

    depth = page.evaluate(SCROLL_TO_JS, 55)
    shown = wait_until_shown(page)
    assert shown["depthAtShow"] >= 50, shown
    assert page.locator('[data-nabaa="subscribe"]').is_visible()
    assert page.get_attribute('[data-nabaa="widget"]', "data-state") == "default"

    # Once shown it stays, wherever the reader scrolls.
    page.evaluate(SCROLL_TO_JS, 0)
    assert card_visible(page)


def test_delay_shows_the_card_when_the_reader_does_not_scroll_that_far(open_page):
    page = open_page(data_delay_ms="700", data_scroll_percent="90")
    shown = wait_until_shown(page)
    waited = shown["shownAt"] - shown["insertedAt"]
    assert 690 <= waited < 8000, shown  # timers never fire early; a loaded machine may be late
    assert shown["depthAtShow"] < 90, shown


def test_scrolling_far_enough_comes_before_a_long_delay(open_page):
    page = open_page(data_delay_ms="60000", data_scroll_percent="30")
    assert not card_visible(page)
    page.evaluate(SCROLL_TO_JS, 35)
    shown = wait_until_shown(page)
    assert shown["depthAtShow"] >= 30 and shown["shownAt"] - shown["insertedAt"] < 30000, shown


def test_a_page_too_short_to_scroll_shows_the_card_at_load(open_page):
    page = open_page(paragraphs=1, data_scroll_percent="80")
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
    shown = wait_until_shown(page)
    assert shown["depthAtShow"] >= 99, shown


def test_open_shows_a_card_still_waiting_for_its_soft_prompt(open_page):
    page = open_page(data_scroll_percent="90")
    assert not card_visible(page)
    page.evaluate("window.nabaa.open()")
    wait_until_shown(page)
    poll(lambda: page.locator('[data-nabaa="subscribe"]').is_visible(), "the open card's subscribe button", page=page)
    assert page.evaluate("document.activeElement.getAttribute('data-nabaa')") == "subscribe"
    assert page.evaluate("window.nabaa.ready.then((s) => s)") == "default"


@pytest.mark.parametrize("options", [{}, {"data_scroll_percent": "abc"}, {"data_scroll_percent": "0"},
                                     {"data_scroll_percent": "-20"}, {"data_delay_ms": "0", "data_scroll_percent": "90"}],
                         ids=["no-options", "not-a-number", "zero", "negative", "delay-0-wins"])
def test_without_a_usable_scroll_depth_or_with_delay_0_the_card_shows_at_once(open_page, options):
    page = open_page(**options)
    shown = wait_until_shown(page)
    # At once: well before any reader scroll, within the widget's start (stylesheet load included).
    assert shown["shownAt"] - shown["insertedAt"] < 3000, shown
    assert shown["depthAtShow"] < 20, shown
