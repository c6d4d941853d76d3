// The alerts panel: rules from GET /alerts with their state and last firing. A service without
// the alerts routes answers 404 and the panel stays hidden.
"use strict";

import { ApiError, asList, getJSON } from "./api.js";
import { emptyView } from "./view.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 10000;
const DETAILS_MAX = 50;
let onOpen = () => {};
let timer = null;

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "-";
}

export function filterSummary(rule) {
  const parts = [];
  if (rule.unit) parts.push("unit " + rule.unit);
  if (rule.priority) parts.push("priority " + rule.priority);
  if (rule.grep) parts.push("grep /" + rule.grep + "/");
  for (const m of rule.match || []) parts.push(m);
  parts.push("≥ " + rule.threshold + " in " + rule.window_seconds + " s");
  return parts.join(", ");
}

// The rule's last firing: the list may carry it; otherwise the rule's own page does.
async function lastFiring(rule) {
  if (rule.last_firing !== undefined) return rule.last_firing;
  try {
    return (await getJSON("/alerts/" + encodeURIComponent(rule.name))).last_firing || null;
  } catch (e) {
    return null;
  }
}

function row(rule, firing) {
  const tr = document.createElement("tr");
  tr.dataset.name = rule.name;
  tr.dataset.status = rule.status;
  const cells = [rule.name, rule.vm, filterSummary(rule)];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  const state = document.createElement("td");
  const badge = document.createElement("span");
  badge.className = "status alert-" + rule.status;
  badge.textContent = rule.status;
  state.appendChild(badge);
  if (rule.firing_vms && rule.firing_vms.length) state.append(" on " + rule.firing_vms.join(", "));
  const last = document.createElement("td");
  last.className = "last-firing";
  last.textContent = firing ? when(firing.created_at) + " (" + firing.vm + ")" : "never";
  tr.append(state, last);
  tr.title = "show the entries this rule matches";
  tr.addEventListener("click", () => {
    const v = emptyView();
    v.vm = [rule.vm || "*"];
    Object.assign(v, { unit: rule.unit || "", priority: rule.priority || "", grep: rule.grep || "",
                       match: rule.match || [] });
    onOpen(v);
  });
  return tr;
}

export async function loadAlerts() {
  clearTimeout(timer);
  try {
    const rules = asList(await getJSON("/alerts"), "alerts", "rules", "data");
    const firings = await Promise.all(rules.slice(0, DETAILS_MAX).map(lastFiring));
    const rows = rules.map((r, i) => row(r, firings[i] || null));
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 5;
      td.className = "muted";
      td.textContent = "no alert rules (POST /alerts or vmjournal alert create)";
      tr.appendChild(td);
      rows.push(tr);
    }
    $("alert-rows").replaceChildren(...rows);
    $("alerts").hidden = false;
    $("alert-error").hidden = true;
  } catch (e) {
    if (e instanceof ApiError && e.routeMissing) {
      $("alerts").hidden = true;
      return; // this service has no alerts: do not ask again
    }
    $("alert-error").textContent = "Cannot list alert rules: " + e.message;
    $("alert-error").hidden = false;
  }
  timer = setTimeout(loadAlerts, REFRESH_MS);
}

export function initAlerts(open) {
  onOpen = open;
  loadAlerts();
}
