// The join page: WHIP with the microphone, then the live roster from the conference's events.
"use strict";
(() => {
  const cid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const $ = (id) => document.getElementById(id);
  const status = (text, error) => { $("status").textContent = text; $("status").className = error ? "status error" : "status"; };
  $("cid").textContent = cid;
  const call = { pc: null, stream: null, location: null, participant: null, abort: null, speaking: new Set() };
  window.confab = call; // for tests and the curious: getStats() lives on call.pc

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
      call.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      const pc = new RTCPeerConnection({ iceServers: [] });
      call.pc = pc;
      for (const track of call.stream.getAudioTracks()) pc.addTransceiver(track, { direction: "sendrecv", streams: [call.stream] });
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

  function onEvent(name, data) {
    if (name === "participant.speaking") {
      if (data.speaking) call.speaking.add(data.participant); else call.speaking.delete(data.participant);
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

  async function toggleMute() {
    const tracks = call.stream ? call.stream.getAudioTracks() : [];
    const muted = $("mute").getAttribute("aria-pressed") !== "true";
    for (const t of tracks) t.enabled = !muted;
    $("mute").setAttribute("aria-pressed", String(muted));
    $("mute").textContent = muted ? "Unmute me" : "Mute me";
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
  }

  $("join-form").addEventListener("submit", join);
  $("mute").addEventListener("click", toggleMute);
  $("leave").addEventListener("click", () => {
    hangUp();
    $("in-call").classList.add("hidden");
    status("You left the conference.");
  });
  window.addEventListener("pagehide", hangUp);
})();
