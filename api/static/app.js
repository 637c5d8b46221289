// accel web page: profile cards, node view (filter, sort, select, draft) and the estimate form.
// Plain DOM, no build step. All data goes into the page with textContent, never innerHTML.
"use strict";

const state = { token: sessionStorage.getItem("accel-token") || "", selected: new Set(), sort: "name", descending: false };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function api(path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const detail = (data.errors || []).map((e) => `${e.field}: ${e.message}`).join("\n");
    throw new Error(detail || data.error || `HTTP ${response.status}`);
  }
  return data;
}

const money = (v) => (v === null || v === undefined ? "–" : "$" + Number(v).toLocaleString(undefined, { maximumFractionDigits: 2 }));
const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString(undefined, { maximumFractionDigits: 2 }));

function showStatus(observedAt, stale) {
  const status = document.getElementById("status");
  const when = observedAt ? new Date(observedAt).toLocaleString() : "unknown";
  status.textContent = stale ? `Cluster state is STALE (observed ${when})` : `Cluster state observed ${when}`;
  status.classList.toggle("stale", Boolean(stale));
}

function profileCard(p) {
  const unit = p.unit === "GPU" ? "" : ` ${p.unit}${p.availableUnits === 1 ? "" : "s"}`;
  let headline = `${p.availableUnits}${unit} available`;
  let cls = p.available ? "ok" : "none";
  if (!p.enabled) { headline = "disabled"; cls = "disabled"; }
  const price = p.pricePerGpuHour === null ? "price unknown" : `${money(p.pricePerUnitHour)}/h per ${p.unit}`;
  const facts = [
    ["Type", p.acceleratorTypes.length > 1 ? p.acceleratorTypes.join(" > ") : p.displayType],
    ["Memory", p.memory || "–"], ["Sharing", p.replicas ? `${p.sharing} ×${p.replicas}` : p.sharing],
    ["GPUs per pod", `${p.gpus.default} default${p.gpus.max ? `, ${p.gpus.max} max` : ""}`],
    ["Total GPUs", num(p.totalGpus)], ["Pending pods", p.pendingPods],
    ["Default pod", p.costPerHourDefault === null ? "–" : `${money(p.costPerHourDefault)}/h`],
  ];
  const list = el("dl");
  for (const [k, v] of facts) list.append(el("dt", {}, k), el("dd", {}, v));
  return el("article", { class: "card", "data-profile": p.name },
    el("h3", {}, p.displayName === p.displayType ? p.displayName : `${p.displayName} (${p.displayType})`),
    el("p", { class: "headline " + cls }, `${headline} · ${price}`),
    p.description ? el("p", { class: "muted" }, p.description) : "",
    list);
}

async function loadProfiles() {
  const data = await api("/api/hardware-profiles");
  showStatus(data.observedAt, data.stale);
  const box = document.getElementById("profiles");
  box.replaceChildren(...data.profiles.map(profileCard));
  if (!data.profiles.length) box.append(el("p", { class: "muted" }, "No profiles are visible to you."));
}

function nodeRow(n) {
  const box = el("input", { type: "checkbox", checked: state.selected.has(n.name) });
  box.setAttribute("aria-label", "select " + n.name);
  box.addEventListener("change", () => { box.checked ? state.selected.add(n.name) : state.selected.delete(n.name); updateSelection(); });
  const topology = [n.zone, n.spine, n.leaf].filter(Boolean).join("/") + (n.rdma ? " rdma" : "");
  const row = el("tr", { "data-node": n.name },
    el("td", {}, box), el("td", {}, n.name), el("td", {}, n.displayName), el("td", { class: "num" }, n.gpus),
    el("td", { class: "num" }, num(n.free)), el("td", { class: "num" }, n.memoryGb ? `${n.memoryGb}GB` : "–"),
    el("td", {}, n.sharing), el("td", {}, topology || "–"),
    el("td", { class: n.status === "Ready" ? "good" : "bad" }, n.status));
  row.classList.toggle("selected", state.selected.has(n.name));
  return row;
}

function updateSelection() {
  document.getElementById("selected-count").textContent = `${state.selected.size} selected`;
  document.getElementById("draft").disabled = state.selected.size === 0;
  for (const row of document.querySelectorAll("#nodes tbody tr")) row.classList.toggle("selected", state.selected.has(row.dataset.node));
}

async function loadNodes() {
  const params = new URLSearchParams({ sort: (state.descending ? "-" : "") + state.sort });
  const type = document.getElementById("type-filter").value;
  if (type) params.set("type", type);
  const data = await api("/api/nodes?" + params);
  document.querySelector("#nodes tbody").replaceChildren(...data.nodes.map(nodeRow));
  document.getElementById("node-count").textContent = `${data.count} node(s)` + (data.redacted ? ", names redacted" : "");
  const sortSelect = document.getElementById("sort");
  if (!sortSelect.options.length) for (const key of data.sortKeys) sortSelect.append(el("option", { value: key }, key));
  sortSelect.value = state.sort;
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === state.sort ? (state.descending ? "descending" : "ascending") : "none");
  }
  updateSelection();
}

async function loadTypes() {
  const data = await api("/api/nodes");
  const types = [...new Set(data.nodes.flatMap((n) => n.types))].sort();
  const names = Object.fromEntries(data.nodes.filter((n) => n.types.length === 1).map((n) => [n.type, n.displayName]));
  const filter = document.getElementById("type-filter");
  for (const t of types) filter.append(el("option", { value: t }, names[t] || t));
}

async function draftProfile() {
  const body = { nodes: [...state.selected] };
  const name = document.getElementById("draft-name").value.trim();
  if (name) body.name = name;
  const out = document.getElementById("draft-result");
  out.hidden = false;
  try {
    const data = await api("/api/hardware-profiles/draft", body);
    document.getElementById("draft-warnings").replaceChildren(...data.warnings.map((w) => el("li", {}, w)));
    document.getElementById("draft-yaml").textContent = data.yaml;
  } catch (error) {
    document.getElementById("draft-warnings").replaceChildren(el("li", { class: "error" }, error.message));
    document.getElementById("draft-yaml").textContent = "";
  }
}

function estimateBody(form) {
  const body = {};
  const numeric = ["params", "tokens", "datasetTokens", "epochs", "gpus", "maxHours", "maxCostPerHour", "minTokensPerSecond"];
  for (const [key, raw] of new FormData(form).entries()) {
    const value = String(raw).trim();
    if (!value) continue;
    body[key] = numeric.includes(key) ? Number(value) : value;
  }
  return body;
}

function estimateRow(e) {
  const notes = [...e.excludedBecause, ...(e.notes || [])].join("; ") + (Object.keys(e.hoursByType).length
    ? ` (other types: ${Object.entries(e.hoursByType).map(([t, h]) => `${t} ${num(h)} h`).join(", ")})` : "");
  return el("tr", { "data-profile": e.profile },
    el("td", {}, e.rank ?? "–"), el("td", {}, e.displayName), el("td", { class: "num" }, `${e.gpus} × ${e.unit}`),
    el("td", { class: "num" }, num(e.hours)), el("td", { class: e.fits ? "good" : "bad" }, e.supported ? (e.fits ? "yes" : "no") : "–"),
    el("td", { class: "num" }, money(e.costPerHour)), el("td", { class: "num" }, money(e.totalCost)),
    el("td", { class: "num" }, num(e.tokensPerSecond)), el("td", { class: "notes" }, notes));
}

async function runEstimate(event) {
  event.preventDefault();
  const error = document.getElementById("estimate-error");
  const table = document.getElementById("estimates");
  try {
    const data = await api("/api/estimates", estimateBody(event.target));
    error.hidden = true;
    table.hidden = false;
    table.querySelector("tbody").replaceChildren(...data.estimates.map(estimateRow));
    const notes = document.getElementById("assumptions");
    const a = data.assumptions;
    notes.hidden = false;
    notes.querySelector("ul").replaceChildren(
      el("li", {}, `MFU ${a.mfu}, scaling efficiency ${a.scalingEfficiency}, ${a.flopsPerParamToken} FLOPs per parameter per token, ${a.bytesPerParam} bytes per parameter`),
      ...a.rules.map((r) => el("li", {}, r)));
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    table.hidden = true;
  }
}

async function loadModels() {
  const data = await api("/api/models");
  document.getElementById("models").replaceChildren(...data.models.map((m) => el("option", { value: m.name }, `${m.name} (${num(m.params / 1e9)}B)`)));
}

function identityText(who) {
  if (who.anonymous) return "Viewing as anonymous: only the profiles every team may use. Sign in with a token to see your team's.";
  const name = who.username && !who.devIdentity ? `${who.username} ` : "";
  const teams = who.teams && who.teams.length ? `team ${who.teams.join(", ")}` : "no team of this policy";
  const how = who.devIdentity ? " (development identity from --dev-identity, local use only)" : "";
  return `Viewing as ${name}${teams} [${who.groups.join(", ")}]${how}`;
}

async function loadIdentity() {
  const who = await api("/api/whoami");
  const box = document.getElementById("identity");
  box.textContent = identityText(who);
  box.dataset.teams = (who.teams || []).join(",");
  box.classList.toggle("dev", Boolean(who.devIdentity));
}

async function refresh() {
  try {
    await Promise.all([loadIdentity(), loadProfiles(), loadNodes()]);
  } catch (error) {
    document.getElementById("status").textContent = "Cannot load: " + error.message;
  }
}

function wire() {
  document.getElementById("type-filter").addEventListener("change", loadNodes);
  document.getElementById("sort").addEventListener("change", (e) => { state.sort = e.target.value; loadNodes(); });
  document.getElementById("descending").addEventListener("change", (e) => { state.descending = e.target.checked; loadNodes(); });
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      state.descending = state.sort === th.dataset.sort ? !state.descending : false;
      state.sort = th.dataset.sort;
      document.getElementById("descending").checked = state.descending;
      loadNodes();
    });
  }
  document.getElementById("select-all").addEventListener("change", (e) => {
    for (const row of document.querySelectorAll("#nodes tbody tr")) e.target.checked ? state.selected.add(row.dataset.node) : state.selected.delete(row.dataset.node);
    loadNodes();
  });
  document.getElementById("draft").addEventListener("click", draftProfile);
  document.getElementById("estimate-form").addEventListener("submit", runEstimate);
  document.getElementById("token").value = state.token;
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = document.getElementById("token").value.trim();
    sessionStorage.setItem("accel-token", state.token);
    refresh();
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  await Promise.all([refresh(), loadTypes().catch(() => {}), loadModels().catch(() => {})]);
  setInterval(refresh, 30000);
});
