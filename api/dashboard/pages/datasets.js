// Datasets: the builtin ones and this account's uploads, each with its classes, images per
// class and a grid of real images; drop an .npz or a .zip of class folders to upload one.
import { drawPng, getJson, request } from "../api.js";
import { h, notice } from "../dom.js";

export async function render(root, { signal }) {
  const input = h("input", { type: "file", name: "file", accept: ".npz,.zip" });
  const status = h("div");
  const drop = h("label", { class: "dropzone", "data-testid": "dropzone" },
    h("strong", {}, "Drop an .npz pack or a .zip of class folders here"), " or choose a file ",
    input);
  const uploaded = h("div", { class: "datasets" });
  const builtin = h("div", { class: "datasets" });
  root.append(h("h1", {}, "Datasets"), drop, status,
    h("h2", {}, "Uploaded"), uploaded, h("h2", {}, "Builtin"), builtin);

  async function upload(file) {
    const body = new FormData();
    body.append("file", file);
    status.replaceChildren(notice(`Uploading ${file.name}…`, "info"));
    try {
      const row = await (await request("/v1/datasets", { method: "POST", body })).json();
      status.replaceChildren(notice(`Uploaded ${row.name}: ${row.n_images} images.`, "info"));
      await listUploaded();
    } catch (error) {
      status.replaceChildren(notice(`Upload refused: ${error.message}`));
    }
  }
  input.addEventListener("change", () => input.files[0] && upload(input.files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const [file] = event.dataTransfer.files;
    if (file) upload(file);
  });

  async function listUploaded() {
    const page = await getJson("/v1/datasets?limit=100", { signal });
    uploaded.replaceChildren(...(page.data.length ? page.data.map((d) =>
      datasetCard({ title: d.name, subtitle: `${d.id} · ${d.n_images} images · ${d.image_shape.join("×")}`,
        classNames: d.class_names, counts: d.class_counts, tags: d.tags,
        preview: `/v1/datasets/${d.id}/preview.png`, signal }))
      : [h("p", { class: "muted" }, "No uploads yet.")]));
  }
  const builtins = await getJson("/v1/datasets?builtin=true", { signal });
  builtin.replaceChildren(...builtins.data.map((d) => {
    const subtitle = d.kind === "paired" ? `${d.description} (shown as input, target pairs)`
      : d.description;
    const card = datasetCard({ title: d.name, subtitle, classNames: d.class_names,
      counts: null, preview: `/v1/datasets/builtin/${d.name}/preview.png`, signal,
      pairs: d.kind === "paired" });
    getJson(`/v1/datasets/builtin/${d.name}`, { signal })
      .then((detail) => card.showCounts(detail.class_counts))
      .catch((error) => card.append(notice(error.message)));
    return card;
  }));
  await listUploaded();
}

function datasetCard({ title, subtitle, classNames, counts, tags = [], preview, signal,
  pairs = false }) {
  const canvas = h("canvas", { class: "grid" });
  const classes = h("ul", { class: "classes" });
  const labels = h("span", { class: "tags" }, tags.map((t) => h("span", { class: "tag" }, t)));
  const card = h("div", { class: "card dataset", "data-dataset": title },
    h("h3", {}, title, " ", labels), h("p", { class: "muted" }, subtitle), classes, canvas);
  card.showCounts = (values) => classes.replaceChildren(...(classNames ?? []).map((name, i) =>
    h("li", {}, name, values ? h("small", {}, ` ${values[i]}`) : null)));
  card.showCounts(counts);
  if (!classNames) classes.append(h("li", {}, "unlabelled"));
  // a row a class, except for points (a scatter) and pairs (input, target side by side)
  const byClass = !pairs && !classNames?.[0]?.startsWith("mode");
  drawPng(canvas, preview, { rowLabels: byClass ? classNames : null, signal })
    .catch((error) => canvas.replaceWith(notice(error.message)));
  return card;
}
