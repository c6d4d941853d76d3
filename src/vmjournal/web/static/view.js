// What the journal view shows, as a plain object, and its URL fragment (format: app.js's header).
"use strict";

export const FILTER_KEYS = ["unit", "priority", "boot", "since", "until", "grep"];
const ORDERS = ["asc", "desc"];

export function emptyView() {
  return { vm: [], unit: "", priority: "", boot: "", since: "", until: "", grep: "", match: [],
           order: "asc", limit: "", live: false };
}

export function isGlob(name) {
  return /[*?[]/.test(name);
}

// One plain VM name is that VM's journal; globs, several names or none are the fleet.
export function isFleet(view) {
  return view.vm.length !== 1 || isGlob(view.vm[0]);
}

export function parseFragment(hash) {
  const text = hash.replace(/^#/, "");
  const view = emptyView();
  if (!text) return null;
  if (!text.includes("=")) {
    // The first console's links were #NAME: that VM, tailed.
    view.vm = [decodeURIComponent(text)];
    view.live = true;
    return view;
  }
  const params = new URLSearchParams(text);
  view.vm = params.getAll("vm").flatMap(splitList);
  for (const key of FILTER_KEYS) view[key] = params.get(key) || "";
  view.match = params.getAll("match").filter((m) => m.includes("="));
  if (ORDERS.includes(params.get("order"))) view.order = params.get("order");
  if (/^[1-9][0-9]*$/.test(params.get("limit") || "")) view.limit = params.get("limit");
  view.live = params.get("live") === "1";
  return view;
}

export function formatFragment(view) {
  const params = new URLSearchParams();
  for (const vm of view.vm) params.append("vm", vm);
  for (const key of FILTER_KEYS) if (view[key]) params.set(key, view[key]);
  for (const m of view.match) params.append("match", m);
  if (view.order !== "asc") params.set("order", view.order);
  if (view.limit) params.set("limit", view.limit);
  if (view.live) params.set("live", "1");
  return "#" + params.toString();
}

// "web-1, db-*" -> ["web-1", "db-*"]
export function splitList(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

// The query string of the API for this view (without paging and mode parameters). A VM's events
// route takes the unit in its path (/vm/NAME/boot/UNIT), every other route as a parameter.
export function apiParams(view, unitInPath) {
  const params = new URLSearchParams();
  if (isFleet(view)) for (const vm of view.vm) params.append("vm", vm);
  for (const key of FILTER_KEYS) {
    if (view[key] && !(key === "unit" && unitInPath)) params.set(key, view[key]);
  }
  for (const m of view.match) params.append("match", m);
  return params;
}

// Where the events of this view are, with their parameters: /vm/NAME/boot[/UNIT] or /journal.
export function eventsQuery(view) {
  if (isFleet(view)) return { path: "/journal", params: apiParams(view, false) };
  const unit = view.unit ? "/" + encodeURIComponent(view.unit) : "";
  return { path: "/vm/" + encodeURIComponent(view.vm[0]) + "/boot" + unit, params: apiParams(view, true) };
}

export function histogramPath(view) {
  return isFleet(view) ? "/journal/histogram" : "/vm/" + encodeURIComponent(view.vm[0]) + "/histogram";
}
