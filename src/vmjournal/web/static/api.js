// The console's side of the HTTP API: the API key, JSON requests with readable errors, and
// Server-Sent Events read through fetch (EventSource cannot send the key in a header).
"use strict";

// The page may be served under a prefix (a reverse proxy's /vmjournal/ui/): API paths hang off it.
export const BASE = location.pathname.replace(/\/ui(\/.*)?$/, "");
const KEY_ITEM = "vmjournal-api-key";

let apiKey = sessionStorage.getItem(KEY_ITEM) || "";
let onKeyNeeded = () => {};

export function setKey(key) {
  apiKey = key;
  sessionStorage.setItem(KEY_ITEM, key);
}

export function whenKeyNeeded(callback) {
  onKeyNeeded = callback;
}

export function askForKey() {
  onKeyNeeded();
}

export function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey) h["Authorization"] = "Bearer " + apiKey;
  return h;
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code || "";
  }

  // A route this service does not have (an older service): its part of the page hides.
  get routeMissing() {
    return this.status === 404 && this.code === "not_found" && this.message === "Not Found";
  }
}

export async function errorOf(r) {
  let msg = r.status + " " + r.statusText;
  let code = "";
  try {
    const body = await r.json();
    code = typeof body.error === "string" ? body.error : "";
    msg = (body.error && body.error.message) || body.message || body.detail || msg;
    if (typeof msg !== "string") msg = JSON.stringify(msg);
  } catch (e) { /* not JSON */ }
  return new ApiError(r.status, msg, code);
}

// fetch against the API; a 401/403 asks for a key, any other failure throws an ApiError.
export async function request(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(Object.assign({ Accept: "application/json" }, opts.headers || {}));
  const r = await fetch(BASE + path, opts);
  if (r.status === 401 || r.status === 403) {
    askForKey();
    throw new ApiError(r.status, "an API key is needed");
  }
  if (!r.ok) throw await errorOf(r);
  return r;
}

export async function getJSON(path) {
  return (await request(path)).json();
}

export function asList(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const k of keys) if (body && Array.isArray(body[k])) return body[k];
  return [];
}

// The target of a `Link: <...>; rel="next"` header, as a path under BASE; null on the last page.
export function nextLink(r) {
  const link = r.headers.get("Link") || "";
  for (const part of link.split(",")) {
    const m = part.match(/<([^>]*)>\s*;\s*rel="?next"?/);
    if (m) {
      const url = new URL(m[1], location.origin);
      return url.pathname.slice(url.pathname.startsWith(BASE) ? BASE.length : 0) + url.search;
    }
  }
  return null;
}

// Reads an event stream until it ends or the signal aborts; onMessage gets {event, data, id}.
export async function readSSE(response, onMessage, signal) {
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
