// The Tune page's board (views/tune_board.py): the sliders of one class with their actions, the
// held-out figures since the session started and two charts, drawn from the JSON document
// conceptkd_core.tuning_board.board_data builds. Streamlit calls the default export again with
// each new document; the board updates its own nodes in place (a slider keeps its focus and its
// place), and rebuilds the rows only when the list of concepts changes. Every text from the data
// goes in through textContent, never as HTML.

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, title) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (title !== undefined) node.appendChild(document.createElementNS(SVG, "title")).textContent = title;
  return node;
}

const signed = (x) => (x > 0 ? "+" : "") + x.toFixed(2);
// Three decimals; a change that rounds to zero is shown as 0.000, never "-0.000".
function figure(x, sign = "") {
  if (x === null || x === undefined) return "–";
  const shown = Math.abs(x) < 5e-4 ? 0 : x;
  return (sign && shown > 0 ? "+" : "") + shown.toFixed(3);
}

function actionLabels(data) {
  const f = data.factor;
  return [
    ["upweight", `↑ × ${+f.toFixed(2)}`],
    ["downweight", `↓ × ${(1 / f).toFixed(2)}`],
    ["lock", "lock"],
    ["remove", "remove"],
    ["release", "free"],
  ];
}

function build(root, data, send) {
  root.replaceChildren();
  const left = root.appendChild(el("div", { class: "ckd-left" }));
  const right = root.appendChild(el("div", { class: "ckd-right" }));

  const history = left.appendChild(el("div", { class: "ckd-history" }));
  for (const [op, label] of [["undo", "↶ Undo"], ["redo", "Redo ↷"]]) {
    const button = history.appendChild(el("button", { type: "button", "data-op": op, class: "ckd-button" }, label));
    button.onclick = () => send({ op });
  }
  left.appendChild(el("p", { class: "ckd-caption ckd-legend" }));
  const rows = left.appendChild(el("div", { class: "ckd-rows" }));
  for (const row of data.rows) {
    const item = rows.appendChild(el("div", { class: "ckd-row", "data-j": row.j }));
    const head = item.appendChild(el("div", { class: "ckd-head" }));
    const id = `ckd-w-${row.j}`;
    head.appendChild(el("label", { class: "ckd-name", for: id }, row.concept));
    head.appendChild(el("output", { class: "ckd-value", for: id }));
    const range = item.appendChild(
      el("input", { type: "range", id, min: -data.span, max: data.span, step: data.step, "aria-label": row.concept }),
    );
    range.oninput = () => (item.querySelector(".ckd-value").textContent = signed(+range.value));
    range.onchange = () => send({ op: "set", j: row.j, value: +range.value });
    item.appendChild(el("div", { class: "ckd-state" }));
    const actions = item.appendChild(el("div", { class: "ckd-actions", role: "group", "aria-label": `Actions on ${row.concept}` }));
    for (const [op] of actionLabels(data)) {
      const button = actions.appendChild(el("button", { type: "button", "data-op": op, class: "ckd-button ckd-small" }));
      button.onclick = () => send({ op, j: row.j });
    }
  }

  right.appendChild(el("p", { class: "ckd-caption ckd-heldout" }));
  const tiles = right.appendChild(el("div", { class: "ckd-tiles" }));
  for (let i = 0; i < data.tiles.length; i++) {
    const tile = tiles.appendChild(el("div", { class: "ckd-tile", title: "Arrow: change since the start" }));
    tile.appendChild(el("div", { class: "ckd-tile-label" }));
    tile.appendChild(el("div", { class: "ckd-tile-value" }));
    tile.appendChild(el("div", { class: "ckd-tile-delta" }));
  }
  right.appendChild(el("p", { class: "ckd-caption ckd-last" }));
  const track = right.appendChild(svg("svg", { class: "ckd-track", viewBox: "0 0 480 190", role: "img" }));
  right.appendChild(el("p", { class: "ckd-caption ckd-track-key" }));
  right.appendChild(svg("svg", { class: "ckd-weights", role: "img" }));
  right.appendChild(el("p", { class: "ckd-caption ckd-weights-key" }));
  right.appendChild(el("div", { class: "ckd-warning", role: "alert" }));
  // A window turned or resized: the charts are drawn again at their new width.
  new ResizeObserver(() => {
    if (root.__data && Math.round(track.getBoundingClientRect().width) !== track.viewBox.baseVal.width) {
      drawTrack(track, root.__data);
      drawWeights(root.querySelector(".ckd-weights"), root.__data);
    }
  }).observe(track);
}

function update(root, data) {
  root.querySelector(".ckd-history [data-op=undo]").disabled = !data.can_undo;
  root.querySelector(".ckd-history [data-op=redo]").disabled = !data.can_redo;
  const f = data.factor;
  root.querySelector(".ckd-legend").textContent =
    `↑ × ${+f.toFixed(2)}: up-tune, |weight| at least × ${+f.toFixed(2)} of now (a weight of 0 comes in with a floor) · ` +
    `↓ × ${(1 / f).toFixed(2)}: down-tune, at most × ${(1 / f).toFixed(2)} of now · lock: keep the weight now · ` +
    "remove: weight 0 · free: drop the constraint";
  const labels = actionLabels(data);
  data.rows.forEach((row, i) => {
    const item = root.querySelectorAll(".ckd-row")[i];
    const range = item.querySelector("input");
    range.min = -data.span;
    range.max = data.span;
    if (document.activeElement !== range || +range.value !== row.weight) range.value = row.weight;
    range.setAttribute("aria-valuetext", signed(row.weight));
    item.querySelector(".ckd-value").textContent = signed(row.weight);
    const state = item.querySelector(".ckd-state");
    state.textContent = row.state;
    state.dataset.kind = row.kind;
    item.classList.toggle("ckd-constrained", !!row.state);
    const buttons = item.querySelectorAll(".ckd-actions button");
    labels.forEach(([op, label], k) => {
      buttons[k].textContent = label;
      buttons[k].title = { upweight: row.up, downweight: row.down, lock: "Lock: keep the current weight", remove: "Remove: weight 0", release: "Free: drop the constraint" }[op];
      buttons[k].hidden = op === "release" && !row.state;
    });
  });
  const n = data.edits;
  root.querySelector(".ckd-heldout").textContent =
    `On held-out images (the students were not fit on them), since this session started (${n} edit${n === 1 ? "" : "s"} applied).`;
  root.querySelectorAll(".ckd-tile").forEach((tile, i) => {
    const t = data.tiles[i];
    tile.querySelector(".ckd-tile-label").textContent = t.label;
    tile.querySelector(".ckd-tile-value").textContent = figure(t.now);
    const delta = tile.querySelector(".ckd-tile-delta");
    const moved = t.since !== null && Math.round(t.since * 1000) !== 0;
    delta.textContent = moved ? `${t.since > 0 ? "▲" : "▼"} ${figure(t.since, "+")}` : "";
    delta.dataset.sign = moved ? (t.since > 0 ? "up" : "down") : "";
  });
  root.querySelector(".ckd-last").textContent =
    "Arrows: change since the start. The last edit's change: " +
    data.tiles.map((t) => `${t.label} ${figure(t.last, "+")}`).join(" · ");
  drawTrack(root.querySelector(".ckd-track"), data);
  const [studentColour, teacherColour] = data.colours.scopes;
  key(root.querySelector(".ckd-track-key"), [[data.track.scopes[0], studentColour], [data.track.scopes[1], teacherColour]],
    "solid: student AP · dotted: balanced agreement · dashed grey: chance (AP of this class, of the mean; 0.5)");
  drawWeights(root.querySelector(".ckd-weights"), data);
  key(root.querySelector(".ckd-weights-key"), [["pushes up", data.colours.up], ["pushes down", data.colours.down]], "");
  const warning = root.querySelector(".ckd-warning");
  warning.textContent = data.autosave_error || "";
  warning.hidden = !data.autosave_error;
  root.dataset.edits = n;
  root.dataset.drawnAt = data.drawn_at;
}

function key(node, entries, words) {
  node.replaceChildren();
  entries.forEach(([word, colour], i) => {
    if (i) node.appendChild(document.createTextNode(" · "));
    node.appendChild(el("span", { class: "ckd-swatch", style: `color:${colour}` }, "■"));
    node.appendChild(document.createTextNode(` ${word}`));
  });
  if (words) node.appendChild(document.createTextNode(` — ${words}`));
}

// A chart is drawn in the width it is shown at, one unit a CSS pixel, so that its 11 px text stays
// 11 px: a fixed 480-unit drawing scaled down to a phone's 358 px column made it 8 px, unreadable.
function drawnWidth(chart) {
  const shown = Math.round(chart.getBoundingClientRect().width);
  return shown > 0 ? Math.max(shown, 240) : 480;
}

// The figures after each edit on a fixed 0..1 axis: colour = this class / the mean, solid = AP,
// dotted = balanced agreement; the chance lines dashed grey.
function drawTrack(chart, data) {
  const W = drawnWidth(chart), H = 190, L = 34, R = 10, T = 8, B = 26;
  const x = (e) => L + ((W - L - R) * e) / data.track.last;
  const y = (v) => T + (H - T - B) * (1 - v);
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  chart.replaceChildren();
  chart.setAttribute("aria-label", `Held-out figures after each of the ${data.edits} edits`);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "ckd-grid" }));
    chart.appendChild(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end", class: "ckd-tick" })).textContent = v;
  }
  const every = Math.max(1, Math.ceil(data.track.last / 10));
  for (let e = 0; e <= data.track.last; e += every) {
    chart.appendChild(svg("text", { x: x(e), y: H - B + 13, "text-anchor": "middle", class: "ckd-tick" })).textContent = e;
  }
  chart.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle", class: "ckd-tick" })).textContent = "edit";
  for (const line of data.track.chance) {
    if (line.value === null) continue;
    chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(line.value), y2: y(line.value), class: "ckd-chance" },
      `${line.label}: ${line.value.toFixed(3)}`));
  }
  data.track.scopes.forEach((scope, s) => {
    data.track.metrics.forEach((metric, m) => {
      const points = data.track.points.filter((p) => p[1] === s && p[2] === m && p[3] !== null);
      const colour = data.colours.scopes[s];
      const attrs = { points: points.map((p) => `${x(p[0])},${y(p[3])}`).join(" "), stroke: colour, class: "ckd-line" };
      if (m === 1) attrs["stroke-dasharray"] = "3 3";
      chart.appendChild(svg("polyline", attrs));
      for (const p of points) {
        chart.appendChild(svg("circle", { cx: x(p[0]), cy: y(p[3]), r: 2.5, fill: colour },
          `${scope} · ${metric} · edit ${p[0]}: ${p[3].toFixed(3)}`));
      }
    });
  });
}

// The class's largest weights as signed bars on a fixed axis (-span..span, round ticks from
// tuning_board.nice_axis), largest first.
function drawWeights(chart, data) {
  const bars = data.weights.bars, span = data.weights.span;
  const W = drawnWidth(chart), L = 130, R = 10, T = 22, row = 17, H = T + row * Math.max(bars.length, 1) + 22;
  const x = (v) => L + ((W - L - R) * (v + span)) / (2 * span);
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  chart.setAttribute("aria-label", `Weights now, the largest ${bars.length}`);
  chart.replaceChildren();
  chart.appendChild(svg("text", { x: 0, y: 13, class: "ckd-title" })).textContent = "Weights now (largest 15)";
  bars.forEach((bar, i) => {
    const top = T + i * row;
    const name = bar.concept.length > 22 ? bar.concept.slice(0, 21) + "…" : bar.concept;
    chart.appendChild(svg("text", { x: L - 6, y: top + 12, "text-anchor": "end", class: "ckd-tick" })).textContent = name;
    const colour = bar.weight > 0 ? data.colours.up : bar.weight < 0 ? data.colours.down : data.colours.zero;
    const bounds = [bar.lower, bar.upper].map((b) => (b === null ? "none" : signed(b))).join(" .. ");
    chart.appendChild(svg("rect", {
      x: Math.min(x(0), x(bar.weight)), y: top + 2, width: Math.abs(x(bar.weight) - x(0)), height: row - 5, fill: colour,
    }, `${bar.concept}: weight ${signed(bar.weight)} (bounds ${bounds})`));
  });
  const axis = T + row * Math.max(bars.length, 1) + 2;
  chart.appendChild(svg("line", { x1: x(0), x2: x(0), y1: T, y2: axis, class: "ckd-zero" }));
  for (const v of data.weights.ticks) {
    chart.appendChild(svg("text", { x: x(v), y: axis + 13, "text-anchor": "middle", class: "ckd-tick" })).textContent = +v.toFixed(2);
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector(".ckd-board");
  if (!root) root = parentElement.appendChild(el("div", { class: "ckd-board" }));
  // Read at click time: Streamlit may hand a new trigger function and data with each document.
  root.__trigger = setTriggerValue;
  const send = (edit) => root.__trigger("edit", { ...edit, drawn_at: root.__data.drawn_at });
  const concepts = data.rows.map((row) => row.j).join(",");
  if (root.dataset.concepts !== concepts) {
    build(root, data, send);
    root.dataset.concepts = concepts;
  }
  root.__data = data;
  update(root, data);
}
