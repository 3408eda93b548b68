// Nightshift admin: the little the server cannot do. Times in the operator's zone, the CSRF
// token on every htmx request and form, and the zone offset of entered times. No eval, no inline.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localInput(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      if (t.getAttribute("data-format") === "time") {
        t.textContent = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
          "." + String(d.getMilliseconds()).padStart(3, "0");
        return;
      }
      var opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" };
      if (d.getFullYear() !== new Date().getFullYear()) { opts.year = "numeric"; }
      t.textContent = d.toLocaleString(undefined, opts);
      t.title = t.getAttribute("datetime");
    });
    root.querySelectorAll("input[data-csrf]").forEach(function (i) { i.value = token; });
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

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var local = form.querySelector("input[data-local-time]");
    var offset = form.querySelector("input[data-tz-offset]");
    if (offset) {
      var d = local && local.value ? new Date(local.value) : new Date();
      offset.value = String(-d.getTimezoneOffset());
    }
  }, true);

  document.addEventListener("htmx:configRequest", function (e) {
    if (token) { e.detail.headers["X-CSRF-Token"] = token; }
  });

  if (window.htmx) {
    htmx.onLoad(localize);
  } else {
    document.addEventListener("DOMContentLoaded", function () { localize(document); });
  }
})();
