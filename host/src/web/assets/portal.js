// Progressive enhancement only: every journey works without this file.
// 1. Live feedback while a new password is typed (POST /api/password-items/check).
// 2. A message in the live region when the session expires.
(function () {
  "use strict";
  var form = document.getElementById("set-password");
  if (form) {
    var pw = form.querySelector("input[name=password]");
    var out = document.getElementById("check-result");
    var csrf = form.querySelector("input[name=csrf]").value;
    var timer = null;
    var run = function () {
      var items = Array.prototype.map.call(
        form.querySelectorAll("input[name=items]:checked"), function (c) { return c.value; });
      if (!pw.value || items.length === 0) { out.textContent = ""; return; }
      out.textContent = out.getAttribute("data-checking");
      fetch("/api/password-items/check", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ items: items, password: pw.value })
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (r) {
        if (!r) { out.textContent = ""; return; }
        if (r.ok) {
          out.className = "notice ok";
          out.textContent = out.getAttribute("data-ok");
          return;
        }
        var seen = {};
        var lines = [];
        r.items.forEach(function (i) {
          i.violations.forEach(function (v) {
            if (!seen[v.message]) { seen[v.message] = true; lines.push(v.message); }
          });
        });
        out.className = "notice error";
        out.textContent = lines.join(" ");
      }).catch(function () { out.textContent = ""; });
    };
    var later = function () { clearTimeout(timer); timer = setTimeout(run, 300); };
    pw.addEventListener("input", later);
    form.addEventListener("change", later);
  }
  var body = document.body;
  var expires = Number(body.getAttribute("data-expires") || 0);
  if (expires > 0) {
    var left = expires * 1000 - Date.now();
    if (left > 0 && left < 2147483647) {
      setTimeout(function () {
        var live = document.getElementById("live");
        if (live) { live.className = "notice error"; live.textContent = body.getAttribute("data-expired"); }
      }, left);
    }
  }
})();
