/*
 * Nabaa editor dashboard: sign in with the editor token, compose and preview an alert, send or
 * schedule it (or an update that replaces a sent one), follow its progress live, read its results per
 * push service, export them as CSV, and read the audience numbers and their growth per day.
 *
 * All data reaches the page through textContent and element properties: never innerHTML.
 * The token lives in sessionStorage and travels only as "Authorization: Bearer …" — also for the live
 * progress stream, which is read with fetch() and a stream reader because EventSource cannot send headers.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "nabaa.editorToken";
  var ALERTS_EVERY_MS = 2000;
  var STATS_EVERY_MS = 10000;
  var LIMITS = { title: 120, body: 400 };

  var STATUS = {
    scheduled: { ar: "مجدول", en: "Scheduled" },
    queued: { ar: "في الانتظار", en: "Queued" },
    sending: { ar: "قيد الإرسال", en: "Sending" },
    done: { ar: "اكتمل", en: "Done" },
    cancelled: { ar: "أُلغي", en: "Cancelled" },
    failed: { ar: "فشل", en: "Failed" }
  };
  var COUNTS = [
    ["targeted", "المستهدفون", "Targeted"],
    ["sent", "أُرسل", "Sent"],
    ["gone", "منتهية", "Gone"],
    ["failed", "فشل", "Failed"],
    ["pending", "معلّق", "Pending"],
    ["delivered", "وصل", "Delivered"],
    ["clicked", "نُقر", "Clicked"]
  ];
  var PUSH_SERVICES = [
    ["fcm.googleapis.com", "Chrome · FCM"],
    ["updates.push.services.mozilla.com", "Firefox"],
    [".push.apple.com", "Safari · Apple"],
    [".notify.windows.com", "Edge · Windows"]
  ];

  // ---------------------------------------------------------------- helpers

  function $(id) { return document.getElementById(id); }

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
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  /** Arabic text with its English beside it. */
  function bi(ar, en) {
    var f = document.createDocumentFragment();
    f.appendChild(el("span", { text: ar }));
    f.appendChild(document.createTextNode(" "));
    f.appendChild(el("span", { className: "en", lang: "en", dir: "ltr", text: en }));
    return f;
  }

  function num(n) {
    return typeof n === "number" && isFinite(n) ? n : 0;
  }

  var numberFmt = new Intl.NumberFormat("en-US");
  var dateFmt = {
    ar: new Intl.DateTimeFormat("ar-MA-u-nu-latn", { dateStyle: "medium", timeStyle: "short" }),
    en: new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" })
  };
  var timeFmt = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  var relFmt = typeof Intl.RelativeTimeFormat === "function" ? {
    ar: new Intl.RelativeTimeFormat("ar", { numeric: "auto" }),
    en: new Intl.RelativeTimeFormat("en", { numeric: "auto" })
  } : null;

  function fmtNum(n) { return numberFmt.format(num(n)); }

  function parseDate(s) {
    if (!s) return null;
    var d = new Date(s);
    return isNaN(d.getTime()) ? null : d;
  }

  /** A date in the given language ("ar" or "en"): each language gets its own digits and order. */
  function fmtDate(s, lang) {
    var d = parseDate(s);
    return d ? dateFmt[lang || "ar"].format(d) : "";
  }

  function fmtRelative(s, lang) {
    var d = parseDate(s);
    if (!d) return "";
    if (!relFmt) return fmtDate(s, lang);
    var f = relFmt[lang || "ar"];
    var diff = (d.getTime() - Date.now()) / 1000;
    var abs = Math.abs(diff);
    if (abs < 45) return f.format(Math.round(diff), "second");
    if (abs < 2700) return f.format(Math.round(diff / 60), "minute");
    if (abs < 79200) return f.format(Math.round(diff / 3600), "hour");
    return f.format(Math.round(diff / 86400), "day");
  }

  function fmtDuration(a, b) {
    var d1 = parseDate(a), d2 = parseDate(b);
    if (!d1 || !d2) return "";
    var s = Math.max(0, (d2 - d1) / 1000);
    if (s < 60) return (Math.round(s * 10) / 10) + " s";
    return Math.round(s / 60) + " min";
  }

  /** "2025-10-08T18:30" (a datetime-local value, the browser's zone) → "2025-10-08T18:30:00+01:00". */
  function localToIso(value) {
    var d = new Date(value);
    if (!value || isNaN(d.getTime())) return null;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    var off = -d.getTimezoneOffset();
    var sign = off >= 0 ? "+" : "-";
    off = Math.abs(off);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
      sign + pad(Math.floor(off / 60)) + ":" + pad(off % 60);
  }

  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function pushServiceName(host) {
    for (var i = 0; i < PUSH_SERVICES.length; i++) {
      var p = PUSH_SERVICES[i][0];
      if (host === p || (p.charAt(0) === "." && (host.slice(-p.length) === p || host === p.slice(1)))) return PUSH_SERVICES[i][1];
    }
    return "";
  }

  // ---------------------------------------------------------------- API

  var token = null;
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }

  function ApiError(status, code, message, field) {
    var e = new Error(message || ("HTTP " + status));
    e.name = "ApiError";
    e.status = status;
    e.code = code || "";
    e.field = field || "";
    return e;
  }

  /** Reads {"error": {code, message, field}}; FastAPI's own {"detail": [...]} is understood too. */
  function errorFrom(status, data, statusText) {
    if (data && data.error && typeof data.error === "object") {
      return ApiError(status, data.error.code, data.error.message, data.error.field);
    }
    if (data && Array.isArray(data.detail) && data.detail[0]) {
      var d = data.detail[0];
      var loc = Array.isArray(d.loc) ? d.loc.filter(function (x) { return x !== "body"; }).join(".") : "";
      return ApiError(status, d.type || "invalid", d.msg, loc);
    }
    if (data && typeof data.detail === "string") return ApiError(status, "", data.detail, "");
    return ApiError(status, "", status + " " + (statusText || ""), "");
  }

  function api(method, path, body, extraHeaders, opts) {
    opts = opts || {};
    var headers = { Accept: "application/json" };
    if (!opts.public) headers.Authorization = "Bearer " + (opts.token || token || "");
    if (body !== undefined) headers["Content-Type"] = "application/json";
    Object.keys(extraHeaders || {}).forEach(function (k) { headers[k] = extraHeaders[k]; });
    return fetch(path, {
      method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin", cache: "no-store"
    }).then(function (res) {
      if (res.status === 204) return null;
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok) {
          var err = errorFrom(res.status, data, res.statusText);
          if (res.status === 401 && !opts.public && !opts.token) signOut(true);
          throw err;
        }
        return data;
      });
    }, function (e) {
      throw ApiError(0, "network", (e && e.message) || "network error");
    });
  }

  // ---------------------------------------------------------------- toasts

  function toast(ar, en, kind) {
    var box = $("toasts");
    var t = el("div", { className: "toast toast-" + (kind || "info") }, bi(ar, en));
    box.appendChild(t);
    setTimeout(function () { t.classList.add("toast-out"); }, 4500);
    setTimeout(function () { if (t.parentNode) t.parentNode.removeChild(t); }, 5000);
  }

  // ---------------------------------------------------------------- sign-in

  function showSignIn(message) {
    stopPolling();
    $("app").hidden = true;
    $("signin").hidden = false;
    var err = $("token-error");
    err.textContent = "";
    if (message) err.appendChild(bi(message[0], message[1]));
    $("token").value = "";
    $("token").setAttribute("aria-invalid", message ? "true" : "false");
    $("token").focus();
  }

  function signOut(expired) {
    token = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    showSignIn(expired ? ["انتهت الجلسة أو الرمز غير صحيح. أدخل الرمز مجدداً.", "Session expired or wrong token. Enter it again."] : null);
  }

  function onSignIn(ev) {
    ev.preventDefault();
    var value = $("token").value.trim();
    var err = $("token-error");
    err.textContent = "";
    if (!value) {
      err.appendChild(bi("أدخل الرمز.", "Enter the token."));
      $("token").setAttribute("aria-invalid", "true");
      $("token").focus();
      return;
    }
    var btn = ev.submitter || $("signin-form").querySelector("button[type=submit]");
    btn.disabled = true;
    api("GET", "/api/v1/stats", undefined, null, { token: value }).then(function (stats) {
      token = value;
      try { sessionStorage.setItem(TOKEN_KEY, value); } catch (e) { /* tab-only then */ }
      showApp(stats);
    }, function (e) {
      $("token").setAttribute("aria-invalid", "true");
      if (e.status === 401 || e.status === 403) err.appendChild(bi("الرمز غير صحيح.", "Wrong token."));
      else if (e.status === 0) err.appendChild(bi("تعذّر الاتصال بالخادم.", "Can't reach the server."));
      else err.appendChild(bi("خطأ من الخادم: ", "Server error: " + e.message));
      $("token").focus();
    }).then(function () { btn.disabled = false; });
  }

  // ---------------------------------------------------------------- config (sections)

  var topics = [];

  function topicLabel(id) {
    if (!id) return ["الجميع", "Everyone"];
    for (var i = 0; i < topics.length; i++) {
      if (topics[i].id === id) {
        var l = topics[i].label || {};
        return [l.ar || id, l.en || id];
      }
    }
    return [id, id];
  }

  function loadConfig() {
    return api("GET", "/api/v1/push/config", undefined, null, { public: true }).then(function (cfg) {
      topics = (cfg && Array.isArray(cfg.topics) ? cfg.topics : []).filter(function (t) { return t && typeof t.id === "string"; });
      var select = $("f-topic");
      var keep = select.value;
      while (select.options.length > 1) select.remove(1);
      topics.forEach(function (t) {
        var l = t.label || {};
        select.appendChild(el("option", { value: t.id, text: (l.ar || t.id) + " · " + (l.en || t.id) }));
      });
      select.value = keep;
      updateAudience();
    }).catch(function () {
      toast("تعذّر تحميل الأقسام.", "Couldn't load the sections.", "error");
    });
  }

  // ---------------------------------------------------------------- compose

  var form, sending = false, idempotencyKey = null;
  var replacing = null;   // {id, title} of the sent alert this one updates (sent as "replaces")
  var FIELD_IDS = {
    title: "f-title", body: "f-body", url: "f-url", image: "f-image", icon: "f-icon", topic: "f-topic",
    lang: "f-lang", urgency: "f-urgency", ttl: "f-ttl", ttl_s: "f-ttl", send_at: "f-send-at"
  };

  function fieldKey(path) {
    if (!path) return "";
    var p = String(path).replace(/^\$\.?/, "").replace(/^body[.\/]/, "").replace(/^\//, "");
    p = p.split(/[.\/\[]/)[0];
    if (p === "ttl_s") return "ttl";
    return FIELD_IDS[p] ? p : "";
  }

  function clearErrors() {
    Array.prototype.forEach.call(form.querySelectorAll("[data-error-for]"), function (p) { p.textContent = ""; });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (i) { i.removeAttribute("aria-invalid"); });
    var fe = $("form-error");
    fe.textContent = "";
    fe.hidden = true;
  }

  /** Shows a message beside its field; unknown fields go to the form's banner. */
  function showError(field, message, en) {
    var key = fieldKey(field);
    var box = key ? form.querySelector('[data-error-for="' + (key === "ttl" ? "ttl" : key) + '"]') : null;
    var target = box || $("form-error");
    target.textContent = "";
    if (en !== undefined) target.appendChild(bi(message, en));
    else target.appendChild(el("span", { dir: "auto", text: message }));
    target.hidden = false;
    if (key) $(FIELD_IDS[key]).setAttribute("aria-invalid", "true");
    return key ? $(FIELD_IDS[key]) : null;
  }

  function values() {
    return {
      title: $("f-title").value,
      body: $("f-body").value,
      url: $("f-url").value.trim(),
      image: $("f-image").value.trim(),
      icon: $("f-icon").value.trim(),
      topic: $("f-topic").value,
      lang: $("f-lang").value,
      urgency: $("f-urgency").value,
      ttl: $("f-ttl").value.trim(),
      send_at: $("f-send-at").value
    };
  }

  function isSitePath(u) {
    return /^\/(?![\/\\])/.test(u);
  }

  function isHttpUrl(u) {
    try {
      var p = new URL(u);
      return p.protocol === "https:" || p.protocol === "http:";
    } catch (e) { return false; }
  }

  /** Client-side checks that catch the obvious; the server's answer has the last word. */
  function validate(v) {
    var problems = [];
    if (!v.title.trim()) problems.push(["title", "العنوان مطلوب.", "A title is required."]);
    if (v.title.length > LIMITS.title) problems.push(["title", "العنوان أطول من 120 حرفاً.", "Title is over 120 characters."]);
    if (v.body.length > LIMITS.body) problems.push(["body", "النص أطول من 400 حرف.", "Body is over 400 characters."]);
    if (v.url && !isSitePath(v.url) && !isHttpUrl(v.url)) {
      problems.push(["url", "الرابط يجب أن يبدأ بـ / أو يكون رابطاً كاملاً على الموقع.", "Use a path starting with / or a full URL on the site."]);
    }
    ["image", "icon"].forEach(function (k) {
      if (v[k] && !isSitePath(v[k]) && !/^https:\/\//i.test(v[k])) {
        problems.push([k, "استعمل رابط https أو مساراً يبدأ بـ /.", "Use an https URL or a path starting with /."]);
      }
    });
    var hours = Number(v.ttl);
    if (v.ttl === "" || !isFinite(hours)) problems.push(["ttl", "أدخل عدد الساعات.", "Enter a number of hours."]);
    else if (hours * 3600 < 60 || hours * 3600 > 2419200) {
      problems.push(["ttl", "المدة بين دقيقة واحدة (0.02 ساعة) و672 ساعة.", "Between 1 minute (0.02 h) and 672 hours."]);
    }
    if (v.send_at) {
      var iso = localToIso(v.send_at);
      if (!iso) problems.push(["send_at", "موعد غير صالح.", "Not a valid date and time."]);
      else if (new Date(v.send_at).getTime() < Date.now() - 60000) problems.push(["send_at", "هذا الموعد مضى.", "That time has passed."]);
    }
    return problems;
  }

  function payloadOf(v) {
    var p = { title: v.title, body: v.body, url: v.url || "/", urgency: v.urgency, ttl_s: Math.round(Number(v.ttl) * 3600) };
    if (v.image) p.image = v.image;
    if (v.icon) p.icon = v.icon;
    if (v.topic) p.topic = v.topic;
    if (v.lang) p.lang = v.lang;
    if (v.send_at) p.send_at = localToIso(v.send_at);
    if (replacing) p.replaces = replacing.id;
    return p;
  }

  function setSending(on) {
    sending = on;
    var btn = $("send");
    btn.disabled = on;
    btn.setAttribute("aria-busy", on ? "true" : "false");
    updateSendLabel();
  }

  function updateSendLabel() {
    var label = $("send-label");
    label.textContent = "";
    if (sending) label.appendChild(bi("جارٍ الإرسال…", "Sending…"));
    else if ($("f-send-at").value) label.appendChild(replacing ? bi("جدولة التحديث", "Schedule update") : bi("جدولة الإرسال", "Schedule"));
    else label.appendChild(replacing ? bi("أرسل التحديث", "Send update") : bi("أرسل الآن", "Send now"));
  }

  function updateAudience() {
    var t = topicLabel($("f-topic").value);
    var lang = $("f-lang").value;
    var ar = $("f-topic").value ? "مشتركي قسم «" + t[0] + "»" : "كل المشتركين";
    var en = $("f-topic").value ? "subscribers of " + t[1] : "all subscribers";
    if (lang) {
      var names = { ar: ["العربية", "Arabic"], fr: ["الفرنسية", "French"], en: ["الإنجليزية", "English"] }[lang] || [lang, lang];
      ar += " بلغة " + names[0];
      en += " reading " + names[1];
    }
    $("audience").textContent = ar;
    $("audience-en").textContent = en;
  }

  function updateCounter(id, input, limit) {
    var n = input.value.length;
    var c = $(id);
    c.textContent = n + " / " + limit;
    c.classList.toggle("counter-warn", n >= limit * 0.9);
  }

  function onSubmit(ev) {
    ev.preventDefault();
    if (sending) return; // a second click while the first is in flight sends nothing
    clearErrors();
    var v = values();
    var problems = validate(v);
    if (problems.length) {
      var first = null;
      problems.forEach(function (p) { var f = showError(p[0], p[1], p[2]); first = first || f; });
      if (first) first.focus();
      return;
    }
    var body = payloadOf(v);
    // One key per composed alert: a retry of the same alert is answered with the same id.
    if (!idempotencyKey) idempotencyKey = uuid();
    setSending(true);
    api("POST", "/api/v1/alerts", body, { "Idempotency-Key": idempotencyKey }).then(function (res) {
      idempotencyKey = null;
      var scheduled = res && res.status === "scheduled";
      if (replacing && !scheduled) toast("تم قبول التحديث، وسيحلّ محلّ التنبيه السابق على الأجهزة.", "Update accepted; it replaces the earlier alert on devices.", "ok");
      else if (scheduled) toast("تمت جدولة التنبيه.", "Alert scheduled.", "ok");
      else toast("تم قبول التنبيه وبدأ الإرسال.", "Alert accepted; sending has begun.", "ok");
      justSent = res && res.id;
      resetForm(true);
      refreshAlerts();
      refreshStats();
    }, function (e) {
      if (e.status === 401) return;
      if (e.status === 409) {
        idempotencyKey = null;
        showError("", "تعارض: " + e.message, "Conflict: " + e.message);
      } else if (e.status === 0) {
        showError("", "تعذّر الاتصال بالخادم. أعد المحاولة، فلن يُرسل التنبيه مرتين.",
          "Can't reach the server. Try again; the alert won't be sent twice.");
      } else {
        var f = showError(e.field, e.message + (e.code ? " (" + e.code + ")" : ""));
        if (f) f.focus();
        else $("form-error").focus();
      }
    }).catch(function (e) {
      if (window.console) console.error("nabaa admin:", e);
    }).then(function () { setSending(false); });
  }

  function resetForm(afterSend) {
    HTMLFormElement.prototype.reset.call(form);
    $("f-url").value = "/";
    $("f-ttl").value = "24";
    $("f-urgency").value = "high";
    idempotencyKey = null;
    setReplacing(null);
    clearErrors();
    updateCounter("count-title", $("f-title"), LIMITS.title);
    updateCounter("count-body", $("f-body"), LIMITS.body);
    updateSendLabel();
    updateAudience();
    updatePreview();
    if (afterSend) $("f-title").focus();
  }

  function setReplacing(a) {
    replacing = a ? { id: a.id, title: a.title } : null;
    $("replacing").hidden = !replacing;
    $("replacing-title").textContent = replacing ? replacing.title : "";
    $("compose-panel").classList.toggle("is-update", !!replacing);
    var heading = $("compose-title");
    heading.textContent = "";
    heading.appendChild(replacing ? bi("تحديث تنبيه", "Update an alert") : bi("تنبيه جديد", "New alert"));
    updateSendLabel();
  }

  /** "Update" on a sent alert: the compose form starts from it, and the new alert replaces it on devices. */
  function startUpdate(a) {
    resetForm(false);
    var text = function (x) { return typeof x === "string" ? x : ""; };
    $("f-title").value = text(a.title);
    $("f-body").value = text(a.body);
    $("f-url").value = text(a.url) || "/";
    $("f-image").value = text(a.image);
    $("f-icon").value = text(a.icon);
    $("f-topic").value = text(a.topic);
    if ($("f-topic").value !== text(a.topic)) $("f-topic").value = "";
    $("f-lang").value = text(a.lang);
    if ($("f-lang").value !== text(a.lang)) $("f-lang").value = "";
    $("f-urgency").value = text(a.urgency) || "high";
    if (typeof a.ttl_s === "number" && a.ttl_s > 0) $("f-ttl").value = String(Math.round((a.ttl_s / 3600) * 100) / 100);
    setReplacing(a);
    updateCounter("count-title", $("f-title"), LIMITS.title);
    updateCounter("count-body", $("f-body"), LIMITS.body);
    updateAudience();
    updatePreview();
    $("compose-panel").scrollIntoView({ block: "start", behavior: "auto" });
    $("f-title").focus();
    $("f-title").select();
  }

  // ---------------------------------------------------------------- preview

  var imageTimer = null;

  function previewImageUrl(u) {
    if (!u) return "";
    if (isSitePath(u)) return u;
    return /^https:\/\//i.test(u) && isHttpUrl(u) ? u : "";
  }

  var RTL_LANGS = ["ar", "fa", "he", "ur", "ps", "ku", "dv", "yi"];
  var LETTER = /\p{L}/u;

  /** The language the notification is shown in, as the server decides it (core.models.detect_lang). */
  function detectLang(text) {
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if ((c >= 0x0600 && c <= 0x06ff) || (c >= 0x0750 && c <= 0x077f) || (c >= 0xfb50 && c <= 0xfefc)) return "ar";
      if (LETTER.test(text.charAt(i))) return "en";
    }
    return "ar";
  }

  function updatePreview() {
    var v = values();
    var title = v.title.trim();
    var body = v.body.trim();
    // What the service worker will set: dir and lang from the alert's language, actions in Arabic or English.
    var lang = (v.lang || detectLang(title)).split("-")[0];
    var dir = RTL_LANGS.indexOf(lang) !== -1 ? "rtl" : "ltr";
    var actions = lang === "en" ? { open: "Read now", later: "Later" } : { open: "اقرأ الآن", later: "لاحقاً" };
    Array.prototype.forEach.call(document.querySelectorAll('[data-pv="title"]'), function (n) {
      n.textContent = title || "عنوان التنبيه · Alert title";
      n.classList.toggle("pv-placeholder", !title);
      n.setAttribute("dir", title ? dir : "auto");
      n.setAttribute("lang", lang);
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-pv="body"]'), function (n) {
      n.textContent = body || "نص التنبيه يظهر هنا · The body shows here";
      n.classList.toggle("pv-placeholder", !body);
      n.setAttribute("dir", body ? dir : "auto");
      n.setAttribute("lang", lang);
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-pv-action]"), function (n) {
      n.textContent = actions[n.getAttribute("data-pv-action")] || "";
      n.setAttribute("dir", dir);
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-pv="origin"]'), function (n) { n.textContent = location.host; });
    Array.prototype.forEach.call(document.querySelectorAll('[data-pv="url"]'), function (n) {
      var u = v.url || "/";
      n.textContent = isSitePath(u) ? location.origin + u : u;
    });
    clearTimeout(imageTimer);
    imageTimer = setTimeout(function () {
      var img = previewImageUrl(v.image);
      var icon = previewImageUrl(v.icon) || "/static/icon-192.png";
      Array.prototype.forEach.call(document.querySelectorAll('[data-pv="image"]'), function (n) {
        if (img) { if (n.getAttribute("src") !== img) n.src = img; n.hidden = false; } else { n.removeAttribute("src"); n.hidden = true; }
      });
      Array.prototype.forEach.call(document.querySelectorAll('[data-pv="icon"]'), function (n) {
        if (n.getAttribute("src") !== icon) n.src = icon;
      });
    }, 350);
  }

  // ---------------------------------------------------------------- alerts list

  var rows = new Map();   // alert id → {li, parts, data}
  var justSent = null;
  var alertsTimer = null, statsTimer = null, polling = false;
  var filter = "all";
  var FILTERS = {
    all: function () { return true; },
    scheduled: function (s) { return s === "scheduled"; },
    active: function (s) { return s === "queued" || s === "sending"; },
    sent: function (s) { return s === "done" || s === "failed"; }
  };
  var rowSeq = 0;
  var RANK = { scheduled: 0, queued: 1, sending: 2, done: 3, failed: 3, cancelled: 3 };

  function rank(status) { return RANK[status] === undefined ? 3 : RANK[status]; }

  /** A small results tile: Arabic label, English beside it, the number under them. */
  function tile(key, ar, en) {
    var dd = el("dd", { className: "count-v", dir: "ltr", text: "0" });
    var node = el("div", { className: "count count-" + key },
      el("dt", null, el("span", { text: ar }), " ", el("span", { className: "en", lang: "en", dir: "ltr", text: en })), dd);
    return { node: node, value: dd };
  }

  function buildRow(id) {
    var parts = {};
    var detailsId = "alert-details-" + (++rowSeq);
    parts.status = el("span", { className: "pill" });
    parts.live = el("span", { className: "live-badge", hidden: true, title: "يُتابَع مباشرة · Followed live" },
      el("span", { className: "live-dot", "aria-hidden": "true" }), bi("مباشر", "Live"));
    parts.title = el("h3", { className: "alert-title", dir: "auto" });
    parts.topic = el("span", { className: "chip" });
    parts.update_of = el("span", { className: "chip chip-update", hidden: true }, bi("تحديث", "Update"));
    parts.url = el("code", { className: "alert-url", dir: "ltr" });
    parts.when = el("p", { className: "alert-when" });
    parts.progress = el("progress", { className: "bar", max: "1" });
    parts.percent = el("span", { className: "bar-pct", dir: "ltr" });
    parts.progressLabel = el("span", { className: "bar-label" });
    parts.counts = el("dl", { className: "counts" });
    parts.countValues = {};
    COUNTS.forEach(function (c) {
      var t = tile(c[0], c[1], c[2]);
      parts.countValues[c[0]] = t.value;
      parts.counts.appendChild(t.node);
    });
    var ctr = tile("ctr", "نسبة النقر", "CTR");
    parts.ctr = ctr.value;
    parts.counts.appendChild(ctr.node);

    parts.detailsBtn = el("button", {
      type: "button", className: "btn btn-link btn-sm", "data-nabaa": "details", "aria-expanded": "false",
      "aria-controls": detailsId
    }, el("span", { className: "chev", "aria-hidden": "true" }), bi("حسب خدمة الإشعارات", "By push service"));
    parts.update = el("button", { type: "button", className: "btn btn-ghost btn-sm", "data-nabaa": "update",
      title: "أرسل نسخة محدّثة تحلّ محلّ هذا التنبيه · Send a new version that replaces this one" }, bi("تحديث", "Update"));
    parts.cancel = el("button", { type: "button", className: "btn btn-danger btn-sm", "data-nabaa": "cancel" }, bi("إلغاء", "Cancel"));
    parts.details = el("div", { className: "alert-details", id: detailsId, "data-nabaa": "breakdown", hidden: true });

    parts.countsRow = el("div", { className: "counts-row" }, parts.counts);
    var row = { li: null, parts: parts, data: null, open: false };
    parts.cancel.addEventListener("click", function () { cancelAlert(id, parts.cancel); });
    parts.update.addEventListener("click", function () { if (row.data) startUpdate(row.data); });
    parts.detailsBtn.addEventListener("click", function () {
      row.open = !row.open;
      parts.detailsBtn.setAttribute("aria-expanded", row.open ? "true" : "false");
      parts.details.hidden = !row.open;
      if (row.open && row.data) renderDetails(parts.details, row.data);
    });

    row.li = el("li", { className: "alert-row", "data-alert-id": id },
      el("div", { className: "alert-top" },
        el("div", { className: "alert-headline" }, parts.status, parts.live, parts.title),
        el("div", { className: "alert-side" }, parts.update_of, parts.topic)),
      el("div", { className: "alert-meta" }, parts.when, parts.url),
      el("div", { className: "bar-row" }, parts.progress, parts.percent, parts.progressLabel),
      parts.countsRow,
      el("div", { className: "alert-actions" }, parts.detailsBtn,
        el("span", { className: "alert-actions-end" }, parts.update, parts.cancel)),
      parts.details);
    return row;
  }

  function fmtRate(r) {
    return typeof r === "number" && isFinite(r) ? (Math.round(r * 1000) / 10) + "%" : "—";
  }

  function updateRow(row, a) {
    row.data = a;
    var p = row.parts;
    var status = typeof a.status === "string" ? a.status : "";
    var st = STATUS[status] || { ar: status, en: status };
    row.li.setAttribute("data-status", status);
    p.status.className = "pill pill-" + (STATUS[status] ? status : "unknown");
    p.status.textContent = "";
    p.status.appendChild(bi(st.ar, st.en));
    p.title.textContent = typeof a.title === "string" ? a.title : "";
    var t = topicLabel(a.topic);
    p.topic.textContent = t[0] + " · " + t[1];
    p.update_of.hidden = !a.replaces;
    p.url.textContent = typeof a.url === "string" ? a.url : "";
    p.url.title = p.url.textContent;

    var when;
    if (status === "scheduled" && a.send_at) {
      when = ["يُرسل " + fmtRelative(a.send_at, "ar") + " (" + fmtDate(a.send_at, "ar") + ")",
        "sends " + fmtRelative(a.send_at, "en") + " (" + fmtDate(a.send_at, "en") + ")"];
    } else if (a.finished_at) {
      var dur = fmtDuration(a.started_at, a.finished_at);
      when = ["انتهى " + fmtRelative(a.finished_at, "ar") + (dur ? " في " + dur.replace(" s", " ث").replace(" min", " د") : ""),
        "finished " + fmtRelative(a.finished_at, "en") + (dur ? " in " + dur : "")];
    } else if (a.started_at) {
      when = ["بدأ " + fmtRelative(a.started_at, "ar"), "started " + fmtRelative(a.started_at, "en")];
    } else {
      when = ["أُنشئ " + fmtRelative(a.created_at, "ar"), "created " + fmtRelative(a.created_at, "en")];
    }
    p.when.textContent = "";
    p.when.title = a.created_at ? "أُنشئ · Created " + fmtDate(a.created_at, "en") : "";
    p.when.appendChild(bi(when[0], when[1]));

    var c = a.counts || {};
    COUNTS.forEach(function (k) { p.countValues[k[0]].textContent = fmtNum(c[k[0]]); });
    p.ctr.textContent = fmtRate(a.ctr);
    var targeted = num(c.targeted);
    var finished = num(c.sent) + num(c.gone) + num(c.failed);
    if (status === "queued" || (status === "sending" && targeted === 0)) {
      p.progress.removeAttribute("value"); // indeterminate while the audience is being chosen
      p.percent.textContent = "";
    } else {
      var max = Math.max(targeted, 1);
      p.progress.max = max;
      p.progress.value = targeted ? Math.min(finished, targeted) : (status === "done" ? 1 : 0);
      p.percent.textContent = targeted ? Math.floor((Math.min(finished, targeted) / targeted) * 100) + "%" : (status === "done" ? "100%" : "0%");
    }
    p.progress.hidden = status === "scheduled" || status === "cancelled";
    p.percent.hidden = p.progress.hidden;
    p.progressLabel.textContent = "";
    if (status === "scheduled") p.progressLabel.appendChild(bi("بانتظار الموعد", "waiting for its time"));
    else if (status === "cancelled") p.progressLabel.appendChild(bi("لم يُرسل", "not sent"));
    else if (targeted === 0 && status === "done") p.progressLabel.appendChild(bi("لا مشتركين مستهدفين", "no subscribers targeted"));
    else p.progressLabel.appendChild(bi(fmtNum(finished) + " من " + fmtNum(targeted), fmtNum(finished) + " of " + fmtNum(targeted)));
    p.progress.setAttribute("aria-label", "التقدم · Progress " + (p.percent.textContent || ""));

    var hasResults = status !== "scheduled" && status !== "cancelled";
    p.countsRow.hidden = !hasResults;
    p.detailsBtn.hidden = !hasResults;
    p.update.hidden = !(status === "done" || status === "sending");
    p.cancel.hidden = status !== "scheduled";
    if (!hasResults && row.open) p.detailsBtn.click();
    if (row.open) renderDetails(p.details, a);
    applyFilter(row);
  }

  // ----- per push service, on expanding a row

  var PUSH_WORDS = [
    ["sent", "أُرسل", "Sent"],
    ["gone", "منتهية", "Gone"],
    ["failed", "فشل", "Failed"],
    ["retried", "أُعيدت", "Retried"],
    ["expired", "انتهت مدتها", "Expired"]
  ];
  var SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    for (var i = 2; i < arguments.length; i++) if (arguments[i]) node.appendChild(arguments[i]);
    return node;
  }

  function svgTitle(text) {
    var t = svg("title");
    t.textContent = text;
    return t;
  }

  var rtl = document.documentElement.dir === "rtl";

  /** A horizontal bar of parts [value, className], from the inline start (the right, in Arabic). */
  function stackedBar(partsList, total, label) {
    var bar = svg("svg", { class: "stack", viewBox: "0 0 100 8", preserveAspectRatio: "none", role: "img", "aria-label": label });
    bar.appendChild(svg("rect", { class: "stack-bg", x: 0, y: 0, width: 100, height: 8, rx: 0 }));
    var at = 0;
    partsList.forEach(function (part) {
      if (!part[0] || !total) return;
      var w = (part[0] / total) * 100;
      bar.appendChild(svg("rect", { class: part[1], x: rtl ? 100 - at - w : at, y: 0, width: w, height: 8 }));
      at += w;
    });
    return bar;
  }

  function renderDetails(box, a) {
    box.textContent = "";
    var svc = a.by_push_service && typeof a.by_push_service === "object" ? a.by_push_service : {};
    var hosts = Object.keys(svc).sort(function (x, y) { return num(svc[y].sent) - num(svc[x].sent); });
    box.appendChild(el("h4", { className: "details-h" }, bi("النتائج حسب خدمة الإشعارات", "Results by push service")));
    if (!hosts.length) {
      box.appendChild(el("p", { className: "details-empty" },
        bi("لم تُجب أي خدمة إشعارات بعد.", "No push service has answered yet.")));
    } else {
      var head = el("tr", null, el("th", { scope: "col", className: "svc-name" }, bi("الخدمة", "Service")));
      PUSH_WORDS.forEach(function (w) {
        head.appendChild(el("th", { scope: "col", className: "svc-n svc-" + w[0] },
          el("span", { text: w[1] }), el("span", { className: "en", lang: "en", dir: "ltr", text: w[2] })));
      });
      head.appendChild(el("th", { scope: "col", className: "svc-share" }, bi("الحصيلة", "Outcome")));
      var body = el("tbody");
      hosts.forEach(function (host) {
        var r = svc[host] || {};
        var name = pushServiceName(host);
        var tr = el("tr", { "data-push-service": host },
          el("th", { scope: "row", className: "svc-name" },
            name ? el("span", { className: "svc-label", text: name }) : null,
            el("code", { className: "host", dir: "ltr", text: host })));
        PUSH_WORDS.forEach(function (w) {
          tr.appendChild(el("td", { className: "svc-n svc-" + w[0], dir: "ltr", text: fmtNum(r[w[0]]) }));
        });
        var final = num(r.sent) + num(r.gone) + num(r.failed);
        var label = host + ": " + fmtNum(r.sent) + " sent, " + fmtNum(r.gone) + " gone, " + fmtNum(r.failed) + " failed";
        tr.appendChild(el("td", { className: "svc-share" },
          stackedBar([[num(r.sent), "seg-sent"], [num(r.gone), "seg-gone"], [num(r.failed), "seg-failed"]], final, label)));
        body.appendChild(tr);
      });
      box.appendChild(el("div", { className: "table-wrap" },
        el("table", { className: "svc-table" }, el("thead", null, head), body)));
    }

    var facts = el("dl", { className: "facts" });
    function fact(ar, en, value, attrs) {
      if (value === "" || value === null || value === undefined) return;
      facts.appendChild(el("div", { className: "fact" },
        el("dt", null, bi(ar, en)), el("dd", attrs || { dir: "auto" }, typeof value === "object" ? value : String(value))));
    }
    var urg = { high: ["عاجل", "High"], normal: ["عادي", "Normal"], low: ["منخفضة", "Low"], "very-low": ["منخفضة جداً", "Very low"] }[a.urgency];
    var langs = { ar: ["العربية", "Arabic"], fr: ["الفرنسية", "French"], en: ["الإنجليزية", "English"] };
    var lang = a.lang ? (langs[a.lang] || [a.lang, a.lang]) : ["كل اللغات", "All languages"];
    fact("النص", "Body", a.body);
    fact("الأولوية", "Urgency", urg ? bi(urg[0], urg[1]) : a.urgency, {});
    fact("الصلاحية", "Time to live", a.ttl_s ? fmtNum(Math.round((a.ttl_s / 3600) * 100) / 100) + " h" : "", { dir: "ltr" });
    fact("لغة القرّاء", "Readers' language", bi(lang[0], lang[1]), {});
    fact("بدأ الإرسال", "Sending began", a.started_at ? bi(fmtDate(a.started_at, "ar"), fmtDate(a.started_at, "en")) : "", {});
    if (a.replaces) fact("يحلّ محلّ", "Replaces", a.replaces, { dir: "ltr", className: "mono" });
    box.appendChild(facts);
  }

  // ----- filter

  function applyFilter(row) {
    var status = row.li.getAttribute("data-status") || "";
    row.li.hidden = !(FILTERS[filter] || FILTERS.all)(status);
  }

  function setFilter(name) {
    filter = FILTERS[name] ? name : "all";
    Array.prototype.forEach.call(document.querySelectorAll('[data-nabaa="filter"]'), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-filter") === filter ? "true" : "false");
    });
    rows.forEach(applyFilter);
    updateEmpty();
  }

  function updateEmpty() {
    var total = rows.size, shown = 0, counts = { all: 0, scheduled: 0, active: 0, sent: 0 };
    rows.forEach(function (row) {
      var s = row.li.getAttribute("data-status") || "";
      Object.keys(FILTERS).forEach(function (f) { if (FILTERS[f](s)) counts[f] += 1; });
      if (!row.li.hidden) shown += 1;
    });
    Object.keys(counts).forEach(function (f) {
      var n = document.querySelector('[data-nabaa="filter"][data-filter="' + f + '"] .filter-n');
      if (n) n.textContent = fmtNum(counts[f]);
    });
    $("alerts-empty").hidden = total > 0;
    $("alerts-filtered").hidden = total === 0 || shown > 0;
  }

  function renderAlerts(list) {
    var ol = $("alerts");
    var seen = new Set();
    var prev = null;
    list.forEach(function (a) {
      if (!a || typeof a.id !== "string") return;
      seen.add(a.id);
      var row = rows.get(a.id);
      if (!row) {
        row = buildRow(a.id);
        rows.set(a.id, row);
        if (a.id === justSent) {
          row.li.classList.add("alert-new");
          justSent = null;
        }
      }
      // A row followed live has fresher numbers from its stream than this list, and an alert's status only
      // moves forward: a list read before the stream's last event must not take the row back.
      if (!row.data || (!streams.has(a.id) && rank(a.status) >= rank(row.data.status))) updateRow(row, a);
      follow(row.data || a);
      var next = prev ? prev.nextSibling : ol.firstChild;
      if (next !== row.li) ol.insertBefore(row.li, next);
      prev = row.li;
    });
    rows.forEach(function (row, id) {
      if (!seen.has(id)) {
        unfollow(id);
        if (row.li.parentNode) row.li.parentNode.removeChild(row.li);
        rows.delete(id);
      }
    });
    updateEmpty();
  }

  // ----- live progress: the alert's event stream, read with fetch() so the token stays in a header

  var MAX_STREAMS = 4;
  var STREAM_RETRY_MS = 10000;
  var streams = new Map();      // alert id → AbortController
  var streamFailed = new Map(); // alert id → when its last stream failed (ms)

  function setRowLive(id, on) {
    var row = rows.get(id);
    if (!row) return;
    row.parts.live.hidden = !on;
    if (on) row.li.setAttribute("data-live", "true");
    else row.li.removeAttribute("data-live");
  }

  /** Follows a queued or sending alert until it is over (at most MAX_STREAMS at once). */
  function follow(a) {
    if (!a || (a.status !== "queued" && a.status !== "sending")) return;
    if (!token || !polling || document.hidden || streams.has(a.id) || streams.size >= MAX_STREAMS) return;
    if (Date.now() - (streamFailed.get(a.id) || 0) < STREAM_RETRY_MS) return;
    if (typeof ReadableStream === "undefined" || typeof TextDecoder === "undefined") return; // the 2 s poll does it
    var id = a.id;
    var ctrl = new AbortController();
    var ended = null;
    streams.set(id, ctrl);
    setRowLive(id, true);
    fetch("/api/v1/alerts/" + encodeURIComponent(id) + "/stream", {
      headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
      cache: "no-store", credentials: "same-origin", signal: ctrl.signal
    }).then(function (res) {
      if (res.status === 401) { signOut(true); throw ApiError(401, "unauthorized", "unauthorized"); }
      if (!res.ok || !res.body) throw ApiError(res.status, "", "HTTP " + res.status);
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer = (buffer + decoder.decode(chunk.value, { stream: true })).replace(/\r\n/g, "\n");
          var cut;
          while ((cut = buffer.indexOf("\n\n")) !== -1) {
            var ev = parseEvent(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (!ev) continue;
            if (ev.event === "alert" && ev.data && ev.data.id === id) {
              var row = rows.get(id);
              if (row) updateRow(row, ev.data);
            } else if (ev.event === "end") {
              ended = ev.data && ev.data.reason;
            }
          }
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      if (e && e.name === "AbortError") return;
      streamFailed.set(id, Date.now());
    }).then(function () {
      if (streams.get(id) === ctrl) streams.delete(id);
      setRowLive(id, false);
      // Over (or the 10-minute stream ran out): the list and the audience numbers catch up now.
      if (ended && ended !== "timeout" && polling) { refreshStats(); }
    });
  }

  function parseEvent(block) {
    var name = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length) return null;
    try { return { event: name, data: JSON.parse(data.join("\n")) }; } catch (e) { return null; }
  }

  function unfollow(id) {
    var ctrl = streams.get(id);
    if (ctrl) { streams.delete(id); ctrl.abort(); setRowLive(id, false); }
  }

  function unfollowAll() {
    Array.from(streams.keys()).forEach(unfollow);
  }

  function setLive(ok) {
    $("live").setAttribute("data-ok", ok ? "true" : "false");
    $("live-text").textContent = ok ? "متصل · Live" : "غير متصل · Offline";
  }

  function refreshAlerts() {
    return api("GET", "/api/v1/alerts?limit=50").then(function (data) {
      renderAlerts(data && Array.isArray(data.alerts) ? data.alerts : []);
      $("alerts-error").hidden = true;
      $("alerts-updated").textContent = "آخر تحديث · Updated " + timeFmt.format(new Date());
      setLive(true);
    }, function (e) {
      if (e.status === 401) return;
      var box = $("alerts-error");
      box.textContent = "";
      box.appendChild(bi("تعذّر تحديث القائمة: ", "Couldn't refresh the list: "));
      box.appendChild(el("span", { dir: "auto", text: e.message }));
      box.hidden = false;
      setLive(false);
    });
  }

  function cancelAlert(id, btn) {
    btn.disabled = true;
    api("DELETE", "/api/v1/alerts/" + encodeURIComponent(id)).then(function () {
      toast("أُلغي التنبيه المجدول.", "Scheduled alert cancelled.", "ok");
      refreshAlerts();
    }, function (e) {
      if (e.status === 401) return;
      if (e.status === 409) toast("بدأ إرسال هذا التنبيه، ولا يمكن إلغاؤه.", "This alert is already sending; it can't be cancelled.", "error");
      else toast("تعذّر الإلغاء: " + e.message, "Couldn't cancel: " + e.message, "error");
    }).then(function () { btn.disabled = false; });
  }

  // ----- CSV export: fetched with the token in its header, then saved from a Blob

  function filenameFrom(disposition) {
    var m = /filename="([^"\/\\]+)"/.exec(disposition || "");
    return m ? m[1] : "";
  }

  function exportCsv() {
    var btn = $("export");
    btn.disabled = true;
    btn.setAttribute("aria-busy", "true");
    fetch("/api/v1/alerts.csv?limit=500", {
      headers: { Authorization: "Bearer " + (token || ""), Accept: "text/csv" }, cache: "no-store", credentials: "same-origin"
    }).then(function (res) {
      if (!res.ok) {
        return res.text().then(function (text) {
          var data = null;
          try { data = JSON.parse(text); } catch (e) { data = null; }
          if (res.status === 401) signOut(true);
          throw errorFrom(res.status, data, res.statusText);
        });
      }
      var name = filenameFrom(res.headers.get("Content-Disposition")) || "nabaa-alerts.csv";
      return res.blob().then(function (blob) {
        var url = URL.createObjectURL(blob);
        var a = el("a", { href: url, download: name, hidden: true });
        document.body.appendChild(a);
        a.click();
        a.parentNode.removeChild(a);
        setTimeout(function () { URL.revokeObjectURL(url); }, 30000);
        toast("نُزّل الملف " + name, "Downloaded " + name, "ok");
      });
    }, function (e) {
      throw ApiError(0, "network", (e && e.message) || "network error");
    }).catch(function (e) {
      if (e.status === 401) return;
      toast("تعذّر التنزيل: " + e.message, "Couldn't download: " + e.message, "error");
    }).then(function () {
      btn.disabled = false;
      btn.setAttribute("aria-busy", "false");
    });
  }

  // ---------------------------------------------------------------- stats

  function barList(ul, entries, total, labelOf) {
    ul.textContent = "";
    if (!entries.length) {
      ul.appendChild(el("li", { className: "bars-empty" }, bi("لا بيانات بعد", "No data yet")));
      return;
    }
    entries.sort(function (a, b) { return b[1] - a[1]; });
    entries.forEach(function (e) {
      var label = labelOf(e[0]);
      var meter = el("progress", { className: "bar bar-thin", max: String(Math.max(total, 1)), value: String(e[1]) });
      meter.setAttribute("aria-label", label.text + ": " + e[1]);
      ul.appendChild(el("li", { className: "bars-item" },
        el("div", { className: "bars-head" }, label.node, el("span", { className: "bars-n", dir: "ltr", text: fmtNum(e[1]) })),
        meter));
    });
  }

  // ----- subscriber growth per day: an inline SVG, built node by node

  var GROWTH_DAYS = 30;
  var dayFmt = {
    ar: new Intl.DateTimeFormat("ar-MA-u-nu-latn", { day: "numeric", month: "short", timeZone: "UTC" }),
    en: new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", timeZone: "UTC" })
  };

  /** The last GROWTH_DAYS UTC days, oldest first, each {key, date, added, removed}. */
  function growthDays(growth, now) {
    var days = [];
    var today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    for (var i = GROWTH_DAYS - 1; i >= 0; i--) {
      var date = new Date(today - i * 86400000);
      var key = date.toISOString().slice(0, 10);
      var g = growth && typeof growth[key] === "object" && growth[key] ? growth[key] : {};
      days.push({ key: key, date: date, added: num(g.new), removed: num(g.removed) });
    }
    return days;
  }

  function renderGrowth(growth) {
    var box = $("growth");
    var days = growthDays(growth, new Date());
    var added = 0, removed = 0, peak = 0, peakDown = 0;
    days.forEach(function (d) {
      added += d.added; removed += d.removed;
      peak = Math.max(peak, d.added); peakDown = Math.max(peakDown, d.removed);
    });
    var W = 320, left = 4, right = 4, top = 14, plot = 84, H = top + plot + 2;
    var span = peak + peakDown || 1;
    var scale = plot / span;
    var base = top + (peak || (peakDown ? 0 : span)) * scale; // the zero line
    var slot = (W - left - right) / days.length;
    var barW = Math.max(2, slot - 2.5);
    var summary = "+" + added + " / −" + removed + " · " + GROWTH_DAYS + " days";
    var chart = svg("svg", { class: "growth-svg", viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": "نمو المشتركين يومياً في آخر " + GROWTH_DAYS + " يوماً: " + added + " جديد، " + removed +
        " أُزيل · Subscriber growth per day, last " + GROWTH_DAYS + " days: " + added + " new, " + removed + " removed" });
    chart.appendChild(svgTitle(summary));
    if (peak) {
      chart.appendChild(svg("line", { class: "growth-grid", x1: left, x2: W - right, y1: top, y2: top }));
      var peakLabel = svg("text", { class: "growth-tick", x: rtl ? W - right : left, y: top - 4, "text-anchor": rtl ? "end" : "start" });
      peakLabel.textContent = fmtNum(peak);
      chart.appendChild(peakLabel);
    }
    days.forEach(function (d, i) {
      // Time runs with the reading direction: in Arabic the oldest day is on the right.
      var slotX = rtl ? W - right - (i + 1) * slot : left + i * slot;
      var x = slotX + (slot - barW) / 2;
      var g = svg("g", { class: "growth-day" + (i === days.length - 1 ? " is-today" : ""), "data-day": d.key },
        svgTitle(dayFmt.ar.format(d.date) + " · " + dayFmt.en.format(d.date) + ": +" + d.added + " / −" + d.removed));
      g.appendChild(svg("rect", { class: "growth-hit", x: slotX, y: 0, width: slot, height: H }));
      if (d.added) g.appendChild(svg("rect", { class: "growth-new", x: x, y: base - d.added * scale, width: barW,
        height: Math.max(1.5, d.added * scale), rx: 1.5 }));
      if (d.removed) g.appendChild(svg("rect", { class: "growth-removed", x: x, y: base, width: barW,
        height: Math.max(1.5, d.removed * scale), rx: 1.5 }));
      chart.appendChild(g);
    });
    chart.appendChild(svg("line", { class: "growth-base", x1: left, x2: W - right, y1: base, y2: base }));

    box.textContent = "";
    box.appendChild(chart);
    var first = days[0].date;
    box.appendChild(el("div", { className: "growth-axis", "aria-hidden": "true" },
      el("span", { text: dayFmt.ar.format(first) + " · " + dayFmt.en.format(first) }),
      el("span", null, bi("اليوم", "Today"))));
    $("growth-new").textContent = "+" + fmtNum(added);
    $("growth-removed").textContent = "−" + fmtNum(removed);
  }

  function renderStats(s) {
    var total = num(s && s.subscriptions);
    $("stat-total").textContent = fmtNum(total);
    var byTopic = (s && s.by_topic) || {};
    barList($("stat-topics"), Object.keys(byTopic).map(function (k) { return [k, num(byTopic[k])]; }), total, function (id) {
      var l = topicLabel(id);
      return { text: l[0] + " · " + l[1], node: el("span", { className: "bars-label" }, bi(l[0], l[1])) };
    });
    var bySvc = (s && s.by_push_service) || {};
    barList($("stat-services"), Object.keys(bySvc).map(function (k) { return [k, num(bySvc[k])]; }), total, function (host) {
      var name = pushServiceName(host);
      return {
        text: host,
        node: el("span", { className: "bars-label" }, name ? el("span", { text: name }) : null,
          el("code", { className: "host", dir: "ltr", text: host }))
      };
    });
    renderGrowth((s && s.growth) || {});
    $("stats-error").hidden = true;
  }

  function refreshStats() {
    return api("GET", "/api/v1/stats").then(renderStats, function (e) {
      if (e.status === 401) return;
      var box = $("stats-error");
      box.textContent = "";
      box.appendChild(bi("تعذّر تحميل الأرقام: ", "Couldn't load the numbers: "));
      box.appendChild(el("span", { dir: "auto", text: e.message }));
      box.hidden = false;
    });
  }

  // ---------------------------------------------------------------- polling

  function scheduleAlerts() {
    clearTimeout(alertsTimer);
    if (!polling || document.hidden) return;
    alertsTimer = setTimeout(function () { refreshAlerts().then(scheduleAlerts); }, ALERTS_EVERY_MS);
  }

  function scheduleStats() {
    clearTimeout(statsTimer);
    if (!polling || document.hidden) return;
    statsTimer = setTimeout(function () { refreshStats().then(scheduleStats); }, STATS_EVERY_MS);
  }

  function startPolling() {
    polling = true;
    refreshAlerts().then(scheduleAlerts);
    scheduleStats();
  }

  function stopPolling() {
    polling = false;
    clearTimeout(alertsTimer);
    clearTimeout(statsTimer);
    unfollowAll();
  }

  document.addEventListener("visibilitychange", function () {
    if (!polling) return;
    if (document.hidden) { clearTimeout(alertsTimer); clearTimeout(statsTimer); unfollowAll(); }
    else { refreshAlerts().then(scheduleAlerts); refreshStats().then(scheduleStats); }
  });

  // ---------------------------------------------------------------- start

  function showApp(stats) {
    $("signin").hidden = true;
    $("app").hidden = false;
    rows.forEach(function (row) { if (row.li.parentNode) row.li.parentNode.removeChild(row.li); });
    rows.clear();
    loadConfig().then(function () { if (stats) renderStats(stats); else refreshStats(); });
    if (stats) renderStats(stats);
    startPolling();
    resetForm(false);
    $("f-title").focus();
  }

  function wire() {
    form = $("compose");
    $("signin-form").addEventListener("submit", onSignIn);
    $("signout").addEventListener("click", function () { signOut(false); });
    form.addEventListener("submit", onSubmit);
    form.addEventListener("input", function (ev) {
      // A changed alert is a new alert: it gets a new Idempotency-Key on its next send.
      idempotencyKey = null;
      var t = ev.target;
      if (t.id === "f-title") updateCounter("count-title", t, LIMITS.title);
      if (t.id === "f-body") updateCounter("count-body", t, LIMITS.body);
      if (t.id === "f-send-at") updateSendLabel();
      if (t.getAttribute("aria-invalid") === "true") {
        t.removeAttribute("aria-invalid");
        var key = Object.keys(FIELD_IDS).filter(function (k) { return FIELD_IDS[k] === t.id; })[0];
        var box = key && form.querySelector('[data-error-for="' + key + '"]');
        if (box) box.textContent = "";
      }
      updatePreview();
    });
    form.addEventListener("change", function (ev) {
      idempotencyKey = null;
      if (ev.target.id === "f-topic" || ev.target.id === "f-lang") updateAudience();
      if (ev.target.id === "f-send-at") updateSendLabel();
      updatePreview();
    });
    $("clear-form").addEventListener("click", function () { resetForm(true); });
    $("replacing-cancel").addEventListener("click", function () { resetForm(true); });
    $("export").addEventListener("click", exportCsv);
    Array.prototype.forEach.call(document.querySelectorAll('[data-nabaa="filter"]'), function (b) {
      b.addEventListener("click", function () { setFilter(b.getAttribute("data-filter")); });
    });
    $("form-error").setAttribute("tabindex", "-1");

    if (token) showApp(null);
    else showSignIn(null);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
