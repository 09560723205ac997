// Queue tab: the pending streams in queue order (a peek: nothing is claimed), and how many
// streams were claimed in the last hour (pending -> in_progress in their logs).

import { api } from "./api.js";
import { badge, clear, debounce, formatTime, h, nextId } from "./dom.js";

const LIMITS = [25, 100, 500, 1000];
const HOUR_MS = 3600 * 1000;
const LOG_LIMIT = 1000;

// claims in logs (newest first): an in_progress row whose previous row of that stream is pending
export function countClaims(logs) {
  const byStream = new Map();
  for (const log of [...logs].reverse()) {
    const previous = byStream.get(log.stream_id);
    if (log.status === "in_progress" && previous === "pending") {
      byStream.set(`${log.stream_id}#claims`, (byStream.get(`${log.stream_id}#claims`) || 0) + 1);
    }
    byStream.set(log.stream_id, log.status);
  }
  let total = 0;
  for (const [key, value] of byStream) if (key.endsWith("#claims")) total += value;
  return total;
}

export function queueView(root, context) {
  const limitId = nextId("queue-limit");
  const limit = h("select", { id: limitId }, LIMITS.map((n) => h("option", { value: n }, n)));
  limit.addEventListener("change", load);
  const claimed = h("p", { role: "status", "aria-live": "polite" });
  const summary = h("p", { role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  clear(root).append(
    h("h2", {}, "Queue"),
    h("p", {}, "Pending streams in the order agents will receive them. Looking changes nothing."),
    claimed,
    h("div", { class: "filters" }, h("div", {}, h("label", { for: limitId }, "Show at most"), limit),
      h("button", { type: "button", onclick: load }, "Refresh")),
    summary,
    h("table", {},
      h("thead", {}, h("tr", {}, ["Position", "Stream ID", "Name", "Status", "Account", "Group", "Created"].map((t) => h("th", { scope: "col" }, t)))),
      tbody));

  async function load() {
    try {
      const answer = await api.queue({ limit: Number(limit.value) });
      // the queue is one for every account: an account's view shows its own streams in it
      const streams = context.accountId
        ? answer.streams.filter((s) => s.account_id === context.accountId)
        : answer.streams;
      clear(tbody);
      streams.forEach((stream, index) => {
        tbody.append(h("tr", { dataset: { streamId: stream.stream_id } },
          h("td", {}, index + 1),
          h("td", { class: "id" }, h("a", { href: `#stream/${stream.stream_id}` }, stream.stream_id)),
          h("td", {}, stream.name), h("td", {}, badge(stream.status)),
          h("td", { class: "mono" }, stream.account_id), h("td", {}, stream.groups.join(", ")),
          h("td", {}, formatTime(stream.create_time))));
      });
      if (!streams.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "none" }, "The queue is empty")));
      summary.textContent = `${streams.length} pending stream${streams.length === 1 ? "" : "s"} shown`;
    } catch (error) {
      summary.textContent = `Could not read the queue: ${error.message}`;
    }
    try {
      const since = new Date(Date.now() - HOUR_MS).toISOString();
      const answer = await api.logs({
        account_id: context.accountId,
        statuses: ["pending", "in_progress"],
        log_time__gte: since,
        targets: ["stream_id", "status", "log_time"],
        page_size: LOG_LIMIT,
      });
      const full = answer.logs.length === LOG_LIMIT;
      claimed.textContent = `Claimed by agents in the last hour: ${countClaims(answer.logs)}${full ? " (in the newest 1000 log rows)" : ""}`;
    } catch (error) {
      claimed.textContent = `Could not read the logs: ${error.message}`;
    }
  }

  load();
  const refresh = debounce(load, 500);
  return {
    reload: load,
    onEvent(event) {
      if (event.event !== "changed" || event.changed.includes("status")) refresh();
    },
  };
}
