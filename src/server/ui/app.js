// ragafusion studio: the page over the JSON API (docs/server.md).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

let MODELS = [];

async function api(path, options = {}) {
  const r = await fetch(path, options);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
  if (!r.ok) {
    const e = new Error((body && body.error) || r.statusText);
    e.field = body && body.field;
    e.status = r.status;
    throw e;
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---- pages -------------------------------------------------------------

function showPage() {
  const name = (location.hash || "#generate").slice(1);
  const known = $$(".page").some((p) => p.id === "page-" + name);
  const page = known ? name : "generate";
  $$(".page").forEach((p) => { p.hidden = p.id !== "page-" + page; });
  $$("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  if (page === "history") loadHistory();
  if (page === "compare") loadReports();
}

// ---- start -------------------------------------------------------------

async function start() {
  window.addEventListener("hashchange", showPage);
  showPage();
  try {
    const health = await api("/api/health");
    $("#server-status").textContent = "ragafusion " + health.version;
  } catch (e) {
    $("#server-status").textContent = "server unreachable: " + e.message;
  }
  const models = await api("/api/models");
  MODELS = models.models;
  for (const sel of $$(".model-select")) {
    const want = sel.dataset.backend;
    const usable = MODELS.filter((m) => !want || m.backend === want);
    sel.replaceChildren(...usable.map((m) => el("option", { value: m.name, text: `${m.name} (${m.backend})` })));
    const form = sel.closest("form");
    if (!usable.length && form) {
      $("button[type=submit]", form).disabled = true;
      form.append(el("p", { class: "muted", text: `No ${want} model is loaded (ragafusion serve --model DIR).` }));
    }
  }
  const backends = [...new Set(MODELS.map((m) => m.backend))];
  for (const sel of $$(".backend-select")) {
    sel.replaceChildren(...backends.map((b) => el("option", { value: b, text: b })));
    sel.addEventListener("change", () => syncModelToBackend(sel));
    syncModelToBackend(sel);
  }
  await setUpBuilder();
  for (const form of $$(".job-form")) form.addEventListener("submit", submitForm);
  $("#history-refresh").addEventListener("click", loadHistory);
}

function syncModelToBackend(backendSelect) {
  const models = $(".model-select", backendSelect.closest("form"));
  for (const o of models.options) {
    const m = MODELS.find((x) => x.name === o.value);
    o.hidden = m && m.backend !== backendSelect.value;
  }
  const current = MODELS.find((x) => x.name === models.value);
  if (current && current.backend !== backendSelect.value) {
    const first = MODELS.find((x) => x.backend === backendSelect.value);
    if (first) models.value = first.name;
  }
}

// ---- caption builder ---------------------------------------------------

let chosenRaga = "";
let captionRequest = 0;

async function setUpBuilder() {
  const v = await api("/api/vocabulary");
  const fill = (sel, items) => sel.append(...items.map((i) => el("option", { value: i.name || i, text: i.name || i })));
  fill($("#b-tala"), v.talas);
  fill($("#b-segment"), v.segments);
  fill($("#b-instrument"), v.instruments);
  fill($("#b-shruti"), v.shrutis);
  const search = $("#raga-search");
  const list = $("#raga-suggestions");
  let timer = null;
  let asked = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = search.value.trim();
      const mine = ++asked;
      if (!q) { list.hidden = true; chosenRaga = ""; buildCaption(); return; }
      const found = await api("/api/vocabulary/ragas?limit=8&q=" + encodeURIComponent(q));
      if (mine !== asked) return; // typed on since
      list.replaceChildren(...found.ragas.map((r) => el("li", {
        text: r.aliases.length ? `${r.name} — ${r.aliases.slice(0, 3).join(", ")}` : r.name,
        onclick: () => { chosenRaga = r.name; search.value = r.name; list.hidden = true; buildCaption(); },
      })));
      list.hidden = !found.ragas.length;
    }, 150);
  });
  for (const id of ["#b-tala", "#b-segment", "#b-instrument", "#b-shruti", "#b-text"]) {
    $(id).addEventListener("input", buildCaption);
  }
}

async function buildCaption() {
  const q = new URLSearchParams();
  if (chosenRaga) q.set("raga", chosenRaga);
  for (const [key, id] of [["tala", "#b-tala"], ["segment", "#b-segment"], ["instrument", "#b-instrument"], ["shruti", "#b-shruti"], ["text", "#b-text"]]) {
    if ($(id).value) q.set(key, $(id).value);
  }
  const note = $("#builder-note");
  const mine = ++captionRequest;
  try {
    const c = await api("/api/caption?" + q);
    if (mine !== captionRequest) return; // a later change has its own answer
    if (c.caption) $("#generate-prompt").value = c.caption;
    note.textContent = chosenRaga ? "Caption built; edit it freely." : "Pick a raga to build a caption in the words the model knows.";
    note.classList.remove("error");
  } catch (e) {
    if (mine !== captionRequest) return;
    note.textContent = e.message;
    note.classList.add("error");
  }
}

// ---- jobs --------------------------------------------------------------

async function uploadFile(file) {
  const form = new FormData();
  form.append("file", file);
  return api("/api/uploads", { method: "POST", body: form });
}

async function formBody(form) {
  const body = { kind: form.dataset.kind };
  for (const input of $$("input[name], select[name], textarea[name]", form)) {
    if (input.closest(".builder")) continue;
    if (input.type === "checkbox") {
      if (input.checked) body[input.name] = true;
      continue;
    }
    const v = input.value.trim();
    if (v === "") continue;
    body[input.name] = input.type === "number" || input.dataset.type === "number" ? Number(v) : v;
  }
  for (const input of $$("input[data-upload]", form)) {
    const field = input.dataset.upload;
    if (input.files.length) {
      const up = await uploadFile(input.files[0]);
      body[field] = up.id;
    } else if (form.dataset["reuse_" + field]) {
      body[field] = form.dataset["reuse_" + field];
    }
  }
  if (body.kind === "interpolate") {
    body.from = `${body.from_prompt}:${body.from_seed ?? 0}`;
    body.to = `${body.to_prompt}:${body.to_seed ?? 0}`;
    for (const k of ["from_prompt", "from_seed", "to_prompt", "to_seed"]) delete body[k];
  }
  return body;
}

async function submitForm(event) {
  event.preventDefault();
  const form = event.target;
  const results = $(".results", form.closest(".page"));
  const button = $("button[type=submit]", form);
  $$(".field-error", form).forEach((e) => e.remove());
  button.disabled = true;
  try {
    const body = await formBody(form);
    const { id } = await api("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    results.prepend(jobCard(id, body));
  } catch (e) {
    const input = e.field && $(`[name="${e.field}"], [data-upload="${e.field}"]`, form);
    const msg = el("p", { class: "error field-error", text: e.message });
    if (input) input.closest("label").after(msg); else form.append(msg);
  } finally {
    button.disabled = false;
  }
}

function describe(body) {
  if (body.kind === "interpolate") return `${body.from} → ${body.to}`;
  if (body.kind === "analyze") return `analysis of ${body.input}`;
  if (body.kind === "score-video") return `${body.prompt} over ${body.video}`;
  return body.prompt || (body.continue ? "continuation" : body.kind);
}

function jobCard(id, body) {
  const card = $("#job-card").content.firstElementChild.cloneNode(true);
  card.dataset.job = id;
  $(".title", card).textContent = `#${id} ${body.kind}: ${describe(body)}`;
  const state = $(".state", card);
  const bar = $("progress", card);
  const stage = $(".stage", card);
  const cancel = $(".cancel", card);
  cancel.addEventListener("click", () => api(`/api/jobs/${id}`, { method: "DELETE" }).catch(() => {}));
  const setState = (s) => { state.textContent = s; state.className = "state " + s; };
  setState("queued");
  const shown = new Set();
  const events = new EventSource(`/api/jobs/${id}/events`);
  const finish = () => { events.close(); cancel.hidden = true; };
  events.addEventListener("queued", () => setState("queued"));
  events.addEventListener("running", () => setState("running"));
  events.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    setState("running");
    bar.value = p.fraction;
    stage.textContent = p.total ? `${p.stage} ${p.step}/${p.total}` : p.stage;
  });
  events.addEventListener("output", (e) => showFile(card, JSON.parse(e.data), shown));
  events.addEventListener("message", (e) => {
    $(".media", card).before(el("p", { class: "muted note", text: JSON.parse(e.data).text }));
  });
  events.addEventListener("done", async (e) => {
    const d = JSON.parse(e.data);
    setState("done");
    bar.value = 1;
    stage.textContent = "";
    for (const f of d.files) showFile(card, f, shown);
    showDownloads(card, id, d.files);
    finish();
  });
  events.addEventListener("failed", (e) => {
    setState("failed");
    const err = $(".error", card);
    err.hidden = false;
    err.textContent = JSON.parse(e.data).error;
    finish();
  });
  events.addEventListener("cancelled", () => { setState("cancelled"); finish(); });
  return card;
}

// One figure per output stem: its spectrogram above its player.
function outputFigure(card, name) {
  const stem = name.replace(/\.[^.]+$/, "");
  const media = $(".media", card);
  let fig = $$("figure", media).find((f) => f.dataset.stem === stem);
  if (!fig) {
    fig = el("figure", { "data-stem": stem }, el("div", { class: "picture" }), el("div", { class: "player" }), el("figcaption", { text: stem }));
    media.append(fig);
  }
  return fig;
}

function showFile(card, file, shown) {
  if (shown.has(file.name)) return;
  if (file.name.endsWith(".wav")) {
    shown.add(file.name);
    $(".player", outputFigure(card, file.name)).append(el("audio", { controls: "", preload: "auto", src: file.url }));
  } else if (/\.(mp4|webm|mov|mkv)$/.test(file.name)) {
    shown.add(file.name);
    $(".player", outputFigure(card, file.name)).append(el("video", { controls: "", preload: "auto", src: file.url, class: "scored" }));
  } else if (file.name.endsWith(".png")) {
    shown.add(file.name);
    $(".picture", outputFigure(card, file.name)).append(el("img", { src: file.url, alt: file.name, class: "spectrogram" }));
  } else if (/\.(mp4|webm|mov|mkv)\.json$/.test(file.name)) {
    shown.add(file.name);
    api(file.url).then((s) => {
      const e = s.loudness.encoded;
      $(".facts", card).replaceChildren(el("p", { text: `${e.integrated_lufs.toFixed(1)} LUFS (target ${s.loudness.target_lufs}), true peak ${e.true_peak_dbtp.toFixed(1)} dBTP · music ${s.section_s[0].toFixed(2)}–${s.music_end_s.toFixed(2)} s of ${s.video_duration_s.toFixed(2)} s${s.reused_music ? " · music reused" : ""}` }));
    });
  } else if (file.name === "analysis.json") {
    shown.add(file.name);
    api(file.url).then((a) => showAnalysis($(".facts", card), a));
  }
}

function showDownloads(card, id, files) {
  const box = $(".files", card);
  box.replaceChildren(el("span", { class: "muted", text: "Download: " }),
    ...files.map((f) => el("a", { href: f.url, download: f.name, text: `${f.name} (${Math.ceil(f.bytes / 1024)} kB)` })));
}

function showAnalysis(box, a) {
  const t = a.tonic;
  const rows = a.top.map(([raga, p], i) => el("tr", {}, el("td", { text: String(i + 1) }), el("td", { text: raga }), el("td", { text: (100 * p).toFixed(1) + "%" })));
  const facts = [
    el("p", { text: `Tonic ${t.hz.toFixed(1)} Hz (${t.given ? "given" : "estimated"}, confidence ${t.confidence.toFixed(2)}) · ${a.duration_s.toFixed(1)} s · voiced ${(100 * a.voiced_fraction).toFixed(0)}%` }),
    el("table", { class: "top" }, el("thead", {}, el("tr", {}, el("th", { text: "#" }), el("th", { text: `Raga (${a.classifier})` }), el("th", { text: "p" }))), el("tbody", {}, ...rows)),
  ];
  if (a.adherence) {
    const m = a.adherence.membership;
    facts.push(el("p", { text: `Adherence to ${a.adherence.raga}: ${(100 * m.in_scale_ratio).toFixed(1)}% of held notes in the scale (chance ${(100 * m.chance_level).toFixed(1)}%), template rank ${a.adherence.template_rank}` }));
  }
  box.replaceChildren(...facts);
}

// ---- history -----------------------------------------------------------

async function loadHistory() {
  const { jobs } = await api("/api/jobs");
  const rows = jobs.map((j) => el("tr", {},
    el("td", { text: String(j.id) }),
    el("td", { text: j.kind }),
    el("td", {}, el("span", { class: "state " + j.state, text: j.state })),
    el("td", { class: "settings", text: describe(j.settings) }),
    el("td", {}, ...j.files.map((f) => el("a", { href: f.url, download: f.name, text: f.name }))),
    el("td", {},
      el("button", { type: "button", text: "Use these settings again", onclick: () => reuse(j) }),
      ...(["interrupted", "cancelled", "failed"].includes(j.state) && j.kind !== "analyze"
        ? [el("button", { type: "button", class: "resume", text: "Resume", onclick: () => resume(j) })] : [])),
  ));
  $("#history-table tbody").replaceChildren(...rows);
}

// Runs an ended job again in its folder; its card shows on its page.
async function resume(job) {
  try {
    await api(`/api/jobs/${job.id}/resume`, { method: "POST" });
    location.hash = "#" + PAGE_OF[job.kind];
    $(".results", $("#page-" + PAGE_OF[job.kind])).prepend(jobCard(job.id, job.settings));
  } catch (e) {
    alert(e.message);
  }
}

const FORM_OF = { "generate": "#generate-form", "interpolate": "#interpolate-form", "audio-to-audio": "#a2a-form", "analyze": "#inspect-form", "score-video": "#score-video-form" };
const PAGE_OF = { "generate": "generate", "interpolate": "interpolate", "audio-to-audio": "audio-to-audio", "analyze": "inspect", "score-video": "score-video" };

function reuse(job) {
  const s = { ...job.settings };
  let formSel = FORM_OF[job.kind];
  if (job.kind === "generate" && s.continue) { formSel = "#continue-form"; }
  const form = $(formSel);
  if (job.kind === "interpolate") {
    for (const [end, text] of [["from", s.from], ["to", s.to]]) {
      const at = String(text).lastIndexOf(":");
      s[end + "_prompt"] = String(text).slice(0, at);
      s[end + "_seed"] = String(text).slice(at + 1);
    }
  }
  for (const input of $$("input[name], select[name], textarea[name]", form)) {
    if (input.type === "hidden") continue;
    if (input.type === "checkbox") input.checked = !!s[input.name];
    else if (s[input.name] !== undefined) input.value = s[input.name];
    else if (input.tagName !== "SELECT") input.value = "";
  }
  for (const input of $$("input[data-upload]", form)) {
    const field = input.dataset.upload;
    if (s[field]) { form.dataset["reuse_" + field] = s[field]; input.required = false; }
  }
  location.hash = "#" + PAGE_OF[job.kind];
}

// ---- compare reports ---------------------------------------------------

async function loadReports() {
  const { reports } = await api("/api/reports");
  const list = $("#report-list");
  if (!reports.length) {
    list.replaceChildren(el("li", { class: "muted", text: "No report.html found." }));
    return;
  }
  list.replaceChildren(...reports.map((r) => el("li", {}, el("a", {
    href: "#compare", text: r.path,
    onclick: (e) => { e.preventDefault(); $("#report-frame").src = `/api/reports/${r.id}`; },
  }))));
}

document.addEventListener("DOMContentLoaded", start);
