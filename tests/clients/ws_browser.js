// Headless Chromium (Debian's chromium, driven by puppeteer-core pinned in package-lock.json)
// opens a page through siesta whose script uses a WebSocket through siesta too
// (ws_server.py's page). Prints one JSON object on its last stdout line: the page's result.
//
//   node ws_browser.js URL [CHROMIUM]
"use strict";
const {launch} = require("./chromium");

const [url, executablePath = "/usr/bin/chromium"] = process.argv.slice(2);

(async () => {
  const browser = await launch(executablePath);
  try {
    const page = await browser.newPage();
    const response = await page.goto(url, {waitUntil: "load", timeout: 60000});
    await page.waitForFunction("window.result !== undefined", {timeout: 60000});
    const result = await page.evaluate(() => window.result);
    result.page_status = response.status();
    result.wake = response.headers()["x-siesta-wake"] || null;
    result.browser = await browser.version();
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.log(JSON.stringify({error: String(err && err.stack ? err.stack : err)}));
});
