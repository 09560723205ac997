// The public API, as any script would call it: same-origin fetch and EventSource.

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.detail ? body.detail : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.code = body ? body.error_code : undefined;
    this.body = body;
    // 12022 names the field: "Failed to validate input json. Path: 'data.reference', ..."
    const match = /Path: '([^']*)', message: '(.*)'$/s.exec(detail);
    this.path = match ? match[1] : null;
    this.fieldMessage = match ? match[2] : detail;
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) {
      if (value.length) search.set(key, value.join(","));
    } else {
      search.set(key, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function call(method, path, { params, body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path + query(params), init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text };
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  streams: (params) => call("GET", "/2/streams", { params }),
  countStreams: (params) => call("GET", "/2/streams/count", { params }),
  stream: (id, version = 2) => call("GET", `/${version}/streams/${id}`),
  createStream: (version, body) => call("POST", `/${version}/streams`, { body }),
  replaceStream: (version, id, body) => call("PUT", `/${version}/streams/${id}`, { body }),
  patchStream: (id, accountId, body) =>
    call("PATCH", `/1/streams/${id}`, { params: { account_id: accountId }, body }),
  deleteStream: (id, accountId) =>
    call("DELETE", `/1/streams/${id}`, { params: { account_id: accountId } }),
  logs: (params) => call("GET", "/2/streams/logs", { params }),
  queue: (params) => call("GET", "/2/streams/processing/queue", { params }),
  groups: (params) => call("GET", "/1/groups", { params }),
  countGroups: (params) => call("GET", "/1/groups/count", { params }),
  createGroup: (body) => call("POST", "/1/groups", { body }),
  patchGroup: (id, accountId, body) =>
    call("PATCH", `/1/groups/${id}`, { params: { account_id: accountId }, body }),
  deleteGroup: (id, accountId) =>
    call("DELETE", `/1/groups/${id}`, { params: { account_id: accountId } }),
  link: (accountId, body) => call("PATCH", "/1/linker", { params: { account_id: accountId }, body }),
};

export function lastFrameUrl(stream) {
  const stamp = encodeURIComponent(`${stream.version}-${stream.preview?.last_frame?.url || ""}`);
  return `/2/streams/${stream.stream_id}/preview/handler/last_frame?v=${stamp}`;
}

export function liveUrl(stream) {
  return `/2/streams/${stream.stream_id}/preview/handler/live`;
}

// Live events: the browser's EventSource resumes by itself with Last-Event-ID; when the
// server refuses (an id too old, the subscriber cap), start again after a pause.
export class LiveEvents {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.source = null;
    this.accountId = null;
    this.retry = null;
  }

  open(accountId) {
    this.close();
    this.accountId = accountId;
    const url = `/2/streams/events${query({ account_id: accountId })}`;
    const source = new EventSource(url);
    this.source = source;
    this.onState("connecting");
    source.addEventListener("ready", () => this.onState("live"));
    for (const kind of ["created", "changed", "deleted"]) {
      source.addEventListener(kind, (message) => this.onEvent(JSON.parse(message.data)));
    }
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        this.onState("down");
        this.retry = setTimeout(() => this.open(this.accountId), 5000);
      } else {
        this.onState("reconnecting");
      }
    });
  }

  close() {
    clearTimeout(this.retry);
    if (this.source) this.source.close();
    this.source = null;
  }
}
