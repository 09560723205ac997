// Streams tab: the list (server-side pages and filters), Add, Edit, controls, Delete.

import { api, lastFrameUrl } from "./api.js";
import { badge, clear, confirmDialog, debounce, h, nextId, notify } from "./dom.js";
import { editStream, openStreamForm } from "./stream_form.js";

export const STATUSES = ["pending", "in_progress", "done", "pause", "cancel", "failure"];
export const PAGE_SIZES = [10, 25, 50, 100];
const PAGE_SIZE_KEY = "luna-streams.page_size";

export function thumbnail(stream) {
  if (!stream.preview?.last_frame?.url) return h("span", { class: "none" }, "no frame");
  const image = h("img", {
    class: "thumb",
    src: lastFrameUrl(stream),
    alt: `Last frame of ${stream.name || stream.stream_id}`,
    loading: "lazy",
  });
  image.addEventListener("error", () => image.replaceWith(h("span", { class: "none" }, "unavailable")));
  return image;
}

// start (pending), pause and cancel, as the PATCH statuses allow them from `status`
export function controls(stream, after) {
  const change = async (status) => {
    try {
      await api.patchStream(stream.stream_id, stream.account_id, { status });
      notify(`Stream ${stream.name || stream.stream_id}: ${status}`);
      if (after) after();
    } catch (error) {
      notify(error.message, true);
    }
  };
  const label = stream.name || stream.stream_id;
  const finished = stream.status === "done" || stream.status === "failure";
  return [
    h("button", {
      type: "button",
      disabled: stream.status === "pending" || stream.status === "in_progress",
      "aria-label": `Start ${label}`,
      onclick: () => change("pending"),
    }, "Start"),
    h("button", {
      type: "button",
      disabled: stream.status === "pause",
      "aria-label": `Pause ${label}`,
      onclick: () => change("pause"),
    }, "Pause"),
    h("button", {
      type: "button",
      disabled: stream.status === "cancel" || finished,
      "aria-label": `Cancel ${label}`,
      onclick: () => change("cancel"),
    }, "Cancel"),
  ];
}

export async function deleteStream(stream, after) {
  const label = stream.name || stream.stream_id;
  if (!(await confirmDialog(`Delete stream ${label}?`))) return;
  try {
    await api.deleteStream(stream.stream_id, stream.account_id);
    notify(`Stream ${label} deleted`);
    if (after) after();
  } catch (error) {
    notify(error.message, true);
  }
}

export function streamsView(root, context) {
  const filters = { statuses: [], names: "", group_name: "" };
  const pageSize = Number(window.localStorage.getItem(PAGE_SIZE_KEY)) || 10;
  const paging = { page: 1, pageSize: PAGE_SIZES.includes(pageSize) ? pageSize : 10, total: 0 };
  const rows = new Map();
  const selected = new Set();

  const statusId = nextId("status");
  const status = h("select", { id: statusId, name: "status" },
    h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, s)));
  const nameId = nextId("name");
  const name = h("input", { id: nameId, name: "name", size: 16 });
  const groupId = nextId("group");
  const group = h("input", { id: groupId, name: "group_name", size: 16 });
  const filterForm = h("form", { class: "filters", role: "search", "aria-label": "Filter streams" },
    h("div", {}, h("label", { for: statusId }, "Status"), status),
    h("div", {}, h("label", { for: nameId }, "Name (exact)"), name),
    h("div", {}, h("label", { for: groupId }, "Group name"), group),
    h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", onclick: () => { filterForm.reset(); apply(); } }, "Clear"));
  filterForm.addEventListener("submit", (e) => { e.preventDefault(); apply(); });

  const summary = h("p", { role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  const table = h("table", {},
    h("caption", { class: "none" }, "Streams, oldest first"),
    h("thead", {}, h("tr", {}, ["Select", "Last frame", "Stream ID", "Name", "Status",
      "Description", "Group", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
    tbody);
  const sizeId = nextId("page-size");
  const size = h("select", { id: sizeId },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === paging.pageSize }, n)));
  size.addEventListener("change", () => {
    paging.pageSize = Number(size.value);
    window.localStorage.setItem(PAGE_SIZE_KEY, size.value);
    paging.page = 1;
    load();
  });
  const prev = h("button", { type: "button", onclick: () => { paging.page -= 1; load(); } }, "Previous page");
  const next = h("button", { type: "button", onclick: () => { paging.page += 1; load(); } }, "Next page");
  const pageText = h("span", { "aria-live": "polite" });

  const add = h("button", {
    type: "button",
    class: "primary",
    onclick: () => openStreamForm({ accountId: context.accountId, onDone: load }),
  }, "Add stream");

  const bulk = bulkActions();
  clear(root).append(
    h("h2", {}, "Streams"),
    h("div", { class: "toolbar" }, add),
    filterForm,
    summary,
    bulk.bar,
    table,
    h("div", { class: "pager" }, prev, pageText, next,
      h("label", { for: sizeId }, "Streams a page"), size),
  );

  function apply() {
    filters.statuses = status.value ? [status.value] : [];
    filters.names = name.value.trim();
    filters.group_name = group.value.trim();
    paging.page = 1;
    load();
  }

  function params() {
    return {
      account_id: context.accountId,
      statuses: filters.statuses,
      names: filters.names ? [filters.names] : [],
      group_name: filters.group_name,
    };
  }

  // bulk actions: the streams ticked on this page, or every stream matching the filters
  function bulkActions() {
    const allId = nextId("all-matching");
    const all = h("input", { type: "checkbox", id: allId, onchange: () => show() });
    const count = h("span", { "aria-live": "polite" });
    const VERB = { pause: "Paused", pending: "Started", cancel: "Cancelled" };
    const scope = () => (all.checked
      ? params()
      : { account_id: context.accountId, stream_ids: [...selected] });
    const empty = () => !all.checked && !selected.size;
    async function change(status) {
      if (empty()) { notify("Select streams first", true); return; }
      try {
        const answer = await api.patchStreams(scope(), status);
        const skipped = answer.skipped.length
          ? `; ${answer.skipped.length} skipped (${[...new Set(answer.skipped.map((s) => s.reason))].join("; ")})`
          : "";
        notify(`${VERB[status]} ${answer.changed} stream${answer.changed === 1 ? "" : "s"}${skipped}`);
        done();
      } catch (error) {
        notify(error.message, true);
      }
    }
    async function remove() {
      if (empty()) { notify("Select streams first", true); return; }
      let ids = [...selected];
      if (all.checked) {
        ids = [];
        for (let page = 1; ; page += 1) {
          const found = await api.streams({ ...params(), page, page_size: 1000 });
          ids.push(...found.streams.map((s) => s.stream_id));
          if (found.streams.length < 1000) break;
        }
      }
      if (!ids.length || !(await confirmDialog(`Delete ${ids.length} stream${ids.length === 1 ? "" : "s"}?`))) return;
      try {
        for (let start = 0; start < ids.length; start += 1000) {
          await api.deleteStreams(context.accountId, ids.slice(start, start + 1000));
        }
        notify(`Deleted ${ids.length} stream${ids.length === 1 ? "" : "s"}`);
        done();
      } catch (error) {
        notify(error.message, true);
      }
    }
    function done() {
      selected.clear();
      all.checked = false;
      load();
    }
    function show() {
      count.textContent = all.checked ? `All ${paging.total} matching` : `${selected.size} selected`;
    }
    const button = (text, onclick, cls) => h("button", { type: "button", class: cls, onclick }, text);
    const bar = h("div", { class: "toolbar", role: "group", "aria-label": "Bulk actions" },
      h("span", { class: "check" }, all, h("label", { for: allId }, "Every stream matching the filters")),
      count,
      button("Pause selected", () => change("pause")),
      button("Start selected", () => change("pending")),
      button("Cancel selected", () => change("cancel")),
      button("Delete selected", remove, "danger"));
    return { bar, show };
  }

  function row(stream) {
    const label = stream.name || stream.stream_id;
    const pick = h("input", {
      type: "checkbox",
      "aria-label": `Select ${label}`,
      checked: selected.has(stream.stream_id),
      onchange: (e) => {
        if (e.target.checked) selected.add(stream.stream_id);
        else selected.delete(stream.stream_id);
        bulk.show();
      },
    });
    return h("tr", { dataset: { streamId: stream.stream_id } },
      h("td", {}, pick),
      h("td", {}, thumbnail(stream)),
      h("td", { class: "id" }, h("a", { href: `#stream/${stream.stream_id}` }, stream.stream_id)),
      h("td", { class: "name" }, stream.name),
      h("td", { class: "status" }, badge(stream.status)),
      h("td", {}, stream.description),
      h("td", {}, stream.groups.join(", ")),
      h("td", { class: "actions" },
        h("a", { href: `#stream/${stream.stream_id}`, "aria-label": `View ${label}` }, "View"), " ",
        h("button", {
          type: "button",
          "aria-label": `Edit ${label}`,
          onclick: () => editStream(stream, load),
        }, "Edit"),
        controls(stream, load),
        h("button", {
          type: "button",
          class: "danger",
          "aria-label": `Delete ${label}`,
          onclick: () => deleteStream(stream, load),
        }, "Delete")));
  }

  let loading = 0;
  async function load() {
    const ticket = ++loading;
    const query = params();
    try {
      const [page, count] = await Promise.all([
        api.streams({ ...query, page: paging.page, page_size: paging.pageSize }),
        api.countStreams(query),
      ]);
      if (ticket !== loading) return;
      paging.total = count.streams_count;
      const pages = Math.max(1, Math.ceil(paging.total / paging.pageSize));
      if (paging.page > pages) {
        paging.page = pages;
        load();
        return;
      }
      rows.clear();
      clear(tbody);
      for (const stream of page.streams) {
        const tr = row(stream);
        rows.set(stream.stream_id, tr);
        tbody.append(tr);
      }
      if (!page.streams.length) {
        tbody.append(h("tr", {}, h("td", { colspan: 8, class: "none" }, "No streams")));
      }
      summary.textContent = `${paging.total} stream${paging.total === 1 ? "" : "s"}`;
      bulk.show();
      pageText.textContent = `Page ${paging.page} of ${pages}`;
      prev.disabled = paging.page <= 1;
      next.disabled = paging.page >= pages;
    } catch (error) {
      summary.textContent = `Could not load the streams: ${error.message}`;
    }
  }

  const refresh = debounce(load, 400);
  load();
  return {
    reload: load,
    onEvent(event) {
      const current = rows.get(event.stream_id);
      if (event.event === "changed" && current && event.stream) {
        const matches = (!filters.statuses.length || filters.statuses.includes(event.status))
          && (!filters.names || event.stream.name === filters.names)
          && (!filters.group_name || event.stream.groups.includes(filters.group_name));
        if (matches) {
          const replacement = row(event.stream);
          const focused = current.contains(document.activeElement)
            ? document.activeElement.getAttribute("aria-label") : null;
          current.replaceWith(replacement);
          rows.set(event.stream_id, replacement);
          if (focused) {
            const again = [...replacement.querySelectorAll("[aria-label]")]
              .find((n) => n.getAttribute("aria-label") === focused && !n.disabled);
            if (again) again.focus();
          }
          return;
        }
      }
      if (event.event !== "changed" || current || filters.statuses.length) refresh();
    },
  };
}
