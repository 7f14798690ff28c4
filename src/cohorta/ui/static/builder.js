// The segment editor: a rule builder driven by the field catalog (GET /api/v1/fields, embedded in the page), live
// preview (POST /api/v1/segments/preview) and saving (POST or PATCH /api/v1/segments). It only edits the rule tree
// and shows what the API answers: validation, counts and the text form all come from the server.
(function () {
  "use strict";

  const LIST_OPS = ["in", "not_in", "has_any", "has_all", "has_none"];
  const NO_VALUE_OPS = ["has_value", "is_unknown", "anniversary_this_month"];
  const DAY_OPS = ["exactly_days_ago", "less_than_days_ago", "more_than_days_ago", "in_next_days", "anniversary_within_days"];
  const NUMERIC = ["integer", "number", "money"];
  const OP_LABELS = {
    is: "is", is_not: "is not", in: "is one of", not_in: "is none of", has_value: "has a value", is_unknown: "is unknown",
    contains: "contains", not_contains: "does not contain", starts_with: "starts with", ends_with: "ends with",
    lt: "<", lte: "≤", gt: ">", gte: "≥", between: "between", before: "before", after: "after", on: "on",
    exactly_days_ago: "exactly N days ago", less_than_days_ago: "less than N days ago",
    more_than_days_ago: "more than N days ago", in_next_days: "in the next N days", in_calendar: "in calendar period",
    anniversary_within_days: "anniversary within N days", anniversary_this_month: "anniversary this month",
    has_any: "has any of", has_all: "has all of", has_none: "has none of",
  };
  const GROUP_LABELS = { profile: "Profile", attributes: "Custom attributes", summary: "Orders (summary)",
    orders: "Orders", events: "Events", loyalty: "Loyalty", segments: "Segments" };

  let counter = 0;
  const nextId = () => "b" + (++counter);

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
    return { ok: response.ok, status: response.status, data };
  }

  // --- builder nodes <-> rule JSON ------------------------------------------------------------------------------

  // A new condition starts as one that means something ("is a loyalty member"), so the preview stays valid.
  function newCondition(catalog) {
    const field = catalog.fields.find((f) => f.type === "boolean") || catalog.fields[0];
    return { k: "cond", id: nextId(), not: false, field: field.path, op: field.operators[0],
             value: field.type === "boolean" ? "true" : "", value2: "", values: [], case_sensitive: false };
  }
  function newActivity() {
    return { k: "activity", id: nextId(), not: false, activity: "orders", event: "", where: [],
             window: { type: "last_days", n: 30, m: 60, period: "last_month", from: "", to: "" },
             measure: { fn: "count", field: "" }, op: "gte", value: "1", value2: "" };
  }
  function newGroup(op, children) { return { k: "group", id: nextId(), not: false, op: op || "and", children: children || [] }; }

  function fromJson(json, catalog) {
    if (json.not !== undefined) {
      const inner = fromJson(json.not, catalog);
      inner.not = !inner.not;
      if (json.id) inner.notId = json.id;
      return inner;
    }
    if (json.and || json.or) {
      const op = json.and ? "and" : "or";
      const group = newGroup(op, (json[op] || []).map((c) => fromJson(c, catalog)));
      if (json.id) group.id = json.id;
      return group;
    }
    if (json.in_segment !== undefined) return { k: "segment", id: json.id || nextId(), not: false, segment: json.in_segment };
    if (json.sample) return { k: "sample", id: json.id || nextId(), not: false, percent: json.sample.percent, seed: json.sample.seed || "" };
    if (json.activity) {
      const node = newActivity();
      node.id = json.id || node.id;
      node.activity = json.activity;
      node.event = json.event || "";
      node.where = (json.where || []).map((w) => condFromJson(w, { id: w.id }));
      const w = json.window;
      if (!w) node.window.type = "none";
      else if (w.last_days !== undefined) Object.assign(node.window, { type: "last_days", n: w.last_days });
      else if (w.days_ago) Object.assign(node.window, { type: "days_ago", n: w.days_ago[0], m: w.days_ago[1] });
      else if (w.calendar) Object.assign(node.window, { type: "calendar", period: w.calendar });
      else if (w.between) Object.assign(node.window, { type: "between", from: w.between[0], to: w.between[1] });
      node.measure = json.measure ? { fn: json.measure.fn, field: json.measure.field || "" } : { fn: "count", field: "" };
      node.op = json.op;
      setValue(node, json.value);
      return node;
    }
    return condFromJson(json, { id: json.id || nextId() });
  }

  function condFromJson(json, extra) {
    const node = { k: "cond", id: extra.id || nextId(), not: false, field: json.field, op: json.op, value: "", value2: "",
                   values: [], case_sensitive: !!json.case_sensitive };
    if (node.field && !node.field.includes(".")) node.field = "profile." + node.field;
    setValue(node, json.value);
    return node;
  }

  function setValue(node, value) {
    if (Array.isArray(value) && node.op === "between") { node.value = String(value[0]); node.value2 = String(value[1]); }
    else if (Array.isArray(value)) { node.values = value.map(String); node.value = value.join(", "); }
    else if (value === undefined || value === null) node.value = "";
    else node.value = String(value);
  }

  function typed(type, raw) {
    const text = String(raw).trim();
    if (NUMERIC.includes(type)) return text === "" || isNaN(Number(text)) ? text : Number(text);
    if (type === "boolean") return text === "true" ? true : text === "false" ? false : text;
    return text;
  }

  // The JSON of one condition's value, from its widgets. Bad input is sent as typed so the server names the problem.
  function valueJson(node, type, hints) {
    if (NO_VALUE_OPS.includes(node.op)) return undefined;
    if (DAY_OPS.includes(node.op)) return typed("integer", node.value);
    if (node.op === "between") return [typed(type, node.value), typed(type, node.value2)];
    if (LIST_OPS.includes(node.op)) {
      const items = hints && hints.length ? node.values : node.value.split(",").map((s) => s.trim()).filter((s) => s);
      const itemType = type === "list" ? "string" : type;
      return items.map((v) => typed(itemType, v));
    }
    return typed(type, node.value);
  }

  function condJson(node, spec) {
    const out = { id: node.id, field: node.field, op: node.op };
    const value = valueJson(node, spec ? spec.type : "string", spec && spec.hints);
    if (value !== undefined) out.value = value;
    if (node.case_sensitive && ["contains", "not_contains", "starts_with", "ends_with", "is", "is_not", "in", "not_in"].includes(node.op)) out.case_sensitive = true;
    return out;
  }

  // --- the Alpine component -------------------------------------------------------------------------------------

  // An instant with an offset (as stored) as the browser's wall-clock time, which is what datetime-local inputs take.
  function localInput(value) {
    if (!value) return "";
    const d = new Date(value);
    if (isNaN(d)) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  window.segmentEditor = function (config) {
    const catalog = JSON.parse(document.getElementById("catalog-json").textContent);
    const initial = JSON.parse(document.getElementById("segment-json").textContent);
    if (initial.form) {
      initial.form.starts_at = localInput(initial.form.starts_at);
      initial.form.expires_at = localInput(initial.form.expires_at);
    }
    const fieldsByPath = Object.fromEntries(catalog.fields.map((f) => [f.path, f]));
    const activities = Object.fromEntries(catalog.activities.map((a) => [a.activity, a]));
    let root = initial.rule ? fromJson(initial.rule, catalog) : newGroup("and", [newCondition(catalog)]);
    if (root.k !== "group") root = newGroup("and", [root]);
    let previewTimer = null;
    let previewSeq = 0;

    return {
      catalog, segments: config.segments, segmentId: config.segmentId, mode: config.mode,
      form: Object.assign({ name: "", description: "", type: "dynamic", status: "active", team: "", customer_groups: "",
                            store: "", starts_at: "", expires_at: "", sync_minutes: "" }, initial.form),
      root,
      preview: null, previewError: "", previewing: false,
      nodeErrors: {}, fieldErrors: {}, saveErrors: [], saving: false, savedMessage: "",
      opLabels: OP_LABELS,

      init() {
        this.$watch("root", () => this.schedulePreview(), { deep: true });
        this.$watch("form.type", () => this.schedulePreview());
        if (this.form.type === "dynamic") this.runPreview();
      },

      // Field picker: catalog fields and activities grouped as a loyalty manager thinks of them.
      pickerGroups() {
        const groups = {};
        const add = (group, value, label) => (groups[group] = groups[group] || []).push({ value, label });
        for (const f of catalog.fields) add(f.group, "field:" + f.path, f.label + (f.group === "attributes" || f.group === "loyalty" ? " (" + f.path + ")" : ""));
        for (const a of catalog.activities) add(a.group, "activity:" + a.activity, a.label + " (activity)");
        add("segments", "segment", "Member of segment");
        add("segments", "sample", "Random sample (holdout)");
        const order = ["profile", "attributes", "summary", "orders", "events", "loyalty", "segments"];
        return Object.keys(groups).sort((a, b) => (order.indexOf(a) + 99) % 99 - (order.indexOf(b) + 99) % 99)
          .map((g) => ({ label: GROUP_LABELS[g] || g, options: groups[g] }));
      },
      pickerValue(node) {
        if (node.k === "cond") return "field:" + node.field;
        if (node.k === "activity") return "activity:" + node.activity;
        return node.k;
      },
      // Choosing another field keeps the node's place and id; its operator and value restart from the new type.
      pick(node, choice) {
        const keep = { id: node.id, not: node.not };
        let fresh;
        if (choice.startsWith("field:")) {
          const spec = fieldsByPath[choice.slice(6)];
          fresh = { k: "cond", field: spec.path, op: spec.operators[0], value: "", value2: "", values: [], case_sensitive: false };
        } else if (choice.startsWith("activity:")) {
          fresh = newActivity();
          fresh.activity = choice.slice(9);
          if (fresh.activity === "events") fresh.event = Object.keys(activities.events.events || {})[0] || "";
        } else if (choice === "segment") {
          fresh = { k: "segment", segment: (this.segments[0] || {}).id || "" };
        } else {
          fresh = { k: "sample", percent: 10, seed: "holdout" };
        }
        for (const key of Object.keys(node)) delete node[key];
        Object.assign(node, fresh, keep);
      },
      spec(node) { return fieldsByPath[node.field] || { type: "string", operators: [], hints: [] }; },
      operators(node) { return this.spec(node).operators; },
      activityFields(node) {
        const a = activities[node.activity];
        if (!a) return [];
        if (node.activity === "events") return (a.events || {})[node.event] || [];
        return a.fields || [];
      },
      whereSpec(node, where) { return this.activityFields(node).find((f) => f.path === where.field) || { type: "string", operators: ["is"] }; },
      numericFields(node) { return this.activityFields(node).filter((f) => NUMERIC.includes(f.type)); },
      eventNames() { return Object.keys((activities.events || {}).events || {}); },
      measureOperators(node) { return (activities[node.activity] || {}).measure_operators || ["gte"]; },
      widget(node, spec) {
        const op = node.op;
        if (NO_VALUE_OPS.includes(op)) return "none";
        if (DAY_OPS.includes(op)) return "days";
        if (op === "in_calendar") return "calendar";
        if (op === "between") return spec.type === "date" || spec.type === "datetime" ? "date-range" : "range";
        if (LIST_OPS.includes(op)) return spec.hints && spec.hints.length ? "multi" : "list";
        if (spec.type === "boolean") return "boolean";
        if (spec.type === "date" || spec.type === "datetime") return "date";
        if (NUMERIC.includes(spec.type)) return "number";
        return "text";
      },
      step(spec) { return spec.type === "money" ? "0.01" : spec.type === "integer" ? "1" : "any"; },
      addWhere(node) {
        const f = this.activityFields(node)[0];
        if (f) node.where.push({ k: "cond", id: nextId(), not: false, field: f.path, op: f.operators[0], value: "", value2: "", values: [] });
      },

      // The tree shown as rows: a group's bar, its children (indented), and the group's "add" bar.
      rows() {
        const out = [];
        const visit = (node, depth, parent) => {
          if (node.k === "group") {
            out.push({ kind: "group", node, depth, parent, key: node.id + ":open" });
            node.children.forEach((child) => visit(child, depth + 1, node));
            out.push({ kind: "end", node, depth, parent, key: node.id + ":end" });
          } else {
            out.push({ kind: node.k, node, depth, parent, key: node.id });
          }
        };
        visit(this.root, 0, null);
        return out;
      },
      addCondition(group) { group.children.push(newCondition(catalog)); },
      addGroup(group) { group.children.push(newGroup(group.op === "and" ? "or" : "and", [newCondition(catalog)])); },
      remove(parent, node) {
        if (!parent) return;
        parent.children.splice(parent.children.indexOf(node), 1);
      },
      toggleOp(group) { group.op = group.op === "and" ? "or" : "and"; },

      // --- rule JSON, with a map from each JSON path to the builder node, so errors land where they belong -----
      ruleJson() {
        const paths = [];
        const build = (node, path) => {
          const base = node.not ? path.concat(["not"]) : path;
          paths.push({ path: base.join("/"), id: node.id });
          let json;
          if (node.k === "group") {
            json = { id: node.id, [node.op]: node.children.map((c, i) => build(c, base.concat([node.op, i]))) };
          } else if (node.k === "cond") {
            json = condJson(node, fieldsByPath[node.field]);
          } else if (node.k === "segment") {
            json = { id: node.id, in_segment: node.segment };
          } else if (node.k === "sample") {
            json = { id: node.id, sample: { percent: typed("number", node.percent), seed: node.seed } };
          } else {
            json = { id: node.id, activity: node.activity, op: node.op };
            if (node.activity === "events") json.event = node.event;
            const w = node.window;
            if (w.type === "last_days") json.window = { last_days: typed("integer", w.n) };
            else if (w.type === "days_ago") json.window = { days_ago: [typed("integer", w.n), typed("integer", w.m)] };
            else if (w.type === "calendar") json.window = { calendar: w.period };
            else if (w.type === "between") json.window = { between: [w.from, w.to] };
            if (node.measure.fn !== "count") json.measure = { fn: node.measure.fn, field: node.measure.field };
            const measureType = node.measure.fn === "count" ? "integer" : (this.activityFields(node).find((f) => f.path === node.measure.field) || { type: "number" }).type;
            const value = valueJson(node, measureType, null);
            if (value !== undefined) json.value = value;
            if (node.where.length) {
              json.where = node.where.map((w2, i) => {
                paths.push({ path: base.concat(["where", i]).join("/"), id: w2.id });
                return condJson(w2, this.whereSpec(node, w2));
              });
            }
          }
          return node.not ? { id: node.id + "-not", not: json } : json;
        };
        const rule = build(this.root, []);
        return { rule, paths };
      },

      errorsByNode(errors, paths) {
        const byNode = {};
        const general = [];
        for (const e of errors || []) {
          const loc = (e.loc || []).slice(e.loc && e.loc[0] === "rule" ? 1 : 0).join("/");
          let best = null;
          for (const p of paths) {
            if ((loc === p.path || loc.startsWith(p.path + "/") || p.path === "") && (!best || p.path.length > best.path.length)) best = p;
          }
          if (best) (byNode[best.id] = byNode[best.id] || []).push(e.detail);
          else general.push(e.detail);
        }
        return { byNode, general };
      },

      schedulePreview() {
        clearTimeout(previewTimer);
        previewTimer = setTimeout(() => this.runPreview(), 350);
      },
      async runPreview() {
        if (this.form.type !== "dynamic" && this.form.type !== "static") return;
        const seq = ++previewSeq;
        const { rule, paths } = this.ruleJson();
        this.previewing = true;
        const result = await api("POST", "/api/v1/segments/preview", { rule, sample_size: 10, dropoff: true });
        if (seq !== previewSeq) return; // a newer change is on its way
        this.previewing = false;
        if (result.ok) {
          this.preview = result.data;
          this.previewError = "";
          this.nodeErrors = {};
        } else {
          const { byNode, general } = this.errorsByNode(result.data && result.data.errors, paths);
          this.nodeErrors = byNode;
          this.previewError = general.join("; ") || (result.data && result.data.detail) || "The preview failed";
          if (Object.keys(byNode).length && !general.length) this.previewError = "Fix the conditions marked in red.";
        }
      },
      dropOff(node) {
        if (!this.preview) return null;
        const entry = this.preview.nodes.find((n) => n.id === (node.not ? node.id + "-not" : node.id));
        return entry || null;
      },
      sharePercent() { return this.preview ? (this.preview.share * 100).toFixed(1) + "%" : ""; },

      payload(asStatic) {
        const f = this.form;
        const body = { name: f.name, description: f.description || null, team: f.team || null, store: f.store || null,
          customer_groups: f.customer_groups.split(",").map((s) => s.trim()).filter((s) => s),
          starts_at: f.starts_at ? new Date(f.starts_at).toISOString() : null,
          expires_at: f.expires_at ? new Date(f.expires_at).toISOString() : null,
          sync_period_seconds: f.sync_minutes ? Math.round(Number(f.sync_minutes) * 60) : null };
        const type = asStatic ? "static" : f.type;
        if (this.mode === "create") { body.type = type; body.status = f.status; }
        if (type === "dynamic" || (asStatic && this.mode === "create")) body.rule = this.ruleJson().rule;
        return body;
      },
      async save(asStatic) {
        this.saving = true; this.saveErrors = []; this.fieldErrors = {};
        const body = this.payload(asStatic);
        const result = this.mode === "create"
          ? await api("POST", "/api/v1/segments", body)
          : await api("PATCH", "/api/v1/segments/" + this.segmentId, body);
        this.saving = false;
        if (result.ok) { window.location.href = "/ui/segments/" + result.data.id; return; }
        const errors = (result.data && result.data.errors) || [];
        const { paths } = this.ruleJson();
        const ruleErrors = errors.filter((e) => e.loc && e.loc[0] === "rule");
        const { byNode, general } = this.errorsByNode(ruleErrors, paths);
        this.nodeErrors = byNode;
        for (const e of errors.filter((e) => !e.loc || e.loc[0] !== "rule")) {
          const field = e.loc && e.loc.length ? String(e.loc[e.loc.length - 1]) : "";
          if (field && field in this.form) this.fieldErrors[field] = e.detail; else general.push(e.detail);
        }
        if (!errors.length) general.push((result.data && result.data.detail) || "Saving failed (" + result.status + ")");
        this.saveErrors = general;
        this.$nextTick(() => { const el = document.querySelector(".save-errors, .field-error, .node-error"); if (el) el.scrollIntoView({ block: "center" }); });
      },
    };
  };
})();
