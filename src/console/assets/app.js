// The console's shell: the login (when the server checks signatures), the hash router, the
// cluster picker and the poll that keeps the shown page live.
import { call, heldKey, holdKey, isAuthError, listAll } from "./api.js";
import * as pages from "./pages.js";
import { errorBox, field, fill, h, short } from "./ui.js";

/// How often the page shown is read again (the agent reports stats every 2 s).
const POLL_MS = 2000;

const main = document.getElementById("view");
const banner = document.getElementById("banner");
const picker = document.getElementById("cluster");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

/// [pattern, page, cluster-scoped]: `#/c/CLUSTER/...` routes carry their cluster.
const ROUTES = [
  [/^#\/clusters$/, pages.clusters],
  [/^#\/c\/([^/]+)\/services$/, pages.serviceList, ["cluster"]],
  [/^#\/c\/([^/]+)\/services\/([^/]+)$/, pages.serviceDetail, ["cluster", "name"]],
  [/^#\/c\/([^/]+)\/tasks$/, pages.taskList, ["cluster"]],
  [/^#\/c\/([^/]+)\/tasks\/([^/]+)$/, pages.taskDetail, ["cluster", "id"]],
  [/^#\/c\/([^/]+)\/instances$/, pages.instances, ["cluster"]],
  [/^#\/taskdefs$/, pages.taskDefinitionList],
  [/^#\/taskdefs\/new(?:\?from=(.*))?$/, pages.taskDefinitionEditor, ["from"]],
  [/^#\/taskdefs\/([^/?]+)$/, pages.taskDefinitionFamily, ["family"]],
  [/^#\/routes$/, pages.routes],
];

let current = null;
let cluster = "default";
let polling = false;

function route() {
  const hash = location.hash || "#/c/default/services";
  for (const [pattern, page, names = []] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    const params = {};
    names.forEach((name, i) => {
      params[name] = match[i + 1] === undefined ? undefined : decodeURIComponent(match[i + 1]);
    });
    return { page, params };
  }
  return null;
}

function showNav() {
  const c = encodeURIComponent(cluster);
  fill(nav,
    h("a", { href: "#/clusters" }, "Clusters"),
    h("a", { href: `#/c/${c}/services` }, "Services"),
    h("a", { href: `#/c/${c}/tasks` }, "Tasks"),
    h("a", { href: "#/taskdefs" }, "Task definitions"),
    h("a", { href: `#/c/${c}/instances` }, "Instances"),
    h("a", { href: "#/routes" }, "HTTP routes"));
  for (const a of nav.children) {
    a.classList.toggle("here", location.hash.startsWith(a.getAttribute("href")));
  }
}

async function showClusters() {
  const arns = await listAll("ListClusters", {}, "clusterArns");
  const names = arns.map(short).sort();
  if (!names.includes(cluster)) names.unshift(cluster);
  fill(picker, names.map((name) => h("option", { value: name, selected: name === cluster }, name)));
}

picker.addEventListener("change", () => {
  const hash = location.hash.match(/^#\/c\/[^/]+\/(services|tasks|instances)/);
  location.hash = `#/c/${encodeURIComponent(picker.value)}/${hash ? hash[1] : "services"}`;
});

async function refresh() {
  if (!current || polling) return;
  polling = true;
  try {
    await current.refresh();
    fill(banner);
  } catch (error) {
    if (isAuthError(error)) return login(error);
    fill(banner, errorBox(error));
  } finally {
    polling = false;
  }
}

async function show() {
  const found = route();
  if (!found) {
    location.hash = "#/c/default/services";
    return;
  }
  if (found.params.cluster) cluster = found.params.cluster;
  showNav();
  current = found.page(found.params);
  fill(main, current.view);
  document.title = `${document.querySelector("h1")?.textContent || "wasmgate"} · wasmgate`;
  polling = false;
  await refresh();
  showClusters().catch(() => {});
}

function showWho() {
  const key = heldKey();
  fill(who, key ? [h("span", { class: "muted" }, `signed as ${key.accessKeyId}`), " ",
    h("button", { onclick: () => { holdKey(null); login(); } }, "Sign out")] : "");
}

/// The login page: a key is tried with one signed ListClusters before it is held.
function login(error) {
  current = null;
  fill(nav);
  fill(banner);
  fill(who);
  const accessKeyId = h("input", { name: "accessKeyId", autocomplete: "username", required: true });
  const secret = h("input", { name: "secretAccessKey", type: "password", autocomplete: "current-password", required: true });
  const region = h("input", { name: "region", value: heldKey()?.region || "us-east-1" });
  const out = h("div", { id: "login-error" }, error && heldKey() ? errorBox(error) : "");
  holdKey(null);
  const form = h("form", { class: "login", id: "login" },
    h("h1", {}, "Sign in to wasmgate"),
    h("p", { class: "muted" }, "This server checks signatures (--credentials). Give one of its access keys; every request is signed with it in this tab, and the secret stays in this tab's session storage."),
    field("Access key ID", accessKeyId), field("Secret access key", secret), field("Region", region),
    h("button", { type: "submit" }, "Sign in"), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = { accessKeyId: accessKeyId.value.trim(), secretAccessKey: secret.value, region: region.value.trim() || "us-east-1" };
    fill(out);
    try {
      await call("ListClusters", {}, key);
    } catch (refused) {
      fill(out, errorBox(refused));
      return;
    }
    holdKey(key);
    showWho();
    begin();
    await show();
  });
  fill(main, form);
  document.title = "Sign in · wasmgate";
}

let begun = false;

/// Follows the hash and polls, once a first call has been answered.
function begin() {
  if (begun) return;
  begun = true;
  window.addEventListener("hashchange", show);
  setInterval(() => {
    if (!document.hidden) refresh();
  }, POLL_MS);
}

async function start() {
  try {
    await call("ListClusters");
  } catch (error) {
    if (isAuthError(error)) return login(error);
  }
  showWho();
  begin();
  await show();
}

start();
