// policyd playground page. The server decides everything (diagnostics, outcomes, what each graph
// node is); this file only sends the panes and draws the answers. Graphs are drawn by the vendored
// Cytoscape.js, each node styled by the classes the server gave it.
"use strict";

const PANES = ["policy", "relationships", "assertions", "validation"];
const $ = (selector) => document.querySelector(selector);
const editors = Object.fromEntries(PANES.map((p) => [p, $(`.editor[data-pane="${p}"] textarea`)]));
const gutters = Object.fromEntries(PANES.map((p) => [p, $(`.editor[data-pane="${p}"] .gutter`)]));

const state = {
  mode: "memory",
  documents: [],   // the scenarios of the open file; the current one is kept in step with the panes
  index: 0,
  layout: {},      // what the panes do not show: schema_file, header, leads, trailer
  diagnostics: [],
  reportSeq: 0,
  graph: "decision",
  cy: null,
  server: null,    // in server mode, the server's policy and relationships
};

async function api(name, body) {
  const response = await fetch(`/api/${name}`, body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({ error: "http", message: response.statusText }));
  if (!response.ok) throw new Error(data.message || data.error || response.statusText);
  return data;
}

function setStatus(text, kind = "") {
  const status = $("#status");
  status.textContent = text;
  status.className = kind;
}

// ---- the scenario in the panes ----------------------------------------------------------------

function scenario() {
  const out = { ...state.layout };
  for (const pane of PANES) out[pane] = editors[pane].value;
  return out;
}

function showScenario(s) {
  state.layout = { schema_file: s.schema_file, header: s.header, leads: s.leads, trailer: s.trailer };
  for (const pane of PANES) editors[pane].value = s[pane] || "";
  PANES.forEach(renderGutter);
  scheduleReport(0);
}

function keepCurrent() {
  if (state.documents.length) state.documents[state.index].scenario = scenario();
}

function showDocuments(documents, index = 0) {
  if (state.server) {  // a server's policy and data stand; a file brings only its assertions
    for (const d of documents) Object.assign(d.scenario, state.server, { schema_file: null });
  }
  state.documents = documents;
  state.index = index;
  const select = $("#document");
  select.replaceChildren(...documents.map((d, i) => new Option(`${i + 1}. ${d.title}`, String(i))));
  select.add(new Option("+ new scenario", String(documents.length)));
  select.value = String(index);
  if (documents.length) showScenario(documents[index].scenario);
}

// ---- editors: line numbers and diagnostics ----------------------------------------------------

function renderGutter(pane) {
  const lines = editors[pane].value.split("\n").length;
  const marks = {};
  for (const d of state.diagnostics) {
    if (d.pane === pane && marks[d.line] !== "error") marks[d.line] = d.severity;
  }
  const rows = [];
  for (let n = 1; n <= lines; n++) {
    const row = document.createElement("div");
    row.textContent = String(n);
    if (marks[n]) row.className = marks[n];
    rows.push(row);
  }
  gutters[pane].replaceChildren(...rows);
  gutters[pane].scrollTop = editors[pane].scrollTop;
}

function showTab(pane) {
  for (const tab of document.querySelectorAll("#editors .tabs button")) {
    tab.classList.toggle("active", tab.dataset.pane === pane);
  }
  for (const editor of document.querySelectorAll(".editor")) editor.hidden = editor.dataset.pane !== pane;
}

function jumpTo(pane, line, column) {
  showTab(pane);
  const editor = editors[pane];
  const lines = editor.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(column - 1, 0);
  editor.focus();
  editor.setSelectionRange(offset, offset);
  editor.scrollTop = Math.max((line - 5) * 18, 0);
}

function showDiagnostics(diagnostics) {
  state.diagnostics = diagnostics;
  const list = $("#diagnostics");
  list.replaceChildren(...diagnostics.map((d) => {
    const item = document.createElement("li");
    item.className = d.severity;
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = `${d.pane}:${d.line}:${d.column}: `;
    item.append(where, `${d.severity === "warning" ? "warning: " : ""}${d.code}: ${d.message}`);
    item.addEventListener("click", () => jumpTo(d.pane === "file" ? "assertions" : d.pane, d.line, d.column));
    return item;
  }));
  for (const tab of document.querySelectorAll("#editors .tabs button")) {
    const mine = diagnostics.filter((d) => d.pane === tab.dataset.pane);
    const errors = mine.filter((d) => d.severity === "error").length;
    const count = tab.querySelector(".count");
    count.textContent = mine.length ? String(errors || mine.length) : "";
    count.classList.toggle("warnings", mine.length > 0 && errors === 0);
  }
  PANES.forEach(renderGutter);
}

// ---- the report: diagnostics and assertion outcomes, live -------------------------------------

let reportTimer = null;
function scheduleReport(delay = 300) {
  clearTimeout(reportTimer);
  reportTimer = setTimeout(runReport, delay);
}

async function runReport() {
  const seq = ++state.reportSeq;
  let report;
  try {
    report = await api("report", { scenario: scenario() });
  } catch (e) {
    setStatus(String(e.message), "bad");
    return;
  }
  if (seq !== state.reportSeq) return;  // a newer edit is on its way
  showDiagnostics(report.diagnostics);
  const summary = $("#summary");
  summary.textContent = report.summary;
  summary.className = report.ran && report.outcomes.every((o) => o.passed) ? "ok" : "bad";
  $("#outcomes").replaceChildren(...report.outcomes.map((o) => {
    const item = document.createElement("li");
    item.className = o.passed ? "passed" : "failed";
    item.textContent = o.passed ? o.text : o.message || o.text;
    item.title = `${o.pane} line ${o.line}`;
    item.addEventListener("click", () => {
      jumpTo(o.pane, o.line, 1);
      if (o.query) {
        $("#query").value = o.query;
        $("#context").value = o.context;
        runCheck();
      }
    });
    return item;
  }));
  document.body.dataset.reported = String(seq);
}

// ---- graphs -----------------------------------------------------------------------------------

const LABEL_WIDTH = 200;
const LINE_HEIGHT = 14;
const measure = document.createElement("canvas").getContext("2d");

// A node's box: its label's lines, each wrapped at LABEL_WIDTH as Cytoscape wraps it.
function labelBox(node) {
  measure.font = `${node.hasClass("relationship") ? 10 : 11}px "DejaVu Sans", sans-serif`;
  let width = 0;
  let lines = 0;
  for (const line of String(node.data("label")).split("\n")) {
    const w = measure.measureText(line).width;
    width = Math.max(width, Math.min(w, LABEL_WIDTH));
    lines += Math.max(1, Math.ceil(w / LABEL_WIDTH));
  }
  return { width: width + 12, height: lines * LINE_HEIGHT };
}

// A tidy top-down layout of a tree: leaves side by side in order, each parent centred over its
// children, one row per depth. (Explanation trees are trees: node ids are paths, "n0.2.1".)
function treePositions(graph) {
  const children = {};
  for (const e of graph.edges) (children[e.source] ||= []).push(e.target);
  const positions = {};
  let next = 0;
  const place = (id, depth) => {
    const kids = children[id] || [];
    let x;
    if (kids.length) {
      const xs = kids.map((k) => place(k, depth + 1));
      x = (xs[0] + xs[xs.length - 1]) / 2;
    } else {
      x = next;
      next += 1;
    }
    positions[id] = { x: x * (LABEL_WIDTH + 40), y: depth * 110 };
    return x;
  };
  if (graph.nodes.length) place(graph.nodes[0].id, 0);
  return positions;
}

const STYLE = [
  { selector: "node", style: {
    "label": "data(label)", "text-wrap": "wrap", "text-max-width": `${LABEL_WIDTH}px`,
    "text-overflow-wrap": "anywhere", "font-size": 11, "line-height": LINE_HEIGHT / 11,
    "text-valign": "center", "text-halign": "center", "shape": "round-rectangle",
    "width": (n) => labelBox(n).width, "height": (n) => labelBox(n).height,
    "padding": "8px", "background-color": "#fff",
    "border-width": 2, "border-color": "#8a94a3", "font-family": "DejaVu Sans, sans-serif" } },
  { selector: "node.operation", style: { "shape": "cut-rectangle" } },
  { selector: "node.relationship", style: { "shape": "rectangle", "font-size": 10 } },
  { selector: "node.granted", style: { "border-color": "#2e7d32", "background-color": "#e8f5e9" } },
  { selector: "node.denied", style: { "border-color": "#c62828", "background-color": "#fdecea" } },
  { selector: "node.conditional", style: {
    "border-color": "#b26a00", "background-color": "#fff4e0", "border-style": "dashed" } },
  { selector: "node.cycle", style: {
    "border-color": "#6a1b9a", "background-color": "#f3e5f5", "border-style": "double", "border-width": 5 } },
  { selector: "node.subtracted", style: { "border-style": "dashed" } },
  { selector: "node.removes", style: { "background-color": "#ffcdd2", "border-color": "#c62828", "border-width": 3 } },
  { selector: "node.start", style: { "border-color": "#1565c0", "border-width": 4, "font-weight": "bold" } },
  { selector: "node:selected", style: { "overlay-opacity": 0.15, "overlay-color": "#1565c0" } },
  { selector: "edge", style: {
    "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 1.5,
    "line-color": "#8a94a3", "target-arrow-color": "#8a94a3", "label": "data(label)",
    "font-size": 10, "text-background-color": "#fff", "text-background-opacity": 1,
    "text-margin-y": -8 } },
  { selector: "edge.subtracts", style: {
    "line-color": "#c62828", "target-arrow-color": "#c62828", "line-style": "dashed", "width": 3,
    "target-arrow-shape": "tee", "color": "#c62828", "font-weight": "bold", "font-size": 12 } },
  { selector: "edge.caveated", style: { "line-style": "dashed", "line-color": "#b26a00" } },
  { selector: "edge.expiring", style: { "line-style": "dotted" } },
];

function draw(graph, layout) {
  const elements = [
    ...graph.nodes.map((n) => ({ group: "nodes", data: { id: n.id, label: n.label, detail: n.detail }, classes: n.classes })),
    ...graph.edges.map((e) => ({ group: "edges", data: { source: e.source, target: e.target,
      label: e.label === "minus" ? "− subtracts" : e.label }, classes: e.classes })),
  ];
  if (state.cy) state.cy.destroy();
  state.cy = cytoscape({ container: $("#graph"), elements, style: STYLE });
  state.cy.layout(typeof layout === "function" ? layout(state.cy) : layout).run();
  state.cy.on("tap", "node", (event) => { $("#detail").textContent = event.target.data("detail"); });
  state.cy.on("dbltap", "node", (event) => {
    if (state.graph === "relationships") {
      $("#object").value = event.target.id();
      runAround();
    }
  });
  $("#graph").dataset.nodes = String(graph.nodes.length);
  $("#graph").dataset.kind = state.graph;
}

function showGraphTab(kind) {
  state.graph = kind;
  for (const tab of document.querySelectorAll(".graph-tabs button")) {
    tab.classList.toggle("active", tab.dataset.graph === kind);
  }
}

async function runCheck() {
  const answer = $("#answer");
  answer.textContent = "…";
  answer.className = "answer";
  let result;
  try {
    result = await api("check", { scenario: scenario(), query: $("#query").value, context: $("#context").value });
  } catch (e) {
    answer.textContent = e.message;
    answer.className = "answer error";
    return;
  }
  const needs = result.missing.length ? ` (needs ${result.missing.join(", ")})` : "";
  answer.textContent = result.permissionship.replace("_", " ") + needs;
  answer.className = `answer ${result.permissionship}`;
  $("#explanation").textContent = result.text;
  const resource = $("#query").value.split("#")[0];
  if (!$("#object").value) $("#object").value = resource;
  showGraphTab("decision");
  const positions = treePositions(result.graph);
  draw(result.graph, { name: "preset", positions: (node) => positions[node.id()], padding: 20 });
  if (state.cy.zoom() < 0.75) {  // a wide tree: stay legible, start at the root, pan for the rest
    state.cy.zoom(0.75);
    const root = state.cy.nodes()[0];
    state.cy.pan({ x: $("#graph").clientWidth / 2 - root.position("x") * 0.75, y: 30 });
  }
}

async function runAround() {
  const object = $("#object").value.trim();
  if (!object) return;
  showGraphTab("relationships");
  try {
    const graph = await api("around", { scenario: scenario(), object, depth: 2 });
    draw(graph, (cy) => {  // rings around the object: one ring per step away from it
      const steps = {};
      cy.elements().breadthFirstSearch({
        root: cy.getElementById(graph.nodes[0].id),
        directed: false,
        visit: (node, edge, previous, i, depth) => { steps[node.id()] = depth; },
      });
      return { name: "concentric", concentric: (n) => 10 - (steps[n.id()] ?? 9), levelWidth: () => 1,
        minNodeSpacing: 24, padding: 16, animate: false };
    });
    $("#detail").textContent = `${graph.edges.length} relationships within two steps of ${object}; double-click a node to centre on it`;
  } catch (e) {
    $("#detail").textContent = e.message;
  }
}

// ---- files ------------------------------------------------------------------------------------

async function openFile(path) {
  try {
    const opened = await api("open", { path });
    $("#path").value = path;
    showDocuments(opened.documents);
    setStatus(`opened ${path}: ${opened.documents.length} scenario(s)`);
  } catch (e) {
    setStatus(e.message, "bad");
  }
}

async function saveFile() {
  keepCurrent();
  const path = $("#path").value.trim();
  if (!path) { setStatus("name a file to save to", "bad"); return; }
  try {
    const saved = await api("save", { path, index: state.index, scenario: scenario() });
    showFiles(saved.files);
    const verdict = saved.verdict.lines.join("\n");
    setStatus(`saved ${saved.written.join(", ")} — policyd validate: ${verdict}`, saved.verdict.ok ? "ok" : "bad");
    if (state.index >= state.documents.length) {
      const title = `document ${state.index + 1}`;
      state.documents.push({ title, scenario: scenario() });
      showDocuments(state.documents, state.index);
    }
  } catch (e) {
    setStatus(e.message, "bad");
  }
}

async function download() {
  const rendered = await api("render", { scenario: scenario() });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([rendered.text], { type: "application/yaml" }));
  link.download = ($("#path").value.split("/").pop() || "scenario.test.yaml");
  link.click();
  URL.revokeObjectURL(link.href);
}

async function upload(file) {
  try {
    const parsed = await api("parse", { text: await file.text(), name: file.name });
    $("#path").value = file.name;
    showDocuments(parsed.documents);
    setStatus(`read ${file.name}: ${parsed.documents.length} scenario(s); Save writes it under the playground's folder`);
  } catch (e) {
    setStatus(e.message, "bad");
  }
}

function showFiles(files) {
  $("#files").replaceChildren(...files.map((f) => new Option(f, f)));
}

// ---- start ------------------------------------------------------------------------------------

function wire() {
  for (const pane of PANES) {
    editors[pane].addEventListener("input", () => { renderGutter(pane); scheduleReport(); });
    editors[pane].addEventListener("scroll", () => { gutters[pane].scrollTop = editors[pane].scrollTop; });
  }
  for (const tab of document.querySelectorAll("#editors .tabs button")) {
    tab.addEventListener("click", () => showTab(tab.dataset.pane));
  }
  $("#check-form").addEventListener("submit", (event) => { event.preventDefault(); runCheck(); });
  $('.graph-tabs button[data-graph="relationships"]').addEventListener("click", runAround);
  $("#object").addEventListener("keydown", (event) => { if (event.key === "Enter") runAround(); });
  $('.graph-tabs button[data-graph="decision"]').addEventListener("click", () => { if ($("#query").value) runCheck(); });
  $("#open").addEventListener("click", () => openFile($("#path").value.trim()));
  $("#save").addEventListener("click", saveFile);
  $("#download").addEventListener("click", download);
  $("#upload").addEventListener("change", (event) => { if (event.target.files[0]) upload(event.target.files[0]); });
  $("#document").addEventListener("change", (event) => {
    keepCurrent();
    const index = Number(event.target.value);
    if (index === state.documents.length) {
      state.index = index;
      showScenario({ policy: editors.policy.value, relationships: "", assertions: "assertTrue: []\n", validation: "" });
    } else {
      state.index = index;
      showScenario(state.documents[index].scenario);
    }
  });
}

async function start() {
  wire();
  const initial = await api("state");
  state.mode = initial.mode;
  const mode = $("#mode");
  mode.textContent = initial.mode === "server" ? `read-only: ${initial.server}` : "in-memory engine";
  mode.classList.toggle("server", initial.mode === "server");
  showFiles(initial.files);
  if (initial.mode === "server") {
    editors.policy.readOnly = true;
    editors.relationships.readOnly = true;
    $("#save").disabled = true;
    state.server = { policy: initial.scenario.policy, relationships: initial.scenario.relationships };
    showDocuments([{ title: "the server's data", scenario: initial.scenario }]);
  } else if (initial.initial) {
    await openFile(initial.initial);
  } else {
    showDocuments([{ title: "new scenario", scenario: { policy: "", relationships: "", assertions: "", validation: "" } }]);
  }
  document.body.dataset.ready = "true";
}

start();
