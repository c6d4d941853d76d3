// vmjournal web page: the VM list (polled) and a live journal tail (Server-Sent Events via fetch).
"use strict";

const BASE = location.pathname.replace(/\/ui(\/.*)?$/, "");
const MAX_LINES = 2000;
const $ = (id) => document.getElementById(id);

let apiKey = sessionStorage.getItem("vmjournal-api-key") || "";
let current = null; // {name, controller}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey) h["Authorization"] = "Bearer " + apiKey;
  return h;
}

function needKey() {
  $("key-form").hidden = false;
  $("key-input").focus();
}

async function getJSON(path) {
  const r = await fetch(BASE + path, { headers: headers({ Accept: "application/json" }) });
  if (r.status === 401 || r.status === 403) {
    needKey();
    throw new Error("an API key is needed");
  }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try {
      const body = await r.json();
      msg = (body.error && body.error.message) || body.message || body.detail || msg;
    } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}

function asList(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const k of keys) if (body && Array.isArray(body[k])) return body[k];
  return [];
}

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
}

async function loadVMs() {
  try {
    const vms = asList(await getJSON("/vm"), "data", "vms", "items");
    const rows = $("vm-rows");
    rows.replaceChildren();
    if (!vms.length) {
      const tr = document.createElement("tr");
      cell(tr, "no VMs yet");
      tr.firstChild.colSpan = 6;
      rows.appendChild(tr);
    }
    for (const vm of vms) {
      const tr = document.createElement("tr");
      tr.dataset.name = vm.name;
      if (current && current.name === vm.name) tr.classList.add("selected");
      cell(tr, vm.name);
      cell(tr, vm.status, "status status-" + vm.status);
      if (vm.error) {
        const why = document.createElement("span");
        why.className = "error vm-error";
        why.textContent = " " + vm.error.code + ": " + vm.error.message;
        tr.lastChild.appendChild(why);
      }
      cell(tr, vm.size || "");
      cell(tr, vm.provider || "");
      cell(tr, String(vm.event_count ?? ""));
      cell(tr, when(vm.last_event_at));
      tr.addEventListener("click", () => { location.hash = encodeURIComponent(vm.name); });
      rows.appendChild(tr);
    }
    $("vm-error").hidden = true;
    $("vm-refresh").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("vm-error").textContent = "Cannot list VMs: " + e.message;
    $("vm-error").hidden = false;
  }
}

async function loadUnits(name, keep) {
  const select = $("unit");
  select.replaceChildren(new Option("all units", ""));
  if (keep) select.appendChild(new Option(keep, keep));
  select.value = keep;
  try {
    const units = asList(await getJSON("/vm/" + encodeURIComponent(name) + "/units"), "data", "units", "items");
    for (const u of units) {
      const unit = typeof u === "string" ? u : u.unit || u.name;
      if (unit && unit !== keep) select.appendChild(new Option(unit + (u.entries != null ? " (" + u.entries + ")" : ""), unit));
    }
  } catch (e) { /* the tail still works without the unit list */ }
}

function addLine(ev) {
  const box = $("lines");
  const div = document.createElement("div");
  const prio = ev.priority ?? 6;
  div.className = "line p" + prio;
  div.dataset.cursor = ev.cursor || "";
  const ts = document.createElement("span");
  ts.className = "ts";
  ts.textContent = ev.timestamp ? new Date(ev.timestamp).toLocaleString() + " " : "";
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = (ev.identifier || ev.unit || "?") + (ev.pid ? "[" + ev.pid + "]" : "") + ": ";
  const msg = document.createElement("span");
  msg.className = "msg";
  msg.textContent = ev.message ?? "";
  div.append(ts, id, msg);
  box.appendChild(div);
  while (box.childElementCount > MAX_LINES) box.firstElementChild.remove();
  if ($("autoscroll").checked) box.scrollTop = box.scrollHeight;
}

// Server-Sent Events over fetch, so the API key can travel in a header.
async function readSSE(response, onMessage, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let msg = { event: "", data: [], id: null };
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r?\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === "\r" ? 2 : 1));
      if (line === "") {
        if (msg.data.length) onMessage(msg);
        msg = { event: "", data: [], id: null };
      } else if (!line.startsWith(":")) {
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? "" : line.slice(i + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "data") msg.data.push(val);
        else if (field === "event") msg.event = val;
        else if (field === "id") msg.id = val;
      }
    }
  }
}

async function tail(name) {
  const sameVM = current && current.name === name;
  if (current) current.controller.abort();
  const unit = sameVM ? $("unit").value : "";
  const priority = $("priority").value;
  const controller = new AbortController();
  current = { name, controller };
  $("tail").hidden = false;
  $("tail-vm").textContent = name;
  $("lines").replaceChildren();
  document.querySelectorAll("#vm-rows tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.name === name));
  loadUnits(name, unit);

  const params = new URLSearchParams({ limit: "200" });
  if (priority) params.set("priority", priority);
  let path = "/vm/" + encodeURIComponent(name) + "/boot" + (unit ? "/" + encodeURIComponent(unit) : "");
  let lastId = null;
  let delay = 500;
  while (!controller.signal.aborted) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastId) h["Last-Event-ID"] = lastId;
      const r = await fetch(BASE + path + "?" + params, { headers: h, signal: controller.signal, cache: "no-store" });
      if (r.status === 401 || r.status === 403) { needKey(); $("tail-state").textContent = "API key needed"; return; }
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      $("tail-state").textContent = "loading";
      delay = 500;
      await readSSE(r, (m) => {
        if (m.id) lastId = m.id;
        if (m.event === "live") $("tail-state").textContent = "live";
        else if (m.event === "" || m.event === "message") addLine(JSON.parse(m.data.join("\n")));
      }, controller.signal);
    } catch (e) {
      if (controller.signal.aborted) return;
      $("tail-state").textContent = "reconnecting (" + e.message + ")";
    }
    // Resume after the last entry shown; no backlog again.
    params.delete("limit");
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function fromHash() {
  const name = decodeURIComponent(location.hash.slice(1));
  if (name) tail(name);
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey = $("key-input").value.trim();
  sessionStorage.setItem("vmjournal-api-key", apiKey);
  $("key-form").hidden = true;
  loadVMs();
  fromHash();
});
$("unit").addEventListener("change", () => current && tail(current.name));
$("priority").addEventListener("change", () => current && tail(current.name));
$("clear").addEventListener("click", () => $("lines").replaceChildren());
window.addEventListener("hashchange", fromHash);

loadVMs();
setInterval(loadVMs, 5000);
fromHash();
