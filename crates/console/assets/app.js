// ferry console: one page, hash routes, no framework. Every string from the
// API goes into the DOM as text (textContent / text nodes), never as HTML.
"use strict";

(() => {
  // ---------------------------------------------------------------- state --

  /** The signed-in session ({principal, accountId, region, csrfToken}) or null. */
  let session = null;
  /** The live view's context: polling stops when it is replaced. */
  let current = null;

  const $ = (sel, root = document) => root.querySelector(sel);

  // ------------------------------------------------------------------ DOM --

  /**
   * Builds an element. `attrs`: class, text, data (object), on (object of
   * listeners), and any attribute (false/null/undefined skip it). Children:
   * nodes, strings (as text) or arrays of them; null/false are skipped.
   */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = String(v);
      else if (k === "data") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      else if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(el, c);
      else if (c instanceof Node) el.appendChild(c);
      else el.appendChild(document.createTextNode(String(c)));
    }
  }

  /** A named value: its text is exactly the value (empty shows a dash by CSS). */
  function field(name, value, tag = "span", extraClass = "") {
    const v = value === null || value === undefined ? "" : String(value);
    return h(tag, { class: ("value " + extraClass).trim(), "data-field": name, text: v });
  }

  /** A definition list of [label, fieldName, value, opts] rows. */
  function details(rows) {
    const dl = h("dl", { class: "details" });
    for (const [label, name, value, opts] of rows) {
      const o = opts || {};
      const dd = h("dd");
      dd.appendChild(o.node || field(name, value, "span", o.mono ? "mono" : ""));
      // Long identifiers (ARNs, keys) take a whole row rather than wrap in a narrow column.
      if (o.mono && String(value ?? "").length > 30) o.wide = true;
      dl.appendChild(h("div", { class: o.wide ? "details-row wide" : "details-row" }, h("dt", { text: label }), dd));
    }
    return dl;
  }

  /** A table in a horizontally scrolling wrapper. rows: <tr> elements. */
  function table(id, caption, headers, rows, emptyText) {
    const tbody = h("tbody");
    append(tbody, rows);
    const t = h(
      "table",
      { id },
      caption ? h("caption", { class: "visually-hidden", text: caption }) : null,
      h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col", text: x })))),
      tbody,
    );
    // "Nothing here" is said below the table, not as a row: every row of a
    // table is one of its items.
    return h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || id },
      t,
      rows.length ? null : h("p", { class: "empty-note", text: emptyText || "None." }),
    );
  }

  /**
   * Makes `target`'s children look like `source`'s, keeping every element
   * whose place and tag are unchanged: a live view's refresh then changes
   * only texts and attributes, so focus, selection and references held by
   * others (assistive technology, tests) survive.
   */
  function morph(target, source) {
    const a = Array.from(target.childNodes);
    const b = Array.from(source.childNodes);
    for (let i = 0; i < b.length; i += 1) {
      const n = b[i];
      const o = a[i];
      if (!o) {
        target.appendChild(n);
        continue;
      }
      if (o.nodeType !== n.nodeType || o.nodeName !== n.nodeName || otherItem(o, n)) {
        target.replaceChild(n, o);
        continue;
      }
      if (o.nodeType === Node.TEXT_NODE) {
        if (o.nodeValue !== n.nodeValue) o.nodeValue = n.nodeValue;
        continue;
      }
      if (o.nodeType !== Node.ELEMENT_NODE) continue;
      for (const attr of Array.from(o.attributes)) if (!n.hasAttribute(attr.name)) o.removeAttribute(attr.name);
      for (const attr of Array.from(n.attributes)) {
        if (o.getAttribute(attr.name) !== attr.value) o.setAttribute(attr.name, attr.value);
      }
      morph(o, n);
    }
    for (let i = a.length - 1; i >= b.length; i -= 1) target.removeChild(a[i]);
  }

  /** The attributes that name what a row is: a row of another item is replaced, never patched. */
  const ITEM_ATTRS = ["data-task", "data-service", "data-deployment", "data-container", "data-cluster", "data-grant"];

  function otherItem(o, n) {
    if (o.nodeType !== Node.ELEMENT_NODE) return false;
    return ITEM_ATTRS.some((a) => o.getAttribute(a) !== n.getAttribute(a));
  }

  function td(...children) {
    return h("td", null, ...children);
  }

  function badge(value) {
    const v = value === null || value === undefined ? "" : String(value);
    const kind = badgeKind(v);
    return h("span", { class: "badge badge-" + kind, text: v });
  }

  /** A status field rendered as a badge (its text is still just the value). */
  function badgeField(name, value) {
    const el = badge(value);
    el.dataset.field = name;
    return el;
  }

  function badgeKind(v) {
    const u = v.toUpperCase();
    if (["RUNNING", "ACTIVE", "ENABLED", "AVAILABLE", "COMPLETED", "PRIMARY", "HEALTHY", "YES", "ON"].includes(u))
      return "ok";
    if (["STOPPED", "FAILED", "DISABLED", "UNHEALTHY", "NO", "PENDINGDELETION", "DELETED", "INACTIVE", "ERROR"].includes(u))
      return "bad";
    if (["PENDING", "PROVISIONING", "ACTIVATING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "IN_PROGRESS", "CREATING", "DELETING", "DRAINING", "UPDATING", "PENDINGIMPORT"].includes(u))
      return "warn";
    return "neutral";
  }

  function section(title, ...children) {
    return h("section", { class: "panel" }, h("h2", { text: title }), ...children);
  }

  function link(href, text, attrs) {
    return h("a", Object.assign({ href }, attrs || {}), text);
  }

  // -------------------------------------------------------------- formats --

  /** UTC, ISO-like: 2026-12-03 06:49:05Z. Accepts epoch seconds or ISO text. */
  function fmtTime(v) {
    if (v === null || v === undefined || v === "") return "";
    const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
    if (Number.isNaN(d.getTime())) return String(v);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function timeEl(v, name) {
    const text = fmtTime(v);
    const attrs = { text };
    if (text) {
      const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
      if (!Number.isNaN(d.getTime())) attrs.datetime = d.toISOString();
    }
    if (name) attrs["data-field"] = name;
    attrs.class = "value";
    return h("time", attrs);
  }

  function fmtBytes(n) {
    if (n === null || n === undefined || Number.isNaN(Number(n))) return "";
    let v = Number(n);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    const s = i === 0 || Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1);
    return `${s} ${units[i]}`;
  }

  const lastPart = (arn) => (arn ? String(arn).split("/").pop() : "");
  const taskDefName = (arn) => (arn ? String(arn).replace(/^.*:task-definition\//, "") : "");
  const yesNo = (b) => (b === true ? "yes" : b === false ? "no" : "");
  const clusterKeyOf = (c) =>
    (c && c.configuration && c.configuration.managedStorageConfiguration &&
      c.configuration.managedStorageConfiguration.fargateEphemeralStorageKmsKeyId) || "AWS owned key";

  // ------------------------------------------------------------------ API --

  class ApiError extends Error {
    constructor(status, type, message) {
      super(message);
      this.status = status;
      this.type = type;
    }
    toString() {
      return `${this.type}: ${this.message}`;
    }
  }

  /** Thrown after a 401 has sent the user back to sign-in: views just stop. */
  class SignedOut extends Error {}

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (session && session.csrfToken) headers["X-Ferry-Csrf"] = session.csrfToken;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        credentials: "same-origin",
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "NetworkError", "the server could not be reached (" + e.message + ")");
    }
    if (resp.status === 204) return null;
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (resp.ok) return data;
    const type = (data && (data.__type || data.code)) || `HTTP${resp.status}`;
    const message = (data && (data.message || data.Message)) || resp.statusText || "request failed";
    if (resp.status === 401 && path !== "/console/api/signin") {
      showSignin("Your session has ended. Sign in again.");
      throw new SignedOut(message);
    }
    throw new ApiError(resp.status, String(type).split("#").pop(), message);
  }

  const call = (service, operation, input) =>
    api("POST", "/console/api/call", { service, operation, input: input || {} });

  /** Every page of a token-paginated list. */
  async function listAll(service, operation, input, itemsKey, tokenIn, tokenOut) {
    const out = [];
    let token = null;
    for (let i = 0; i < 100; i += 1) {
      const req = Object.assign({}, input);
      if (token) req[tokenIn] = token;
      const r = await call(service, operation, req);
      out.push(...((r && r[itemsKey]) || []));
      token = r && r[tokenOut];
      if (!token || (r.Truncated === false && tokenOut === "NextMarker")) break;
    }
    return out;
  }

  const ecsList = (op, input, key) => listAll("ecs", op, input, key, "nextToken", "nextToken");

  async function inBatches(items, size, fn) {
    const out = [];
    for (let i = 0; i < items.length; i += size) out.push(...(await fn(items.slice(i, i + size))));
    return out;
  }

  async function describeClusters(names) {
    return inBatches(names, 100, async (b) => {
      const r = await call("ecs", "DescribeClusters", {
        clusters: b,
        include: ["CONFIGURATIONS", "STATISTICS", "SETTINGS"],
      });
      return r.clusters || [];
    });
  }

  async function describeTasks(cluster, arns) {
    return inBatches(arns, 100, async (b) => (await call("ecs", "DescribeTasks", { cluster, tasks: b })).tasks || []);
  }

  async function clusterTasks(cluster, extra) {
    const running = await ecsList("ListTasks", Object.assign({ cluster, desiredStatus: "RUNNING" }, extra), "taskArns");
    const stopped = await ecsList("ListTasks", Object.assign({ cluster, desiredStatus: "STOPPED" }, extra), "taskArns");
    const tasks = await describeTasks(cluster, [...new Set([...running, ...stopped])]);
    // Newest first: what was just started or stopped is what one looks for.
    tasks.sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
    return tasks;
  }

  // ------------------------------------------------------------- the view --

  const viewEl = () => $("#view");
  const contentEl = () => $("#view-content");

  function showError(err) {
    if (err instanceof SignedOut) return;
    const el = $("#view-error");
    el.textContent = err instanceof ApiError ? err.toString() : `Error: ${err && err.message ? err.message : err}`;
    el.hidden = false;
  }

  function clearError() {
    const el = $("#view-error");
    el.textContent = "";
    el.hidden = true;
  }

  /** A view's lifetime: timers it starts end when the view is left. */
  class ViewContext {
    constructor() {
      this.active = true;
      this.timers = new Set();
    }
    /** Runs fn every ms (after the previous run finished) while the view lives. */
    poll(ms, fn) {
      // A failed refresh is shown, and cleared again by the next one that works.
      let failed = false;
      const tick = async () => {
        if (!this.active) return;
        try {
          const again = await fn();
          if (failed && this.active) clearError();
          failed = false;
          if (again === false) return;
        } catch (e) {
          if (e instanceof SignedOut) return;
          if (this.active) showError(e);
          failed = true;
        }
        if (this.active) {
          const t = setTimeout(tick, ms);
          this.timers.add(t);
        }
      };
      const t = setTimeout(tick, ms);
      this.timers.add(t);
    }
    stop() {
      this.active = false;
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
    }
  }

  const routes = [
    [/^\/clusters$/, "clusters", viewClusters],
    [/^\/clusters\/([^/]+)$/, "cluster", viewCluster],
    [/^\/clusters\/([^/]+)\/services\/([^/]+)$/, "service", viewService],
    [/^\/clusters\/([^/]+)\/tasks\/([^/]+)$/, "task", viewTask],
    [/^\/keys$/, "keys", viewKeys],
    [/^\/keys\/([^/]+)$/, "key", viewKey],
    [/^\/audit$/, "audit", viewAudit],
    [/^\/filesystems$/, "filesystems", viewFilesystems],
    [/^\/filesystems\/([^/]+)$/, "filesystem", viewFilesystem],
    [/^\/compliance$/, "compliance", viewCompliance],
    [/^\/run$/, "run", viewRun],
  ];

  function currentPath() {
    // A route may carry a query (`#/run?cluster=NAME`): only its path routes.
    const raw = location.hash.replace(/^#/, "").split("?")[0];
    return raw === "" || raw === "/" ? "/clusters" : raw;
  }

  async function render(focusHeading) {
    if (!session) return;
    if (current) current.stop();
    const ctx = new ViewContext();
    current = ctx;
    const path = currentPath();
    let match = null;
    let name = "clusters";
    let fn = viewClusters;
    for (const [re, n, f] of routes) {
      const m = re.exec(path);
      if (m) {
        match = m.slice(1).map((x) => {
          try {
            return decodeURIComponent(x);
          } catch (_) {
            return x;
          }
        });
        name = n;
        fn = f;
        break;
      }
    }
    if (!match) {
      if (location.hash !== "#/clusters") {
        location.replace("#/clusters");
        return;
      }
      match = [];
    }
    const view = viewEl();
    view.dataset.view = name;
    view.dataset.ready = "false";
    view.setAttribute("aria-busy", "true");
    clearError();
    markNav(path);
    const content = contentEl();
    content.replaceChildren(h("p", { class: "loading muted", text: "Loading…" }));
    try {
      await fn(ctx, content, ...match);
    } catch (e) {
      if (e instanceof SignedOut) return;
      if (ctx !== current) return;
      const loading = $(".loading", content);
      if (loading) loading.remove();
      showError(e);
    }
    if (ctx !== current) return;
    view.dataset.ready = "true";
    view.removeAttribute("aria-busy");
    if (focusHeading) {
      const h1 = $("h1", content);
      if (h1) h1.focus({ preventScroll: false });
    }
  }

  /** Replaces the view's content (a view calls it once its data is in). */
  function show(ctx, content, ...nodes) {
    if (ctx !== current) return false;
    content.replaceChildren(...nodes.flat().filter(Boolean));
    return true;
  }

  function heading(text, sub) {
    document.title = `${text} · ferry console`;
    return h(
      "div",
      { class: "view-head" },
      h("h1", { tabindex: "-1", text }),
      sub ? h("p", { class: "view-sub mono", text: sub }) : null,
    );
  }

  function crumbs(...parts) {
    const ol = h("ol");
    parts.forEach(([href, text], i) => {
      const last = i === parts.length - 1;
      ol.appendChild(h("li", null, last ? h("span", { "aria-current": "page", text }) : link(href, text)));
    });
    return h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, ol);
  }

  function markNav(path) {
    for (const a of document.querySelectorAll("#nav a")) {
      const target = a.getAttribute("href").slice(1);
      if (path === target || path.startsWith(target + "/")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  // --------------------------------------------------------- confirmation --

  /**
   * Asks before an action. message: text or nodes naming what it affects.
   * Resolves true only on the OK button; Escape and Cancel resolve false.
   */
  function confirmAction(title, message, okLabel) {
    const dlg = $("#confirm");
    const opener = document.activeElement;
    $("#confirm-title").textContent = title;
    const msg = $("#confirm-message");
    msg.replaceChildren();
    append(msg, Array.isArray(message) ? message : [typeof message === "string" ? h("p", { text: message }) : message]);
    $("#confirm-ok").textContent = okLabel || "Confirm";
    dlg.returnValue = "";
    return new Promise((resolve) => {
      const done = () => {
        dlg.removeEventListener("close", done);
        resolve(dlg.returnValue === "ok");
        // After the action's own clean-up (it re-enables its button), focus
        // goes back to what opened the dialog.
        setTimeout(() => {
          if (opener && opener.isConnected && !opener.disabled && !opener.hidden && typeof opener.focus === "function") {
            opener.focus();
          } else if (!document.activeElement || document.activeElement === document.body) {
            const h1 = $("#view-content h1");
            if (h1) h1.focus();
          }
        }, 0);
      };
      dlg.addEventListener("close", done);
      dlg.showModal();
      $("#confirm-cancel").focus();
    });
  }

  /** Runs an action button's work with the button busy; errors to #view-error. */
  async function act(button, work) {
    clearError();
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await work();
    } catch (e) {
      showError(e);
    } finally {
      button.removeAttribute("aria-busy");
      if (button.isConnected && !button.dataset.keepDisabled) button.disabled = false;
      // The dialog hands focus back while the button is still disabled;
      // give it back now, or to the heading if the button is gone or off.
      if (!document.activeElement || document.activeElement === document.body) {
        const target = button.isConnected && !button.disabled && !button.hidden ? button : $("#view-content h1");
        if (target) target.focus();
      }
    }
  }

  // ------------------------------------------------------------- clusters --

  async function viewClusters(ctx, content) {
    const names = await ecsList("ListClusters", {}, "clusterArns");
    const clusters = await describeClusters(names);
    clusters.sort((a, b) => a.clusterName.localeCompare(b.clusterName));
    const rows = clusters.map((c) =>
      h(
        "tr",
        { data: { cluster: c.clusterName } },
        h("th", { scope: "row" }, link(`#/clusters/${encodeURIComponent(c.clusterName)}`, c.clusterName)),
        td(badgeField("cluster-status", c.status)),
        td(field("running-tasks", c.runningTasksCount ?? 0)),
        td(field("pending-tasks", c.pendingTasksCount ?? 0)),
        td(field("services", c.activeServicesCount ?? 0)),
        td(field("cluster-key", clusterKeyOf(c), "span", "mono break")),
      ),
    );
    show(
      ctx,
      content,
      heading("Clusters"),
      h("p", { class: "muted", text: "Storage key: the KMS key that wraps each task's ephemeral storage data key." }),
      table("clusters", "Clusters", ["Name", "Status", "Running tasks", "Pending tasks", "Services", "Storage key"], rows, "No clusters."),
    );
  }

  function taskRows(clusterName, tasks) {
    return tasks.map((t) => {
      const id = lastPart(t.taskArn);
      return h(
        "tr",
        { data: { task: id } },
        h("th", { scope: "row" }, link(`#/clusters/${encodeURIComponent(clusterName)}/tasks/${encodeURIComponent(id)}`, id, { class: "mono" })),
        td(badgeField("task-status", t.lastStatus)),
        td(field("desired-status", t.desiredStatus)),
        td(field("task-definition", taskDefName(t.taskDefinitionArn), "span", "mono")),
        td(field("platform-version", t.platformVersion)),
        td(timeEl(t.startedAt || t.createdAt, "task-started")),
      );
    });
  }

  const taskHeaders = ["Task", "Last status", "Desired", "Task definition", "Platform", "Started"];

  /**
   * Shows what `build()` answers ({nodes}) and, while the view lives,
   * builds it again every `ms` and morphs the page into it: counts, states
   * and rows follow the cluster without a reload or a lost focus.
   */
  async function liveView(ctx, content, build, ms) {
    const first = await build();
    if (!show(ctx, content, first)) return;
    ctx.poll(ms, async () => {
      const next = await build();
      if (!ctx.active) return false;
      const tmp = h("div");
      append(tmp, next.flat().filter(Boolean));
      morph(content, tmp);
      return true;
    });
  }

  async function viewCluster(ctx, content, name) {
    return liveView(ctx, content, () => buildCluster(name), 5000);
  }

  async function buildCluster(name) {
    const [c] = await describeClusters([name]);
    if (!c) throw new ApiError(404, "ClusterNotFoundException", `cluster ${name} was not found`);
    const serviceArns = await ecsList("ListServices", { cluster: name }, "serviceArns");
    const services = await inBatches(serviceArns, 10, async (b) =>
      (await call("ecs", "DescribeServices", { cluster: name, services: b })).services || []);
    services.sort((a, b) => a.serviceName.localeCompare(b.serviceName));
    const tasks = await clusterTasks(name);
    const svcRows = services.map((s) =>
      h(
        "tr",
        { data: { service: s.serviceName } },
        h("th", { scope: "row" }, link(`#/clusters/${encodeURIComponent(name)}/services/${encodeURIComponent(s.serviceName)}`, s.serviceName)),
        td(badgeField("service-status", s.status)),
        td(field("desired-count", s.desiredCount)),
        td(field("running-count", s.runningCount)),
        td(field("pending-count", s.pendingCount)),
        td(field("task-definition", taskDefName(s.taskDefinition), "span", "mono")),
      ),
    );
    return [
      crumbs(["#/clusters", "Clusters"], ["", name]),
      heading(name, c.clusterArn),
      h("div", { class: "actions" }, link(`#/run?cluster=${encodeURIComponent(name)}`, "Run a task in this cluster", { class: "btn" })),
      details([
        ["Name", "cluster-name", c.clusterName],
        ["Status", "cluster-status", null, { node: badgeField("cluster-status", c.status) }],
        ["Storage key", "cluster-key", clusterKeyOf(c), { mono: true }],
        ["Running tasks", "running-tasks", c.runningTasksCount ?? 0],
        ["Pending tasks", "pending-tasks", c.pendingTasksCount ?? 0],
        ["Active services", "services", c.activeServicesCount ?? 0],
      ]),
      section(
        "Services",
        table("services", "Services", ["Service", "Status", "Desired", "Running", "Pending", "Task definition"], svcRows, "No services."),
      ),
      section("Tasks", table("tasks", "Tasks", taskHeaders, taskRows(name, tasks), "No tasks.")),
    ];
  }

  // -------------------------------------------------------------- service --

  async function viewService(ctx, content, cluster, name) {
    return liveView(ctx, content, () => buildService(cluster, name), 4000);
  }

  async function buildService(cluster, name) {
    const r = await call("ecs", "DescribeServices", { cluster, services: [name] });
    const s = (r.services || [])[0];
    if (!s) {
      const f = (r.failures || [])[0];
      throw new ApiError(404, "ServiceNotFoundException", f ? `${f.arn}: ${f.reason}` : `service ${name} was not found`);
    }
    const tasks = await clusterTasks(cluster, { serviceName: name });
    const depRows = (s.deployments || []).map((d) =>
      h(
        "tr",
        { data: { deployment: d.id } },
        h("th", { scope: "row", class: "mono", text: d.id }),
        td(badgeField("deployment-status", d.status)),
        td(field("platform-version", d.platformVersion)),
        td(badgeField("rollout-state", d.rolloutState)),
        td(field("deployment-key", (d.fargateEphemeralStorage && d.fargateEphemeralStorage.kmsKeyId) || "AWS owned key", "span", "mono break")),
        td(field("deployment-task-definition", taskDefName(d.taskDefinition), "span", "mono")),
        td(field("deployment-counts", `${d.runningCount ?? 0}/${d.desiredCount ?? 0}`)),
        td(field("rollout-reason", d.rolloutStateReason)),
        td(timeEl(d.createdAt, "deployment-created")),
      ),
    );
    const events = h("ol", { id: "events", class: "events" });
    for (const e of s.events || []) {
      events.appendChild(h("li", null, timeEl(e.createdAt), " ", h("span", { class: "event-msg", text: e.message })));
    }
    const noEvents = (s.events || []).length ? null : h("p", { class: "muted", text: "No events yet." });
    const force = h("button", { type: "button", id: "force-deployment", class: "btn btn-primary", text: "Force new deployment" });
    force.addEventListener("click", () =>
      act(force, async () => {
        const ok = await confirmAction(
          "Force a new deployment",
          [
            h("p", null, "Start a new deployment of service ", h("strong", { class: "mono", text: s.serviceName }),
              " in cluster ", h("strong", { class: "mono", text: cluster }),
              ". Its tasks are replaced with new ones (new volumes, new data keys)."),
            h("p", { class: "mono break small", text: s.serviceArn }),
          ],
          "Force deployment",
        );
        if (!ok) return;
        await call("ecs", "UpdateService", { cluster, service: s.serviceName, forceNewDeployment: true });
        await render(false);
      }),
    );
    return [
      crumbs(["#/clusters", "Clusters"], [`#/clusters/${encodeURIComponent(cluster)}`, cluster], ["", s.serviceName]),
      heading(s.serviceName, s.serviceArn),
      h("div", { class: "actions" }, force),
      details([
        ["Name", "service-name", s.serviceName],
        ["Status", "service-status", null, { node: badgeField("service-status", s.status) }],
        ["Desired count", "desired-count", s.desiredCount],
        ["Running count", "running-count", s.runningCount],
        ["Pending count", "pending-count", s.pendingCount],
        ["Task definition", "task-definition", taskDefName(s.taskDefinition), { mono: true }],
        ["Platform version", "service-platform-version", s.platformVersion],
      ]),
      section(
        "Deployments",
        table(
          "deployments",
          "Deployments",
          ["Deployment", "Status", "Platform", "Rollout", "Storage key", "Task definition", "Running/desired", "Reason", "Created"],
          depRows,
          "No deployments.",
        ),
      ),
      section("Events", noEvents, events),
      section("Tasks", table("tasks", "Tasks", taskHeaders, taskRows(cluster, tasks), "No tasks.")),
    ];
  }

  // ----------------------------------------------------------------- task --

  function auditTable(id, records) {
    const rows = records.map((r) => auditRow(r));
    return table(id, "KMS audit records", ["Time", "Operation", "Principal", "Key", "Error"], rows, "No audit records.");
  }

  function recordPrincipal(r) {
    const u = r.userIdentity || {};
    return u.arn || u.invokedBy || u.principalId || u.accessKeyId || "";
  }

  function recordKey(r) {
    const res = (r.resources || []).find((x) => x && x.ARN);
    if (res) return res.ARN;
    const p = r.requestParameters || {};
    return p.keyId || "";
  }

  function auditRow(r) {
    const err = r.errorCode || "";
    const tr = h(
      "tr",
      { data: { eventName: r.eventName || "" }, class: err ? "row-error" : null },
      td(timeEl(r.eventTime, "event-time")),
      td(field("event-name", r.eventName, "span", "mono")),
      td(field("principal", recordPrincipal(r), "span", "mono break")),
      td(field("key-arn", recordKey(r), "span", "mono break")),
      td(err ? h("span", { class: "badge badge-bad", "data-field": "error-code", text: err }) : field("error-code", "")),
    );
    if (r.errorMessage) tr.title = r.errorMessage;
    return tr;
  }

  async function viewTask(ctx, content, cluster, taskId) {
    const q = `cluster=${encodeURIComponent(cluster)}&task=${encodeURIComponent(taskId)}`;
    let data = await api("GET", `/console/api/task?${q}`);
    const task0 = data.task;
    const taskArn = task0.taskArn;

    // The task definition names each container's awslogs group and prefix.
    let streams = [];
    let logNote = "";
    try {
      const td0 = await call("ecs", "DescribeTaskDefinition", { taskDefinition: task0.taskDefinitionArn });
      for (const c of (td0.taskDefinition && td0.taskDefinition.containerDefinitions) || []) {
        const lc = c.logConfiguration;
        if (!lc || lc.logDriver !== "awslogs" || !lc.options) continue;
        const group = lc.options["awslogs-group"];
        const prefix = lc.options["awslogs-stream-prefix"];
        if (!group || !prefix) continue;
        streams.push({ container: c.name, group, stream: `${prefix}/${c.name}/${lastPart(taskArn)}`, token: null });
      }
      if (!streams.length) logNote = "No container of this task sends its logs to CloudWatch Logs (awslogs with a stream prefix).";
    } catch (e) {
      if (e instanceof SignedOut) throw e;
      logNote = `Logs unavailable: ${e}`;
    }

    const detailsBox = h("div", { class: "task-details" });
    const logs = h("ol", { id: "task-logs", class: "logs", "aria-live": "off" });
    const logStatus = h("p", { class: "muted small", id: "task-logs-status", text: logNote });
    const stopBtn = h("button", { type: "button", id: "stop-task", class: "btn btn-danger", text: "Stop task" });

    const fillDetails = (d) => {
      const t = d.task;
      const st = d.storage;
      const tok = (st && st.token) || {};
      const stopped = t.lastStatus === "STOPPED";
      stopBtn.hidden = stopped;
      stopBtn.disabled = stopped || t.desiredStatus === "STOPPED";
      if (stopped || t.desiredStatus === "STOPPED") stopBtn.dataset.keepDisabled = "1";
      const containers = (t.containers || []).map((c) =>
        h(
          "tr",
          { data: { container: c.name } },
          h("th", { scope: "row", text: c.name }),
          td(badgeField("container-status", c.lastStatus)),
          td(field("container-exit-code", c.exitCode)),
          td(badgeField("container-health", c.healthStatus || "UNKNOWN")),
          td(field("container-reason", c.reason)),
          td(field("container-image", c.image, "span", "mono break")),
        ),
      );
      const ctxText = tok.encryptionContext === undefined ? "" : JSON.stringify(tok.encryptionContext, null, 2);
      const fresh = h("div");
      fresh.append(
        section(
          "Status",
          details([
            ["Task ARN", "task-arn", t.taskArn, { mono: true, wide: true }],
            ["Last status", "last-status", null, { node: badgeField("last-status", t.lastStatus) }],
            ["Desired status", "desired-status", t.desiredStatus],
            ["Stop code", "stop-code", t.stopCode],
            ["Stopped reason", "stopped-reason", t.stoppedReason],
            ["Platform version", "platform-version", t.platformVersion],
            ["Task definition", "task-definition", taskDefName(t.taskDefinitionArn), { mono: true }],
            ["Launch type", "launch-type", t.launchType],
            ["CPU units", "cpu", t.cpu],
            ["Memory (MiB)", "memory", t.memory],
            ["Created", "created-at", null, { node: timeEl(t.createdAt, "created-at") }],
            ["Started", "started-at", null, { node: timeEl(t.startedAt, "started-at") }],
            ["Stopped", "stopped-at", null, { node: timeEl(t.stoppedAt, "stopped-at") }],
          ]),
        ),
        section(
          "Containers",
          table("containers", "Containers", ["Container", "Status", "Exit code", "Health", "Reason", "Image"], containers, "No containers."),
        ),
        section(
          "Ephemeral storage",
          st ? null : h("p", { class: "muted", text: "This server holds no volume for this task now (not yet attached, or already detached and shredded)." }),
          details([
            ["Size", "storage-size", st ? gib(st.sizeBytes) : ""],
            ["Used", "storage-used", st ? fmtBytes(st.usedBytes) : ""],
            ["Encrypted", "storage-encrypted", null, { node: st ? badgeField("storage-encrypted", yesNo(st.encrypted)) : field("storage-encrypted", "") }],
            ["Cipher", "storage-cipher", st && st.cipher, { mono: true }],
            ["Volume key bits", "storage-key-bits", st && st.keyBits],
            ["KMS key", "storage-key-arn", st && st.keyArn, { mono: true, wide: true }],
            ["Grant", "storage-grant-id", st && st.grantId, { mono: true, wide: true }],
          ]),
          h("h3", { text: "LUKS2 token 0" }),
          details([
            ["Type", "token-type", tok.type, { mono: true }],
            ["Keyslots", "token-keyslots", Array.isArray(tok.keyslots) ? tok.keyslots.join(", ") : tok.keyslots],
            ["Key ARN", "token-key-arn", tok.keyArn, { mono: true, wide: true }],
            ["Wrapped data key", "token-wrapped-data-key", null, { wide: true, node: h("code", { class: "value mono break", "data-field": "token-wrapped-data-key", text: tok.wrappedDataKey || "" }) }],
            ["Encryption context", "token-encryption-context", null, { wide: true, node: h("pre", { class: "value mono", "data-field": "token-encryption-context", text: ctxText }) }],
          ]),
        ),
        section(
          "Key audit",
          h("p", { class: "muted small", text: "KMS calls whose encryption context or grant names this task: they created and used its data key." }),
          auditTable("task-audit", d.audit || []),
        ),
      );
      morph(detailsBox, fresh);
    };

    stopBtn.addEventListener("click", () =>
      act(stopBtn, async () => {
        const ok = await confirmAction(
          "Stop task",
          [
            h("p", { text: "Stop this task? Its containers are stopped and its ephemeral storage is shredded." }),
            h("p", { class: "mono break", text: taskArn }),
          ],
          "Stop task",
        );
        if (!ok) return;
        await call("ecs", "StopTask", { cluster, task: taskArn, reason: "Stopped from the ferry console" });
        await refresh();
      }),
    );

    const refresh = async () => {
      const d = await api("GET", `/console/api/task?${q}`);
      if (!ctx.active) return false;
      data = d;
      fillDetails(d);
      return d.task.lastStatus !== "STOPPED";
    };

    let logErrorShown = false;
    const pollLogs = async () => {
      for (const s of streams) {
        for (let page = 0; page < 20; page += 1) {
          const input = { logGroupName: s.group, logStreamName: s.stream, startFromHead: true };
          if (s.token) input.nextToken = s.token;
          let r;
          try {
            r = await call("logs", "GetLogEvents", input);
          } catch (e) {
            if (e instanceof SignedOut) throw e;
            if (e instanceof ApiError && e.type === "ResourceNotFoundException") {
              logStatus.textContent = "Waiting for the log stream…";
              break;
            }
            if (!logErrorShown) {
              logStatus.textContent = `Logs: ${e}`;
              logErrorShown = true;
            }
            break;
          }
          if (!ctx.active) return;
          const events = r.events || [];
          const stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
          for (const ev of events) {
            // The line's text is the message alone (copyable, searchable);
            // its time and container are shown from attributes by CSS.
            const li = h("li", { class: "log-line" }, ev.message);
            li.dataset.time = ev.timestamp !== undefined ? fmtTime(ev.timestamp / 1000) : "";
            li.dataset.container = streams.length > 1 ? s.container : "";
            li.title = `${li.dataset.time} ${s.container}`;
            logs.appendChild(li);
          }
          if (stick && events.length) logs.scrollTop = logs.scrollHeight;
          const same = r.nextForwardToken === s.token;
          if (r.nextForwardToken) s.token = r.nextForwardToken;
          if (!events.length || same) break;
        }
      }
      if (streams.length && logStatus.textContent.startsWith("Waiting") && logs.children.length) logStatus.textContent = "";
      if (streams.length && !logs.children.length && !logStatus.textContent) logStatus.textContent = "No log lines yet.";
      if (logs.children.length && logStatus.textContent === "No log lines yet.") logStatus.textContent = "";
    };

    fillDetails(data);
    show(
      ctx,
      content,
      crumbs(["#/clusters", "Clusters"], [`#/clusters/${encodeURIComponent(cluster)}`, cluster], ["", lastPart(taskArn)]),
      heading(`Task ${lastPart(taskArn)}`, taskArn),
      h("div", { class: "actions" }, stopBtn),
      detailsBox,
      section("Logs", logStatus, h("div", { class: "logs-wrap" }, logs)),
    );
    await pollLogs();
    const live = data.task.lastStatus !== "STOPPED";
    if (live) {
      ctx.poll(2000, refresh);
      // Logs follow while the task runs, and once more after it stopped
      // (its last lines arrive as it stops).
      let finalRounds = 2;
      ctx.poll(2000, async () => {
        await pollLogs();
        if (data.task.lastStatus === "STOPPED") {
          finalRounds -= 1;
          return finalRounds > 0;
        }
        return true;
      });
    }
  }

  function gib(bytes) {
    if (bytes === null || bytes === undefined) return "";
    // The volume is its promised size plus the LUKS2 header (a few MiB):
    // the size the task asked for is the whole GiB it is within 1 % of.
    const g = Number(bytes) / 1024 ** 3;
    const whole = Math.round(g);
    return whole > 0 && Math.abs(g - whole) / whole < 0.01 ? `${whole} GiB` : `${g.toFixed(2)} GiB`;
  }

  // ----------------------------------------------------------------- keys --

  async function allAliases(keyId) {
    return listAll("kms", "ListAliases", keyId ? { KeyId: keyId } : {}, "Aliases", "Marker", "NextMarker");
  }

  async function viewKeys(ctx, content) {
    const keys = await listAll("kms", "ListKeys", {}, "Keys", "Marker", "NextMarker");
    const aliases = await allAliases();
    // One DescribeKey per key, side by side; a key the caller may list but
    // not describe still gets its row, saying why it is blank.
    const metas = await Promise.all(
      keys.map(async (k) => {
        try {
          return (await call("kms", "DescribeKey", { KeyId: k.KeyId })).KeyMetadata;
        } catch (e) {
          if (e instanceof SignedOut) throw e;
          return { KeyId: k.KeyId, Arn: k.KeyArn, KeyState: "", KeyManager: "", error: String(e) };
        }
      }),
    );
    const rows = metas.map((m) => {
      const names = aliases.filter((a) => a.TargetKeyId === m.KeyId).map((a) => a.AliasName);
      return h(
        "tr",
        { data: { key: m.KeyId } },
        h("th", { scope: "row" }, link(`#/keys/${encodeURIComponent(m.KeyId)}`, m.KeyId, { class: "mono" })),
        td(field("key-alias", names.join(", "), "span", "mono")),
        td(badgeField("key-state", m.KeyState)),
        td(field("key-manager", m.KeyManager)),
        td(field("key-spec", m.KeySpec || m.CustomerMasterKeySpec)),
        td(field("key-usage", m.KeyUsage)),
        td(field("key-description", m.error || m.Description)),
      );
    });
    show(
      ctx,
      content,
      heading("KMS keys"),
      table("keys", "KMS keys", ["Key ID", "Aliases", "State", "Manager", "Spec", "Usage", "Description"], rows, "No keys you may list."),
    );
  }

  async function viewKey(ctx, content, keyId) {
    const m = (await call("kms", "DescribeKey", { KeyId: keyId })).KeyMetadata;
    const optional = async (fn) => {
      try {
        return { ok: await fn() };
      } catch (e) {
        if (e instanceof SignedOut) throw e;
        return { err: e };
      }
    };
    const symmetric = (m.KeySpec || m.CustomerMasterKeySpec) === "SYMMETRIC_DEFAULT";
    const rot = m.KeyManager === "CUSTOMER" && symmetric && m.Origin !== "EXTERNAL"
      ? await optional(() => call("kms", "GetKeyRotationStatus", { KeyId: m.KeyId }))
      : { ok: null };
    const aliases = await optional(() => allAliases(m.KeyId));
    const grants = await optional(() => listAll("kms", "ListGrants", { KeyId: m.KeyId }, "Grants", "Marker", "NextMarker"));
    const policy = await optional(() => call("kms", "GetKeyPolicy", { KeyId: m.KeyId, PolicyName: "default" }));

    const rotation = rot.ok ? (rot.ok.KeyRotationEnabled ? "enabled" : "disabled") : "n/a";
    const aliasList = h("ul", { id: "aliases", class: "plain-list" });
    if (aliases.ok) {
      for (const a of aliases.ok) aliasList.appendChild(h("li", { class: "mono", text: a.AliasName }));
    }
    const aliasNote = aliases.ok
      ? aliases.ok.length ? null : h("p", { class: "muted", text: "No aliases." })
      : h("p", { class: "muted", text: String(aliases.err) });

    const grantRows = (grants.ok || []).map((g) =>
      h(
        "tr",
        { data: { grant: g.GrantId } },
        h("th", { scope: "row", class: "mono break", text: g.GrantId }),
        td(field("grant-name", g.Name, "span", "mono break")),
        td(field("grant-grantee", g.GranteePrincipal, "span", "mono break")),
        td(field("grant-retiring", g.RetiringPrincipal, "span", "mono break")),
        td(field("grant-operations", (g.Operations || []).join(", "))),
        td(h("code", { class: "value mono break", "data-field": "grant-constraints", text: g.Constraints ? JSON.stringify(g.Constraints) : "" })),
        td(timeEl(g.CreationDate, "grant-created")),
      ),
    );
    let policyText = "";
    if (policy.ok) {
      try {
        policyText = JSON.stringify(JSON.parse(policy.ok.Policy), null, 2);
      } catch (_) {
        policyText = policy.ok.Policy || "";
      }
    } else policyText = String(policy.err);

    const state = m.KeyState;
    const enableBtn = h("button", { type: "button", id: "enable-key", class: "btn btn-primary", text: "Enable key" });
    const disableBtn = h("button", { type: "button", id: "disable-key", class: "btn btn-danger", text: "Disable key" });
    const customer = m.KeyManager === "CUSTOMER";
    enableBtn.disabled = !(customer && state === "Disabled");
    disableBtn.disabled = !(customer && state === "Enabled");
    if (enableBtn.disabled) enableBtn.dataset.keepDisabled = "1";
    if (disableBtn.disabled) disableBtn.dataset.keepDisabled = "1";

    enableBtn.addEventListener("click", () =>
      act(enableBtn, async () => {
        const ok = await confirmAction(
          "Enable key",
          [h("p", { text: "Enable this KMS key? It can be used for cryptographic operations again." }), h("p", { class: "mono break", text: m.Arn })],
          "Enable key",
        );
        if (!ok) return;
        await call("kms", "EnableKey", { KeyId: m.KeyId });
        await render(false);
      }),
    );
    disableBtn.addEventListener("click", () =>
      act(disableBtn, async () => {
        // Name what disabling breaks: the clusters whose new tasks use this
        // key for their storage, and the running tasks whose volumes it wraps.
        const comp = await api("GET", "/console/api/compliance");
        const names = await ecsList("ListClusters", {}, "clusterArns");
        const clusters = (await describeClusters(names)).filter((c) => {
          const k = clusterKeyOf(c);
          return k === m.Arn || k === m.KeyId;
        });
        const tasks = (comp.tasks || []).filter((t) => t.keyArn === m.Arn).length;
        const list = h("ul", { class: "plain-list" });
        for (const c of clusters) list.appendChild(h("li", { class: "mono", text: c.clusterName }));
        const ok = await confirmAction(
          "Disable key",
          [
            h("p", { text: "Disable this KMS key?" }),
            h("p", { class: "mono break", text: m.Arn }),
            clusters.length
              ? [h("p", { text: `Clusters using it as their storage key (${clusters.length}): new tasks there cannot start while it is disabled.` }), list]
              : h("p", { text: "No cluster uses it as its storage key." }),
            h("p", { text: `Running tasks whose volumes it wraps: ${tasks}.` }),
          ],
          "Disable key",
        );
        if (!ok) return;
        await call("kms", "DisableKey", { KeyId: m.KeyId });
        await render(false);
      }),
    );

    show(
      ctx,
      content,
      crumbs(["#/keys", "Keys"], ["", m.KeyId]),
      heading(`Key ${m.KeyId}`, m.Arn),
      h("div", { class: "actions" }, enableBtn, disableBtn),
      details([
        ["Key ID", "key-id", m.KeyId, { mono: true }],
        ["ARN", "key-arn", m.Arn, { mono: true }],
        ["State", "key-state", null, { node: badgeField("key-state", state) }],
        ["Automatic rotation", "key-rotation", rotation],
        ["Key spec", "key-spec", m.KeySpec || m.CustomerMasterKeySpec],
        ["Key usage", "key-usage", m.KeyUsage],
        ["Manager", "key-manager", m.KeyManager],
        ["Origin", "key-origin", m.Origin],
        ["Created", "key-created", null, { node: timeEl(m.CreationDate, "key-created") }],
        ["Description", "key-description", m.Description],
      ]),
      section("Aliases", aliasNote, aliasList),
      section(
        "Grants",
        grants.err ? h("p", { class: "muted", text: String(grants.err) }) : null,
        table("grants", "Grants", ["Grant ID", "Name", "Grantee", "Retiring principal", "Operations", "Constraints", "Created"], grantRows, "No grants."),
      ),
      section("Key policy", h("div", { class: "pre-wrap" }, h("pre", { id: "key-policy", class: "mono", tabindex: "0", text: policyText }))),
    );
  }

  // ---------------------------------------------------------------- audit --

  /** datetime-local text (read as UTC) to seconds since the epoch. */
  function utcSeconds(v) {
    if (!v) return null;
    const t = Date.parse(v.length === 16 ? `${v}:00Z` : `${v}Z`);
    return Number.isNaN(t) ? null : Math.floor(t / 1000);
  }

  /** Whether a page's `next` cursor leads anywhere (0 is the trail's start: nothing is older). */
  const hasOlder = (next) => next !== null && next !== undefined && next !== 0;

  async function viewAudit(ctx, content) {
    const input = (id, label, type, extra) =>
      h("div", { class: "form-row" }, h("label", { for: id, text: label }), h("input", Object.assign({ id, name: id, type }, extra || {})));
    const form = h(
      "form",
      { id: "audit-filters", class: "filters" },
      input("audit-key", "Key (ID, ARN or alias)", "text", { autocapitalize: "off", spellcheck: "false" }),
      input("audit-principal", "Principal", "text", { autocapitalize: "off", spellcheck: "false" }),
      input("audit-event-name", "Operation", "text", { placeholder: "e.g. Decrypt", autocapitalize: "off", spellcheck: "false" }),
      input("audit-from", "From (UTC)", "datetime-local", { step: "1" }),
      input("audit-to", "To (UTC)", "datetime-local", { step: "1" }),
      h("div", { class: "form-row form-check" }, h("input", { id: "audit-errors-only", type: "checkbox" }), h("label", { for: "audit-errors-only", text: "Errors only" })),
      h("div", { class: "form-row form-submit" }, h("button", { type: "submit", id: "audit-apply", class: "btn btn-primary", text: "Apply filters" })),
    );
    const tbody = h("tbody");
    const tbl = h(
      "table",
      { id: "audit" },
      h("caption", { class: "visually-hidden", text: "KMS audit trail" }),
      h("thead", null, h("tr", null, ["Time", "Operation", "Principal", "Key", "Error"].map((x) => h("th", { scope: "col", text: x })))),
      tbody,
    );
    const more = h("button", { type: "button", id: "audit-more", class: "btn", text: "Load older records" });
    const status = h("p", { class: "muted small", id: "audit-status", "aria-live": "polite" });
    let state = { next: null, head: null, filters: {}, gen: 0 };

    const params = (extra) => {
      const p = new URLSearchParams();
      const f = state.filters;
      if (f.key) p.set("key", f.key);
      if (f.principal) p.set("principal", f.principal);
      if (f.eventName) p.set("eventName", f.eventName);
      if (f.from !== null && f.from !== undefined) p.set("from", String(f.from));
      if (f.to !== null && f.to !== undefined) p.set("to", String(f.to));
      if (f.errorsOnly) p.set("errorsOnly", "true");
      for (const [k, v] of Object.entries(extra)) p.set(k, String(v));
      return p.toString();
    };

    const emptyNote = h("p", { class: "empty-note", text: "No matching records.", hidden: true });
    const setEmpty = () => {
      emptyNote.hidden = Boolean(tbody.querySelector("tr"));
    };

    const load = async () => {
      state.gen += 1;
      const gen = state.gen;
      const r = await api("GET", `/console/api/audit?${params({ limit: 50 })}`);
      if (gen !== state.gen || !ctx.active) return;
      tbody.replaceChildren(...(r.records || []).map(auditRow));
      state.next = r.next;
      state.head = r.head;
      more.hidden = !hasOlder(r.next);
      setEmpty();
    };

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearError();
      const from = $("#audit-from").value;
      const to = $("#audit-to").value;
      state.filters = {
        key: $("#audit-key").value.trim(),
        principal: $("#audit-principal").value.trim(),
        eventName: $("#audit-event-name").value.trim(),
        from: utcSeconds(from),
        to: utcSeconds(to),
        errorsOnly: $("#audit-errors-only").checked,
      };
      const view = viewEl();
      view.dataset.ready = "false";
      try {
        await load();
        status.textContent = `${tbody.querySelectorAll("tr[data-event-name]").length} records shown.`;
      } catch (e) {
        showError(e);
      }
      if (ctx === current) view.dataset.ready = "true";
    });

    more.addEventListener("click", () =>
      act(more, async () => {
        if (!hasOlder(state.next)) return;
        const gen = state.gen;
        const r = await api("GET", `/console/api/audit?${params({ limit: 50, before: state.next })}`);
        if (gen !== state.gen || !ctx.active) return;
        append(tbody, (r.records || []).map(auditRow));
        state.next = r.next;
        more.hidden = !hasOlder(r.next);
        setEmpty();
      }),
    );

    await load();
    show(
      ctx,
      content,
      heading("Audit trail"),
      h("p", { class: "muted", text: "Every KMS call, newest first. New records appear at the top as they are written." }),
      form,
      status,
      h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "KMS audit trail" }, tbl, emptyNote),
      h("div", { class: "actions" }, more),
    );
    ctx.poll(2000, async () => {
      if (state.head === null || state.head === undefined) return true;
      const gen = state.gen;
      const r = await api("GET", `/console/api/audit?${params({ limit: 500, after: state.head })}`);
      if (gen !== state.gen || !ctx.active) return true;
      const recs = r.records || [];
      if (recs.length) {
        tbody.prepend(...recs.map(auditRow));
        status.textContent = `${recs.length} new record${recs.length === 1 ? "" : "s"}.`;
      }
      state.head = r.head;
      setEmpty();
      return true;
    });
  }

  // ---------------------------------------------------------- file systems --

  async function viewFilesystems(ctx, content) {
    const r = await call("efs", "DescribeFileSystems", {});
    const rows = (r.FileSystems || []).map((f) =>
      h(
        "tr",
        { data: { fs: f.FileSystemId } },
        h("th", { scope: "row" }, link(`#/filesystems/${encodeURIComponent(f.FileSystemId)}`, f.FileSystemId, { class: "mono" })),
        td(field("fs-name", f.Name)),
        td(badgeField("fs-state", f.LifeCycleState)),
        td(badgeField("fs-encrypted", yesNo(f.Encrypted))),
        td(field("fs-key", f.KmsKeyId, "span", "mono break")),
        td(field("fs-size", f.SizeInBytes ? fmtBytes(f.SizeInBytes.Value) : "")),
        td(field("fs-mount-targets", f.NumberOfMountTargets ?? "")),
      ),
    );
    show(
      ctx,
      content,
      heading("File systems"),
      table("filesystems", "File systems", ["File system", "Name", "State", "Encrypted", "KMS key", "Size", "Mount targets"], rows, "No file systems."),
    );
  }

  async function viewFilesystem(ctx, content, fsId) {
    const r = await call("efs", "DescribeFileSystems", { FileSystemId: fsId });
    const f = (r.FileSystems || [])[0];
    if (!f) throw new ApiError(404, "FileSystemNotFound", `file system ${fsId} was not found`);
    const aps = (await call("efs", "DescribeAccessPoints", { FileSystemId: fsId })).AccessPoints || [];
    const mts = (await call("efs", "DescribeMountTargets", { FileSystemId: fsId })).MountTargets || [];
    const apRows = aps.map((a) => {
      const u = a.PosixUser;
      const rd = a.RootDirectory || {};
      return h(
        "tr",
        { data: { accessPoint: a.AccessPointId } },
        h("th", { scope: "row", class: "mono", text: a.AccessPointId }),
        td(field("ap-name", a.Name)),
        td(badgeField("ap-state", a.LifeCycleState)),
        td(field("ap-path", rd.Path || "/", "span", "mono")),
        td(field("ap-posix-user", u ? `${u.Uid}:${u.Gid}${u.SecondaryGids && u.SecondaryGids.length ? " +" + u.SecondaryGids.join(",") : ""}` : "", "span", "mono")),
      );
    });
    const mtRows = mts.map((m) =>
      h(
        "tr",
        { data: { mountTarget: m.MountTargetId } },
        h("th", { scope: "row", class: "mono", text: m.MountTargetId }),
        td(badgeField("mt-state", m.LifeCycleState)),
        td(field("mt-subnet", m.SubnetId, "span", "mono")),
        td(field("mt-ip", m.IpAddress, "span", "mono")),
        td(field("mt-zone", m.AvailabilityZoneName)),
      ),
    );
    show(
      ctx,
      content,
      crumbs(["#/filesystems", "File systems"], ["", fsId]),
      heading(f.Name ? `${f.Name} (${fsId})` : fsId, f.FileSystemArn),
      details([
        ["File system ID", "fs-id", f.FileSystemId, { mono: true }],
        ["Name", "fs-name", f.Name],
        ["State", "fs-state", null, { node: badgeField("fs-state", f.LifeCycleState) }],
        ["Encrypted", "fs-encrypted", null, { node: badgeField("fs-encrypted", yesNo(f.Encrypted)) }],
        ["KMS key", "fs-key", f.KmsKeyId, { mono: true }],
        ["Performance mode", "fs-performance-mode", f.PerformanceMode],
        ["Throughput mode", "fs-throughput-mode", f.ThroughputMode],
        ["Created", "fs-created", null, { node: timeEl(f.CreationTime, "fs-created") }],
      ]),
      section("Access points", table("access-points", "Access points", ["Access point", "Name", "State", "Root directory", "POSIX user"], apRows, "No access points.")),
      section("Mount targets", table("mount-targets", "Mount targets", ["Mount target", "State", "Subnet", "IP address", "Zone"], mtRows, "No mount targets.")),
    );
  }

  // ----------------------------------------------------------- compliance --

  async function viewCompliance(ctx, content) {
    const c = await api("GET", "/console/api/compliance");
    const keyRows = (c.keys || []).map((k) =>
      h(
        "tr",
        { data: { keyArn: k.keyArn } },
        h("th", { scope: "row", class: "mono break", text: k.keyArn }),
        td(field("key-tasks", k.tasks)),
      ),
    );
    const taskRowsC = (c.tasks || []).map((t) => {
      const cluster = lastPart(t.clusterArn);
      const id = lastPart(t.taskArn);
      return h(
        "tr",
        { data: { task: id }, class: t.encrypted ? null : "row-error" },
        h("th", { scope: "row" }, link(`#/clusters/${encodeURIComponent(cluster)}/tasks/${encodeURIComponent(id)}`, id, { class: "mono" })),
        td(field("task-cluster", cluster)),
        td(field("task-definition", taskDefName(t.taskDefinitionArn), "span", "mono")),
        td(field("platform-version", t.platformVersion)),
        td(badgeField("task-encrypted", yesNo(t.encrypted))),
        td(field("task-key", t.keyArn, "span", "mono break")),
      );
    });
    show(
      ctx,
      content,
      heading("Compliance"),
      h("p", { class: "muted" }, "Every RUNNING task in the clusters you may list. Generated ", timeEl(c.generatedAt, "generated-at"), "."),
      h(
        "div",
        { class: "stats" },
        stat("Running tasks", field("running-tasks", c.runningTasks, "span", "stat-value")),
        stat("Encrypted", field("encrypted-tasks", c.encryptedTasks, "span", "stat-value")),
        stat("Unencrypted", field("unencrypted-tasks", c.unencryptedTasks, "span", "stat-value")),
        stat("On platform 1.3.0", field("tasks-on-130", c.tasksOnPlatform130, "span", "stat-value")),
        stat("Encrypted storage required", field("require-encrypted-storage", c.requireEncryptedStorage ? "on" : "off", "span", "stat-value")),
      ),
      h(
        "div",
        { class: "actions" },
        h("a", { id: "compliance-csv", class: "btn", href: "/console/api/compliance?format=csv", download: "ferry-compliance.csv", text: "Download CSV" }),
        h("a", { id: "compliance-json", class: "btn", href: "/console/api/compliance?format=json", download: "ferry-compliance.json", text: "Download JSON" }),
      ),
      section("Storage keys", table("compliance-keys", "Storage keys in use", ["Key ARN", "Running tasks"], keyRows, "No running tasks.")),
      section(
        "Running tasks",
        table("compliance-tasks", "Running tasks", ["Task", "Cluster", "Task definition", "Platform", "Encrypted", "Key"], taskRowsC, "No running tasks."),
      ),
    );
  }

  function stat(label, valueEl) {
    return h("div", { class: "stat" }, h("span", { class: "stat-label", text: label }), valueEl);
  }

  // ------------------------------------------------------------------ run --

  async function viewRun(ctx, content) {
    const clusterArns = await ecsList("ListClusters", {}, "clusterArns");
    const tds = await ecsList("ListTaskDefinitions", { status: "ACTIVE", sort: "DESC" }, "taskDefinitionArns");
    const subnets = (await call("ec2", "DescribeSubnets", {})).Subnets || [];
    const groups = (await call("ec2", "DescribeSecurityGroups", {})).SecurityGroups || [];

    const select = (id, label, options, help) =>
      h(
        "div",
        { class: "form-row" },
        h("label", { for: id, text: label }),
        h("select", { id, name: id, required: true, "aria-describedby": help ? `${id}-help` : null }, options),
        help ? h("p", { class: "help muted small", id: `${id}-help`, text: help }) : null,
      );
    const clusterNames = clusterArns.map(lastPart).sort();
    const wanted = (location.hash.split("?")[1] || "");
    const pre = new URLSearchParams(wanted).get("cluster");
    const sortedSubnets = subnets.slice().sort((a, b) =>
      (b.DefaultForAz === true) - (a.DefaultForAz === true) || String(a.AvailabilityZone).localeCompare(String(b.AvailabilityZone)));
    const sortedGroups = groups.slice().sort((a, b) => (b.GroupName === "default") - (a.GroupName === "default"));
    const form = h(
      "form",
      { id: "run-task", class: "run-form" },
      select("run-cluster", "Cluster", clusterNames.map((n) => h("option", { value: n, selected: n === pre, text: n }))),
      select("run-task-definition", "Task definition", tds.map((a) => h("option", { value: a, text: taskDefName(a) }))),
      select(
        "run-platform-version",
        "Platform version",
        [
          h("option", { value: "LATEST", text: "LATEST (1.4.0: encrypted storage)" }),
          h("option", { value: "1.4.0", text: "1.4.0 (encrypted storage)" }),
          h("option", { value: "1.3.0", text: "1.3.0 (unencrypted storage)" }),
        ],
      ),
      h(
        "div",
        { class: "form-row" },
        h("label", { for: "run-count", text: "Number of tasks (1–10)" }),
        h("input", { id: "run-count", name: "run-count", type: "number", min: "1", max: "10", step: "1", value: "1", required: true, inputmode: "numeric" }),
      ),
      select(
        "run-subnet",
        "Subnet",
        sortedSubnets.map((s) =>
          h("option", { value: s.SubnetId, text: `${s.SubnetId} (${s.CidrBlock}, ${s.AvailabilityZone}${s.DefaultForAz ? ", default" : ""})` })),
      ),
      select(
        "run-security-group",
        "Security group",
        sortedGroups.map((g) => h("option", { value: g.GroupId, text: `${g.GroupId} (${g.GroupName}, ${g.VpcId})` })),
      ),
      h("p", { id: "run-error", class: "alert", role: "alert", hidden: true }),
      h("div", { class: "form-row form-submit" }, h("button", { type: "submit", id: "run-submit", class: "btn btn-primary", text: "Run task" })),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const btn = $("#run-submit");
      const err = $("#run-error");
      err.hidden = true;
      act(btn, async () => {
        const cluster = $("#run-cluster").value;
        const taskDefinition = $("#run-task-definition").value;
        const platformVersion = $("#run-platform-version").value;
        const count = Number($("#run-count").value);
        const subnet = $("#run-subnet").value;
        const group = $("#run-security-group").value;
        const problems = [];
        if (!cluster) problems.push("choose a cluster");
        if (!taskDefinition) problems.push("choose a task definition");
        if (!Number.isInteger(count) || count < 1 || count > 10) problems.push("the number of tasks must be 1 to 10");
        if (!subnet) problems.push("choose a subnet");
        if (!group) problems.push("choose a security group");
        if (problems.length) {
          err.textContent = `Cannot run: ${problems.join("; ")}.`;
          err.hidden = false;
          return;
        }
        const ok = await confirmAction(
          "Run task",
          [
            h("p", { text: `Run ${count} task${count === 1 ? "" : "s"} of ${taskDefName(taskDefinition)} on platform version ${platformVersion} in cluster ${cluster}?` }),
            h("p", { class: "mono break small", text: `Subnet ${subnet}, security group ${group}.` }),
          ],
          count === 1 ? "Run task" : "Run tasks",
        );
        if (!ok) return;
        const r = await call("ecs", "RunTask", {
          cluster,
          taskDefinition,
          count,
          launchType: "FARGATE",
          platformVersion,
          networkConfiguration: { awsvpcConfiguration: { subnets: [subnet], securityGroups: [group], assignPublicIp: "DISABLED" } },
          startedBy: "ferry-console",
        });
        const started = r.tasks || [];
        if (!started.length) {
          const f = (r.failures || []).map((x) => `${x.arn || ""} ${x.reason || ""} ${x.detail || ""}`.trim());
          throw new ApiError(400, "RunTaskFailure", f.join("; ") || "no task was started");
        }
        location.hash = `#/clusters/${encodeURIComponent(cluster)}/tasks/${encodeURIComponent(lastPart(started[0].taskArn))}`;
      });
    });
    show(
      ctx,
      content,
      heading("Run a task"),
      h("p", { class: "muted", text: "Starts Fargate tasks with awsvpc networking. Platform 1.4.0 volumes are LUKS2, their data key wrapped by the cluster's storage key." }),
      clusterNames.length ? null : h("p", { class: "alert-inline", text: "There is no cluster yet: create one with the ECS API first." }),
      tds.length ? null : h("p", { class: "alert-inline", text: "There is no active task definition yet: register one with the ECS API first." }),
      form,
    );
  }

  // -------------------------------------------------------------- session --

  function showSignin(message) {
    if (current) current.stop();
    current = null;
    session = null;
    $("#nav").hidden = true;
    $("#identity").hidden = true;
    $("#principal").textContent = "";
    const view = viewEl();
    view.hidden = true;
    view.dataset.view = "";
    view.dataset.ready = "false";
    contentEl().replaceChildren();
    clearError();
    const dlg = $("#confirm");
    if (dlg.open) dlg.close("cancel");
    $("#signin-main").hidden = false;
    const err = $("#signin-error");
    if (message) {
      err.textContent = message;
      err.hidden = false;
    } else {
      err.textContent = "";
      err.hidden = true;
    }
    $("#secret-access-key").value = "";
    document.title = "Sign in · ferry console";
    $("#access-key-id").focus();
  }

  function enter(s, focusHeading) {
    session = s;
    $("#signin-main").hidden = true;
    $("#nav").hidden = false;
    $("#identity").hidden = false;
    $("#principal").textContent = s.principal || "";
    $("#principal").title = `account ${s.accountId || ""}, region ${s.region || ""}`;
    viewEl().hidden = false;
    document.title = "ferry console";
    render(focusHeading);
  }

  async function signin(ev) {
    ev.preventDefault();
    const btn = $("#signin-submit");
    const err = $("#signin-error");
    const accessKeyId = $("#access-key-id").value.trim();
    const secretAccessKey = $("#secret-access-key").value;
    err.hidden = true;
    err.textContent = "";
    if (!accessKeyId || !secretAccessKey) {
      err.textContent = "Enter both the access key ID and the secret access key.";
      err.hidden = false;
      return;
    }
    btn.disabled = true;
    try {
      const s = await api("POST", "/console/api/signin", { accessKeyId, secretAccessKey });
      $("#secret-access-key").value = "";
      enter(s, true);
    } catch (e) {
      err.textContent =
        e instanceof ApiError && e.type === "UnrecognizedClientException"
          ? "Sign-in refused: the access key ID or secret access key is not valid."
          : `Sign-in failed: ${e}`;
      err.hidden = false;
      $("#secret-access-key").focus();
    } finally {
      btn.disabled = false;
    }
  }

  async function signout() {
    const btn = $("#signout");
    btn.disabled = true;
    try {
      await api("POST", "/console/api/signout");
    } catch (e) {
      // Signed out on this page either way; a refusal here is only shown.
      if (!(e instanceof SignedOut)) {
        showSignin(`Sign-out: ${e}`);
        return;
      }
    } finally {
      btn.disabled = false;
    }
    showSignin("");
  }

  async function start() {
    $("#signin-form").addEventListener("submit", signin);
    $("#signout").addEventListener("click", signout);
    $("#skip-link").addEventListener("click", (ev) => {
      ev.preventDefault();
      const target = session ? $("h1", contentEl()) || viewEl() : $("#signin-title");
      target.focus();
    });
    window.addEventListener("hashchange", () => {
      if (session) render(true);
    });
    try {
      const s = await fetch("/console/api/session", { credentials: "same-origin", cache: "no-store" });
      if (s.ok) {
        enter(await s.json(), false);
        return;
      }
    } catch (_) {
      // Unreachable server: the sign-in form says so when used.
    }
    showSignin("");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
