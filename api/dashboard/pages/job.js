// One job: progress, training and evaluation curves (plotly.js), sample grids with a step
// slider, the event log (warnings and their advice stand out), checkpoints, the spec, exports.
// Live from /v1/jobs/{id}/stream: progress and status as they come, and on each change the
// metrics after the last step drawn and any new sample grid.
import { download, drawPng, eventStream, getJson } from "../api.js";
import { fill, h, notice, number, seconds, table, tagList, when } from "../dom.js";

const CHARTS = [
  ["Losses", ["d_loss", "g_loss"]],
  ["Discriminator outputs: D(x), D(G(z))", ["p_real", "p_fake", "d_real", "d_fake"]],
  ["Gradient norms", ["d_grad_norm", "g_grad_norm"]],
  ["FID (against the real baseline)", ["fid", "fid_real_baseline"]],
  ["Class accuracy, coverage, precision, recall",
    ["class_accuracy", "coverage", "precision", "recall", "modes_captured"]],
];
const LABELS = { p_real: "D(x)", p_fake: "D(G(z))", d_real: "D(x) logit", d_fake: "D(G(z)) logit",
  fid_real_baseline: "real vs real (baseline)" };
const REDRAW_MS = 2000;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export async function render(root, { params: [jobId], signal }) {
  let job = await getJson(`/v1/jobs/${jobId}`, { signal });
  const base = `/v1/jobs/${jobId}`;
  const header = h("div", { class: "card" });
  const charts = h("div", { class: "charts" });
  const samples = h("div", { class: "card" }, h("h2", {}, "Samples"));
  const events = h("ol", { class: "events" });
  const checkpoints = h("div");
  root.append(header, charts,
    samples,
    h("div", { class: "card" }, h("h2", {}, "Event log"), events),
    h("div", { class: "card" }, h("h2", {}, "Checkpoints"), checkpoints),
    h("details", { class: "card" }, h("summary", {}, "Spec (resolved)"),
      h("pre", {}, JSON.stringify(job.spec, null, 2))));

  const act = (verb) => async () => {
    try {
      job = await getJson(`${base}/${verb}`, { method: "POST" });
      drawHeader();
    } catch (error) {
      header.append(notice(`${verb}: ${error.message}`));
    }
  };
  function drawHeader() {
    const p = job.progress;
    const can = (s) => s.includes(job.status);
    fill(header, 
      h("div", { class: "toolbar" },
        h("h1", {}, job.name || job.id), tagList(job.tags),
        can(["running"]) ? h("button", { onclick: act("pause") }, "Pause") : null,
        can(["paused"]) ? h("button", { onclick: act("resume") }, "Resume") : null,
        can(["queued", "running", "paused"])
          ? h("button", { class: "danger", onclick: act("cancel") }, "Cancel") : null,
        h("button", { onclick: () => download(`${base}/metrics.csv`, `${jobId}-metrics.csv`) },
          "metrics.csv"),
        h("button", { onclick: () => download(`${base}/tensorboard`, `${jobId}-tensorboard.zip`) },
          "TensorBoard zip"),
        job.model_id ? h("a", { class: "button", href: `#/models/${job.model_id}` },
          "Open its model") : null),
      h("p", {}, h("span", { class: `status ${job.status}`, "data-status": job.status }, job.status),
        job.phase ? h("span", { class: "phase" }, ` ${job.phase}`) : null,
        `  ·  ${job.id}  ·  created ${when(job.created_at)}`),
      h("div", { class: "progress-line" },
        h("progress", { max: p.total || 1, value: p.step, "data-step": p.step,
          "data-total": p.total }),
        h("span", {}, `step ${p.step} / ${p.total} · ${number(p.images_per_s)} images/s · ETA ${
          seconds(p.eta_s)}`)),
      job.error ? notice(`${job.error.code ?? "error"}: ${job.error.message ?? ""}`) : null,
      job.summary_metrics ? h("p", { class: "summary" }, Object.entries(job.summary_metrics)
        .filter(([, v]) => typeof v === "number")
        .map(([k, v]) => h("span", { class: "metric" }, `${k} ${number(v, 4)}`))) : null);
  }

  // --- curves: every series kept here, extended with what came after lastStep ---
  const series = {};
  let lastStep = null;
  const plots = CHARTS.map(([title]) => {
    const div = h("div", { class: "chart card" });
    charts.append(div);
    return { title, div };
  });
  // An evaluation of step N is written after step N's training row, so each refresh asks again
  // from the last step drawn (after_step = last - 1); points are kept by step.
  async function loadMetrics() {
    for (;;) {
      const query = lastStep === null ? "" : `?after_step=${Math.max(0, lastStep - 1)}`;
      const page = await getJson(`${base}/metrics${query}`, { signal });
      for (const [name, points] of Object.entries(page.data)) {
        series[name] ??= new Map();
        for (const point of points) series[name].set(pointStep(point), pointValue(point));
      }
      const advanced = page.last_step !== null && page.last_step !== lastStep;
      if (page.last_step !== null) lastStep = page.last_step;
      if (!page.has_more || !advanced) break;
    }
    CHARTS.forEach(([title, names], i) => {
      const traces = names.filter((n) => series[n]?.size).map((name) => ({
        x: [...series[name].keys()], y: [...series[name].values()],
        name: LABELS[name] ?? name, type: "scatter",
        mode: series[name].size > 40 ? "lines" : "lines+markers",
      }));
      const layout = { title: { text: title, font: { size: 14 } }, height: 260,
        margin: { l: 50, r: 10, t: 36, b: 30 },
        showlegend: true, legend: { orientation: "h", y: -0.25 } };
      if (!traces.length) {
        plots[i].div.replaceChildren(h("h3", {}, title), h("p", { class: "muted" }, "no points yet"));
        plots[i].drawn = false;
        return;
      }
      if (!plots[i].drawn) plots[i].div.replaceChildren();
      window.Plotly.react(plots[i].div, traces, layout, { displayModeBar: false, responsive: true });
      plots[i].drawn = true;
    });
  }

  // --- sample grids: a slider over the steps that have one ---
  const canvas = h("canvas", { class: "grid", "aria-label": "sample grid" });
  const slider = h("input", { type: "range", min: 0, max: 0, value: 0, name: "sample-step" });
  const stepLabel = h("span");
  let sampleSteps = [];
  const rowLabels = () => (job.spec.model?.conditioning ?? "none") !== "none"
    ? classNames : null;
  let classNames = null;
  slider.addEventListener("input", () => showSample(Number(slider.value)));
  samples.append(h("div", { class: "toolbar" }, h("label", {}, "step ", slider), stepLabel), canvas);
  async function showSample(index) {
    const step = sampleSteps[index];
    if (step === undefined) return;
    stepLabel.textContent = `step ${step} (${index + 1} of ${sampleSteps.length})`;
    await drawPng(canvas, `${base}/samples/${step}.png`, { rowLabels: rowLabels(), signal });
  }
  async function loadSamples() {
    const steps = [];
    let after = null;
    for (;;) {
      const page = await getJson(`${base}/samples?limit=100${after ? `&after=${after}` : ""}`,
        { signal });
      steps.push(...page.data.map((s) => s.step));
      if (!page.has_more || !page.data.length) break;
      after = page.data.at(-1).step;
    }
    steps.sort((a, b) => a - b);
    if (steps.length === sampleSteps.length) return;
    const atEnd = Number(slider.value) >= sampleSteps.length - 1;
    sampleSteps = steps;
    slider.max = String(Math.max(0, steps.length - 1));
    if (atEnd) slider.value = slider.max;
    await showSample(Number(slider.value));
  }

  // --- event log ---
  const seen = new Set();
  function addEvent(event) {
    if (seen.has(event.seq)) return;
    seen.add(event.seq);
    // a diagnostic reads "title: evidence. advice": the advice is set apart
    const split = event.level === "info" ? -1 : event.message.search(/\.\s+(?=[A-Z])/);
    const what = split < 0 ? event.message : event.message.slice(0, split + 1);
    const advice = split < 0 ? [] : [event.message.slice(split + 1).trim()];
    events.append(h("li", { class: `event ${event.level}`, "data-code": event.code },
      h("span", { class: "event-meta" }, `${event.step ?? "–"} · ${event.level} · ${event.code}`),
      h("span", {}, what),
      advice.length ? h("span", { class: "advice" }, advice.join(" ")) : null));
  }
  async function loadEvents() {
    let after = 0;
    for (;;) {
      const page = await getJson(`${base}/events?limit=100&after=${after}`, { signal });
      page.data.forEach(addEvent);
      if (!page.has_more || !page.data.length) break;
      after = page.data.at(-1).seq;
    }
  }
  async function loadCheckpoints() {
    const page = await getJson(`${base}/checkpoints?limit=100`, { signal });
    checkpoints.replaceChildren(page.data.length ? table(["Step", "Metrics", "Saved", ""],
      page.data.map((c) => h("tr", {}, h("td", {}, String(c.step)),
        h("td", {}, Object.entries(c.metrics ?? {}).map(([k, v]) => `${k} ${number(v, 4)}`).join(", ")),
        h("td", {}, when(c.created_at)), h("td", {}, c.best ? "best" : ""))))
      : h("p", { class: "muted" }, "none yet"));
  }

  if (job.dataset_id) {
    classNames = (await getJson(`/v1/datasets/${job.dataset_id}`, { signal })).class_names;
  } else if (job.spec.dataset?.builtin) {
    const all = await getJson("/v1/datasets?builtin=true", { signal });
    classNames = all.data.find((d) => d.name === job.spec.dataset.builtin)?.class_names ?? null;
  }
  drawHeader();
  await Promise.all([loadMetrics(), loadSamples(), loadEvents(), loadCheckpoints()]);
  if (FINISHED.has(job.status)) return;

  // --- live ---
  let pending = null;
  const refreshSoon = () => {
    pending ??= setTimeout(async () => {
      pending = null;
      await Promise.all([loadMetrics(), loadSamples(), loadCheckpoints()]).catch(() => {});
    }, REDRAW_MS);
  };
  signal.addEventListener("abort", () => clearTimeout(pending));
  try {
    for await (const { event, data } of eventStream(`${base}/stream`, signal)) {
      if (event === "event") addEvent(data);
      if (event === "progress") job = { ...job, progress: data };
      if (event === "status") job = { ...job, ...data };
      if (event === "progress" || event === "status") drawHeader();
      if (event === "metrics" || event === "event") refreshSoon();
    }
    job = await getJson(base, { signal });
    drawHeader();
    await Promise.all([loadMetrics(), loadSamples(), loadCheckpoints()]);
  } catch (error) {
    if (error.name !== "AbortError") header.append(notice(`live updates stopped: ${error.message}`));
  }
}

const pointStep = (point) => (Array.isArray(point) ? point[0] : point.step);
const pointValue = (point) => (Array.isArray(point) ? point[1] : point.value);
