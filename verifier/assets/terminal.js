// vouch dashboard, terminal page parts: the measured-vs-reference table from
// GET /api/devices/{id}/comparison (rows that count against the terminal first, highlighted).
// Loaded before app.js, which calls window.vouchTerminal.comparison(...).
"use strict";
(function () {
  const BAD = { differs: 0, missing: 1, unexpected: 2 };
  const rank = (s) => (s in BAD ? BAD[s] : 3);
  const short = (h) => (h && h.length > 16 ? h.slice(0, 16) + "…" : h || "—");

  function cell(text, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (title) td.title = title;
    return td;
  }

  // Governing source as one line: "operator policy (model T-100) model:T-100@…".
  function sourceText(src, t) {
    if (!src || src.kind === "none") return t("source_none");
    if (src.kind === "operator_device") return t("source_operator_device") + " " + src.policy_id;
    if (src.kind === "operator_model") return t("source_operator_model") + " " + src.model + " " + src.policy_id;
    return t("source_vendor_bundle") + " " + src.model + "@" + src.version + " " + src.policy_id;
  }

  // Fills `table` (thead present) and `caption` from comparison `c`; `t` translates.
  function comparison(table, caption, c, t) {
    const tb = table.querySelector("tbody");
    tb.textContent = "";
    caption.textContent = t("governed_by") + ": " + sourceText(c.source, t) + " — " +
      t("bad_items") + ": " + c.bad;
    const items = c.items.slice().sort((a, b) => rank(a.status) - rank(b.status));
    items.forEach((i) => {
      const tr = document.createElement("tr");
      tr.dataset.status = i.status;
      tr.dataset.name = i.name;
      if (i.status in BAD) tr.className = "bad";
      const ref = i.reference.length ? i.reference.map(short).join(", ") : "—";
      tr.append(cell(t("kind_" + i.kind)), cell(i.name), cell(short(i.measured), i.measured || ""),
        cell(ref, i.reference.join("\n")), cell(t("status_" + i.status)));
      tb.append(tr);
    });
    if (!items.length) {
      const tr = document.createElement("tr");
      tr.append(cell(t("none")));
      tb.append(tr);
    }
  }

  window.vouchTerminal = { comparison };
})();
