// Headless Chromium (Debian's) through Confab's pages, for tests/browser.rs: joins by
// /join/{cid} with a fake microphone, reports what the page asked of the microphone (processing
// on by default, then off by its checkbox, on a new track sent in place of the first), the
// microphones it lists, and "you are muted" shown while muted with the tone playing and gone
// once unmuted; then getStats and the contributing sources, then
// opens /console, mutes the participant named PHONE, starts recording by its button (the
// indicator turns on) and, once the test has stopped it through the API, shows the indicator
// off by the API's event and a failed start shown to the operator; then locks the conference,
// and shows that a new join through the page is refused. Prints one JSON object a line as it goes; waits for
// "go" on stdin between steps so the test can measure in between.
//
// BASE is https://; SPKI is the base64 SHA-256 of the server certificate's public key, which
// Chromium is told to trust (the test's CA is in no store Chromium reads).
//
// usage: node join_and_console.mjs BASE CID PASSCODE FAKE_WAV SHOT_DIR PHONE SPKI
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [base, cid, passcode, wav, shots, phone, spki] = process.argv.slice(2);
const out = (o) => console.log(JSON.stringify(o));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const go = async () => { await lines.next(); };

const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  `--use-file-for-fake-audio-capture=${wav}`, "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
  `--ignore-certificate-errors-spki-list=${spki}`,
];

// The microphone processing the sent track really has, and whether it is the one sent.
async function processing(page) {
  return page.evaluate(() => {
    const track = window.confab.stream.getAudioTracks()[0];
    const s = track.getSettings();
    const sent = window.confab.pc.getSenders().some((x) => x.track === track);
    return {
      echoCancellation: s.echoCancellation, noiseSuppression: s.noiseSuppression,
      autoGainControl: s.autoGainControl, checkbox: document.querySelector("#processing").checked, sent,
    };
  });
}

const hidden = (sel) => document.querySelector(sel).classList.contains("hidden");

async function stats(page) {
  return page.evaluate(async () => {
    const pc = window.confab.pc;
    const r = { state: pc.connectionState, packetsReceived: 0, audioLevel: 0, csrcs: [] };
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        r.packetsReceived = s.packetsReceived || 0;
        r.audioLevel = s.audioLevel || 0;
        r.packetsLost = s.packetsLost || 0;
      }
    });
    const rx = pc.getReceivers().find((x) => x.track && x.track.kind === "audio");
    if (rx) r.csrcs = rx.getContributingSources().map((c) => ({ source: c.source, audioLevel: c.audioLevel }));
    return r;
  });
}

const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "confab-chromium-")), {
  executablePath: "/usr/bin/chromium", headless: true, ignoreDefaultArgs: ["--mute-audio"], args,
});
try {
  const page = await ctx.newPage();
  await page.goto(`${base}/join/${cid}`);
  await page.fill("#name", "Chromium");
  await page.fill("#passcode", passcode);
  await page.click("#join");
  await page.waitForFunction(() => window.confab.pc && window.confab.pc.connectionState === "connected", null, { timeout: 20000 });
  const defaults = await processing(page);
  await page.waitForFunction(() => document.querySelectorAll("#microphone option").length > 1, null, { timeout: 5000 }).catch(() => {});
  const microphones = await page.$$eval("#microphone option", (os) => os.map((o) => ({ value: o.value, label: o.textContent })));
  const meter = await page.evaluate(() => document.querySelector("#level").value);
  // Muted with the tone still playing: the notice shows; unmuted, it goes.
  await page.click("#mute");
  await page.waitForFunction(() => !document.querySelector("#muted-notice").classList.contains("hidden"), null, { timeout: 5000 });
  const mutedNotice = { shown: true, text: await page.textContent("#muted-notice") };
  await page.click("#mute");
  await page.waitForFunction(hidden, "#muted-notice", { timeout: 5000 });
  mutedNotice.goneWhenUnmuted = true;
  // Processing off (a headset, music): a new track without it, sent in place of the first.
  await page.uncheck("#processing");
  await page.waitForFunction(() => window.confab.stream.getAudioTracks()[0].getSettings().echoCancellation === false, null, { timeout: 10000 });
  const off = await processing(page);
  // Another microphone from the picker: its track replaces the one sent.
  const other = microphones.map((m) => m.value).filter(Boolean).pop();
  let picked = null;
  if (other) {
    await page.selectOption("#microphone", other);
    await page.waitForFunction((id) => window.confab.stream.getAudioTracks()[0].getSettings().deviceId === id, other, { timeout: 10000 });
    picked = { device: other, ...(await processing(page)) };
  }
  await page.waitForTimeout(1500);
  let s = await stats(page);
  for (let i = 0; i < 60 && !(s.packetsReceived > 100 && s.audioLevel > 0.01 && s.csrcs.length > 0); i++) {
    await page.waitForTimeout(250);
    s = await stats(page);
  }
  await page.waitForSelector(`#roster tr[data-participant]`, { timeout: 10000 });
  const roster = await page.$$eval("#roster tr", (rows) => rows.map((r) => r.textContent));
  const participant = await page.evaluate(() => window.confab.participant);
  const origin = await page.evaluate(() => ({ protocol: location.protocol, secure: window.isSecureContext }));
  await page.screenshot({ path: join(shots, "browser-join.png"), fullPage: true });
  out({ step: "joined", participant, roster, origin, defaults, off, picked, microphones, meter, mutedNotice, ...s });
  await go();

  const con = await ctx.newPage();
  await con.goto(`${base}/console?conference=${cid}`);
  const row = `#roster tr[data-name="${phone}"]`;
  await con.click(`${row} button[data-action="mute"]`, { timeout: 15000 });
  await con.waitForSelector(`${row} button[data-action="unmute"]`, { timeout: 10000 });
  // The console mutes Chromium: its page turns the microphone off and, the tone still playing,
  // says so; the console's unmute turns it back on.
  const me = `#roster tr[data-name="Chromium"]`;
  await con.click(`${me} button[data-action="mute"]`, { timeout: 15000 });
  await page.waitForFunction(() => !document.querySelector("#muted-notice").classList.contains("hidden"), null, { timeout: 10000 });
  const byModerator = await page.evaluate(() => ({
    button: document.querySelector("#mute").textContent,
    trackEnabled: window.confab.stream.getAudioTracks()[0].enabled,
  }));
  await con.click(`${me} button[data-action="unmute"]`, { timeout: 15000 });
  await page.waitForFunction(() => window.confab.stream.getAudioTracks()[0].enabled, null, { timeout: 10000 });
  await page.waitForFunction(hidden, "#muted-notice", { timeout: 5000 });
  const unmuted = await page.evaluate(() => document.querySelector("#mute").textContent);
  out({ step: "muted", byModerator, unmuted });
  await go();

  // Recording: not recorded when the console opened; its button starts it and the indicator
  // turns on.
  const recording = (want) => con.waitForFunction((v) => document.querySelector("#recording").dataset.recording === v, want, { timeout: 15000 });
  const shown = async () => ({
    state: await con.evaluate(() => document.querySelector("#recording").dataset.recording),
    text: await con.textContent("#recording"),
    button: await con.textContent("#record"),
  });
  await recording("false");
  const before = await shown();
  await con.click("#record");
  await recording("true");
  await con.screenshot({ path: join(shots, "browser-recording.png"), fullPage: true });
  out({ step: "recording", before, on: await shown() });
  await go();
  // The test stopped it through the API, not this console: the event turns the indicator off.
  await recording("false");
  const stopped = await shown();
  // A start that fails (the bridge answers 503) is shown to the operator, and the indicator
  // stays as the API says.
  const route = "**/v1/conferences/*/recording";
  await con.route(route, (r) => r.fulfill({ status: 503, contentType: "application/json",
    body: JSON.stringify({ error: { code: "unavailable", message: "recording is not available on this bridge" } }) }));
  await con.click("#record");
  await con.waitForFunction(() => document.querySelector("#status").textContent.includes("recording failed"), null, { timeout: 10000 });
  const failed = { status: await con.textContent("#status"), error: await con.evaluate(() => document.querySelector("#status").classList.contains("error")) };
  await con.unroute(route);
  await recording("false");
  out({ step: "recording-stopped", off: stopped, failed, after: await shown() });
  await go();

  await con.click("#lock");
  await con.waitForFunction(() => document.querySelector("#lock").textContent === "Unlock", null, { timeout: 10000 });
  await con.screenshot({ path: join(shots, "browser-console.png"), fullPage: true });
  out({ step: "locked" });
  await go();

  const late = await ctx.newPage();
  await late.goto(`${base}/join/${cid}`);
  await late.fill("#name", "Latecomer");
  await late.fill("#passcode", passcode);
  await late.click("#join");
  await late.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Could not join"), null, { timeout: 20000 });
  out({ step: "refused", status: await late.textContent("#status") });
} catch (e) {
  out({ step: "error", error: String(e && e.stack || e) });
} finally {
  await ctx.close();
  process.exit(0);
}
