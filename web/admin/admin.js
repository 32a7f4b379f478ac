/*
 * Nabaa editor dashboard: sign in with the editor token, compose and preview an alert, send or
 * schedule it, watch its progress, read the audience numbers.
 *
 * All data reaches the page through textContent and element properties: never innerHTML.
 * The token lives in sessionStorage and travels only as "Authorization: Bearer …".
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
    else if ($("f-send-at").value) label.appendChild(bi("جدولة الإرسال", "Schedule"));
    else label.appendChild(bi("أرسل الآن", "Send now"));
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
      if (scheduled) toast("تمت جدولة التنبيه.", "Alert scheduled.", "ok");
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
    clearErrors();
    updateCounter("count-title", $("f-title"), LIMITS.title);
    updateCounter("count-body", $("f-body"), LIMITS.body);
    updateSendLabel();
    updateAudience();
    updatePreview();
    if (afterSend) $("f-title").focus();
  }

  // ---------------------------------------------------------------- preview

  var imageTimer = null;

  function previewImageUrl(u) {
    if (!u) return "";
    if (isSitePath(u)) return u;
    return /^https:\/\//i.test(u) && isHttpUrl(u) ? u : "";
  }

  function updatePreview() {
    var v = values();
    var title = v.title.trim();
    var body = v.body.trim();
    Array.prototype.forEach.call(document.querySelectorAll('[data-pv="title"]'), function (n) {
      n.textContent = title || "عنوان التنبيه · Alert title";
      n.classList.toggle("pv-placeholder", !title);
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-pv="body"]'), function (n) {
      n.textContent = body || "نص التنبيه يظهر هنا · The body shows here";
      n.classList.toggle("pv-placeholder", !body);
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

  var rows = new Map();   // alert id → {li, parts}
  var justSent = null;
  var alertsTimer = null, statsTimer = null, polling = false;

  function buildRow(id) {
    var parts = {};
    parts.status = el("span", { className: "pill" });
    parts.title = el("h3", { className: "alert-title", dir: "auto" });
    parts.topic = el("span", { className: "chip" });
    parts.url = el("code", { className: "alert-url", dir: "ltr" });
    parts.when = el("p", { className: "alert-when" });
    parts.progress = el("progress", { className: "bar", max: "1" });
    parts.percent = el("span", { className: "bar-pct", dir: "ltr" });
    parts.progressLabel = el("span", { className: "bar-label" });
    parts.counts = el("dl", { className: "counts" });
    parts.countValues = {};
    COUNTS.forEach(function (c) {
      var dd = el("dd", { className: "count-v", dir: "ltr", text: "0" });
      parts.countValues[c[0]] = dd;
      parts.counts.appendChild(el("div", { className: "count count-" + c[0] },
        el("dt", null, el("span", { text: c[1] }), " ", el("span", { className: "en", lang: "en", dir: "ltr", text: c[2] })), dd));
    });
    parts.ctr = el("span", { className: "ctr" });
    parts.cancel = el("button", { type: "button", className: "btn btn-danger btn-sm", "data-nabaa": "cancel" }, bi("إلغاء", "Cancel"));
    parts.cancel.addEventListener("click", function () { cancelAlert(id, parts.cancel); });

    var li = el("li", { className: "alert-row", "data-alert-id": id },
      el("div", { className: "alert-top" },
        el("div", { className: "alert-headline" }, parts.status, parts.title),
        el("div", { className: "alert-side" }, parts.topic, parts.cancel)),
      el("div", { className: "alert-meta" }, parts.when, parts.url),
      el("div", { className: "bar-row" }, parts.progress, parts.percent, parts.progressLabel),
      el("div", { className: "counts-row" }, parts.counts, parts.ctr));
    return { li: li, parts: parts };
  }

  function updateRow(row, a) {
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

    var sent = num(c.sent);
    p.ctr.textContent = "";
    if (sent > 0) {
      var rate = Math.round((num(c.clicked) / sent) * 1000) / 10;
      p.ctr.appendChild(bi("نسبة النقر " + rate + "%", "CTR " + rate + "%"));
    }
    p.cancel.hidden = status !== "scheduled";
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
      updateRow(row, a);
      var next = prev ? prev.nextSibling : ol.firstChild;
      if (next !== row.li) ol.insertBefore(row.li, next);
      prev = row.li;
    });
    rows.forEach(function (row, id) {
      if (!seen.has(id)) {
        if (row.li.parentNode) row.li.parentNode.removeChild(row.li);
        rows.delete(id);
      }
    });
    $("alerts-empty").hidden = list.length > 0;
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
  }

  document.addEventListener("visibilitychange", function () {
    if (!polling) return;
    if (document.hidden) { clearTimeout(alertsTimer); clearTimeout(statsTimer); }
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
    $("form-error").setAttribute("tabindex", "-1");

    if (token) showApp(null);
    else showSignIn(null);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
