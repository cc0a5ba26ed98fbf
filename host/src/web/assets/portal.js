// Progressive enhancement only: every journey works without this file.
// 1. Live feedback while a new password is typed (POST /api/password-items/check).
// 2. A message in the live region when the session expires.
// 3. The proof of work a sign-in form carries after repeated failures: found here (SHA-256 of
//    "challenge:n" with the asked number of leading zero bits), then the form can be sent.
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
  var zeroBits = function (buf) {
    var b = new Uint8Array(buf);
    var n = 0;
    for (var i = 0; i < b.length; i++) {
      if (b[i] === 0) { n += 8; continue; }
      var v = b[i];
      while ((v & 0x80) === 0) { n++; v <<= 1; }
      break;
    }
    return n;
  };
  var solving = {};
  var solve = function (challenge, bits) {
    if (!solving[challenge]) {
      var enc = new TextEncoder();
      solving[challenge] = new Promise(function (resolve, reject) {
        var n = 0;
        var round = function () {
          var batch = [];
          for (var k = 0; k < 512; k++) {
            batch.push(crypto.subtle.digest("SHA-256", enc.encode(challenge + ":" + (n + k))));
          }
          Promise.all(batch).then(function (digests) {
            for (var k = 0; k < digests.length; k++) {
              if (zeroBits(digests[k]) >= bits) { resolve(String(n + k)); return; }
            }
            n += digests.length;
            round();
          }, reject);
        };
        round();
      });
    }
    return solving[challenge];
  };
  Array.prototype.forEach.call(document.querySelectorAll(".pow"), function (box) {
    var f = box.closest("form");
    var challenge = box.querySelector("input[name=pow_challenge]").value;
    var solution = box.querySelector("input[name=pow_solution]");
    var status = box.querySelector(".pow-status");
    var button = f.querySelector("button[type=submit]");
    if (!window.crypto || !crypto.subtle || !window.TextEncoder) {
      // No WebCrypto here (plain http, an old browser): say what the page says without script.
      status.textContent = status.getAttribute("data-nojs");
      return;
    }
    button.disabled = true;
    status.textContent = status.getAttribute("data-working");
    solve(challenge, Number(box.getAttribute("data-bits"))).then(function (s) {
      solution.value = s;
      button.disabled = false;
      status.textContent = status.getAttribute("data-done");
    }, function () { button.disabled = false; });
  });
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
