// Webhooks tab: register an endpoint for the events it wants, send it a test delivery,
// see its deliveries (time, event, state, status code, attempts), remove it.

import { api } from "./api.js";
import { badge, clear, confirmDialog, h, nextId, notify } from "./dom.js";

export const EVENTS = [
  "failure", "handler_lost", "done", "cancel", "pause", "pending", "in_progress",
  "autorestart_exhausted", "created", "deleted",
];
const DELIVERIES_PAGE = 20;

export function webhooksView(root, context) {
  const list = h("div");
  const summary = h("p", { role: "status", "aria-live": "polite" });
  const urlId = nextId("webhook-url");
  const accId = nextId("webhook-account");
  const secretId = nextId("webhook-secret");
  const descId = nextId("webhook-desc");
  const groupsId = nextId("webhook-groups");
  const errorId = nextId("webhook-error");
  const url = h("input", { id: urlId, size: 40, required: true, type: "url", "aria-describedby": errorId });
  const account = h("input", { id: accId, size: 38, value: context.accountId || "" });
  const secret = h("input", { id: secretId, size: 30, autocomplete: "off", placeholder: "made for you when empty" });
  const description = h("input", { id: descId, size: 30 });
  const groups = h("input", { id: groupsId, size: 24, placeholder: "every group" });
  const boxes = EVENTS.map((event) => {
    const id = nextId(`webhook-event-${event}`);
    const box = h("input", { type: "checkbox", id, value: event, checked: event === "failure" });
    return { event, box, node: h("span", { class: "check" }, box, h("label", { for: id }, event)) };
  });
  const error = h("p", { class: "form-error", id: errorId, role: "alert" });
  const made = h("p", { role: "status" });
  const form = h("form", { class: "filters", "aria-label": "Add a webhook" },
    h("div", {}, h("label", { for: accId }, "Account ID"), account),
    h("div", {}, h("label", { for: urlId }, "Webhook URL"), url),
    h("div", {}, h("label", { for: secretId }, "Secret"), secret),
    h("div", {}, h("label", { for: descId }, "Description"), description),
    h("div", {}, h("label", { for: groupsId }, "Groups (comma-separated)"), groups),
    h("fieldset", {}, h("legend", {}, "Events"), boxes.map((b) => b.node)),
    h("button", { type: "submit", class: "primary" }, "Add webhook"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    made.textContent = "";
    const body = {
      account_id: account.value.trim(),
      url: url.value.trim(),
      events: boxes.filter((b) => b.box.checked).map((b) => b.event),
      description: description.value,
    };
    if (secret.value) body.secret = secret.value;
    const names = groups.value.split(/[\s,]+/).filter(Boolean);
    if (names.length) body.groups = names;
    try {
      const answer = await api.createWebhook(body);
      notify("Webhook added");
      // a secret made by the service is shown this once
      if (answer.secret) made.textContent = `Secret (shown once, keep it): ${answer.secret}`;
      url.value = "";
      secret.value = "";
      load();
    } catch (err) {
      const target = { account_id: account, secret, description, groups }[err.path?.split(".")[0]] || url;
      target.setAttribute("aria-invalid", "true");
      error.textContent = err.path !== null ? `${err.path}: ${err.fieldMessage}` : err.message;
      target.focus();
    }
  });

  clear(root).append(h("h2", {}, "Webhooks"), form, error, made, summary, list);

  function deliveriesBox(hook) {
    const body = h("tbody");
    const status = h("p", { role: "status" });
    const box = h("div", { class: "members" }, status, h("table", {},
      h("caption", { class: "none" }, `Deliveries of ${hook.url}, newest first`),
      h("thead", {}, h("tr", {}, ["Time", "Event", "Stream", "State", "Status code", "Attempts", "Error"]
        .map((t) => h("th", { scope: "col" }, t)))), body));
    box.reload = async () => {
      try {
        const answer = await api.deliveries(hook.webhook_id, {
          account_id: hook.account_id, page_size: DELIVERIES_PAGE,
        });
        clear(body);
        for (const d of answer.deliveries) {
          body.append(h("tr", { dataset: { deliveryId: d.delivery_id } },
            h("td", {}, d.last_attempt_time || d.create_time),
            h("td", {}, d.event),
            h("td", { class: "id" }, d.stream_id || "—"),
            h("td", { class: "state" }, badge(d.state)),
            h("td", { class: "code" }, d.status_code === null ? "—" : String(d.status_code)),
            h("td", { class: "attempts" }, String(d.attempts)),
            h("td", {}, d.error || "")));
        }
        status.textContent = answer.deliveries.length ? "" : "No deliveries yet";
      } catch (err) {
        status.textContent = err.message;
      }
    };
    box.reload();
    return box;
  }

  function card(hook) {
    const label = hook.description || hook.url;
    let shown = null;
    const holder = h("div");
    const toggle = h("button", {
      type: "button",
      "aria-expanded": "false",
      "aria-label": `Deliveries of ${label}`,
      onclick: () => {
        if (shown) {
          shown.remove();
          shown = null;
          toggle.setAttribute("aria-expanded", "false");
        } else {
          shown = deliveriesBox(hook);
          holder.append(shown);
          toggle.setAttribute("aria-expanded", "true");
        }
      },
    }, "Deliveries");
    const test = h("button", {
      type: "button",
      "aria-label": `Send a test to ${label}`,
      onclick: async () => {
        try {
          await api.testWebhook(hook.webhook_id, hook.account_id);
          notify(`Test delivery queued for ${label}`);
          if (shown) setTimeout(() => shown && shown.reload(), 1500);
        } catch (err) {
          notify(err.message, true);
        }
      },
    }, "Send test");
    const remove = h("button", {
      type: "button",
      class: "danger",
      "aria-label": `Delete webhook ${label}`,
      onclick: async () => {
        if (!(await confirmDialog(`Delete webhook ${label} and its deliveries?`))) return;
        try {
          await api.deleteWebhook(hook.webhook_id, hook.account_id);
          notify(`Webhook ${label} deleted`);
          load();
        } catch (err) {
          notify(err.message, true);
        }
      },
    }, "Delete");
    return h("section", { class: "card", dataset: { webhookId: hook.webhook_id } },
      h("h3", {}, hook.url),
      h("p", {}, hook.description),
      h("p", {}, `Events: ${hook.events.join(", ")}`),
      hook.groups ? h("p", {}, `Groups: ${hook.groups.join(", ")}`) : null,
      h("p", { class: "id" }, `Account ${hook.account_id}`),
      h("div", { class: "toolbar" }, toggle, test, remove),
      holder);
  }

  async function load() {
    try {
      const answer = await api.webhooks({ account_id: context.accountId, page_size: 100 });
      clear(list);
      for (const hook of answer.webhooks) list.append(card(hook));
      const n = answer.webhooks.length;
      summary.textContent = `${n} webhook${n === 1 ? "" : "s"}`;
    } catch (err) {
      summary.textContent = `Could not load the webhooks: ${err.message}`;
    }
  }

  load();
  return { reload: load };
}
