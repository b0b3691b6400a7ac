// Screenshot of the writing page (hmer serve) after a scripted browser writes strokes on it.
// Used for the README picture; needs Chromium and the npm package playwright-core:
//   npm install playwright-core && node scripts/serve_screenshot.mjs URL STROKES.json OUT.png
// STROKES.json: [[[x, y], ...], ...] in writing-area pixels (scripts/serve_screenshot.sh makes it).
import fs from "node:fs";
import { chromium } from "playwright-core";

const [url, strokesPath, out] = process.argv.slice(2);
const strokes = JSON.parse(fs.readFileSync(strokesPath, "utf8"));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
const page = await browser.newPage({ viewport: { width: 900, height: 640 }, deviceScaleFactor: 1 });
await page.goto(url);
const box = await page.locator("#pad").boundingBox();
for (const stroke of strokes) {
  await page.mouse.move(box.x + stroke[0][0], box.y + stroke[0][1]);
  await page.mouse.down();
  for (const [x, y] of stroke.slice(1)) await page.mouse.move(box.x + x, box.y + y);
  await page.mouse.up();
}
await page.waitForFunction(() => document.querySelector("#rendered svg") !== null, null, { timeout: 60000 });
await page.screenshot({ path: out });
console.log(await page.locator("#latex").textContent());
await browser.close();
