// Shared by the Confab pages: API calls with the optional API token (or, on the join page, the
// WHIP session's roster token), and server-sent events read through fetch (EventSource cannot
// send an Authorization header).
"use strict";
const confabApi = {
  token() { return sessionStorage.getItem("confab-api-token") || ""; },
  headers(extra, token) {
    const h = Object.assign({}, extra || {});
    const t = token || confabApi.token();
    if (t) h["Authorization"] = "Bearer " + t;
    return h;
  },
  async call(method, path, body, token) {
    const init = { method, headers: confabApi.headers(body ? { "Content-Type": "application/json" } : {}, token) };
    if (body) init.body = JSON.stringify(body);
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) {
      const msg = data && data.error ? data.error.message : r.status + " " + r.statusText;
      throw new Error(msg);
    }
    return data;
  },
  // Calls onEvent(name, data) for each event of `path` until `signal` aborts; reconnects. With
  // a `token` (a roster token), a refusal ends it: that token will not be let in again.
  async events(path, onEvent, signal, token) {
    let lastId = null;
    while (!signal.aborted) {
      try {
        const headers = confabApi.headers(lastId ? { "Last-Event-ID": lastId } : {}, token);
        const r = await fetch(path, { headers, signal });
        if (token && (r.status === 401 || r.status === 403)) return;
        if (!r.ok || !r.body) throw new Error("events: " + r.status);
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let end;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let name = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
              else if (line.startsWith("id:")) lastId = line.slice(3).trim();
            }
            if (data) { try { onEvent(name, JSON.parse(data)); } catch (_) { /* not JSON */ } }
          }
        }
      } catch (e) {
        if (signal.aborted) return;
      }
      await new Promise((ok) => setTimeout(ok, 1000));
    }
  },
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  },
};
