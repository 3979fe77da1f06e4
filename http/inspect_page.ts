/**
 * The `/inspect` page: one self-contained HTML string (no build step, no
 * CDN, vanilla JS). It loads the actor tree, then follows `/inspect/ws`:
 * states change in place (with a brief highlight), actors appear and
 * disappear, and recent transitions scroll in, all without reload. Dark,
 * high-contrast, large type: meant to be read at 3 a.m.
 *
 * Data is inserted with `textContent` only (never as HTML).
 *
 * @module
 */

const STYLE = `
:root { --bg:#0d1117; --panel:#161b22; --line:#30363d; --text:#e6edf3; --dim:#8b949e;
  --ok:#3fb950; --warn:#d29922; --bad:#f85149; --info:#58a6ff; --idle:#6e7681; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display:flex; align-items:center; gap:16px; padding:12px 20px;
  border-bottom:1px solid var(--line); background:var(--panel); position:sticky; top:0; z-index:1; }
h1 { font-size:18px; margin:0; font-weight:600; letter-spacing:.2px; }
h1 span { color:var(--dim); font-weight:400; }
h2 { font-size:13px; text-transform:uppercase; letter-spacing:.8px; color:var(--dim);
  margin:0 0 10px; font-weight:600; }
.pill { padding:3px 10px; border-radius:999px; font-size:13px; font-weight:600; border:1px solid; }
.pill.live { color:var(--ok); border-color:var(--ok); }
.pill.down { color:var(--bad); border-color:var(--bad); }
.pill.wait { color:var(--warn); border-color:var(--warn); }
.meta { color:var(--dim); font-size:13px; }
.grow { flex:1; }
input { background:var(--bg); color:var(--text); border:1px solid var(--line); border-radius:6px;
  padding:6px 10px; font-size:14px; width:220px; }
main { display:grid; grid-template-columns: minmax(420px, 3fr) minmax(360px, 2fr); gap:16px; padding:16px 20px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:14px 16px; min-width:0; }
ul.tree, ul.tree ul { list-style:none; margin:0; padding:0; }
ul.tree ul { margin-left:14px; padding-left:14px; border-left:1px dashed var(--line); }
.row { display:flex; align-items:baseline; gap:10px; padding:5px 8px; border-radius:6px; flex-wrap:wrap;
  transition: background-color 1.5s ease-out; }
.row.flash { background:#1f6feb55; transition:none; }
.row.hidden { display:none; }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:14px; font-weight:600; }
.kind { color:var(--dim); font-size:12px; border:1px solid var(--line); border-radius:4px; padding:0 6px; }
.state { font-family: ui-monospace, Menlo, Consolas, monospace; font-size:13px; font-weight:700;
  padding:1px 8px; border-radius:4px; color:#0d1117; background:var(--info); }
.state.ok { background:var(--ok); } .state.warn { background:var(--warn); }
.state.bad { background:var(--bad); } .state.idle { background:var(--idle); color:var(--text); }
.since { color:var(--dim); font-size:12px; }
.summary { width:100%; padding-left:2px; color:var(--dim); font-size:12.5px;
  font-family: ui-monospace, Menlo, Consolas, monospace; word-break:break-all; }
.summary b { color:var(--text); font-weight:500; }
table { width:100%; border-collapse:collapse; font-size:13px; }
th { text-align:left; color:var(--dim); font-weight:600; padding:4px 6px; border-bottom:1px solid var(--line); }
td { padding:4px 6px; border-bottom:1px solid #21262d; vertical-align:top; }
td.t { color:var(--dim); white-space:nowrap; font-family: ui-monospace, Menlo, Consolas, monospace; }
td.a { font-family: ui-monospace, Menlo, Consolas, monospace; word-break:break-all; }
td.e { color:var(--dim); font-size:12px; word-break:break-all; }
.arrow { color:var(--dim); padding:0 4px; }
.empty { color:var(--dim); font-style:italic; padding:8px; }
.notice { color:var(--warn); font-size:13px; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
`;

const SCRIPT = `
"use strict";
var actors = new Map();   // id -> actor (no children)
var rows = new Map();     // id -> row element
var changedAt = new Map(); // id -> ms of last state change
var transitions = [];
var MAX_TRANSITIONS = 200;
var filterText = "";
var retryMs = 1000;

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function tone(state, status) {
  if (status === "error") return "bad";
  if (status === "stopped" || status === "done") return "idle";
  var s = String(state).toLowerCase();
  // "open" alone is a circuit breaker's alarm; "batch.open" (audit) is routine.
  if (s === "open" || /(^|[.,\\s])(error|failed|failure|crashed|dead)/.test(s)) return "bad";
  if (/(half|paused|draining|drain|backoff|retry|degraded|throttl|waiting|stopping|revok)/.test(s)) return "warn";
  if (/(stopped|idle|done|closed_down)/.test(s)) return "idle";
  if (/(running|closed|active|ready|assigned|ok|healthy|flush|upload|connected)/.test(s)) return "ok";
  return "";
}

function ago(ms) {
  var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function summaryText(summary) {
  var parts = [];
  Object.keys(summary || {}).forEach(function (k) {
    var v = summary[k];
    parts.push([k, typeof v === "string" ? v : JSON.stringify(v)]);
  });
  return parts;
}

function fillRow(row, a) {
  row.textContent = "";
  row.dataset.id = a.id;
  var st = el("span", "state " + tone(a.state, a.status), a.state);
  st.title = "status: " + a.status;
  row.appendChild(st);
  row.appendChild(el("span", "id", a.id));
  row.appendChild(el("span", "kind", a.kind));
  var since = el("span", "since", "");
  since.dataset.since = "1";
  row.appendChild(since);
  var parts = summaryText(a.summary);
  if (parts.length) {
    var sum = el("div", "summary");
    parts.forEach(function (p, i) {
      if (i) sum.appendChild(document.createTextNode("  "));
      sum.appendChild(document.createTextNode(p[0] + "="));
      sum.appendChild(el("b", "", p[1]));
    });
    row.appendChild(sum);
  }
  updateSince(row);
  applyFilter(row, a);
}

function updateSince(row) {
  var t = changedAt.get(row.dataset.id);
  var s = row.querySelector("[data-since]");
  if (s) s.textContent = t ? "since " + ago(t) : "";
}

function applyFilter(row, a) {
  var hay = (a.id + " " + a.kind + " " + a.state).toLowerCase();
  row.classList.toggle("hidden", filterText !== "" && hay.indexOf(filterText) < 0);
}

function renderTree() {
  var root = document.getElementById("tree");
  root.textContent = "";
  rows.clear();
  var children = new Map();
  var roots = [];
  actors.forEach(function (a) {
    if (a.parent_id && actors.has(a.parent_id) && a.parent_id !== a.id) {
      if (!children.has(a.parent_id)) children.set(a.parent_id, []);
      children.get(a.parent_id).push(a);
    } else roots.push(a);
  });
  var seen = new Set();
  function add(list, a) {
    if (seen.has(a.id)) return;
    seen.add(a.id);
    var li = el("li");
    var row = el("div", "row");
    fillRow(row, a);
    rows.set(a.id, row);
    li.appendChild(row);
    var kids = children.get(a.id) || [];
    if (kids.length) {
      var ul = el("ul");
      kids.forEach(function (k) { add(ul, k); });
      li.appendChild(ul);
    }
    list.appendChild(li);
  }
  roots.forEach(function (a) { add(root, a); });
  actors.forEach(function (a) { add(root, a); }); // cycles, if any
  if (actors.size === 0) root.appendChild(el("li", "empty", "No actors registered"));
  document.getElementById("count").textContent = actors.size + " actor" + (actors.size === 1 ? "" : "s");
}

function flatten(nodes) {
  nodes.forEach(function (n) {
    var copy = Object.assign({}, n);
    delete copy.children;
    actors.set(n.id, copy);
    flatten(n.children || []);
  });
}

function loadTree(tree) {
  actors.clear();
  flatten(tree.roots || []);
  renderTree();
}

function renderTransitions() {
  var body = document.getElementById("transitions");
  body.textContent = "";
  if (transitions.length === 0) {
    var tr = el("tr");
    var td = el("td", "empty", "No transitions yet");
    td.colSpan = 3;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (var i = transitions.length - 1; i >= 0; i--) body.appendChild(transitionRow(transitions[i]));
}

function transitionRow(t) {
  var tr = el("tr");
  tr.dataset.actor = t.actor_id;
  tr.appendChild(el("td", "t", new Date(t.at).toLocaleTimeString()));
  var a = el("td", "a");
  a.appendChild(el("div", "", t.actor_id));
  var chg = el("div");
  if (t.from !== null) {
    chg.appendChild(el("span", "state " + tone(t.from, ""), t.from));
    chg.appendChild(el("span", "arrow", "\\u2192"));
  }
  chg.appendChild(el("span", "state " + tone(t.to, t.status), t.to));
  a.appendChild(chg);
  tr.appendChild(a);
  tr.appendChild(el("td", "e", t.event));
  return tr;
}

function addTransition(t) {
  transitions.push(t);
  changedAt.set(t.actor_id, Date.parse(t.at));
  if (transitions.length > MAX_TRANSITIONS) transitions.shift();
  var body = document.getElementById("transitions");
  if (body.querySelector(".empty")) body.textContent = "";
  body.insertBefore(transitionRow(t), body.firstChild);
  while (body.children.length > MAX_TRANSITIONS) body.removeChild(body.lastChild);
}

function updateActor(a) {
  var known = actors.has(a.id);
  var parentChanged = known && actors.get(a.id).parent_id !== a.parent_id;
  actors.set(a.id, a);
  var row = rows.get(a.id);
  if (!known || parentChanged || !row) return renderTree();
  fillRow(row, a);
  row.classList.add("flash");
  setTimeout(function () { row.classList.remove("flash"); }, 50);
}

function setConn(cls, text) {
  var c = document.getElementById("conn");
  c.className = "pill " + cls;
  c.textContent = text;
}

function notice(text) {
  document.getElementById("notice").textContent = text;
}

function refetch() {
  fetch("/inspect/actors").then(function (r) { return r.json(); }).then(loadTree)
    .catch(function () {});
}

function connect() {
  var proto = location.protocol === "https:" ? "wss://" : "ws://";
  var ws = new WebSocket(proto + location.host + "/inspect/ws");
  setConn("wait", "connecting");
  ws.onopen = function () { retryMs = 1000; setConn("live", "live"); notice(""); };
  ws.onmessage = function (m) {
    var msg;
    try { msg = JSON.parse(m.data); } catch (e) { return; }
    document.getElementById("last").textContent = "updated " + new Date().toLocaleTimeString();
    if (msg.type === "hello") {
      transitions = (msg.recent || []).slice(-MAX_TRANSITIONS);
      transitions.forEach(function (t) { changedAt.set(t.actor_id, Date.parse(t.at)); });
      loadTree(msg.tree);
      renderTransitions();
    } else if (msg.type === "transition") {
      addTransition(msg.transition);
      updateActor(msg.actor);
    } else if (msg.type === "actor.added") {
      updateActor(msg.actor);
    } else if (msg.type === "actor.removed") {
      actors.delete(msg.id);
      renderTree();
    } else if (msg.type === "system.ws.drop_notice") {
      notice(msg.dropped + " updates dropped (browser too slow): tree reloaded");
      refetch();
    }
  };
  ws.onclose = function () {
    setConn("down", "disconnected: retrying in " + Math.round(retryMs / 1000) + "s");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

document.getElementById("filter").addEventListener("input", function (e) {
  filterText = e.target.value.trim().toLowerCase();
  actors.forEach(function (a) { var r = rows.get(a.id); if (r) applyFilter(r, a); });
});
setInterval(function () { rows.forEach(updateSince); }, 1000);
renderTransitions();
connect();
`;

/** The complete `/inspect` page. */
export const INSPECT_PAGE: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>sluice · actors</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>sluice <span>actors</span></h1>
  <span id="conn" class="pill wait">connecting</span>
  <span id="count" class="meta"></span>
  <span id="notice" class="notice"></span>
  <span class="grow"></span>
  <span id="last" class="meta"></span>
  <input id="filter" type="search" placeholder="filter: id, kind, state" aria-label="Filter actors">
</header>
<main>
  <section>
    <h2>Actor tree</h2>
    <ul id="tree" class="tree"><li class="empty">Loading…</li></ul>
  </section>
  <section>
    <h2>Recent transitions</h2>
    <table>
      <thead><tr><th>Time</th><th>Actor</th><th>Event</th></tr></thead>
      <tbody id="transitions"></tbody>
    </table>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
