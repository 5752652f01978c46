// textgate's web UI: the few things a page does by itself. Everything works without it,
// except the live parts: the compose counter, local send times, and statuses that update.
"use strict";

const csrf = () => document.querySelector("main")?.dataset.csrf || "";

// Compose: the count of characters, parts and encoding, as the server itself counts them.
function composeCounter() {
  const form = document.getElementById("compose");
  if (!form) return;
  const body = document.getElementById("message");
  const to = document.getElementById("to");
  const out = document.getElementById("count");
  const check = document.getElementById("to-check");
  let timer = null;
  let seq = 0;
  async function update() {
    const mine = ++seq;
    try {
      const r = await fetch("/compose/count", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify({ body: body.value, to: to.value }),
      });
      if (!r.ok || mine !== seq) return;
      const c = await r.json();
      const enc = c.encoding === "ucs2" ? "Unicode (UCS-2)" : "GSM 7-bit";
      let text = `${c.chars} characters · ${c.parts} part${c.parts === 1 ? "" : "s"} · ${enc}`;
      if (c.ucs2_because.length) text += ` because of ${c.ucs2_because.join(" ")}`;
      if (c.too_long) text += ` · too long: the most is ${c.max_parts} parts`;
      out.textContent = text;
      out.dataset.parts = c.parts;
      out.dataset.encoding = c.encoding;
      const notes = [];
      if (c.invalid.length) notes.push(`Not numbers: ${c.invalid.join(", ")}`);
      if (c.opted_out.length) notes.push(`Opted out (will fail): ${c.opted_out.join(", ")}`);
      check.textContent = notes.join(". ");
    } catch (_) { /* offline: the server still checks on send */ }
  }
  const soon = () => { clearTimeout(timer); timer = setTimeout(update, 120); };
  body.addEventListener("input", soon);
  to.addEventListener("input", soon);
  update();
  // The local date and time of "Send at", as an RFC 3339 time with its offset.
  const at = document.getElementById("send-at");
  const hidden = document.getElementById("schedule-at");
  form.addEventListener("submit", () => {
    hidden.value = at.value ? new Date(at.value).toISOString() : "";
  });
}

// Live statuses: rows with a data-id whose status is not final are asked for every few
// seconds until every one is final.
function liveStatuses() {
  const cells = () => [...document.querySelectorAll("[data-id] .status[data-final='false']")];
  if (!cells().length) return;
  async function poll() {
    const pending = cells();
    if (!pending.length) return;
    const ids = pending.map((c) => c.closest("[data-id]").dataset.id).slice(0, 200);
    try {
      const r = await fetch(`/outbox/status?ids=${ids.join(",")}`, { headers: { Accept: "application/json" } });
      if (r.ok) {
        const all = await r.json();
        for (const c of pending) {
          const s = all[c.closest("[data-id]").dataset.id];
          if (!s) continue;
          c.textContent = s.label;
          c.className = `status status-${s.status}`;
          c.dataset.final = String(s.final);
          const dev = c.closest("tr")?.querySelector(".device");
          if (dev && s.device) dev.textContent = s.device;
        }
      }
    } catch (_) { /* try again */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  composeCounter();
  liveStatuses();
});
