// Headless Chromium (Debian's) through Confab's pages, for tests/browser.rs: joins by
// /join/{cid} with a fake microphone, reports getStats and the contributing sources, then
// opens /console, mutes the participant named PHONE and locks the conference, and shows that
// a new join through the page is refused. Prints one JSON object a line as it goes; waits for
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
  out({ step: "joined", participant, roster, origin, ...s });
  await go();

  const con = await ctx.newPage();
  await con.goto(`${base}/console?conference=${cid}`);
  const row = `#roster tr[data-name="${phone}"]`;
  await con.click(`${row} button[data-action="mute"]`, { timeout: 15000 });
  await con.waitForSelector(`${row} button[data-action="unmute"]`, { timeout: 10000 });
  out({ step: "muted" });
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
