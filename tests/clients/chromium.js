// Debian's chromium, headless, as every browser test here launches it (puppeteer-core pinned in
// package-lock.json; no browser download).
"use strict";
const puppeteer = require("puppeteer-core");

function launch(executablePath = "/usr/bin/chromium") {
  return puppeteer.launch({
    executablePath,
    headless: true,
    // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-background-networking", "--disable-component-update"],
  });
}

module.exports = {launch};
