// edgefarm dashboard: sortable tables, and the optimize page following the store while a run writes.
"use strict";

function cellKey(td) {
  if (!td) return null;
  const raw = (td.dataset.value !== undefined ? td.dataset.value : td.textContent).trim();
  if (raw === "" || raw === "-") return null;                 // missing values sort last either way
  const n = Number(raw.replace(/x$/, ""));
  return Number.isFinite(n) ? n : raw.toLowerCase();
}

function sortTable(table, col, dir) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellKey(a.cells[col]), y = cellKey(b.cells[col]);
    if (x === null || y === null) return (x === null) - (y === null);
    if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * dir;
    return (typeof x === "number" ? -1 : 1) * dir;
  });
  rows.forEach(r => body.appendChild(r));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    if (i === col) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  });
  table.dataset.sortCol = col;
  table.dataset.sortDir = dir;
}

document.addEventListener("click", ev => {
  const th = ev.target.closest("table.sortable thead th");
  if (!th) return;
  const table = th.closest("table");
  const col = th.cellIndex;
  const again = table.dataset.sortCol === String(col);
  const numeric = th.classList.contains("num");
  // first click: numbers largest first, text A to Z; a second click turns it round
  const dir = again ? -Number(table.dataset.sortDir) : (numeric ? -1 : 1);
  sortTable(table, col, dir);
});

// ---- the optimize page ---------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c === null || c === undefined ? "" : c);
  return e;
}

const fmt = (v, d) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
const COLUMNS = [
  ["#", "num", r => r.number], ["candidate", "", r => r.name], ["techniques", "", r => r.techniques.join(" + ")],
  ["status", "", r => r.status], ["p50 ms", "num", r => fmt(r.p50_ms, 3)], ["p90 ms", "num", r => fmt(r.p90_ms, 3)],
  ["speedup", "num", r => (r.speedup === null || r.speedup === undefined ? "-" : fmt(r.speedup, 2) + "x")],
  ["95% CI", "", r => (r.speedup_low === null || r.speedup_low === undefined ? "-" :
                       fmt(r.speedup_low, 2) + "–" + fmt(r.speedup_high, 2))],
  ["accuracy", "num", r => fmt(r.accuracy, 4)], ["metric", "num", r => fmt(r.metric_value, 4)],
  ["fidelity", "num", r => fmt(r.fidelity, 5)],
  ["size MB", "num", r => fmt(r.size_bytes === null ? null : r.size_bytes / 1e6, 3)],
  ["cv", "num", r => fmt(r.cv, 3)], ["why", "", r => r.reason],
];

// chosen; meets (every constraint, but another was faster); or the stored status (ok while measuring)
const status = (r, d) => (r.name === d.chosen ? "chosen" : r.meets && r.name !== "baseline" ? "meets" : r.status);

function deviceBlock(key, device, d, version) {
  const verdict = d.decided_at
    ? (d.chosen ? ["decided ", d.decided_at, ": chose ", el("b", {}, d.chosen)] : ["decided ", d.decided_at, ": ", d.failure || "nothing chosen"])
    : ["no decision yet: the run is measuring (or stopped before deciding)"];
  // a quality column no row has (accuracy without labels, the metric without --metric) is left out
  const cols = COLUMNS.filter(([t]) => !({accuracy: "accuracy", metric: "metric_value"}[t]) ||
                                       d.rows.some(r => r[{accuracy: "accuracy", metric: "metric_value"}[t]] !== null));
  const head = el("tr", {}, ...cols.map(([t, cls]) => el("th", {class: cls || null}, t)));
  const body = el("tbody", {}, ...d.rows.map(r => el("tr", {"data-name": r.name, "data-status": r.status,
      class: r.name === d.chosen ? "chosen" : null},
    ...cols.map(([t, cls, f]) => el("td", {class: cls || null},
      t === "status" ? el("span", {class: "badge " + status(r, d)}, status(r, d)) : f(r))))));
  const table = el("table", {class: "sortable candidates", id: "candidates-" + device, "data-device": device},
                   el("thead", {}, head), body);
  const plot = el("img", {class: "plot", alt: "latency vs quality on " + device,
                          src: "/optimize/" + encodeURIComponent(key) + "/" + encodeURIComponent(device) + "/plot.svg?v=" + version});
  return el("section", {class: "device-block", "data-device": device},
            el("h2", {}, device), el("p", {class: "verdict"}, ...verdict),
            el("div", {class: "split"}, table, plot));
}

function renderOptimize(root, state) {
  const sorted = {};
  root.querySelectorAll("table.candidates").forEach(t => {
    if (t.dataset.sortCol !== undefined) sorted[t.dataset.device] = [Number(t.dataset.sortCol), Number(t.dataset.sortDir)];
  });
  root.replaceChildren(...Object.entries(state.devices).map(([dev, d]) => deviceBlock(state.key, dev, d, state.version)));
  root.querySelectorAll("table.candidates").forEach(t => {
    const s = sorted[t.dataset.device];
    if (s) sortTable(t, s[0], s[1]);
  });
  root.dataset.version = state.version;
  const rows = Object.values(state.devices).reduce((n, d) => n + d.rows.length, 0);
  document.getElementById("live").textContent = "last write " + state.last_write + ", " + rows + " rows, checked " +
    new Date().toLocaleTimeString();
}

function followOptimize() {
  const root = document.getElementById("devices-live");
  if (!root) return;
  renderOptimize(root, JSON.parse(document.getElementById("state").textContent));
  const poll = async () => {
    try {
      const reply = await fetch(root.dataset.api, {cache: "no-store"});
      if (reply.ok) {
        const state = await reply.json();
        if (state.version !== root.dataset.version) renderOptimize(root, state);
        else document.getElementById("live").textContent = document.getElementById("live").textContent.replace(/checked .*$/, "checked " + new Date().toLocaleTimeString());
      }
    } finally {
      setTimeout(poll, Number(root.dataset.pollMs));
    }
  };
  setTimeout(poll, Number(root.dataset.pollMs));
}

document.addEventListener("DOMContentLoaded", followOptimize);
