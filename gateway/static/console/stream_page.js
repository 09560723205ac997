// A stream's page: every setting, the live preview, its logs (filters, newest first).

import { api, liveUrl } from "./api.js";
import { append, badge, clear, formatTime, h, nextId } from "./dom.js";
import { editStream } from "./stream_form.js";
import { controls, deleteStream, thumbnail } from "./streams.js";

const LOG_STATUSES = ["pending", "in_progress", "done", "pause", "cancel", "failure", "restart",
  "handler_lost", "deleted"];
const LOG_PAGE = 25;

export function streamPage(root, context, streamId) {
  const heading = h("h2", { tabindex: "-1" }, `Stream ${streamId}`);
  const head = h("div", { class: "toolbar" });
  const facts = h("dl", { class: "grid" });
  const settings = h("pre", { class: "settings", tabindex: "0", "aria-label": "Stream settings (JSON)" });
  const preview = h("div");
  const logsBody = h("tbody");
  const logsStatus = h("p", { role: "status", "aria-live": "polite" });
  let stream = null;

  const statusId = nextId("log-status");
  const logStatus = h("select", { id: statusId },
    h("option", { value: "" }, "any"), LOG_STATUSES.map((s) => h("option", { value: s }, s)));
  const sinceId = nextId("log-since");
  const since = h("input", { id: sinceId, type: "datetime-local" });
  const untilId = nextId("log-until");
  const until = h("input", { id: untilId, type: "datetime-local" });
  const logPage = { page: 1 };
  const olderLogs = h("button", { type: "button", onclick: () => { logPage.page += 1; loadLogs(); } }, "Older logs");
  const newerLogs = h("button", { type: "button", onclick: () => { logPage.page -= 1; loadLogs(); } }, "Newer logs");
  const logFilters = h("form", { class: "filters", "aria-label": "Filter logs" },
    h("div", {}, h("label", { for: statusId }, "Status"), logStatus),
    h("div", {}, h("label", { for: sinceId }, "From"), since),
    h("div", {}, h("label", { for: untilId }, "Until"), until),
    h("button", { type: "submit" }, "Filter logs"));
  logFilters.addEventListener("submit", (e) => { e.preventDefault(); logPage.page = 1; loadLogs(); });

  clear(root).append(
    h("p", {}, h("a", { href: "#streams" }, "← All streams")),
    heading, head, facts,
    h("div", { class: "columns" },
      h("section", { "aria-labelledby": "settings-title" },
        h("h3", { id: "settings-title" }, "Settings"), settings),
      h("section", { "aria-labelledby": "preview-title" },
        h("h3", { id: "preview-title" }, "Live preview"), preview)),
    h("section", { "aria-labelledby": "logs-title" },
      h("h3", { id: "logs-title" }, "Logs, newest first"), logFilters, logsStatus,
      h("table", {},
        h("thead", {}, h("tr", {}, ["Time", "Status", "Version", "Error", "Video info"].map((t) => h("th", { scope: "col" }, t)))),
        logsBody),
      h("div", { class: "pager" }, newerLogs, olderLogs)),
  );
  heading.focus();

  function showPreview() {
    clear(preview);
    if (stream.preview?.live?.url) {
      preview.append(h("img", { class: "live-preview", src: liveUrl(stream), alt: `Live video of ${stream.name || stream.stream_id}` }));
    } else {
      preview.append(h("p", { class: "none" }, "The stream's agent reports no live preview."), thumbnail(stream));
    }
  }

  function show() {
    heading.textContent = `Stream ${stream.name || stream.stream_id}`;
    const label = stream.name || stream.stream_id;
    append(clear(head), [badge(stream.status), " ",
      h("button", { type: "button", "aria-label": `Edit ${label}`, onclick: () => editStream(stream, load) }, "Edit"),
      controls(stream, load),
      h("button", {
        type: "button",
        class: "danger",
        "aria-label": `Delete ${label}`,
        onclick: () => deleteStream(stream, () => { window.location.hash = "#streams"; }),
      }, "Delete")]);
    clear(facts);
    const items = [
      ["Stream ID", stream.stream_id], ["Account", stream.account_id], ["Version", stream.version],
      ["Created", formatTime(stream.create_time)], ["Groups", stream.groups.join(", ") || "none"],
      ["Last error", stream.last_error || "none"],
      ["Autorestart", `${stream.autorestart.status} (${stream.autorestart.current_attempt}/${stream.autorestart.attempt_count})`],
    ];
    for (const [term, value] of items) facts.append(h("div", {}, h("dt", {}, term), h("dd", { class: "mono" }, value)));
    settings.textContent = JSON.stringify(stream, null, 2);
  }

  async function load() {
    try {
      stream = await api.stream(streamId, 2);
      show();
      showPreview();
    } catch (error) {
      clear(head).append(h("p", { class: "form-error" }, error.message));
    }
    loadLogs();
  }

  async function loadLogs() {
    const iso = (input) => (input.value ? new Date(input.value).toISOString() : null);
    try {
      const answer = await api.logs({
        stream_ids: [streamId],
        statuses: logStatus.value ? [logStatus.value] : [],
        log_time__gte: iso(since),
        log_time__lt: iso(until),
        page: logPage.page,
        page_size: LOG_PAGE,
      });
      clear(logsBody);
      for (const log of answer.logs) {
        logsBody.append(h("tr", {},
          h("td", {}, formatTime(log.log_time)), h("td", {}, badge(log.status)), h("td", {}, log.version),
          h("td", {}, log.error || ""), h("td", { class: "mono" }, log.video_info ? JSON.stringify(log.video_info) : "")));
      }
      logsStatus.textContent = answer.logs.length ? `Page ${logPage.page} of the logs` : "No logs";
      newerLogs.disabled = logPage.page <= 1;
      olderLogs.disabled = answer.logs.length < LOG_PAGE;
    } catch (error) {
      logsStatus.textContent = `Could not load the logs: ${error.message}`;
    }
  }

  load();
  return {
    reload: load,
    onEvent(event) {
      if (event.stream_id !== streamId) return;
      if (event.event === "deleted") {
        clear(head).append(badge("deleted"), " This stream was deleted.");
        return;
      }
      const previewChanged = event.changed.includes("preview");
      stream = event.stream;
      show();
      if (previewChanged) showPreview();
      if (logPage.page === 1) loadLogs();
    },
  };
}
