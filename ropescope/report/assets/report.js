"use strict";
// ropescope report: draws the run's data (embedded as JSON in #report-data) with no library and no
// network request. Heat maps are canvases with a hover tooltip; tables are plain HTML.
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const LUT = DATA.colormap;
  const PALETTE = DATA.palette; // the figures' colours, from Python (ropescope.plots.style)
  const MASKED = PALETTE.masked;
  const tip = document.getElementById("tooltip");
  const DPR = window.devicePixelRatio || 1;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return v.toLocaleString("en");
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return v.toFixed(digits === undefined ? 3 : digits);
  }
  function tokenText(t) {
    return JSON.stringify(t).slice(1, -1);
  }
  // A tooltip is a list of lines; a line is a list of parts: a string is plain text, [string] is bold.
  // Every part becomes a text node, so nothing read from a file can become markup.
  function showTip(ev, lines) {
    tip.replaceChildren();
    lines.forEach((parts, i) => {
      if (i) tip.appendChild(document.createElement("br"));
      for (const part of parts) tip.appendChild(Array.isArray(part) ? el("b", { text: String(part[0]) }) : document.createTextNode(String(part)));
    });
    tip.style.display = "block";
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    const y = Math.min(ev.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() {
    tip.style.display = "none";
  }

  // ---- colour scales -------------------------------------------------------------------------
  function finite(matrix) {
    const out = [];
    for (const row of matrix) for (const v of row) if (v !== null && Number.isFinite(v)) out.push(v);
    return out.sort((a, b) => a - b);
  }
  function percentile(sorted, p) {
    if (!sorted.length) return 1;
    const pos = ((sorted.length - 1) * p) / 100;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }
  function makeScale(matrix, scale, fixed) {
    if (fixed) return { lo: fixed[0], hi: fixed[1], at: (v) => (v - fixed[0]) / (fixed[1] - fixed[0]), said: "linear" };
    const values = finite(matrix);
    const top = values.length ? values[values.length - 1] : 1;
    if (scale === "log") {
      const pos = values.filter((v) => v > 0);
      const lo = pos.length ? pos[0] : 1e-6;
      const hi = Math.max(top, lo * 10);
      return { lo, hi, log: true, at: (v) => (Math.log(Math.max(v, lo)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)), said: "log scale" };
    }
    if (scale === "linear") return { lo: 0, hi: top || 1, at: (v) => v / (top || 1), said: "linear, 0 to max" };
    const clip = percentile(values, 99) || top || 1;
    return { lo: 0, hi: clip, at: (v) => v / clip, said: "clipped at 99th pct = " + fmt(clip) + ", max " + fmt(top), clipped: top > clip };
  }
  function colourAt(t) {
    const i = Math.max(0, Math.min(255, Math.round(t * 255)));
    return LUT[i];
  }

  // A W x H plot area with margins M, sharp on high-density screens; returns the cleared context.
  function sizeCanvas(canvas, W, H, M) {
    canvas.width = (W + M.l + M.r) * DPR;
    canvas.height = (H + M.t + M.b) * DPR;
    canvas.style.width = W + M.l + M.r + "px";
    canvas.style.height = H + M.t + M.b + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(DPR, 0, 0, DPR, 0, 0);
    ctx.clearRect(0, 0, W + M.l + M.r, H + M.t + M.b);
    return ctx;
  }

  // ---- heat map ------------------------------------------------------------------------------
  // opts: width, height, scale, fixed [lo, hi], xLabel, yLabel, xTicks [[i, label]], yTicks, hover(r, c, v),
  // masked(r, c), barLabel, margin {l, b}
  function heatmap(canvas, matrix, opts) {
    const rows = matrix.length;
    const cols = rows ? matrix[0].length : 0;
    const M = { l: (opts.margin && opts.margin.l) || 58, r: 96, t: 8, b: (opts.margin && opts.margin.b) || 42 };
    const W = opts.width;
    const H = opts.height;
    const ctx = sizeCanvas(canvas, W, H, M);
    const scale = makeScale(matrix, opts.scale, opts.fixed);
    const cw = W / cols;
    const ch = H / rows;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = matrix[r][c];
        const masked = (opts.masked && opts.masked(r, c)) || v === null || !Number.isFinite(v);
        ctx.fillStyle = masked ? MASKED : colourAt(scale.at(v));
        ctx.fillRect(M.l + c * cw, M.t + r * ch, Math.ceil(cw), Math.ceil(ch));
      }
    }
    ctx.strokeStyle = "#333";
    ctx.lineWidth = 1;
    ctx.strokeRect(M.l + 0.5, M.t + 0.5, W, H);
    ctx.fillStyle = "#222";
    ctx.font = "11px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const [i, label] of opts.yTicks || []) ctx.fillText(label, M.l - 5, M.t + (i + 0.5) * ch);
    for (const [i, label] of opts.xTicks || []) {
      ctx.save();
      ctx.translate(M.l + (i + 0.5) * cw, M.t + H + 5);
      if (opts.rotateX) {
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "right";
        ctx.fillText(label, 0, 0);
      } else {
        ctx.textAlign = "center";
        ctx.textBaseline = "top";
        ctx.fillText(label, 0, 0);
      }
      ctx.restore();
    }
    ctx.font = "12px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText(opts.xLabel || "", M.l + W / 2, M.t + H + M.b - 2);
    ctx.save();
    ctx.translate(13, M.t + H / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(opts.yLabel || "", 0, 0);
    ctx.restore();
    // colour bar
    const bx = M.l + W + 12;
    for (let y = 0; y < H; y++) {
      ctx.fillStyle = colourAt(1 - y / H);
      ctx.fillRect(bx, M.t + y, 12, 1.5);
    }
    ctx.strokeRect(bx + 0.5, M.t + 0.5, 12, H);
    ctx.fillStyle = "#222";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(fmt(scale.hi, 2) + (scale.clipped ? "+" : ""), bx + 15, M.t);
    ctx.textBaseline = "bottom";
    ctx.fillText(fmt(scale.lo, 2), bx + 15, M.t + H);
    ctx.save();
    ctx.translate(bx + 62, M.t + H / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(opts.barLabel || "", 0, -8);
    ctx.fillText(scale.said, 0, 6);
    ctx.restore();
    ctx.lineWidth = 1.5;
    for (const [r, c, colour] of opts.marks || []) {
      ctx.strokeStyle = colour;
      ctx.beginPath();
      ctx.arc(M.l + (c + 0.5) * cw, M.t + (r + 0.5) * ch, Math.max(2.5, Math.min(cw, ch) * 0.42), 0, 2 * Math.PI);
      ctx.stroke();
    }
    canvas.onmousemove = (ev) => {
      const rect = canvas.getBoundingClientRect();
      const x = ev.clientX - rect.left - M.l;
      const y = ev.clientY - rect.top - M.t;
      const c = Math.floor(x / cw);
      const r = Math.floor(y / ch);
      if (x < 0 || y < 0 || c >= cols || r >= rows) return hideTip();
      showTip(ev, opts.hover(r, c, matrix[r][c]));
    };
    canvas.onmouseleave = hideTip;
  }
  function transpose(m) {
    return m.length ? m[0].map((_, c) => m.map((row) => row[c])) : [];
  }
  function everyNth(n, count, label) {
    const step = Math.max(1, Math.ceil(n / count));
    const out = [];
    for (let i = 0; i < n; i += step) out.push([i, label ? label(i) : String(i)]);
    return out;
  }
  const TENSOR_NAMES = { q: "queries", k: "keys", v: "values" };
  const BAND_COLOUR = PALETTE.band; // rings: the layer's measured frequency band (per-layer map)
  const MASSIVE_COLOUR = PALETTE.massive; // rings: massive chunks (per-head map)
  const geo = DATA.geometry;
  function chunkHover(layer, chunk, value, what) {
    const L = geo.layers[layer];
    return [
      [[what]],
      ["layer " + layer + " (theta " + fmt(L.theta, 0) + (L.window ? ", window " + fmt(L.window) : "") + ")"],
      ["chunk " + chunk + " (0 = fastest)"],
      ["frequency " + fmt(L.frequency[chunk], 5) + " rad/token"],
      ["wavelength " + fmt(L.wavelength[chunk], 1) + " tokens"],
      ["mean chunk norm ", [fmt(value)]],
    ];
  }

  // ---- usage maps ----------------------------------------------------------------------------
  function drawUsage() {
    const tensor = document.getElementById("usage-tensor").value;
    const scale = document.getElementById("usage-scale").value;
    const matrix = transpose(DATA.usage[tensor]); // [chunk][layer]
    const band = (DATA.band && DATA.band[tensor]) || [];
    const inBand = new Set(band.map(([l, c]) => l + "," + c));
    const massive = ((DATA.massive && DATA.massive[tensor]) || []).filter((m) => m[0] === Number(document.getElementById("head-layer").value));
    const massiveAt = new Map(massive.map(([, h, c, ratio]) => [h + "," + c, ratio]));
    heatmap(document.getElementById("usage-map"), matrix, {
      marks: band.map(([l, c]) => [c, l, BAND_COLOUR]),
      width: Math.max(360, Math.min(720, 26 * DATA.usage[tensor].length)),
      height: 420,
      scale,
      xLabel: "layer (0-based)",
      yLabel: "chunk (0 = highest frequency)",
      xTicks: everyNth(matrix[0].length, 20),
      yTicks: everyNth(matrix.length, 8),
      barLabel: "mean chunk norm (2-norm)",
      hover: (r, c, v) => {
        const lines = chunkHover(c, r, v, TENSOR_NAMES[tensor] + ", mean over tokens and heads");
        if (inBand.has(c + "," + r)) lines.push(["in the layer's frequency band (ringed)"]);
        return lines;
      },
    });
    const layer = Number(document.getElementById("head-layer").value);
    const perHead = transpose(DATA.head_usage[tensor][layer]); // [chunk][head]
    const nHeads = perHead[0].length;
    heatmap(document.getElementById("head-map"), perHead, {
      marks: massive.map(([, h, c]) => [c, h, MASSIVE_COLOUR]),
      width: Math.max(120, Math.min(560, 48 * nHeads)),
      height: 420,
      scale,
      xLabel: (tensor === "q" ? "query" : "KV") + " head (0-based)",
      yLabel: "chunk (0 = highest frequency)",
      xTicks: everyNth(nHeads, 16),
      yTicks: everyNth(perHead.length, 8),
      barLabel: "mean chunk norm (2-norm)",
      hover: (r, c, v) => {
        const lines = chunkHover(layer, r, v, TENSOR_NAMES[tensor] + ", " + (tensor === "q" ? "query" : "KV") + " head " + c);
        const ratio = massiveAt.get(c + "," + r);
        if (ratio !== undefined) lines.push(["massive chunk: ", [fmt(ratio, 1) + "x its head's mean"]]);
        return lines;
      },
    });
    document.getElementById("head-map-caption").textContent =
      TENSOR_NAMES[tensor] + " per head, layer " + layer + " (0-based)" + (tensor === "v" ? "" : "; green rings: massive chunks");
  }

  // ---- head table ----------------------------------------------------------------------------
  const HEADS = DATA.heads || [];
  const CLASS_COLOURS = PALETTE.classes;
  const COLUMNS = HEADS.length ? Object.keys(HEADS[0]) : [];
  const TEXT_COLUMNS = new Set(["class", "target", "attr_top_chunks"]);
  let sortKey = null;
  let sortDir = 1;
  let selected = null;

  function buildHeadTable() {
    const table = document.getElementById("head-table");
    if (!HEADS.length) return;
    const headRow = el("tr");
    for (const key of COLUMNS) {
      const th = el("th", { "data-key": key, class: TEXT_COLUMNS.has(key) ? "text" : "", text: key });
      th.addEventListener("click", () => {
        sortDir = sortKey === key ? -sortDir : 1;
        sortKey = key;
        renderHeadRows();
      });
      headRow.appendChild(th);
    }
    table.appendChild(el("thead", {}, [headRow]));
    table.appendChild(el("tbody"));
    const select = document.getElementById("class-filter");
    for (const cls of Object.keys(CLASS_COLOURS)) select.appendChild(el("option", { value: cls, text: cls }));
    select.addEventListener("change", renderHeadRows);
    document.getElementById("head-filter").addEventListener("input", renderHeadRows);
    renderHeadRows();
  }
  function renderHeadRows() {
    const text = document.getElementById("head-filter").value.trim().toLowerCase();
    const cls = document.getElementById("class-filter").value;
    let rows = HEADS.filter((r) => (!cls || r["class"] === cls));
    if (text) {
      rows = rows.filter((r) => {
        const name = ("l" + r.layer + "h" + r.head).toLowerCase();
        return name.includes(text) || COLUMNS.some((k) => String(r[k]).toLowerCase().includes(text));
      });
    }
    if (sortKey) {
      rows = rows.slice().sort((a, b) => {
        const x = a[sortKey];
        const y = b[sortKey];
        if (typeof x === "number" && typeof y === "number") return sortDir * (x - y);
        return sortDir * String(x).localeCompare(String(y));
      });
    }
    for (const th of document.querySelectorAll("#head-table th")) {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && sortDir === 1);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDir === -1);
    }
    const body = document.querySelector("#head-table tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = el("tr", { "data-head": r.layer + "," + r.head });
      if (selected && selected.layer === r.layer && selected.head === r.head) tr.classList.add("selected");
      for (const key of COLUMNS) {
        const td = el("td", { class: TEXT_COLUMNS.has(key) ? "text" : "" });
        if (key === "class") {
          const swatch = el("span", { class: "swatch" });
          swatch.style.background = Object.hasOwn(CLASS_COLOURS, r[key]) ? CLASS_COLOURS[r[key]] : "#999";
          td.appendChild(swatch);
        }
        td.appendChild(document.createTextNode(fmt(r[key])));
        tr.appendChild(td);
      }
      tr.addEventListener("click", () => selectHead(r));
      body.appendChild(tr);
    }
    document.getElementById("head-count").textContent = rows.length + " of " + HEADS.length + " heads";
  }

  // ---- one head ------------------------------------------------------------------------------
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function offsetBars(row) {
    const keys = COLUMNS.filter((k) => k.startsWith("offset_")).concat(["sink"]);
    const W = 420;
    const H = 180;
    const M = { l: 40, b: 34, t: 8 };
    const root = svg("svg", { width: W + M.l + 10, height: H + M.t + M.b, role: "img" });
    const bw = W / keys.length;
    // the scan's own threshold (DATA.threshold, from the run's options), dashed; 0 and 1 as grid lines
    const levels = [0, 1].concat(DATA.threshold == null ? [] : [DATA.threshold]);
    for (const t of levels) {
      const threshold = DATA.threshold != null && t === DATA.threshold;
      const y = M.t + H * (1 - t);
      const line = svg("line", { x1: M.l, x2: M.l + W, y1: y, y2: y, stroke: threshold ? "#444" : "#ddd", "stroke-dasharray": threshold ? "3,3" : "" });
      if (threshold) line.setAttribute("class", "threshold-line");
      root.appendChild(line);
      const label = svg("text", { x: M.l - 4, y: y + 4, "text-anchor": "end", "font-size": 10 });
      label.textContent = t;
      root.appendChild(label);
    }
    keys.forEach((k, i) => {
      const v = row[k] || 0;
      const bar = svg("rect", { x: M.l + i * bw + 3, y: M.t + H * (1 - v), width: bw - 6, height: H * v, fill: k === "sink" ? PALETTE.sink : PALETTE.offset });
      bar.addEventListener("mousemove", (ev) => showTip(ev, [[[k === "sink" ? "first token (BOS)" : "offset " + k.slice(7)]], ["mean attention " + fmt(v)]]));
      bar.addEventListener("mouseleave", hideTip);
      root.appendChild(bar);
      const label = svg("text", { x: M.l + (i + 0.5) * bw, y: M.t + H + 14, "text-anchor": "middle", "font-size": 10 });
      label.textContent = k === "sink" ? "BOS" : k.slice(7);
      root.appendChild(label);
    });
    const xl = svg("text", { x: M.l + W / 2, y: M.t + H + 30, "text-anchor": "middle", "font-size": 11 });
    xl.textContent = "offset i - j (tokens); BOS = the first token; dashed: threshold";
    root.appendChild(xl);
    return root;
  }
  function chunkLines(canvas, layer, head, kv) {
    const own = geo.layers[layer].chunks; // the layer's own chunks (Gemma 4: fewer on sliding layers)
    const q = DATA.head_usage.q[layer][head].slice(0, own);
    const k = DATA.head_usage.k[layer][kv].slice(0, own);
    const n = q.length;
    const W = 460;
    const H = 180;
    const M = { l: 44, r: 10, t: 10, b: 34 };
    const ctx = sizeCanvas(canvas, W, H, M);
    const top = Math.max(...q.concat(k).filter((v) => v !== null)) || 1;
    const X = (c) => M.l + (c / Math.max(1, n - 1)) * W;
    const Y = (v) => M.t + H * (1 - v / top);
    ctx.strokeStyle = "#333";
    ctx.strokeRect(M.l + 0.5, M.t + 0.5, W, H);
    const boundary = geo.layers[layer].boundary_profiled;
    ctx.fillStyle = "rgba(0,180,216,0.10)";
    ctx.fillRect(X(boundary), M.t, M.l + W - X(boundary), H);
    for (const [series, colour] of [[q, PALETTE.query], [k, PALETTE.key]]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.4;
      ctx.beginPath();
      series.forEach((v, c) => (c ? ctx.lineTo(X(c), Y(v || 0)) : ctx.moveTo(X(c), Y(v || 0))));
      ctx.stroke();
    }
    ctx.fillStyle = "#222";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.fillText(fmt(top, 2), M.l - 4, M.t + 8);
    ctx.fillText("0", M.l - 4, M.t + H);
    ctx.textAlign = "center";
    for (const [c] of everyNth(n, 8)) ctx.fillText(String(c), X(c), M.t + H + 12);
    ctx.font = "11px sans-serif";
    ctx.fillText("chunk (0 = highest frequency); shaded: < 1 rad over the longest prompt", M.l + W / 2, M.t + H + 28);
    ctx.textAlign = "left";
    ctx.fillStyle = PALETTE.query;
    ctx.fillText("query head " + head, M.l + 8, M.t + 14);
    ctx.fillStyle = PALETTE.key;
    ctx.fillText("key (KV head " + kv + ")", M.l + 8, M.t + 28);
    canvas.onmousemove = (ev) => {
      const rect = canvas.getBoundingClientRect();
      const c = Math.round(((ev.clientX - rect.left - M.l) / W) * (n - 1));
      if (c < 0 || c >= n) return hideTip();
      showTip(ev, chunkHover(layer, c, q[c], "query head " + head).concat([["key (KV head " + kv + ") ", [fmt(k[c])]]]));
    };
    canvas.onmouseleave = hideTip;
  }
  function selectHead(row) {
    selected = row;
    for (const tr of document.querySelectorAll("#head-table tbody tr")) tr.classList.toggle("selected", tr.dataset.head === row.layer + "," + row.head);
    const box = document.getElementById("head-view");
    box.replaceChildren();
    box.appendChild(el("h3", { text: "Layer " + row.layer + " head " + row.head + " (0-based): " + row["class"] + ", score " + fmt(row.score) }));
    const maps = el("div", { class: "maps" });
    maps.appendChild(el("figure", {}, [el("figcaption", { text: "Mean attention by offset" }), offsetBars(row)]));
    const lines = el("canvas", { id: "head-chunks" });
    maps.appendChild(el("figure", {}, [el("figcaption", { text: "Mean chunk norm of its query and key" }), lines]));
    box.appendChild(maps);
    chunkLines(lines, row.layer, row.head, row.kv_head);
    const causal = (DATA.causal || []).filter((r) => r.layer === row.layer && r.head === row.head);
    box.appendChild(el("h3", { text: "Causal test: its offset score with query chunks zeroed" }));
    if (causal.length) {
      const t = el("table", {}, [el("thead", {}, [el("tr", {}, ["condition", "chunks zeroed", "score", "change"].map((h) => el("th", { text: h })))])]);
      const body = el("tbody");
      for (const r of causal) body.appendChild(el("tr", {}, [el("td", { class: "text", text: r.condition }), el("td", { class: "text", text: r.chunks || "–" }), el("td", { text: fmt(r.score) }), el("td", { text: fmt(r.change) })]));
      t.appendChild(body);
      box.appendChild(t);
    } else {
      box.appendChild(el("p", { class: "empty", text: DATA.causal ? "not tested: the causal test runs on positional heads only" : "no causal test in this run" }));
    }
    box.appendChild(el("h3", { text: "Attention on a prompt" }));
    const att = DATA.attention && DATA.attention.heads[row.layer + "," + row.head];
    if (!att) {
      box.appendChild(el("p", { class: "empty", text: "no attention recorded for this head in this run" }));
      return;
    }
    const tokens = DATA.attention.tokens;
    const canvas = el("canvas", { id: "attention-map" });
    box.appendChild(canvas);
    const labels = tokens.map((t, i) => [i, tokenText(t).slice(0, 12)]);
    heatmap(canvas, att, {
      width: Math.min(560, 18 * tokens.length),
      height: Math.min(560, 18 * tokens.length),
      fixed: [0, 1],
      xLabel: "key token",
      yLabel: "query token",
      xTicks: labels,
      yTicks: labels,
      rotateX: true,
      margin: { l: 100, b: 110 },
      masked: (r, c) => c > r,
      barLabel: "attention probability",
      hover: (r, c, v) =>
        c > r
          ? [["masked: key " + c + " is in the future of query " + r]]
          : [
              ["query " + r + " ", [tokenText(tokens[r])]],
              ["key " + c + " ", [tokenText(tokens[c])]],
              ["offset " + (r - c)],
              ["attention ", [fmt(v)]],
            ],
    });
  }

  // ---- page ----------------------------------------------------------------------------------
  function init() {
    if (!finite(DATA.usage.v).some((v) => v > 0)) {
      // a head scan profiles queries and keys only
      document.querySelector("#usage-tensor option[value=v]").remove();
    }
    const layerSelect = document.getElementById("head-layer");
    DATA.usage.q.forEach((_, i) => layerSelect.appendChild(el("option", { value: i, text: "layer " + i })));
    for (const id of ["usage-tensor", "usage-scale", "head-layer"]) document.getElementById(id).addEventListener("change", drawUsage);
    drawUsage();
    if (HEADS.length) {
      buildHeadTable();
      selectHead(HEADS[0]);
    }
    document.body.dataset.ready = "true";
  }
  init();
})();
