/* The audience builder: the rule tree (audiences/rules.py) as groups and conditions made of
   buttons, selects and fields, with a live preview. Plain JavaScript, no build step, no CDN.

   The form posts the rule as JSON in the hidden textarea; this script only ever writes there
   what the person built. A rule it cannot show exactly (it would serialise to other JSON) is
   shown read-only and the textarea is left untouched, so it is never rewritten.

   The preview is debounced and each request aborts the one before; a late answer to an old
   rule is dropped. Counts are placed by the JSON path of each node (`$.all[1].not`), the
   paths the preview endpoint returns. */
(function () {
  "use strict";

  const TYPES = ["text", "number", "boolean", "date", "list"];
  const OPS = {
    text: ["=", "!=", "contains", "not_contains", "starts_with", "ends_with", "one_of", "none_of", "exists",
      "not_exists", "<", "<=", ">", ">="],
    number: ["=", "!=", ">", ">=", "<", "<=", "one_of", "none_of", "exists", "not_exists"],
    boolean: ["=", "!=", "exists", "not_exists"],
    date: ["after_date", "before_date", "within_last_days", "before_last_days", "exists", "not_exists", "=", "!="],
    list: ["contains", "not_contains", "exists", "not_exists"],
  };
  const OP_LABELS = {
    "=": "is", "!=": "is not", "<": "is less than", "<=": "is at most", ">": "is more than", ">=": "is at least",
    one_of: "is one of", none_of: "is none of", contains: "contains", not_contains: "does not contain",
    starts_with: "starts with", ends_with: "ends with", exists: "exists", not_exists: "does not exist",
    before_date: "is before", after_date: "is after", within_last_days: "is within the last",
    before_last_days: "is more than",
  };
  const DATE_OPS = ["before_date", "after_date", "within_last_days", "before_last_days"];
  const DAY_OPS = ["within_last_days", "before_last_days"];
  const MODES = [["all", "All of"], ["any", "Any of"], ["none", "None of"], ["notall", "Not all of"]];
  const COUNT_OPS = [[">=", "at least"], ["=", "exactly"], ["<=", "at most"]];
  const DEBOUNCE_MS = 350;

  class Unshowable extends Error {}

  const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const onlyKeys = (o, allowed) => Object.keys(o).every((k) => allowed.includes(k));
  let uids = 0;
  const uid = () => ++uids;

  function deepEqual(a, b) {
    if (a === b) return true;
    if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
  }

  // --- JSON -> the builder's model -------------------------------------------------------------

  function group(mode, kids, implicit) { return { t: "group", id: uid(), mode, kids, implicit: !!implicit }; }

  function groupFrom(j) {
    if (!isObj(j)) return null;
    const keys = Object.keys(j);
    if (keys.length !== 1) return null;
    if ((keys[0] === "all" || keys[0] === "any") && Array.isArray(j[keys[0]])) {
      return group(keys[0], j[keys[0]].map((n) => node(n)));
    }
    if (keys[0] === "not" && isObj(j.not) && Object.keys(j.not).length === 1) {
      if (Array.isArray(j.not.any)) return group("none", j.not.any.map((n) => node(n)));
      if (Array.isArray(j.not.all)) return group("notall", j.not.all.map((n) => node(n)));
    }
    return null;
  }

  function rootFrom(j) {
    if (j === null || j === undefined) return group("all", [], true);
    return groupFrom(j) || group("all", [node(j)], true);
  }

  function node(j) {
    const g = groupFrom(j);
    if (g) return g;
    if (isObj(j) && Object.keys(j).length === 1 && "not" in j) {
      const c = condition(j.not);
      c.neg = true;
      return c;
    }
    return condition(j);
  }

  function raw(v) { return v === undefined || v === null ? "" : String(v); }

  function filterFrom(f, nameKey) {
    if (!isObj(f) || !onlyKeys(f, [nameKey, "op", "value"]) || typeof f[nameKey] !== "string") throw new Unshowable();
    const op = f.op, v = f.value;
    let type = "text";
    if (DATE_OPS.includes(op)) type = "date";
    else if (typeof (Array.isArray(v) ? v[0] : v) === "boolean") type = "boolean";
    else if (typeof (Array.isArray(v) ? v[0] : v) === "number") type = "number";
    let text;
    if (op === "exists" || op === "not_exists") text = "";
    else if (Array.isArray(v)) text = v.map(String).join(", ");
    else if (isObj(v)) throw new Unshowable();
    else text = raw(v);
    return { id: uid(), name: f[nameKey], op, type, raw: text, typeChosen: true };
  }

  function condition(j) {
    if (!isObj(j)) throw new Unshowable();
    if ("event" in j) {
      if (!onlyKeys(j, ["event", "where", "count", "window", "then"]) || typeof j.event !== "string") throw new Unshowable();
      const c = { t: "event", id: uid(), neg: false, event: j.event, where: (j.where || []).map((f) => filterFrom(f, "property")),
        countOp: ">=", count: "1", win: "any", within: "", from: "", to: "", then: [] };
      if (j.count !== undefined) {
        if (!isObj(j.count) || !onlyKeys(j.count, ["op", "value"])) throw new Unshowable();
        c.countOp = j.count.op; c.count = raw(j.count.value);
      }
      if (j.window !== undefined && j.window !== null) {
        if (!isObj(j.window)) throw new Unshowable();
        if ("within_days" in j.window) { c.win = "within"; c.within = raw(j.window.within_days); }
        else if (Array.isArray(j.window.between_days)) {
          c.win = "between"; c.from = raw(j.window.between_days[0]); c.to = raw(j.window.between_days[1]);
        } else throw new Unshowable();
      }
      c.then = (j.then || []).map((s) => {
        if (!isObj(s) || !onlyKeys(s, ["event", "where", "within_hours", "did"])) throw new Unshowable();
        return { id: uid(), event: s.event, where: (s.where || []).map((f) => filterFrom(f, "property")),
          hours: raw(s.within_hours), did: s.did !== false };
      });
      return c;
    }
    if ("trait" in j) {
      return { t: "trait", id: uid(), neg: false, f: filterFrom(j, "trait") };
    }
    if ("audience" in j) {
      if (!onlyKeys(j, ["audience", "member"])) throw new Unshowable();
      return { t: "audience", id: uid(), neg: false, key: j.audience, member: j.member !== false };
    }
    throw new Unshowable();
  }

  // --- the model -> JSON (canonical, as rules.rule_json writes it), with what is incomplete -----

  function num(text, errs, path, what) {
    const v = Number(text);
    if (String(text).trim() === "" || !Number.isFinite(v)) { errs.push([path, what + " must be a number."]); return 0; }
    return v;
  }

  function filterJSON(f, nameKey, path, errs) {
    const out = { [nameKey]: f.name, op: f.op };
    if (!f.name) errs.push([path, nameKey === "trait" ? "Pick a trait." : "Pick a property."]);
    if (f.op === "exists" || f.op === "not_exists") return out;
    if (f.op === "one_of" || f.op === "none_of") {
      const parts = f.raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
      if (!parts.length) errs.push([path, "List one or more values, separated by commas."]);
      out.value = parts.map((p) => (f.type === "number" ? num(p, errs, path, "Each value") : f.type === "boolean" ? p === "true" : p));
    } else if (DAY_OPS.includes(f.op) || f.type === "number") {
      out.value = num(f.raw, errs, path, "The value");
    } else if (f.type === "boolean") {
      out.value = f.raw === "true";
    } else {
      if (f.raw === "" && f.op !== "=" && f.op !== "!=") errs.push([path, "Give a value."]);
      out.value = f.raw;
    }
    return out;
  }

  function condJSON(c, path, errs) {
    if (c.t === "trait") return filterJSON(c.f, "trait", path, errs);
    if (c.t === "audience") {
      if (!c.key) errs.push([path, "Pick an audience."]);
      return { audience: c.key, member: c.member };
    }
    if (!c.event) errs.push([path, "Pick an event."]);
    const out = { event: c.event };
    if (c.where.length) out.where = c.where.map((f, i) => filterJSON(f, "property", `${path}.where[${i}]`, errs));
    const count = num(c.count, errs, path, "The count");
    if (c.countOp !== ">=" || count !== 1) out.count = { op: c.countOp, value: count };
    if (c.win === "within") out.window = { within_days: num(c.within, errs, path, "The number of days") };
    if (c.win === "between") out.window = { between_days: [num(c.from, errs, path, "A"), num(c.to, errs, path, "B")] };
    if (c.then.length) {
      out.then = c.then.map((s, i) => {
        const sp = `${path}.then[${i}]`;
        if (!s.event) errs.push([sp, "Pick an event."]);
        const step = { event: s.event };
        if (s.where.length) step.where = s.where.map((f, k) => filterJSON(f, "property", `${sp}.where[${k}]`, errs));
        step.within_hours = num(s.hours, errs, sp, "The hours");
        step.did = s.did;
        return step;
      });
    }
    return out;
  }

  // Each model node gets `path`: where its count and its errors are, in the rule's JSON.
  function toJSON(n, path, errs) {
    n.path = path;
    if (n.t !== "group") {
      if (!n.neg) return condJSON(n, path, errs);
      return { not: condJSON(n, `${path}.not`, errs) };
    }
    if (n.implicit && n.kids.length === 1 && (n.mode === "all" || n.mode === "any")) {
      return toJSON(n.kids[0], path, errs);
    }
    if (!n.kids.length) errs.push([path, "Add a condition to this group."]);
    const inner = n.mode === "none" ? "any" : n.mode === "notall" ? "all" : n.mode;
    const base = n.mode === "none" || n.mode === "notall" ? `${path}.not` : path;
    const kids = n.kids.map((k, i) => toJSON(k, `${base}.${inner}[${i}]`, errs));
    return base === path ? { [inner]: kids } : { not: { [inner]: kids } };
  }

  // --- rendering ----------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "value") e.value = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  }

  function select(options, value, attrs) {
    const s = el("select", attrs);
    for (const [v, label] of options) s.append(el("option", { value: v }, label));
    if (!options.some(([v]) => v === value)) s.append(el("option", { value }, value));
    s.value = value;
    return s;
  }

  function Builder(root) {
    this.root = root;
    this.textarea = root.querySelector("textarea");
    this.treeBox = root.querySelector(".ab-tree");
    this.catalog = JSON.parse(document.getElementById(root.dataset.catalog).textContent);
    this.readonly = root.dataset.readonly === "1";
    this.props = {};  // event name -> [{path, count, type, examples}]
    this.propIds = {};  // event name -> its datalist's id
    this.filters = {};  // filter id -> filter, for the values datalists
    this.seq = 0;
    this.controller = null;
    this.timer = null;
    this.lastSent = null;
    this.serverError = root.dataset.errorPath ? [root.dataset.errorPath, root.dataset.errorMessage] : null;
    const original = JSON.parse(this.textarea.value || "null");
    this.original = original;
    this.frozen = false;  // a rule the builder cannot show
    try {
      this.model = rootFrom(original);
      const errs = [];
      if (original !== null && !deepEqual(toJSON(this.model, "$", errs), original)) throw new Unshowable();
    } catch (e) {
      if (!(e instanceof Unshowable)) throw e;
      this.frozen = true;
    }
    this.datalists();
    if (this.frozen) {
      this.treeBox.hidden = true;
      root.querySelector(".ab-frozen").hidden = false;
    } else {
      this.render();
    }
    const anon = document.getElementById("id_include_anonymous");
    if (anon) anon.addEventListener("change", () => this.schedule(0));
    const form = root.closest("form");
    if (form && !this.readonly) form.addEventListener("submit", () => this.write());
    this.pasteBox();
    this.schedule(0);
  }

  Builder.prototype.datalists = function () {
    const events = el("datalist", { id: "ab-events" },
      this.catalog.events.map(([name, n]) => el("option", { value: name }, `${n.toLocaleString()} events`)));
    const traits = el("datalist", { id: "ab-traits" },
      this.catalog.traits.map((t) => el("option", { value: t.key }, `${t.kind === "computed" ? "Computed" : "Custom"} · ${t.type}${t.label !== t.key ? " · " + t.label : ""}`)));
    this.root.append(events, traits);
  };

  Builder.prototype.current = function () {
    if (this.frozen) return { json: this.original, errs: [] };
    const errs = [];
    const json = toJSON(this.model, "$", errs);
    return { json: this.model.kids.length ? json : null, errs };
  };

  Builder.prototype.write = function () {
    if (this.frozen || this.readonly) return;
    this.textarea.value = JSON.stringify(this.current().json);
  };

  Builder.prototype.changed = function (structural) {
    if (structural) this.render();
    this.write();
    this.schedule();
  };

  Builder.prototype.render = function () {
    const active = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.f : null;
    const caret = active && document.activeElement.selectionStart !== undefined ? document.activeElement.selectionStart : null;
    this.current();  // assigns every node's path
    this.treeBox.replaceChildren(this.groupView(this.model, null));
    this.fillValueLists();
    if (this.answered && this.answered.body === this.body()) this.size(this.answered.answer);
    if (active) {
      const again = this.treeBox.querySelector(`[data-f="${active}"]`);
      if (again) {
        again.focus();
        try { if (caret !== null) again.setSelectionRange(caret, caret); } catch (e) { /* selects, numbers */ }
      }
    }
  };

  Builder.prototype.tools = function (list, item) {
    if (this.readonly || !list) return null;
    const i = list.indexOf(item);
    const move = (d) => () => { list.splice(i, 1); list.splice(i + d, 0, item); this.changed(true); };
    return el("span", { class: "ab-tools" },
      el("button", { type: "button", class: "ab-up", title: "Move up", "aria-label": "Move up", disabled: i === 0, onclick: move(-1) }, "↑"),
      el("button", { type: "button", class: "ab-down", title: "Move down", "aria-label": "Move down", disabled: i === list.length - 1, onclick: move(1) }, "↓"),
      el("button", { type: "button", class: "ab-remove", title: "Remove", "aria-label": "Remove", onclick: () => { list.splice(i, 1); this.changed(true); } }, "✕"));
  };

  Builder.prototype.count = function (path) {
    return el("span", { class: "ab-count", "data-count-for": path, title: "People this alone admits" }, "…");
  };

  Builder.prototype.groupView = function (g, parent) {
    const ro = this.readonly;
    const mode = select(MODES, g.mode, { class: "ab-mode", "data-f": `${g.id}:mode`, disabled: ro, "aria-label": "Group",
      onchange: (e) => { g.mode = e.target.value; this.changed(true); } });
    const add = (what) => () => {
      g.kids.push(what === "group" ? group("all", []) : blank(what));
      this.changed(true);
    };
    const box = el("div", { class: `ab-group ab-mode-${g.mode}${parent ? "" : " ab-root"}`, "data-path": g.path, "data-uid": g.id },
      el("div", { class: "ab-head" }, mode, el("span", { class: "ab-hint" }, "these conditions"), this.count(g.path), this.tools(parent, g)),
      el("div", { class: "ab-kids" }, g.kids.map((k) => (k.t === "group" ? this.groupView(k, g.kids) : this.condView(k, g.kids)))),
      ro ? null : el("div", { class: "ab-add" },
        el("button", { type: "button", class: "ab-add-event", onclick: add("event") }, "+ Event"),
        el("button", { type: "button", class: "ab-add-trait", onclick: add("trait") }, "+ Trait"),
        el("button", { type: "button", class: "ab-add-audience", onclick: add("audience") }, "+ Audience"),
        el("button", { type: "button", class: "ab-add-group", onclick: add("group") }, "+ Group")),
      el("div", { class: "ab-error", role: "alert" }));
    return box;
  };

  function blank(what) {
    if (what === "event") return { t: "event", id: uid(), neg: false, event: "", where: [], countOp: ">=", count: "1", win: "any", within: "", from: "", to: "", then: [] };
    if (what === "trait") return { t: "trait", id: uid(), neg: false, f: { id: uid(), name: "", op: "=", type: "text", raw: "", typeChosen: false } };
    return { t: "audience", id: uid(), neg: false, key: "", member: true };
  }

  // A text field updates the model as it is typed and never re-renders the tree (a re-render
  // between a press and a release elsewhere would lose that click); `typed` sees each value.
  Builder.prototype.input = function (obj, field, attrs, typed) {
    return el("input", Object.assign({ value: obj[field], disabled: this.readonly, "data-f": `${obj.id}:${field}`,
      oninput: (e) => { obj[field] = e.target.value; if (typed) typed(e.target.value, e.target); this.changed(false); },
      onchange: typed ? (e) => typed(e.target.value, e.target, true) : undefined }, attrs));
  };

  Builder.prototype.condView = function (c, list) {
    const inner = c.neg ? `${c.path}.not` : c.path;
    const ro = this.readonly;
    let line;
    if (c.t === "event") {
      line = [
        select([["did", "Performed"], ["not", "Did not perform"]], c.neg ? "not" : "did", { class: "ab-neg", disabled: ro,
          "data-f": `${c.id}:neg`, onchange: (e) => { c.neg = e.target.value === "not"; this.changed(true); } }),
        this.input(c, "event", { class: "ab-event-name", list: "ab-events", placeholder: "Event name", size: 24, "aria-label": "Event" },
          (name, _, done) => this.eventTyped(name, done)),
      ];
    } else if (c.t === "trait") {
      line = [
        select([["has", "Trait"], ["not", "Not: trait"]], c.neg ? "not" : "has", { class: "ab-neg", disabled: ro,
          "data-f": `${c.id}:neg`, onchange: (e) => { c.neg = e.target.value === "not"; this.changed(true); } }),
        this.input(c.f, "name", { class: "ab-trait-key", list: "ab-traits", placeholder: "Trait", size: 20, "aria-label": "Trait" },
          (key, input) => { const t = this.catalog.traits.find((x) => x.key === key); this.infer(c.f, t, input); }),
        this.filterParts(c.f),
      ];
    } else {
      const options = this.catalog.audiences.map(([key, name, size]) => [key, `${name} (${size.toLocaleString()})`]);
      options.unshift(["", "— pick an audience —"]);
      line = [
        select([["in", "Is in audience"], ["out", "Is not in audience"]], c.member ? "in" : "out", { class: "ab-member", disabled: ro,
          "data-f": `${c.id}:member`, onchange: (e) => { c.member = e.target.value === "in"; this.changed(true); } }),
        select(options, c.key, { class: "ab-audience", disabled: ro, "data-f": `${c.id}:key`, "aria-label": "Audience",
          onchange: (e) => { c.key = e.target.value; this.changed(true); } }),
        c.neg ? el("label", { class: "ab-negated" }, el("input", { type: "checkbox", checked: true, disabled: ro,
          onchange: () => { c.neg = false; this.changed(true); } }), " negated (NOT)") : null,
      ];
    }
    const box = el("div", { class: `ab-cond ab-${c.t}`, "data-path": c.path, "data-inner": inner, "data-uid": c.id },
      el("div", { class: "ab-line" }, line, this.count(c.path), this.tools(list, c)));
    if (c.t === "event") {
      box.append(this.eventDetails(c, inner));
      if (c.event) this.loadProps(c.event);
    }
    box.append(el("div", { class: "ab-error", role: "alert" }));
    return box;
  };

  Builder.prototype.eventDetails = function (c, inner) {
    const ro = this.readonly;
    const win = select([["any", "at any time"], ["within", "in the last"], ["between", "between"]], c.win,
      { class: "ab-window", disabled: ro, "data-f": `${c.id}:win`, onchange: (e) => { c.win = e.target.value; this.changed(true); } });
    const days = { type: "number", min: "0", step: "any", class: "ab-days", size: 5 };
    const when = c.win === "within" ? [this.input(c, "within", Object.assign({ "aria-label": "Days" }, days)), " days"]
      : c.win === "between" ? [this.input(c, "from", Object.assign({ "aria-label": "From days ago", class: "ab-days ab-from" }, days)), " and ",
        this.input(c, "to", Object.assign({ "aria-label": "To days ago", class: "ab-days ab-to" }, days)), " days ago"] : [];
    const counts = el("div", { class: "ab-line ab-sub" },
      select(COUNT_OPS, c.countOp, { class: "ab-count-op", disabled: ro, "data-f": `${c.id}:countOp`,
        onchange: (e) => { c.countOp = e.target.value; this.changed(false); } }),
      this.input(c, "count", { type: "number", min: "0", step: "1", class: "ab-count-n", "aria-label": "Times" }), " times, ",
      win, when);
    const where = this.whereView(c.where, c.event, inner);
    const steps = el("div", { class: "ab-then" }, c.then.map((s, i) => {
      const sp = `${inner}.then[${i}]`;
      return el("div", { class: "ab-step", "data-path": sp },
        el("div", { class: "ab-line" },
          select([["did", "and then did"], ["not", "and then did not do"]], s.did ? "did" : "not", { class: "ab-did", disabled: ro,
            "data-f": `${s.id}:did`, onchange: (e) => { s.did = e.target.value === "did"; this.changed(false); } }),
          this.input(s, "event", { class: "ab-event-name ab-step-event", list: "ab-events", placeholder: "Event name", size: 22, "aria-label": "Then event" },
            (name, _, done) => this.eventTyped(name, done)),
          " within ", this.input(s, "hours", { type: "number", min: "0", step: "any", class: "ab-hours", size: 5, "aria-label": "Hours" }), " hours",
          this.tools(c.then, s)),
        this.whereView(s.where, s.event, sp),
        el("div", { class: "ab-error", role: "alert" }));
    }));
    const addStep = ro ? null : el("button", { type: "button", class: "ab-add-step",
      onclick: () => { c.then.push({ id: uid(), event: "", where: [], hours: "24", did: c.then.length === 0 ? false : true }); this.changed(true); } },
    "+ and then did / did not …");
    return el("div", { class: "ab-details" }, counts, where, steps, addStep);
  };

  // The properties of an event, once fetched, fill the datalist named after the event; a
  // filter's values datalist is named after the filter. Both are filled in place.
  Builder.prototype.propList = function (event) {
    if (!event) return null;
    if (!(event in this.propIds)) this.propIds[event] = `ab-props-${Object.keys(this.propIds).length}`;
    return this.propIds[event];
  };

  Builder.prototype.whereView = function (filters, event, path) {
    return el("div", { class: "ab-where" },
      filters.map((f, i) => {
        f.event = event;
        return el("div", { class: "ab-filter", "data-path": `${path}.where[${i}]` },
          el("span", { class: "ab-where-label" }, i === 0 ? "where" : "and"),
          this.input(f, "name", { class: "ab-property", list: this.propList(event), placeholder: "property", size: 16, "aria-label": "Property" },
            (name, input) => this.infer(f, (this.props[event] || []).find((x) => x.path === name), input)),
          this.filterParts(f),
          this.tools(filters, f),
          el("div", { class: "ab-error", role: "alert" }));
      }),
      this.readonly ? null : el("button", { type: "button", class: "ab-add-where",
        onclick: () => { filters.push({ id: uid(), name: "", op: "=", type: "text", raw: "", typeChosen: false }); this.changed(true); } }, "+ where"));
  };

  // A property or trait named exactly: its type (unless chosen by hand) sets the operators,
  // and its common values are suggested. Only this filter's type, operator and value change.
  Builder.prototype.infer = function (f, seen, input) {
    if (seen && !f.typeChosen && seen.type !== f.type) {
      f.type = seen.type;
      fitOp(f);
      const parts = input.parentElement.querySelector(":scope > .ab-filter-parts");
      if (parts) parts.replaceWith(this.filterParts(f));
    }
    this.fillValueLists();
  };

  Builder.prototype.eventTyped = function (name, done) {
    if (done || this.catalog.events.some(([n]) => n === name)) this.loadProps(name);
  };

  Builder.prototype.examplesOf = function (f) {
    if (f.event === undefined) {  // a trait condition's filter
      const t = this.catalog.traits.find((x) => x.key === f.name);
      return t ? t.examples : [];
    }
    const p = (this.props[f.event] || []).find((x) => x.path === f.name);
    return p ? p.examples : [];
  };

  Builder.prototype.fillValueLists = function () {
    for (const list of this.root.querySelectorAll("datalist[data-filter]")) {
      const f = this.filters[list.dataset.filter];
      if (f) list.replaceChildren(...this.examplesOf(f).map((v) => el("option", { value: String(v) })));
    }
  };

  function fitOp(f) {
    if (!OPS[f.type].includes(f.op)) f.op = OPS[f.type][0];
    if (f.type === "boolean" && f.raw !== "true" && f.raw !== "false") f.raw = "true";
  }

  Builder.prototype.filterParts = function (f) {
    const ro = this.readonly;
    this.filters[f.id] = f;
    const type = select(TYPES.map((t) => [t, t]), f.type, { class: "ab-type", disabled: ro, title: "The values' type",
      "data-f": `${f.id}:type`, "aria-label": "Type", onchange: (e) => { f.type = e.target.value; f.typeChosen = true; fitOp(f); this.changed(true); } });
    const op = select(OPS[f.type].map((o) => [o, OP_LABELS[o]]), f.op, { class: "ab-op", disabled: ro, "data-f": `${f.id}:op`,
      "aria-label": "Operator", onchange: (e) => { f.op = e.target.value; this.changed(true); } });
    let value = null;
    if (f.op === "exists" || f.op === "not_exists") value = null;
    else if (f.type === "boolean" && f.op !== "one_of" && f.op !== "none_of") {
      value = select([["true", "true"], ["false", "false"]], f.raw, { class: "ab-value", disabled: ro, "data-f": `${f.id}:raw`,
        "aria-label": "Value", onchange: (e) => { f.raw = e.target.value; this.changed(false); } });
    } else if (DAY_OPS.includes(f.op)) {
      value = [this.input(f, "raw", { type: "number", min: "0", step: "any", class: "ab-value", size: 5, "aria-label": "Days" }),
        f.op === "within_last_days" ? " days" : " days ago"];
    } else {
      const listId = `ab-values-${f.id}`;
      const isDate = f.type === "date" && (f.raw === "" || /^\d{4}-\d{2}-\d{2}$/.test(f.raw)) && f.op !== "one_of" && f.op !== "none_of";
      const many = f.op === "one_of" || f.op === "none_of";
      value = [this.input(f, "raw", { type: isDate ? "date" : f.type === "number" && !many ? "number" : "text", step: "any",
        class: "ab-value", list: listId, size: many ? 24 : 14, placeholder: many ? "a, b, c" : "value", "aria-label": "Value" }),
      el("datalist", { id: listId, "data-filter": f.id })];
    }
    return el("span", { class: "ab-filter-parts" }, type, op, value);
  };

  Builder.prototype.loadProps = function (event) {
    if (!event || event in this.props || !this.root.dataset.propertiesUrl) return;
    this.props[event] = [];
    const id = this.propList(event);
    fetch(`${this.root.dataset.propertiesUrl}?event=${encodeURIComponent(event)}`, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : { properties: [] }))
      .then((body) => {
        this.props[event] = body.properties;
        let list = document.getElementById(id);
        if (!list) { list = el("datalist", { id }); this.root.append(list); }
        list.replaceChildren(...body.properties.map((p) => el("option", { value: p.path }, `${p.type} · in ${p.count} of the newest events`)));
        this.fillValueLists();
      })
      .catch(() => { delete this.props[event]; });
  };

  // --- preview ----------------------------------------------------------------------------

  Builder.prototype.schedule = function (delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.preview(), delay === undefined ? this.delay || DEBOUNCE_MS : delay);
  };

  Builder.prototype.status = function (text, busy) {
    const s = this.root.querySelector(".ab-status");
    s.textContent = text;
    this.root.querySelector(".ab-preview").classList.toggle("ab-busy", !!busy);
  };

  Builder.prototype.body = function () {
    const anon = document.getElementById("id_include_anonymous");
    const key = this.root.dataset.key || (document.getElementById("id_key") || {}).value || undefined;
    return JSON.stringify({ rule: this.current().json, key,
      include_anonymous: anon ? anon.checked : this.root.dataset.includeAnonymous === "1" });
  };

  Builder.prototype.preview = function () {
    const { json, errs } = this.current();
    if (this.serverError) { errs.push(this.serverError); }
    this.showErrors(errs, true);
    if (json === null) { this.status("Add a condition to see who is in."); this.size(null); return; }
    if (errs.length && !this.serverError) { this.status("Complete the highlighted parts to see the size."); return; }
    this.serverError = null;
    const body = this.body();
    if (body === this.lastSent) return;
    this.lastSent = body;
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    const seq = ++this.seq;
    this.status("Counting…", true);
    fetch(this.root.dataset.previewUrl, {
      method: "POST", body, signal: controller.signal, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": this.csrf() },
    }).then((r) => r.json().then((answer) => [r.status, answer])).then(([code, answer]) => {
      if (seq !== this.seq) return;  // an answer to an older rule
      if (code !== 200) {
        const err = answer.error || {};
        this.showErrors(err.path ? [[err.path, err.message]] : [], true);
        this.status(err.path ? "Fix the highlighted condition." : err.message || "The preview failed.");
        if (code === 503) this.delay = 3000;
        this.lastSent = null;
        return;
      }
      this.answered = { body, answer };
      // A slow database gets fewer previews: wait about as long as the last one took.
      this.delay = Math.min(3000, Math.max(DEBOUNCE_MS, answer.ms));
      this.size(answer);
      this.status(`Counted in ${answer.ms.toLocaleString()} ms.`);
    }).catch((e) => {
      if (e.name !== "AbortError" && seq === this.seq) { this.status("The preview could not be reached."); this.lastSent = null; }
    });
  };

  Builder.prototype.csrf = function () {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  };

  Builder.prototype.size = function (answer) {
    const size = this.root.querySelector(".ab-size");
    const sample = this.root.querySelector(".ab-sample");
    const query = this.root.querySelector(".ab-query-text");
    if (!answer) { size.textContent = "—"; sample.replaceChildren(); return; }
    size.textContent = answer.size.toLocaleString();
    this.root.querySelector(".ab-unit").textContent = answer.size === 1 ? "person" : "people";
    size.dataset.size = answer.size;
    for (const badge of this.root.querySelectorAll(".ab-count")) {
      const n = answer.conditions[badge.dataset.countFor];
      badge.replaceChildren(...(n === undefined ? [] : [n.toLocaleString(), el("small", {}, n === 1 ? " person" : " people")]));
      badge.dataset.n = n === undefined ? "" : n;
    }
    sample.replaceChildren(...answer.sample.map((p) => el("li", {},
      p.url ? el("a", { href: p.url, target: "_blank", rel: "noopener" }, p.label) : p.label,
      p.label !== p.key ? el("code", {}, " ", p.key) : null)));
    if (!answer.sample.length) sample.append(el("li", { class: "ab-none" }, "Nobody yet."));
    query.textContent = answer.query || "This rule has no form in Segment's query language (it uses a part the language lacks).";
    query.classList.toggle("ab-no-query", !answer.query);
  };

  Builder.prototype.showErrors = function (errs, replace) {
    const formError = this.root.querySelector(".ab-form-error");
    if (replace) {
      for (const e of this.root.querySelectorAll(".ab-error")) e.textContent = "";
      formError.hidden = true;
    }
    for (const e of this.root.querySelectorAll(".ab-invalid")) e.classList.remove("ab-invalid");
    const nodes = Array.from(this.root.querySelectorAll("[data-path]"));
    for (let [path, message] of errs) {
      path = path.replace(/^rule/, "$");
      // The deepest element whose path (or whose negated inner node's path) starts the error's.
      let best = null, bestLen = -1;
      for (const n of nodes) {
        for (const p of [n.dataset.path, n.dataset.inner]) {
          if (p && (path === p || path.startsWith(p + ".") || path.startsWith(p + "[")) && p.length > bestLen) { best = n; bestLen = p.length; }
        }
      }
      const target = best || this.root.querySelector(".ab-root") || this.root;
      const box = target.querySelector(":scope > .ab-error") || formError;
      box.textContent = message;
      if (box === formError) formError.hidden = false;
      target.classList.add("ab-invalid");
    }
  };

  // --- starting from a Segment query ---------------------------------------------------------

  Builder.prototype.pasteBox = function () {
    const button = this.root.querySelector(".ab-paste-go");
    if (!button || this.readonly) return;
    button.addEventListener("click", () => {
      const text = this.root.querySelector(".ab-paste").value;
      const out = this.root.querySelector(".ab-paste-error");
      fetch(this.root.dataset.queryUrl, { method: "POST", credentials: "same-origin", body: JSON.stringify({ query: text }),
        headers: { "Content-Type": "application/json", "X-CSRFToken": this.csrf() } })
        .then((r) => r.json().then((answer) => [r.status, answer]))
        .then(([code, answer]) => {
          if (code !== 200) { out.hidden = false; out.textContent = answer.error.message; return; }
          out.hidden = true;
          this.original = answer.rule;
          this.textarea.value = JSON.stringify(answer.rule);
          try { this.model = rootFrom(answer.rule); this.frozen = false; } catch (e) { this.frozen = true; }
          this.treeBox.hidden = this.frozen;
          this.root.querySelector(".ab-frozen").hidden = !this.frozen;
          if (!this.frozen) this.changed(true); else this.schedule(0);
        });
    });
  };

  // On the add page, the key follows the name (snake_case) until it is typed in by hand.
  function keyFromName() {
    const name = document.getElementById("id_name"), key = document.getElementById("id_key");
    if (!name || !key || key.value) return;
    let typed = false;
    key.addEventListener("input", () => { typed = true; });
    name.addEventListener("input", () => {
      if (typed) return;
      key.value = name.value.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
        .replace(/[^a-z0-9]+/g, "_").replace(/^[^a-z]+|_+$/g, "").slice(0, 64);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    keyFromName();
    // Once each: the read-only page includes this script itself (no form field brings it).
    for (const root of document.querySelectorAll(".ab[data-preview-url]")) if (!root.builder) root.builder = new Builder(root);
  });
})();
