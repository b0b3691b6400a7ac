// Screenshot of the writing page (hmer serve) after a scripted browser writes strokes on it.
// Used for the README picture (scripts/serve_screenshot.sh makes the strokes and the server):
//   node scripts/serve_screenshot.mjs URL STROKES.json OUT.png
// STROKES.json: [[[x, y], ...], ...] in writing-area pixels. Needs Chromium (`apt-get install
// chromium`: /usr/bin/chromium, or $CHROMIUM) and playwright-core (`npm ci --prefix tests/js`,
// found through NODE_PATH, which serve_screenshot.sh sets).
import fs from "node:fs";
import { createRequire } from "node:module";

const { chromium } = createRequire(import.meta.url)("playwright-core");
const [url, strokesPath, out] = process.argv.slice(2);
const strokes = JSON.parse(fs.readFileSync(strokesPath, "utf8"));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
const page = await browser.newPage({ viewport: { width: 900, height: 720 }, deviceScaleFactor: 1 });
await page.goto(url);
const box = await page.locator("#pad").boundingBox();
for (const stroke of strokes) {
  await page.mouse.move(box.x + stroke[0][0], box.y + stroke[0][1]);
  await page.mouse.down();
  for (const [x, y] of stroke.slice(1)) await page.mouse.move(box.x + x, box.y + y);
  await page.mouse.up();
}
await page.waitForFunction(() => document.querySelector("#preview math") !== null, null, { timeout: 60000 });
await page.screenshot({ path: out, fullPage: true });
console.log(await page.locator("#latex").inputValue());
await browser.close();
