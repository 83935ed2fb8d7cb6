// The hash router: each page is a module in pages/ with `render(root, {params, query, signal})`;
// `signal` aborts when the person leaves the page (its streams and timers stop with it).
import { apiKey } from "./api.js";
import { notice } from "./dom.js";
import * as datasets from "./pages/datasets.js";
import * as job from "./pages/job.js";
import * as jobs from "./pages/jobs.js";
import * as model from "./pages/model.js";
import * as models from "./pages/models.js";
import * as newJob from "./pages/new-job.js";

const ROUTES = [
  [/^\/jobs\/([\w-]+)$/, job],
  [/^\/jobs$/, jobs],
  [/^\/new$/, newJob],
  [/^\/datasets$/, datasets],
  [/^\/models\/([\w-]+)$/, model],
  [/^\/models$/, models],
];

const root = document.getElementById("page");
const forgetKey = document.getElementById("forget-key");
let leaving = new AbortController();

function askForKey() {
  const form = document.getElementById("key-form").content.firstElementChild.cloneNode(true);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey.set(form.elements.key.value);
    show();
  });
  root.replaceChildren(form);
  form.elements.key.focus();
}

async function show() {
  leaving.abort();
  leaving = new AbortController();
  forgetKey.hidden = !apiKey.get();
  if (!apiKey.get()) return askForKey();
  const [path, queryText = ""] = (location.hash.slice(1) || "/jobs").split("?");
  const found = ROUTES.map(([pattern, page]) => [path.match(pattern), page]).find(([m]) => m);
  if (!found) return root.replaceChildren(notice(`No page at ${path}`));
  const [match, page] = found;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", path.startsWith(link.getAttribute("href").slice(1)));
  }
  const container = document.createElement("div");
  root.replaceChildren(container);
  try {
    await page.render(container, {
      params: match.slice(1),
      query: new URLSearchParams(queryText),
      signal: leaving.signal,
    });
  } catch (error) {
    if (error.name !== "AbortError") container.append(notice(error.message));
  }
}

forgetKey.addEventListener("click", () => {
  apiKey.clear();
  show();
});
window.addEventListener("ganforge:unauthorized", () => {
  apiKey.clear();
  show();
  root.prepend(notice("That key was refused (401): paste a valid one."));
});
window.addEventListener("hashchange", show);
show();
