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

// With authentication on, the console's session cookie signs every request in; a request
// that changes something also echoes the readable CSRF cookie, which no other site can read.
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

function csrfToken() {
  const found = document.cookie.split("; ").find((part) => part.startsWith("luna_streams_csrf="));
  return found ? decodeURIComponent(found.slice("luna_streams_csrf=".length)) : null;
}

export async function call(method, path, { params, body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  const csrf = SAFE.has(method) ? null : csrfToken();
  if (csrf) init.headers["X-CSRF-Token"] = csrf;
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
  // bulk work: a status for every stream the filters match; delete by ids
  patchStreams: (params, status) => call("PATCH", "/2/streams", { params, body: { status } }),
  deleteStreams: (accountId, streamIds) =>
    call("DELETE", "/1/streams", { params: { account_id: accountId }, body: { stream_ids: streamIds } }),
  webhooks: (params) => call("GET", "/1/webhooks", { params }),
  createWebhook: (body) => call("POST", "/1/webhooks", { body }),
  deleteWebhook: (id, accountId) =>
    call("DELETE", `/1/webhooks/${id}`, { params: { account_id: accountId } }),
  testWebhook: (id, accountId) =>
    call("POST", `/1/webhooks/${id}/test`, { params: { account_id: accountId } }),
  deliveries: (id, params) => call("GET", `/1/webhooks/${id}/deliveries`, { params }),
  me: () => call("GET", "/2/auth/me"),
  signIn: (token) => call("POST", "/console/session", { body: { token } }),
  signOut: () => call("DELETE", "/console/session"),
};

// Previews through v1, which takes the stream's account: a token of one account reaches it.
export function lastFrameUrl(stream) {
  const stamp = encodeURIComponent(`${stream.version}-${stream.preview?.last_frame?.url || ""}`);
  const account = encodeURIComponent(stream.account_id);
  return `/1/streams/${stream.stream_id}/preview/handler/last_frame?account_id=${account}&v=${stamp}`;
}

export function liveUrl(stream) {
  const account = encodeURIComponent(stream.account_id);
  return `/1/streams/${stream.stream_id}/preview/handler/live?account_id=${account}`;
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
