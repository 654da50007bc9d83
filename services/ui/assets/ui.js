// powernode dashboard — live updates over /ui/stream (server-sent events),
// the fleet's filter as you type, approval countdowns and the typed-name
// confirmation. Pages read and work without this script; it only adds.
"use strict";
(function () {
  var DEBOUNCE_MS = 300;

  function main() { return document.getElementById("main"); }
  function each(root, sel, fn) { Array.prototype.forEach.call(root.querySelectorAll(sel), fn); }

  // ---- Live updates -------------------------------------------------------
  // main[data-live] lists event kind prefixes (comma-separated; empty: any).
  // A matching event re-fetches this page's <main> (x-pn-fragment: 1).
  var source = null, timer = null, busy = false, again = false;

  function prefixes() {
    var m = main();
    var raw = (m && m.getAttribute("data-live")) || "";
    return raw.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
  }
  function paused() {
    var b = document.getElementById("pause");
    return !!(b && b.getAttribute("aria-pressed") === "true");
  }
  function wanted(kind) {
    var p = prefixes();
    return p.length === 0 || p.some(function (x) { return kind.indexOf(x) === 0; });
  }
  function startLive() {
    var m = main();
    if (source || !m || !m.hasAttribute("data-live") || !window.EventSource) return;
    if (document.body.hasAttribute("data-offline")) return; // an export does not change
    source = new EventSource("/ui/stream");
    source.onmessage = function (e) {
      var kind = "";
      try { kind = JSON.parse(e.data).kind || ""; } catch (_) { return; }
      if (wanted(kind) && !paused()) schedule();
    };
    source.onerror = function () {
      // Closed for good (e.g. signed out): check once whether the session
      // still works; the browser retries by itself otherwise.
      if (source && source.readyState === 2) { stopLive(); schedule(); }
    };
  }
  function stopLive() { if (source) { source.close(); source = null; } }
  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, DEBOUNCE_MS); }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { headers: { "x-pn-fragment": "1" }, credentials: "same-origin" })
      .then(function (res) {
        var to = new URL(res.url, location.href);
        if (res.redirected && to.pathname.indexOf("/ui/login") === 0) {
          location.assign(to.href); // the token expired or was revoked
          return null;
        }
        if (res.status >= 500) return null; // keep what is shown
        return res.text();
      })
      .then(function (html) { if (html) swap(html); })
      .catch(function () { /* offline for a moment: the next event retries */ })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  // What the user typed, checked or chose, keyed so it survives a swap.
  function keyOf(el) {
    if (el.id) return "#" + el.id;
    if (!el.name) return null;
    var f = el.form;
    return (f ? (f.id || f.getAttribute("action") || "") : "") + "|" + el.name;
  }
  function keep(root) {
    var kept = {};
    each(root, "input, textarea, select", function (el) {
      var t = (el.type || "").toLowerCase();
      if (t === "hidden" || t === "submit" || t === "button") return;
      var k = keyOf(el);
      if (!k) return;
      var changed;
      if (t === "checkbox" || t === "radio") changed = el.checked !== el.defaultChecked;
      else if (el.tagName === "SELECT") changed = Array.prototype.some.call(el.options, function (o) { return o.selected !== o.defaultSelected; });
      else changed = el.value !== el.defaultValue;
      if (changed || el === document.activeElement || el.id === "filter") {
        kept[k] = { value: el.value, checked: el.checked };
      }
    });
    return kept;
  }
  function restore(root, kept) {
    each(root, "input, textarea, select", function (el) {
      var k = keyOf(el);
      if (!k || !kept.hasOwnProperty(k)) return;
      var t = (el.type || "").toLowerCase();
      if (t === "checkbox" || t === "radio") el.checked = kept[k].checked;
      else el.value = kept[k].value;
    });
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
    var m = main();
    if (!fresh || !m) return;
    var kept = keep(m);
    var active = document.activeElement;
    var focusKey = active && active !== m && m.contains(active) ? keyOf(active) : null;
    var selStart = null, selEnd = null;
    try { if (focusKey) { selStart = active.selectionStart; selEnd = active.selectionEnd; } } catch (_) { }
    var x = window.scrollX, y = window.scrollY;
    var flash = document.getElementById("flash"); // an action's message stays until a reload

    ["data-live", "data-at"].forEach(function (a) {
      if (fresh.hasAttribute(a)) m.setAttribute(a, fresh.getAttribute(a)); else m.removeAttribute(a);
    });
    var nodes = Array.prototype.map.call(fresh.childNodes, function (n) { return document.importNode(n, true); });
    while (m.firstChild) m.removeChild(m.firstChild);
    nodes.forEach(function (n) { m.appendChild(n); });

    if (flash && !document.getElementById("flash")) {
      var h1 = m.querySelector("h1");
      m.insertBefore(flash, h1 ? h1.nextSibling : m.firstChild);
    }
    restore(m, kept);
    if (focusKey) {
      var again_ = null;
      each(m, "input, textarea, select, button, a", function (el) { if (!again_ && keyOf(el) === focusKey) again_ = el; });
      if (again_) {
        again_.focus({ preventScroll: true });
        try { if (selStart !== null) again_.setSelectionRange(selStart, selEnd); } catch (_) { }
      }
    }
    window.scrollTo(x, y);
    enhance(m);
    if (!m.hasAttribute("data-live")) stopLive();
  }

  // ---- The fleet's filter as you type ------------------------------------
  function applyFilter() {
    var input = document.getElementById("filter");
    var table = document.getElementById("clusters");
    if (!input || !table) return;
    var q = input.value.trim().toLowerCase();
    var rows = table.querySelectorAll("tbody tr[data-cluster-id]");
    var shown = 0;
    Array.prototype.forEach.call(rows, function (tr) {
      var text = [
        tr.getAttribute("data-cluster-id"),
        cellText(tr, "td.name"), cellText(tr, "td.endpoint")
      ].join(" ").toLowerCase();
      var ok = q === "" || text.indexOf(q) !== -1;
      tr.hidden = !ok;
      if (ok) shown++;
    });
    var count = document.getElementById("filter-count");
    if (count) count.textContent = shown + " of " + rows.length + " clusters";
  }
  function cellText(tr, sel) { var c = tr.querySelector(sel); return c ? c.textContent : ""; }

  // ---- Approval expiry countdowns -----------------------------------------
  function duration(s) {
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function tick() {
    each(document, "td.expires[data-expires-at]", function (td) {
      var at = Date.parse(td.getAttribute("data-expires-at"));
      if (isNaN(at)) return;
      var left = Math.floor((at - Date.now()) / 1000);
      var span = td.querySelector(".countdown");
      if (!span) return;
      if (left <= 0) { span.textContent = "expired"; td.setAttribute("data-expired", ""); }
      else { span.textContent = "in " + duration(left); td.removeAttribute("data-expired"); }
    });
  }

  // ---- Typed-name confirmation --------------------------------------------
  function confirmState(form) {
    var input = form.querySelector("input[name=confirm_name]");
    var button = form.querySelector("button[type=submit]");
    if (!input || !button) return;
    button.disabled = input.value.trim() !== input.getAttribute("data-expect");
  }

  // ---- Wiring --------------------------------------------------------------
  function enhance(root) {
    each(root, "form#decommission", function (f) { confirmState(f); });
    applyFilter();
    tick();
  }

  document.addEventListener("input", function (e) {
    var t = e.target;
    if (t.id === "filter") applyFilter();
    if (t.name === "confirm_name" && t.form) confirmState(t.form);
  });
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f.id === "decommission") {
      var input = f.querySelector("input[name=confirm_name]");
      if (input && input.value.trim() !== input.getAttribute("data-expect")) { e.preventDefault(); input.focus(); }
    }
  });

  function start() {
    // The flash of an action is shown once: a reload (or a live re-fetch)
    // does not repeat it.
    if (window.history && history.replaceState && /[?&]done=/.test(location.search)) {
      var u = new URL(location.href);
      u.searchParams.delete("done");
      u.searchParams.delete("subject");
      history.replaceState(null, "", u.pathname + u.search + u.hash);
    }
    enhance(document);
    setInterval(tick, 1000);
    startLive();
    // A page kept in the back/forward cache must not keep its stream open:
    // browsers allow six connections per host over HTTP/1.1, and a few
    // cached live pages would stall every next page load.
    window.addEventListener("pagehide", stopLive);
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) { startLive(); schedule(); }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
