// vouch dashboard: login with a bearer token (sessionStorage), fleet table with filters and
// paging, terminal page with quarantine/release and measured vs reference (terminal.js), the
// timeline chart as SVG. No dependencies.
"use strict";
(function () {
  const S = window.VOUCH_STRINGS;
  const $ = (id) => document.getElementById(id);
  let lang = localStorage.getItem("vouch.lang") ||
    ((navigator.languages || []).some((l) => /^zh-(TW|Hant|HK|MO)/i.test(l)) ? "zh-TW" : "en");
  let me = null;
  let cursor = null;
  let current = null;
  let pending = null;
  const t = (k) => (S[lang] && S[lang][k]) || S.en[k] || k;
  const fmt = (iso) => iso ? new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "medium" }).format(new Date(iso)) : "—";

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function translate() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach((e) => { e.textContent = t(e.dataset.i18n); });
    $("lang").value = lang;
    if (me) $("who").textContent = t("signed_in_as") + " " + me.name + " (" + me.role + ")";
  }
  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + sessionStorage.getItem("vouch.token") };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401) { logout(t("login_failed")); throw new Error("unauthorized"); }
    const j = await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error(j.error || r.statusText); e.status = r.status; throw e; }
    return j;
  }
  window.vouchApi = api;
  function show(view) {
    ["login-view", "fleet-view", "terminal-view"].forEach((v) => { $(v).hidden = v !== view; });
    $("logout").hidden = view === "login-view";
  }
  function logout(message) {
    sessionStorage.removeItem("vouch.token");
    me = null;
    $("who").textContent = "";
    $("login-error").textContent = message || "";
    show("login-view");
  }
  async function login(ev) {
    if (ev) ev.preventDefault();
    const tok = $("token").value.trim();
    if (tok) sessionStorage.setItem("vouch.token", tok);
    if (!sessionStorage.getItem("vouch.token")) return show("login-view");
    try { me = await api("GET", "/api/whoami"); } catch (e) { if (e.status) $("login-error").textContent = e.message; return; }
    $("token").value = "";
    $("login-error").textContent = "";
    translate();
    openFleet();
  }
  const can = (p) => me && me.permissions.indexOf(p) >= 0;
  function stateLabel(d) {
    const s = el("span", t(d.state) + (d.release_pending ? " (" + t("release_pending") + ")" : ""), "state state-" + d.state);
    s.dataset.state = d.release_pending ? "release_pending" : d.state;
    return s;
  }
  async function openFleet() {
    show("fleet-view");
    cursor = null;
    $("fleet-table").querySelector("tbody").textContent = "";
    await Promise.all([loadCounts(), loadPage(), loadChart()]);
  }
  async function loadCounts() {
    const f = await api("GET", "/api/fleet");
    const dl = $("counts"); dl.textContent = "";
    ["trusted", "pending", "unresponsive", "quarantined"].forEach((k) => {
      dl.append(el("dt", t(k)), el("dd", String(f.counts[k] || 0)));
    });
    dl.append(el("dt", t("total")), el("dd", String(f.total)));
  }
  async function loadPage() {
    const q = new URLSearchParams({ limit: "50" });
    if ($("state-filter").value) q.set("state", $("state-filter").value);
    if ($("search").value.trim()) q.set("q", $("search").value.trim());
    if (cursor) q.set("after", cursor);
    const page = await api("GET", "/api/devices?" + q);
    const tb = $("fleet-table").querySelector("tbody");
    page.devices.forEach((d) => {
      const tr = el("tr"); tr.dataset.id = d.id;
      const a = el("a", d.id); a.href = "#/devices/" + encodeURIComponent(d.id);
      const idc = el("td"); idc.append(a);
      const st = el("td"); st.append(stateLabel(d));
      const reasons = (d.quarantine ? [d.quarantine.reason] : []).concat(d.reasons || []);
      tr.append(idc, el("td", d.model), el("td", (d.provenance && d.provenance.firmware_version) || "—"), st,
        el("td", fmt(d.last_verdict_at)), el("td", reasons.join("; ") || t("none")),
        el("td", String(d.punches ? d.punches.head_seq ?? d.punches.seq ?? "—" : "—")),
        el("td", String(d.punches ? d.punches.held ?? 0 : 0)), el("td", d.buffer_pressure ? t("yes") : t("no")));
      tb.append(tr);
    });
    cursor = page.next;
    $("next-page").hidden = !cursor;
  }
  async function loadChart() {
    const tl = await api("GET", "/api/timeline");
    const step = (tl.bucket_secs || 60) * 1000;
    const end = Math.floor(Date.now() / step) * step;
    const n = 24 * 3600 * 1000 / step;
    const by = new Map(tl.minutes.map((m) => [Date.parse(m.at), m]));
    const keys = ["affirming", "warning", "contraindicated", "quarantines"];
    const colours = { affirming: "#2a9d8f", warning: "#e9c46a", contraindicated: "#e76f51", quarantines: "#6a040f" };
    let max = 1;
    const rows = [];
    for (let i = 0; i < n; i++) {
      const m = by.get(end - (n - 1 - i) * step) || {};
      rows.push(m);
      keys.forEach((k) => { max = Math.max(max, m[k] || 0); });
    }
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + n + " 110");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", t("chart"));
    keys.forEach((k) => {
      const p = document.createElementNS(ns, "polyline");
      p.setAttribute("points", rows.map((m, i) => i + "," + (105 - 100 * (m[k] || 0) / max)).join(" "));
      p.setAttribute("fill", "none"); p.setAttribute("stroke", colours[k]); p.setAttribute("stroke-width", "2");
      p.setAttribute("vector-effect", "non-scaling-stroke");
      if (k === "quarantines") p.setAttribute("stroke-dasharray", "4 2");
      p.dataset.series = k;
      svg.append(p);
    });
    const legend = el("p");
    keys.forEach((k) => { const s = el("span", "■ " + t(k) + "  "); s.style.color = colours[k]; legend.append(s); });
    $("chart").textContent = ""; $("chart").append(svg, legend);
  }
  async function openTerminal(id) {
    show("terminal-view");
    $("action-error").textContent = ""; $("confirm").hidden = true; $("reason").value = "";
    const d = await api("GET", "/api/devices/" + encodeURIComponent(id));
    current = d;
    $("t-id").textContent = d.id;
    const dl = $("t-facts"); dl.textContent = "";
    const st = el("dd"); st.append(stateLabel(d)); st.id = "t-state";
    dl.append(el("dt", t("state")), st, el("dt", t("model")), el("dd", d.model),
      el("dt", t("last_verdict")), el("dd", fmt(d.last_verdict_at) + " " + (d.verdict_status ? t(d.verdict_status) : "")),
      el("dt", t("held")), el("dd", String(d.punches ? d.punches.held ?? 0 : 0)),
      el("dt", t("pressure")), el("dd", d.buffer_pressure ? t("yes") : t("no")));
    const ul = $("t-reasons"); ul.textContent = "";
    if (d.quarantine) ul.append(el("li", t("quarantine_reason") + ": " + d.quarantine.reason));
    (d.reasons || []).forEach((r) => ul.append(el("li", r)));
    if (!ul.children.length) ul.append(el("li", t("none")));
    $("actions").hidden = !can("operate");
    $("quarantine-btn").hidden = d.state === "quarantined";
    $("release-btn").hidden = d.state !== "quarantined" || d.release_pending;
    try {
      const c = await api("GET", "/api/devices/" + encodeURIComponent(id) + "/comparison");
      $("t-comparison").hidden = false; $("t-comparison-none").hidden = true;
      window.vouchTerminal.comparison($("t-comparison"), $("t-comparison-source"), c, t);
    } catch (e) {
      if (e.status !== 404) throw e;
      $("t-comparison").hidden = true; $("t-comparison-none").hidden = false;
    }
  }
  function ask(action) {
    if (!$("reason").value.trim()) { $("action-error").textContent = t("reason_required"); return; }
    pending = action;
    $("action-error").textContent = "";
    $("confirm-text").textContent = t("confirm_" + action);
    $("confirm").hidden = false;
  }
  async function act() {
    $("confirm").hidden = true;
    try {
      await api("POST", "/api/devices/" + encodeURIComponent(current.id) + "/" + pending, { reason: $("reason").value.trim() });
      await openTerminal(current.id);
    } catch (e) { $("action-error").textContent = t("refused") + ": " + e.message; }
  }
  function route() {
    if (!me) return;
    const m = location.hash.match(/^#\/devices\/(.+)$/);
    (m ? openTerminal(decodeURIComponent(m[1])) : openFleet()).catch((e) => { $("action-error").textContent = e.message; });
  }
  document.addEventListener("DOMContentLoaded", () => {
    translate();
    $("lang").addEventListener("change", () => { lang = $("lang").value; localStorage.setItem("vouch.lang", lang); translate(); if (me) route(); });
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => logout(""));
    $("filter-form").addEventListener("submit", (ev) => { ev.preventDefault(); openFleet(); });
    $("next-page").addEventListener("click", () => loadPage());
    $("back").addEventListener("click", () => { location.hash = "#/"; });
    $("quarantine-btn").addEventListener("click", () => ask("quarantine"));
    $("release-btn").addEventListener("click", () => ask("release"));
    $("confirm-yes").addEventListener("click", act);
    $("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; });
    window.addEventListener("hashchange", route);
    if (sessionStorage.getItem("vouch.token")) login(); else show("login-view");
  });
})();
