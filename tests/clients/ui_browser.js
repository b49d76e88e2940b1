// Headless Chromium (Debian's chromium, driven by puppeteer-core pinned in package-lock.json)
// on siesta's admin page and waking page. Driven by run_ui.py, which starts siesta and its
// services; one case per run, named by the first argument. Prints one JSON object on its last
// stdout line: {"ok": true, ...} or {"error": "..."}.
//
//   node ui_browser.js CASE '{"admin": "http://127.0.0.1:PORT", ...}' [CHROMIUM]
"use strict";
const {launch} = require("./chromium");

const [which, argsJson, executablePath = "/usr/bin/chromium"] = process.argv.slice(2);
const args = JSON.parse(argsJson);

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

// The API as a client of our own (Node's fetch), to check what the page did.
async function api(method, path, token) {
  const headers = token ? {Authorization: `Bearer ${token}`} : {};
  const res = await fetch(args.admin + path, {method, headers});
  return {status: res.status, body: await res.json()};
}

async function actual(service, token) {
  return (await api("GET", `/admin/services/${service}`, token)).body.actual;
}

async function until(what, fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await pause(50);
  }
}

// A page whose console errors, page errors and failed requests are collected, and whose
// requests are all listed (to check that no URL holds the token).
async function watchedPage(browser) {
  const page = await browser.newPage();
  await page.setViewport({width: 1100, height: 720, deviceScaleFactor: 1});
  const seen = {errors: [], urls: []};
  page.on("console", (m) => {
    if (m.type() === "error") seen.errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => seen.errors.push(`page: ${e.message}`));
  page.on("requestfailed",
          (r) => seen.errors.push(`failed: ${r.url()} ${(r.failure() || {}).errorText}`));
  page.on("request", (r) => seen.urls.push(r.url()));
  page.on("response", (r) => {
    if (r.status() >= 400) seen.errors.push(`status ${r.status()}: ${r.url()}`);
  });
  return {page, seen};
}

// The table is rendered again at each poll: a button found, then clicked through the protocol,
// can be detached in between. Found and clicked in one task of the page, it cannot.
async function clickRowButton(page, action) {
  const sel = `button[data-action="${action}"]`;
  await page.waitForSelector(sel, {timeout: 10000});
  await page.$eval(sel, (b) => b.click());
}

async function shot(page, name) {
  if (args.screenshots) await page.screenshot({path: `${args.screenshots}/${name}.png`});
}

const cases = {
  // The page loads with no console errors, under its CSP, and lists the services.
  async loads(browser) {
    const {page, seen} = await watchedPage(browser);
    const res = await page.goto(args.admin + "/", {waitUntil: "load"});
    check(page.url() === args.admin + "/ui/", `/ went to ${page.url()}`);
    const csp = res.headers()["content-security-policy"] || "";
    check(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline"), `CSP: ${csp}`);
    for (const s of args.services) {
      await page.waitForSelector(`tr[data-service="${s}"]`, {timeout: 10000});
    }
    const listed = await page.$$eval("#services tbody tr", (rows) => rows.map((r) => r.dataset.service));
    await pause(2500);  // two more polls and ticks, all quiet
    check(seen.errors.length === 0, `errors: ${seen.errors.join("; ")}`);
    await shot(page, "ui-admin");
    return {listed};
  },

  // The settings form refuses what the API refuses before sending it (a timeout of 0: HTML's
  // min is inclusive, the API's bound is not; a keep-alive past the schema's max), then saves a
  // good value, which the API shows.
  async settings(browser) {
    const {page, seen} = await watchedPage(browser);
    await page.goto(args.admin + "/ui/", {waitUntil: "load"});
    await page.waitForSelector("#idleTimeout");
    await until("the form filled", async () => (await page.$eval("#idleTimeout", (i) => i.value)) !== "");
    const posts = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && r.url().endsWith("/admin/settings")) posts.push(r.postData());
    });
    const refused = {};
    for (const [id, value] of [["idleTimeout", "0"], ["modelKeepAlive", "100000"],
                               ["idleCheckInterval", "0.001"]]) {
      const before = await page.$eval(`#${id}`, (i) => i.value);
      await page.$eval(`#${id}`, (i) => { i.value = ""; });
      await page.type(`#${id}`, value);
      await page.click("#settings button[type=submit]");
      await pause(300);
      refused[id] = await page.$eval(`#${id}`, (i) => i.validationMessage);
      check(refused[id] !== "", `${id}=${value} was not refused by the form`);
      await page.$eval(`#${id}`, (i, v) => { i.value = v; i.dispatchEvent(new Event("input", {bubbles: true})); }, before);
    }
    check(posts.length === 0, `the form sent ${posts.length} bad settings: ${posts.join("; ")}`);
    await page.$eval("#idleTimeout", (i) => { i.value = ""; });
    await page.type("#idleTimeout", "42.5");
    await page.click("#settings button[type=submit]");
    await until("the API shows 42.5", async () =>
      (await api("GET", "/admin/settings")).body.idle_timeout_minutes === 42.5);
    check(posts.length === 1, `${posts.length} posts for one save`);
    check(seen.errors.length === 0, `errors: ${seen.errors.join("; ")}`);
    return {refused};
  },

  // The countdown of a running service goes down between polls.
  async countdown(browser) {
    const {page, seen} = await watchedPage(browser);
    await page.goto(args.admin + "/ui/", {waitUntil: "load"});
    const sel = `tr[data-service="${args.service}"] td.countdown[data-seconds]`;
    await page.waitForSelector(sel, {timeout: 10000});
    const read = () => page.$eval(sel, (td) => [Number(td.dataset.seconds), td.textContent]);
    const [first, firstText] = await read();
    await pause(3200);
    const [second, secondText] = await read();
    check(second < first, `countdown did not go down: ${firstText} then ${secondText}`);
    check(seen.errors.length === 0, `errors: ${seen.errors.join("; ")}`);
    return {first, second, firstText, secondText};
  },

  // "Sleep" stops the service (seen through the API) and its row shows it; then the keyboard
  // alone (Tab to "Wake", Enter) wakes it, with a visible focus ring on the way.
  async sleep_and_keyboard(browser) {
    const {page, seen} = await watchedPage(browser);
    const s = args.service;
    check((await actual(s)) === "running", `${s} is not running at the start`);
    await page.goto(args.admin + "/ui/", {waitUntil: "load"});
    await page.waitForSelector(`tr[data-service="${s}"][data-actual="running"]`);
    await clickRowButton(page, `${s}:sleep`);
    await until(`${s} stopped (API)`, async () => (await actual(s)) === "stopped");
    await page.waitForSelector(`tr[data-service="${s}"][data-actual="stopped"]`, {timeout: 10000});
    await shot(page, "ui-slept");

    // From the top of a fresh page, the keyboard alone.
    await page.reload({waitUntil: "load"});
    await page.waitForSelector(`tr[data-service="${s}"][data-actual="stopped"]`, {timeout: 10000});
    let focused = null;
    for (let i = 0; i < 60 && focused !== `${s}:wake`; i++) {
      await page.keyboard.press("Tab");
      focused = await page.evaluate(() => document.activeElement.dataset.action || null);
    }
    check(focused === `${s}:wake`, `Tab never reached the Wake button of ${s}`);
    const outline = await page.evaluate(() => {
      const st = getComputedStyle(document.activeElement);
      return {style: st.outlineStyle, width: st.outlineWidth};
    });
    check(outline.style !== "none" && outline.width !== "0px",
          `no visible focus: ${JSON.stringify(outline)}`);
    await page.keyboard.press("Enter");
    await until(`${s} running (API)`, async () => (await actual(s)) === "running");
    await page.waitForSelector(`tr[data-service="${s}"][data-actual="running"]`, {timeout: 10000});
    const labels = await page.$$eval("input, select", (els) =>
      els.filter((e) => !e.labels.length && !e.getAttribute("aria-label")).map((e) => e.id));
    check(labels.length === 0, `controls without a label: ${labels}`);
    check(seen.errors.length === 0, `errors: ${seen.errors.join("; ")}`);
    return {outline};
  },

  // With a token set the page asks for it, then works; the token is never in a URL.
  async token(browser) {
    const {page, seen} = await watchedPage(browser);
    await page.goto(args.admin + "/ui/", {waitUntil: "load"});
    await page.waitForSelector("#token-dialog[open]", {timeout: 10000});
    await shot(page, "ui-token");
    await page.type("#token", "wrong-token-wrong-token");
    await page.keyboard.press("Enter");
    await page.waitForFunction(
        () => document.querySelector("#token-error").textContent.includes("refused"),
        {timeout: 10000});
    await page.$eval("#token", (e) => { e.value = ""; });
    await page.type("#token", args.token);
    await page.keyboard.press("Enter");
    await page.waitForSelector(`tr[data-service="${args.service}"]`, {timeout: 10000});
    const kept = await page.evaluate(() => sessionStorage.getItem("siesta.admin-token"));
    check(kept === args.token, "the token is not in sessionStorage");
    const local = await page.evaluate(() => localStorage.length);
    check(local === 0, "something was put in localStorage");
    await clickRowButton(page, `${args.service}:sleep`);
    await until("sleep with the token", async () => (await actual(args.service, args.token)) === "stopped");
    check(!seen.urls.some((u) => u.includes(args.token)), "the token appeared in a URL");
    // 401s are expected here (the first calls, the wrong token): Chromium logs each one.
    const other = seen.errors.filter((e) => !e.includes("401"));
    check(other.length === 0, `errors: ${other.join("; ")}`);
    return {requests: seen.urls.length};
  },

  // A navigation to the sleeping service gets the waking page, which is replaced by the real
  // page once the service is up.
  async waking(browser) {
    const {page, seen} = await watchedPage(browser);
    const res = await page.goto(args.url, {waitUntil: "load"});
    const status = res.status();
    const marker = res.headers()["x-siesta-wake"];
    check(status === 503 && marker === "waking-page", `first answer ${status} ${marker}`);
    const heading = await page.$eval("h1", (h) => h.textContent);
    check(heading.startsWith(`Waking ${args.service}…`), `heading: ${heading}`);
    await shot(page, "ui-waking");
    await page.waitForFunction((text) => document.body.innerText.includes(text),
                               {timeout: 30000}, args.real_text);
    const title = await page.title();
    // Chromium logs the 503 of the waking page itself as a failed resource, and the reload may
    // abort a request of the waking page still under way; nothing else.
    const other = seen.errors.filter((e) => !e.includes("503") && !e.includes("ERR_ABORTED"));
    check(other.length === 0, `errors: ${other.join("; ")}`);
    return {status, heading, title, final_url: page.url()};
  },
};

(async () => {
  const browser = await launch(executablePath);
  try {
    const out = await cases[which](browser);
    console.log(JSON.stringify({ok: true, ...out}));
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.log(JSON.stringify({error: String(err && err.stack ? err.stack : err)}));
});
