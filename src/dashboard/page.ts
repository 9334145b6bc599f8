/**
 * The dashboard's page: plain HTML, CSS and JavaScript, no framework and no build step. It opens
 * /events (server-sent events) and redraws from each state snapshot; every text is set with
 * textContent, so node names and states are plain text in the DOM. The lag charts are inline SVG
 * paths drawn from the samples the page keeps (the last two minutes).
 */
export const PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ferry dashboard</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --card: #fff;
          --ok: #12805c; --info: #2463c9; --warn: #b25e09; --bad: #c0262d; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 19px; font-weight: 600; }
  header .cluster { font-size: 16px; opacity: .85; }
  header .conn { margin-left: auto; font-size: 13px; }
  .conn.live::before, .conn.lost::before { content: ""; display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px; }
  .conn.live::before { background: #3ccf8e; }
  .conn.lost::before { background: #ff5c5c; }
  main { padding: 16px 24px 32px; display: grid; gap: 16px; }
  .facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: 12px; }
  .fact, section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
  .fact { padding: 10px 14px; }
  .fact .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
  .fact .value { font-size: 18px; font-weight: 600; margin-top: 2px; }
  .fact .sub { color: var(--muted); font-size: 12px; }
  section { padding: 12px 14px; overflow-x: auto; }
  section h2 { margin: 0 0 8px; font-size: 15px; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 5px 10px 5px 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 500; font-size: 12px; }
  td.num, th.num { text-align: right; padding-right: 16px; }
  td.note { white-space: normal; color: var(--muted); max-width: 380px; }
  .state { font-weight: 600; }
  .s-active, .s-SUCCESS { color: var(--ok); }
  .s-standby, .s-RUNNING, .s-INIT { color: var(--info); }
  .s-fenced, .s-resyncing, .s-REASSIGNING { color: var(--warn); }
  .s-DOWN, .s-FAILED, .s-needsResync, .s-DIVERGED { color: var(--bad); }
  tr.down td { color: var(--bad); background: #fff5f5; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 12px; }
  .chart { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
  .chart .title { display: flex; justify-content: space-between; font-size: 13px; }
  .chart .title b { font-weight: 600; }
  .chart .title span { color: var(--muted); }
  .chart svg { display: block; width: 100%; height: 90px; margin-top: 4px; }
  .chart .axis { stroke: var(--line); stroke-width: 1; }
  .chart .line { fill: none; stroke: var(--info); stroke-width: 1.8; }
  .chart text { font-size: 10px; fill: var(--muted); }
  .task { margin-bottom: 12px; }
  .task .head { font-weight: 600; margin-bottom: 4px; }
  .task .sum { color: var(--muted); font-size: 13px; margin-top: 4px; }
  .bar { display: inline-block; width: 90px; height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; vertical-align: middle; }
  .bar i { display: block; height: 100%; background: var(--ok); }
  ol.alerts { list-style: none; margin: 0; padding: 0; }
  ol.alerts li { display: grid; grid-template-columns: 70px 72px 240px 1fr; gap: 10px; padding: 5px 0; border-bottom: 1px solid var(--line); }
  ol.alerts .time, ol.alerts .who { color: var(--muted); font-variant-numeric: tabular-nums; }
  .sev { font-weight: 600; text-transform: uppercase; font-size: 11px; padding-top: 2px; }
  .sev-info { color: var(--info); } .sev-warning { color: var(--warn); } .sev-critical { color: var(--bad); }
  .empty, .error { color: var(--muted); font-style: italic; }
  .error { color: var(--bad); }
</style>
</head>
<body>
<header>
  <h1>ferry</h1><span class="cluster">cluster <span id="cluster">…</span></span>
  <span id="conn" class="conn">connecting…</span>
</header>
<main>
  <div class="facts">
    <div class="fact"><div class="label">Master lease</div><div class="value" id="master">…</div><div class="sub" id="master-sub"></div></div>
    <div class="fact"><div class="label">Active watchdog</div><div class="value" id="watchdog">…</div><div class="sub" id="watchdog-sub"></div></div>
    <div class="fact"><div class="label">Automatic failover</div><div class="value" id="failover">…</div><div class="sub" id="failover-sub"></div></div>
    <div class="fact"><div class="label">Synctool</div><div class="value" id="synctool">…</div><div class="sub" id="synctool-sub"></div></div>
  </div>
  <section><h2>Nodes</h2><div id="status-error" class="error"></div><table id="nodes"></table></section>
  <section><h2>Replication lag (ms), last 2 minutes</h2><div class="charts" id="charts"></div></section>
  <section><h2>Sync tasks</h2><div id="tasks"></div></section>
  <section><h2>Latest alerts</h2><ol class="alerts" id="alerts"></ol></section>
</main>
<script>
"use strict";
var WINDOW_MS = 120000, SHOW_ALERTS = 20;
var samples = {};   // node -> [{t, ms}], the last WINDOW_MS
var alerts = [];    // newest first
var last = null;

function $(id) { return document.getElementById(id); }
function el(tag, attrs) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) {
    if (k === "text") e.textContent = attrs[k];
    else if (k === "cls") e.className = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  for (var i = 2; i < arguments.length; i++) {
    var c = arguments[i];
    if (c !== null && c !== undefined) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}
function svg(tag, attrs) {
  var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (var k in attrs) if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
  return e;
}
function text(id, value) { $(id).textContent = value; }
function fmt(v) { return v === null || v === undefined || v === "" ? "-" : String(v); }
function bytes(n) {
  if (n === null || n === undefined) return "-";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}
function clock(ts) { var d = new Date(ts); return d.toTimeString().slice(0, 8); }
function stateOf(m) {
  if (!m.up) return "DOWN";
  if (m.needsResync) return "needsResync";
  if (m.diverged) return "DIVERGED";
  var s = String(m.state);
  if (m.replica) s += "/" + m.replica;
  if (m.role === "watchdog" && m.state === "active" && m.decision) s += " (" + (typeof m.decision === "string" ? m.decision : JSON.stringify(m.decision).replace(/[{}"]/g, "").replace(/:/g, ".")) + ")";
  return s;
}
function noteOf(m) {
  var err = m.error && m.error.message;
  if (m.needsResync) return "NEEDS RESYNC: " + (m.resyncReason || err || "");
  if (m.diverged) return "DIVERGED found at LSN " + m.diverged.lsn + ": " + m.diverged.tables.map(function (t) { return t.table + " " + t.rows + " rows (" + t.keys.slice(0, 3).join(", ") + (t.rows > 3 ? ", ..." : "") + ")"; }).join("; ") + "; ferry repair --node " + m.node;
  if (err) return err;
  if (m.role === "collector") return "host " + m.host + ", reads " + (m.source || "?");
  if (m.role === "synctool" && m.state === "active") return m.tasks + " tasks, " + m.packsInFlight + " packs in flight";
  if (m.role === "watchdog" && m.state === "active" && m.verifyMs > 0) return "verifies every " + m.verifyMs + " ms, " + (m.verified ? "last at LSN " + m.verified.lsn + ", " + clock(m.verified.at) : "none yet");
  return "";
}
var isData = function (m) { return m.role === "master" || m.role === "slave"; };
// A node plays master or slave by the lease; its --role is only its designation.
function roleOf(m) {
  if (!isData(m) || !m.up) return m.role;
  var plays = m.state === "active" ? "master" : "slave";
  return plays === m.role ? plays : plays + " (designated " + m.role + ")";
}

function renderFacts(s) {
  text("cluster", s.cluster);
  var ml = s.leases.master, wd = s.leases.watchdog, st = s.leases.synctool;
  text("master", ml ? ml.node : "none");
  text("master-sub", ml ? "epoch " + ml.epoch : "free: no active master");
  text("watchdog", wd ? wd.node : "none");
  text("watchdog-sub", wd ? "epoch " + wd.epoch : "no watchdog holds the lease");
  var f = s.failover;
  text("failover", f ? (f.automatic ? "enabled" : "DISABLED") : "-");
  $("failover").className = "value " + (f && !f.automatic ? "s-DOWN" : "s-active");
  text("failover-sub", f ? f.failovers + " failover(s), " + f.recent + " of at most " + f.maxAutomatic + " in the window" + (f.automatic ? "" : "; run ferry failover reset") : "");
  text("synctool", st ? st.node : "none");
  text("synctool-sub", s.tasks ? s.tasks.length + " task(s)" : s.tasksError || "");
}

function renderNodes(s) {
  text("status-error", s.statusError ? "cannot read the cluster's buckets: " + s.statusError : "");
  var t = $("nodes");
  t.textContent = "";
  var cols = [["node"], ["role"], ["state"], ["epoch", 1], ["applied LSN", 1], ["lag LSN", 1], ["lag ms", 1], ["backlog", 1], ["heartbeat", 1], ["note"]];
  t.appendChild(el("tr", {}, ...cols.map(function (c) { return el("th", { text: c[0], cls: c[1] ? "num" : "" }); })));
  if (!s.members.length) t.appendChild(el("tr", {}, el("td", { colspan: "10", cls: "empty", text: "no process has sent a heartbeat" })));
  s.members.forEach(function (m) {
    var st = stateOf(m);
    var tr = el("tr", { "data-node": m.node, cls: m.up ? "" : "down" },
      el("td", { text: m.node }),
      el("td", { text: roleOf(m) }),
      el("td", { cls: "state s-" + st.split(/[/ ]/)[0], text: st }),
      el("td", { cls: "num", text: fmt(m.epoch) }),
      el("td", { cls: "num", text: fmt(m.appliedLsn) }),
      el("td", { cls: "num", text: fmt(m.lagLsn) }),
      el("td", { cls: "num", text: fmt(m.lagMs) }),
      el("td", { cls: "num", text: m.backlogBytes === undefined ? "-" : bytes(m.backlogBytes) }),
      el("td", { cls: "num", text: (m.heartbeatAgeMs / 1000).toFixed(1) + " s ago" }),
      el("td", { cls: "note", text: noteOf(m) }));
    t.appendChild(tr);
  });
}

function renderCharts(s) {
  var holder = s.leases.master && s.leases.master.node;
  s.members.filter(isData).forEach(function (m) {
    var list = samples[m.node] || (samples[m.node] = []);
    list.push({ t: s.ts, ms: m.up && typeof m.lagMs === "number" ? m.lagMs : null });
  });
  for (var n in samples) samples[n] = samples[n].filter(function (p) { return p.t > s.ts - WINDOW_MS; });
  // One chart per replica: every data node but the one holding the master lease.
  var nodes = s.members.filter(function (m) { return isData(m) && m.node !== holder; });
  var box = $("charts");
  box.textContent = "";
  if (!nodes.length) box.appendChild(el("div", { cls: "empty", text: "no replicas" }));
  nodes.forEach(function (m) {
    var pts = samples[m.node] || [];
    var vals = pts.filter(function (p) { return p.ms !== null; }).map(function (p) { return p.ms; });
    var max = Math.max(100, Math.max.apply(null, vals.concat([0])));
    var top = Math.pow(10, Math.ceil(Math.log10(max)));
    if (top / 2 >= max) top = top / 2;
    var W = 300, H = 80, L = 34;
    var x = function (t) { return L + (W - L) * (1 - (s.ts - t) / WINDOW_MS); };
    var y = function (v) { return 4 + (H - 8) * (1 - v / top); };
    var d = "", pen = false;
    pts.forEach(function (p) {
      if (p.ms === null) { pen = false; return; }
      d += (pen ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.ms).toFixed(1) + " ";
      pen = true;
    });
    var g = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", "data-node": m.node });
    g.appendChild(svg("line", { x1: L, y1: y(0), x2: W, y2: y(0), "class": "axis" }));
    g.appendChild(svg("line", { x1: L, y1: y(top), x2: W, y2: y(top), "class": "axis" }));
    g.appendChild(svg("text", { x: 0, y: y(top) + 8, text: String(top) }));
    g.appendChild(svg("text", { x: 0, y: y(0), text: "0" }));
    if (d) g.appendChild(svg("path", { d: d, "class": "line" }));
    var now = m.up ? fmt(m.lagMs) + " ms now" : "DOWN";
    box.appendChild(el("div", { cls: "chart" },
      el("div", { cls: "title" }, el("b", { text: m.node }), el("span", { text: now + ", max " + Math.max.apply(null, vals.concat([0])) + " ms" })),
      g));
  });
}

function renderTasks(s) {
  var box = $("tasks");
  box.textContent = "";
  if (!s.tasks) { box.appendChild(el("div", { cls: "empty", text: s.tasksError || "no answer from the synctool" })); return; }
  if (!s.tasks.length) { box.appendChild(el("div", { cls: "empty", text: "no sync tasks" })); return; }
  s.tasks.forEach(function (t) {
    var subs = t.subtasks || [];
    var done = subs.filter(function (x) { return x.state === "SUCCESS"; }).length;
    var counts = {};
    subs.forEach(function (x) { counts[x.state] = (counts[x.state] || 0) + 1; });
    var maxRows = Math.max.apply(null, subs.map(function (x) { return x.rows; }).concat([1]));
    var table = el("table", {}, el("tr", {}, el("th", { text: "part" }), el("th", { text: "state" }), el("th", { text: "collector" }),
      el("th", { text: "position" }), el("th", { cls: "num", text: "rows" }), el("th", { text: "progress" }), el("th", { text: "error" })));
    subs.forEach(function (x) {
      var share = x.state === "SUCCESS" ? 100 : Math.round((100 * x.rows) / maxRows);
      table.appendChild(el("tr", {},
        el("td", { text: String(x.part) }),
        el("td", { cls: "state s-" + x.state, text: x.state }),
        el("td", { text: fmt(x.collector) }),
        el("td", { text: fmt(x.position) }),
        el("td", { cls: "num", text: String(x.rows) }),
        el("td", {}, el("span", { cls: "bar", title: x.rows + " rows" }, el("i", { style: "width:" + share + "%" }))),
        el("td", { cls: "note", text: x.error && x.state !== "RUNNING" ? x.error.code + ": " + x.error.message : "" })));
    });
    var summary = Object.keys(counts).map(function (k) { return counts[k] + " " + k; }).join(", ");
    box.appendChild(el("div", { cls: "task" },
      el("div", { cls: "head", text: t.task + ": mode " + t.mode + " " + t.modeName + " to " + t.dest + " (" + t.format + ")" }),
      table,
      el("div", { cls: "sum", text: t.state + ", " + t.rows + " rows, " + t.bytes + " bytes; " + done + " of " + subs.length + " subtasks done (" + summary + ")" + (t.failed ? "; " + t.failedSubtasks + " FAILED" : "") })));
  });
}

function renderAlerts() {
  var list = $("alerts");
  list.textContent = "";
  if (!alerts.length) list.appendChild(el("li", { cls: "empty", text: "no alert since the dashboard started" }));
  alerts.slice(0, SHOW_ALERTS).forEach(function (a) {
    list.appendChild(el("li", { "data-kind": a.kind },
      el("span", { cls: "time", text: clock(a.ts) }),
      el("span", { cls: "sev sev-" + a.severity, text: a.severity }),
      el("span", { cls: "who", text: a.kind + " (" + a.node + ")" }),
      el("span", { text: a.message })));
  });
}

function connect() {
  var es = new EventSource("events");
  es.addEventListener("open", function () { $("conn").className = "conn live"; $("conn").textContent = "live"; });
  es.addEventListener("error", function () { $("conn").className = "conn lost"; $("conn").textContent = "disconnected: retrying"; });
  es.addEventListener("alerts", function (e) { alerts = JSON.parse(e.data); renderAlerts(); });
  es.addEventListener("alert", function (e) { alerts.unshift(JSON.parse(e.data)); alerts.length = Math.min(alerts.length, 50); renderAlerts(); });
  es.addEventListener("state", function (e) {
    last = JSON.parse(e.data);
    renderFacts(last); renderNodes(last); renderCharts(last); renderTasks(last);
    $("conn").className = "conn live";
    $("conn").textContent = "live, " + clock(last.ts);
  });
}
renderAlerts();
connect();
</script>
</body>
</html>
`;
