// The /v1 API from the browser: the key from sessionStorage as a Bearer token on every call,
// the error envelope as ApiError, Server-Sent Events read with fetch (EventSource cannot send
// headers), and PNGs drawn on canvases (an <img> cannot send headers either).

const KEY_STORAGE = "ganforge-api-key";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_STORAGE),
  set: (key) => sessionStorage.setItem(KEY_STORAGE, key.trim()),
  clear: () => sessionStorage.removeItem(KEY_STORAGE),
};

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body?.error ?? {};
    super(detail.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = detail.code ?? null;
    this.param = detail.param ?? null;
  }
}

export async function request(path, { method = "GET", json, body, signal, headers = {} } = {}) {
  const sent = { Authorization: `Bearer ${apiKey.get()}`, ...headers };
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers: sent, body, signal });
  if (!response.ok) {
    const errorBody = await response.json().catch(() => null);
    if (response.status === 401) window.dispatchEvent(new Event("ganforge:unauthorized"));
    throw new ApiError(response.status, errorBody);
  }
  return response;
}

export const getJson = async (path, options) => (await request(path, options)).json();
export const postJson = (path, json, options = {}) =>
  getJson(path, { ...options, method: "POST", json });

// Yields {event, data, id} for each message of a text/event-stream, until it ends or `signal`.
export async function* eventStream(path, signal) {
  const response = await request(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const message = { event: "message", data: [], id: null };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue; // keep-alive comment
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") message.event = text;
          else if (field === "data") message.data.push(text);
          else if (field === "id") message.id = text;
        }
        if (message.data.length) yield { ...message, data: JSON.parse(message.data.join("\n")) };
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// Draws the PNG at `path` (GET, or POST `json`) on `canvas`; `rowLabels` go left of its rows
// (a grid has one row per class). Resolves once drawn; canvas.dataset.loaded marks it for tests.
export async function drawPng(canvas, path, { json, rowLabels = null, signal } = {}) {
  const options = json === undefined ? { signal } : { method: "POST", json, signal };
  const bitmap = await createImageBitmap(await (await request(path, options)).blob());
  const scale = Math.max(1, Math.floor(480 / bitmap.width));
  const labelWidth = rowLabels ? 110 : 0;
  canvas.width = labelWidth + bitmap.width * scale;
  canvas.height = bitmap.height * scale;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, labelWidth, 0, bitmap.width * scale, bitmap.height * scale);
  if (rowLabels) {
    const rowHeight = canvas.height / rowLabels.length;
    context.fillStyle = "#222";
    context.font = "13px system-ui, sans-serif";
    context.textBaseline = "middle";
    rowLabels.forEach((label, row) =>
      context.fillText(label, 4, rowHeight * (row + 0.5), labelWidth - 8));
  }
  canvas.dataset.loaded = path;
}

// Fetches `path` with the key and saves it as `filename`.
export async function download(path, filename) {
  const url = URL.createObjectURL(await (await request(path)).blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
