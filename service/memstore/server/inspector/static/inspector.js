// memstore inspector: reads the namespace API with the token the user pastes.
// Everything shown comes from the API's answers for that token; text from the API is
// always set as text (never parsed as HTML). The token stays in sessionStorage and is
// sent only in the Authorization header, never in a URL.
"use strict";

(() => {
  const TOKEN_KEY = "memstore.inspector.token";
  const NAMESPACE_KEY = "memstore.inspector.namespace";
  const PAGE_SIZES = [10, 25, 50, 100];
  const LIVE_ROWS = 200;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    namespace: sessionStorage.getItem(NAMESPACE_KEY) || "",
    live: null, // AbortController of the open change stream
  };

  // -- small helpers --------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "onclick") node.addEventListener("click", value);
      else if (key === "onchange") node.addEventListener("change", value);
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmtNumber = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
  const fmtTime = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");
  const fmtMs = (ms) => (ms === null || ms === undefined ? "–" : `${Number(ms).toFixed(1)} ms`);
  const fmtRate = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)} %`);
  const fmtBytes = (b) => {
    if (b === null || b === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Number(b);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
  };
  const preview = (value) => {
    const text = JSON.stringify(value);
    return text.length > 120 ? `${text.slice(0, 119)}…` : text;
  };
  const num = (value) => el("td", { class: "num" }, value);

  function setStatus(text, isError) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  class ApiError extends Error {
    constructor(status, body) {
      const message = body && body.message ? body.message : `HTTP ${status}`;
      super(message);
      this.status = status;
      this.code = body && body.code;
    }
  }

  async function api(path, params, accept) {
    const url = new URL(path, window.location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: accept || "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const response = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
    if (accept === "text/event-stream" && response.ok) return response;
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  const nsPath = (suffix) => `/v1/namespaces/${encodeURIComponent(state.namespace)}${suffix || ""}`;
  const seg = encodeURIComponent;

  // The analytics routes (aggregated by the backend); null on a memstore without them
  // (404), so the views fall back to the listings.
  async function analytics(kind, params) {
    try {
      return await api(nsPath(`/analytics/${kind}`), params);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
  }

  // The window of a chart: from the oldest record of what it shows to now, in hours when
  // that fits in the API's bucket limit, else in days (the last MAX_BUCKETS days).
  const MAX_BUCKETS = 990;
  function windowSince(oldest) {
    const now = Date.now() / 1000;
    if (oldest === null || oldest === undefined) return { bucket: "hour" };
    if (now - oldest < MAX_BUCKETS * 3600) return { bucket: "hour", since: oldest };
    return { bucket: "day", since: Math.max(oldest, now - MAX_BUCKETS * 86400) };
  }
  const perBucket = (bucket) => (bucket === "day" ? "per day (UTC)" : "per hour");

  // -- tables, pagers, charts -----------------------------------------------------------

  function table(caption, columns, rows, attrs) {
    const head = el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c.label)));
    const body = rows.map((row) => el("tr", {}, columns.map((c) => {
      const cell = c.cell(row);
      return cell instanceof HTMLTableCellElement ? cell : el("td", {}, cell);
    })));
    return el("table", attrs || {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, body));
  }

  // A table paged by the server: ``load(cursor, limit)`` answers {items, next} and
  // ``next`` is what the API gave for the following page (null: the last page).
  function pagedTable(root, options) {
    const cursors = [null];
    let index = 0;
    let limit = options.limit || 25;
    const region = el("section", { "aria-label": options.caption });
    root.append(region);

    async function show() {
      let page;
      try {
        page = await options.load(cursors[index], limit);
      } catch (err) {
        region.replaceChildren(errorNote(err));
        return;
      }
      if (cursors.length === index + 1 && page.next !== null && page.next !== undefined) {
        cursors.push(page.next);
      }
      const hasNext = index + 1 < cursors.length;
      const size = el("select", { id: `${options.id}-size`, onchange: (e) => {
        limit = Number(e.target.value); cursors.length = 1; index = 0; show();
      } }, PAGE_SIZES.map((n) => el("option", { value: n, selected: n === limit }, n)));
      const pager = el("div", { class: "pager" },
        el("button", { type: "button", disabled: index === 0,
          onclick: () => { index -= 1; show(); } }, options.previousLabel || "Previous page"),
        el("span", { "data-page": index + 1 }, `Page ${index + 1}`),
        el("button", { type: "button", disabled: !hasNext,
          onclick: () => { index += 1; show(); } }, options.nextLabel || "Next page"),
        el("label", { for: `${options.id}-size` }, "Rows per page"), size);
      const rows = page.items;
      region.replaceChildren(
        rows.length ? table(options.caption, options.columns, rows, { id: options.id }) :
          el("p", { class: "note", id: options.id }, options.empty || "Nothing here."),
        pager);
      if (options.shown) options.shown(rows);
    }
    show();
    return { reload: () => { cursors.length = 1; index = 0; show(); } };
  }

  // A chart with its text alternative: the figure says how many points it drew
  // (data-points), the canvas is described by an aria label, and the same numbers are in
  // a table below it.
  function chart(root, options) {
    const { id, title, summary, xs, series, xLabel, time, bars } = options;
    const xFormat = options.xFormat || ((x) => (time ? fmtTime(x) : String(x)));
    const figure = el("figure", { class: "chart", id, "data-points": xs.length });
    const plot = el("div", { role: "img", "aria-label": `${title}: ${summary}` });
    const rows = xs.map((x, i) => ({ x, values: series.map((s) => s.values[i]) }));
    const data = table(`${title} (data)`, [
      { label: xLabel, cell: (r) => xFormat(r.x) },
      ...series.map((s, j) => ({ label: s.label, cell: (r) => num(s.format ? s.format(r.values[j]) : fmtNumber(r.values[j])) })),
    ], rows);
    figure.append(el("figcaption", {}, title), plot,
      el("details", {}, el("summary", {}, "The chart's numbers as a table"), data));
    root.append(figure);
    if (!xs.length) {
      plot.replaceWith(el("p", { class: "note" }, "No data in this window."));
      return figure;
    }
    const width = Math.max(320, Math.min(900, root.clientWidth || 800));
    const colours = ["#0b5cad", "#a4161a", "#1e6b34", "#6a3d9a"];
    const opts = {
      width,
      height: 220,
      scales: { x: { time: Boolean(time) } },
      axes: [time ? { label: xLabel } : { label: xLabel, values: (u, splits) => splits.map((x) => (Number.isInteger(x) ? xFormat(x) : "")) }, {}],
      series: [{ label: xLabel }, ...series.map((s, j) => ({
        label: s.label,
        stroke: colours[j % colours.length],
        width: 2,
        fill: bars ? `${colours[j % colours.length]}33` : undefined,
        paths: bars && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.8] }) : undefined,
        points: { show: xs.length < 60 },
      }))],
      legend: { show: series.length > 1 },
    };
    // eslint-disable-next-line no-new
    new window.uPlot(opts, [xs, ...series.map((s) => s.values)], plot);
    return figure;
  }

  function errorNote(err) {
    let text = err.message || String(err);
    if (err instanceof ApiError && err.status === 401) text = `Not signed in: ${text}. Paste a token above.`;
    if (err instanceof ApiError && err.status === 403) text = `Not allowed: ${text}.`;
    return el("p", { class: "note error", role: "alert" }, text);
  }

  function jsonBlock(label, value) {
    return el("pre", { class: "json", tabindex: 0, "aria-label": label }, JSON.stringify(value, null, 2));
  }

  // -- views ----------------------------------------------------------------------------

  const views = {};

  views.namespaces = async (main) => {
    main.append(el("h2", { tabindex: -1 }, "Namespaces"));
    const listing = el("section", { "aria-label": "Namespaces this token covers" });
    main.append(listing);
    try {
      await api("/v1/summary", { limit: 1 });
      pagedTable(listing, {
        id: "namespace-list",
        caption: "Namespaces this token covers",
        load: async (after, limit) => {
          const page = await api("/v1/summary", { limit, after });
          return { items: page.items, next: page.next_after };
        },
        columns: [
          { label: "Namespace", cell: (s) => el("td", {}, el("button", { type: "button", class: "link",
            onclick: () => openNamespace(s.namespace) }, s.namespace)) },
          { label: "Entities", cell: (s) => num(fmtNumber(s.total_entities)) },
          { label: "Conversations", cell: (s) => num(fmtNumber(s.conversations)) },
          { label: "Messages", cell: (s) => num(fmtNumber(s.messages)) },
          { label: "Tool uses", cell: (s) => num(fmtNumber(s.total_tool_uses)) },
          { label: "Feedback", cell: (s) => num(fmtNumber(s.feedback_count)) },
        ],
      });
    } catch (err) {
      listing.append(el("p", { class: "note" },
        "Listing namespaces needs a token with the admin role; this one shows the namespace it opened."));
    }
    if (!state.namespace) return;
    const here = el("section", { "aria-label": `Namespace ${state.namespace}` });
    main.append(here);
    let summary;
    try {
      summary = await api(nsPath("/summary"));
    } catch (err) {
      here.append(errorNote(err));
      return;
    }
    const overview = await analytics("overview");
    here.append(el("h3", {}, `Namespace ${summary.namespace}`));
    const figures = [
      ["Entities", fmtNumber(summary.total_entities)],
      ["Conversations", fmtNumber(summary.conversations)],
      ["Messages", fmtNumber(summary.messages)],
      ["Tool uses", fmtNumber(summary.total_tool_uses)],
      ["Feedback records", fmtNumber(summary.feedback_count)],
    ];
    if (overview) {
      figures.push(["Entity bytes", fmtBytes(overview.entities.bytes)]);
      figures.push(["Message bytes", fmtBytes(overview.messages.bytes)]);
      figures.push(["Tool-use bytes", fmtBytes(overview.tool_usage.bytes)]);
      figures.push(["Feedback bytes", fmtBytes(overview.feedback.bytes)]);
    }
    here.append(el("dl", { class: "figures", id: "namespace-figures" },
      figures.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
    const types = Object.entries(summary.entity_counts).sort();
    here.append(table("Entities by type", [
      { label: "Type", cell: ([t]) => t },
      { label: "Entities", cell: ([, n]) => num(fmtNumber(n)) },
      ...(overview ? [{ label: "Bytes", cell: ([t]) => num(fmtBytes((overview.entity_types[t] || {}).bytes)) }] : []),
    ], types, { id: "entity-type-counts" }));
    if (!overview) {
      here.append(el("p", { class: "note" }, "Bytes and growth over time come from the analytics API, which this memstore does not serve."));
      return;
    }
    const oldest = Math.min(...["entities", "messages", "tool_usage", "feedback"]
      .map((k) => overview[k].oldest).filter((t) => t !== null));
    const window = windowSince(Number.isFinite(oldest) ? oldest : null);
    const kinds = [["entities", "Entities"], ["messages", "Messages"], ["tool_usage", "Tool uses"], ["feedback", "Feedback"]];
    const series = await Promise.all(kinds.map(([kind]) => analytics("growth", { kind, ...window })));
    chart(here, {
      id: "growth-chart", title: `Items created ${perBucket(window.bucket)}`, time: true,
      xLabel: window.bucket === "day" ? "Day" : "Hour",
      summary: series.map((s, i) => `${kinds[i][1]}: ${fmtNumber(s.total)} created in the window`).join("; "),
      xs: series[0].points.map((p) => p.start),
      series: series.map((s, i) => ({ label: kinds[i][1], values: s.points.map((p) => p.count) })),
    });
  };

  views.entities = async (main) => {
    main.append(el("h2", { tabindex: -1 }, `Entities in ${state.namespace}`));
    const { types } = await api(nsPath("/entities"));
    if (!types.length) {
      main.append(el("p", { class: "note", id: "entity-types" }, "This namespace has no entities."));
      return;
    }
    const chosen = new URLSearchParams(window.location.hash.split("?")[1] || "").get("type");
    let current = types.includes(chosen) ? chosen : types[0];
    const picker = el("div", { class: "choices", role: "group", "aria-label": "Entity type", id: "entity-types" });
    const listing = el("section");
    const detail = el("section", { "aria-live": "polite", id: "entity-detail" });
    const pick = (type) => {
      current = type;
      for (const b of picker.children) b.setAttribute("aria-pressed", String(b.dataset.type === type));
      listing.replaceChildren();
      detail.replaceChildren();
      pagedTable(listing, {
        id: "entity-page",
        caption: `Entities of type ${type}, by id`,
        load: async (cursor, limit) => {
          const page = await api(nsPath(`/entities/${seg(type)}`), { limit, cursor });
          return { items: page.items, next: page.next_cursor };
        },
        columns: [
          { label: "Id", cell: (e) => el("td", {}, el("button", { type: "button", class: "link",
            onclick: () => showEntity(type, e.id) }, e.id)) },
          { label: "Version", cell: (e) => num(e.version) },
          { label: "Updated (UTC)", cell: (e) => fmtTime(e.updated_at) },
          { label: "Data", cell: (e) => el("td", { class: "preview" }, preview(e.data)) },
        ],
      });
    };
    async function showEntity(type, id) {
      try {
        const entity = await api(nsPath(`/entities/${seg(type)}/${seg(id)}`));
        const heading = el("h3", { tabindex: -1 }, `${type}/${id}, version ${entity.version}`);
        detail.replaceChildren(heading,
          el("dl", { class: "figures" },
            el("dt", {}, "Created (UTC)"), el("dd", {}, fmtTime(entity.created_at)),
            el("dt", {}, "Updated (UTC)"), el("dd", {}, fmtTime(entity.updated_at)),
            el("dt", {}, "Expires (UTC)"), el("dd", {}, entity.expires_at ? fmtTime(entity.expires_at) : "never")),
          jsonBlock(`JSON of ${type}/${id}`, entity.data));
        heading.focus();
      } catch (err) {
        detail.replaceChildren(errorNote(err));
      }
    }
    for (const type of types) {
      picker.append(el("button", { type: "button", "data-type": type, "aria-pressed": "false",
        onclick: () => pick(type) }, type));
    }
    main.append(el("h3", {}, "Types"), picker, listing, detail);
    pick(current);
  };

  views.conversations = async (main) => {
    main.append(el("h2", { tabindex: -1 }, `Conversations in ${state.namespace}`));
    const listing = el("section");
    const messages = el("section", { id: "messages" });
    main.append(listing, messages);
    pagedTable(listing, {
      id: "conversation-page",
      caption: "Conversations, by id",
      empty: "This namespace has no conversations.",
      load: async (cursor, limit) => {
        const page = await api(nsPath("/conversations"), { limit, cursor });
        return { items: page.items, next: page.next_cursor };
      },
      columns: [
        { label: "Conversation", cell: (c) => el("td", {}, el("button", { type: "button", class: "link",
          onclick: () => showConversation(c.conversation_id) }, c.conversation_id)) },
        { label: "Messages", cell: (c) => num(fmtNumber(c.message_count)) },
        { label: "Updated (UTC)", cell: (c) => fmtTime(c.updated_at) },
      ],
    });
    function showConversation(cid) {
      const heading = el("h3", { tabindex: -1 }, `Conversation ${cid}`);
      messages.replaceChildren(heading);
      heading.focus();
      // Newest first page; "older" follows next_before (messages before that seq).
      pagedTable(messages, {
        id: "message-page",
        caption: `Messages of ${cid}, oldest first within the page`,
        previousLabel: "Newer messages",
        nextLabel: "Older messages",
        load: async (before, limit) => {
          const page = await api(nsPath(`/conversations/${seg(cid)}/messages`), { limit, before });
          return { items: page.items, next: page.next_before };
        },
        columns: [
          { label: "Seq", cell: (m) => num(m.seq) },
          { label: "Role", cell: (m) => (m.message && typeof m.message.role === "string" ? m.message.role : "–") },
          { label: "Content", cell: (m) => el("td", { class: "preview" },
            m.message && typeof m.message.content === "string" ? m.message.content : preview(m.message)) },
          { label: "Written (UTC)", cell: (m) => fmtTime(m.created_at) },
        ],
      });
    }
  };

  views.tools = async (main) => {
    main.append(el("h2", { tabindex: -1 }, `Tool usage in ${state.namespace}`));
    const overview = await analytics("overview");
    if (overview) {
      const window = windowSince(overview.tool_usage.oldest);
      const stats = await analytics("tools", { ...window, limit: 5 });
      const tools = stats.tools;
      main.append(table(`Per tool, ${fmtTime(stats.start)} to ${fmtTime(stats.end)} (UTC)`, [
        { label: "Tool", cell: (t) => t.tool_name },
        { label: "Calls", cell: (t) => num(fmtNumber(t.calls)) },
        { label: "Failures", cell: (t) => num(fmtNumber(t.failures)) },
        { label: "Success rate", cell: (t) => num(fmtRate(t.success_rate)) },
        { label: "p50", cell: (t) => num(fmtMs(t.duration_ms.p50)) },
        { label: "p90", cell: (t) => num(fmtMs(t.duration_ms.p90)) },
        { label: "p99", cell: (t) => num(fmtMs(t.duration_ms.p99)) },
      ], tools, { id: "tool-stats" }));
      if (tools.length) {
        const shown = tools.slice(0, 4);
        const xs = tools[0].series.map((p) => p.start);
        const xLabel = window.bucket === "day" ? "Day" : "Hour";
        chart(main, {
          id: "tool-calls-chart", title: `Calls ${perBucket(window.bucket)}`, time: true, xLabel,
          summary: shown.map((t) => `${t.tool_name}: ${fmtNumber(t.calls)} calls`).join("; "),
          xs, series: shown.map((t) => ({ label: t.tool_name, values: t.series.map((p) => p.calls) })),
        });
        chart(main, {
          id: "tool-success-chart", title: `Success rate ${perBucket(window.bucket)}`, time: true, xLabel,
          summary: shown.map((t) => `${t.tool_name}: ${fmtRate(t.success_rate)} overall`).join("; "),
          xs, series: shown.map((t) => ({ label: t.tool_name, format: fmtRate,
            values: t.series.map((p) => (p.success_rate === null ? null : p.success_rate)) })),
        });
        for (const t of shown) {
          const bound = (i) => (t.histogram[i - 1].le === null ? "more" : `≤ ${fmtNumber(t.histogram[i - 1].le)} ms`);
          chart(main, {
            id: `tool-histogram-${t.tool_name}`, title: `Durations of ${t.tool_name}`, xLabel: "Duration",
            bars: true, xFormat: (i) => (i >= 1 && i <= t.histogram.length ? bound(i) : ""),
            summary: `p50 ${fmtMs(t.duration_ms.p50)}, p90 ${fmtMs(t.duration_ms.p90)}, p99 ${fmtMs(t.duration_ms.p99)}`,
            xs: t.histogram.map((_, i) => i + 1),
            series: [{ label: "Calls", values: t.histogram.map((b) => b.count) }],
          });
          const lists = [["Slowest calls", t.slowest, "slowest"], ["Most recent failures", t.recent_failures, "failures"]];
          for (const [caption, rows, key] of lists) {
            if (!rows.length) continue;
            main.append(table(`${caption} of ${t.tool_name}`, [
              { label: "When (UTC)", cell: (r) => fmtTime(r.timestamp) },
              { label: "Duration", cell: (r) => num(fmtMs(r.duration_ms)) },
              { label: "Result", cell: (r) => el("td", { class: r.success ? "good" : "bad" }, r.success ? "ok" : "failed") },
              { label: "Input", cell: (r) => el("td", { class: "preview" }, preview(r.input)) },
            ], rows, { id: `tool-${key}-${t.tool_name}` }));
          }
        }
      }
    } else {
      main.append(el("p", { class: "note" }, "Per-tool rates and percentiles come from the analytics API, which this memstore does not serve; the calls are listed below."));
    }
    const { tools } = await api(nsPath("/tools"));
    const select = el("select", { id: "tool-filter" },
      el("option", { value: "" }, "every tool"), tools.map((t) => el("option", { value: t }, t)));
    const listing = el("section");
    const durations = el("section");
    main.append(el("h3", {}, "Calls"), el("div", { class: "pager" },
      el("label", { for: "tool-filter" }, "Tool"), select), durations, listing);
    const show = () => {
      listing.replaceChildren();
      pagedTable(listing, {
        id: "tool-page",
        caption: "Tool calls, oldest first",
        empty: "No tool calls recorded.",
        load: async (cursor, limit) => {
          const page = await api(nsPath("/tool-usage"), { tool_name: select.value, limit, cursor });
          return { items: page.items, next: page.next_cursor };
        },
        columns: [
          { label: "When (UTC)", cell: (r) => fmtTime(r.timestamp) },
          { label: "Tool", cell: (r) => r.tool_name },
          { label: "Duration", cell: (r) => num(fmtMs(r.duration_ms)) },
          { label: "Result", cell: (r) => el("td", { class: r.success ? "good" : "bad" }, r.success ? "ok" : "failed") },
          { label: "Conversation", cell: (r) => r.conversation_id || "–" },
          { label: "Input", cell: (r) => el("td", { class: "preview" }, preview(r.input)) },
        ],
        shown: (rows) => {
          durations.replaceChildren();
          chart(durations, {
            id: "tool-page-chart", title: "Durations of the calls on this page", time: true, xLabel: "Time",
            summary: `${rows.length} calls, ${rows.filter((r) => !r.success).length} failed`,
            xs: rows.map((r) => r.timestamp),
            series: [{ label: "Duration (ms)", values: rows.map((r) => r.duration_ms), format: fmtMs }],
          });
        },
      });
    };
    select.addEventListener("change", show);
    show();
  };

  views.feedback = async (main) => {
    main.append(el("h2", { tabindex: -1 }, `Learning feedback in ${state.namespace}`));
    const overview = await analytics("overview");
    if (overview) {
      const window = windowSince(overview.feedback.oldest);
      const series = await analytics("feedback", window);
      chart(main, {
        id: "feedback-chart", title: `Feedback ${perBucket(window.bucket)}`, time: true,
        xLabel: window.bucket === "day" ? "Day" : "Hour",
        summary: `${fmtNumber(series.count)} records, mean rating ${series.rating_mean === null ? "–" : series.rating_mean.toFixed(2)} over ${fmtNumber(series.rating_count)} ratings`,
        xs: series.points.map((p) => p.start),
        series: [
          { label: "Records", values: series.points.map((p) => p.count) },
          { label: "Mean rating", values: series.points.map((p) => p.rating_mean),
            format: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(2)) },
        ],
      });
    }
    const listing = el("section");
    main.append(listing);
    pagedTable(listing, {
      id: "feedback-page",
      caption: "Feedback records, oldest first",
      empty: "No feedback recorded.",
      load: async (cursor, limit) => {
        const page = await api(nsPath("/feedback"), { limit, cursor });
        return { items: page.items, next: page.next_cursor };
      },
      columns: [
        { label: "When (UTC)", cell: (r) => fmtTime(r.timestamp) },
        { label: "Agent", cell: (r) => r.agent_name },
        { label: "Type", cell: (r) => r.feedback_type },
        { label: "Data", cell: (r) => el("td", { class: "preview" }, preview(r.data)) },
      ],
    });
  };

  views.live = async (main) => {
    main.append(el("h2", { tabindex: -1 }, `Live changes in ${state.namespace}`));
    const first = await api(nsPath("/changes"), { limit: 1 });
    const counter = el("p", { id: "live-count", "aria-live": "polite" }, "0 changes shown.");
    const rows = el("tbody");
    const button = el("button", { type: "button", class: "primary", id: "live-toggle" }, "Pause");
    main.append(
      el("p", { class: "note" }, "The namespace's change feed, newest first: the last 20 retained changes, then each new one as it happens."),
      el("div", { class: "pager" }, button), counter,
      el("table", { id: "live-table" }, el("caption", {}, "Changes, newest first"),
        el("thead", {}, el("tr", {}, ["Position", "When (UTC)", "Kind", "What", "By"].map((h) => el("th", { scope: "col" }, h)))),
        rows));
    let shown = 0;
    let after = Math.max(first.first_position - 1, first.last_position - 20, 0);
    const add = (event) => {
      const what = event.entity_type ? `${event.entity_type}/${event.entity_id}` :
        event.conversation_id ? `conversation ${event.conversation_id}` :
        event.tool_name ? `tool ${event.tool_name}` : event.record_id || "";
      rows.prepend(el("tr", {}, num(event.position), el("td", {}, fmtTime(event.timestamp)),
        el("td", {}, event.kind), el("td", {}, what), el("td", {}, event.actor || "–")));
      while (rows.children.length > LIVE_ROWS) rows.lastChild.remove();
      shown += 1;
      after = event.position;
      counter.textContent = `${shown} changes shown.`;
    };
    async function stream() {
      const controller = new AbortController();
      state.live = controller;
      button.textContent = "Pause";
      try {
        const url = new URL(nsPath("/changes"), window.location.origin);
        url.searchParams.set("after", after);
        const headers = { Accept: "text/event-stream" };
        if (state.token) headers.Authorization = `Bearer ${state.token}`;
        const response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
        if (!response.ok) {
          let body = null;
          try { body = await response.json(); } catch (_) { body = null; }
          throw new ApiError(response.status, body);
        }
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
            const kind = (block.split("\n").find((l) => l.startsWith("event:")) || "").slice(6).trim();
            if (!data) continue; // a keep-alive comment
            if (kind === "error" || kind === "pruned") {
              setStatus(`The change stream ended: ${kind}.`, true);
              continue;
            }
            add(JSON.parse(data));
          }
        }
      } catch (err) {
        if (err.name !== "AbortError") main.append(errorNote(err));
      }
    }
    button.addEventListener("click", () => {
      if (state.live) { state.live.abort(); state.live = null; button.textContent = "Resume"; } else stream();
    });
    stream();
  };

  // -- navigation -----------------------------------------------------------------------

  function currentView() {
    const name = window.location.hash.replace(/^#/, "").split("?")[0];
    return views[name] ? name : "namespaces";
  }

  // Each render owns a fresh container; one that a newer render replaced (the user moved
  // on while it waited for the API) finishes into its detached container unseen.
  let generation = 0;

  async function render() {
    generation += 1;
    const mine = generation;
    if (state.live) { state.live.abort(); state.live = null; }
    const name = currentView();
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const main = document.getElementById("main");
    const container = el("div");
    main.replaceChildren(container);
    main.dataset.view = name;
    main.setAttribute("aria-busy", "true");
    if (name !== "namespaces" && !state.namespace) {
      container.append(el("p", { class: "note" }, "Choose a namespace above first."));
    } else {
      try {
        await views[name](container);
      } catch (err) {
        container.append(errorNote(err));
      }
    }
    if (mine !== generation) return;
    main.removeAttribute("aria-busy");
    const heading = container.querySelector("h2");
    if (heading && document.activeElement && document.activeElement.closest("nav")) heading.focus();
  }

  function openNamespace(name) {
    state.namespace = name;
    sessionStorage.setItem(NAMESPACE_KEY, name);
    document.getElementById("namespace").value = name;
    setStatus(`Namespace ${name}.`);
    render();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("access");
    document.getElementById("token").value = state.token;
    document.getElementById("namespace").value = state.namespace;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = document.getElementById("token").value.trim();
      if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
      else sessionStorage.removeItem(TOKEN_KEY);
      openNamespace(document.getElementById("namespace").value.trim());
    });
    document.getElementById("forget").addEventListener("click", () => {
      state.token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById("token").value = "";
      setStatus("Token forgotten.");
      render();
    });
    window.addEventListener("hashchange", render);
    render();
  });
})();
