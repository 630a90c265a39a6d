// The join page: WHIP with the microphone, then the live roster from the conference's events.
// The microphone is processed (echo cancellation, noise suppression, automatic gain) unless the
// participant turns that off; the device can be changed during the call (the sender's track is
// replaced, the call goes on); a meter shows the level, and "you are muted" shows while the
// participant speaks muted, muted by themselves or by a moderator.
//
// The browser is given the bridge's STUN/TURN servers (`webrtc.ice_servers`). When the
// connection fails (a network change, the bridge letting the session go), the page joins again
// under the same name with a new WHIP session, a few times with growing pauses, and tears the
// old session down; never after the participant left, was ejected or the conference ended.
// The roster and events are read with the session's roster token, not the operator's API
// token, which a participant does not have.
"use strict";
(() => {
  const cid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const $ = (id) => document.getElementById(id);
  const status = (text, error) => { $("status").textContent = text; $("status").className = error ? "status error" : "status"; };
  $("cid").textContent = cid;
  const call = {
    pc: null, stream: null, sender: null, location: null, participant: null, abort: null, speaking: new Set(),
    muted: false, mutedBy: null, meter: null,
    // The WHIP session's roster token; the STUN/TURN servers; why the call is over (null while
    // it is not: "left", "ejected", "ended", "failed"), and the reconnection's progress.
    roster: null, iceServers: [], over: null, reconnecting: false, attempts: 0, connectedAt: 0, sessions: 0,
    // Leader rights (the bridge's word, from /moderation) and the conference's lock.
    leader: false, locked: false,
  };
  window.confab = call; // for tests and the curious: getStats() lives on call.pc

  // Above this level (RMS of the samples, full scale 1) the participant is taken to be talking.
  const TALKING = 0.02;
  // How long "you are muted" stays after the last loud moment, not to blink between words.
  const NOTICE_MS = 1500;
  // Pauses before each attempt to join again; after the last one the page gives up.
  const RETRY_MS = [1000, 2000, 4000, 8000, 15000];
  // "disconnected" may heal by itself (a short loss); longer than this, the page joins again.
  const DISCONNECTED_MS = 4000;
  // Connected this long, a later failure starts with a fresh set of attempts.
  const STABLE_MS = 30000;
  // WHIP answers that another attempt would only repeat (wrong passcode, locked, full, …).
  const FINAL = [400, 401, 403, 409, 415, 422];

  // The constraints asked of the microphone: the chosen device and whether to process it.
  function constraints() {
    const processing = $("processing").checked;
    const audio = { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing };
    const device = $("microphone").value;
    if (device) audio.deviceId = { exact: device };
    return { audio };
  }

  // Lists the microphones; their names are known only once the page may use one.
  async function listMicrophones() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const select = $("microphone");
    const current = select.value; // the participant's choice ("" for the default) is kept
    const inputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
    const options = [confabApi.el("option", { value: "" }, "Default microphone")];
    inputs.forEach((d, i) => {
      if (!d.deviceId || d.deviceId === "default") return;
      options.push(confabApi.el("option", { value: d.deviceId }, d.label || `Microphone ${i + 1}`));
    });
    select.replaceChildren(...options);
    if (current && [...select.options].some((o) => o.value === current)) select.value = current;
  }

  // The level meter, fed by a copy of the track so that it still hears the participant while
  // the sent track is muted.
  function startMeter(track) {
    stopMeter();
    const ctx = new AudioContext();
    const copy = track.clone();
    copy.enabled = true;
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(new MediaStream([copy])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let lastLoud = 0;
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      $("level").value = Math.min(1, rms * 4);
      $("level").textContent = rms >= TALKING ? "talking" : "silent";
      const now = performance.now();
      if (rms >= TALKING) lastLoud = now;
      showMutedNotice(call.muted && now - lastLoud < NOTICE_MS);
    }, 100);
    call.meter = { ctx, copy, timer };
  }

  function stopMeter() {
    if (!call.meter) return;
    clearInterval(call.meter.timer);
    call.meter.copy.stop();
    call.meter.ctx.close().catch(() => {});
    call.meter = null;
    $("level").value = 0;
  }

  let noticeUntil = 0; // the bridge's "speaking while muted", shown for NOTICE_MS
  function showMutedNotice(local) {
    const on = call.muted && (local || performance.now() < noticeUntil);
    $("muted-notice").classList.toggle("hidden", !on);
  }

  async function gathered(pc) {
    if (pc.iceGatheringState === "complete") return;
    await new Promise((done) => {
      const t = setTimeout(done, 3000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); done(); }
      });
    });
  }

  // The bridge's STUN/TURN servers (none unless configured; the bridge is ICE-lite).
  async function loadIceServers() {
    try {
      const r = await fetch("/pages/ice-servers.json", { cache: "no-store" });
      const data = r.ok ? await r.json() : null;
      if (data && Array.isArray(data.iceServers)) return data.iceServers;
    } catch (_) { /* none then */ }
    return [];
  }

  // One WHIP session: a peer connection sending the microphone's track, the offer, the answer,
  // then the roster and events with the session's roster token.
  async function connect() {
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    call.pc = pc;
    try {
      const transceiver = pc.addTransceiver(call.stream.getAudioTracks()[0], { direction: "sendrecv", streams: [call.stream] });
      call.sender = transceiver.sender;
      pc.ontrack = (e) => { $("remote").srcObject = e.streams[0] || new MediaStream([e.track]); };
      watch(pc);
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const name = $("name").value.trim();
      const headers = { "Content-Type": "application/sdp" };
      const passcode = $("passcode").value.trim();
      if (passcode) headers["Authorization"] = "Bearer " + passcode;
      const r = await fetch(`/v1/conferences/${encodeURIComponent(cid)}/whip?name=${encodeURIComponent(name)}`, {
        method: "POST", headers, body: pc.localDescription.sdp,
      });
      if (r.status !== 201) {
        let msg = r.status + " " + r.statusText;
        try { const e = await r.json(); msg = e.error.message; } catch (_) { /* not JSON */ }
        throw Object.assign(new Error(msg), { status: r.status });
      }
      call.location = r.headers.get("Location");
      call.participant = r.headers.get("Confab-Participant");
      call.roster = r.headers.get("Confab-Roster-Token");
      call.sessions += 1;
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      // The bridge closing DTLS (it let this session go) fails the call at once, without
      // waiting for ICE to notice.
      const dtls = call.sender.transport;
      if (dtls) {
        dtls.addEventListener("statechange", () => {
          if (pc === call.pc && !call.over && (dtls.state === "closed" || dtls.state === "failed")) reconnect();
        });
      }
    } catch (e) {
      pc.close();
      throw e;
    }
    if (call.abort) call.abort.abort();
    call.abort = new AbortController();
    call.speaking.clear();
    loadModeration();
    confabApi.events(`/v1/conferences/${encodeURIComponent(cid)}/events`, onEvent, call.abort.signal, call.roster);
  }

  // Joins again when this peer connection fails, or stays disconnected for a while.
  function watch(pc) {
    let timer = null;
    const states = () => [pc.connectionState, pc.iceConnectionState];
    const check = () => {
      if (pc !== call.pc || call.over) { clearTimeout(timer); return; }
      if (states().includes("failed")) { clearTimeout(timer); reconnect(); return; }
      if (states().includes("disconnected")) {
        if (!timer) {
          timer = setTimeout(() => {
            timer = null;
            if (pc === call.pc && states().includes("disconnected")) reconnect();
          }, DISCONNECTED_MS);
        }
        return;
      }
      clearTimeout(timer);
      timer = null;
      if (pc.connectionState === "connected") { call.connectedAt = performance.now(); status("Connected."); }
    };
    pc.addEventListener("connectionstatechange", check);
    pc.addEventListener("iceconnectionstatechange", check);
  }

  const pause = (ms) => new Promise((done) => setTimeout(done, ms));

  // A new WHIP session under the same name in place of one that failed: the old one is torn
  // down (DELETE, if the bridge can be reached), then a few attempts with growing pauses. The
  // first pause also lets an eject or the conference's end, which come by the event stream,
  // arrive before anything is tried.
  async function reconnect() {
    if (call.over || call.reconnecting) return;
    call.reconnecting = true;
    status("Reconnecting…");
    if (performance.now() - call.connectedAt > STABLE_MS) call.attempts = 0;
    if (call.pc) call.pc.close();
    if (call.location) fetch(call.location, { method: "DELETE" }).catch(() => {});
    call.location = null;
    try {
      while (!call.over) {
        if (call.attempts >= RETRY_MS.length) {
          giveUp("Could not reconnect. Join again to retry.");
          return;
        }
        await pause(RETRY_MS[call.attempts++]);
        if (call.over) return;
        status("Reconnecting…");
        try {
          await connect();
          // A moderator's mute was the old participant's; the microphone stays off here until
          // the participant turns it on.
          if (call.muted) call.mutedBy = "self";
          status("Connecting…");
          return;
        } catch (e) {
          if (FINAL.includes(e.status)) { giveUp("Could not reconnect: " + e.message); return; }
        }
      }
    } finally {
      call.reconnecting = false;
    }
  }

  // The call is over for good: the form comes back for a new join.
  function giveUp(text) {
    hangUp("failed");
    status(text, true);
    $("in-call").classList.add("hidden");
    $("join-form").classList.remove("hidden");
    $("join-actions").classList.remove("hidden");
    $("join").disabled = false;
  }

  async function join(ev) {
    ev.preventDefault();
    $("join").disabled = true;
    call.over = null;
    call.attempts = 0;
    status("Asking for the microphone…");
    try {
      call.stream = await navigator.mediaDevices.getUserMedia(constraints());
      startMeter(call.stream.getAudioTracks()[0]);
      listMicrophones().catch(() => {});
      call.iceServers = await loadIceServers();
      status("Joining…");
      await connect();
      $("join-form").classList.add("hidden");
      $("join-actions").classList.add("hidden");
      $("in-call").classList.remove("hidden");
      status("Connecting…");
    } catch (e) {
      status("Could not join: " + e.message, true);
      hangUp("failed");
      $("join").disabled = false;
    }
  }

  // Another microphone, or processing turned on or off: a new track, sent in place of the old
  // one without a new offer.
  async function changeMicrophone() {
    if (!call.stream) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints());
      const track = stream.getAudioTracks()[0];
      track.enabled = !call.muted;
      if (call.sender) await call.sender.replaceTrack(track);
      for (const t of call.stream.getTracks()) t.stop();
      call.stream = stream;
      startMeter(track);
      await listMicrophones();
    } catch (e) {
      status("Could not change the microphone: " + e.message, true);
    }
  }

  function onEvent(name, data) {
    if (name === "participant.speaking") {
      if (data.speaking) call.speaking.add(data.participant); else call.speaking.delete(data.participant);
    }
    if (name === "participant.speaking_while_muted" && data.participant === call.participant) {
      noticeUntil = performance.now() + NOTICE_MS;
      showMutedNotice(false);
    }
    // A moderator's mute turns the microphone off here too (and shows it); their unmute turns it
    // back on only if it was theirs, never one the participant chose. The events come in order,
    // unlike roster fetches, so they alone decide.
    if (name === "participant.muted" && data.participant === call.participant) {
      if (data.muted && !call.muted) setMuted(true, "server");
      if (!data.muted && call.muted && call.mutedBy === "server") setMuted(false, null);
    }
    // The bridge let this participant go: for good when ejected or the conference ended,
    // otherwise (its ICE or DTLS failed, its session was deleted) the page joins again.
    if (name === "participant.state" && data.participant === call.participant && data.state === "disconnected") {
      if (data.disconnect_reason === "ejected") return finish("You were removed from the conference.", "ejected");
      if (data.disconnect_reason === "conference-ended") return finish("The conference has ended.", "ended");
      reconnect();
    }
    if (name === "conference.ended") return finish("The conference has ended.", "ended");
    if ((name === "participant.role" && data.participant === call.participant) || name === "conference.locked") {
      return loadModeration();
    }
    refresh();
  }

  function finish(text, why) {
    hangUp(why);
    $("in-call").classList.add("hidden");
    status(text);
  }

  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    setTimeout(async () => {
      pending = false;
      try {
        if (!call.roster) return;
        const data = await confabApi.call("GET", `/v1/conferences/${encodeURIComponent(cid)}/participants`, null, call.roster);
        render(data.participants || []);
      } catch (_) { /* no roster for now (the session is being replaced); the call goes on */ }
    }, 150);
  }

  // Leader rights: what this session may do, asked of the bridge with the roster token (the
  // bridge decides: an attendee's moderation is refused). A role change or a lock comes by the
  // event stream and is asked again.
  const moderationPath = () => `/v1/conferences/${encodeURIComponent(cid)}/moderation`;
  async function loadModeration() {
    if (!call.roster) return;
    try {
      const m = await confabApi.call("GET", moderationPath(), null, call.roster);
      call.leader = m.role === "leader";
      call.locked = !!m.locked;
    } catch (_) { call.leader = false; }
    $("leader-controls").classList.toggle("hidden", !call.leader);
    $("roster-actions").classList.toggle("hidden", !call.leader);
    $("lock").textContent = call.locked ? "Unlock conference" : "Lock conference";
    $("lock").setAttribute("aria-pressed", String(call.locked));
    refresh();
  }

  async function moderate(what, body) {
    try {
      await confabApi.call("POST", moderationPath(), body, call.roster);
      status(what + ": done.");
    } catch (e) { status(what + " failed: " + e.message, true); }
    loadModeration();
  }

  function render(list) {
    const body = $("roster");
    body.replaceChildren();
    for (const p of list) {
      if (p.state === "disconnected") continue;
      const me = p.id === call.participant;
      const speaking = p.speaking || call.speaking.has(p.id);
      const name = confabApi.el("td", { class: speaking ? "speaking" : "" }, (p.display_name || p.id) + (me ? " (you)" : ""));
      const audio = [speaking ? "speaking" : "", p.muted ? "muted" : ""].filter(Boolean).join(", ") || "—";
      const row = confabApi.el("tr", { "data-participant": p.id },
        name, confabApi.el("td", { class: "state-" + p.state }, p.state), confabApi.el("td", {}, audio));
      if (call.leader) {
        const actions = confabApi.el("td", {});
        const who = p.display_name || p.id;
        if (!me) {
          actions.append(
            confabApi.el("button", { type: "button", class: "secondary", "data-action": p.muted ? "unmute" : "mute", "aria-label": (p.muted ? "Unmute " : "Mute ") + who,
              onclick: () => moderate(p.muted ? "Unmute" : "Mute", { action: p.muted ? "unmute" : "mute", participant: p.id }) }, p.muted ? "Unmute" : "Mute"),
            confabApi.el("button", { type: "button", class: "danger", "data-action": "eject", "aria-label": "Remove " + who,
              onclick: () => { if (confirm(`Remove ${who} from the conference?`)) moderate("Remove", { action: "eject", participant: p.id }); } }, "Remove"));
        }
        row.append(actions);
      }
      body.append(row);
    }
  }

  // The page's idea of being muted: the sent track off, the button pressed; `by` is "self" or
  // "server" (a moderator).
  function setMuted(muted, by) {
    call.muted = muted;
    call.mutedBy = muted ? by : null;
    if (call.stream) for (const t of call.stream.getAudioTracks()) t.enabled = !muted;
    $("mute").setAttribute("aria-pressed", String(muted));
    $("mute").textContent = muted ? "Unmute me" : "Mute me";
    if (!muted) showMutedNotice(false);
  }

  async function toggleMute() {
    const muted = !call.muted;
    setMuted(muted, "self");
    if (call.participant) {
      // The session's own roster token mutes and unmutes its own participant, leader or not.
      try {
        await confabApi.call("POST", moderationPath(), { action: muted ? "mute" : "unmute", participant: call.participant }, call.roster);
      } catch (_) { /* the microphone is off either way */ }
    }
  }

  // Ends the call here; `why` says why, and that the page must not join again by itself.
  function hangUp(why) {
    call.over = why || "left";
    if (call.abort) call.abort.abort();
    if (call.location) fetch(call.location, { method: "DELETE" }).catch(() => {});
    call.location = null;
    if (call.pc) call.pc.close();
    if (call.stream) for (const t of call.stream.getTracks()) t.stop();
    stopMeter();
    setMuted(false, null);
  }

  $("join-form").addEventListener("submit", join);
  $("mute").addEventListener("click", toggleMute);
  $("lock").addEventListener("click", () => moderate(call.locked ? "Unlock" : "Lock", { action: call.locked ? "unlock" : "lock" }));
  $("microphone").addEventListener("change", changeMicrophone);
  $("processing").addEventListener("change", changeMicrophone);
  if (navigator.mediaDevices) {
    navigator.mediaDevices.addEventListener("devicechange", () => listMicrophones().catch(() => {}));
    listMicrophones().catch(() => {});
  }
  $("leave").addEventListener("click", () => {
    hangUp("left");
    $("in-call").classList.add("hidden");
    status("You left the conference.");
  });
  window.addEventListener("pagehide", () => hangUp("left"));
})();
