/*
 * Nabaa service worker, served at /sw.js with scope "/".
 *
 * - push: always shows a notification (a push that shows none can cost the site its permission),
 *   then reports {"type": "delivered"} to POST /api/v1/events.
 * - notificationclick: opens the alert's URL, but only on this origin (anything else opens "/"),
 *   and reports "clicked"; the "later" action and a closed notification report "dismissed".
 * - pushsubscriptionchange: subscribes again and POSTs the new subscription.
 * - message {type: "nabaa-subscription", id, topics, lang, vapidKey, api} from the widget: remembered
 *   (Cache Storage) so events and re-subscriptions carry the subscription id and the reader's sections.
 *
 * Every handler's work is inside event.waitUntil.
 */
"use strict";

const API_BASE = (() => {
  // The widget adds ?api=<origin> only when the API lives on another origin than the site.
  try {
    const v = new URL(self.location.href).searchParams.get("api");
    if (v) {
      const u = new URL(v);
      if (u.protocol === "https:" || u.protocol === "http:") return u.origin;
    }
  } catch (e) { /* fall through */ }
  return self.location.origin;
})();

const STATE_CACHE = "nabaa-state-v1";
const STATE_URL = new URL("/__nabaa/state", self.location.origin).href;
const DEFAULT_ICON = "/static/icon-192.png";
const DEFAULT_BADGE = "/static/badge-72.png";
const GENERIC = {
  ar: { title: "نبأ: خبر جديد", body: "اضغط لقراءة آخر الأخبار." },
  en: { title: "Nabaa: breaking news", body: "Tap to read the latest news." }
};
const ACTIONS = {
  ar: [{ action: "open", title: "اقرأ الآن" }, { action: "later", title: "لاحقاً" }],
  en: [{ action: "open", title: "Read now" }, { action: "later", title: "Later" }]
};

self.addEventListener("install", (event) => {
  event.waitUntil(self.skipWaiting());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

// ---------------------------------------------------------------- state from the widget

async function loadState() {
  try {
    const cache = await caches.open(STATE_CACHE);
    const res = await cache.match(STATE_URL);
    if (!res) return {};
    const v = await res.json();
    return v && typeof v === "object" ? v : {};
  } catch (e) {
    return {};
  }
}

async function saveState(patch) {
  const state = Object.assign(await loadState(), patch);
  try {
    const cache = await caches.open(STATE_CACHE);
    await cache.put(STATE_URL, new Response(JSON.stringify(state), { headers: { "Content-Type": "application/json" } }));
  } catch (e) { /* storage unavailable: events go without the subscription id */ }
  return state;
}

self.addEventListener("message", (event) => {
  const msg = event.data;
  if (!msg || typeof msg !== "object") return;
  if (msg.type === "nabaa-subscription") {
    const patch = {
      id: typeof msg.id === "string" && msg.id ? msg.id : null,
      topics: Array.isArray(msg.topics) ? msg.topics.filter((t) => typeof t === "string") : null
    };
    if (typeof msg.lang === "string" && msg.lang) patch.lang = msg.lang;
    if (typeof msg.vapidKey === "string" && msg.vapidKey) patch.vapidKey = msg.vapidKey;
    event.waitUntil(saveState(patch).then(() => reply(event, { ok: true })));
  } else if (msg.type === "nabaa-ping") {
    event.waitUntil(loadState().then((state) => reply(event, { ok: true, api: API_BASE, state })));
  }
});

function reply(event, value) {
  const port = event.ports && event.ports[0];
  if (port) port.postMessage(value);
  else if (event.source && typeof event.source.postMessage === "function") event.source.postMessage(Object.assign({ type: "nabaa-reply" }, value));
}

// ---------------------------------------------------------------- events back to the API

async function report(type, alertId) {
  if (typeof alertId !== "string" || !alertId) return;
  try {
    const state = await loadState();
    const body = { type, alert: alertId };
    if (state.id) body.subscription = state.id;
    await fetch(API_BASE + "/api/v1/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      keepalive: true
    });
  } catch (e) {
    // Counting is best effort; the notification itself has already been handled.
  }
}

// ---------------------------------------------------------------- push

function text(v, max) {
  if (typeof v !== "string") return "";
  const s = v.trim();
  return max && s.length > max ? s.slice(0, max) : s;
}

/** A URL for an image in the notification: relative, or absolute http(s). Anything else is dropped. */
function imageUrl(v) {
  const s = text(v);
  if (!s) return "";
  try {
    const u = new URL(s, self.location.origin);
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : "";
  } catch (e) {
    return "";
  }
}

function timestamp(ts) {
  if (typeof ts === "number" && isFinite(ts)) return ts < 1e12 ? Math.round(ts * 1000) : Math.round(ts);
  if (typeof ts === "string" && ts) {
    const n = Date.parse(ts);
    if (!isNaN(n)) return n;
  }
  return undefined;
}

function maxActions() {
  try {
    return typeof Notification !== "undefined" && Notification.maxActions > 0 ? Notification.maxActions : 0;
  } catch (e) {
    return 0;
  }
}

function parsePayload(event) {
  if (!event.data) return null;
  try {
    const v = event.data.json();
    return v && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch (e) {
    return null;
  }
}

/** The notification for a payload; pure, so a test can call it with any object. */
function buildNotification(p) {
  const payload = p || {};
  const lang = text(payload.lang) || "ar";
  const lk = lang.toLowerCase().indexOf("en") === 0 ? "en" : "ar";
  const generic = GENERIC[lk];
  const id = text(payload.id);
  const dir = ["rtl", "ltr", "auto"].indexOf(payload.dir) !== -1 ? payload.dir : "rtl";
  const title = text(payload.title) || generic.title;
  const options = {
    body: p ? text(payload.body) : generic.body,
    dir,
    lang,
    icon: imageUrl(payload.icon) || new URL(DEFAULT_ICON, self.location.origin).href,
    badge: imageUrl(payload.badge) || new URL(DEFAULT_BADGE, self.location.origin).href,
    data: { url: text(payload.url) || "/", id: id || null }
  };
  const image = imageUrl(payload.image);
  if (image) options.image = image;
  const tag = text(payload.tag) || id;
  if (tag) {
    options.tag = tag;
    options.renotify = payload.renotify === true;
  }
  const ts = timestamp(payload.ts);
  if (ts !== undefined) options.timestamp = ts;
  if (maxActions() > 0) options.actions = ACTIONS[lk].slice(0, maxActions());
  return { title, options };
}

async function handlePush(event) {
  const payload = parsePayload(event);
  const { title, options } = buildNotification(payload);
  try {
    await self.registration.showNotification(title, options);
  } catch (e) {
    // An option this browser refuses must not cost the reader the news: show the plain version.
    try {
      await self.registration.showNotification(title, {
        body: options.body, dir: options.dir, lang: options.lang, tag: options.tag, icon: options.icon, data: options.data
      });
    } catch (e2) {
      await self.registration.showNotification(title, { body: options.body, data: options.data });
    }
  }
  await report("delivered", options.data.id);
}

self.addEventListener("push", (event) => {
  event.waitUntil(handlePush(event));
});

// ---------------------------------------------------------------- clicks

/**
 * Where a click may go: the alert's URL resolved against this origin, but only if it stays on this
 * origin over http(s). javascript:, data:, //other.example, /\other.example and the like open "/".
 */
function safeTarget(raw) {
  const home = new URL("/", self.location.origin).href;
  if (typeof raw !== "string" || !raw.trim()) return home;
  let u;
  try {
    u = new URL(raw.trim(), self.location.origin);
  } catch (e) {
    return home;
  }
  if ((u.protocol !== "https:" && u.protocol !== "http:") || u.origin !== self.location.origin) return home;
  return u.href;
}

async function openTarget(target) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const same = windows.find((c) => c.url === target);
  if (same && typeof same.focus === "function") {
    try {
      return await same.focus();
    } catch (e) { /* not allowed to focus: open a new one */ }
  }
  if (self.clients.openWindow) return self.clients.openWindow(target);
  return null;
}

self.addEventListener("notificationclick", (event) => {
  const notification = event.notification;
  const data = notification.data || {};
  notification.close();
  if (event.action === "later") {
    event.waitUntil(report("dismissed", data.id));
    return;
  }
  const target = safeTarget(data.url);
  event.waitUntil(Promise.all([
    openTarget(target).catch(() => null),
    report("clicked", data.id)
  ]));
});

self.addEventListener("notificationclose", (event) => {
  const data = event.notification.data || {};
  event.waitUntil(report("dismissed", data.id));
});

// ---------------------------------------------------------------- subscription changes

function b64urlToBytes(s) {
  let t = String(s || "").replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  while (t.length % 4) t += "=";
  const bin = atob(t);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function currentServerKey() {
  const res = await fetch(API_BASE + "/api/v1/push/config", { credentials: "omit", cache: "no-store" });
  if (!res.ok) throw new Error("config " + res.status);
  const cfg = await res.json();
  return cfg.vapidPublicKey;
}

async function resubscribe(event) {
  const state = await loadState();
  let sub = event.newSubscription || null;
  if (!sub) {
    let key = event.oldSubscription && event.oldSubscription.options && event.oldSubscription.options.applicationServerKey;
    if (!key) key = b64urlToBytes(await currentServerKey());
    sub = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }
  const body = Object.assign({}, sub.toJSON(), { lang: state.lang || "ar" });
  if (Array.isArray(state.topics)) body.topics = state.topics;
  const res = await fetch(API_BASE + "/api/v1/subscriptions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit"
  });
  if (!res.ok) throw new Error("subscriptions " + res.status);
  const saved = await res.json();
  const old = state.id;
  await saveState({ id: saved.id, topics: Array.isArray(saved.topics) ? saved.topics : state.topics || null });
  if (old && old !== saved.id) {
    await fetch(API_BASE + "/api/v1/subscriptions/" + encodeURIComponent(old), { method: "DELETE", credentials: "omit" })
      .catch(() => null);
  }
}

self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(resubscribe(event).catch(() => {
    // The widget re-subscribes on the reader's next visit.
  }));
});
