// Lockgate admin UI, the data pages: the logs' live tail (one EventSource), the usage and overview charts
// (uPlot, drawn from the tables that are their accessible view) and the playground's streamed answer.
// No inline script anywhere: the CSP forbids it.
(function () {
  "use strict";

  function text(tag, value, className) {
    var cell = document.createElement(tag);
    cell.textContent = value;
    if (className) { cell.className = className; }
    return cell;
  }

  // ---------------------------------------------------------------- live tail (logs page)
  var TAIL_KEEP = 200;

  // an ISO time in the UI's time zone, as the page's table shows times (YYYY-MM-DD HH:MM:SS)
  function localTime(iso, zone) {
    try {
      return new Date(iso).toLocaleString("sv-SE", {timeZone: zone || "UTC", hour12: false});
    } catch (error) {
      return iso.replace("T", " ").slice(0, 19) + " UTC";
    }
  }

  function startTail(button) {
    var section = document.getElementById("tail");
    var status = document.getElementById("tail-status");
    var body = document.getElementById("tail-rows");
    var detailUrl = button.getAttribute("data-detail-url");
    var source = new EventSource(button.getAttribute("data-tail-url"));
    source.streamId = null;
    source.ended = false;
    source.addEventListener("hello", function (event) {
      source.streamId = JSON.parse(event.data).id;
      if (source.onStreamId) { source.onStreamId(); }  // a stop asked for before the id was known
    });
    // the server ends the stream: it closes the response right after "end", and the EventSource is closed
    // at that close (its "error" event), never before, so the browser sees no aborted request
    source.addEventListener("end", function () {
      source.ended = true;
      status.textContent = "Stopped.";
    });
    section.hidden = false;
    status.textContent = "Connecting…";
    source.addEventListener("open", function () { status.textContent = "Connected: new requests appear here."; });
    source.addEventListener("error", function () {
      if (source.ended) { source.close(); return; }
      status.textContent = "Disconnected; reconnecting…";
    });
    source.addEventListener("row", function (event) {
      var row = JSON.parse(event.data);
      var tr = document.createElement("tr");
      tr.appendChild(text("td", localTime(row.start_time, button.getAttribute("data-timezone"))));
      var idCell = document.createElement("td");
      var open = document.createElement("button");
      open.type = "button";
      open.className = "link-button mono";
      open.textContent = row.request_id.slice(0, 16) + "…";
      open.setAttribute("aria-label", "Details of request " + row.request_id);
      open.setAttribute("aria-controls", "detail");
      open.addEventListener("click", function () {
        if (window.htmx) { window.htmx.ajax("GET", detailUrl + encodeURIComponent(row.request_id), "#detail"); }
      });
      idCell.appendChild(open);
      tr.appendChild(idCell);
      tr.appendChild(text("td", row.model_group || "—"));
      tr.appendChild(text("td", row.key_alias || (row.api_key ? row.api_key.slice(0, 8) + "…" : "—")));
      tr.appendChild(text("td", String(row.status)));
      tr.appendChild(text("td", String(row.total_tokens)));
      tr.appendChild(text("td", Number(row.spend || 0).toFixed(6)));
      tr.appendChild(text("td", Math.round(row.latency_ms) + " ms"));
      body.insertBefore(tr, body.firstChild);
      while (body.rows.length > TAIL_KEEP) { body.deleteRow(body.rows.length - 1); }
    });
    source.addEventListener("dropped", function (event) {
      var lost = JSON.parse(event.data).dropped;
      var tr = document.createElement("tr");
      var td = text("td", lost + " request(s) not shown: the tail could not keep up.");
      td.colSpan = 8;
      tr.appendChild(td);
      body.insertBefore(tr, body.firstChild);
    });
    return source;
  }

  function setUpTail() {
    var button = document.getElementById("tail-toggle");
    if (!button) { return; }
    var source = null;
    var stopUrl = button.getAttribute("data-stop-url");
    var csrf = document.querySelector('meta[name="csrf-token"]');
    var body = function (id) {
      var form = new URLSearchParams();
      form.set("id", id);
      form.set("csrf_token", csrf ? csrf.getAttribute("content") : "");
      return form;
    };
    // the server ends the stream ("end" event, then the EventSource is closed): no request is aborted
    var stop = function () {
      var current = source;
      source = null;
      button.textContent = "Start live tail";
      button.setAttribute("aria-pressed", "false");
      if (!current) { return; }
      var ask = function () {
        fetch(stopUrl, {method: "POST", body: body(current.streamId), credentials: "same-origin"})
          .then(function (response) { if (!response.ok) { current.close(); } },
                function () { current.close(); });
      };
      if (current.streamId) {
        ask();
      } else {
        current.onStreamId = ask;  // connected but its id not read yet: ask the server once it is
      }
    };
    button.addEventListener("click", function () {
      if (source) { stop(); return; }
      source = startTail(button);
      button.textContent = "Stop live tail";
      button.setAttribute("aria-pressed", "true");
    });
    // leaving the page closes the stream first (no aborted request left behind)
    window.addEventListener("pagehide", function () {
      if (source) {
        if (source.streamId) { navigator.sendBeacon(stopUrl, body(source.streamId)); }
        source.close();
        source = null;
      }
    });
  }

  // ---------------------------------------------------------------- charts (usage, overview)
  var COLORS = ["#0b5cad", "#b42318", "#1a7f37", "#8250df", "#bf8700", "#0a7ea4", "#cf222e", "#57606a",
                "#6e40c9", "#953800", "#116329"];

  // small amounts (USD per day of a few requests) keep their digits on the axis
  function amount(v) {
    if (v === 0 || v === null) { return "0"; }
    var size = Math.abs(v);
    if (size >= 100) { return v.toFixed(0); }
    if (size >= 0.01) { return v.toFixed(2); }
    return v.toPrecision(2);
  }

  // <table data-chart="#target" data-chart-title="...">: first column = x (YYYY-MM-DD), every other
  // column with data-series = one line; the table stays as the chart's accessible view
  function drawChart(table) {
    if (!window.uPlot) { return; }
    var target = document.querySelector(table.getAttribute("data-chart"));
    if (!target) { return; }
    var heads = Array.prototype.slice.call(table.querySelectorAll("thead th"));
    var columns = [];
    heads.forEach(function (th, i) { if (i > 0 && th.hasAttribute("data-series")) { columns.push(i); } });
    var xs = [];
    var series = columns.map(function () { return []; });
    Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) {
      var day = tr.cells[0].getAttribute("data-day") || tr.cells[0].textContent.trim();
      xs.push(Date.parse(day + "T00:00:00Z") / 1000);
      columns.forEach(function (col, j) {
        var cell = tr.cells[col];
        series[j].push(Number(cell.getAttribute("data-value") || cell.textContent) || 0);
      });
    });
    var opts = {
      title: table.getAttribute("data-chart-title") || "",
      width: Math.max(320, target.clientWidth || 800),
      height: 280,
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      series: [{}].concat(columns.map(function (col, j) {
        return {label: heads[col].textContent.trim(), stroke: COLORS[j % COLORS.length], width: 2};
      })),
      axes: [{}, {size: 80, values: function (u, values) { return values.map(amount); }}]
    };
    target.textContent = "";
    new window.uPlot(opts, [xs].concat(series), target);
  }

  function setUpCharts() {
    Array.prototype.forEach.call(document.querySelectorAll("table[data-chart]"), drawChart);
  }

  // ---------------------------------------------------------------- playground
  function setUpPlayground() {
    var form = document.getElementById("playground");
    if (!form) { return; }
    var output = document.getElementById("answer");
    var status = document.getElementById("playground-status");
    var send = document.getElementById("playground-send");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var key = form.elements["key"].value.trim();
      var body = {
        model: form.elements["model"].value,
        messages: [{role: "user", content: form.elements["message"].value}],
        stream: true
      };
      var system = form.elements["system"].value.trim();
      if (system) { body.messages.unshift({role: "system", content: system}); }
      output.textContent = "";
      status.textContent = "Waiting for the first token…";
      send.disabled = true;
      // the key goes in the Authorization header of a same-origin POST: never in a URL, never stored
      fetch(form.getAttribute("data-endpoint"), {
        method: "POST",
        headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"},
        body: JSON.stringify(body),
        credentials: "omit",
        cache: "no-store"
      }).then(function (response) {
        if (!response.ok) {
          return response.json().then(function (error) {
            var message = (error && error.error && error.error.message) || ("HTTP " + response.status);
            throw new Error(message);
          }, function () { throw new Error("HTTP " + response.status); });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var pending = "";
        var started = performance.now();
        var first = null;
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              status.textContent = "Done" + (first !== null ? " (first token after " + Math.round(first) + " ms)" : "") + ".";
              return;
            }
            pending += decoder.decode(chunk.value, {stream: true});
            var events = pending.split("\n\n");
            pending = events.pop();
            events.forEach(function (block) {
              block.split("\n").forEach(function (line) {
                if (line.indexOf("data:") !== 0) { return; }
                var data = line.slice(5).trim();
                if (!data || data === "[DONE]") { return; }
                var parsed = JSON.parse(data);
                if (parsed.error) { throw new Error(parsed.error.message || "error"); }
                var choice = parsed.choices && parsed.choices[0];
                var delta = choice && choice.delta && choice.delta.content;
                if (delta) {
                  if (first === null) { first = performance.now() - started; status.textContent = "Streaming…"; }
                  output.textContent += delta;
                }
              });
            });
            return pump();
          });
        }
        return pump();
      }).catch(function (error) {
        status.textContent = "Error: " + error.message;
      }).then(function () {
        send.disabled = false;
      });
    });
  }

  function ready() {
    setUpTail();
    setUpCharts();
    setUpPlayground();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
