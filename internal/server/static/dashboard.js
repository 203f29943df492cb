// previewd's dashboard, live. The pages are complete without this script;
// it follows GET /api/v1/events (event: environment, data: env.Change;
// event: reset) and, on an environment's page, its log
// (GET /api/v1/environments/{key}/logs?follow=true, event: log, data:
// env.LogLine). A change is patched into the page at once (status,
// commit, message, the step's elapsed time); then the page is fetched
// again and the parts that changed are swapped in, so rows, their order
// and the buttons are always the server's. EventSource reconnects by
// itself, sending Last-Event-ID.
(function () {
  "use strict";

  var page = document.body.getAttribute("data-page");
  var busy = { building: 1, migrating: 1, starting: 1, deleting: 1 };
  var maxLogLines = 5000;

  // elapsed says how long a step has run, as the server does
  // (stepElapsed): "12 s", "3 m 05 s", "2 h 5 m".
  function elapsed(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " m " + String(s % 60).padStart(2, "0") + " s";
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    if (h < 24) return m ? h + " h " + m + " m" : h + " h";
    var d = Math.floor(h / 24);
    return h % 24 ? d + " d " + (h % 24) + " h" : d + " d";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".elapsed[data-since]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(t)) el.textContent = elapsed(now - t);
    });
  }

  function firstLine(s) {
    var line = (s || "").split("\n")[0];
    return line.length > 140 ? line.slice(0, 140) + "…" : line;
  }

  // setStatus patches a status cell (the "status" template) from a change.
  function setStatus(cell, c) {
    var badge = cell.querySelector(".badge");
    if (badge) {
      badge.className = "badge s-" + c.status;
      badge.textContent = c.status;
    }
    var el = cell.querySelector(".elapsed");
    if (busy[c.status]) {
      if (!el) {
        el = document.createElement("span");
        el.className = "elapsed";
        cell.appendChild(document.createTextNode(" "));
        cell.appendChild(el);
      }
      el.setAttribute("data-since", c.stepStartedAt || c.time);
    } else if (el) {
      el.remove();
    }
    tick();
  }

  function setText(root, sel, text) {
    var el = root.querySelector(sel);
    if (el) el.textContent = text;
  }

  // The live state, for people (a status region in the header).
  var state = document.getElementById("live-state");
  function say(text) {
    if (!state) return;
    state.hidden = false;
    state.textContent = text;
  }

  // focusKey names the focused element inside root so that it can be found
  // again in a freshly rendered copy.
  function focusKey(root) {
    var a = document.activeElement;
    if (!a || a === document.body || !root.contains(a)) return null;
    if (a.id) return "#" + CSS.escape(a.id);
    var form = a.closest("form");
    if (form && a.name) return 'form[action="' + form.getAttribute("action") + '"] [name="' + a.name + '"]';
    if (a.tagName === "A") return 'a[href="' + a.getAttribute("href") + '"]';
    return null;
  }

  function refocus(root, key) {
    if (!key) return;
    var el = root.querySelector(key);
    if (el) el.focus();
  }

  // swap replaces the element with id by the fetched document's, if it
  // changed, keeping the focus.
  function swap(doc, id) {
    var old = document.getElementById(id), fresh = doc.getElementById(id);
    if (!old || !fresh || old.innerHTML === fresh.innerHTML) return;
    var key = focusKey(old);
    old.replaceWith(document.adoptNode(fresh));
    refocus(fresh, key);
  }

  // refresh fetches url again (at most one fetch at a time; a change
  // meanwhile fetches once more after it) and hands the document to apply.
  // While it runs, the live region is aria-busy.
  function refresher(url, apply, region) {
    var running = false, again = false, timer = 0;
    function busyRegion(on) {
      var el = document.getElementById(region);
      if (!el) return;
      if (on) el.setAttribute("aria-busy", "true"); else el.removeAttribute("aria-busy");
    }
    function run() {
      timer = 0;
      if (running) { again = true; return; }
      running = true;
      busyRegion(true);
      fetch(url(), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (!r.ok) throw new Error(r.status);
          return r.text();
        })
        .then(function (html) { apply(new DOMParser().parseFromString(html, "text/html")); })
        .catch(function () {})
        .then(function () {
          running = false;
          if (again) { again = false; run(); } else if (!timer) busyRegion(false);
        });
    }
    return function (delay) {
      busyRegion(true);
      if (!timer) timer = setTimeout(run, delay || 0);
    };
  }

  function follow(onChange, onReset) {
    if (!window.EventSource) return;
    var es = new EventSource("/api/v1/events");
    window.previewdEvents = es;
    es.onopen = function () { say("live"); };
    es.onerror = function () { say(es.readyState === EventSource.CLOSED ? "not live: reload the page" : "reconnecting…"); };
    es.addEventListener("environment", function (ev) {
      var c;
      try { c = JSON.parse(ev.data); } catch (e) { return; }
      if (c && c.key) onChange(c);
    });
    es.addEventListener("reset", onReset);
  }

  // ---- the dashboard ----

  function words(q) { return q.toLowerCase().split(/\s+/).filter(Boolean); }

  // matches filters as the server does (matches in dashboard.go).
  function matches(row, ws) {
    var hay = (row.getAttribute("data-key") + " " + row.getAttribute("data-branch") + " " + row.getAttribute("data-status")).toLowerCase();
    return ws.every(function (w) { return hay.indexOf(w) >= 0; });
  }

  function dashboard() {
    var input = document.getElementById("q");
    var form = document.getElementById("filter");
    var tbody = document.querySelector("#environments tbody");
    if (!tbody) return;

    function rows() { return Array.prototype.slice.call(tbody.querySelectorAll("tr[data-key]")); }
    function row(key) {
      return rows().filter(function (r) { return r.getAttribute("data-key") === key; })[0];
    }

    function filter() {
      var q = input ? input.value.trim() : "";
      var ws = words(q), all = rows(), shown = 0;
      all.forEach(function (r) {
        var ok = matches(r, ws);
        r.hidden = !ok;
        if (ok) shown++;
      });
      setText(document, "#shown", q ? shown + " of " + all.length + " shown" : "");
      var empty = document.getElementById("empty");
      if (empty) {
        empty.hidden = shown > 0;
        if (!shown) empty.textContent = q ? "No environment matches “" + q + "”." : "No environments yet.";
      }
      var u = new URL(location.href);
      if (q) u.searchParams.set("q", q); else u.searchParams.delete("q");
      history.replaceState(null, "", u);
    }

    // apply reconciles the rows with a fresh render of every environment:
    // replaced where they changed, in the server's order, gone ones
    // removed.
    var refresh = refresher(function () { return "/"; }, function (doc) {
      var fresh = doc.querySelectorAll("#environments tbody tr[data-key]");
      var keep = {};
      var prev = null;
      Array.prototype.forEach.call(fresh, function (n) {
        var key = n.getAttribute("data-key");
        keep[key] = true;
        var old = row(key), el = old;
        if (!old || old.innerHTML !== n.innerHTML || old.getAttribute("data-status") !== n.getAttribute("data-status")) {
          var fk = old && focusKey(old);
          el = document.adoptNode(n);
          if (old) old.replaceWith(el);
          refocus(el, fk);
        }
        var want = prev ? prev.nextElementSibling : tbody.firstElementChild;
        if (want !== el) tbody.insertBefore(el, want);
        prev = el;
      });
      rows().forEach(function (r) { if (!keep[r.getAttribute("data-key")]) r.remove(); });
      ["count", "source", "down-section", "trusted-section"].forEach(function (id) { swap(doc, id); });
      filter();
      tick();
    }, "live");

    follow(function (c) {
      var r = row(c.key);
      if (r && c.removed) {
        r.remove();
      } else if (r) {
        r.setAttribute("data-status", c.status);
        setStatus(r.querySelector(".status"), c);
        setText(r, ".sha", (c.sha || "").slice(0, 7));
        setText(r, ".msg", firstLine(c.message));
        r.setAttribute("data-changed", String(performance.now()));
      }
      refresh(50);
    }, function () { refresh(0); });

    if (input) {
      input.addEventListener("input", filter);
      form.addEventListener("submit", function (ev) { ev.preventDefault(); filter(); });
      // A page rendered for ?q= holds only the matching rows: fetch them all.
      if (input.value.trim()) refresh(0);
    }
  }

  // ---- an environment's page ----

  function environment() {
    var key = document.body.getAttribute("data-key");
    var path = location.pathname;
    var refresh = refresher(function () { return path; }, function (doc) {
      ["status", "details", "actions-section", "database", "inventory", "timeline"].forEach(function (id) { swap(doc, id); });
      tick();
    }, "details");
    follow(function (c) {
      if (c.key !== key) return;
      var st = document.getElementById("status");
      if (st) setStatus(st, c);
      setText(document, "#message", c.message || "");
      refresh(50);
    }, function () { refresh(0); });
    followLog(key);
  }

  // followLog appends the log's lines as they are written, at most
  // maxLogLines. The stream starts with the log's last lines, so the text
  // the server rendered is replaced on each (re)connection's first line.
  function followLog(key) {
    var pre = document.getElementById("log");
    if (!pre || !window.EventSource) return;
    var es = new EventSource("/api/v1/environments/" + encodeURIComponent(key) + "/logs?follow=true&n=500");
    window.previewdLog = es;
    var fresh = true;
    es.onopen = function () { fresh = true; };
    es.addEventListener("log", function (ev) {
      var l;
      try { l = JSON.parse(ev.data); } catch (e) { return; }
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      if (fresh) {
        fresh = false;
        pre.textContent = "";
        var none = document.getElementById("no-log");
        if (none) none.remove();
      }
      pre.appendChild(document.createTextNode((l.text || "") + "\n"));
      while (pre.childNodes.length > maxLogLines) pre.removeChild(pre.firstChild);
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
  }

  setInterval(tick, 1000);
  tick();
  if (page === "dashboard") dashboard();
  else if (page === "environment") environment();
})();
