// The journal view: the filter form, the volume chart, pages of entries ("load more" follows the
// Link: rel=next header) and the live tail (Server-Sent Events, resumed with Last-Event-ID).
"use strict";

import { ApiError, BASE, askForKey, asList, errorOf, getJSON, headers, nextLink, readSSE, request } from "./api.js";
import { drawChart } from "./chart.js";
import { appendLines, lineOf } from "./entries.js";
import { apiParams, emptyView, eventsQuery, formatFragment, histogramPath, isFleet, splitList } from "./view.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
const BACKLOG = 200;
const MAX_LIVE_LINES = 2000;
const CHART_REFRESH_MS = 3000;

let view = null;
let rendered = ""; // the fragment of the view on screen
let generation = 0; // bumped on every new view: answers for an older one are dropped
let controller = null;
let next = null;
let chartTimer = null;
let shown = 0;

function stale(gen) {
  return gen !== generation;
}

function setState(text) {
  $("tail-state").textContent = text;
}

// The view the form describes.
function formView() {
  const v = emptyView();
  v.vm = splitList($("f-vm").value);
  for (const key of ["unit", "priority", "boot", "since", "until", "grep"]) v[key] = $(key).value.trim();
  v.match = [...document.querySelectorAll("#matches .chip")].map((c) => c.dataset.match);
  v.order = $("order").value;
  v.live = $("live").checked;
  v.limit = view ? view.limit : "";
  return v;
}

// Navigates to a view: the fragment is the one source of truth, hashchange renders it.
export function go(v) {
  const hash = formatFragment(v);
  if (location.hash !== hash) location.hash = hash;
  else if (hash !== rendered) showView(v);
}

export function renderedFragment() {
  return rendered;
}

export function hideJournal() {
  if (controller) controller.abort();
  generation += 1;
  rendered = "";
  view = null;
  $("tail").hidden = true;
}

// The form's view; the apply button shows it again even when nothing changed (a refresh).
function apply(refresh) {
  const v = formView();
  if (refresh === true && formatFragment(v) === rendered) showView(v);
  else go(v);
}

function addMatch(m) {
  const v = formView();
  if (!v.match.includes(m)) v.match.push(m);
  go(v);
}

function chip(m) {
  const span = document.createElement("span");
  span.className = "chip";
  span.dataset.match = m;
  span.textContent = m;
  const x = document.createElement("button");
  x.type = "button";
  x.textContent = "×";
  x.title = "remove this match";
  x.addEventListener("click", () => { span.remove(); apply(false); });
  span.appendChild(x);
  return span;
}

function ensureOption(select, value, label) {
  if (value && ![...select.options].some((o) => o.value === value)) select.appendChild(new Option(label || value, value));
  select.value = value;
}

function fillForm(v) {
  $("f-vm").value = v.vm.join(" ");
  for (const key of ["unit", "since", "until", "grep"]) $(key).value = v[key];
  ensureOption($("priority"), v.priority);
  ensureOption($("boot"), v.boot);
  $("order").value = v.order;
  $("live").checked = v.live;
  $("matches").replaceChildren(...v.match.map(chip));
  $("zoom-out").hidden = !(v.since || v.until);
}

// Units and boots of the VM (or fixed choices for the fleet) as the form's suggestions.
async function loadChoices(v, gen) {
  const units = $("unit-list");
  const boot = $("boot");
  const bootOptions = [new Option("all boots", ""), new Option("0 (current)", "0"), new Option("-1 (previous)", "-1")];
  units.replaceChildren();
  if (isFleet(v)) {
    boot.replaceChildren(...bootOptions);
    ensureOption(boot, v.boot);
    return;
  }
  const name = encodeURIComponent(v.vm[0]);
  const [unitList, bootList] = await Promise.all([
    getJSON("/vm/" + name + "/units").catch(() => []),
    getJSON("/vm/" + name + "/boots").catch(() => []),
  ]);
  if (stale(gen)) return;
  for (const u of asList(unitList, "units", "data", "items")) {
    const unit = typeof u === "string" ? u : u.unit;
    if (unit) units.appendChild(new Option(unit + (u.entries != null ? " (" + u.entries + ")" : ""), unit));
  }
  const boots = asList(bootList, "boots", "data", "items");
  if (boots.length) {
    boot.replaceChildren(new Option("all boots", ""), ...boots.slice().reverse().map((b) => new Option(
      b.offset + " (" + b.boot_id.slice(0, 8) + ", " + new Date(b.first_at).toLocaleDateString() + ")", String(b.offset))));
  } else {
    boot.replaceChildren(...bootOptions);
  }
  ensureOption(boot, v.boot);
}

async function loadChart(v, gen) {
  try {
    const params = apiParams(v, false).toString();
    const query = histogramPath(v) + (params ? "?" + params : "");
    const h = await getJSON(query);
    if (stale(gen)) return;
    $("chart-box").hidden = false;
    drawChart($("chart"), h, (since, until) => go(Object.assign({}, view, { since, until, live: false })));
    // Which request the bars come from: what a reader (or a test) compares them with.
    $("chart").firstChild.dataset.query = query;
  } catch (e) {
    if (stale(gen)) return;
    // No histogram route on this service: the journal works without the chart.
    if (e instanceof ApiError && e.routeMissing) {
      $("chart-box").hidden = true;
    } else {
      $("chart-box").hidden = false;
      $("chart").textContent = "Cannot chart: " + e.message;
    }
  }
}

// While live, new entries change the chart: redraw it at most every few seconds.
function chartLater(gen) {
  if (chartTimer) return;
  chartTimer = setTimeout(() => { chartTimer = null; if (!stale(gen)) loadChart(view, gen); }, CHART_REFRESH_MS);
}

function render(events) {
  const fleet = isFleet(view);
  appendLines(events.map((ev) => lineOf(ev, fleet, addMatch)), view.live ? MAX_LIVE_LINES : 0,
              view.live && $("autoscroll").checked);
  shown += events.length;
}

async function loadPage(path, gen) {
  $("more").disabled = true;
  try {
    const r = await request(path);
    const body = await r.json();
    if (stale(gen)) return;
    render(asList(body, "events"));
    next = nextLink(r);
    setState(shown + (next ? " shown, more to load" : shown === 1 ? " entry" : " entries"));
    $("error").hidden = true;
  } catch (e) {
    if (stale(gen)) return;
    next = null;
    showError(e.message);
  }
  $("more").hidden = !next;
  $("more").disabled = false;
}

function showError(message) {
  setState("");
  $("error").textContent = message;
  $("error").hidden = false;
}

async function tail(v, gen, signal) {
  const { path, params } = eventsQuery(v);
  params.set("limit", v.limit || String(BACKLOG));
  let lastId = null;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastId) h["Last-Event-ID"] = lastId;
      const r = await fetch(BASE + path + "?" + params, { headers: h, signal, cache: "no-store" });
      if (r.status === 401 || r.status === 403) { setState("API key needed"); askForKey(); return; }
      if (!r.ok) {
        const err = await errorOf(r);
        // Bad input does not get better by retrying; an outage may.
        if (r.status < 500) { showError(err.message); return; }
        throw err;
      }
      setState("loading");
      $("error").hidden = true;
      delay = 500;
      let live = false;
      await readSSE(r, (m) => {
        if (m.id) lastId = m.id;
        if (m.event === "live") { live = true; setState("live"); }
        else if (m.event === "overflow") setState("catching up");
        else if (m.event === "" || m.event === "message") {
          render([JSON.parse(m.data.join("\n"))]);
          if (live) chartLater(gen);
        }
      }, signal);
    } catch (e) {
      if (signal.aborted) return;
      setState("reconnecting (" + e.message + ")");
    }
    if (signal.aborted) return;
    // Resume after the last entry shown: Last-Event-ID, and no backlog again.
    params.delete("limit");
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

export function showView(v) {
  if (controller) controller.abort();
  clearTimeout(chartTimer);
  chartTimer = null;
  generation += 1;
  const gen = generation;
  view = v;
  rendered = formatFragment(v);
  controller = new AbortController();
  next = null;
  shown = 0;
  $("tail").hidden = false;
  $("tail-vm").textContent = isFleet(v) ? "the fleet" + (v.vm.length ? " (" + v.vm.join(", ") + ")" : "") : v.vm[0];
  $("error").hidden = true;
  $("more").hidden = true;
  $("lines").replaceChildren();
  document.body.classList.toggle("fleet", isFleet(v));
  fillForm(v);
  loadChoices(v, gen);
  loadChart(v, gen);
  if (v.live) {
    setState("connecting");
    tail(v, gen, controller.signal);
  } else {
    const { path, params } = eventsQuery(v);
    params.set("limit", v.limit || String(PAGE));
    if (v.order !== "asc") params.set("order", v.order);
    setState("loading");
    loadPage(path + "?" + params, gen);
  }
}

export function currentView() {
  return view;
}

export function initJournal() {
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); apply(true); });
  for (const id of ["priority", "boot", "order", "live"]) $(id).addEventListener("change", () => apply(false));
  for (const id of ["f-vm", "unit", "since", "until", "grep"]) $(id).addEventListener("change", () => apply(false));
  $("match-input").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const m = e.target.value.trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(m)) { showError("A match is FIELD=VALUE, as journalctl takes it"); return; }
    e.target.value = "";
    addMatch(m);
  });
  $("more").addEventListener("click", () => { if (next) loadPage(next, generation); });
  $("zoom-out").addEventListener("click", () => go(Object.assign({}, view, { since: "", until: "" })));
  $("clear").addEventListener("click", () => { $("lines").replaceChildren(); shown = 0; });
  $("copy-link").addEventListener("click", () => {
    const url = location.href;
    if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
    $("copy-link").textContent = "link copied";
    setTimeout(() => { $("copy-link").textContent = "copy link"; }, 1500);
  });
}
