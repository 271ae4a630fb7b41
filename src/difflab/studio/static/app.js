// difflab studio: plain JS, no build step. Every number on the page comes from the server's API.
"use strict";
const $ = (id) => document.getElementById(id);
let run = null;          // the selected run's summary
let samplers = {};       // sampler name -> its option names

function say(text) { const m = $("message"); m.textContent = text || ""; m.hidden = !text; }

async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(body)};
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({error: `the server answered ${r.status} ${r.statusText}`}));
  if (!r.ok) throw new Error(data.error || `the server answered ${r.status}`);
  return data;
}

function showTab(name) {
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll("section")) s.hidden = s.id !== `tab-${name}`;
  if (name === "inside") drawInside();
}

function fillSelect(select, names, value) {
  select.replaceChildren(...names.map((n) => new Option(n, n)));
  select.value = value;
}

async function loadRun(id) {
  say("");
  run = await api(`/api/runs/${encodeURIComponent(id)}`);
  $("run-name").textContent = run.name;
  const cond = run.num_classes ? `${run.num_classes} classes` : run.text ? "text prompts" : "unconditional";
  $("run-facts").textContent = `${run.parameters.toLocaleString()} parameters; data ${run.data_shape.join("x")}; `
    + `${cond}; checkpoint ${run.checkpoint}`;
  $("run-config").textContent = JSON.stringify(run.config, null, 2);
  $("run-loss").src = run.files["loss.png"] ? `/api/runs/${id}/loss.png` : "";
  $("run-preview").src = run.files["preview.png"] ? `/api/runs/${id}/preview.png` : "";
  const f = $("sample-form"), d = run.defaults;
  fillSelect(f.sampler, ["default", ...Object.keys(samplers)], d.sampler);
  for (const k of ["steps", "seed", "n", "guidance"]) f[k].value = d[k];
  f.options.value = d.options.join(", ");
  f.schedule.value = d.schedule;
  for (const el of document.querySelectorAll(".cond-class")) el.hidden = !run.num_classes;
  for (const el of document.querySelectorAll(".cond-text")) el.hidden = !run.text;
  for (const el of document.querySelectorAll(".cond-guidance")) el.hidden = !(run.num_classes || run.text);
  showOptions();
  $("inside-note").textContent = run.kind === "image"
    ? "x_t (top) and x0_hat (bottom) along a 20-step Euler grid, from noise to data"
    : "the learned score field at t, over the samples x_t of a 20-step Euler run";
  if (!$("tab-inside").hidden) drawInside();
}

function showOptions() {
  const name = $("sample-form").sampler.value;
  const opts = samplers[name];
  $("sampler-options").textContent = opts === undefined ? "" : opts.length ? `options: ${opts.join(", ")}` : "no options";
}

function splitOptions(text) { return text.split(/[,\s]+/).filter((o) => o); }

function formSetting() {
  const f = $("sample-form");
  const s = {sampler: f.sampler.value, steps: f.steps.value, schedule: f.schedule.value, seed: f.seed.value,
             n: f.n.value, options: splitOptions(f.options.value)};
  if (run.num_classes || run.text) s.guidance = f.guidance.value;
  if (run.num_classes && f.classes.value.trim()) s.classes = f.classes.value.split(/[,\s]+/).filter((c) => c);
  if (run.text) { s.prompt = f.prompt.value; s.negative = f.negative.value; }
  return s;
}

// Follow a job's server-sent events; onResult gets the result event.
function follow(job, bar, onResult) {
  return new Promise((resolve) => {
    const es = new EventSource(`/api/jobs/${job}/events`);
    es.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "progress") {
        bar.value = e.fraction;
        $("progress-text").textContent = `call ${e.calls}, t = ${e.t.toFixed(3)}` + (e.parts > 1 ? ` (setting ${e.part + 1} of ${e.parts})` : "");
        if (e.preview) $("live").src = e.preview;
      } else if (e.type === "result") { bar.value = 1; onResult(e); }
      else if (e.type === "error" || e.type === "cancelled") say(e.message);
      else if (e.type === "end") { es.close(); resolve(); }
    };
    es.onerror = () => { es.close(); resolve(); };
  });
}

async function generate(ev) {
  ev.preventDefault();
  say("");
  const button = $("generate");
  button.disabled = true;
  $("progress").value = 0;
  document.body.dataset.state = "running";
  try {
    const {job} = await api(`/api/runs/${run.id}/sample`, formSetting());
    await follow(job, $("progress"), (e) => {
      $("result").src = `${e.image}?v=${job}`;
      $("result-caption").textContent = `${e.label}: ${e.nfe} denoiser calls, ${e.wall_s.toFixed(2)} s`;
      $("download").href = e.image; $("download").hidden = false;
      $("command").textContent = e.command;
    });
  } catch (err) { say(err.message); }
  button.disabled = false;
  document.body.dataset.state = "idle";
}

function compareSettings() {
  const f = $("sample-form");
  return $("compare-settings").value.split("\n").map((l) => l.trim()).filter((l) => l).map((line) => {
    const [sampler, steps, ...rest] = line.split(/\s+/);
    const s = {sampler, steps, seed: f.seed.value, n: f.n.value, schedule: f.schedule.value,
               options: rest.filter((w) => w.includes("="))};
    const g = rest.find((w) => !w.includes("="));
    if (g !== undefined) s.guidance = g;
    return s;
  });
}

async function compare() {
  say("");
  $("compare").disabled = true;
  document.body.dataset.state = "running";
  $("compare-results").replaceChildren();
  try {
    const {job} = await api(`/api/runs/${run.id}/compare`, {settings: compareSettings()});
    await follow(job, $("compare-progress"), (e) => {
      $("compare-results").replaceChildren(...e.rows.map((row) => {
        const fig = document.createElement("figure");
        const img = new Image(); img.src = `${row.image}?v=${job}`; img.className = "compare-image";
        const cap = document.createElement("figcaption");
        cap.textContent = `${row.label}: NFE ${row.nfe}, ${row.wall_s.toFixed(2)} s`;
        fig.append(img, cap);
        return fig;
      }));
    });
  } catch (err) { say(err.message); }
  $("compare").disabled = false;
  document.body.dataset.state = "idle";
}

async function drawInside() {
  if (!run) return;
  const t = $("inside-t").value, img = $("inside-img"), want = `${run.id}:${t}`;
  $("inside-t-value").textContent = t;
  img.removeAttribute("src");
  img.dataset.ready = "";
  const prompt = run.text ? `&prompt=${encodeURIComponent($("sample-form").prompt.value)}` : "";
  const r = await fetch(`/api/runs/${run.id}/inside?t=${t}&seed=${$("sample-form").seed.value || 0}${prompt}`);
  if (!r.ok) { say((await r.json().catch(() => ({}))).error || `the server answered ${r.status}`); return; }
  const blob = await r.blob();
  if (`${run.id}:${$("inside-t").value}` !== want) return;  // a newer request replaced this one
  img.onload = () => { img.dataset.ready = want; };
  img.src = URL.createObjectURL(blob);
}

// ---- Edit: a picture, and a mask painted on a canvas of the picture's own pixel size (white = regenerate)
let editImage = null, masked = false;

function clearMask() {
  const c = $("edit-mask");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
  masked = false;
}

function paint(ev) {
  if (!(ev.buttons & 1) || !editImage) return;
  const c = $("edit-mask"), r = c.getBoundingClientRect();
  const size = Math.max(1, Math.round(c.width / 8));
  const x = Math.floor((ev.clientX - r.left) / r.width * c.width - size / 2);
  const y = Math.floor((ev.clientY - r.top) / r.height * c.height - size / 2);
  const g = c.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(x, y, size, size);
  masked = true;
}

function maskURL() {  // black = keep, white = regenerate, at the picture's pixel size
  const c = $("edit-mask"), out = document.createElement("canvas");
  out.width = c.width; out.height = c.height;
  const g = out.getContext("2d");
  g.fillStyle = "#000"; g.fillRect(0, 0, out.width, out.height); g.drawImage(c, 0, 0);
  return out.toDataURL("image/png");
}

function pickImage() {
  const file = $("edit-file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    editImage = reader.result;
    const img = $("edit-image");
    img.onload = () => { const c = $("edit-mask"); c.width = img.naturalWidth; c.height = img.naturalHeight; clearMask(); };
    img.src = editImage;
  };
  reader.readAsDataURL(file);
}

async function runEdit() {
  say("");
  if (!editImage) { say("pick a picture first (PNG or JPEG)"); return; }
  $("edit-run").disabled = true;
  document.body.dataset.state = "running";
  const s = {...formSetting(), n: $("edit-n").value, image: editImage, mask: masked ? maskURL() : null,
             strength: Number($("edit-strength").value), method: $("edit-method").value};
  try {
    const {job} = await api(`/api/runs/${run.id}/edit`, s);
    await follow(job, $("edit-progress"), (e) => {
      $("edit-result").src = `${e.image}?v=${job}`;
      $("edit-caption").textContent = `${e.label}: ${e.wall_s.toFixed(2)} s (the input first)`;
      $("edit-command").textContent = e.command;
    });
  } catch (err) { say(err.message); }
  $("edit-run").disabled = false;
  document.body.dataset.state = "idle";
}

async function start() {
  try {
    const info = await api("/api/samplers");
    samplers = info.samplers;
    fillSelect($("sample-form").schedule, info.schedules, "default");
    const runs = await api("/api/runs");
    fillSelect($("run"), runs.map((r) => r.id), runs[0].id);
    await loadRun(runs[0].id);
  } catch (err) { say(err.message); }
  document.body.dataset.state = "idle";
}

for (const b of document.querySelectorAll("nav button")) b.onclick = () => showTab(b.dataset.tab);
$("run").onchange = (e) => loadRun(e.target.value).catch((err) => say(err.message));
$("sample-form").sampler.onchange = showOptions;
$("sample-form").onsubmit = generate;
$("compare").onclick = compare;
$("inside-t").onchange = drawInside;
$("edit-file").onchange = pickImage;
$("edit-mask").onpointerdown = paint;
$("edit-mask").onpointermove = paint;
$("edit-clear").onclick = clearMask;
$("edit-run").onclick = runEdit;
$("edit-strength").oninput = () => { $("edit-strength-value").textContent = $("edit-strength").value; };
start();
