// The join page: WHIP with the microphone, then the live roster from the conference's events.
// The microphone is processed (echo cancellation, noise suppression, automatic gain) unless the
// participant turns that off; the device can be changed during the call (the sender's track is
// replaced, the call goes on); a meter shows the level, and "you are muted" shows while the
// participant speaks muted, muted by themselves or by a moderator.
"use strict";
(() => {
  const cid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const $ = (id) => document.getElementById(id);
  const status = (text, error) => { $("status").textContent = text; $("status").className = error ? "status error" : "status"; };
  $("cid").textContent = cid;
  const call = {
    pc: null, stream: null, sender: null, location: null, participant: null, abort: null, speaking: new Set(),
    muted: false, mutedBy: null, meter: null,
  };
  window.confab = call; // for tests and the curious: getStats() lives on call.pc

  // Above this level (RMS of the samples, full scale 1) the participant is taken to be talking.
  const TALKING = 0.02;
  // How long "you are muted" stays after the last loud moment, not to blink between words.
  const NOTICE_MS = 1500;

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

  async function join(ev) {
    ev.preventDefault();
    $("join").disabled = true;
    status("Asking for the microphone…");
    try {
      call.stream = await navigator.mediaDevices.getUserMedia(constraints());
      const track = call.stream.getAudioTracks()[0];
      startMeter(track);
      listMicrophones().catch(() => {});
      // The bridge is ICE-lite with a reachable address of its own: no STUN or TURN needed.
      const pc = new RTCPeerConnection({ iceServers: [] });
      call.pc = pc;
      const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [call.stream] });
      call.sender = transceiver.sender;
      pc.ontrack = (e) => { $("remote").srcObject = e.streams[0] || new MediaStream([e.track]); };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "connected") status("Connected.");
        if (pc.connectionState === "failed") status("The connection failed.", true);
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      status("Joining…");
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
        throw new Error(msg);
      }
      call.location = r.headers.get("Location");
      call.participant = r.headers.get("Confab-Participant");
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      $("join-form").classList.add("hidden");
      $("join-actions").classList.add("hidden");
      $("in-call").classList.remove("hidden");
      status("Connecting…");
      call.abort = new AbortController();
      refresh();
      confabApi.events(`/v1/conferences/${encodeURIComponent(cid)}/events`, onEvent, call.abort.signal);
    } catch (e) {
      status("Could not join: " + e.message, true);
      hangUp();
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
    if (name === "conference.ended") { status("The conference has ended."); hangUp(); }
    refresh();
  }

  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    setTimeout(async () => {
      pending = false;
      try {
        const data = await confabApi.call("GET", `/v1/conferences/${encodeURIComponent(cid)}/participants`);
        render(data.participants || []);
      } catch (_) { /* the roster needs the API; the call goes on without it */ }
    }, 150);
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
      body.append(confabApi.el("tr", { "data-participant": p.id },
        name, confabApi.el("td", { class: "state-" + p.state }, p.state), confabApi.el("td", {}, audio)));
      if (me && p.state === "disconnected") status("You left: " + (p.disconnect_reason || ""));
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
      try {
        await confabApi.call("POST", `/v1/conferences/${encodeURIComponent(cid)}/participants/${call.participant}/${muted ? "mute" : "unmute"}`);
      } catch (_) { /* the microphone is off either way */ }
    }
  }

  function hangUp() {
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
  $("microphone").addEventListener("change", changeMicrophone);
  $("processing").addEventListener("change", changeMicrophone);
  if (navigator.mediaDevices) {
    navigator.mediaDevices.addEventListener("devicechange", () => listMicrophones().catch(() => {}));
    listMicrophones().catch(() => {});
  }
  $("leave").addEventListener("click", () => {
    hangUp();
    $("in-call").classList.add("hidden");
    status("You left the conference.");
  });
  window.addEventListener("pagehide", hangUp);
})();
