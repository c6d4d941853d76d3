// The volume chart: one SVG bar per histogram bucket, stacked by priority (most severe at the
// bottom). Each bar is a <g class="bucket"> carrying the API's numbers as data attributes
// (data-start, data-total, data-by-priority), so what is drawn can be checked against the API.
// A click zooms into one bucket, a drag into the buckets it spans.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
export const PRIORITY_NAMES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const HEIGHT = 130;
const LEFT = 44;
const BOTTOM = 20;
const TOP = 6;

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

// The inclusive end of a bucket: the API's until includes its instant, so stop 1 µs short.
function lastInstant(startIso, stepSeconds) {
  const end = new Date(Date.parse(startIso) + stepSeconds * 1000 - 1);
  return end.toISOString().replace("Z", "999Z");
}

function tickLabel(date, spanMs) {
  const pad = (n) => String(n).padStart(2, "0");
  const hm = pad(date.getHours()) + ":" + pad(date.getMinutes());
  if (spanMs <= 86400e3) return spanMs <= 600e3 ? hm + ":" + pad(date.getSeconds()) : hm;
  return (date.getMonth() + 1) + "-" + pad(date.getDate()) + (spanMs <= 7 * 86400e3 ? " " + hm : "");
}

function describe(bucket) {
  const parts = Object.entries(bucket.by_priority || {})
    .map(([p, n]) => (PRIORITY_NAMES[p] || p) + " " + n);
  return new Date(bucket.start).toLocaleString() + ": " + bucket.total + (parts.length ? " (" + parts.join(", ") + ")" : "");
}

// Draws `histogram` into `box` (an element); onZoom(since, until) is called with ISO instants.
export function drawChart(box, histogram, onZoom) {
  const buckets = histogram.buckets || [];
  const step = histogram.step_seconds;
  const width = Math.max(box.clientWidth || 0, 320);
  const plotW = width - LEFT - 4;
  const plotH = HEIGHT - TOP - BOTTOM;
  const svg = el("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
                          "data-step-seconds": step, "aria-label": "events per " + step + " s by priority" });
  const max = buckets.reduce((m, b) => Math.max(m, b.total), 0);
  el("line", { x1: LEFT, x2: LEFT + plotW, y1: TOP + plotH, y2: TOP + plotH, class: "axis" }, svg);
  const yLabel = el("text", { x: LEFT - 6, y: TOP + 9, class: "axis-label", "text-anchor": "end" }, svg);
  yLabel.textContent = String(max);
  const zero = el("text", { x: LEFT - 6, y: TOP + plotH, class: "axis-label", "text-anchor": "end" }, svg);
  zero.textContent = "0";
  if (!buckets.length) {
    const t = el("text", { x: LEFT + plotW / 2, y: TOP + plotH / 2, class: "axis-label", "text-anchor": "middle" }, svg);
    t.textContent = "no events in this range";
    box.replaceChildren(svg);
    return;
  }
  const barW = plotW / buckets.length;
  const scale = max ? plotH / max : 0;
  const bars = el("g", { class: "bars" }, svg);
  buckets.forEach((b, i) => {
    const g = el("g", { class: "bucket", "data-index": i, "data-start": b.start, "data-total": b.total,
                        "data-by-priority": JSON.stringify(b.by_priority || {}) }, bars);
    el("title", {}, g).textContent = describe(b);
    // A full-height hit area, so empty buckets can be clicked too.
    el("rect", { x: LEFT + i * barW, y: TOP, width: barW, height: plotH, class: "hit" }, g);
    let y = TOP + plotH;
    for (let p = 0; p <= 7; p++) {
      const n = (b.by_priority || {})[String(p)] || 0;
      if (!n) continue;
      const h = n * scale;
      y -= h;
      el("rect", { x: LEFT + i * barW + (barW > 3 ? 0.5 : 0), y, width: Math.max(barW - (barW > 3 ? 1 : 0), 0.5),
                   height: h, class: "seg p" + p, "data-priority": p, "data-count": n }, g);
    }
  });
  const spanMs = buckets.length * step * 1000;
  const ticks = Math.min(6, buckets.length);
  for (let t = 0; t < ticks; t++) {
    const i = Math.round(t * (buckets.length - 1) / Math.max(ticks - 1, 1));
    // The outer labels align to the plot's edges, so none is cut off.
    const anchor = ticks > 1 && t === 0 ? "start" : ticks > 1 && t === ticks - 1 ? "end" : "middle";
    const x = anchor === "start" ? LEFT + i * barW : anchor === "end" ? LEFT + (i + 1) * barW : LEFT + i * barW + barW / 2;
    const label = el("text", { x, y: HEIGHT - 5, class: "axis-label", "text-anchor": anchor }, svg);
    label.textContent = tickLabel(new Date(buckets[i].start), spanMs);
  }
  const selection = el("rect", { y: TOP, height: plotH, class: "selection", visibility: "hidden" }, svg);
  const indexAt = (ev) => {
    const x = ev.clientX - svg.getBoundingClientRect().left - LEFT;
    return Math.min(Math.max(Math.floor(x / barW), 0), buckets.length - 1);
  };
  let from = null;
  const show = (a, b) => {
    const lo = Math.min(a, b);
    selection.setAttribute("x", LEFT + lo * barW);
    selection.setAttribute("width", (Math.abs(b - a) + 1) * barW);
    selection.setAttribute("visibility", "visible");
  };
  svg.addEventListener("pointerdown", (ev) => {
    from = indexAt(ev);
    svg.setPointerCapture(ev.pointerId);
    show(from, from);
  });
  svg.addEventListener("pointermove", (ev) => { if (from !== null) show(from, indexAt(ev)); });
  svg.addEventListener("pointerup", (ev) => {
    if (from === null) return;
    const to = indexAt(ev);
    const lo = Math.min(from, to);
    const hi = Math.max(from, to);
    from = null;
    selection.setAttribute("visibility", "hidden");
    onZoom(buckets[lo].start, lastInstant(buckets[hi].start, step));
  });
  box.replaceChildren(svg);
}

// The legend: one swatch per priority.
export function drawLegend(box) {
  box.replaceChildren(...PRIORITY_NAMES.map((name, p) => {
    const item = document.createElement("span");
    item.className = "legend-item";
    const swatch = document.createElement("i");
    swatch.className = "swatch p" + p;
    item.append(swatch, name);
    return item;
  }));
}
