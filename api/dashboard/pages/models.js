// Models: the generators of succeeded jobs.
import { getJson } from "../api.js";
import { h, notice, number, table, tagList, when } from "../dom.js";

export async function render(root, { signal }) {
  const page = await getJson("/v1/models?limit=100", { signal });
  root.append(h("h1", {}, "Models"), page.data.length
    ? table(["Model", "Classes", "Shape", "FID", "Trained by", "Created"], page.data.map((m) =>
      h("tr", {},
        h("td", {}, h("a", { href: `#/models/${m.id}` }, m.name || m.id), " ", tagList(m.tags)),
        h("td", {}, m.class_names ? m.class_names.join(", ") : "unconditional"),
        h("td", {}, m.image_shape.join("×")),
        h("td", {}, number(m.summary_metrics?.fid, 4)),
        h("td", {}, h("a", { href: `#/jobs/${m.job_id}` }, m.job_id)),
        h("td", {}, when(m.created_at)))))
    : notice("No models yet: a job that succeeds makes one.", "info"));
}
