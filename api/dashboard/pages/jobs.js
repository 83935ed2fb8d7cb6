// Jobs: newest first, filtered by status or tag; progress live from the SSE stream of the first
// few active jobs, the list itself refreshed every few seconds.
import { eventStream, getJson, request } from "../api.js";
import { fill, h, notice, number, seconds, tagList } from "../dom.js";

const STATUSES = ["", "queued", "running", "paused", "succeeded", "failed", "cancelled"];
const ACTIVE = new Set(["queued", "running", "paused"]);
const LIVE_STREAMS = 3; // a browser opens at most 6 connections to one server
const REFRESH_MS = 4000;

export async function render(root, { query, signal }) {
  const status = query.get("status") ?? "";
  const tag = query.get("tag") ?? "";
  const filter = h("select", { name: "status", onchange: () => go({ status: filter.value }) },
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s || "any status")));
  const go = (change) => {
    const next = new URLSearchParams({ status, tag, ...change });
    for (const [k, v] of [...next]) if (!v) next.delete(k);
    location.hash = `#/jobs${next.size ? `?${next}` : ""}`;
  };
  const body = h("tbody");
  const message = h("div");
  root.append(
    h("div", { class: "toolbar" }, h("h1", {}, "Jobs"), filter,
      tag ? h("button", { type: "button", onclick: () => go({ tag: "" }) }, `tag: ${tag} ✕`) : null,
      h("a", { class: "button", href: "#/new" }, "New job")),
    message,
    h("table", { class: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Images/s", "ETA", ""].map(
        (t) => h("th", {}, t)))),
      body));

  const rows = new Map(); // job id -> {row, update(job)}
  const streams = new Map(); // job id -> AbortController
  signal.addEventListener("abort", () => streams.forEach((c) => c.abort()));

  async function refresh() {
    const params = new URLSearchParams({ limit: "50" });
    if (status) params.set("status", status);
    if (tag) params.set("tag", tag);
    const page = await getJson(`/v1/jobs?${params}`, { signal });
    message.replaceChildren(page.data.length ? "" : notice("No jobs yet.", "info"));
    const rowsNow = page.data.map((job) => {
      if (!rows.has(job.id)) rows.set(job.id, jobRow(job, refresh));
      rows.get(job.id).update(job);
      return rows.get(job.id).row;
    });
    body.replaceChildren(...rowsNow);
    const live = page.data.filter((j) => ACTIVE.has(j.status)).slice(0, LIVE_STREAMS);
    for (const job of live) if (!streams.has(job.id)) follow(job.id);
  }

  async function follow(jobId) {
    const controller = new AbortController();
    streams.set(jobId, controller);
    signal.addEventListener("abort", () => controller.abort());
    try {
      for await (const { event, data } of eventStream(`/v1/jobs/${jobId}/stream`, controller.signal)) {
        const entry = rows.get(jobId);
        if (event === "progress") entry?.update({ progress: data });
        if (event === "status") entry?.update(data);
      }
    } catch (error) {
      if (error.name !== "AbortError") console.warn(`stream of ${jobId}:`, error.message);
    } finally {
      streams.delete(jobId);
    }
  }

  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

// A row that keeps the newest state it was given (list rows, stream status and progress).
function jobRow(first, changed) {
  let job = { ...first };
  const cells = {
    name: h("td"), status: h("td"), progress: h("td"), speed: h("td"), eta: h("td"),
    actions: h("td", { class: "actions" }),
  };
  const row = h("tr", { "data-job": first.id }, Object.values(cells));
  const act = (verb) => async () => {
    try {
      await request(`/v1/jobs/${job.id}/${verb}`, { method: "POST" });
      await changed();
    } catch (error) {
      alert(`${verb}: ${error.message}`);
    }
  };
  function update(change) {
    job = { ...job, ...change, progress: { ...job.progress, ...(change.progress ?? {}) } };
    const p = job.progress;
    fill(cells.name, 
      h("a", { href: `#/jobs/${job.id}` }, job.name || job.id),
      job.name ? h("small", {}, ` ${job.id}`) : null, " ", tagList(job.tags));
    fill(cells.status, h("span", { class: `status ${job.status}` }, job.status),
      job.phase && job.status === "running" ? h("small", {}, ` ${job.phase}`) : null);
    cells.progress.replaceChildren(
      h("progress", { max: p.total || 1, value: p.step }),
      h("small", {}, ` ${p.step} / ${p.total}`));
    cells.speed.textContent = number(p.images_per_s, 3);
    cells.eta.textContent = seconds(p.eta_s);
    const can = (s) => s.includes(job.status);
    fill(cells.actions, 
      can(["running"]) ? h("button", { onclick: act("pause") }, "Pause") : null,
      can(["paused"]) ? h("button", { onclick: act("resume") }, "Resume") : null,
      can(["queued", "running", "paused"])
        ? h("button", { class: "danger", onclick: act("cancel") }, "Cancel") : null,
      job.model_id ? h("a", { class: "button", href: `#/models/${job.model_id}` }, "Model") : null);
  }
  update({});
  return { row, update };
}
