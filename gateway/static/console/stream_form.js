// Add / Edit a stream: a v1 form with the reference's defaults, or a JSON body (v1 or v2).
// The API validates; its 12022 errors are shown at the field their path names.

import { api } from "./api.js";
import { h, nextId, notify } from "./dom.js";

const LIVE = ["tcp", "udp"];

// [path, label, kind, default, options]; kinds: text, int, number, select, check, flag
const SECTIONS = [
  ["Stream", [
    ["account_id", "Account ID", "text", ""],
    ["name", "Name", "text", ""],
    ["description", "Description", "text", ""],
    ["status", "Initial status", "select", "pending", ["pending", "pause"]],
    ["group_name", "Group name (optional)", "text", null],
  ]],
  ["Data (video source)", [
    ["data.type", "Source type", "select", "udp", ["udp", "tcp", "videofile", "images"]],
    ["data.reference", "Reference (URL or path)", "text", ""],
    ["data.rotation", "Rotation", "select", 0, [0, 90, 180, 270]],
    ["data.preferred_program_stream_frame_width", "Preferred frame width", "int", 800, null, LIVE],
    ["data.endless", "Endless (reconnect when the source ends)", "check", true, null, LIVE],
  ]],
  ["Event handler", [
    ["event_handler.origin", "LUNA API origin", "text", "http://127.0.0.1:5000"],
    ["event_handler.api_version", "LUNA API version", "int", 6],
    ["event_handler.bestshot_handler.handler_id", "Best shot handler ID", "text", ""],
    ["event_handler.detection_handler.handler_id", "Detection handler ID (optional)", "text", null],
    ["event_handler.authorization.token", "Authorization token", "text", ""],
  ]],
  ["Policies", [
    ["policies.sending.time_period_of_searching", "Time period of searching (-1: whole track)", "number", -1],
    ["policies.sending.silent_period", "Silent period", "number", 0],
    ["policies.sending.type", "Period type", "select", "sec", ["sec", "frames"]],
    ["policies.sending.number_of_bestshots_to_send", "Best shots to send", "int", 1],
    ["policies.filtering.min_score", "Minimum score", "number", 0.5187],
    ["policies.filtering.detection_yaw_threshold", "Yaw threshold", "number", 40],
    ["policies.filtering.detection_pitch_threshold", "Pitch threshold", "number", 40],
    ["policies.filtering.detection_roll_threshold", "Roll threshold", "number", 30],
    ["policies.liveness.liveness_mode", "Liveness mode", "select", 0, [0, 1, 2]],
    ["policies.liveness.liveness_threshold", "Liveness threshold", "number", 0.6],
    ["policies.frame_processing_mode", "Frame processing mode", "select", "auto", ["auto", "full", "scale"]],
    ["policies.real_time_mode_fps", "Real-time mode FPS (0: off)", "int", 0],
    ["policies.healthcheck.max_error_count", "Health check: max errors", "int", 10],
    ["policies.healthcheck.period", "Health check: period (s)", "int", 3600],
    ["policies.healthcheck.retry_delay", "Health check: retry delay (s)", "int", 5],
  ]],
  ["Location", [
    ["location.city", "City", "text", null],
    ["location.area", "Area", "text", null],
    ["location.district", "District", "text", null],
    ["location.street", "Street", "text", null],
    ["location.house_number", "House number", "text", null],
    ["location.geo_position.latitude", "Latitude", "number", null],
    ["location.geo_position.longitude", "Longitude", "number", null],
  ]],
  ["Autorestart", [
    ["autorestart.restart", "Restart after a failure", "flag", 0],
    ["autorestart.attempt_count", "Attempts", "int", 10],
    ["autorestart.delay", "Delay (s)", "int", 60],
  ]],
];

const READ_ONLY = ["stream_id", "version", "create_time", "last_error", "video_info", "groups", "preview"];

function getPath(object, path) {
  return path.split(".").reduce((node, key) => (node == null ? undefined : node[key]), object);
}

function setPath(object, path, value) {
  const keys = path.split(".");
  let node = object;
  for (const key of keys.slice(0, -1)) {
    if (node[key] == null || typeof node[key] !== "object") node[key] = {};
    node = node[key];
  }
  node[keys[keys.length - 1]] = value;
}

function deletePath(object, path) {
  const keys = path.split(".");
  const parent = getPath(object, keys.slice(0, -1).join(".")) ?? (keys.length === 1 ? object : null);
  if (parent && typeof parent === "object") delete parent[keys[keys.length - 1]];
}

// the body of a PUT from a stream's view: its settings, without what only the server writes
export function bodyOfStream(stream) {
  const body = structuredClone(stream);
  for (const key of READ_ONLY) delete body[key];
  body.autorestart = {
    restart: stream.autorestart.restart,
    attempt_count: stream.autorestart.attempt_count,
    delay: stream.autorestart.delay,
  };
  body.status = stream.status === "pause" ? "pause" : "pending";
  if (body.location) {
    for (const [key, value] of Object.entries(body.location)) if (value === null) delete body.location[key];
  }
  return body;
}

export function defaultBody(accountId) {
  const body = {};
  for (const [, fields] of SECTIONS) {
    for (const [path, , , value, , types] of fields) {
      if (value === null || (types && !types.includes("udp"))) continue;
      setPath(body, path, value);
    }
  }
  body.account_id = accountId || "";
  return body;
}

function prune(body) {
  // optional parts left empty are left out, as the API's defaults then apply
  if (body.location) {
    const geo = body.location.geo_position;
    if (geo && (geo.latitude == null || geo.longitude == null)) delete body.location.geo_position;
    if (!Object.keys(body.location).length) delete body.location;
  }
  const handler = body.event_handler;
  if (handler && handler.detection_handler && !handler.detection_handler.handler_id) {
    delete handler.detection_handler;
  }
  if (body.group_name === "" || body.group_name === null) delete body.group_name;
  const type = body.data && body.data.type;
  if (type && !LIVE.includes(type) && body.data) {
    delete body.data.preferred_program_stream_frame_width;
    delete body.data.endless;
  }
  return body;
}

function inputFor(id, kind, options) {
  if (kind === "select") {
    return h("select", { id }, options.map((o) => h("option", { value: String(o) }, String(o))));
  }
  if (kind === "check" || kind === "flag") return h("input", { id, type: "checkbox" });
  if (kind === "int" || kind === "number") {
    return h("input", { id, type: "number", step: kind === "int" ? 1 : "any", inputmode: "decimal" });
  }
  return h("input", { id, type: "text", autocomplete: "off" });
}

function readValue(input, kind, sample) {
  if (kind === "check") return input.checked;
  if (kind === "flag") return input.checked ? 1 : 0;
  const text = input.value.trim();
  if (kind === "int" || kind === "number" || typeof sample === "number") {
    return text === "" ? null : Number(text);
  }
  return text;
}

// Edit: the v1 form when v1 can show the stream, else its v2 body as JSON
export async function editStream(stream, onDone) {
  try {
    openStreamForm({ stream: await api.stream(stream.stream_id, 1), onDone });
  } catch (error) {
    if (error.code === 39011) openStreamForm({ stream, onDone, json: 2 });
    else notify(error.message, true);
  }
}

export function openStreamForm({ stream = null, accountId = null, onDone, json = null }) {
  const editing = stream !== null;
  const base = editing ? bodyOfStream(stream) : defaultBody(accountId);
  const fields = new Map();
  const titleId = nextId("form-title");
  const formError = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { novalidate: true });

  for (const [legend, specs] of SECTIONS) {
    const grid = h("div", { class: "grid" });
    for (const [path, label, kind, fallback, options, types] of specs) {
      const id = nextId("f");
      const errorId = `${id}-error`;
      const input = inputFor(id, kind, options);
      input.dataset.path = path;
      input.setAttribute("aria-describedby", errorId);
      const current = getPath(base, path);
      const value = current === undefined ? fallback : current;
      if (kind === "check") input.checked = Boolean(value);
      else if (kind === "flag") input.checked = value === 1;
      else input.value = value === null || value === undefined ? "" : String(value);
      if (path === "account_id" && editing) input.readOnly = true;
      const error = h("p", { class: "error", id: errorId });
      const field = kind === "check" || kind === "flag"
        ? h("div", { class: "field" }, input, " ", h("label", { for: id, class: "inline" }, label), error)
        : h("div", { class: "field" }, h("label", { for: id }, label), input, error);
      grid.append(field);
      fields.set(path, { input, kind, error, field, types, sample: fallback });
    }
    form.append(h("fieldset", {}, h("legend", {}, legend), grid));
  }

  const typeField = fields.get("data.type");
  function showTypeFields() {
    for (const { field, types } of fields.values()) {
      if (types) field.hidden = !types.includes(typeField.input.value);
    }
  }
  typeField.input.addEventListener("change", showTypeFields);
  showTypeFields();

  function bodyFromForm() {
    const body = structuredClone(base);
    for (const [path, { input, kind, types, sample }] of fields) {
      if (types && !types.includes(typeField.input.value)) {
        deletePath(body, path);
        continue;
      }
      const value = readValue(input, kind, sample);
      if ((value === "" || value === null) && (sample === null || kind !== "text")) {
        deletePath(body, path);
      } else {
        setPath(body, path, value);
      }
    }
    return prune(body);
  }

  function clearErrors() {
    formError.textContent = "";
    for (const { input, error } of fields.values()) {
      input.removeAttribute("aria-invalid");
      error.textContent = "";
    }
  }

  function showError(error) {
    // the field whose path is the longest prefix of the error's path
    let best = null;
    if (error.path !== null) {
      for (const [path, entry] of fields) {
        const hit = error.path === path || error.path.startsWith(`${path}.`) || path.startsWith(`${error.path}.`);
        if (hit && !entry.field.hidden && (!best || path.length > best[0].length)) best = [path, entry];
      }
    }
    if (best) {
      const [, { input, error: slot }] = best;
      input.setAttribute("aria-invalid", "true");
      slot.textContent = error.fieldMessage;
      input.focus();
    } else {
      formError.textContent = error.message;
    }
  }

  const jsonId = nextId("json");
  const versionId = nextId("json-version");
  const jsonVersion = h("select", { id: versionId }, h("option", { value: "1" }, "v1"), h("option", { value: "2" }, "v2"));
  const jsonText = h("textarea", { id: jsonId, class: "json", spellcheck: "false", "aria-describedby": `${jsonId}-error` });
  const jsonError = h("p", { class: "form-error", id: `${jsonId}-error`, role: "alert" });
  const jsonPanel = h("div", { hidden: true },
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: versionId }, "API version of the body"), jsonVersion)),
    h("label", { for: jsonId }, "Request body (JSON)"), jsonText, jsonError);
  const formPanel = h("div", {}, form, formError);

  const toggle = h("button", { type: "button" }, "Edit as JSON");
  let jsonMode = false;
  async function setJsonMode(on) {
    jsonMode = on;
    toggle.textContent = on ? "Back to the form" : "Edit as JSON";
    jsonPanel.hidden = !on;
    formPanel.hidden = on;
    if (on) {
      let body = bodyFromForm();
      if (jsonVersion.value === "2" && editing) {
        try {
          body = bodyOfStream(await api.stream(stream.stream_id, 2));
        } catch (error) {
          jsonError.textContent = error.message;
        }
      }
      jsonText.value = JSON.stringify(body, null, 2);
      jsonText.focus();
    }
  }
  toggle.addEventListener("click", () => setJsonMode(!jsonMode));
  jsonVersion.addEventListener("change", async () => {
    if (jsonVersion.value === "2") {
      const v2 = editing
        ? bodyOfStream(await api.stream(stream.stream_id, 2))
        : { account_id: base.account_id, name: "", data: { type: "udp", reference: "", analytics: [
          { event_handler: { handler_id: "", authorization: { token: "" } } }] } };
      jsonText.value = JSON.stringify(v2, null, 2);
    } else {
      jsonText.value = JSON.stringify(bodyFromForm(), null, 2);
    }
  });

  const submit = h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Add");
  const cancel = h("button", { type: "button", onclick: () => dialog.close() }, "Cancel");
  const dialog = h("dialog", { "aria-labelledby": titleId },
    h("h2", { id: titleId }, editing ? `Edit stream ${stream.name || stream.stream_id}` : "Add a stream"),
    h("div", { class: "toolbar" }, toggle),
    formPanel, jsonPanel,
    h("div", { class: "buttons" }, cancel, submit));

  async function send() {
    clearErrors();
    jsonError.textContent = "";
    let body;
    let version = 1;
    if (jsonMode) {
      version = Number(jsonVersion.value);
      try {
        body = JSON.parse(jsonText.value);
      } catch (error) {
        jsonError.textContent = `Not valid JSON: ${error.message}`;
        jsonText.focus();
        return;
      }
    } else {
      body = bodyFromForm();
    }
    submit.disabled = true;
    try {
      const answer = editing
        ? await api.replaceStream(version, stream.stream_id, body)
        : await api.createStream(version, body);
      notify(editing ? `Stream saved (version ${answer.version})` : `Stream ${answer.stream_id} added`);
      dialog.close();
      if (onDone) onDone(answer);
    } catch (error) {
      if (jsonMode) {
        jsonError.textContent = error.path !== null ? `${error.path || "body"}: ${error.fieldMessage}` : error.message;
        jsonText.focus();
      } else {
        showError(error);
      }
    } finally {
      submit.disabled = false;
    }
  }
  submit.addEventListener("click", (e) => { e.preventDefault(); send(); });
  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  if (json) {
    jsonVersion.value = String(json);
    setJsonMode(true);
  } else if (!editing && !accountId) {
    fields.get("account_id").input.focus();
  } else {
    fields.get("name").input.focus();
  }
  return dialog;
}
