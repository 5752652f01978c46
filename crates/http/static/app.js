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
}

// "Send at" fields: the local date and time, sent as an RFC 3339 time in the hidden field
// the input names.
function localTimes() {
  for (const at of document.querySelectorAll("input[type='datetime-local'][data-for]")) {
    const hidden = document.getElementById(at.dataset.for);
    at.form?.addEventListener("submit", () => {
      hidden.value = at.value ? new Date(at.value).toISOString() : "";
    });
  }
}

// The bulk form's Check: the dry run's report replaces the old one in place, so the chosen
// file stays chosen for Start.
function bulkCheck() {
  const form = document.getElementById("bulk");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    if (ev.submitter?.value !== "check") return;
    ev.preventDefault();
    const data = new FormData(form);
    data.set("action", "check");
    const report = document.getElementById("report");
    report.textContent = "Checking…";
    try {
      const r = await fetch("/jobs/new", { method: "POST", body: data });
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const fresh = doc.getElementById("report");
      const error = doc.querySelector("main .error");
      report.replaceChildren(...(fresh ? [...fresh.childNodes] : []));
      if (error) report.prepend(error);
    } catch (e) {
      report.textContent = `The check could not be made: ${e}`;
    }
  });
}

// A job's page follows the job until it ends; a change of state reloads it (its buttons
// change with it).
function jobProgress() {
  const box = document.getElementById("job");
  if (!box) return;
  const id = box.dataset.job;
  const set = (key, v) => { const el = document.getElementById(key); if (el) el.textContent = v; };
  async function poll() {
    try {
      const r = await fetch(`/jobs/${id}/progress`, { headers: { Accept: "application/json" } });
      if (r.ok) {
        const p = await r.json();
        if (p.state !== box.dataset.state) { location.reload(); return; }
        set("job-total", p.total);
        set("job-accepted", p.accepted);
        set("job-rejected", p.rejected);
        set("job-segments", p.segments);
        set("job-counts", p.counts.map(([s, n]) => `${s}: ${n}`).join(" · "));
        const bar = document.getElementById("job-progress");
        if (bar) { bar.value = p.sent_share; bar.textContent = `${p.sent_share}%`; }
      }
    } catch (_) { /* try again */ }
    if (!["done", "cancelled", "failed"].includes(box.dataset.state)) setTimeout(poll, 1500);
  }
  setTimeout(poll, 1000);
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
  localTimes();
  bulkCheck();
  jobProgress();
  liveStatuses();
});
