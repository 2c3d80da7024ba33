/* The computed trait builder: shows the fields of the chosen type, picks events and
   properties from those seen (a list beside a text input, which stays the field that is
   sent), adds and removes filter and rule rows, and previews the definition. Without it the
   form still works: every field is a plain input. */
"use strict";
(function () {
  const builder = document.getElementById("cta-builder");
  const previewBox = document.getElementById("cta-preview-box");

  // --- pickers: a <select> of what was seen, filling the text input beside it -------------
  function other(select) { return select.querySelector("option[data-other]"); }

  function syncPicker(picker) {
    const select = picker.querySelector("select.cta-pick");
    const input = picker.querySelector("input.cta-pick-text");
    const value = input.value;
    const match = Array.from(select.options).find((o) => !o.hasAttribute("data-other") && o.value && o.value === value);
    if (match) select.value = value;
    else if (value) other(select).selected = true;
    else select.selectedIndex = 0;
    input.hidden = !select.querySelector("option:checked").hasAttribute("data-other");
    select.hidden = false;
  }

  function initPicker(picker) {
    const select = picker.querySelector("select.cta-pick");
    const input = picker.querySelector("input.cta-pick-text");
    select.addEventListener("change", () => {
      const chosen = select.querySelector("option:checked");
      if (chosen.hasAttribute("data-other")) {
        input.hidden = false;
        input.value = "";
        input.focus();
      } else {
        input.hidden = true;
        input.value = select.value;
      }
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
    syncPicker(picker);
  }

  // --- properties seen on an event, loaded when the event changes --------------------------
  const seen = new Map();
  function propertiesOf(event) {
    if (!seen.has(event)) {
      const url = `${builder.dataset.propertiesUrl}?event=${encodeURIComponent(event)}`;
      seen.set(event, fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : { properties: [] }))
        .then((body) => body.properties)
        .catch(() => []));
    }
    return seen.get(event);
  }

  function fillProperties(picker, properties) {
    const select = picker.querySelector("select.cta-pick");
    const first = select.options[0];
    const last = other(select);
    Array.from(select.options).forEach((o) => { if (o !== first && o !== last) o.remove(); });
    for (const p of properties) {
      const examples = p.examples.length ? `, e.g. ${p.examples.slice(0, 4).join(", ")}` : "";
      const seenOn = p.events === 1 ? "1 recent event" : `${p.events} recent events`;
      const option = new Option(`${p.path} (on ${seenOn}${examples})`, p.path);
      select.insertBefore(option, last);
    }
    syncPicker(picker);
  }

  function scopeEvent(scope) {
    const input = scope.querySelector(".cta-event-input");
    return input ? input.value.trim() : "";
  }

  function propertyPickers(scope) {
    // The scope's own property pickers: the main one holds no rules' rows.
    return Array.from(scope.querySelectorAll('.cta-picker[data-picker="property"]'))
      .filter((p) => p.closest("[data-event-scope]") === scope);
  }

  function loadProperties(scope) {
    const event = scopeEvent(scope);
    const pickers = propertyPickers(scope);
    if (!event) { pickers.forEach((p) => fillProperties(p, [])); return; }
    propertiesOf(event).then((properties) => {
      if (scopeEvent(scope) === event) pickers.forEach((p) => fillProperties(p, properties));
    });
  }

  // --- filter rows: the value follows the operator ------------------------------------------
  const PLACEHOLDERS = {
    one_of: "pro, team", none_of: "pro, team", before_date: "2026-05-01", after_date: "2026-05-01",
    within_last_days: "days, e.g. 30", before_last_days: "days, e.g. 30",
  };
  function syncOperator(row) {
    const op = row.querySelector("select.cta-op").value;
    const value = row.querySelector("input.cta-value");
    value.hidden = op === "exists" || op === "not_exists";
    value.placeholder = PLACEHOLDERS[op] || "value";
  }

  function initRows(root) {
    root.querySelectorAll(".cta-picker").forEach(initPicker);
    root.querySelectorAll(".cta-filter").forEach(syncOperator);
  }

  function clone(templateId, placeholder, prefix) {
    const html = document.getElementById(templateId).innerHTML.replaceAll(placeholder, prefix);
    const holder = document.createElement("div");
    holder.innerHTML = html.trim();
    return holder.firstElementChild;
  }

  function addFilter(filters) {
    const rows = filters.querySelector(".cta-rows");
    const next = Number(rows.dataset.next || 0);
    rows.dataset.next = String(next + 1);
    const row = clone("cta-filter-template", "__P__", `${rows.dataset.prefix}-${next}`);
    rows.appendChild(row);
    initRows(row);
    const scope = filters.closest("[data-event-scope]");
    const event = scopeEvent(scope);
    if (event) propertiesOf(event).then((properties) => fillProperties(row.querySelector(".cta-picker"), properties));
    row.querySelector("select.cta-pick:not([hidden]), input.cta-pick-text:not([hidden])").focus();
  }

  function addRule() {
    const rules = builder.querySelector(".cta-rules");
    const next = Number(rules.dataset.next || 0);
    rules.dataset.next = String(next + 1);
    const rule = clone("cta-rule-template", "__R__", String(next));
    rules.appendChild(rule);
    initRows(rule);
    rule.querySelector("select.cta-pick").focus();
  }

  // --- the type decides what is shown -------------------------------------------------------
  function showType() {
    const type = builder.querySelector("select[name=type]").value;
    builder.querySelectorAll("[data-types]").forEach((el) => {
      el.hidden = !el.dataset.types.split(" ").includes(type);
    });
  }

  if (builder) {
    initRows(builder);
    showType();
    builder.querySelector("select[name=type]").addEventListener("change", showType);
    builder.querySelectorAll("[data-event-scope]").forEach(loadProperties);
    builder.addEventListener("change", (e) => {
      if (e.target.matches(".cta-event-input")) loadProperties(e.target.closest("[data-event-scope]"));
      if (e.target.matches("select.cta-op")) syncOperator(e.target.closest(".cta-filter"));
    });
    builder.addEventListener("click", (e) => {
      const button = e.target.closest("button");
      if (!button) return;
      if (button.matches(".cta-add-filter")) addFilter(button.closest(".cta-filters"));
      else if (button.matches(".cta-add-rule")) addRule();
      else if (button.matches(".cta-remove")) button.closest(".cta-filter, .cta-rule").remove();
    });
  }

  // --- the preview: computed on the server, written nowhere -----------------------------------
  if (previewBox) {
    const button = document.getElementById("cta-preview-button");
    const out = document.getElementById("cta-preview");
    button.addEventListener("click", () => {
      const form = previewBox.closest("form");
      const post = previewBox.dataset.previewMethod === "post";
      out.textContent = "Computing…";
      button.disabled = true;
      const request = post
        ? fetch(previewBox.dataset.previewUrl, { method: "POST", body: new FormData(form), credentials: "same-origin" })
        : fetch(previewBox.dataset.previewUrl, { credentials: "same-origin" });
      request
        .then((r) => r.text())
        .then((html) => { out.innerHTML = html; })
        .catch(() => { out.textContent = "The preview could not be computed; try again."; })
        .finally(() => { button.disabled = false; });
    });
  }
})();
