"""``casi play --html``: one self-contained HTML file to step through the episodes played.

No network: the CSS and the script are inline, the episodes are embedded as JSON (the data of
:func:`casi_orchestrator.play.as_data`). The page shows, for the chosen episode and step, the
world (who knows, must find and has solved which attribute), the step in words, and the
interaction graph: who asks whom over all the episodes played, edge widths by count, with the
questions of the current step drawn over it. The script marks ``<body data-ready="1">`` once
it has drawn the page (the tests read that back from headless Chromium).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_PLACEHOLDER = "/*__CASI_DATA__*/"


def render(data: dict[str, Any]) -> str:
    """The page for ``data``; the JSON cannot close its script element."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return _PAGE.replace(_PLACEHOLDER, payload)


def write_viewer(path: Path, data: dict[str, Any]) -> Path:
    """Writes the page to ``path`` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CASI episodes</title>
<style>
  :root { --ink:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#f6f7f9; --accent:#c0392b;
          --direct:#dbe9ff; --goal:#ffb347; --solved:#2e8b57; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
         color: var(--ink); background: var(--bg); }
  header { padding: 14px 22px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 20px; }
  header p { margin: 2px 0 0; color: var(--muted); }
  main { display: grid; grid-template-columns: minmax(480px, 1.25fr) minmax(380px, 1fr);
         gap: 18px; padding: 18px 22px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
  h2 { font-size: 16px; margin: 0 0 10px; }
  .controls { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; margin-bottom: 12px; }
  button, select { font: inherit; padding: 4px 10px; border: 1px solid var(--line);
                   border-radius: 6px; background: #fff; cursor: pointer; }
  button:hover { background: #eef1f6; }
  input[type=range] { flex: 1; min-width: 120px; }
  #position { font-weight: 600; min-width: 110px; }
  table { border-collapse: collapse; }
  .world td, .world th { border: 1px solid var(--line); padding: 4px 8px; text-align: center;
                         min-width: 54px; }
  .world th { background: #fafbfc; font-weight: 600; }
  .world td.name { text-align: left; font-weight: 600; white-space: nowrap; }
  .world td.direct { background: var(--direct); }
  .world td.goal { box-shadow: inset 0 0 0 3px var(--goal); }
  .world td.solved { background: #d7f2e1; color: var(--solved); font-weight: 700; }
  .world td.done { opacity: .55; }
  .world td small { display: block; font-size: 11px; color: #7a4b00; font-weight: 400; }
  .legend { color: var(--muted); font-size: 13px; margin: 6px 0 12px; }
  .legend span { display: inline-block; width: 14px; height: 14px; vertical-align: -2px;
                 border: 1px solid var(--line); margin: 0 4px 0 10px; }
  #lines { margin: 0; padding-left: 20px; min-height: 90px; }
  #lines li { margin: 2px 0; }
  #lines li.win { color: var(--solved); font-weight: 700; }
  #lines li.reward { color: var(--muted); list-style: none; margin-left: -20px; }
  #end { margin-top: 10px; padding-top: 8px; border-top: 1px dashed var(--line); color: var(--muted); }
  #log { max-height: 220px; overflow: auto; margin-top: 12px; font-size: 13px; color: var(--muted); }
  #log div { cursor: pointer; padding: 1px 4px; border-radius: 4px; }
  #log div.current { background: #fff3d6; color: var(--ink); }
  svg { width: 100%; height: auto; display: block; }
  svg text { font: 14px system-ui, sans-serif; }
  .counts { font-size: 13px; }
  .counts td, .counts th { border: 1px solid var(--line); padding: 3px 6px; text-align: right; }
  .counts th { background: #fafbfc; }
  .counts td:first-child { text-align: left; font-weight: 600; }
  .note { color: var(--muted); font-size: 13px; }
</style>
</head>
<body>
<header><h1 id="title">CASI episodes</h1><p id="how"></p></header>
<main>
  <section>
    <h2>Episode</h2>
    <div class="controls">
      <select id="episode" aria-label="episode"></select>
      <button id="prev" title="previous step (left arrow)">&#9664;</button>
      <input id="slider" type="range" min="0" max="0" value="0" aria-label="step">
      <button id="next" title="next step (right arrow)">&#9654;</button>
      <button id="autoplay">play</button>
      <span id="position"></span>
    </div>
    <table class="world" id="world"></table>
    <div class="legend"><span style="background:var(--direct)"></span>knows directly
      <span style="box-shadow: inset 0 0 0 3px var(--goal)"></span>must find
      <span style="background:#d7f2e1"></span>solved;
      <small style="color:#7a4b00">bob: 2</small> the latest answer from bob</div>
    <ol id="lines"></ol>
    <div id="end"></div>
    <div id="log"></div>
  </section>
  <section>
    <h2>Who asks whom</h2>
    <svg id="graph" viewBox="0 0 420 360" role="img" aria-label="interaction graph"></svg>
    <p class="note" id="graph-note"></p>
    <table class="counts" id="asks"></table>
    <h2 style="margin-top:14px">Answers by intention</h2>
    <table class="counts" id="answers"></table>
  </section>
</main>
<script type="application/json" id="casi-data">/*__CASI_DATA__*/</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("casi-data").textContent);
const NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let ep = 0, pos = 0, timer = null;

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(NS, tag.slice(4))
                                   : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function episode() { return D.episodes[ep]; }

// the state of the world after `upto` steps (0: at the start)
function solvedAfter(upto) {
  const s = D.names.map(() => new Array(D.attrs).fill(false));
  const done = D.names.map(() => false);
  // told[q][a][j]: the latest answer q got from j about a ("2", "knows", "?")
  const told = D.names.map(() => [...Array(D.attrs)].map(() => ({})));
  episode().steps.slice(0, upto).forEach((st) => {
    st.main.forEach((m, i) => {
      const cm = D.attrs * D.values;
      if (st.acting[i] && st.guess[i] === 4 && m >= 1 && m <= cm) {
        s[i][Math.floor((m - 1) / D.values)] = true;
      }
    });
    st.done.forEach((d, i) => { done[i] = done[i] || d; });
    st.answers.forEach((ans, q) => {
      if (ans === null) return;
      const [j, a] = st.questions[q];
      told[q][a][j] = ans[0] === 3 ? String(ans[1]) : ans[0] === 2 ? "knows" : "?";
    });
  });
  return { solved: s, done: done, told: told };
}

function drawWorld() {
  const w = episode().world, t = $("world");
  const after = solvedAfter(pos);
  t.replaceChildren();
  const head = el("tr");
  head.append(el("th", {}, "agent"));
  for (let a = 0; a < D.attrs; a++) head.append(el("th", {}, "attr " + a));
  t.append(head);
  const truth = el("tr");
  truth.append(el("td", { class: "name" }, "true value"));
  w.values.forEach((v) => truth.append(el("td", {}, String(v))));
  t.append(truth);
  D.names.forEach((name, i) => {
    const row = el("tr");
    row.append(el("td", { class: "name" }, name + " (" + D.kinds[i] + ")"));
    for (let a = 0; a < D.attrs; a++) {
      const cls = [];
      let text = "";
      if (w.direct[i][a]) { cls.push("direct"); text = String(w.values[a]); }
      if (w.goal[i][a]) { cls.push("goal"); text = "?"; }
      if (after.solved[i][a]) { cls.push("solved"); text = w.values[a] + " \\u2713"; }
      if (after.done[i]) cls.push("done");
      const cell = el("td", { class: cls.join(" ") }, text);
      const heard = Object.entries(after.told[i][a]);
      if (heard.length) {
        cell.append(el("small", {}, heard.map(([j, v]) => D.names[j] + ": " + v).join(", ")));
      }
      row.append(cell);
    }
    t.append(row);
  });
}

function drawStep() {
  const steps = episode().steps, ol = $("lines");
  ol.replaceChildren();
  if (pos === 0) {
    ol.append(el("li", { class: "reward" }, "The episode starts: press \\u25B6 for step 1."));
  } else {
    steps[pos - 1].lines.forEach((line) => {
      const cls = line.endsWith("and wins") ? "win" : line.startsWith("rewards:") ? "reward" : "";
      ol.append(el("li", { class: cls }, line));
    });
  }
  $("position").textContent = pos === 0 ? "start" : "step " + steps[pos - 1].step +
    " (" + pos + " of " + steps.length + ")";
  $("slider").value = pos;
  $("end").textContent = pos === steps.length ? "End: " + episode().end.join("; ") : "";
  [...$("log").children].forEach((d, k) => d.classList.toggle("current", k + 1 === pos));
}

function drawLog() {
  const log = $("log");
  log.replaceChildren();
  episode().steps.forEach((st, k) => {
    const d = el("div", {}, "step " + st.step + ": " +
      st.lines.filter((l) => !l.startsWith("rewards:")).join("; "));
    d.addEventListener("click", () => go(k + 1));
    log.append(d);
  });
}

function graphHeight() { return D.names.length === 2 ? 230 : 360; }

function layout() {
  const n = D.names.length, cx = 210, cy = graphHeight() / 2, r = n > 2 ? 120 : 140;
  return D.names.map((_, i) => {
    const angle = Math.PI + (2 * Math.PI * i) / n;
    return [cx + r * Math.cos(angle), cy + r * Math.sin(angle)];
  });
}

function edge(svg, p, q, width, color, bend, label, dash) {
  const [x1, y1] = p, [x2, y2] = q;
  const mx = (x1 + x2) / 2, my = (y1 + y2) / 2, dx = x2 - x1, dy = y2 - y1;
  const len = Math.hypot(dx, dy) || 1;
  const cx = mx - (dy / len) * bend, cy = my + (dx / len) * bend;
  // stop the curve at the node's rim
  const shrink = (ax, ay, bx, by, d) => {
    const l = Math.hypot(bx - ax, by - ay) || 1;
    return [ax + ((bx - ax) / l) * d, ay + ((by - ay) / l) * d];
  };
  const head = 8 + 1.2 * width;
  const [sx, sy] = shrink(x1, y1, cx, cy, 36), [tx0, ty0] = shrink(x2, y2, cx, cy, 36);
  const [ex, ey] = shrink(tx0, ty0, cx, cy, head * 0.8);  // the line stops inside the head
  const path = el("svg:path", { d: `M${sx},${sy} Q${cx},${cy} ${ex},${ey}`, fill: "none",
    stroke: color, "stroke-width": width });
  const ux = (tx0 - cx) / (Math.hypot(tx0 - cx, ty0 - cy) || 1);
  const uy = (ty0 - cy) / (Math.hypot(tx0 - cx, ty0 - cy) || 1);
  const bx = tx0 - ux * head, by = ty0 - uy * head, half = 4 + 0.9 * width;
  svg.append(el("svg:polygon", { fill: color, points:
    `${tx0},${ty0} ${bx - uy * half},${by + ux * half} ${bx + uy * half},${by - ux * half}` }));
  if (dash) path.setAttribute("stroke-dasharray", "6 4");
  path.setAttribute("class", dash ? "now" : "edge");
  svg.append(path);
  if (label) {
    const tx = (sx + 2 * cx + ex) / 4, ty = (sy + 2 * cy + ey) / 4;  // the curve's middle
    svg.append(el("svg:rect", { x: tx - 13, y: ty - 11, width: 26, height: 18, rx: 4,
      fill: "#fff", stroke: "#d9dde5" }));
    svg.append(el("svg:text", { x: tx, y: ty + 3, "text-anchor": "middle", fill: "#1d2330" }, label));
  }
}

function drawGraph() {
  const svg = $("graph"), pts = layout();
  svg.replaceChildren();
  svg.setAttribute("viewBox", "0 0 420 " + graphHeight());
  const max = Math.max(1, ...D.asks.flat());
  D.asks.forEach((row, i) => row.forEach((count, j) => {
    if (i === j || count === 0) return;
    const both = D.asks[j][i] > 0;
    edge(svg, pts[i], pts[j], 1.5 + 9 * (count / max), "#6b7a99", both ? 22 : 0, String(count));
  }));
  if (pos > 0) {
    const st = episode().steps[pos - 1], cm = D.attrs * D.values;
    st.main.forEach((m, i) => {
      if (!st.acting[i] || m <= cm) return;
      const j = Math.floor((m - 1 - cm) / D.attrs);
      if (j !== i) edge(svg, pts[i], pts[j], 3, "#c0392b", D.asks[j][i] > 0 ? 40 : 18, "", true);
    });
  }
  D.names.forEach((name, i) => {
    const [x, y] = pts[i];
    const learner = D.kinds[i] === "learner";
    svg.append(el("svg:circle", { cx: x, cy: y, r: 34, fill: learner ? "#e8f0ff" : "#f1f1f1",
      stroke: learner ? "#3b6fd8" : "#999", "stroke-width": 2 }));
    svg.append(el("svg:text", { x: x, y: y + 1, "text-anchor": "middle", "font-weight": 700 }, name));
    svg.append(el("svg:text", { x: x, y: y + 16, "text-anchor": "middle", fill: "#5b6475",
      "font-size": 11 }, D.kinds[i]));
    const self = D.asks[i][i];
    if (self > 0) {
      svg.append(el("svg:text", { x: x, y: y - 42, "text-anchor": "middle", fill: "#5b6475",
        "font-size": 12 }, "asks itself: " + self));
    }
  });
  $("graph-note").textContent = "Edges: questions over the " + D.episodes.length +
    " episode(s) played, width by count; dashed red: the questions of the current step.";
}

function drawTables() {
  const asks = $("asks");
  const head = el("tr");
  head.append(el("th", {}, "asks \\u2192"));
  D.names.forEach((n) => head.append(el("th", {}, n)));
  asks.append(head);
  D.names.forEach((n, i) => {
    const row = el("tr");
    row.append(el("td", {}, n));
    D.asks[i].forEach((c) => row.append(el("td", {}, String(c))));
    asks.append(row);
  });
  const ans = $("answers");
  const h2 = el("tr");
  h2.append(el("th", {}, "answerer"));
  D.intentions.forEach((x) => h2.append(el("th", {}, x.replace("_", " "))));
  ans.append(h2);
  D.names.forEach((n, i) => {
    const row = el("tr");
    row.append(el("td", {}, n));
    D.answers[i].forEach((c) => row.append(el("td", {}, String(c))));
    ans.append(row);
  });
}

function go(p) {
  pos = Math.max(0, Math.min(episode().steps.length, p));
  drawWorld();
  drawStep();
  drawGraph();
}

function chooseEpisode(k) {
  ep = k;
  $("slider").max = episode().steps.length;
  drawLog();
  go(0);
}

function start() {
  $("title").textContent = D.title;
  $("how").textContent = D.how;
  D.episodes.forEach((e, k) => $("episode").append(el("option", { value: k },
    "episode " + e.index + " (" + e.steps.length + " steps)")));
  $("episode").addEventListener("change", (e) => chooseEpisode(Number(e.target.value)));
  $("prev").addEventListener("click", () => go(pos - 1));
  $("next").addEventListener("click", () => go(pos + 1));
  $("slider").addEventListener("input", (e) => go(Number(e.target.value)));
  $("autoplay").addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; $("autoplay").textContent = "play"; return; }
    if (pos === episode().steps.length) go(0);
    $("autoplay").textContent = "pause";
    timer = setInterval(() => {
      if (pos >= episode().steps.length) { clearInterval(timer); timer = null;
        $("autoplay").textContent = "play"; return; }
      go(pos + 1);
    }, 900);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") go(pos + 1);
    if (e.key === "ArrowLeft") go(pos - 1);
  });
  drawTables();
  chooseEpisode(0);
  const first = new URLSearchParams(location.search).get("step");
  if (first !== null) go(Number(first));
  document.body.dataset.ready = "1";
}

start();
</script>
</body>
</html>
"""
