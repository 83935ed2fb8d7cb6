// One model: a generation playground (class, n, seed, truncation -> a grid from
// POST /v1/models/{id}/samples), a latent walk (a strip from POST /v1/models/{id}/interpolations,
// image models) and its export.
import { download, drawPng, getJson } from "../api.js";
import { h, notice, number } from "../dom.js";

export async function render(root, { params: [modelId], signal }) {
  const model = await getJson(`/v1/models/${modelId}`, { signal });
  const canvas = h("canvas", { class: "grid", "aria-label": "generated samples" });
  const message = h("div");
  const classChoice = h("select", { name: "class" },
    h("option", { value: "" }, model.class_names ? "every class (a row each)" : "unconditional"),
    (model.class_names ?? []).map((name) => h("option", { value: name }, name)));
  const form = h("form", { class: "card playground" },
    h("h2", {}, "Generate"),
    h("div", { class: "fields" },
      h("label", {}, "Class", classChoice),
      h("label", {}, "n (per class for every class)",
        h("input", { name: "n", type: "number", min: 1, max: 1024, value: 8 })),
      h("label", {}, "Seed", h("input", { name: "seed", type: "number", min: 0, value: 0 })),
      h("label", {}, "Truncation (blank: none)",
        h("input", { name: "truncation", type: "number", min: 0.05, max: 10, step: 0.05 }))),
    h("button", { type: "submit" }, "Generate"), message, canvas);
  root.append(
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, h("h1", {}, model.name || model.id),
        h("button", { onclick: () => download(`/v1/models/${modelId}/export`, `${modelId}.zip`) },
          "Download (export zip: safetensors, config, spec)"),
        h("a", { class: "button", href: `#/jobs/${model.job_id}` }, "Its job")),
      h("p", {}, `${model.image_shape.join("×")} · `,
        model.class_names ? `${model.class_names.length} classes · ` : "unconditional · ",
        Object.entries(model.summary_metrics ?? {}).filter(([, v]) => typeof v === "number")
          .map(([k, v]) => h("span", { class: "metric" }, ` ${k} ${number(v, 4)}`)))),
    form);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const n = Number(form.elements.n.value);
    const body = { seed: Number(form.elements.seed.value), format: "png_grid" };
    if (form.elements.truncation.value) body.truncation = Number(form.elements.truncation.value);
    let rowLabels = null;
    if (classChoice.value) {
      Object.assign(body, { class_names: [classChoice.value], n });
      rowLabels = null; // one class: the grid wraps its samples over several rows
    } else if (model.class_names) {
      body.per_class = n;
      rowLabels = model.class_names;
    } else {
      body.n = n;
    }
    message.replaceChildren();
    try {
      await drawPng(canvas, `/v1/models/${modelId}/samples`, { json: body, rowLabels, signal });
    } catch (error) {
      message.replaceChildren(notice(error.param ? `${error.param}: ${error.message}` : error.message));
    }
  });

  if (model.image_shape.length === 3) root.append(walkSection(model, signal));
}

// Two seeds (slerp) and/or two classes (the class embedding at fixed noise), as one strip.
function walkSection(model, signal) {
  const canvas = h("canvas", { class: "strip", "aria-label": "latent walk" });
  const message = h("div");
  const classes = (model.class_names ?? []).map((name) => h("option", { value: name }, name));
  const fromClass = h("select", { name: "from_class" }, classes.map((o) => o.cloneNode(true)));
  const toClass = h("select", { name: "to_class" },
    h("option", { value: "" }, "the same class"), classes);
  const form = h("form", { class: "card walk" },
    h("h2", {}, "Latent walk"),
    h("div", { class: "fields" },
      h("label", {}, "From seed",
        h("input", { name: "from_seed", type: "number", min: 0, value: 0 })),
      h("label", {}, "To seed (blank: the same)",
        h("input", { name: "to_seed", type: "number", min: 0, value: 1 })),
      model.class_names ? [h("label", {}, "From class", fromClass),
        h("label", {}, "To class", toClass)] : [],
      h("label", {}, "Frames",
        h("input", { name: "frames", type: "number", min: 2, max: 64, value: 8 })),
      h("label", {}, "Truncation (blank: none)",
        h("input", { name: "truncation", type: "number", min: 0.05, max: 10, step: 0.05 }))),
    h("button", { type: "submit" }, "Walk"), message, canvas);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { elements } = form;
    const body = { from_seed: Number(elements.from_seed.value),
      frames: Number(elements.frames.value), format: "png_strip" };
    if (elements.to_seed.value) body.to_seed = Number(elements.to_seed.value);
    if (elements.truncation.value) body.truncation = Number(elements.truncation.value);
    if (model.class_names) {
      body.from_class = fromClass.value;
      if (toClass.value) body.to_class = toClass.value;
    }
    message.replaceChildren();
    try {
      await drawPng(canvas, `/v1/models/${model.id}/interpolations`, { json: body, signal });
    } catch (error) {
      message.replaceChildren(notice(error.param ? `${error.param}: ${error.message}` : error.message));
    }
  });
  return form;
}
