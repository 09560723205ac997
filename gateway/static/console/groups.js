// Groups tab: create, edit the description, delete, members, attach and detach streams.

import { api } from "./api.js";
import { badge, clear, confirmDialog, debounce, h, nextId, notify } from "./dom.js";

const PAGE = 25;
const MEMBERS_PAGE = 10;
const UUID = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

export function groupsView(root, context) {
  const paging = { page: 1, total: 0 };
  const list = h("div");
  const summary = h("p", { role: "status", "aria-live": "polite" });
  const prev = h("button", { type: "button", onclick: () => { paging.page -= 1; load(); } }, "Previous page");
  const next = h("button", { type: "button", onclick: () => { paging.page += 1; load(); } }, "Next page");
  const open = new Set();

  const nameId = nextId("group-name");
  const descId = nextId("group-desc");
  const accId = nextId("group-account");
  const errorId = nextId("group-error");
  const name = h("input", { id: nameId, required: true, pattern: "[a-zA-Z0-9_\\-]{1,128}", "aria-describedby": errorId });
  const description = h("input", { id: descId, size: 30 });
  const account = h("input", { id: accId, size: 38, value: context.accountId || "" });
  const error = h("p", { class: "form-error", id: errorId, role: "alert" });
  const create = h("form", { class: "filters", "aria-label": "Create a group" },
    h("div", {}, h("label", { for: accId }, "Account ID"), account),
    h("div", {}, h("label", { for: nameId }, "Group name"), name),
    h("div", {}, h("label", { for: descId }, "Description"), description),
    h("button", { type: "submit", class: "primary" }, "Create group"));
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    name.removeAttribute("aria-invalid");
    try {
      await api.createGroup({ account_id: account.value.trim(), group_name: name.value.trim(), description: description.value });
      notify(`Group ${name.value.trim()} created`);
      name.value = "";
      description.value = "";
      load();
    } catch (err) {
      const target = err.path === "account_id" ? account : err.path === "description" ? description : name;
      target.setAttribute("aria-invalid", "true");
      error.textContent = err.path !== null ? `${err.path}: ${err.fieldMessage}` : err.message;
      target.focus();
    }
  });

  clear(root).append(h("h2", {}, "Groups"), create, error, summary, list,
    h("div", { class: "pager" }, prev, next));

  function members(group) {
    const box = h("div", { class: "members" });
    const state = { page: 1 };
    const attachId = nextId("attach");
    const attachInput = h("input", { id: attachId, size: 40, placeholder: "stream ids, comma-separated" });
    const attach = h("form", { class: "filters", "aria-label": `Attach streams to ${group.group_name}` },
      h("div", {}, h("label", { for: attachId }, `Stream IDs to attach to ${group.group_name}`), attachInput),
      h("button", { type: "submit" }, "Attach"));
    attach.addEventListener("submit", async (e) => {
      e.preventDefault();
      const ids = attachInput.value.split(/[\s,]+/).filter(Boolean);
      if (!ids.length || !ids.every((id) => UUID.test(id))) {
        attachInput.setAttribute("aria-invalid", "true");
        notify("Give stream ids (UUIDs), comma-separated", true);
        attachInput.focus();
        return;
      }
      attachInput.removeAttribute("aria-invalid");
      await link(group, "attach", ids);
      attachInput.value = "";
    });
    const table = h("tbody");
    const status = h("p", { role: "status" });
    const more = h("button", { type: "button", onclick: () => { state.page += 1; loadMembers(); } }, "Next members");
    const less = h("button", { type: "button", onclick: () => { state.page -= 1; loadMembers(); } }, "Previous members");
    box.append(attach, status, h("table", {},
      h("thead", {}, h("tr", {}, ["Stream ID", "Name", "Status", ""].map((t) => h("th", { scope: "col" }, t)))), table),
      h("div", { class: "pager" }, less, more));

    async function loadMembers() {
      try {
        const [page, count] = await Promise.all([
          api.streams({ account_id: group.account_id, group_name: group.group_name, page: state.page, page_size: MEMBERS_PAGE }),
          api.countStreams({ account_id: group.account_id, group_name: group.group_name }),
        ]);
        clear(table);
        for (const stream of page.streams) {
          table.append(h("tr", {},
            h("td", { class: "id" }, h("a", { href: `#stream/${stream.stream_id}` }, stream.stream_id)),
            h("td", {}, stream.name), h("td", {}, badge(stream.status)),
            h("td", {}, h("button", {
              type: "button",
              "aria-label": `Detach ${stream.name || stream.stream_id} from ${group.group_name}`,
              onclick: () => link(group, "detach", [stream.stream_id]),
            }, "Detach"))));
        }
        status.textContent = `${count.streams_count} member${count.streams_count === 1 ? "" : "s"}`;
        less.disabled = state.page <= 1;
        more.disabled = state.page * MEMBERS_PAGE >= count.streams_count;
      } catch (err) {
        status.textContent = err.message;
      }
    }
    box.reload = loadMembers;
    loadMembers();
    return box;
  }

  async function link(group, action, ids) {
    try {
      await api.link(group.account_id, { action, stream_ids: ids, group_id: group.group_id });
      notify(`${action === "attach" ? "Attached to" : "Detached from"} ${group.group_name}: ${ids.length} stream${ids.length === 1 ? "" : "s"}`);
      load();
    } catch (err) {
      notify(err.message, true);
    }
  }

  function card(group) {
    const descId2 = nextId("desc");
    const desc = h("input", { id: descId2, value: group.description, size: 40 });
    const edit = h("form", { class: "filters", "aria-label": `Description of ${group.group_name}` },
      h("div", {}, h("label", { for: descId2 }, "Description"), desc),
      h("button", { type: "submit" }, "Save description"),
      h("button", {
        type: "button",
        class: "danger",
        "aria-label": `Delete group ${group.group_name}`,
        onclick: async () => {
          if (!(await confirmDialog(`Delete group ${group.group_name}? Its streams stay, unlinked.`))) return;
          try {
            await api.deleteGroup(group.group_id, group.account_id);
            notify(`Group ${group.group_name} deleted`);
            load();
          } catch (err) {
            notify(err.message, true);
          }
        },
      }, "Delete group"));
    edit.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api.patchGroup(group.group_id, group.account_id, { description: desc.value });
        notify(`Description of ${group.group_name} saved`);
      } catch (err) {
        desc.setAttribute("aria-invalid", "true");
        notify(err.message, true);
      }
    });
    const details = h("details", { dataset: { groupId: group.group_id } },
      h("summary", {}, h("strong", {}, group.group_name), " ", h("span", { class: "mono none" }, group.group_id)));
    let body = null;
    details.addEventListener("toggle", () => {
      if (details.open) {
        open.add(group.group_id);
        if (!body) {
          body = members(group);
          details.append(edit, body);
        } else {
          body.reload();
        }
      } else {
        open.delete(group.group_id);
      }
    });
    details.open = open.has(group.group_id);
    return details;
  }

  async function load() {
    const params = { account_id: context.accountId };
    try {
      const [groups, count] = await Promise.all([
        api.groups({ ...params, page: paging.page, page_size: PAGE }),
        api.countGroups(params),
      ]);
      paging.total = count.groups_count;
      clear(list);
      for (const group of groups) list.append(card(group));
      summary.textContent = `${paging.total} group${paging.total === 1 ? "" : "s"}`;
      prev.disabled = paging.page <= 1;
      next.disabled = paging.page * PAGE >= paging.total;
    } catch (err) {
      summary.textContent = `Could not load the groups: ${err.message}`;
    }
  }

  load();
  const refreshMembers = debounce(() => {
    for (const details of list.querySelectorAll("details[open]")) {
      const box = details.querySelector(".members");
      if (box && box.reload) box.reload();
    }
  }, 500);
  return { reload: load, onEvent: refreshMembers };
}
