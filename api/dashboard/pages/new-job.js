// New job: a dataset (builtin or uploaded), a preset and the main spec fields. Each input's
// name is its spec field path, so the `param` of a 422 marks the input it names.
import { ApiError, getJson, postJson } from "../api.js";
import { h, notice } from "../dom.js";

const FIELDS = [ // [spec path, label, input attributes]
  ["training.steps", "Steps", { type: "number", min: 1, value: 2000 }],
  ["training.batch_size", "Batch size", { type: "number", min: 2, value: 64 }],
  ["training.seed", "Seed", { type: "number", min: 0, value: 0 }],
  ["model.width", "Width (channels)", { type: "number", min: 1, placeholder: "default" }],
  ["model.latent_dim", "Latent size", { type: "number", min: 1, placeholder: "default" }],
  ["monitor.sample_every", "Sample grid every", { type: "number", min: 1, value: 500 }],
  ["monitor.eval_every", "Evaluate every", { type: "number", min: 1, value: 2000 }],
  ["monitor.checkpoint_every", "Checkpoint every", { type: "number", min: 1, value: 1000 }],
];
const CHOICES = [
  ["model.architecture", "Architecture", ["", "dcgan", "resnet", "mlp"]],
  ["model.conditioning", "Conditioning", ["", "none", "concat", "projection", "acgan"]],
  ["training.device", "Device", ["", "cpu", "cuda", "auto"]],
];
const METRICS = ["fid", "class_accuracy", "coverage", "precision_recall", "modes"];

export async function render(root, { signal }) {
  const [builtins, uploads, presets] = await Promise.all([
    getJson("/v1/datasets?builtin=true", { signal }),
    getJson("/v1/datasets?limit=100", { signal }),
    getJson("/v1/presets", { signal }),
  ]);
  const field = (path, label, input) => h("label", { "data-field": path }, label, input,
    h("small", { class: "field-error" }));
  const dataset = h("select", { name: "dataset", required: true },
    h("optgroup", { label: "Builtin" }, builtins.data.map((d) =>
      h("option", { value: `builtin:${d.name}` }, `${d.name} (${d.num_classes} classes)`))),
    uploads.data.length ? h("optgroup", { label: "Uploaded" }, uploads.data.map((d) =>
      h("option", { value: `id:${d.id}` }, `${d.name} (${d.n_images} images)`))) : null);
  const preset = h("select", { name: "preset" }, h("option", { value: "" }, "none"),
    presets.data.map((p) => h("option", { value: p.name, title: p.description }, p.name)));
  const presetHelp = h("small", { class: "muted" });
  preset.addEventListener("change", () => {
    const chosen = presets.data.find((p) => p.name === preset.value);
    presetHelp.textContent = chosen ? `${chosen.description} Sets ${JSON.stringify(chosen.fields)}` : "";
  });
  const message = h("div");
  const form = h("form", { class: "card spec-form", novalidate: true },
    h("h1", {}, "New job"),
    h("div", { class: "fields" },
      field("dataset", "Dataset", dataset),
      field("preset", "Preset", preset),
      field("name", "Name", h("input", { name: "name", placeholder: "optional" })),
      field("tags", "Tags", h("input", { name: "tags", placeholder: "comma, separated" })),
      CHOICES.map(([path, label, options]) => field(path, label, h("select", { name: path },
        options.map((o) => h("option", { value: o }, o || "default"))))),
      FIELDS.map(([path, label, attributes]) => field(path, label,
        h("input", { name: path, ...attributes })))),
    presetHelp,
    h("fieldset", { "data-field": "monitor.metrics" }, h("legend", {}, "Evaluations"),
      METRICS.map((m) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "metric", value: m, checked: m === "fid" }), m)),
      h("small", { class: "field-error" })),
    h("button", { type: "submit" }, "Start training"), message);
  root.append(form);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const marked of form.querySelectorAll(".invalid")) marked.classList.remove("invalid");
    for (const text of form.querySelectorAll(".field-error")) text.textContent = "";
    message.replaceChildren();
    try {
      const job = await postJson("/v1/jobs", specOf(form));
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const target = error.param && markField(form, error.param, error.message);
      message.replaceChildren(notice(target ? `Check ${error.param}: ${error.message}` : error.message));
    }
  });
}

function specOf(form) {
  const spec = {};
  const set = (path, value) => {
    const keys = path.split(".");
    let node = spec;
    for (const key of keys.slice(0, -1)) node = node[key] ??= {};
    node[keys.at(-1)] = value;
  };
  const [kind, value] = form.elements.dataset.value.split(/:(.*)/s);
  set("dataset", { [kind]: value });
  if (form.elements.preset.value) set("preset", form.elements.preset.value);
  if (form.elements.name.value.trim()) set("name", form.elements.name.value.trim());
  const tags = form.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.length) set("tags", tags);
  for (const [path] of CHOICES) if (form.elements[path].value) set(path, form.elements[path].value);
  for (const [path] of FIELDS) {
    const text = form.elements[path].value.trim();
    if (text !== "") set(path, Number(text));
  }
  set("monitor.metrics", [...form.querySelectorAll("input[name=metric]:checked")].map((c) => c.value));
  return spec;
}

// The input of `param` (or of its nearest parent field: "dataset.builtin" -> "dataset").
function markField(form, param, text) {
  for (let path = param; path; path = path.includes(".") ? path.replace(/\.[^.]*$/, "") : "") {
    const label = form.querySelector(`[data-field="${CSS.escape(path)}"]`);
    if (label) {
      label.classList.add("invalid");
      label.querySelector(".field-error").textContent = text;
      label.querySelector("input, select")?.focus();
      return label;
    }
  }
  return null;
}
