/**
 * The `/inspect` page: one self-contained HTML string (no build step, no
 * CDN, vanilla JS). It loads the actor tree, then follows `/inspect/ws`:
 * states change in place (with a brief highlight), actors appear and
 * disappear, and recent transitions scroll in, all without reload. Dark,
 * high-contrast, large type: meant to be read at 3 a.m.
 *
 * - The tree is the supervision tree: each supervisor's children (http,
 *   audit, resilience, pipeline, ...) are nodes, with their actors under them.
 * - Clicking an actor draws its statechart, in plain SVG, from its XState
 *   machine's own definition (`GET /inspect/machines`, http/machine_graph.ts):
 *   states (nested and parallel ones as boxes in boxes), transitions with
 *   their events, the current state lit, the last transition animated. The
 *   layout is a small grid layout written here (no layout library: the
 *   machines have 3 to 15 states, and a page that works offline with no
 *   build step matters more than optimal edge routing).
 * - Framework events (`xstate.*`: invoke done/error, delays, init) are
 *   folded in the transitions list (a counter says how many; one click shows
 *   them). The filter applies to the tree and the transitions.
 * - Times are UTC. It fits a 390 px phone (one column).
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
main { display:grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap:16px; padding:16px 20px; }
#right { display:flex; flex-direction:column; gap:16px; min-width:0; }
header { flex-wrap:wrap; }
header a { color:var(--info); }
.row { cursor:pointer; }
.row.sel { outline:2px solid var(--info); }
.kind.child { border-style:dashed; }
#svgwrap { width:100%; overflow:hidden; }
#svgwrap svg { width:100%; height:auto; display:block; }
svg .st rect { fill:#0d1117; stroke:#484f58; stroke-width:1.5; rx:8; }
svg .st.compound > rect, svg .st.parallel > rect { fill:#161b2288; stroke-dasharray:none; }
svg .st.parallel > rect { stroke-dasharray:6 4; }
svg .st text { fill:var(--text); font: 600 13px ui-monospace, Menlo, Consolas, monospace; }
svg .st.container > text { fill:var(--dim); font-weight:500; font-size:12px; }
svg .st.active > rect { stroke:var(--ok); stroke-width:3; fill:#3fb95022; }
svg .st.active.leaf > rect { fill:#3fb95044; }
svg .st.active.bad > rect { stroke:var(--bad); fill:#f8514933; }
svg .st.active.warn > rect { stroke:var(--warn); fill:#d2992233; }
svg .edge { fill:none; stroke:#8b949e; stroke-width:1.5; }
svg .edge.internal { stroke:#6e7681; stroke-dasharray:4 3; }
svg .elabel { fill:#c9d1d9; font: 11px system-ui, sans-serif; paint-order:stroke; stroke:#0d1117; stroke-width:4px; }
svg .elabel.internal { fill:#8b949e; }
svg .edge.fired { stroke:var(--info); stroke-width:3.5; stroke-dasharray:10 6; animation: flow .6s linear infinite; }
svg .elabel.fired { fill:var(--info); font-weight:700; }
svg .init { fill:var(--dim); }
@keyframes flow { to { stroke-dashoffset:-16; } }
#chart-note { color:var(--dim); font-size:13px; margin:-4px 0 8px; }
.tscroll { max-height:420px; overflow-y:auto; }
.folded { color:var(--dim); font-size:13px; margin:0 0 8px; display:flex; gap:10px; align-items:center; flex-wrap:wrap; }
.folded label { display:inline-flex; gap:6px; align-items:center; }
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
@media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); padding:10px 8px; } header { padding:10px 12px; gap:8px; } input { width:100%; } }
`;

const SCRIPT = `
"use strict";
var actors = new Map();   // id -> actor (no children)
var rows = new Map();     // id -> row element
var changedAt = new Map(); // id -> ms of last state change
var transitions = [];
var MAX_TRANSITIONS = 200;
var filterText = "", showInternal = false, onlySelected = false;
var machines = {}, selected = null, layout = null;
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
  row.classList.toggle("sel", a.id === selected);
  var st = el("span", "state " + tone(a.state, a.status), a.state);
  st.title = "status: " + a.status;
  row.appendChild(st);
  row.appendChild(el("span", "id", a.kind === "child" ? a.id.split("/").pop() : a.id));
  row.appendChild(el("span", "kind" + (a.kind === "child" ? " child" : ""), a.kind === "child" ? "supervised child" : a.kind));
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
    row.onclick = function () { select(a.id); };
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
  var need = false;
  actors.forEach(function (a) { if (a.machine && !machines[a.machine]) need = true; });
  if (need) loadMachines();
  if (!selected || !actors.has(selected)) {
    var want = (/^#actor=(.+)$/.exec(location.hash) || [])[1];
    want = want ? decodeURIComponent(want) : null;
    var pick = want && actors.has(want) ? want : null;
    if (!pick) actors.forEach(function (a) { if (!pick && a.kind === "breaker" && a.machine) pick = a.id; });
    if (!pick) actors.forEach(function (a) { if (!pick && a.machine) pick = a.id; });
    selected = pick;
  }
  renderTree();
  drawChart();
}

// ---- Statecharts, drawn from the machine definitions (plain SVG).
var SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  var e = document.createElementNS(SVGNS, tag);
  Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
  if (text !== undefined) e.textContent = text;
  return e;
}
function loadMachines() {
  return fetch("/inspect/machines").then(function (r) { return r.json(); }).then(function (m) {
    machines = m; drawChart();
  }).catch(function () {});
}
function select(id) {
  selected = id;
  try { history.replaceState(null, "", "#actor=" + encodeURIComponent(id)); } catch (e) { /* ignore */ }
  rows.forEach(function (r, rid) { r.classList.toggle("sel", rid === id); });
  drawChart();
  if (onlySelected) renderTransitions();
}
var GAP_X = 100, GAP_Y = 64;
function measure(n, isRoot) {
  var kids = n.children || [];
  if (!kids.length) { n._w = Math.max(84, n.key.length * 8 + 28); n._h = 34; return; }
  kids.forEach(function (k) { measure(k, false); });
  var pad = isRoot ? 12 : 16, head = isRoot ? 8 : 26;
  n._pad = pad; n._head = head;
  var atomic = kids.every(function (k) { return !(k.children || []).length; });
  if (atomic && kids.length >= 3 && kids.length <= 8 && n.type !== "parallel") {
    // A ring: every pair of states is reachable without crossing another box.
    var mw = 0, mh = 0;
    kids.forEach(function (k) { mw = Math.max(mw, k._w); mh = Math.max(mh, k._h); });
    var R = Math.max(GAP_X + mw * 0.55, (kids.length * (mw + GAP_X * 0.8)) / (2 * Math.PI));
    var ry = Math.max(R * 0.62, mh + GAP_Y * 0.6);
    n._ring = { R: R, ry: ry, mw: mw, mh: mh };
    n._w = Math.max(2 * R + mw + pad * 2, n.key.length * 7 + 40);
    n._h = head + pad * 2 + 2 * ry + mh + 24;
    return;
  }
  // A grid: the number of columns whose shape is closest to a 16:10 landscape.
  var best = null;
  for (var cols = 1; cols <= kids.length; cols++) {
    var cw = [], rh = [];
    kids.forEach(function (k, i) {
      var c = i % cols, r = Math.floor(i / cols);
      cw[c] = Math.max(cw[c] || 0, k._w); rh[r] = Math.max(rh[r] || 0, k._h);
    });
    var w = Math.max(pad * 2 + cw.reduce(function (a, b) { return a + b; }, 0) + GAP_X * (cw.length - 1), n.key.length * 7 + 40);
    var h = head + pad + rh.reduce(function (a, b) { return a + b; }, 0) + GAP_Y * (rh.length - 1) + pad;
    var score = Math.abs(Math.log(w / h) - Math.log(1.6));
    if (!best || score < best.score) best = { score: score, cols: cols, cw: cw, rh: rh, w: w, h: h };
  }
  n._cols = best.cols; n._cw = best.cw; n._rh = best.rh; n._gx = GAP_X; n._gy = GAP_Y;
  n._w = best.w; n._h = best.h;
}
function place(n, x, y, boxes) {
  n._x = x; n._y = y;
  boxes[n.path] = n;
  var kids = n.children || [];
  if (!kids.length) return;
  if (n._ring) {
    var ring = n._ring, cx = x + n._w / 2, cy = y + n._head + n._pad + 12 + ring.ry + ring.mh / 2;
    var start = -Math.PI / 2 - Math.PI / kids.length;
    kids.forEach(function (k, i) {
      var a = start + (2 * Math.PI * i) / kids.length;
      place(k, cx + ring.R * Math.cos(a) - k._w / 2, cy + ring.ry * Math.sin(a) - k._h / 2, boxes);
    });
    return;
  }
  var inner = n._pad * 2 + n._cw.reduce(function (a, b) { return a + b; }, 0) + n._gx * (n._cw.length - 1);
  var ox = x + n._pad + (n._w - inner) / 2;
  kids.forEach(function (k, i) {
    var c = i % n._cols, r = Math.floor(i / n._cols);
    var cx = ox, cy = y + n._head + n._pad;
    for (var j = 0; j < c; j++) cx += n._cw[j] + n._gx;
    for (var q = 0; q < r; q++) cy += n._rh[q] + n._gy;
    place(k, cx + (n._cw[c] - k._w) / 2, cy + (n._rh[r] - k._h) / 2, boxes);
  });
}
function border(b, tx, ty) {
  // Point where the segment from the centre of box b towards (tx, ty) leaves it.
  var cx = b._x + b._w / 2, cy = b._y + b._h / 2, dx = tx - cx, dy = ty - cy;
  if (dx === 0 && dy === 0) return [cx, b._y];
  var sx = dx === 0 ? Infinity : (b._w / 2) / Math.abs(dx), sy = dy === 0 ? Infinity : (b._h / 2) / Math.abs(dy);
  var s = Math.min(sx, sy);
  return [cx + dx * s, cy + dy * s];
}
function inside(a, b) { return b.path === "" || a.path === b.path || a.path.indexOf(b.path + ".") === 0; }
function drawChart() {
  var wrap = document.getElementById("svgwrap");
  var a = selected ? actors.get(selected) : null;
  var g = a && a.machine ? machines[a.machine] : null;
  document.getElementById("chart-title").textContent = a ? a.id : "–";
  wrap.textContent = "";
  layout = null;
  if (!a) { document.getElementById("chart-note").textContent = "Click an actor in the tree."; return; }
  if (!g) {
    document.getElementById("chart-note").textContent = a.machine ? "loading the machine…" : "Not an XState machine (a supervised child or plain code): no statechart.";
    return;
  }
  var same = 0; actors.forEach(function (x) { if (x.machine === g.machine_id) same++; });
  document.getElementById("chart-note").textContent = "machine " + g.machine_id + " · " + same + " actor" + (same === 1 ? "" : "s") +
    " run it · lit: current state · dashed: framework transitions (xstate.*)";
  var root = JSON.parse(JSON.stringify(g.root));
  var longest = 0;
  g.edges.forEach(function (e) { longest = Math.max(longest, e.label.length); });
  GAP_X = Math.min(190, Math.max(100, longest * 6.5 + 30));
  measure(root, true);
  var boxes = {};
  place(root, 0, 0, boxes);
  var W = Math.ceil(root._w), H = Math.ceil(root._h);
  var s = svg("svg", { viewBox: "-4 -4 " + (W + 8) + " " + (H + 8), role: "img", "aria-label": "statechart of " + g.machine_id });
  s.style.maxWidth = (W + 8) * 1.15 + "px";
  var defs = svg("defs");
  [["arrow", "#8b949e"], ["arrow-fired", "#58a6ff"], ["arrow-int", "#6e7681"]].forEach(function (m) {
    var mk = svg("marker", { id: m[0], viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    mk.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: m[1] }));
    defs.appendChild(mk);
  });
  s.appendChild(defs);
  var gStates = svg("g"), gEdges = svg("g"), gLabels = svg("g");
  s.appendChild(gStates); s.appendChild(gEdges); s.appendChild(gLabels);
  function drawState(n, isRoot) {
    if (!isRoot) {
      var container = (n.children || []).length > 0;
      var grp = svg("g", { "class": "st " + n.type + (container ? " container" : " leaf"), "data-path": n.path });
      grp.appendChild(svg("rect", { x: n._x, y: n._y, width: n._w, height: n._h, rx: 8 }));
      var label = n.key + (n.type === "final" ? " (final)" : "");
      if (container) grp.appendChild(svg("text", { x: n._x + 10, y: n._y + 17 }, label));
      else grp.appendChild(svg("text", { x: n._x + n._w / 2, y: n._y + n._h / 2 + 4.5, "text-anchor": "middle" }, label));
      gStates.appendChild(grp);
    }
    (n.children || []).forEach(function (k) { drawState(k, false); });
    if ((n.children || []).length && n.initial) {
      var ini = (n.children || []).filter(function (k) { return k.key === n.initial; })[0];
      if (ini) gStates.appendChild(svg("circle", { "class": "init", cx: ini._x - 9, cy: ini._y + 9, r: 4.5 }));
    }
  }
  drawState(root, true);
  // One arrow per (source, target) pair, labelled with every event that takes it.
  var byPair = {}, edges = [];
  g.edges.forEach(function (e) {
    if (e.target === null || !boxes[e.target] || !boxes[e.source]) return;
    var key = e.source + ">" + e.target, m = byPair[key];
    if (!m) {
      m = byPair[key] = { source: e.source, target: e.target, events: [], labels: [], internal: true };
      edges.push({ e: m, k: 0 });
    }
    if (m.events.indexOf(e.event) < 0) m.events.push(e.event);
    if (m.labels.indexOf(e.label) < 0) m.labels.push(e.label);
    m.internal = m.internal && e.internal;
  });
  edges.forEach(function (it) { it.e.event = it.e.events.join(" "); it.e.label = it.e.labels.join(" / "); });
  edges.forEach(function (it) {
    var e = it.e, src = boxes[e.source], dst = boxes[e.target], d, lx, ly;
    if (src === dst && src.path !== "") {
      var x0 = src._x + src._w * 0.3, x1 = src._x + src._w * 0.7, y0 = src._y, up = 26 + it.k * 16;
      d = "M" + x0 + "," + y0 + " C" + x0 + "," + (y0 - up) + " " + x1 + "," + (y0 - up) + " " + x1 + "," + y0;
      lx = (x0 + x1) / 2; ly = y0 - up * 0.75 - 2;
    } else {
      var tc = [dst._x + dst._w / 2, dst._y + dst._h / 2], sc = [src._x + src._w / 2, src._y + src._h / 2];
      var p0, p1;
      if (inside(dst, src)) { p0 = [src._x + 14 + it.k * 10, src._y]; p1 = border(dst, p0[0], p0[1]); }
      else if (inside(src, dst)) { p1 = [dst._x + dst._w - 14 - it.k * 10, dst._y]; p0 = border(src, p1[0], p1[1]); }
      else { p0 = border(src, tc[0], tc[1]); p1 = border(dst, sc[0], sc[1]); }
      var mx = (p0[0] + p1[0]) / 2, my = (p0[1] + p1[1]) / 2, dx = p1[0] - p0[0], dy = p1[1] - p0[1];
      var len = Math.max(1, Math.sqrt(dx * dx + dy * dy)), off = 22 + it.k * 18;
      var cx = mx - dy / len * off, cy = my + dx / len * off;
      d = "M" + p0[0] + "," + p0[1] + " Q" + cx + "," + cy + " " + p1[0] + "," + p1[1];
      lx = (p0[0] + 2 * cx + p1[0]) / 4; ly = (p0[1] + 2 * cy + p1[1]) / 4 + 4;
    }
    var cls = "edge" + (e.internal ? " internal" : "");
    var path = svg("path", { d: d, "class": cls, "marker-end": e.internal ? "url(#arrow-int)" : "url(#arrow)",
      "data-event": e.event, "data-source": e.source, "data-target": e.target });
    path.appendChild(svg("title", {}, e.events.join(", ")));
    gEdges.appendChild(path);
    var t = svg("text", { x: lx, y: ly, "text-anchor": "middle", "class": "elabel" + (e.internal ? " internal" : ""), "data-event": e.event }, e.label);
    path.nextLabel = t;
    gLabels.appendChild(t);
  });
  wrap.appendChild(s);
  layout = { svg: s };
  lightChart();
}
function activePaths(value, prefix, out) {
  if (typeof value === "string") { out.push(prefix + value); return out; }
  if (value && typeof value === "object") Object.keys(value).forEach(function (k) {
    out.push(prefix + k); activePaths(value[k], prefix + k + ".", out);
  });
  return out;
}
function lightChart() {
  if (!layout || !selected) return;
  var a = actors.get(selected);
  if (!a) return;
  var act = activePaths(a.value, "", []);
  var tn = tone(a.state, a.status);
  Array.prototype.forEach.call(layout.svg.querySelectorAll(".st"), function (g) {
    var on = act.indexOf(g.getAttribute("data-path")) >= 0;
    g.classList.toggle("active", on);
    g.classList.toggle("bad", on && tn === "bad");
    g.classList.toggle("warn", on && tn === "warn");
  });
  var cur = layout.svg.parentNode;
  if (cur) cur.dataset.active = act.join(" ");
}
function fire(t) {
  if (!layout) return;
  var from = t.from === null ? [] : t.from.split(", ");
  var to = t.to.split(", ");
  var hits = [];
  Array.prototype.forEach.call(layout.svg.querySelectorAll("path.edge"), function (p) {
    if (p.getAttribute("data-event").split(" ").indexOf(t.event) < 0) return;
    var src = p.getAttribute("data-source"), dst = p.getAttribute("data-target");
    var fromOk = from.some(function (f) { return f === src || f.indexOf(src + ".") === 0 || src === ""; });
    var toOk = to.some(function (x) { return x === dst || x.indexOf(dst + ".") === 0; });
    if (fromOk && toOk) hits.push(p);
  });
  hits.forEach(function (p) {
    p.classList.add("fired");
    p.setAttribute("marker-end", "url(#arrow-fired)");
    var lab = p.nextLabel;
    if (lab) lab.classList.add("fired");
    setTimeout(function () {
      p.classList.remove("fired");
      p.setAttribute("marker-end", p.classList.contains("internal") ? "url(#arrow-int)" : "url(#arrow)");
      if (lab) lab.classList.remove("fired");
    }, 3000);
  });
  var note = document.getElementById("last-fired");
  note.textContent = "last: " + (t.from || "–") + " → " + t.to + " on " + t.event + " at " + String(t.at).slice(11, 19) + " UTC";
  note.dataset.event = t.event;
}

function isInternal(t) { return /^xstate\./.test(t.event); }
function visible(t) {
  if (!showInternal && isInternal(t)) return false;
  if (onlySelected && t.actor_id !== selected) return false;
  if (filterText === "") return true;
  var a = actors.get(t.actor_id);
  var hay = (t.actor_id + " " + (a ? a.kind : "") + " " + t.event + " " + (t.from || "") + " " + t.to).toLowerCase();
  return hay.indexOf(filterText) >= 0;
}
function foldedCount() {
  var n = transitions.filter(function (t) { return isInternal(t); }).length;
  document.getElementById("folded-n").textContent = showInternal
    ? n + " internal (xstate.*) events shown"
    : n + " internal (xstate.*) events folded";
}
function renderTransitions() {
  var body = document.getElementById("transitions");
  body.textContent = "";
  foldedCount();
  var shown = transitions.filter(visible);
  if (shown.length === 0) {
    var tr = el("tr");
    var td = el("td", "empty", transitions.length ? "No transition matches" : "No transitions yet");
    td.colSpan = 3;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (var i = shown.length - 1; i >= 0; i--) body.appendChild(transitionRow(shown[i]));
}

function transitionRow(t) {
  var tr = el("tr");
  tr.dataset.actor = t.actor_id;
  if (isInternal(t)) tr.dataset.internal = "1";
  tr.appendChild(el("td", "t", String(t.at).slice(11, 23)));
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
  if (t.actor_id === selected) fire(t);
  foldedCount();
  if (!visible(t)) return;
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
  if (a.id === selected) lightChart();
  if (a.kind === "supervisor") return scheduleRefetch();
  if (!known) return scheduleRefetch();
  if (parentChanged || !row) return renderTree();
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

var refetchTimer = null;
function scheduleRefetch() {
  if (refetchTimer) return;
  refetchTimer = setTimeout(function () { refetchTimer = null; refetch(); }, 150);
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
    document.getElementById("last").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
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
      scheduleRefetch();
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
  renderTransitions();
});
document.getElementById("only-selected").addEventListener("change", function (e) {
  onlySelected = e.target.checked;
  renderTransitions();
});
document.getElementById("show-internal").addEventListener("change", function (e) {
  showInternal = e.target.checked;
  renderTransitions();
});
window.addEventListener("hashchange", function () {
  var m = /^#actor=(.+)$/.exec(location.hash);
  if (m && actors.has(decodeURIComponent(m[1]))) select(decodeURIComponent(m[1]));
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
  <a href="/" id="to-dashboard">← dashboard</a>
  <span id="conn" class="pill wait">connecting</span>
  <span id="count" class="meta"></span>
  <span id="notice" class="notice"></span>
  <span class="grow"></span>
  <span id="last" class="meta"></span>
  <input id="filter" type="search" placeholder="filter actors and transitions" aria-label="Filter actors and transitions">
</header>
<main>
  <section>
    <h2>Supervision tree <span class="meta">(click an actor for its statechart)</span></h2>
    <ul id="tree" class="tree"><li class="empty">Loading…</li></ul>
  </section>
  <div id="right">
  <section id="chartbox">
    <h2>Statechart: <span id="chart-title">–</span></h2>
    <div id="chart-note"></div>
    <div id="svgwrap"></div>
    <div class="meta" id="last-fired"></div>
  </section>
  <section>
    <h2>Recent transitions <span class="meta">(time in UTC)</span></h2>
    <div class="folded"><span id="folded-n"></span><label><input id="show-internal" type="checkbox" style="width:auto"> show them</label><label><input id="only-selected" type="checkbox" style="width:auto"> selected actor only</label></div>
    <div class="tscroll"><table>
      <thead><tr><th>Time</th><th>Actor</th><th>Event</th></tr></thead>
      <tbody id="transitions"></tbody>
    </table></div>
  </section>
  </div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
