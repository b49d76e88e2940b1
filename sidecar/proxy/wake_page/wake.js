// siesta's waking page: polls the service's wake status on this same origin and loads the
// original URL (this page's own) once the service is ready. No token is needed or sent: the
// status says only the service's state.
"use strict";
(() => {
  const main = document.getElementById("siesta-wake");
  const service = main.dataset.service;
  const expected = parseFloat(main.dataset.expected);
  const progress = document.getElementById("progress");
  const message = document.getElementById("message");
  const retry = document.getElementById("retry");
  const started = Date.now();
  let stopped = false;

  if (Number.isFinite(expected) && expected > 0) {
    progress.max = expected;
    progress.value = 0;
  }

  retry.addEventListener("click", () => location.reload());

  function fail(text) {
    stopped = true;
    message.textContent = text;
    message.className = "error";
    progress.hidden = true;
    retry.hidden = false;
    retry.focus();
  }

  async function poll() {
    if (stopped) return;
    const waited = (Date.now() - started) / 1000;
    if (Number.isFinite(expected) && expected > 0) progress.value = Math.min(waited, expected);
    try {
      const res = await fetch("/.siesta/wake-status",
                              {cache: "no-store", headers: {Accept: "application/json"}});
      const status = await res.json();
      if (status.ready) {
        stopped = true;
        message.textContent = `${service} is ready; loading…`;
        location.reload();
        return;
      }
      if (status.state === "error") {
        fail(`${service} could not be woken. Try again, or ask its administrator.`);
        return;
      }
      if (status.state === "stopped" && waited > 5) {
        // The wake this page was served for is over and the service is down: ask again.
        stopped = true;
        location.reload();
        return;
      }
      message.textContent = `Waiting for ${service} (${Math.round(waited)} s so far)…`;
    } catch (e) {
      message.textContent = `Waiting for ${service} (${Math.round(waited)} s so far)…`;
    }
    setTimeout(poll, 500);
  }
  setTimeout(poll, 300);
})();
