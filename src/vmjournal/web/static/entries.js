// Journal entries as lines, and an entry's fields when its line is clicked (each field can be
// added to the view's matches).
"use strict";

const $ = (id) => document.getElementById(id);
// Fields the API adds to every entry; the journal's own fields are the upper-case ones.
const JOURNAL_FIELD = /^[A-Z_][A-Z0-9_]*$/;

export function lineOf(ev, showVM, onMatch) {
  const div = document.createElement("div");
  const prio = ev.priority ?? 6;
  div.className = "line p" + prio;
  div.dataset.cursor = ev.cursor || "";
  if (ev.vm) div.dataset.vm = ev.vm;
  const ts = document.createElement("span");
  ts.className = "ts";
  ts.textContent = ev.timestamp ? new Date(ev.timestamp).toLocaleString() + " " : "";
  div.appendChild(ts);
  if (showVM) {
    const vm = document.createElement("span");
    vm.className = "vm";
    vm.textContent = (ev.vm || "?") + " ";
    div.appendChild(vm);
  }
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = (ev.identifier || ev.unit || "?") + (ev.pid ? "[" + ev.pid + "]" : "") + ": ";
  const msg = document.createElement("span");
  msg.className = "msg";
  msg.textContent = ev.message ?? "";
  div.append(id, msg);
  div.addEventListener("click", () => toggleFields(div, ev, onMatch));
  return div;
}

function toggleFields(div, ev, onMatch) {
  const open = div.nextElementSibling;
  if (open && open.classList.contains("fields")) {
    open.remove();
    return;
  }
  const box = document.createElement("div");
  box.className = "fields";
  const table = document.createElement("table");
  for (const key of Object.keys(ev).sort()) {
    const value = typeof ev[key] === "string" ? ev[key] : JSON.stringify(ev[key]);
    const tr = document.createElement("tr");
    const k = document.createElement("th");
    k.textContent = key;
    const v = document.createElement("td");
    v.textContent = value;
    const act = document.createElement("td");
    if (JOURNAL_FIELD.test(key) && typeof ev[key] === "string" && !key.startsWith("__")) {
      const add = document.createElement("button");
      add.type = "button";
      add.className = "add-match";
      add.textContent = "match";
      add.title = "show only entries with " + key + "=" + value;
      add.addEventListener("click", (e) => { e.stopPropagation(); onMatch(key + "=" + value); });
      act.appendChild(add);
    }
    tr.append(k, v, act);
    table.appendChild(tr);
  }
  box.appendChild(table);
  div.after(box);
}

// Appends lines to the log box, keeping at most `max`; scrolls to the end if asked.
export function appendLines(lines, max, scroll) {
  const box = $("lines");
  box.append(...lines);
  while (max && box.childElementCount > max) box.firstElementChild.remove();
  if (scroll) box.scrollTop = box.scrollHeight;
}
