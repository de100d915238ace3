// The Levitate console's one script, embedded in the binary: it only refreshes what the server rendered.
// Every page works without it. It polls the overview's numbers and keeps reset countdowns ticking.
"use strict";

function durationText(seconds) {
  if (seconds >= 3600) return Math.floor(seconds / 3600) + "h " + String(Math.floor(seconds % 3600 / 60)).padStart(2, "0") + "m";
  if (seconds >= 60) return Math.floor(seconds / 60) + "m " + String(seconds % 60).padStart(2, "0") + "s";
  return seconds + "s";
}

function tickCountdowns() {
  const now = Date.now();
  for (const el of document.querySelectorAll(".countdown[data-until]")) {
    const left = Math.max(0, Math.floor((Number(el.dataset.until) - now) / 1000));
    el.textContent = durationText(left);
  }
}

async function pollOverview(section) {
  try {
    const response = await fetch(section.dataset.poll, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 200) {
      const numbers = await response.json();
      for (const el of document.querySelectorAll("[data-field]")) {
        const value = numbers[el.dataset.field];
        if (value !== undefined) el.textContent = String(value);
      }
      document.body.dataset.refreshed = String(Date.now());
    } else if (response.redirected || response.status === 401 || response.status === 403) {
      window.location = "/console/login";
    }
  } catch (e) {
    // The gateway is restarting or the network is down: try again at the next tick.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setInterval(tickCountdowns, 1000);
  const section = document.querySelector("[data-poll]");
  if (section) {
    pollOverview(section);
    setInterval(() => pollOverview(section), 3000);
  }
});
