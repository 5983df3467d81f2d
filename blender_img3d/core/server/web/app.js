// The page of blender_img3d's GPU server: a picture or prompt in, live progress, a 3D
// preview per variant and every file out, all through the same /v1 jobs API the CLI and
// the Blender add-on use.
//
// Every setting's bounds, default and preset values come from GET /v1/settings-schema
// (core/settings.py on the server): nothing here restates them. The token lives in
// sessionStorage (this tab only) and travels in the Authorization header, never in a URL;
// that is why the events stream is read with fetch() instead of EventSource, which can't
// send headers, and why result files are fetched here and handed on as blob: URLs.

const TOKEN_KEY = "img3d.token"; // sessionStorage
const JOBS_KEY = "img3d.jobs"; // localStorage: [{id, label, created}], newest first
const MAX_JOBS = 20;
const RETRY_MS = 2000;
const VIEWER_URL = "/static/vendor/model-viewer.min.js";
const NO_VIEWER =
  "No 3D preview: this server has no model-viewer script (on the server run " +
  "python3 vendor_install.py --dev, or start serve with --viewer-script FILE). " +
  "Every download below works.";
const METRICS = [
  ["vertices", "Vertices"],
  ["faces", "Faces"],
  ["components", "Pieces"],
  ["watertight", "Watertight"],
  ["genus", "Genus"],
  ["area", "Area (m²)"],
  ["volume", "Volume (m³)"],
  ["size", "Size (m)"],
];

let schema = null;
let pickedFile = null;
let viewer = Promise.resolve(false);
const jobs = new Map(); // id -> {id, label, created, final, card}

// --- HTTP ------------------------------------------------------------------------------
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) throw await httpError(response);
  return response;
}

async function httpError(response) {
  if (response.status === 401) {
    return new HttpError(
      401,
      "Not authorised: the server refused the token. Enter the token from the server's --token-file.",
    );
  }
  let text = "";
  try {
    text = (await response.json()).error || "";
  } catch (_) {
    // not JSON: a proxy's page; the status says enough
  }
  return new HttpError(response.status, text || `The server answered HTTP ${response.status}.`);
}

// An integer the user typed, written into the JSON as typed: seeds go up to 2^63 - 1,
// past what a JavaScript number holds exactly.
class RawNumber {
  constructor(text) {
    this.text = text;
  }
}

function toJson(value) {
  if (value instanceof RawNumber) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const items = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`);
    return `{${items.join(",")}}`;
  }
  return JSON.stringify(value);
}

// --- messages ----------------------------------------------------------------------------
function oneLine(text) {
  return String(text).replace(/\s+/g, " ").trim();
}

function showMessage(text) {
  document.getElementById("message").textContent = oneLine(text || "");
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// --- connecting: token, schema, viewer -----------------------------------------------
async function connect() {
  try {
    schema = await (await api("/v1/settings-schema")).json();
  } catch (error) {
    showMessage(error.message);
    if (error.status === 401) {
      document.getElementById("token-form").hidden = false;
      document.getElementById("token").focus();
    }
    return;
  }
  document.getElementById("token-form").hidden = true;
  document.getElementById("change-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
  showMessage("");
  renderSettings();
  document.getElementById("job-form").hidden = false;
  viewer = loadViewer(schema.viewer);
}

async function showServer() {
  const line = document.getElementById("server-line");
  try {
    const health = await (await fetch("/v1/health", { cache: "no-store" })).json();
    line.textContent = `Connected to blender_img3d ${health.version || ""} on this server.`;
  } catch (_) {
    line.textContent = "The server does not answer: is serve running?";
  }
}

async function loadViewer(available) {
  const note = document.getElementById("preview-note");
  if (available) {
    try {
      await import(VIEWER_URL);
      note.hidden = true;
      return true;
    } catch (_) {
      // fall through: say why there is no preview
    }
  }
  note.textContent = NO_VIEWER;
  note.hidden = false;
  return false;
}

// --- the form ------------------------------------------------------------------------------
function renderSettings() {
  const preset = document.getElementById("preset");
  preset.replaceChildren(
    ...Object.keys(schema.presets.values).map((name) =>
      element("option", { value: name, selected: name === schema.presets.default }, name),
    ),
  );
  document.getElementById("fields").replaceChildren(...schema.fields.map(renderField));
  document.getElementById("advanced").replaceChildren(...schema.advanced.map(renderField));
  const formats = document.getElementById("formats");
  formats.replaceChildren(
    element("legend", {}, "Formats"),
    ...schema.formats.map((fmt) =>
      element(
        "label",
        { title: fmt.description },
        element("input", {
          type: "checkbox",
          name: "format",
          value: fmt.suffix,
          checked: fmt.always,
          disabled: fmt.always,
        }),
        ` ${fmt.label} (${fmt.suffix})`,
      ),
    ),
  );
  applyPreset();
  showSource();
}

function renderField(field) {
  const id = `set-${field.name}`;
  const hint = element("span", { class: "hint", id: `${id}-hint` }, field.hint || "");
  const wrapper = element("div", { class: "field", "data-mode": field.mode || null });
  if (field.type === "boolean") {
    const box = element("input", {
      type: "checkbox",
      id,
      name: field.name,
      checked: field.default,
      "aria-describedby": hint.id,
    });
    wrapper.append(element("label", { for: id }, box, ` ${field.label}`), hint);
  } else if (field.type === "choice") {
    const select = element("select", { id, name: field.name, "aria-describedby": hint.id });
    for (const choice of field.choices) {
      select.append(
        element(
          "option",
          { value: choice.name, title: choice.description, selected: choice.name === field.default },
          choice.label,
        ),
      );
    }
    wrapper.append(element("label", { for: id }, field.label), select, hint);
  } else {
    const input = element("input", {
      type: "number",
      id,
      name: field.name,
      min: String(field.min),
      max: String(field.max),
      step: "1",
      value: String(field.default),
      inputmode: "numeric",
      "aria-describedby": hint.id,
    });
    wrapper.append(element("label", { for: id }, field.label), input, hint);
  }
  return wrapper;
}

function applyPreset() {
  const values = schema.presets.values[document.getElementById("preset").value] || {};
  for (const name of schema.presets.settings) {
    const input = document.getElementById(`set-${name}`);
    if (input && name in values) input.value = String(values[name]);
  }
}

function sourceMode() {
  return document.querySelector('input[name="source"]:checked').value;
}

function showSource() {
  const mode = sourceMode();
  document.getElementById("image-source").hidden = mode !== "image";
  document.getElementById("prompt-source").hidden = mode !== "prompt";
  for (const field of document.querySelectorAll("[data-mode]")) {
    field.hidden = field.dataset.mode !== mode;
  }
}

function pick(file) {
  if (!file) return;
  pickedFile = file;
  document.querySelector('input[name="source"][value="image"]').checked = true;
  showSource();
  const thumb = document.getElementById("image-thumb");
  if (thumb.src) URL.revokeObjectURL(thumb.src);
  thumb.src = URL.createObjectURL(file);
  thumb.alt = `The picked picture, ${file.name}`;
  thumb.hidden = false;
  document.getElementById("image-name").textContent = `${file.name} (${Math.ceil(file.size / 1024)} KB)`;
  showMessage("");
}

function settingValue(field) {
  const input = document.getElementById(`set-${field.name}`);
  if (field.type === "boolean") return input.checked;
  if (field.type === "choice") return input.value;
  const text = input.value.trim();
  if (/^-?\d+$/.test(text)) return new RawNumber(text);
  // Not a whole number: sent as typed, so the server's own check says what it must be.
  return text === "" || Number.isNaN(Number(text)) ? text : Number(text);
}

function collectSettings(stem) {
  const mode = sourceMode();
  const settings = {};
  for (const field of [...schema.fields, ...schema.advanced]) {
    if (field.mode && field.mode !== mode) continue;
    settings[field.name] = settingValue(field);
  }
  const suffixes = [...document.querySelectorAll('input[name="format"]:checked')].map((box) => box.value);
  settings.outputs = suffixes.map((suffix) => `${stem}${suffix}`);
  return settings;
}

async function submit(event) {
  event.preventDefault();
  const mode = sourceMode();
  let label;
  let options;
  if (mode === "image") {
    if (!pickedFile) {
      showMessage("Choose a picture first (or switch the source to Prompt).");
      return;
    }
    if (pickedFile.size > schema.max_upload_bytes) {
      const limit = (schema.max_upload_bytes / 2 ** 20).toFixed(1);
      showMessage(`${pickedFile.name} is larger than this server's limit of ${limit} MB: pick a smaller picture.`);
      return;
    }
    label = pickedFile.name;
    const stem = pickedFile.name.replace(/\.[^.]*$/, "") || "image";
    const body = new FormData();
    body.append("settings", toJson(collectSettings(stem)));
    body.append("image", pickedFile, pickedFile.name);
    options = { method: "POST", body };
  } else {
    const prompt = document.getElementById("prompt").value.trim();
    if (!prompt) {
      showMessage("Type a prompt first, e.g. 'a red wooden chair'.");
      return;
    }
    label = prompt;
    const stem = prompt.split(/\s+/).slice(0, 4).join("_");
    options = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: toJson({ prompt, settings: collectSettings(stem) }),
    };
  }
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    const accepted = await (await api("/v1/jobs", options)).json();
    showMessage("");
    const job = addJob({ id: accepted.id, label, created: Date.now() });
    update(job, accepted);
    follow(job);
  } catch (error) {
    showMessage(error.message);
  } finally {
    button.disabled = false;
  }
}

// --- jobs --------------------------------------------------------------------------------
function savedJobs() {
  try {
    const list = JSON.parse(localStorage.getItem(JOBS_KEY) || "[]");
    return Array.isArray(list) ? list.filter((j) => /^[0-9a-f]{32}$/.test(j.id)) : [];
  } catch (_) {
    return [];
  }
}

function saveJobs() {
  const list = [...jobs.values()]
    .sort((a, b) => b.created - a.created)
    .slice(0, MAX_JOBS)
    .map(({ id, label, created }) => ({ id, label, created }));
  localStorage.setItem(JOBS_KEY, JSON.stringify(list));
}

function addJob(saved, append = false) {
  const job = { ...saved, final: false, watching: false };
  const heading = element("h3", {}, job.label);
  const status = element("p", { class: "status", "aria-live": "polite" }, "Waiting for the server…");
  const bar = element("progress", { max: "1", value: "0", "aria-label": `Progress of ${job.label}` });
  const cancel = element("button", { type: "button", class: "secondary" }, "Cancel");
  const forget = element("button", { type: "button", class: "secondary" }, "Remove from list");
  const error = element("p", { class: "error", role: "alert" });
  const variants = element("div", { class: "variants" });
  const downloads = element("div", { class: "actions downloads" });
  const card = element(
    "li",
    { class: "job", "data-job": job.id },
    heading,
    status,
    bar,
    element("div", { class: "actions" }, cancel, forget),
    error,
    variants,
    downloads,
  );
  cancel.addEventListener("click", () => cancelJob(job));
  forget.addEventListener("click", () => forgetJob(job));
  job.card = { root: card, status, bar, cancel, error, variants, downloads };
  const list = document.getElementById("jobs");
  if (append) list.append(card);
  else list.prepend(card);
  document.getElementById("no-jobs").hidden = true;
  jobs.set(job.id, job);
  saveJobs();
  return job;
}

function forgetJob(job) {
  if (job.controller) job.controller.abort();
  job.final = true;
  job.card.root.remove();
  jobs.delete(job.id);
  saveJobs();
  document.getElementById("no-jobs").hidden = jobs.size > 0;
}

async function cancelJob(job) {
  job.card.cancel.disabled = true;
  try {
    update(job, await (await api(`/v1/jobs/${job.id}`, { method: "DELETE" })).json());
  } catch (error) {
    job.card.error.textContent = oneLine(error.message);
    job.card.cancel.disabled = false;
  }
}

function duration(seconds) {
  const whole = Math.ceil(seconds);
  return whole < 120 ? `${whole} s` : `${Math.round(whole / 60)} min`;
}

function describe(snapshot) {
  switch (snapshot.state) {
    case "queued":
      return snapshot.position ? `Queued: ${snapshot.position} job(s) ahead` : "Queued: next in line";
    case "running": {
      const phase = snapshot.phase ? snapshot.phase[0].toUpperCase() + snapshot.phase.slice(1) : "Starting";
      const step = snapshot.total ? `: step ${snapshot.step} of ${snapshot.total}` : "";
      const eta = typeof snapshot.eta === "number" ? `, about ${duration(snapshot.eta)} left` : "";
      return `Running. ${phase}${step}${eta}`;
    }
    case "finished":
      return "Finished.";
    case "cancelled":
      return "Cancelled.";
    case "failed":
      return "Failed.";
    default:
      return snapshot.state;
  }
}

function update(job, snapshot) {
  if (job.final) return;
  const { status, bar, cancel, error } = job.card;
  status.textContent = describe(snapshot);
  job.card.root.dataset.state = snapshot.state;
  if (typeof snapshot.fraction === "number") bar.value = snapshot.fraction;
  if (["finished", "failed", "cancelled"].includes(snapshot.state)) {
    job.final = true;
    cancel.hidden = true;
    if (snapshot.state === "finished") {
      bar.value = 1;
      showResult(job);
    } else if (snapshot.error) {
      error.textContent = oneLine(snapshot.error);
    }
  }
}

function parseFrame(frame) {
  const event = { id: null, data: "" };
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "id") event.id = value;
    else if (name === "data") event.data += value;
  }
  return event.data ? event : null;
}

// Follows the job's events stream until the job ends; resumes after the last event seen.
async function follow(job) {
  job.watching = true;
  let lastId = null;
  while (!job.final) {
    job.controller = new AbortController();
    try {
      const headers = lastId === null ? {} : { "Last-Event-ID": lastId };
      const response = await api(`/v1/jobs/${job.id}/events`, { headers, signal: job.controller.signal });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseFrame(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (!event) continue;
          if (event.id !== null) lastId = event.id;
          update(job, JSON.parse(event.data));
        }
      }
    } catch (error) {
      if (job.controller.signal.aborted) break;
      if (error.status === 404) {
        gone(job, error.message);
        break;
      }
      job.card.error.textContent = oneLine(error.message);
      if (error.status === 401) break;
    }
    if (!job.final) await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  job.watching = false;
}

function gone(job, message) {
  job.final = true;
  job.card.cancel.hidden = true;
  job.card.status.textContent = "No longer on the server.";
  job.card.error.textContent = oneLine(message);
}

// --- results -------------------------------------------------------------------------------
async function fetchBlob(name, job) {
  const response = await api(`/v1/jobs/${job.id}/files/${name}`);
  return response.blob();
}

function baseName(name) {
  return name.slice(name.lastIndexOf("/") + 1);
}

function downloadButton(job, label, fetcher, filename) {
  const button = element("button", { type: "button", class: "secondary", "data-file": filename }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const blob = await fetcher();
      const url = URL.createObjectURL(blob);
      const link = element("a", { href: url, download: filename, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      job.card.error.textContent = "";
    } catch (error) {
      job.card.error.textContent = oneLine(error.message);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function metricList(metrics) {
  const list = element("dl", { class: "metrics" });
  for (const [key, label] of METRICS) {
    if (!(key in metrics) || metrics[key] === null) continue;
    let value = metrics[key];
    if (typeof value === "boolean") value = value ? "yes" : "no";
    else if (Array.isArray(value)) value = value.map((v) => Number(v).toPrecision(3)).join(" × ");
    else if (typeof value === "number" && !Number.isInteger(value)) value = value.toPrecision(4);
    list.append(element("dt", {}, label), element("dd", {}, String(value)));
  }
  return list;
}

async function showResult(job) {
  const { variants, downloads, error } = job.card;
  let doc;
  try {
    doc = await (await api(`/v1/jobs/${job.id}/files/result.json`)).json();
  } catch (failure) {
    if (failure.status === 404) gone(job, failure.message);
    else error.textContent = oneLine(failure.message);
    return;
  }
  const hasViewer = await viewer;
  const count = (doc.metrics || []).length || 1;
  for (let index = 0; index < count; index += 1) {
    const files = doc.files.filter((file) => file.variant === index);
    const box = element("figure", { class: "variant", "data-variant": String(index) });
    const caption = element("figcaption", {}, element("h4", {}, count > 1 ? `Variant ${index + 1}` : "Result"));
    box.append(caption);
    const glb = files.find((file) => file.name.toLowerCase().endsWith(".glb"));
    if (hasViewer && glb) {
      const view = element("model-viewer", {
        "camera-controls": true,
        loading: "eager", // load now, not when scrolled into view: the files expire
        "touch-action": "pan-y",
        "interaction-prompt": "none",
        alt: `3D preview of ${job.label}${count > 1 ? `, variant ${index + 1}` : ""}`,
      });
      box.append(view);
      fetchBlob(glb.name, job)
        .then((blob) => {
          view.src = URL.createObjectURL(blob);
        })
        .catch((failure) => {
          error.textContent = oneLine(failure.message);
        });
    }
    box.append(metricList((doc.metrics || [])[index] || {}));
    const buttons = element("div", { class: "actions" });
    for (const file of files) {
      const name = baseName(file.name);
      buttons.append(downloadButton(job, `Download ${name}`, () => fetchBlob(file.name, job), name));
    }
    box.append(buttons);
    variants.append(box);
  }
  for (const file of doc.companions || []) {
    const name = baseName(file.name);
    downloads.append(downloadButton(job, `Download ${name}`, () => fetchBlob(file.name, job), name));
  }
  const zipName = `${job.id}.zip`;
  downloads.append(
    downloadButton(job, "Download everything (zip)", async () => (await api(`/v1/jobs/${job.id}/result`)).blob(), zipName),
  );
  job.card.root.dataset.ready = "true";
}

// Shows the jobs this browser sent (kept in localStorage), then asks the server about each.
async function restoreJobs(ask = true) {
  for (const saved of savedJobs()) if (!jobs.has(saved.id)) addJob(saved, true);
  if (!ask) return;
  for (const job of jobs.values()) {
    if (job.final || job.watching) continue;
    try {
      update(job, await (await api(`/v1/jobs/${job.id}`)).json());
      if (!job.final) follow(job);
    } catch (error) {
      if (error.status === 404) gone(job, error.message);
      else job.card.error.textContent = oneLine(error.message);
    }
  }
}

// --- wiring --------------------------------------------------------------------------------
function wire() {
  document.getElementById("job-form").addEventListener("submit", submit);
  document.getElementById("preset").addEventListener("change", applyPreset);
  for (const radio of document.querySelectorAll('input[name="source"]')) {
    radio.addEventListener("change", showSource);
  }
  document.getElementById("image").addEventListener("change", (event) => pick(event.target.files[0]));
  const zone = document.getElementById("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    pick(event.dataTransfer.files[0]);
  });
  // A file dropped beside the zone must not replace the page (and the job list) with itself.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      pick(file);
    }
  });
  document.getElementById("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    await connect();
    if (schema) await restoreJobs();
  });
  document.getElementById("change-token").addEventListener("click", () => {
    document.getElementById("token-form").hidden = false;
    document.getElementById("token").focus();
  });
}

async function start() {
  wire();
  showServer();
  await connect();
  await restoreJobs(schema !== null);
}

start();
