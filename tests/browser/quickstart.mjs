// Headless Chromium (Debian's) following README.md's quickstart, for tests/it/quickstart.rs:
// opens the join page, types a name, presses "Join with microphone" (a fake microphone plays
// FAKE_WAV) and waits until the call is connected, keeping the WHIP answer the bridge sent; then
// opens the console, gives it the API token, opens the conference and reads its roster. Prints
// one JSON object, then stays in the call until stdin closes.
//
// SPKI is the base64 SHA-256 of the bridge certificate's public key: trusting it is what
// "accept the certificate warning" does for a person.
//
// usage: node quickstart.mjs JOIN_URL CONSOLE_URL TOKEN CID FAKE_WAV SHOT_DIR SPKI
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [joinUrl, consoleUrl, token, cid, wav, shots, spki] = process.argv.slice(2);
const out = (o) => console.log(JSON.stringify(o));

const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  `--use-file-for-fake-audio-capture=${wav}`,
  "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
  `--ignore-certificate-errors-spki-list=${spki}`,
];

const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "confab-quickstart-")), {
  executablePath: "/usr/bin/chromium", headless: true, ignoreDefaultArgs: ["--mute-audio"], args,
});
try {
  const page = await ctx.newPage();
  // The WHIP answer as the bridge wrote it (remoteDescription is Chromium's own rewrite of it).
  let whipAnswer = null;
  page.on("response", async (r) => {
    if (r.request().method() === "POST" && r.url().includes("/whip")) whipAnswer = await r.text().catch(() => null);
  });
  await page.goto(joinUrl);
  await page.fill("#name", "Browser");
  await page.click("#join");
  await page.waitForFunction(() => window.confab.pc && window.confab.pc.connectionState === "connected", null, { timeout: 30000 })
    .catch(async (e) => {
      // What the page saw, to tell why.
      const seen = await page.evaluate(() => ({
        status: document.querySelector("#status").textContent,
        ice: window.confab.pc && window.confab.pc.iceConnectionState,
        offer: window.confab.pc && window.confab.pc.localDescription && window.confab.pc.localDescription.sdp,
        answer: window.confab.pc && window.confab.pc.remoteDescription && window.confab.pc.remoteDescription.sdp,
      }));
      throw new Error(`${e.message}: ${JSON.stringify(seen)}`);
    });
  const call = await page.evaluate(() => ({
    origin: location.origin, secure: window.isSecureContext,
  }));
  call.answer = whipAnswer;
  await page.screenshot({ path: join(shots, "quickstart-join.png"), fullPage: true });

  const con = await ctx.newPage();
  await con.goto(consoleUrl);
  await con.click("summary");
  await con.fill("#token", token);
  await con.click("#save-token");
  await con.click(`button[data-open="${cid}"]`, { timeout: 15000 });
  await con.waitForFunction(
    () => [...document.querySelectorAll("#roster tr[data-participant]")]
      .filter((r) => r.querySelector(".state-connected")).length >= 2,
    null, { timeout: 15000 });
  const roster = await con.$$eval("#roster tr[data-participant]", (rows) => rows.map((r) => r.textContent));
  await con.screenshot({ path: join(shots, "quickstart-console.png"), fullPage: true });
  out({ step: "joined", ...call, roster });
  // In the call until the test has read the roster from the API.
  for await (const _ of createInterface({ input: process.stdin })) { /* until closed */ }
} catch (e) {
  out({ step: "error", error: String(e && e.stack || e) });
} finally {
  await ctx.close();
  process.exit(0);
}
