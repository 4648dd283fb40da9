// The dashboard's pages: they fetch JSON from /api and follow its server-sent events.
// Every value from the lab is put in the page as text (textContent), never as HTML.
"use strict";

const MAX_OUTPUT_CHARS = 2000000; // a task's output shown: its last 2 MB of text

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function link(href, text) {
  const a = el("a", text);
  a.href = href;
  return a;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    if (typeof cell === "number") td.className = "number";
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function rate(r) {
  return r === null || r === undefined ? "" : `${r.toFixed(2)} tasks/s`;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function experimentPath(name) {
  return `/experiments/${encodeURIComponent(name)}`;
}

function progressBar(e) {
  const bar = el("div", null, "progress");
  const total = e.total || e.done + e.running + e.pending + e.given_up || 1;
  for (const [part, n] of [["done", e.done], ["running", e.running], ["failed", e.given_up]]) {
    const span = el("span", null, part);
    span.style.width = `${(100 * n) / total}%`;
    bar.appendChild(span);
  }
  bar.title = `${e.done} of ${e.total ?? "?"} done`;
  return bar;
}

function showLive(experiments) {
  const badge = document.getElementById("live");
  const live = experiments.some((e) => e.live);
  badge.textContent = live ? "run in progress" : "no run in progress";
  badge.classList.toggle("live", live);
}

// --- the lab page ----------------------------------------------------------------------------

function labPage() {
  const events = new EventSource("/api/status/events");
  events.addEventListener("status", (message) => {
    const status = JSON.parse(message.data);
    if (status.error) return showError(status.error);
    document.getElementById("lab").textContent = status.lab;
    showLive(status.experiments);
    document.getElementById("no-experiments").hidden = status.experiments.length > 0;
    fill(document.querySelector("#experiments tbody"), status.experiments.map((e) => {
      const tr = row([
        link(experimentPath(e.name), e.name), progressBar(e), e.done, e.running, e.pending, e.failed,
        e.given_up, rate(e.rate_per_s), seconds(e.eta_s), e.live ? "live" : "",
      ]);
      tr.dataset.experiment = e.name;
      ["name", "progress", "done", "running", "pending", "failed", "given-up", "rate", "eta", "live"]
        .forEach((name, i) => tr.children[i].classList.add(name));
      return tr;
    }));
    const nodes = [], running = [];
    for (const e of status.experiments) {
      for (const n of e.nodes) nodes.push(row([e.name, n.name, n.state, n.agents, n.slots, n.busy]));
      for (const t of e.running_tasks) {
        running.push(row([e.name, link(`${experimentPath(e.name)}/tasks/${t.task_id}`, t.task_id), t.attempt, t.node, seconds(t.elapsed_s), t.last_line]));
      }
    }
    fill(document.querySelector("#nodes tbody"), nodes);
    fill(document.querySelector("#running tbody"), running);
  });
}

function showError(text) {
  let box = document.getElementById("error");
  if (!box) {
    box = el("p", null, "error");
    box.id = "error";
    document.querySelector("main").prepend(box);
  }
  box.textContent = text;
}

// --- the experiment page ---------------------------------------------------------------------

const tableState = { columns: [], rows: [], sortBy: "task_id", ascending: true };

function experimentName() {
  return decodeURIComponent(location.pathname.split("/")[2]);
}

function experimentPage() {
  const name = experimentName();
  document.getElementById("experiment-name").textContent = name;
  document.title = `${name} · patas dashboard`;
  const api = `/api/experiments/${encodeURIComponent(name)}`;
  let lastCounts = null;
  const events = new EventSource(`/api/status/events?experiment=${encodeURIComponent(name)}`);
  events.addEventListener("status", (message) => {
    const status = JSON.parse(message.data);
    if (status.error) return showError(status.error);
    const e = status.experiments[0];
    showLive(status.experiments);
    document.getElementById("counts").textContent =
      `${e.done} of ${e.total ?? "?"} done · ${e.running} running · ${e.pending} pending · ${e.failed} failed attempts · ${e.given_up} given up` +
      (e.rate_per_s ? ` · ${rate(e.rate_per_s)} · ETA ${seconds(e.eta_s)}` : "");
    showFailures(name, e.failures);
    const counts = [e.done, e.running, e.failed, e.given_up, e.running_tasks.map((t) => t.task_id).join()].join("/");
    if (counts !== lastCounts) {
      lastCounts = counts;
      loadTasks(api);
      loadResults(api);
    }
  });
  document.getElementById("state-filter").addEventListener("change", drawTasks);
  for (const id of ["metric", "kind", "x", "y", "maximize"]) {
    document.getElementById(id).addEventListener("change", () => drawResults(api));
  }
}

function showFailures(name, failures) {
  document.getElementById("failures-section").hidden = failures.length === 0;
  fill(document.querySelector("#failures tbody"), failures.map((f) => {
    const tasks = el("span");
    f.task_ids.slice(0, 20).forEach((id, i) => {
      if (i) tasks.append(", ");
      tasks.append(link(`${experimentPath(name)}/tasks/${id}`, id));
    });
    if (f.task_ids.length > 20) tasks.append(` and ${f.task_ids.length - 20} more`);
    return row([f.kind, f.count, tasks]);
  }));
}

async function loadTasks(api) {
  try {
    const table = await getJSON(`${api}/tasks`);
    tableState.columns = table.columns;
    tableState.rows = table.rows;
    document.getElementById("tasks-note").textContent = table.truncated ? `the first ${table.rows.length} tasks` : `${table.rows.length} tasks`;
    drawTasks();
  } catch (error) {
    showError(error.message);
  }
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined || a === "") return 1;
  if (b === null || b === undefined || b === "") return -1;
  const x = Number(a), y = Number(b);
  if (!Number.isNaN(x) && !Number.isNaN(y)) return x - y;
  return String(a).localeCompare(String(b));
}

function drawTasks() {
  const name = experimentName();
  const { columns, sortBy, ascending } = tableState;
  const state = document.getElementById("state-filter").value;
  const head = document.createElement("tr");
  for (const column of columns) {
    const th = el("th", column);
    th.dataset.column = column;
    if (column === sortBy) th.classList.add(ascending ? "sorted-up" : "sorted-down");
    th.addEventListener("click", () => {
      tableState.ascending = tableState.sortBy === column ? !tableState.ascending : true;
      tableState.sortBy = column;
      drawTasks();
    });
    head.appendChild(th);
  }
  document.querySelector("#tasks thead").replaceChildren(head);
  const rows = tableState.rows.filter((r) => !state || r.state === state);
  rows.sort((a, b) => (ascending ? 1 : -1) * compare(a[sortBy], b[sortBy]) || a.task_id - b.task_id);
  fill(document.querySelector("#tasks tbody"), rows.map((r) => {
    const tr = row(columns.map((c) => (c === "task_id" ? link(`${experimentPath(name)}/tasks/${r.task_id}`, r.task_id) : number(r[c]))));
    tr.dataset.taskId = r.task_id;
    tr.children[columns.indexOf("state")].classList.add(`state-${r.state}`);
    return tr;
  }));
}

let resultsInfo = null;

function options(select, values, keep) {
  const previous = select.value;
  select.replaceChildren(...values.map(([value, text]) => {
    const option = el("option", text);
    option.value = value;
    return option;
  }));
  if (keep && values.some(([value]) => value === previous)) select.value = previous;
}

async function loadResults(api) {
  try {
    const info = await getJSON(`${api}/results`);
    const first = resultsInfo === null;
    resultsInfo = info;
    const section = document.getElementById("results-section");
    if (info.metrics.length === 0) {
      document.getElementById("results-source").textContent = info.note;
      document.getElementById("chart-controls").hidden = true;
      return;
    }
    document.getElementById("chart-controls").hidden = false;
    document.getElementById("results-source").textContent = `${info.rows} rows, from ${info.source}`;
    section.hidden = false;
    options(document.getElementById("metric"), info.metrics.map((m) => [m, m]), true);
    const kinds = [["lines", "lines (mean ± interval)"], ["heatmap", "heatmap"]];
    if (info.objective) kinds.push(["best_so_far", "best so far"], ["parallel", "parallel coordinates"]);
    options(document.getElementById("kind"), kinds, true);
    options(document.getElementById("x"), info.parameters.map((p) => [p, p]), true);
    options(document.getElementById("y"), [["", "none"], ...info.parameters.map((p) => [p, p])], true);
    if (first) {
      if (info.objective) {
        document.getElementById("metric").value = info.objective.column;
        document.getElementById("maximize").value = info.objective.maximize ? "1" : "0";
        document.getElementById("kind").value = "best_so_far";
      }
      if (info.parameters.length > 1) document.getElementById("y").value = info.parameters[1];
    }
    drawResults(api);
  } catch (error) {
    showError(error.message);
  }
}

async function drawResults(api) {
  if (!resultsInfo || resultsInfo.metrics.length === 0) return;
  const value = (id) => document.getElementById(id).value;
  const query = new URLSearchParams({ metric: value("metric"), maximize: value("maximize") });
  const chartQuery = new URLSearchParams({ kind: value("kind"), x: value("x"), y: value("y"), metric: value("metric"), maximize: value("maximize") });
  document.getElementById("y-label").hidden = ["best_so_far", "parallel"].includes(value("kind"));
  try {
    const [spec, summary] = await Promise.all([getJSON(`${api}/chart?${chartQuery}`), getJSON(`${api}/summary?${query}`)]);
    await vegaEmbed("#chart", spec, { renderer: "svg", actions: false });
    drawSummary(summary.rows);
  } catch (error) {
    document.getElementById("chart").replaceChildren(el("p", error.message, "error"));
  }
}

function number(value) {
  return typeof value === "number" && !Number.isInteger(value) ? Number(value.toPrecision(5)) : value;
}

function drawSummary(rows) {
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const head = document.createElement("tr");
  columns.forEach((c) => head.appendChild(el("th", c)));
  document.querySelector("#summary thead").replaceChildren(head);
  fill(document.querySelector("#summary tbody"), rows.map((r) => {
    const tr = row(columns.map((c) => number(r[c])));
    if (r.verdict === "best") tr.classList.add("best");
    return tr;
  }));
}

// --- a task's page ---------------------------------------------------------------------------

function taskPage() {
  const [, , encoded, , taskId] = location.pathname.split("/");
  const name = decodeURIComponent(encoded);
  const experiment = document.getElementById("experiment-link");
  experiment.textContent = name;
  experiment.href = experimentPath(name);
  document.getElementById("task-id").textContent = taskId;
  document.title = `${name} task ${taskId} · patas dashboard`;
  let events = null;
  const follow = () => {
    if (events) events.close();
    const output = document.getElementById("output");
    const notes = document.getElementById("notes");
    const badge = document.getElementById("following");
    const stream = document.getElementById("stream").value;
    events = new EventSource(`/api/experiments/${encoded}/tasks/${taskId}/output?stream=${stream}`);
    badge.textContent = "following";
    badge.classList.add("live");
    // Sent first on every (re)connection: the stream starts from the beginning of the output.
    events.addEventListener("reset", () => {
      output.textContent = "";
      notes.replaceChildren();
    });
    events.addEventListener("output", (message) => {
      const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
      let text = output.textContent + JSON.parse(message.data);
      if (text.length > MAX_OUTPUT_CHARS) text = text.slice(text.length - MAX_OUTPUT_CHARS);
      output.textContent = text;
      if (atBottom) output.scrollTop = output.scrollHeight;
    });
    events.addEventListener("attempt", (message) => notes.appendChild(el("li", JSON.parse(message.data))));
    events.addEventListener("end", (message) => {
      const end = JSON.parse(message.data);
      events.close();
      badge.textContent = end.ending;
      badge.classList.remove("live");
      if (end.message) notes.appendChild(el("li", end.message, end.ending === "error" ? "error" : ""));
    });
  };
  document.getElementById("stream").addEventListener("change", follow);
  follow();
}

const pages = { lab: labPage, experiment: experimentPage, task: taskPage };
pages[document.body.dataset.page]();
