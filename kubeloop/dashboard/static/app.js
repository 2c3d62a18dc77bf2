// The dashboard page: a snapshot, then Server-Sent Events; rendering is batched per
// animation frame and the log view shows a bounded tail, so a chatty pod cannot
// freeze the tab. Data from the cluster is only ever set as text, never as HTML.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const KEEP_LOGS = 5000;   // lines held in memory
const SHOW_LOGS = 500;    // lines in the view
const LOG_INTERVAL = 100; // ms between log view updates

let rows = {};
let logs = [];
let logTotal = 0;
const sources = new Set();
const results = {};       // "action:target" -> {ok, text, busy}
const dirty = new Set();
let frame = 0;
let logTimer = 0;
let lastLogRender = -Infinity;
let stream = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value; else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function ago(at) {
  if (!at) return "—";
  const seconds = Math.max(0, Date.now() / 1000 - at);
  return seconds < 60 ? `${seconds.toFixed(0)} s ago` : `${(seconds / 60).toFixed(0)} min ago`;
}

function button(action, target, label) {
  const key = `${action}:${target}`;
  const result = results[key];
  return el("span", {},
    el("button", {"data-action": action, "data-target": target, disabled: result && result.busy}, label),
    result ? el("span", {class: `result ${result.busy ? "busy" : result.ok ? "ok" : "bad"}`,
                         "data-result": key}, result.text) : null);
}

function body(id) {
  const tbody = document.querySelector(`#${id} tbody`);
  tbody.replaceChildren();
  return tbody;
}

const renderers = {
  session() {
    const info = (rows.session || {}).info || {};
    document.getElementById("project").textContent =
      info.project ? `— ${info.project} in ${info.namespace} (${info.cluster})` : "";
  },
  artifacts() {
    const tbody = body("artifacts");
    for (const [image, row] of Object.entries(rows.artifacts || {}).sort()) {
      const state = row.status === "failed" ? "bad" : row.status === "building" ? "busy" : "ok";
      tbody.append(el("tr", {"data-row": `artifact:${image}`},
        el("td", {}, image),
        el("td", {class: state, title: row.error || row.image || ""}, row.status || "—"),
        el("td", {}, row.seconds !== undefined ? `${row.seconds} s${row.cached ? " (cached)" : ""}` : "—"),
        el("td", {"data-builds": row.builds || 0}, row.builds || 0),
        el("td", {}, button("rebuild", image, "rebuild"))));
    }
  },
  workloads() {
    const tbody = body("workloads");
    for (const [key, row] of Object.entries(rows.workloads || {}).sort()) {
      const pods = (row.pods || []).map((pod) =>
        el("span", {class: `pod ${pod.phase === "Running" && pod.ready === pod.containers ? "ok" : "busy"}`,
                    "data-pod": pod.name},
          `${pod.name} ${pod.phase}${pod.waiting ? ` (${pod.waiting})` : ""}, ` +
          `${pod.ready}/${pod.containers} ready, ${pod.restarts} restarts`));
      tbody.append(el("tr", {"data-row": `workload:${key}`},
        el("td", {}, key),
        el("td", {class: row.rollout === "rolled out" ? "ok" : "busy"}, `${row.rollout} (${row.ready}/${row.wanted})`),
        el("td", {}, pods.length ? pods : el("span", {class: "dim"}, "no pods")),
        el("td", {}, button("restart", key, "restart"))));
    }
  },
  sync() {
    const tbody = body("sync");
    for (const [selector, row] of Object.entries(rows.sync || {}).sort()) {
      tbody.append(el("tr", {"data-row": `sync:${selector}`},
        el("td", {}, `${row.selector}: ${(row.pods || []).join(", ") || "not attached yet"}`),
        el("td", {}, `${row.src} → ${row.dest}`),
        el("td", {"data-sync-files": row.files}, `${row.files} (+${row.initial_files} at attach)`),
        el("td", {}, ago(row.last_change)),
        el("td", {}, row.lag_ms !== null && row.lag_ms !== undefined ? `${row.lag_ms} ms` : "—"),
        el("td", {}, button("resync", selector, "resync"))));
    }
  },
  forwards() {
    const tbody = body("forwards");
    for (const [key, row] of Object.entries(rows.forwards || {}).sort()) {
      tbody.append(el("tr", {"data-row": `forward:${key}`},
        el("td", {}, key),
        el("td", {}, el("a", {href: row.url, target: "_blank", rel: "noreferrer noopener"}, row.url)),
        el("td", {class: row.ready ? "ok" : "busy"}, row.ready ? "forwarding" : "waiting for a ready pod"),
        el("td", {}, row.pod || "—")));
    }
  },
  bridges() {
    const entries = Object.entries(rows.bridges || {});
    document.getElementById("bridges-section").hidden = entries.length === 0;
    const tbody = body("bridges");
    for (const [key, row] of entries.sort()) {
      tbody.append(el("tr", {"data-row": `bridge:${key}`},
        el("td", {}, key), el("td", {}, row.mode), el("td", {}, row.command),
        el("td", {class: row.running ? "ok" : "busy"}, row.running ? "running" : "starting"),
        el("td", {}, row.served)));
    }
  },
  debuggers() {
    const entries = Object.entries(rows.debuggers || {});
    document.getElementById("debuggers-section").hidden = entries.length === 0;
    const tbody = body("debuggers");
    for (const [key, row] of entries.sort()) {
      tbody.append(el("tr", {"data-row": `debugger:${key}`},
        el("td", {}, key), el("td", {}, row.language),
        el("td", {class: row.ready ? "ok" : "busy"}, row.ready ? row.address : "starting"),
        el("td", {}, row.pod || "—")));
    }
  },
  tests() {
    const entries = Object.entries(rows.tests || {});
    document.getElementById("tests-section").hidden = entries.length === 0;
    const tbody = body("tests");
    for (const [name, row] of entries.sort()) {
      const state = row.status === "passed" ? "ok" : row.status === "failed" ? "bad" : "busy";
      tbody.append(el("tr", {"data-row": `test:${name}`},
        el("td", {}, name),
        el("td", {class: "dim"}, `in ${row.in} on ${row.workload}${row.on === "sync" ? ", after each sync" : ""}`),
        el("td", {class: state}, row.result || row.status),
        el("td", {}, button("test", name, "run"))));
    }
  },
  notes() {
    const list = document.getElementById("notes");
    list.replaceChildren(...Object.entries(rows.notes || {}).sort().reverse().map(([, note]) =>
      el("li", {class: note.level === "error" ? "bad" : ""},
        `${new Date(note.at * 1000).toLocaleTimeString()} ${note.text}`)));
  },
};

function schedule(section) {
  dirty.add(section);
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  for (const section of dirty) if (renderers[section]) renderers[section]();
  dirty.clear();
}

function addLog(entry) {
  logs.push(entry);
  logTotal += 1;
  if (logs.length > KEEP_LOGS * 1.5) logs = logs.slice(-KEEP_LOGS);
  if (!sources.has(entry.w)) {
    sources.add(entry.w);
    document.getElementById("log-source").append(el("option", {value: entry.w}, entry.w));
  }
  // At once after a quiet spell, then at most every LOG_INTERVAL under a flood.
  if (!logTimer) logTimer = setTimeout(renderLogs, Math.max(0, lastLogRender + LOG_INTERVAL - performance.now()));
}

function logMatcher() {
  const text = document.getElementById("log-filter").value;
  const error = document.getElementById("log-filter-error");
  error.textContent = "";
  if (!text) return () => true;
  try {
    const pattern = new RegExp(text, "i");
    return (line) => pattern.test(line);
  } catch (e) {
    error.textContent = "not a regex: plain text match";
    const lowered = text.toLowerCase();
    return (line) => line.toLowerCase().includes(lowered);
  }
}

function renderLogs() {
  logTimer = 0;
  lastLogRender = performance.now();
  if (document.getElementById("log-pause").checked) return;
  const source = document.getElementById("log-source").value;
  const matches = logMatcher();
  const shown = [];
  for (let i = logs.length - 1; i >= 0 && shown.length < SHOW_LOGS; i--) {
    const entry = logs[i];
    if (source && entry.w !== source) continue;
    if (matches(entry.line) || matches(entry.src)) shown.push(`${entry.src} ${entry.line}`);
  }
  const view = document.getElementById("logs");
  const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 30;
  view.textContent = shown.reverse().join("\n");
  if (atBottom) view.scrollTop = view.scrollHeight;
  document.getElementById("log-count").textContent =
    `(${logTotal} received, last ${Math.min(logs.length, KEEP_LOGS)} kept, ${shown.length} shown)`;
}

function apply(event) {
  if (event.t === "row") {
    const section = (rows[event.s] = rows[event.s] || {});
    if (event.v === null) delete section[event.k]; else section[event.k] = event.v;
    schedule(event.s);
  } else if (event.t === "log") {
    addLog(event);
  }
}

async function start() {
  if (stream) stream.close();
  const reply = await fetch(`/api/state?token=${encodeURIComponent(token)}`);
  if (!reply.ok) {
    document.getElementById("connection").textContent = await reply.text();
    return;
  }
  const snapshot = await reply.json();
  rows = snapshot.rows;
  logs = [];
  for (const entry of snapshot.logs) addLog(entry);
  Object.keys(renderers).forEach(schedule);
  connect(snapshot.seq);
}

function connect(seq) {
  const status = document.getElementById("connection");
  stream = new EventSource(`/api/events?token=${encodeURIComponent(token)}&seq=${seq}`);
  stream.onopen = () => { status.textContent = "live"; status.className = "state ok"; };
  stream.onerror = () => { status.textContent = "reconnecting… (is kubeloop dev still running?)"; status.className = "state bad"; };
  stream.onmessage = (message) => { for (const event of JSON.parse(message.data)) apply(event); };
  stream.addEventListener("reset", () => { start(); });  // fell behind: start over
}

document.addEventListener("click", async (event) => {
  const target = event.target.closest("button[data-action]");
  if (!target) return;
  const action = target.dataset.action, name = target.dataset.target, key = `${action}:${name}`;
  results[key] = {busy: true, text: `${action}…`};
  schedule(sectionOf(action));
  try {
    const reply = await fetch("/api/command", {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Kubeloop-Token": token},
      body: JSON.stringify({action, target: name, id: key}),
    });
    const data = reply.ok ? await reply.json() : {ok: false, text: await reply.text()};
    results[key] = {ok: data.ok, text: data.text};
  } catch (e) {
    results[key] = {ok: false, text: String(e)};
  }
  schedule(sectionOf(action));
});

function sectionOf(action) {
  return {rebuild: "artifacts", restart: "workloads", resync: "sync", test: "tests"}[action] || "notes";
}

for (const id of ["log-filter", "log-source", "log-pause"]) {
  document.getElementById(id).addEventListener("input", () => renderLogs());
}
setInterval(() => schedule("sync"), 5000);  // "n s ago"
start();
