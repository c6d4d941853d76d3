// The VM list (polled, faster while a VM is changing state), the create form and delete.
"use strict";

import { asList, getJSON, request } from "./api.js";

const $ = (id) => document.getElementById(id);
const BUSY = ["pending", "provisioning", "deleting"];
let timer = null;
let selected = "";
let onOpen = () => {};

function when(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    td.appendChild(span);
  } else {
    td.textContent = text;
  }
  tr.appendChild(td);
  return td;
}

export function markSelected(name) {
  selected = name || "";
  document.querySelectorAll("#vm-rows tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.name === selected));
}

async function remove(name, button) {
  if (!confirm("Delete VM " + name + "? Its machine is deprovisioned and its journal removed.")) return;
  button.disabled = true;
  try {
    await request("/vm/" + encodeURIComponent(name), { method: "DELETE" });
    showNotice("Deleting " + name + ".", false);
  } catch (e) {
    showNotice("Cannot delete " + name + ": " + e.message, true);
  }
  loadVMs();
}

function row(vm) {
  const tr = document.createElement("tr");
  tr.dataset.name = vm.name;
  tr.dataset.status = vm.status;
  if (vm.name === selected) tr.classList.add("selected");
  cell(tr, vm.name, "vm-name");
  const status = cell(tr, vm.status, "status status-" + vm.status);
  if (vm.error) {
    const why = document.createElement("span");
    why.className = "error vm-error";
    why.textContent = " " + vm.error.code + ": " + vm.error.message;
    status.appendChild(why);
  }
  if (vm.last_ingest_error) {
    const why = document.createElement("span");
    why.className = "error vm-error";
    why.textContent = " ingest: " + vm.last_ingest_error;
    status.appendChild(why);
  }
  cell(tr, vm.step || "", "step");
  cell(tr, vm.size || "");
  cell(tr, vm.provider || "");
  cell(tr, String(vm.event_count ?? ""));
  cell(tr, when(vm.last_event_at));
  const actions = document.createElement("td");
  if (vm.status !== "deleting" && vm.status !== "deleted") {
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.textContent = "delete";
    del.addEventListener("click", (ev) => { ev.stopPropagation(); remove(vm.name, del); });
    actions.appendChild(del);
  }
  tr.appendChild(actions);
  tr.addEventListener("click", () => onOpen(vm.name));
  return tr;
}

export async function loadVMs() {
  clearTimeout(timer);
  let busy = false;
  try {
    const vms = asList(await getJSON("/vm"), "vms", "data", "items");
    const rows = $("vm-rows");
    if (!vms.length) {
      const tr = document.createElement("tr");
      cell(tr, "no VMs yet: create one above").colSpan = 8;
      rows.replaceChildren(tr);
    } else {
      rows.replaceChildren(...vms.map(row));
    }
    busy = vms.some((vm) => BUSY.includes(vm.status));
    $("vm-error").hidden = true;
    $("vm-refresh").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("vm-error").textContent = "Cannot list VMs: " + e.message;
    $("vm-error").hidden = false;
  }
  timer = setTimeout(loadVMs, busy ? 1500 : 5000);
}

function showNotice(text, isError, extra) {
  const box = $("vm-notice");
  box.className = isError ? "notice error" : "notice";
  box.replaceChildren(document.createTextNode(text));
  if (extra) box.appendChild(extra);
  box.hidden = false;
}

// An enrolled machine's answer carries its token and install command this once: show them.
function enrolled(vm) {
  const pre = document.createElement("pre");
  pre.className = "install";
  pre.textContent = vm.install_command;
  const note = document.createElement("div");
  note.textContent = "Run this as root on the machine (the token is shown only now):";
  const wrap = document.createElement("div");
  wrap.append(note, pre);
  return wrap;
}

async function create(ev) {
  ev.preventDefault();
  const name = $("new-name").value.trim();
  const size = $("new-size").value;
  const provider = $("new-provider").value;
  if (!name) return;
  const button = $("create-form").querySelector("button");
  button.disabled = true;
  try {
    const query = provider ? "?provider=" + encodeURIComponent(provider) : "";
    const r = await request("/vm/" + encodeURIComponent(name) + "/" + encodeURIComponent(size) + query, { method: "POST" });
    const vm = await r.json();
    showNotice("Created " + vm.name + " (" + vm.provider + "): " + vm.status + ".", false,
               vm.install_command ? enrolled(vm) : null);
    $("new-name").value = "";
  } catch (e) {
    showNotice("Cannot create " + name + ": " + e.message, true);
  } finally {
    button.disabled = false;
  }
  loadVMs();
}

export function initVMs(open) {
  onOpen = open;
  $("create-form").addEventListener("submit", create);
  loadVMs();
}
