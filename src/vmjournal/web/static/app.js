// vmjournal console: the VM list (create, delete, status), a journal view over one VM or the
// fleet (filters, volume chart, pages, live tail) and the alert rules. Plain ES modules, no build.
//
// The URL fragment holds the journal view, so a link opens the same view (alert webhooks send
// such links). It is a query string; every key is optional:
//
//   #vm=web-1&unit=nginx&priority=err&boot=0&since=-1h&until=...&grep=timeout
//    &match=_TRANSPORT=stdout&match=...&order=desc&limit=50&live=1
//
//   vm        a VM name: that VM's journal (/vm/NAME/boot). Globs (web-*), several vm keys (or
//             names separated by commas or spaces in one) or vm=* : the fleet (/journal).
//   unit, priority, boot, since, until, grep
//             the API's filters, passed as they are (priority err or 3 or warning..notice;
//             since/until in every form the API takes: -1h, today, ISO 8601, @UNIX ...).
//   match     FIELD=VALUE, repeatable (journalctl's matches).
//   order     desc for newest first (default asc, oldest first, as journalctl).
//   limit     entries per page (default 100), or the backlog of the live tail (default 200).
//   live=1    tail: the last entries, then new ones as they are stored; otherwise pages.
//
// An empty fragment shows no journal. The first console's #NAME still opens NAME's live tail.
"use strict";

import { setKey, whenKeyNeeded } from "./api.js";
import { initAlerts, loadAlerts } from "./alerts.js";
import { drawLegend } from "./chart.js";
import { currentView, go, hideJournal, initJournal, renderedFragment, showView } from "./journal.js";
import { emptyView, formatFragment, isFleet, parseFragment } from "./view.js";
import { initVMs, loadVMs, markSelected } from "./vms.js";

const $ = (id) => document.getElementById(id);

whenKeyNeeded(() => {
  $("key-form").hidden = false;
  $("key-input").focus();
});

function fromHash() {
  const v = parseFragment(location.hash);
  if (!v) {
    hideJournal();
    markSelected("");
    return;
  }
  const canonical = formatFragment(v);
  if (canonical === renderedFragment()) return;
  // Keys in one order, old #NAME links rewritten: the address bar shows what a link would.
  if (location.hash !== canonical) history.replaceState(null, "", canonical);
  markSelected(isFleet(v) ? "" : v.vm[0]);
  showView(v);
}

// A VM's row opens its live tail; the filters that mean the same on every VM stay.
function openVM(name) {
  const v = Object.assign(emptyView(), currentView() || {}, { vm: [name], unit: "", boot: "", live: true });
  go(v);
}

function openFleet() {
  const before = currentView();
  go(Object.assign(emptyView(), before || {}, { vm: before && isFleet(before) ? before.vm : ["*"], unit: "", boot: "" }));
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setKey($("key-input").value.trim());
  $("key-form").hidden = true;
  loadVMs();
  loadAlerts();
  const v = parseFragment(location.hash);
  if (v) showView(v);
});
$("open-fleet").addEventListener("click", openFleet);
window.addEventListener("hashchange", fromHash);

drawLegend($("legend"));
initVMs(openVM);
initAlerts(go);
initJournal();
fromHash();
