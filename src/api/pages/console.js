// The moderator console: conferences, a live roster, and the control API's actions.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = confabApi.el;
  const status = (text, error) => { $("status").textContent = text; $("status").className = error ? "status error" : "status"; };
  // recording: true, false, or null while not known; recordingSeq counts what changed it, so
  // that a slow read of the list does not undo an event that came after it was asked.
  const view = { cid: null, locked: false, dominant: null, abort: null, names: {}, recording: null, recordingSeq: 0 };
  window.confabConsole = view;

  async function act(what, fn) {
    try { await fn(); status(what + ": done."); } catch (e) { status(what + " failed: " + e.message, true); }
    refresh();
    loadConferences();
  }

  async function loadConferences() {
    try {
      const data = await confabApi.call("GET", "/v1/conferences");
      const body = $("conferences");
      body.replaceChildren();
      for (const c of data.conferences || []) {
        const open = el("button", { type: "button", class: "secondary", "data-open": c.id, onclick: () => select(c.id) }, "Open");
        body.append(el("tr", {}, el("td", {}, c.id), el("td", {}, c.name || ""), el("td", {}, c.locked ? "yes" : "no"), el("td", {}, open)));
      }
    } catch (e) { status("Cannot list conferences: " + e.message, true); }
  }

  function select(cid) {
    view.cid = cid;
    view.dominant = null;
    $("cid").textContent = cid;
    $("conference").classList.remove("hidden");
    showRecording(null);
    loadRecording(cid);
    if (view.abort) view.abort.abort();
    view.abort = new AbortController();
    confabApi.events(`/v1/conferences/${encodeURIComponent(cid)}/events`, onEvent, view.abort.signal);
    refresh();
  }

  function onEvent(name, data) {
    if (name === "conference.dominant_speaker") view.dominant = data.participant;
    if (name === "conference.ended") status("The conference has ended.");
    // The API tells both on the conference's event stream (recording.stopped once the files
    // are closed, also when the conference ends).
    if (name === "recording.started" || name === "recording.stopped") {
      view.recordingSeq++;
      showRecording(name === "recording.started");
    }
    refresh();
  }

  // The indicator and the button that starts or stops the recording.
  function showRecording(on) {
    view.recording = on;
    const shown = $("recording");
    shown.dataset.recording = on === null ? "unknown" : String(on);
    shown.className = on === null ? "recording-unknown" : on ? "recording-on" : "recording-off";
    shown.textContent = on === null ? "Recording: not known" : on ? "Being recorded" : "Not recorded";
    $("record").textContent = on ? "Stop recording" : "Start recording";
    $("record").setAttribute("aria-pressed", String(on === true));
  }

  // Whether the conference is being recorded now: its newest recording is still being written.
  async function loadRecording(cid) {
    const seq = view.recordingSeq;
    try {
      const data = await confabApi.call("GET", `/v1/recordings?conference=${encodeURIComponent(cid)}&limit=1`);
      const newest = (data.recordings || [])[0];
      if (view.cid === cid && view.recordingSeq === seq) showRecording(!!newest && newest.state === "recording");
    } catch (e) {
      if (view.cid === cid) status("Cannot read the recording state: " + e.message, true);
    }
  }

  let pending = false;
  function refresh() {
    if (pending || !view.cid) return;
    pending = true;
    setTimeout(async () => {
      pending = false;
      try {
        const data = await confabApi.call("GET", `/v1/conferences/${encodeURIComponent(view.cid)}`);
        render(data.conference || {}, data.participants || []);
      } catch (e) { status("Cannot read the conference: " + e.message, true); }
    }, 150);
  }

  function render(conf, list) {
    view.locked = !!conf.locked;
    $("lock").textContent = view.locked ? "Unlock" : "Lock";
    $("lock").setAttribute("aria-pressed", String(view.locked));
    const body = $("roster");
    body.replaceChildren();
    for (const p of list) {
      view.names[p.id] = p.display_name || p.id;
      const live = p.state !== "disconnected";
      const path = `/v1/conferences/${encodeURIComponent(view.cid)}/participants/${p.id}`;
      const who = p.display_name || p.id;
      const actions = el("td", {});
      if (live) {
        actions.append(
          el("button", { type: "button", class: "secondary", "data-action": p.muted ? "unmute" : "mute", "aria-label": (p.muted ? "Unmute " : "Mute ") + who,
            onclick: () => act(p.muted ? "Unmute" : "Mute", () => confabApi.call("POST", `${path}/${p.muted ? "unmute" : "mute"}`)) }, p.muted ? "Unmute" : "Mute"),
          el("button", { type: "button", class: "secondary", "data-action": p.deaf ? "undeaf" : "deaf", "aria-label": (p.deaf ? "Undeafen " : "Deafen ") + who,
            onclick: () => act(p.deaf ? "Undeafen" : "Deafen", () => confabApi.call("POST", `${path}/${p.deaf ? "undeaf" : "deaf"}`)) }, p.deaf ? "Undeaf" : "Deaf"),
          el("button", { type: "button", class: "secondary", "data-action": p.role === "leader" ? "demote" : "promote",
            "aria-label": (p.role === "leader" ? "Make an attendee: " : "Make a leader: ") + who,
            onclick: () => act(p.role === "leader" ? "Demote" : "Promote",
              () => confabApi.call("POST", `${path}/role`, { role: p.role === "leader" ? "attendee" : "leader" })) },
            p.role === "leader" ? "Demote" : "Promote"),
          el("button", { type: "button", class: "danger", "data-action": "eject", "aria-label": "Eject " + who,
            onclick: () => act("Eject", () => confabApi.call("DELETE", path)) }, "Eject"));
      }
      // Gains in 3 dB steps (-30 to +12): how loud the others hear this participant (in) and
      // how loud it hears them (out). Buttons, so that a re-render never takes a half-typed value.
      const gains = el("td", { class: "gains" });
      if (live) {
        for (const [key, field, label] of [["input_db", "input_gain_db", "In"], ["output_db", "output_gain_db", "Out"]]) {
          const db = Number(p[field]) || 0;
          const step = (by) => {
            const next = Math.max(-30, Math.min(12, Math.round((db + by) / 3) * 3));
            act(`${label} gain ${next} dB`, () => confabApi.call("POST", `${path}/gain`, { [key]: next }));
          };
          const down = el("button", { type: "button", class: "secondary", "data-gain-step": key + "-down",
            "aria-label": `${label} gain down for ${who}`, onclick: () => step(-3) }, "−");
          const up = el("button", { type: "button", class: "secondary", "data-gain-step": key + "-up",
            "aria-label": `${label} gain up for ${who}`, onclick: () => step(3) }, "+");
          down.disabled = db <= -30;
          up.disabled = db >= 12;
          gains.append(el("span", { class: "gain", "data-gain": key }, `${label} ${db > 0 ? "+" : ""}${db} dB `, down, up));
        }
      }
      const state = p.state + (p.disconnect_reason ? ` (${p.disconnect_reason})` : "");
      const audio = [p.speaking ? "speaking" : "", p.muted ? "muted" : "", p.deaf ? "deaf" : "", p.on_hold ? "on hold" : ""].filter(Boolean).join(", ") || "—";
      const cls = [p.speaking ? "speaking" : "", view.dominant === p.id ? "dominant" : ""].join(" ");
      body.append(el("tr", { "data-participant": p.id, "data-name": who },
        el("td", { class: cls }, who + (p.role === "leader" ? " ★" : "")),
        el("td", { class: "state-" + p.state }, state), el("td", {}, audio), gains, actions));
    }
    $("dominant").textContent = view.dominant ? (view.names[view.dominant] || view.dominant) : "—";
  }

  $("lock").addEventListener("click", () => act(view.locked ? "Unlock" : "Lock",
    () => confabApi.call("POST", `/v1/conferences/${encodeURIComponent(view.cid)}/${view.locked ? "unlock" : "lock"}`)));
  $("record").addEventListener("click", async () => {
    const cid = view.cid;
    const on = view.recording === true;
    const what = on ? "Stop recording" : "Start recording";
    $("record").disabled = true;
    try {
      await confabApi.call(on ? "DELETE" : "POST", `/v1/conferences/${encodeURIComponent(cid)}/recording`);
      if (view.cid === cid) {
        view.recordingSeq++;
        showRecording(!on);
      }
      status(what + ": done.");
    } catch (e) {
      // Shown to the operator; the state is read again (someone else may have started or
      // stopped it: a 409).
      status(what + " failed: " + e.message, true);
      loadRecording(cid);
    } finally {
      $("record").disabled = false;
    }
  });
  $("mute-all").addEventListener("click", () => act("Mute all",
    () => confabApi.call("POST", `/v1/conferences/${encodeURIComponent(view.cid)}/mute-all`)));
  $("end").addEventListener("click", () => {
    if (confirm("End the conference for everyone?")) act("End", () => confabApi.call("DELETE", `/v1/conferences/${encodeURIComponent(view.cid)}`));
  });
  $("dial-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { dial: $("dial-uri").value.trim() };
    const name = $("dial-name").value.trim();
    if (name) body.display_name = name;
    act("Dial", () => confabApi.call("POST", `/v1/conferences/${encodeURIComponent(view.cid)}/participants`, body));
  });
  $("save-token").addEventListener("click", () => {
    sessionStorage.setItem("confab-api-token", $("token").value);
    loadConferences();
  });
  loadConferences();
  setInterval(loadConferences, 10000);
  const wanted = new URLSearchParams(location.search).get("conference");
  if (wanted) select(wanted);
})();
