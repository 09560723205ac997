// The console: account in the URL (?account_id=), the tab in the hash, live events.

import { api, LiveEvents } from "./api.js";
import { clear, h } from "./dom.js";
import { groupsView } from "./groups.js";
import { overviewView } from "./overview.js";
import { queueView } from "./queue.js";
import { streamPage } from "./stream_page.js";
import { streamsView } from "./streams.js";
import { webhooksView } from "./webhooks.js";

const ACCOUNT_KEY = "luna-streams.account_id";
const UUID = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;
const TABS = {
  streams: streamsView, groups: groupsView, queue: queueView, overview: overviewView, webhooks: webhooksView,
};
const TITLES = {
  streams: "Streams", groups: "Groups", queue: "Queue", overview: "Overview", webhooks: "Webhooks",
};

const state = {
  // null: every account
  accountId: null,
  view: null,
  // who the console acts as (GET /2/auth/me): an account token fixes the account
  me: null,
};

function accountFromUrl() {
  const params = new URLSearchParams(window.location.search);
  if (params.has("account_id")) return params.get("account_id") || null;
  const remembered = window.localStorage.getItem(ACCOUNT_KEY);
  return remembered === null ? null : remembered || null;
}

function setAccount(accountId, { push = true } = {}) {
  if (state.me && state.me.account_id) accountId = state.me.account_id;
  state.accountId = accountId;
  window.localStorage.setItem(ACCOUNT_KEY, accountId || "");
  const url = new URL(window.location.href);
  if (accountId) url.searchParams.set("account_id", accountId);
  else url.searchParams.set("account_id", "");
  if (push) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
  document.getElementById("account-id").value = accountId || "";
  events.open(accountId);
  render();
}

function route() {
  const hash = window.location.hash.replace(/^#/, "");
  if (hash.startsWith("stream/")) return { tab: "streams", streamId: hash.slice(7) };
  return { tab: TABS[hash] ? hash : "streams", streamId: null };
}

function render() {
  const { tab, streamId } = route();
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.tab === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (state.view && state.view.destroy) state.view.destroy();
  const main = clear(document.getElementById("main"));
  const context = { accountId: state.accountId };
  state.view = streamId ? streamPage(main, context, streamId) : TABS[tab](main, context);
  const scope = state.accountId ? `account ${state.accountId}` : "all accounts";
  document.title = `${streamId ? "Stream" : TITLES[tab]} (${scope}) · luna-streams`;
}

const live = document.getElementById("live");
const LIVE_TEXT = {
  connecting: "Connecting to live events…",
  live: "Live",
  reconnecting: "Live events: reconnecting…",
  down: "Live events unavailable; retrying",
};
let wasDown = false;
const events = new LiveEvents(
  (event) => {
    if (state.view && state.view.onEvent) state.view.onEvent(event);
  },
  (status) => {
    live.textContent = LIVE_TEXT[status];
    live.className = `live ${status === "live" ? "on" : status === "down" ? "off" : ""}`;
    if (status === "down") wasDown = true;
    if (status === "live" && wasDown) {
      wasDown = false;
      if (state.view && state.view.reload) state.view.reload();
    }
  },
);

document.getElementById("account-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  const input = document.getElementById("account-id");
  const value = input.value.trim();
  if (value && !UUID.test(value)) {
    input.setAttribute("aria-invalid", "true");
    input.setCustomValidity("An account ID is a lowercase UUID");
    input.reportValidity();
    return;
  }
  input.removeAttribute("aria-invalid");
  input.setCustomValidity("");
  setAccount(value || null);
});
document.getElementById("account-id").addEventListener("input", (e) => e.target.setCustomValidity(""));
document.getElementById("all-accounts").addEventListener("click", () => setAccount(null));
window.addEventListener("hashchange", () => {
  render();
  document.getElementById("main").focus();
});
window.addEventListener("popstate", () => {
  const accountId = accountFromUrl();
  if (accountId !== state.accountId) setAccount(accountId, { push: false });
});

// Authentication on and not signed in: a token, sent once to POST /console/session, which
// keeps it in an HttpOnly cookie (the page never stores it).
function signInView(reason) {
  const main = clear(document.getElementById("main"));
  live.textContent = "Signed out";
  const input = h("input", {
    id: "sign-in-token", type: "password", autocomplete: "off", required: true, size: 50,
    "aria-describedby": "sign-in-error",
  });
  const error = h("p", { id: "sign-in-error", class: "error", role: "alert" }, reason || "");
  const form = h(
    "form", { id: "sign-in", class: "sign-in", "aria-label": "Sign in" },
    h("h2", {}, "Sign in"),
    h("p", {}, "Authentication is on: sign in with an API token (made by luna-streams tokens create)."),
    h("label", { for: "sign-in-token" }, "API token"), input,
    h("button", { type: "submit" }, "Sign in"), error,
  );
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    try {
      await api.signIn(input.value.trim());
      window.location.reload();
    } catch (failure) {
      error.textContent = failure.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });
  main.append(form);
  input.focus();
}

function showIdentity(me) {
  if (me.auth !== "on") return;
  const who = `${me.name || me.token_id || me.via} (${me.role})`;
  const scope = me.account_id ? `, account ${me.account_id}` : "";
  document.getElementById("identity-text").textContent = `Signed in as ${who}${scope}`;
  document.getElementById("identity").hidden = false;
  if (me.account_id) {
    document.getElementById("account-id").readOnly = true;
    document.getElementById("all-accounts").hidden = true;
  }
}

document.getElementById("sign-out").addEventListener("click", async () => {
  await api.signOut();
  window.location.reload();
});

async function start() {
  try {
    state.me = await api.me();
  } catch (failure) {
    if (failure.status === 401 || failure.status === 429) {
      signInView(failure.status === 429 ? failure.message : "");
      return;
    }
    throw failure;
  }
  showIdentity(state.me);
  const initial = accountFromUrl();
  setAccount(initial && UUID.test(initial) ? initial : null, { push: false });
}

start();
