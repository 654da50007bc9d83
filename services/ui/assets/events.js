// powernode dashboard — the events page: live tail, pause, filters; and
// the time-travel slider. Pages read and work without this script.
// Event data is put in the page as text nodes only (never as markup).
"use strict";
(function () {
  var MAX_ROWS = 500;

  // --- The live tail (events page: #tail[data-stream]) -------------------
  var tail = document.getElementById("tail");
  var table = document.getElementById("events");
  if (tail && table && tail.dataset.stream && window.EventSource) {
    var tbody = table.tBodies[0];
    var pause = document.getElementById("pause");
    var paused = false;
    var buffered = [];

    var text = function (v) {
      return v === null || v === undefined ? "" : String(v);
    };
    var actorText = function (a) {
      if (!a || typeof a !== "object") return text(a);
      return text(a.type) + ":" + text(a.token_id || a.instance_id || a.name);
    };
    var aggregateText = function (g) {
      if (!g || typeof g !== "object") return text(g);
      return text(g.type) + "/" + text(g.id);
    };
    var cell = function (cls, child) {
      var td = document.createElement("td");
      td.className = cls;
      td.appendChild(child);
      return td;
    };
    var link = function (href, label) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = label;
      return a;
    };
    var row = function (e) {
      var seq = Number(e.seq);
      var href = "/ui/events/" + encodeURIComponent(String(seq));
      var tr = document.createElement("tr");
      tr.dataset.seq = String(seq);
      tr.className = "new";
      tr.appendChild(cell("seq", link(href, String(seq))));
      var t = document.createElement("time");
      t.dateTime = text(e.occurred_at);
      t.textContent = text(e.occurred_at).replace("T", " ").slice(0, 19);
      tr.appendChild(cell("time", t));
      tr.appendChild(cell("kind", link(href, text(e.kind))));
      tr.appendChild(cell("aggregate", document.createTextNode(aggregateText(e.aggregate))));
      tr.appendChild(cell("actor", document.createTextNode(actorText(e.actor))));
      return tr;
    };
    var seen = function (seq) {
      return tbody.querySelector('tr[data-seq="' + String(Number(seq)) + '"]') !== null;
    };
    var add = function (e) {
      if (typeof e.seq !== "number" || seen(e.seq)) return;
      var empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      tbody.insertBefore(row(e), tbody.firstChild);
      while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
    };
    var label = function () {
      if (!pause) return;
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      pause.textContent = paused
        ? "Resume" + (buffered.length ? " (" + buffered.length + " new)" : "")
        : "Pause";
    };
    if (pause) {
      var wrap = document.getElementById("pause-wrap");
      if (wrap) wrap.hidden = false;
      pause.addEventListener("click", function () {
        paused = !paused;
        if (!paused) {
          buffered.forEach(add);
          buffered = [];
        }
        label();
      });
    }
    var source = new EventSource(tail.dataset.stream);
    source.onmessage = function (m) {
      var e;
      try {
        e = JSON.parse(m.data);
      } catch (err) {
        return;
      }
      if (paused) {
        buffered.push(e);
        if (buffered.length > MAX_ROWS) buffered.shift();
        label();
      } else {
        add(e);
      }
    };
    // Closed when the page is hidden (a cached page must not hold one of
    // the browser's six connections per host); a page brought back from
    // the back/forward cache loads again, with the rows it missed.
    window.addEventListener("pagehide", function () {
      source.close();
    });
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) location.reload();
    });
  }

  // --- Time travel: the slider moves the number box, and back -----------
  var slider = document.getElementById("seq-slider");
  var box = document.getElementById("seq");
  if (slider && box) {
    slider.addEventListener("input", function () {
      box.value = slider.value;
    });
    box.addEventListener("input", function () {
      if (box.value !== "") slider.value = box.value;
    });
  }
})();
