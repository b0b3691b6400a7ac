// Uses hmer serve's page in headless Chromium as a person would, and prints what it saw as JSON
// (tests/test_serve_page.py checks it against the server's own answers).
//   node page_test.cjs URL STROKES.json PICTURE.png
// STROKES.json: [[[x, y], ...], ...] in writing-area pixels, drawn with the mouse. PICTURE.png
// is chosen with the file button, then pasted (Ctrl+V) as a screenshot would be.
// Needs playwright-core (npm ci in tests/js) and Chromium (/usr/bin/chromium, or $CHROMIUM).
"use strict";
const fs = require("fs");
const { chromium } = require("playwright-core");

const [url, strokesPath, picturePath] = process.argv.slice(2);
const strokes = JSON.parse(fs.readFileSync(strokesPath, "utf8"));
const picture = fs.readFileSync(picturePath).toString("base64");

// What the page shows, read from the page itself (shown: rendered, not hidden by any style).
const state = () => ({
  hint: document.getElementById("hint").checkVisibility(),
  result: document.getElementById("result").checkVisibility(),
  latex: document.getElementById("latex").value,
  math: document.getElementById("preview").querySelector("math") !== null,
  confidence: document.getElementById("confidence").textContent,
  readings: [...document.querySelectorAll("#alternatives code")].map((code) => code.textContent),
  chosen: [...document.querySelectorAll("#alternatives button")].map((b) => b.getAttribute("aria-pressed")),
  about: document.getElementById("about").checkVisibility() ? document.getElementById("about").textContent : null,
  status: document.getElementById("status").textContent,
  copied: document.getElementById("copied").textContent,
  text: document.body.innerText,
});

// Do `action`, wait for the answer to the request it makes to `path` (the one `accept` takes,
// when given), and return what the page then shows.
async function answered(page, path, action, accept = () => true) {
  await Promise.all([
    page.waitForResponse((reply) => new URL(reply.url()).pathname === path && accept(reply.request()),
                         { timeout: 60000 }),
    action(),
  ]);
  await page.waitForFunction(() => document.getElementById("status").textContent !== "Reading…");
  return page.evaluate(state);
}

async function write(page, box, lines) {
  for (const stroke of lines) {
    await page.mouse.move(box.x + stroke[0][0], box.y + stroke[0][1]);
    await page.mouse.down();
    for (const [x, y] of stroke.slice(1)) await page.mouse.move(box.x + x, box.y + y);
    await page.mouse.up();
  }
}

// The request that holds every stroke written (one may be sent after a slow stroke already).
const whole = (count) => (request) => JSON.parse(request.postData()).strokes.length === count;

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
  const seen = {};
  try {
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
    const page = await context.newPage();
    const sent = [];
    page.on("request", (request) => {
      if (request.method() === "POST") sent.push({ url: new URL(request.url()).pathname, body: request.postData() });
    });
    await page.goto(url);
    await page.waitForFunction(() => !document.getElementById("about").hidden, null, { timeout: 30000 });
    seen.before = await page.evaluate(state);

    const box = await page.locator("#pad").boundingBox();
    seen.written = await answered(page, "/predict", () => write(page, box, strokes), whole(strokes.length));
    seen.written.sent = JSON.parse(sent.splice(0).pop().body);  // the last: every stroke

    if (seen.written.readings.length > 1) {
      await page.locator("#alternatives button").nth(1).click();
      seen.picked = await page.evaluate(state);
    }

    await page.locator("#copy").click();
    await page.waitForFunction(() => document.getElementById("copied").textContent !== "");
    seen.copy = { said: await page.evaluate(() => document.getElementById("copied").textContent),
                  clipboard: await page.evaluate(() => navigator.clipboard.readText()) };

    const file = { name: "formula.png", mimeType: "image/png", buffer: Buffer.from(picture, "base64") };
    seen.uploaded = await answered(page, "/predict/image", () => page.setInputFiles("#file", file));
    seen.uploaded.sent = sent.splice(0).map((request) => request.url);

    await page.locator("#clear").click();
    await page.waitForFunction(() => document.getElementById("result").hidden);
    seen.cleared = await page.evaluate(state);

    const paste = () => page.evaluate((data) => {  // Ctrl+V of a screenshot: a paste event holding a picture
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], "screenshot.png", { type: "image/png" }));
      document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }));
    }, picture);
    seen.pasted = await answered(page, "/predict/image", paste);
    seen.pasted.sent = sent.splice(0).map((request) => request.url);

    // A page opened over plain http on another address has no clipboard API: the LaTeX is
    // selected and copied the old way, or the person is asked to press Ctrl+C.
    for (const copies of [true, false]) {
      const plain = await context.newPage();
      await plain.addInitScript((works) => {
        Object.defineProperty(Navigator.prototype, "clipboard", { get: () => undefined });
        document.execCommand = (command) => command === "copy" && works;
      }, copies);
      await plain.goto(url);
      await answered(plain, "/predict", () => write(plain, box, strokes), whole(strokes.length));
      await plain.locator("#copy").click();
      seen[copies ? "oldCopy" : "noCopy"] = await plain.evaluate(() => {
        const box = document.getElementById("latex");
        return { said: document.getElementById("copied").textContent,
                 selected: document.activeElement === box && box.selectionStart === 0 && box.selectionEnd === box.value.length };
      });
      await plain.close();
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
})().catch((error) => { console.error(error); process.exit(1); });
