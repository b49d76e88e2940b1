// siesta's admin page: reads and drives the public admin API (docs/api.md) only.
// The token, when the API asks for one (401), is kept in this tab's sessionStorage and sent as
// "Authorization: Bearer ..."; never in a URL. No inline script or handlers (the page's CSP).
"use strict";

const TOKEN_KEY = "siesta.admin-token";
const POLL_MS = 2000;
const HOUR = 3600;

const state = {
  status: null,         // the last GET /admin/idle-status
  fetchedAt: 0,         // Date.now() when it came
  events: [],           // GET /admin/events, the last hour
  lastEventId: 0,
  busy: new Set(),      // "service:wake" etc. while an action runs
  tokenWait: null,      // a promise while the token dialog is open
  settingsDirty: false,
};

const $ = (id) => document.getElementById(id);

function say(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// ---- API ----

function askToken(message) {
  if (state.tokenWait) return state.tokenWait;
  const dialog = $("token-dialog");
  $("token-error").textContent = message || "";
  $("token").value = "";
  state.tokenWait = new Promise((resolve) => {
    const form = $("token-form");
    const done = (ev) => {
      ev.preventDefault();
      const value = $("token").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      form.removeEventListener("submit", done);
      dialog.close();
      state.tokenWait = null;
      resolve();
    };
    form.addEventListener("submit", done);
  });
  // Escape would close the dialog and leave the page without data: it stays until a token.
  dialog.oncancel = (ev) => ev.preventDefault();
  if (!dialog.open) dialog.showModal();
  $("token").focus();
  return state.tokenWait;
}

async function api(method, path, body) {
  for (;;) {
    const headers = {Accept: "application/json"};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    if (res.status === 401) {
      const had = Boolean(token);
      sessionStorage.removeItem(TOKEN_KEY);
      await askToken(had ? "That token was refused; try again." : "");
      continue;
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      const msg = data && data.error ? data.error.message : res.status + " " + res.statusText;
      throw new Error(msg);
    }
    return data;
  }
}

const enc = encodeURIComponent;

// ---- formatting ----

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(r).padStart(2, "0")} s`;
  return `${r} s`;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function elapsed() {
  return (Date.now() - state.fetchedAt) / 1000;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

// ---- actions ----

async function act(key, label, method, path, body) {
  if (state.busy.has(key)) return;
  state.busy.add(key);
  render();
  say(label + "…");
  try {
    await api(method, path, body);
    say(label + ": done");
  } catch (e) {
    say(label + ": " + e.message, true);
  } finally {
    state.busy.delete(key);
    await refresh();
  }
}

function button(key, text, title, onClick) {
  const b = el("button", {type: "button", textContent: text, "data-action": key});
  b.setAttribute("aria-label", title);
  b.disabled = state.busy.has(key);
  b.addEventListener("click", onClick);
  return b;
}

// ---- rendering ----

// Rows are rebuilt only when their content changes, so focus stays on a control across polls.
function replaceRows(tbody, rows) {
  const active = document.activeElement;
  const activeKey = active && active.dataset ? active.dataset.action : null;
  tbody.replaceChildren(...rows);
  if (activeKey) {
    const again = tbody.querySelector(`[data-action="${CSS.escape(activeKey)}"]`);
    if (again) again.focus();
  }
}

function serviceRow(name, s, modelsOf) {
  const left = s.will_sleep_in_seconds === null ? null : s.will_sleep_in_seconds - elapsed();
  const sleepsIn = el("td", {class: "num countdown", "data-name": name});
  if (left === null) {
    sleepsIn.append("—");
    if (s.will_not_sleep_because) {
      sleepsIn.append(el("span", {class: "why", textContent: s.will_not_sleep_because}));
    }
  } else {
    sleepsIn.textContent = duration(left);
    sleepsIn.dataset.seconds = String(Math.max(0, Math.round(left)));
  }
  const idle = el("input", {type: "checkbox", checked: s.idle_sleep_enabled});
  idle.setAttribute("aria-label", `Idle sleep for ${name}`);
  idle.dataset.action = `${name}:idle-sleep`;
  idle.disabled = state.busy.has(idle.dataset.action);
  idle.addEventListener("change", () =>
    act(idle.dataset.action, `Idle sleep ${idle.checked ? "on" : "off"} for ${name}`, "POST",
        `/admin/services/${enc(name)}/idle-sleep`, {enabled: idle.checked}));
  const keepOn = el("input", {type: "checkbox", checked: s.desired === "on"});
  keepOn.setAttribute("aria-label", `Keep ${name} on`);
  keepOn.dataset.action = `${name}:desired`;
  keepOn.disabled = state.busy.has(keepOn.dataset.action);
  keepOn.addEventListener("change", () =>
    act(keepOn.dataset.action, `Keep on ${keepOn.checked ? "on" : "off"} for ${name}`, "POST",
        `/admin/services/${enc(name)}/desired`, {desired: keepOn.checked ? "on" : "off"}));
  const actions = el("td", {});
  actions.append(button(`${name}:wake`, "Wake", `Wake ${name}`, () =>
    act(`${name}:wake`, `Wake ${name}`, "POST", `/admin/services/${enc(name)}/wake`)));
  actions.append(button(`${name}:sleep`, "Sleep", `Sleep ${name}`, () =>
    act(`${name}:sleep`, `Sleep ${name}`, "POST", `/admin/services/${enc(name)}/sleep`)));
  if (modelsOf.has(name)) {
    actions.append(button(`${name}:unload-models`, "Unload models", `Unload the models of ${name}`,
        () => act(`${name}:unload-models`, `Unload the models of ${name}`, "POST",
                  `/admin/services/${enc(name)}/unload-models`)));
  }
  const stateCell = el("td", {});
  stateCell.append(el("span", {class: `state ${s.actual}`, textContent: s.actual}));
  if (s.last_error) stateCell.append(el("span", {class: "why", textContent: s.last_error}));
  return el("tr", {"data-service": name, "data-actual": s.actual},
      el("th", {scope: "row", textContent: name}), stateCell,
      el("td", {class: "num", textContent: duration(s.idle_for_seconds)}), sleepsIn,
      el("td", {class: "num", textContent: String(s.in_flight)}), el("td", {}, idle),
      el("td", {}, keepOn), actions);
}

function modelRow(name, m) {
  const left = m.will_unload_in_seconds === null ? null : m.will_unload_in_seconds - elapsed();
  const unloadsIn = el("td", {class: "num countdown"});
  if (left === null) {
    unloadsIn.append("—");
    if (m.will_not_unload_because) {
      unloadsIn.append(el("span", {class: "why", textContent: m.will_not_unload_because}));
    }
  } else {
    unloadsIn.textContent = duration(left);
  }
  const actions = el("td", {});
  if (m.loaded) {
    actions.append(button(`model:${name}:unload`, "Unload", `Unload ${name}`, () =>
      act(`model:${name}:unload`, `Unload ${name}`, "POST", `/admin/models/${enc(name)}/unload`)));
  } else {
    actions.append(button(`model:${name}:load`, "Load", `Load ${name}`, () =>
      act(`model:${name}:load`, `Load ${name}`, "POST", `/admin/models/${enc(name)}/load`)));
  }
  return el("tr", {"data-model": name},
      el("th", {scope: "row", textContent: name}), el("td", {textContent: m.provider}),
      el("td", {textContent: m.loaded ? "yes" : "no"}), unloadsIn,
      el("td", {class: "num", textContent: String(m.in_flight)}),
      el("td", {class: "num", textContent: bytes(m.vram_bytes)}), actions);
}

function render() {
  const st = state.status;
  if (!st) return;
  const services = Object.entries(st.services);
  const models = Object.entries(st.models);
  const modelsOf = new Set(models.map(([, m]) => m.provider));
  const asleep = services.filter(([, s]) => s.actual !== "running").length;
  $("summary").textContent =
      `${services.length} services (${asleep} asleep), ${models.length} models · idle sleep ` +
      (st.idle_sleep_enabled ? "on" : "off") + ` · siesta ${st.version}`;
  replaceRows($("services").tBodies[0], services.map(([n, s]) => serviceRow(n, s, modelsOf)));
  $("no-services").hidden = services.length > 0;
  replaceRows($("models").tBodies[0], models.map(([n, m]) => modelRow(n, m)));
  $("no-models").hidden = models.length > 0;
  if (!state.settingsDirty) {
    $("idleSleepEnabled").checked = st.idle_sleep_enabled;
    $("idleTimeout").value = st.idle_timeout_minutes;
    $("modelKeepAlive").value = st.model_keep_alive_hours;
    $("idleCheckInterval").value = st.idle_check_interval_minutes;
    $("pricePerKwh").value = st.price_per_kwh;
  }
}

// Between polls only the countdowns move: their cells are updated in place.
function tick() {
  const st = state.status;
  if (!st) return;
  for (const cell of document.querySelectorAll("#services td.countdown[data-name]")) {
    const s = st.services[cell.dataset.name];
    if (!s || s.will_sleep_in_seconds === null) continue;
    const left = Math.max(0, s.will_sleep_in_seconds - elapsed());
    cell.textContent = duration(left);
    cell.dataset.seconds = String(Math.round(left));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text) e.textContent = text;
  return e;
}

function drawChart(now) {
  const chart = $("chart");
  const W = 600, H = 120, mid = 60;
  const from = now - HOUR;
  const items = [svg("line", {class: "axis", x1: 0, y1: mid, x2: W, y2: mid})];
  for (let m = 0; m <= 60; m += 15) {
    const x = (m / 60) * W;
    items.push(svg("line", {class: "axis", x1: x, y1: mid - 4, x2: x, y2: mid + 4}));
    items.push(svg("text", {x: Math.min(Math.max(x, 2), W - 40), y: H - 4},
                   m === 60 ? "now" : `-${60 - m} min`));
  }
  const counts = {wake: 0, sleep: 0, pause: 0};
  for (const e of state.events) {
    if (e.at < from) continue;
    const x = ((e.at - from) / HOUR) * W;
    let cls = null, y1 = mid, y2 = mid;
    if (e.kind === "wake" || e.kind === "resume") { cls = "wake"; y2 = 10; }
    else if (e.kind === "sleep") { cls = "sleep"; y2 = H - 20; }
    else if (e.kind === "pause" || e.kind === "unload") { cls = "pause"; y2 = H - 35; }
    if (!cls) continue;
    counts[cls]++;
    const line = svg("line", {class: cls, x1: x, y1, x2: x, y2});
    line.append(svg("title", {}, `${e.kind} ${e.name} (${e.reason}) at ` +
                                 new Date(e.at * 1000).toLocaleTimeString()));
    items.push(line);
  }
  chart.replaceChildren(...items);
  $("chart-text").textContent =
      `In the last hour: ${counts.wake} wakes, ${counts.sleep} sleeps, ` +
      `${counts.pause} pauses or unloads.`;
}

// ---- polling ----

async function refresh() {
  try {
    const st = await api("GET", "/admin/idle-status");
    state.status = st;
    state.fetchedAt = Date.now();
    render();
    const ev = await api("GET", `/admin/events?since=${st.now - HOUR}&after=${state.lastEventId}`);
    for (const e of ev.events) {
      state.events.push(e);
      state.lastEventId = Math.max(state.lastEventId, e.id);
    }
    state.events = state.events.filter((e) => e.at >= st.now - HOUR);
    drawChart(st.now);
    if ($("status").className === "error" && $("status").dataset.poll) say("");
  } catch (e) {
    say("Cannot reach siesta: " + e.message, true);
    $("status").dataset.poll = "1";
  }
}

function setupSettings() {
  const form = $("settings");
  form.addEventListener("input", (ev) => {
    state.settingsDirty = true;
    // HTML's min is inclusive; a bound the API excludes (a timeout of 0) is refused here.
    const input = ev.target;
    if (input.hasAttribute && input.hasAttribute("data-exclusive-min")) {
      const bad = input.value !== "" && Number(input.value) <= Number(input.min);
      input.setCustomValidity(bad ? "Must be more than " + input.min : "");
    }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    const body = {
      idleSleepEnabled: $("idleSleepEnabled").checked,
      idleTimeout: Number($("idleTimeout").value),
      modelKeepAlive: Number($("modelKeepAlive").value),
      idleCheckInterval: Number($("idleCheckInterval").value),
      pricePerKwh: Number($("pricePerKwh").value),
    };
    try {
      await api("POST", "/admin/settings", body);
      state.settingsDirty = false;
      say("Settings saved");
    } catch (e) {
      say("Settings not saved: " + e.message, true);
    }
    await refresh();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupSettings();
  refresh();
  setInterval(refresh, POLL_MS);
  setInterval(tick, 1000);
});
