/*
 * Nabaa subscribe widget.
 *
 * One tag on any page of the site:   <script src="/widget.js" defer></script>
 * Mounts into <div id="nabaa-widget"></div> when the page has one, else adds a floating card.
 *
 * Options, as attributes of that script tag (all optional):
 *   data-delay-ms        milliseconds before the card appears (soft prompt), default 0
 *   data-scroll-percent  show the card once the reader has seen that much of the page (0–100: from its top
 *                        to the bottom of the window), default off; with data-delay-ms too, whichever
 *                        comes first; alone, there is no timer
 *   data-mount           CSS selector of the mount element, default "#nabaa-widget"
 *   data-api             origin of the Nabaa API, default the origin this script was loaded from
 *   data-sw              service worker URL on the page's origin, default "/sw.js" (scope is always "/")
 *
 * Marked for scripts and tests: the root [data-nabaa="widget"] carries data-state (see STATES);
 * controls: subscribe, unsubscribe, later, bell, retry, status, topics.
 * Works under `default-src 'self'`: no inline styles, no eval, text always set as textContent.
 */
(function () {
  "use strict";

  if (window.nabaa && window.nabaa.version) return; // included twice

  var VERSION = "1";
  var script = document.currentScript;

  function option(name, fallback) {
    var v = script ? script.getAttribute(name) : null;
    return v === null || v === "" ? fallback : v;
  }

  var scriptOrigin = location.origin;
  try {
    if (script && script.src) scriptOrigin = new URL(script.src, location.href).origin;
  } catch (e) { /* keep the page's origin */ }

  var API = String(option("data-api", scriptOrigin)).replace(/\/+$/, "");
  var SW_URL = option("data-sw", "/sw.js");
  // A scroll depth in (0, 100]; anything else (missing, not a number, 0 or less) leaves it off.
  var SCROLL_PERCENT = Math.min(100, parseFloat(option("data-scroll-percent", "")) || 0);
  if (!(SCROLL_PERCENT > 0)) SCROLL_PERCENT = 0;
  // null: no timer (only a scroll depth was given). Neither option: the card shows at once.
  var DELAY_MS = option("data-delay-ms", null) === null && SCROLL_PERCENT ? null
    : Math.max(0, parseInt(option("data-delay-ms", "0"), 10) || 0);
  var MOUNT = option("data-mount", "#nabaa-widget");
  var LATER_MS = 7 * 24 * 3600 * 1000;
  var REQUEST_TIMEOUT_MS = 15000;
  var SUBSCRIBE_TIMEOUT_MS = 30000;

  var KEY = {
    id: "nabaa.subscriptionId",
    vapid: "nabaa.vapidKey",
    topics: "nabaa.topics",
    later: "nabaa.laterUntil"
  };

  /** Every value data-state can take. */
  var STATES = ["loading", "unsupported", "ios-install", "default", "subscribing", "subscribed",
    "unsubscribing", "unsubscribed", "denied", "error", "offline"];

  // ---------------------------------------------------------------- text (data, not markup)

  var T = {
    prompt: { ar: "احصل على تحديثات في الوقت الفعلي مباشرة على جهازك، اشترك الآن",
      en: "Get real-time updates right on your device. Subscribe now" },
    region: { ar: "إشعارات الأخبار", en: "News notifications" },
    subscribe: { ar: "اشترك", en: "Subscribe" },
    unsubscribe: { ar: "إلغاء الاشتراك", en: "Unsubscribe" },
    later: { ar: "لاحقاً", en: "Later" },
    hide: { ar: "إخفاء", en: "Hide" },
    retry: { ar: "إعادة المحاولة", en: "Try again" },
    bell: { ar: "إشعارات الأخبار", en: "News alerts" },
    sections: { ar: "الأقسام", en: "Sections" },
    sectionsHint: { ar: "لا تختر شيئاً لتصلك كل الأخبار.", en: "Tick none to get everything." },
    foot: { ar: "بلا رسائل مزعجة، ويمكنك إلغاء الاشتراك في أي وقت.", en: "No spam. Unsubscribe at any time." },

    loading: { ar: "جارٍ التحقق من حالة الإشعارات…", en: "Checking notification status…" },
    unsupported: { ar: "متصفحك لا يدعم إشعارات الويب. جرّب أحدث إصدار من كروم أو فايرفوكس أو إيدج أو سفاري.",
      en: "Your browser doesn't support web notifications. Try a recent Chrome, Firefox, Edge or Safari." },
    insecure: { ar: "تتطلب الإشعارات اتصالاً آمناً (HTTPS).", en: "Notifications need a secure (HTTPS) connection." },
    iosOld: { ar: "تتطلب الإشعارات على آيفون وآيباد نظام iOS 16.4 أو أحدث.",
      en: "On iPhone and iPad, notifications need iOS 16.4 or later." },
    iosInstall: { ar: "على آيفون وآيباد تعمل الإشعارات بعد إضافة الموقع إلى الشاشة الرئيسية:",
      en: "On iPhone and iPad, notifications work once this site is on your Home Screen:" },
    iosStep1: { ar: "اضغط زر المشاركة (المربع والسهم) في شريط المتصفح.", en: "Tap the Share button (square with an arrow)." },
    iosStep2: { ar: "اختر «إضافة إلى الشاشة الرئيسية».", en: "Choose “Add to Home Screen”." },
    iosStep3: { ar: "افتح الموقع من الأيقونة الجديدة واضغط «اشترك».", en: "Open the site from the new icon and tap Subscribe." },
    notYet: { ar: "الإشعارات غير مفعّلة بعد.", en: "Notifications are not on yet." },
    dismissed: { ar: "لم تُمنح الموافقة على الإشعارات. يمكنك المحاولة مجدداً متى شئت.",
      en: "Permission wasn't given. You can try again whenever you like." },
    subscribing: { ar: "جارٍ الاشتراك…", en: "Subscribing…" },
    subscribed: { ar: "أنت مشترك. ستصلك أهم الأخبار فور نشرها.", en: "You're subscribed. Top stories will reach you as they break." },
    subscribedTopics: { ar: "الأقسام المختارة:", en: "Your sections:" },
    allTopics: { ar: "كل الأقسام", en: "All sections" },
    saving: { ar: "جارٍ حفظ الأقسام…", en: "Saving sections…" },
    saved: { ar: "تم حفظ اختيارك للأقسام.", en: "Your sections were saved." },
    saveFailed: { ar: "تعذّر حفظ الأقسام، ولا يزال اشتراكك قائماً.", en: "Couldn't save your sections; you are still subscribed." },
    unsubscribing: { ar: "جارٍ إلغاء الاشتراك…", en: "Unsubscribing…" },
    unsubscribed: { ar: "تم إلغاء اشتراكك، ولن تصلك إشعارات بعد الآن.", en: "You're unsubscribed and won't get notifications any more." },
    denied: { ar: "الإشعارات محظورة لهذا الموقع.", en: "Notifications are blocked for this site." },
    deniedHow: { ar: "لإعادة تفعيلها: اضغط رمز القفل أو الإعدادات بجوار عنوان الموقع، واجعل «الإشعارات» على «السماح»، ثم أعد تحميل الصفحة.",
      en: "To turn them back on, click the lock or settings icon next to the address, set Notifications to Allow, then reload the page." },
    offline: { ar: "أنت غير متصل بالإنترنت. سنعيد المحاولة تلقائياً عند عودة الاتصال.",
      en: "You're offline. We'll try again automatically when you're back online." },
    errConfig: { ar: "تعذّر الاتصال بخدمة الإشعارات. حاول مجدداً بعد قليل.",
      en: "Couldn't reach the notification service. Please try again shortly." },
    errWorker: { ar: "تعذّر تشغيل خدمة الإشعارات في متصفحك.", en: "The notification service worker couldn't start." },
    errPush: { ar: "رفضت خدمة الإشعارات في متصفحك طلب الاشتراك.", en: "Your browser's push service refused the subscription." },
    errServer: { ar: "رفض الخادم طلب الاشتراك.", en: "The server refused the subscription." },
    errNetwork: { ar: "انقطع الاتصال بالخادم قبل إتمام الطلب.", en: "The connection to the server failed before the request finished." },
    errBusy: { ar: "طلبات كثيرة في وقت قصير. حاول مجدداً بعد قليل.", en: "Too many requests. Please try again shortly." },
    errUnsubscribe: { ar: "تعذّر إلغاء الاشتراك.", en: "Couldn't unsubscribe." }
  };

  var pageLang = (document.documentElement.lang || "ar").toLowerCase();
  var FIRST = pageLang.indexOf("en") === 0 ? "en" : "ar";
  var SECOND = FIRST === "ar" ? "en" : "ar";
  var DIR = { ar: "rtl", en: "ltr" };

  // ---------------------------------------------------------------- small helpers

  var store = {
    get: function (k) { try { return window.localStorage.getItem(k); } catch (e) { return null; } },
    set: function (k, v) { try { window.localStorage.setItem(k, v); } catch (e) { /* storage off */ } },
    del: function (k) { try { window.localStorage.removeItem(k); } catch (e) { /* storage off */ } }
  };

  var uid = 0;
  function nextId(prefix) { uid += 1; return "nabaa-" + prefix + "-" + uid; }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "className") node.className = v;
        else if (k === "text") node.textContent = v;
        else node.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  /** The two languages of one message: first the page's, then the other, each with its lang and dir. */
  function bi(msg, tag) {
    var box = document.createDocumentFragment();
    box.appendChild(el(tag || "span", { className: "nabaa-t1", lang: FIRST, dir: DIR[FIRST], text: msg[FIRST] }));
    box.appendChild(document.createTextNode(" "));
    box.appendChild(el(tag || "span", { className: "nabaa-t2", lang: SECOND, dir: DIR[SECOND], text: msg[SECOND] }));
    return box;
  }

  function plain(msg) { return msg[FIRST] + " · " + msg[SECOND]; }

  function bellIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "nabaa-bell-icon");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6v-5a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z");
    svg.appendChild(path);
    return svg;
  }

  function b64urlToBytes(s) {
    var t = String(s || "").trim().replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
    if (!/^[A-Za-z0-9+/]*$/.test(t)) throw new Error("not base64url");
    while (t.length % 4) t += "=";
    var bin = atob(t);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function sameBytes(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  function withTimeout(promise, ms, what) {
    return new Promise(function (resolve, reject) {
      var t = setTimeout(function () {
        var e = new Error(what + " did not answer in " + Math.round(ms / 1000) + " s");
        e.name = "TimeoutError";
        reject(e);
      }, ms);
      promise.then(function (v) { clearTimeout(t); resolve(v); }, function (e) { clearTimeout(t); reject(e); });
    });
  }

  /** An API failure: status 0 for network errors; code/message/field from {"error": {...}}. */
  function ApiError(status, code, message, field, retryAfter) {
    var e = new Error(message || ("HTTP " + status));
    e.name = "ApiError";
    e.status = status;
    e.code = code || "";
    e.field = field || "";
    e.retryAfter = retryAfter || "";
    return e;
  }

  function api(method, path, body) {
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctrl ? setTimeout(function () { ctrl.abort(); }, REQUEST_TIMEOUT_MS) : null;
    var init = { method: method, headers: { Accept: "application/json" }, credentials: "omit", cache: "no-store" };
    if (ctrl) init.signal = ctrl.signal;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (res) {
      if (timer) clearTimeout(timer);
      if (res.status === 204) return null;
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok) {
          var err = data && data.error ? data.error : {};
          throw ApiError(res.status, err.code, err.message || (res.status + " " + res.statusText).trim(), err.field,
            res.headers.get("Retry-After"));
        }
        return data;
      });
    }, function (e) {
      if (timer) clearTimeout(timer);
      throw ApiError(0, "network", e && e.message ? e.message : "network error");
    });
  }

  // ---------------------------------------------------------------- environment

  var ua = navigator.userAgent || "";
  var isIOS = /iPad|iPhone|iPod/.test(ua) || (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);

  function isStandalone() {
    return navigator.standalone === true ||
      (typeof window.matchMedia === "function" && window.matchMedia("(display-mode: standalone)").matches);
  }

  function hasPush() {
    return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  }

  function permission() {
    return "Notification" in window ? Notification.permission : "default";
  }

  /** Notification.requestPermission, promise or (old Safari) callback form. */
  function requestPermission() {
    return new Promise(function (resolve) {
      var p = Notification.requestPermission(resolve);
      if (p && typeof p.then === "function") p.then(resolve, function () { resolve(Notification.permission); });
    });
  }

  // ---------------------------------------------------------------- the card

  var ui = {};
  var floating = false;
  var expanded = true;
  var current = { state: "loading" };
  var shownPromise = null;  // resolves once the card is on the page
  var showNow = null;       // while the soft prompt waits: shows the card at once
  var config = null;
  var appKey = null;        // Uint8Array of config.vapidPublicKey
  var swRegistration = null;
  var busy = false;         // a click-driven action is running
  var runId = 0;            // the latest init(); older ones stop writing state
  var topicTimer = null;

  function build() {
    var mount = null;
    try { mount = document.querySelector(MOUNT); } catch (e) { mount = null; }
    floating = !mount;

    var panelId = nextId("panel");
    var titleId = nextId("title");

    ui.root = el("section", {
      className: "nabaa-root " + (floating ? "nabaa-floating" : "nabaa-inline"),
      "data-nabaa": "widget", "data-state": "loading", "data-version": VERSION,
      dir: DIR[FIRST], lang: FIRST, "aria-label": plain(T.region)
    });
    ui.root.hidden = true;

    ui.bell = el("button", {
      type: "button", className: "nabaa-bell", "data-nabaa": "bell",
      "aria-controls": panelId, "aria-expanded": "true", "aria-label": plain(T.bell), title: plain(T.bell)
    }, bellIcon(), el("span", { className: "nabaa-bell-label" }, bi(T.bell)));

    ui.title = el("p", { className: "nabaa-title", id: titleId }, bi(T.prompt));
    ui.later = el("button", { type: "button", className: "nabaa-btn nabaa-btn-ghost", "data-nabaa": "later" });
    ui.subscribe = el("button", { type: "button", className: "nabaa-btn nabaa-btn-primary", "data-nabaa": "subscribe" },
      bi(T.subscribe));
    ui.unsubscribe = el("button", { type: "button", className: "nabaa-btn nabaa-btn-secondary", "data-nabaa": "unsubscribe" },
      bi(T.unsubscribe));
    ui.retry = el("button", { type: "button", className: "nabaa-btn nabaa-btn-secondary", "data-nabaa": "retry" },
      bi(T.retry));
    ui.status = el("div", { className: "nabaa-status", "data-nabaa": "status", role: "status", "aria-live": "polite" });

    ui.topicList = el("div", { className: "nabaa-topic-list" });
    ui.topics = el("fieldset", { className: "nabaa-topics", "data-nabaa": "topics" },
      el("legend", { className: "nabaa-legend" }, bi(T.sections)),
      el("p", { className: "nabaa-hint" }, bi(T.sectionsHint)),
      ui.topicList);
    ui.topics.hidden = true;

    ui.panel = el("div", { className: "nabaa-panel", id: panelId, role: "group", "aria-labelledby": titleId, tabindex: "-1" },
      el("div", { className: "nabaa-head" },
        el("span", { className: "nabaa-badge", "aria-hidden": "true" }, bellIcon()),
        ui.title),
      ui.topics,
      el("div", { className: "nabaa-actions" }, ui.subscribe, ui.unsubscribe, ui.retry, ui.later),
      ui.status,
      el("p", { className: "nabaa-foot" }, bi(T.foot)));

    ui.root.appendChild(ui.panel);
    ui.root.appendChild(ui.bell);

    ui.subscribe.addEventListener("click", onSubscribe);
    ui.unsubscribe.addEventListener("click", onUnsubscribe);
    ui.retry.addEventListener("click", function () { init(); });
    ui.later.addEventListener("click", onLater);
    ui.bell.addEventListener("click", function () { setExpanded(floating ? !expanded : true, true); });
    ui.root.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && floating && expanded) { setExpanded(false, true); }
    });
    ui.topicList.addEventListener("change", onTopicChange);

    (mount || document.body).appendChild(ui.root);
  }

  function setExpanded(open, moveFocus) {
    expanded = open;
    ui.panel.hidden = !open;
    ui.bell.setAttribute("aria-expanded", open ? "true" : "false");
    // Inline, the bell is only the way back to a collapsed card; floating, it is always there.
    ui.bell.hidden = !floating && open;
    ui.root.classList.toggle("nabaa-collapsed", !open);
    if (moveFocus) {
      if (open) {
        var target = [ui.subscribe, ui.unsubscribe, ui.retry, ui.later].filter(function (b) { return !b.hidden && !b.disabled; })[0];
        (target || ui.panel).focus();
      } else {
        ui.bell.focus();
      }
    }
  }

  function onLater() {
    store.set(KEY.later, String(Date.now() + LATER_MS));
    setExpanded(false, true);
  }

  function renderTopics(topics) {
    var chosen = storedTopics() || [];
    ui.topicList.textContent = "";
    (topics || []).forEach(function (t) {
      if (!t || typeof t.id !== "string") return;
      var label = t.label || {};
      var first = label[FIRST] || label[SECOND] || t.id;
      var second = label[SECOND] && label[SECOND] !== first ? label[SECOND] : "";
      var box = el("input", { type: "checkbox", name: "nabaa-topic", value: t.id, className: "nabaa-check" });
      box.checked = chosen.indexOf(t.id) !== -1;
      ui.topicList.appendChild(el("label", { className: "nabaa-topic" }, box,
        el("span", { className: "nabaa-topic-t1", lang: FIRST, dir: DIR[FIRST], text: first }),
        second ? " " : null,
        second ? el("span", { className: "nabaa-topic-t2", lang: SECOND, dir: DIR[SECOND], text: second }) : null));
    });
  }

  function selectedTopics() {
    var out = [];
    Array.prototype.forEach.call(ui.topicList.querySelectorAll("input[name=nabaa-topic]"), function (b) {
      if (b.checked) out.push(b.value);
    });
    return out;
  }

  function topicLabel(id) {
    var list = (config && config.topics) || [];
    for (var i = 0; i < list.length; i++) {
      if (list[i].id === id) return (list[i].label && (list[i].label[FIRST] || list[i].label[SECOND])) || id;
    }
    return id;
  }

  function storedTopics() {
    var raw = store.get(KEY.topics);
    if (raw === null) return null;
    try {
      var v = JSON.parse(raw);
      return Array.isArray(v) ? v.filter(function (x) { return typeof x === "string"; }) : null;
    } catch (e) { return null; }
  }

  /**
   * Shows one state: data-state on the root, which controls are visible, and the status text.
   * info: {msg, detail, extra: [messages], steps: [messages], retry: bool, action: "subscribe"|"unsubscribe"}
   */
  function setState(state, info) {
    info = info || {};
    current = { state: state, info: info };
    ui.root.setAttribute("data-state", state);

    var showSubscribe = state === "default" || state === "unsubscribed" || state === "subscribing" || state === "loading" ||
      (state === "error" && info.action === "subscribe");
    var showUnsubscribe = state === "subscribed" || state === "unsubscribing" || (state === "error" && info.action === "unsubscribe");
    ui.subscribe.hidden = !showSubscribe;
    ui.subscribe.disabled = state === "subscribing" || state === "loading";
    ui.subscribe.setAttribute("aria-busy", state === "subscribing" ? "true" : "false");
    ui.unsubscribe.hidden = !showUnsubscribe;
    ui.unsubscribe.disabled = state === "unsubscribing";
    ui.unsubscribe.setAttribute("aria-busy", state === "unsubscribing" ? "true" : "false");
    ui.retry.hidden = !(state === "error" && info.retry);

    var canPickTopics = state === "default" || state === "unsubscribed" || state === "subscribing" ||
      state === "subscribed" || (state === "error" && info.action === "subscribe");
    ui.topics.hidden = !canPickTopics || !ui.topicList.firstChild;
    ui.topics.disabled = state === "subscribing" || state === "unsubscribing";

    ui.later.textContent = "";
    ui.later.appendChild(bi(state === "subscribed" ? T.hide : T.later));

    ui.status.textContent = "";
    var lines = [info.msg || T[state] || T.notYet].concat(info.extra || []);
    lines.forEach(function (m) { ui.status.appendChild(el("p", { className: "nabaa-line" }, bi(m))); });
    if (info.steps) {
      var ol = el("ol", { className: "nabaa-steps" });
      info.steps.forEach(function (m) { ol.appendChild(el("li", null, bi(m))); });
      ui.status.appendChild(ol);
    }
    if (info.topicsLine) ui.status.appendChild(el("p", { className: "nabaa-line nabaa-chosen", dir: "auto", text: info.topicsLine }));
    if (info.detail) ui.status.appendChild(el("p", { className: "nabaa-detail", dir: "auto", text: String(info.detail) }));

    try {
      document.dispatchEvent(new CustomEvent("nabaa:statechange", { detail: { state: state } }));
    } catch (e) { /* old browsers */ }
  }

  function subscribedInfo(extraMsg) {
    var chosen = storedTopics();
    var line = chosen && chosen.length ? chosen.map(topicLabel).join("، ") : plain(T.allTopics);
    return {
      msg: T.subscribed,
      extra: extraMsg ? [extraMsg] : [],
      topicsLine: (FIRST === "ar" ? T.subscribedTopics.ar : T.subscribedTopics.en) + " " + line
    };
  }

  /** Maps an exception to the error state's message. */
  function errorInfo(e, fallback, action) {
    var msg = fallback;
    if (e && e.name === "ApiError") {
      if (e.status === 0) msg = T.errNetwork;
      else if (e.status === 429) msg = T.errBusy;
      else if (action === "subscribe") msg = T.errServer;
    }
    var detail = e && e.message ? e.message : String(e);
    if (e && e.name === "ApiError" && e.code && e.code !== "network") detail = detail + " (" + e.code + ")";
    else if (e && e.name && e.name !== "Error" && e.name !== "ApiError") detail = e.name + ": " + detail;
    return { msg: msg, detail: detail, action: action, retry: action !== "subscribe" && action !== "unsubscribe" };
  }

  // ---------------------------------------------------------------- service worker and subscription

  function registerWorker() {
    var url = SW_URL;
    if (API !== location.origin) url += (url.indexOf("?") === -1 ? "?" : "&") + "api=" + encodeURIComponent(API);
    return navigator.serviceWorker.register(url, { scope: "/" }).then(function (reg) {
      swRegistration = reg;
      return reg;
    });
  }

  /** The registration once it has an active worker (pushManager.subscribe needs one). */
  function workerReady() {
    if (swRegistration && swRegistration.active) return Promise.resolve(swRegistration);
    return withTimeout(navigator.serviceWorker.ready, 15000, "service worker").then(function (reg) {
      swRegistration = reg;
      return reg;
    });
  }

  function tellWorker(message) {
    workerReady().then(function (reg) {
      var w = reg.active || navigator.serviceWorker.controller;
      if (w) w.postMessage(message);
    }).catch(function () { /* the worker will learn it next visit */ });
  }

  function tellWorkerSubscription() {
    tellWorker({
      type: "nabaa-subscription",
      id: store.get(KEY.id),
      topics: storedTopics(),
      lang: document.documentElement.lang || "ar",
      vapidKey: store.get(KEY.vapid),
      api: API
    });
  }

  function keyOf(sub) {
    var k = sub && sub.options && sub.options.applicationServerKey;
    return k ? new Uint8Array(k) : null;
  }

  /** Whether this subscription was made with the key the server now signs with. */
  function madeWithCurrentKey(sub) {
    var k = keyOf(sub);
    if (k) return sameBytes(k, appKey);
    var stored = store.get(KEY.vapid);
    return !stored || stored === config.vapidPublicKey;
  }

  /** Subscribes at the browser's push service; one that never answers becomes an error after 30 s. */
  function pushSubscribe(reg) {
    return withTimeout(reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: appKey }),
      SUBSCRIBE_TIMEOUT_MS, "the browser's push service");
  }

  /** POSTs the subscription; topics === null leaves the reader's stored choice out of the request. */
  function postSubscription(sub, topics) {
    var body = {};
    var json = sub.toJSON();
    Object.keys(json).forEach(function (k) { body[k] = json[k]; });
    if (topics) body.topics = topics;
    body.lang = document.documentElement.lang || "ar";
    var previous = store.get(KEY.id);
    return api("POST", "/api/v1/subscriptions", body).then(function (res) {
      if (!res || typeof res.id !== "string") throw ApiError(500, "bad_answer", "unexpected answer from the server");
      store.set(KEY.id, res.id);
      store.set(KEY.vapid, config.vapidPublicKey);
      store.set(KEY.topics, JSON.stringify(Array.isArray(res.topics) ? res.topics : (topics || [])));
      if (previous && previous !== res.id) forgetOnServer(previous);
      tellWorkerSubscription();
      return res;
    });
  }

  function forgetOnServer(id) {
    return api("DELETE", "/api/v1/subscriptions/" + encodeURIComponent(id)).catch(function () { /* best effort */ });
  }

  function forgetLocally() {
    store.del(KEY.id);
    store.del(KEY.topics);
    store.del(KEY.vapid);
    tellWorker({ type: "nabaa-subscription", id: null, topics: null, api: API });
  }

  function loadConfig() {
    return api("GET", "/api/v1/push/config").then(function (c) {
      if (!c || typeof c.vapidPublicKey !== "string") throw ApiError(500, "bad_config", "vapidPublicKey missing");
      var key = b64urlToBytes(c.vapidPublicKey);
      if (key.length !== 65 || key[0] !== 4) throw ApiError(500, "bad_config", "vapidPublicKey is not a P-256 public key");
      config = { vapidPublicKey: c.vapidPublicKey, topics: Array.isArray(c.topics) ? c.topics : [] };
      appKey = key;
      return config;
    });
  }

  // ---------------------------------------------------------------- flows

  /** Works out the state on every visit, refreshing an existing subscription on the server. */
  function init() {
    var run = ++runId;
    var live = function () { return run === runId; };

    if (isIOS && !isStandalone() && !hasPush()) {
      setState("ios-install", { msg: T.iosInstall, steps: [T.iosStep1, T.iosStep2, T.iosStep3] });
      return Promise.resolve(current.state);
    }
    if (!window.isSecureContext) { setState("unsupported", { msg: T.insecure }); return Promise.resolve(current.state); }
    if (!hasPush()) { setState("unsupported", { msg: isIOS ? T.iosOld : T.unsupported }); return Promise.resolve(current.state); }

    if (permission() === "denied") {
      var stale = store.get(KEY.id);
      if (stale && navigator.onLine !== false) { forgetOnServer(stale); forgetLocally(); }
      setState("denied", { extra: [T.deniedHow] });
      return Promise.resolve(current.state);
    }
    if (navigator.onLine === false) { setState("offline"); return Promise.resolve(current.state); }

    setState("loading");
    return loadConfig().then(function () {
      if (!live()) return null;
      renderTopics(config.topics);
      return registerWorker().catch(function (e) { e.nabaaStep = "worker"; throw e; }).then(workerReady).then(function (reg) {
        return reg.pushManager.getSubscription().then(function (sub) { return { reg: reg, sub: sub }; });
      }).catch(function (e) { if (!e.nabaaStep) e.nabaaStep = "worker"; throw e; });
    }).then(function (found) {
      if (!found || !live()) return;
      var sub = found.sub;
      if (sub && permission() === "granted") return refresh(found.reg, sub, live);
      var stale = store.get(KEY.id);
      if (stale) { forgetOnServer(stale); forgetLocally(); }
      setState("default");
    }).catch(function (e) {
      if (!live()) return;
      if (navigator.onLine === false) { setState("offline"); return; }
      setState("error", errorInfo(e, e && e.nabaaStep === "worker" ? T.errWorker : T.errConfig, "init"));
    }).then(function () { return current.state; });
  }

  /** An existing subscription: re-made silently if the VAPID key changed, then re-POSTed so the server keeps it. */
  function refresh(reg, sub, live) {
    var chain = Promise.resolve(sub);
    if (!madeWithCurrentKey(sub)) {
      chain = sub.unsubscribe().catch(function () { return false; }).then(function () { return pushSubscribe(reg); });
    }
    return chain.then(function (fresh) {
      return postSubscription(fresh, storedTopics()).then(function () {
        if (!live()) return;
        renderTopics(config.topics);
        setState("subscribed", subscribedInfo());
      });
    }).catch(function (e) {
      if (!live()) return;
      // The server still holds a subscription it answered for before; a passing failure is not the reader's problem.
      var passing = e && e.name === "ApiError" && (e.status === 0 || e.status === 429 || e.status >= 500);
      if (passing && store.get(KEY.id)) {
        if (window.console) console.warn("nabaa: could not refresh the subscription:", e.message);
        setState("subscribed", subscribedInfo());
        return;
      }
      setState("error", errorInfo(e, e && e.name === "ApiError" ? T.errServer : T.errPush, "subscribe"));
    });
  }

  function onSubscribe() {
    if (busy) return;
    if (navigator.onLine === false) { setState("offline"); return; }
    // Asked here and only here: inside the reader's click.
    var asked = permission() === "granted" ? Promise.resolve("granted") : requestPermission();
    busy = true;
    runId += 1; // a running init() must not overwrite what this click shows
    var topics = selectedTopics();
    setState("subscribing");
    asked.then(function (perm) {
      if (perm === "denied") { setState("denied", { extra: [T.deniedHow] }); return; }
      if (perm !== "granted") { setState("default", { msg: T.dismissed }); return; }
      var ready = config ? Promise.resolve(config) : loadConfig();
      return ready.then(function () {
        return (swRegistration ? workerReady() : registerWorker().then(workerReady));
      }).then(function (reg) {
        return reg.pushManager.getSubscription().then(function (sub) {
          if (sub && !madeWithCurrentKey(sub)) return sub.unsubscribe().then(function () { return null; });
          return sub;
        }).then(function (sub) { return sub || pushSubscribe(reg); });
      }).then(function (sub) {
        return postSubscription(sub, topics);
      }).then(function () {
        store.del(KEY.later);
        setState("subscribed", subscribedInfo());
      }).catch(function (e) {
        if (e && e.name === "NotAllowedError" && permission() !== "granted") {
          setState("denied", { extra: [T.deniedHow] });
          return;
        }
        if (navigator.onLine === false) { setState("offline"); return; }
        setState("error", errorInfo(e, e && e.name === "ApiError" ? T.errServer : T.errPush, "subscribe"));
      });
    }).then(function () { busy = false; }, function () { busy = false; });
  }

  function onUnsubscribe() {
    if (busy) return;
    if (navigator.onLine === false) { setState("offline"); return; }
    busy = true;
    runId += 1;
    setState("unsubscribing");
    var id = store.get(KEY.id);
    workerReady().then(function (reg) {
      return reg.pushManager.getSubscription();
    }).then(function (sub) {
      return sub ? sub.unsubscribe() : true;
    }).then(function () {
      return id ? api("DELETE", "/api/v1/subscriptions/" + encodeURIComponent(id)).catch(function (e) {
        // The push service already dropped the endpoint; the server will learn that from its next 404/410.
        if (window.console) console.warn("nabaa: server did not confirm the unsubscribe:", e.message);
      }) : null;
    }).then(function () {
      forgetLocally();
      setState("unsubscribed");
    }, function (e) {
      setState("error", errorInfo(e, T.errUnsubscribe, "unsubscribe"));
    }).then(function () { busy = false; });
  }

  /** A subscribed reader changed sections: save them after a short pause (the API updates the topics of
   * the subscription it already has). A change made while a save runs is saved right after it. */
  function onTopicChange() {
    if (current.state !== "subscribed") return;
    clearTimeout(topicTimer);
    topicTimer = setTimeout(saveTopics, 500);
  }

  function saveTopics() {
    if (current.state !== "subscribed") return;
    if (busy) { topicTimer = setTimeout(saveTopics, 300); return; }
    busy = true;
    var topics = selectedTopics();
    setState("subscribed", { msg: T.saving });
    workerReady().then(function (reg) { return reg.pushManager.getSubscription(); }).then(function (sub) {
      if (!sub) throw new Error("no subscription");
      return postSubscription(sub, topics);
    }).then(function () {
      setState("subscribed", subscribedInfo(T.saved));
    }, function (e) {
      var info = subscribedInfo(T.saveFailed);
      info.detail = e && e.message;
      setState("subscribed", info);
    }).then(function () {
      busy = false;
      if (selectedTopics().join(",") !== topics.join(",")) onTopicChange();
    });
  }

  // ---------------------------------------------------------------- start

  function watchEnvironment() {
    window.addEventListener("offline", function () {
      if (!busy && (current.state === "default" || current.state === "loading" || current.state === "error" ||
          current.state === "unsubscribed")) setState("offline");
    });
    window.addEventListener("online", function () {
      if (!busy && (current.state === "offline" || current.state === "error")) init();
    });
    if (navigator.permissions && navigator.permissions.query) {
      navigator.permissions.query({ name: "notifications" }).then(function (status) {
        status.onchange = function () { if (!busy) init(); };
      }).catch(function () { /* not queryable here */ });
    }
  }

  function loadStylesheet() {
    return new Promise(function (resolve) {
      if (document.getElementById("nabaa-widget-css")) { resolve(); return; }
      var link = el("link", { id: "nabaa-widget-css", rel: "stylesheet", href: API + "/static/widget.css" });
      var done = function () { resolve(); };
      link.addEventListener("load", done);
      link.addEventListener("error", done);
      setTimeout(done, 3000);
      (document.head || document.documentElement).appendChild(link);
    });
  }

  /** Whether the window has shown SCROLL_PERCENT of the page, counted from its top to the window's bottom. */
  function scrolledFarEnough() {
    var doc = document.documentElement;
    var height = Math.max(doc.scrollHeight, document.body ? document.body.scrollHeight : 0);
    var seen = (window.pageYOffset || doc.scrollTop || 0) + (window.innerHeight || doc.clientHeight || 0);
    return seen + 1 >= height * SCROLL_PERCENT / 100; // 1 px: the bottom of a zoomed page can fall short
  }

  /**
   * The soft prompt: resolves after DELAY_MS, or once the reader has scrolled SCROLL_PERCENT of the page,
   * whichever comes first (page height is only trusted from the load event on: images still arrive before).
   */
  function softPrompt() {
    return new Promise(function (resolve) {
      var timer = null;
      function check() { if (scrolledFarEnough()) finish(); }
      function finish() {
        if (!showNow) return;
        showNow = null;
        clearTimeout(timer);
        window.removeEventListener("scroll", check);
        window.removeEventListener("resize", check);
        window.removeEventListener("load", check);
        resolve();
      }
      showNow = finish;
      if (DELAY_MS !== null) timer = setTimeout(finish, DELAY_MS);
      if (!SCROLL_PERCENT) return;
      window.addEventListener("scroll", check, { passive: true });
      window.addEventListener("resize", check, { passive: true });
      if (document.readyState === "complete") check();
      else window.addEventListener("load", check);
    });
  }

  function start() {
    build();
    var later = Number(store.get(KEY.later) || 0);
    var startOpen = !(later > Date.now());
    setExpanded(startOpen, false);
    setState("loading");
    watchEnvironment();

    var ready = init().then(function (state) {
      // A floating card stays out of the way for readers already subscribed: the bell reopens it.
      if (floating && state === "subscribed" && expanded) setExpanded(false, false);
      return state;
    });
    var shown = Promise.all([loadStylesheet(), softPrompt()]).then(function () {
      ui.root.hidden = false;
    });
    shownPromise = shown;
    return Promise.all([ready, shown]).then(function () { return current.state; });
  }

  var readyResolve;
  var readyPromise = new Promise(function (resolve) { readyResolve = resolve; });

  window.nabaa = {
    version: VERSION,
    states: STATES.slice(),
    /** Resolves with the first state once the card is on the page and the visit's checks are done. */
    ready: readyPromise,
    get state() { return current.state; },
    /** Opens the card; one still waiting for its soft prompt shows at once. */
    open: function () {
      if (!ui.root) return;
      if (showNow) showNow();
      (shownPromise || Promise.resolve()).then(function () { setExpanded(true, true); });
    },
    close: function () { if (ui.root) setExpanded(false, true); }
  };

  function boot() {
    start().then(readyResolve, function (e) {
      if (window.console) console.error("nabaa:", e);
      readyResolve("error");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
