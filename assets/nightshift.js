// Nightshift admin: the little the server cannot do. Times in the operator's zone, the CSRF
// token on every htmx request and form, the zone offset of entered times, and quiet live
// streams with an indicator in the header. No eval, no inline.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localInput(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  // The zone times are shown in: the operator's choice (a cookie, kept a year), local by default.
  function inUtc() { return /(?:^|;\s*)ns_tz=utc(?:;|$)/.test(document.cookie); }

  // "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago"; "in 12 s" for a time to come.
  function relative(d) {
    var s = Math.round((Date.now() - d.getTime()) / 1000);
    var future = s < 0;
    s = Math.abs(s);
    var text;
    if (s < 5) { return "just now"; }
    if (s < 60) { text = s + " s"; }
    else if (s < 3600) { text = Math.floor(s / 60) + " min"; }
    else if (s < 86400) { text = Math.floor(s / 3600) + " h"; }
    else { text = Math.floor(s / 86400) + " d"; }
    return future ? "in " + text : text + " ago";
  }

  // Each time as "3 min ago", its exact time (in the chosen zone) on hover; refreshed every
  // 30 s and whenever new content arrives, so it never goes badly stale.
  function showTimes(root) {
    var utc = inUtc();
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      var zone = utc ? { timeZone: "UTC" } : {};
      if (t.getAttribute("data-format") === "time") {
        var h = utc ? d.getUTCHours() : d.getHours();
        var m = utc ? d.getUTCMinutes() : d.getMinutes();
        var sec = utc ? d.getUTCSeconds() : d.getSeconds();
        t.textContent = pad(h) + ":" + pad(m) + ":" + pad(sec) + "." +
          String(d.getMilliseconds()).padStart(3, "0");
        return;
      }
      var day = Object.assign({ year: "numeric", month: "short", day: "numeric" }, zone);
      var clock = Object.assign({ hour: "2-digit", minute: "2-digit", second: "2-digit" }, zone);
      var exact = d.toLocaleDateString(undefined, day) + " " + d.toLocaleTimeString(undefined, clock) +
        (utc ? " UTC" : "");
      t.replaceChildren(span("rel", relative(d)));
      t.title = exact;
      t.setAttribute("aria-label", relative(d) + ", " + exact);
    });
    // Moments on the charts ("14:05 UTC", "Mon 14:05 UTC"), served in UTC.
    root.querySelectorAll("[data-at]").forEach(function (el) {
      var d = new Date(el.getAttribute("data-at"));
      if (isNaN(d)) { return; }
      var zone = utc ? { timeZone: "UTC" } : {};
      var text = pad(utc ? d.getUTCHours() : d.getHours()) + ":" +
        pad(utc ? d.getUTCMinutes() : d.getMinutes());
      if (el.getAttribute("data-format") === "weekday-time") {
        text = d.toLocaleDateString("en", Object.assign({ weekday: "short" }, zone)) + " " + text;
      }
      el.textContent = text + (utc ? " UTC" : "") + (el.getAttribute("data-rest") || "");
    });
    root.querySelectorAll("[data-tz-switch]").forEach(function (b) {
      b.textContent = utc ? "Times: UTC" : "Times: local";
      b.setAttribute("aria-pressed", utc ? "true" : "false");
    });
  }

  function localize(root) {
    showTimes(root);
    root.querySelectorAll("input[data-csrf]").forEach(function (i) { i.value = token; });
    root.querySelectorAll('input[name="ids"][form="bulk"]').forEach(function (b) {
      if (ticked[b.value]) { b.checked = true; }
    });
    root.querySelectorAll("[data-zone]").forEach(function (z) {
      try { z.textContent = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* keep UTC */ }
    });
    root.querySelectorAll("input[data-utc]").forEach(function (i) {
      if (i.value) {
        var d = new Date(i.value + "Z");
        if (!isNaN(d)) { i.value = localInput(d); }
      }
      i.removeAttribute("data-utc");
    });
  }

  // Each entered time goes with the offset in force at that time (tz_offset.NAME): a time
  // across a daylight-saving change from another one has another offset.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var offset = form.querySelector("input[data-tz-offset]");
    if (!offset) { return; }
    offset.value = String(-new Date().getTimezoneOffset());
    form.querySelectorAll("input[data-local-time][name]").forEach(function (i) {
      if (!i.value) { return; }
      var d = new Date(i.value);
      if (isNaN(d)) { return; }
      var name = "tz_offset." + i.name;
      var hidden = Array.prototype.find.call(form.querySelectorAll("input[type=hidden]"),
        function (h) { return h.name === name; });
      if (!hidden) {
        hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = name;
        form.appendChild(hidden);
      }
      hidden.value = String(-d.getTimezoneOffset());
    });
  }, true);

  // Bulk selection: a row's checkbox keeps its tick when a live update replaces the row, and
  // the header's checkbox ticks every row of the page.
  var ticked = {};
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (!t.matches) { return; }
    if (t.matches("input[data-select-page]")) {
      document.querySelectorAll('input[name="ids"][form="bulk"]').forEach(function (b) {
        b.checked = t.checked;
        ticked[b.value] = t.checked;
      });
    } else if (t.matches('input[name="ids"][form="bulk"]')) {
      ticked[t.value] = t.checked;
    }
  });
  // The UTC/local switch in the header, remembered for this operator's browser.
  document.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("[data-tz-switch]") : null;
    if (!b) { return; }
    var next = inUtc() ? "local" : "utc";
    document.cookie = "ns_tz=" + next + "; path=/; max-age=31536000; SameSite=Lax";
    showTimes(document);
  });
  setInterval(function () { showTimes(document); }, 30000);

  document.addEventListener("htmx:configRequest", function (e) {
    if (token) { e.detail.headers["X-CSRF-Token"] = token; }
  });

  // Live streams. The sse extension logs an error (htmx:sseError) for every `error` event of an
  // EventSource, and a stream the server ends (a restart, a proxy's timeout) fires one each time
  // although the browser simply reconnects. So the extension gets a quiet source: the browser
  // reconnects a dropped stream by itself; a stream it gave up on (an error status) is opened
  // again here after a growing delay, with the same listeners. Neither reaches the console;
  // the header's indicator shows them instead.
  var sources = [];
  var LABELS = {
    live: "Live updates on",
    connecting: "Connecting to live updates",
    offline: "Live updates offline, reconnecting"
  };
  var shown = null;

  function indicate() {
    var el = document.getElementById("live-status");
    if (!el) { return; }
    var state = null;
    sources.forEach(function (s) {
      if (s.state === "offline" || state === "offline") { state = "offline"; }
      else if (s.state === "connecting" || state === "connecting") { state = "connecting"; }
      else { state = "live"; }
    });
    if (state === shown) { return; }
    shown = state;
    el.hidden = !state;
    el.className = "live-status" + (state ? " is-" + state : "");
    el.title = state ? LABELS[state] : "";
    var text = el.querySelector(".live-text");
    if (text) { text.textContent = state ? LABELS[state] : ""; }
  }

  function QuietSource(url) {
    this.url = url;
    this.onopen = null;
    this.onerror = null; // set by the extension, never called: see above.
    this.closed = false;
    this.state = "connecting";
    this.delay = 0;
    this.timer = null;
    this.listeners = [];
    sources.push(this);
    this.connect();
    indicate();
  }
  QuietSource.prototype.connect = function () {
    var self = this;
    var es = new EventSource(this.url, { withCredentials: true });
    this.es = es;
    this.listeners.forEach(function (l) { es.addEventListener(l[0], l[1]); });
    es.onopen = function (e) {
      self.delay = 0;
      self.state = "open";
      indicate();
      if (self.onopen) { self.onopen.call(self, e); }
    };
    es.onerror = function () {
      if (self.closed) { return; }
      self.state = "offline";
      indicate();
      if (es.readyState === EventSource.CLOSED) {
        self.delay = Math.min(self.delay ? self.delay * 2 : 1000, 60000);
        self.timer = window.setTimeout(function () {
          if (!self.closed) { self.connect(); }
        }, self.delay);
      }
    };
  };
  QuietSource.prototype.addEventListener = function (type, fn) {
    this.listeners.push([type, fn]);
    this.es.addEventListener(type, fn);
  };
  QuietSource.prototype.removeEventListener = function (type, fn) {
    this.listeners = this.listeners.filter(function (l) { return l[0] !== type || l[1] !== fn; });
    this.es.removeEventListener(type, fn);
  };
  QuietSource.prototype.close = function () {
    var self = this;
    this.closed = true;
    window.clearTimeout(this.timer);
    this.es.close();
    sources = sources.filter(function (s) { return s !== self; });
    indicate();
  };
  Object.defineProperty(QuietSource.prototype, "readyState", {
    get: function () { return this.closed ? EventSource.CLOSED : this.es.readyState; }
  });

  if (window.htmx && window.EventSource) {
    htmx.createEventSource = function (url) { return new QuietSource(url); };
  }
  // Leaving the page closes its streams at once. Left open, Chromium keeps their connections
  // for a minute after the page is gone, and after a few live pages the next one waits for a
  // free connection (six per server over HTTP/1.1). A page brought back from the back-forward
  // cache has no streams any more: it is loaded again.
  window.addEventListener("pagehide", function () {
    sources.slice().forEach(function (s) { s.close(); });
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted && document.querySelector("[sse-connect]")) { window.location.reload(); }
  });

  if (window.htmx) {
    htmx.onLoad(localize);
  } else {
    document.addEventListener("DOMContentLoaded", function () { localize(document); });
  }
})();
