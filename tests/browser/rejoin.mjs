// Headless Chromium (Debian's) on Confab's join page, for tests/browser.rs: a bridge with an
// API token the page never gets, and STUN/TURN servers configured. Joins /join/{cid}, mutes and
// unmutes itself (the bridge's roster on the page must follow), reports the peer connection's
// configuration (the iceServers it was given) and the roster it shows;
// then, told to, stops the page's event stream (so that only the connection itself can tell
// the page that the bridge let it go) and waits while the test deletes its WHIP session; reports
// the page joining again under the same name; then waits while the test ejects it and reports
// that it did not join again. One JSON object a line; "go" on stdin between steps.
//
// usage: node rejoin.mjs BASE CID PASSCODE FAKE_WAV SPKI
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [base, cid, passcode, wav, spki] = process.argv.slice(2);
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

// The page's roster rows, and whether this participant's own row is there.
const roster = (page) => page.$$eval("#roster tr", (rows) => rows.map((r) => ({
  id: r.getAttribute("data-participant"), text: r.textContent,
})));

const connectedAs = (sessions) => window.confab.sessions === sessions && window.confab.pc
  && window.confab.pc.connectionState === "connected"
  && [...document.querySelectorAll("#roster tr")].some((r) => r.getAttribute("data-participant") === window.confab.participant);

const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "confab-chromium-")), {
  executablePath: "/usr/bin/chromium", headless: true, ignoreDefaultArgs: ["--mute-audio"], args,
});
try {
  const page = await ctx.newPage();
  await page.goto(`${base}/join/${cid}`);
  // Every status the page shows, in order.
  await page.evaluate(() => {
    window.statusLog = [];
    new MutationObserver(() => window.statusLog.push(document.querySelector("#status").textContent))
      .observe(document.querySelector("#status"), { childList: true, characterData: true, subtree: true });
  });
  await page.fill("#name", "Chromium");
  await page.fill("#passcode", passcode);
  await page.click("#join");
  await page.waitForFunction(connectedAs, 1, { timeout: 20000 });
  await page.waitForFunction(() => document.querySelectorAll("#roster tr").length >= 2, null, { timeout: 10000 });
  // "Mute me" reaches the bridge without the API token: the page's own row (from the bridge's
  // roster) says muted, then no longer once unmuted.
  const ownRowMuted = (muted) => [...document.querySelectorAll("#roster tr")].some((r) =>
    r.getAttribute("data-participant") === window.confab.participant && r.textContent.includes("muted") === muted);
  const selfMute = {};
  await page.click("#mute");
  selfMute.muted = await page.waitForFunction(ownRowMuted, true, { timeout: 10000 }).then(() => true, () => false);
  await page.click("#mute");
  selfMute.unmuted = await page.waitForFunction(ownRowMuted, false, { timeout: 10000 }).then(() => true, () => false);
  out({
    step: "joined",
    selfMute,
    iceServers: await page.evaluate(() => window.confab.pc.getConfiguration().iceServers),
    participant: await page.evaluate(() => window.confab.participant),
    location: await page.evaluate(() => window.confab.location),
    apiToken: await page.evaluate(() => sessionStorage.getItem("confab-api-token")),
    roster: await roster(page),
  });
  await go();

  // Only the connection can tell the page now.
  await page.evaluate(() => window.confab.abort.abort());
  out({ step: "cut" });
  await go();
  await page.waitForFunction(connectedAs, 2, { timeout: 40000 });
  out({
    step: "rejoined",
    participant: await page.evaluate(() => window.confab.participant),
    statusLog: await page.evaluate(() => window.statusLog),
    roster: await roster(page),
  });
  await go();

  await page.waitForFunction(() => document.querySelector("#status").textContent.includes("removed"), null, { timeout: 20000 });
  // Longer than a reconnection would take to start (its first pause, and a disconnection
  // given time to heal): it must not come.
  await page.waitForTimeout(8000);
  out({
    step: "ejected",
    sessions: await page.evaluate(() => window.confab.sessions),
    over: await page.evaluate(() => window.confab.over),
    status: await page.textContent("#status"),
    statusLog: await page.evaluate(() => window.statusLog),
  });
} catch (e) {
  out({ step: "error", error: String(e && e.stack || e) });
} finally {
  await ctx.close();
  process.exit(0);
}
