// logcount's dashboard: renders the JSON API's answers (live) or the numbers a static
// report carries. Every value from a log reaches the page through textContent or an SVG
// attribute, never as markup. No library, no build step: fetch and the DOM.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const setup = JSON.parse(document.getElementById("lc-setup").textContent);
  const $ = (id) => document.getElementById(id);
  let token = null; // kept in this page only: never in a URL, never stored
  let refreshing = false;
  let again = false;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
  const percent = (part, whole) => (whole ? ((100 * part) / whole).toFixed(1) + "%" : "0.0%");

  function bytes(n) {
    let value = Number(n || 0);
    for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
      if (value < 1024 || unit === "TiB") return unit === "B" ? value + " B" : value.toFixed(1) + " " + unit;
      value /= 1024;
    }
    return value + " B";
  }

  function setStatus(text, down) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("down", Boolean(down));
  }

  // --- rendering (live and static alike) ---------------------------------------------

  function cards(report) {
    const t = report.total;
    const rows = [
      ["hits", "hits", number(t.hits)],
      ["visitors", "visitors", number(t.visitors)],
      ["bots", "bots", number(t.bots)],
      ["malformed", "malformed", number(t.malformed)],
      ["bytes", "bytes", bytes(t.bytes)],
      ["4xx", "4xx share", percent(t.s4xx || 0, t.hits)],
      ["5xx", "5xx share", percent(t.s5xx || 0, t.hits)],
    ];
    if (t.time_p95_ms !== undefined) rows.push(["p95", "p95 time", t.time_p95_ms + " ms"]);
    if (report.rate !== undefined) rows.push(["rate", "rate", number(report.rate) + "/min"]);
    $("cards").replaceChildren(
      ...rows.map(([id, label, value]) =>
        el("div", { class: "card", id: "card-" + id }, el("div", { class: "label" }, label),
          el("div", { class: "value" }, value)))
    );
  }

  function line(points, index, cls, top, w, h) {
    const step = points.length > 1 ? w / (points.length - 1) : 0;
    const coords = points.map((p, i) => {
      const y = h - (top ? ((p[index] || 0) / top) * h : 0);
      return (i * step).toFixed(1) + "," + y.toFixed(1);
    });
    return svg("polyline", { class: cls, points: coords.join(" ") });
  }

  function chart(series) {
    const box = $("chart");
    if (!series || !series.points || !series.points.length) {
      box.replaceChildren(el("p", { class: "empty" }, "no series"));
      return;
    }
    const points = series.points;
    const w = 1000, h = 170;
    const top = Math.max(1, ...points.map((p) => p[1] || 0));
    const drawing = svg("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none",
      role: "img", "aria-label": "hits over the window" });
    const plot = svg("g", {});
    plot.append(line(points, 1, "hits", top, w, h));
    if (points.some((p) => p[2] !== null)) plot.append(line(points, 2, "visitors", top, w, h));
    drawing.append(plot);
    const total = points.reduce((n, p) => n + (p[1] || 0), 0);
    drawing.setAttribute("data-total", String(total));
    // Labels as text beside the drawing: its coordinates are stretched to the width.
    box.replaceChildren(
      el("p", { class: "axis" }, "max " + number(top) + " hits per " + series.granularity),
      drawing,
      el("p", { class: "axis ends" }, el("span", {}, points[0][0]), el("span", {}, points[points.length - 1][0])),
      el("p", { class: "legend" }, el("span", { class: "h" }, "— hits"), el("span", { class: "v" }, "- - visitors")));
  }

  function trend(values) {
    const drawing = svg("svg", { viewBox: "0 0 80 18", preserveAspectRatio: "none" });
    if (values && values.length) {
      const top = Math.max(1, ...values);
      const step = values.length > 1 ? 80 / (values.length - 1) : 0;
      const coords = values.map((v, i) => (i * step).toFixed(1) + "," + (17 - (v / top) * 16).toFixed(1));
      drawing.append(svg("polyline", { points: coords.join(" ") }));
    }
    return drawing;
  }

  function panel(id, title, report) {
    const total = report.total.hits || 0;
    const head = el("tr", {}, ...["", "hits", "share", "visitors", "bytes", "trend"].map((h) => el("th", {}, h)));
    const body = el("tbody", {});
    for (const row of report.rows) {
      body.append(el("tr", {},
        el("td", { class: "key", title: row.key }, row.key),
        el("td", { class: "hits" }, number(row.hits)),
        el("td", { class: "share" }, percent(row.hits, total)),
        el("td", { class: "visitors" }, number(row.visitors)),
        el("td", { class: "bytes" }, bytes(row.bytes)),
        el("td", { class: "trend" }, trend(row.trend))));
    }
    const table = report.rows.length ? el("table", {}, el("thead", {}, head), body)
      : el("p", { class: "empty" }, "nothing counted");
    return el("section", { class: "panel", id: "panel-" + id }, el("h2", {}, title), table);
  }

  function recentPanel(items) {
    const head = el("tr", {}, ...["time", "path", "status", "bytes", "agent"].map((h) => el("th", {}, h)));
    const body = el("tbody", {});
    for (const r of items) {
      body.append(el("tr", {}, el("td", { class: "key" }, r.time || ""), el("td", { class: "key" }, r.path || ""),
        el("td", {}, r.status ?? ""), el("td", {}, number(r.bytes)), el("td", { class: "key" }, r.agent || "")));
    }
    const table = items.length ? el("table", {}, el("thead", {}, head), body)
      : el("p", { class: "empty" }, "no recent requests");
    return el("section", { class: "panel", id: "panel-recent" }, el("h2", {}, "recent requests"), table);
  }

  // --- funnel and retention (the questions of events) --------------------------------

  // What the page's query string asks (?funnel=a,b,c&within=1h&event=e&cohort=day&periods=3);
  // the funnel's steps default to every configured event in config order.
  const asked = new URLSearchParams(window.location.search);
  const journey = {
    events: asked.get("funnel") || (setup.events || []).join(","),
    within: asked.get("within") || "",
    event: asked.get("event") || "",
    cohort: asked.get("cohort") || "week",
    periods: asked.get("periods") || "8",
  };

  function funnelPanel(report) {
    const title = "funnel" + (journey.within ? " (each step within " + journey.within + ")" : "");
    if (report.error) return journeyBox("funnel", title, el("p", { class: "error" }, report.error));
    const steps = report.steps;
    const first = steps.length ? steps[0].visitors : 0;
    const head = el("tr", {}, ...["step", "event", "", "visitors", "share", "drop"]
      .map((h) => el("th", h === "event" ? { class: "key" } : {}, h)));
    const body = el("tbody", {});
    steps.forEach((s, i) => {
      const share = first ? s.visitors / first : 0;
      const bar = svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none" });
      bar.append(svg("rect", { x: 0, y: 0, height: 10, width: (100 * share).toFixed(2) }));
      body.append(el("tr", {},
        el("td", {}, String(i + 1)),
        el("td", { class: "key" }, s.event),
        el("td", { class: "bar" }, bar),
        el("td", {}, number(s.visitors)),
        el("td", {}, percent(s.visitors, first)),
        el("td", {}, i ? number(steps[i - 1].visitors - s.visitors) : "")));
    });
    return journeyBox("funnel", title, el("table", {}, el("thead", {}, head), body));
  }

  // A cell's shade: none back, then five steps up to all back (dashboard.css .shade-N).
  const shade = (part, whole) => (part && whole ? 1 + Math.min(4, Math.floor((5 * part) / whole)) : 0);

  function retentionPanel(report) {
    const picker = el("select", { id: "cohort", "aria-label": "cohort" },
      ...["day", "week", "month"].map((c) => el("option", { value: c }, "by " + c)));
    picker.value = journey.cohort;
    picker.addEventListener("change", () => { journey.cohort = picker.value; refresh(); });
    const title = el("span", {}, "retention of " + (journey.event || "any event") + " ", picker);
    if (report.error) return journeyBox("retention", title, el("p", { class: "error" }, report.error));
    const cohorts = report.cohorts;
    const most = Math.max(0, ...cohorts.map((c) => c.back.length));
    const later = Array.from({ length: most }, (_, i) => "+" + (i + 1));
    const head = el("tr", {}, ...["cohort", "size", ...later].map((h) => el("th", {}, h)));
    const body = el("tbody", {});
    for (const c of cohorts) {
      // An empty cohort (nobody new that period) has no share to show
      const cells = c.back.map((n) => el("td", { class: "back shade-" + shade(n, c.size) },
        el("span", { class: "n" }, number(n)), ...(c.size ? [" ", el("span", { class: "pct" }, percent(n, c.size))] : [])));
      body.append(el("tr", {}, el("td", { class: "key" }, c.start), el("td", {}, number(c.size)), ...cells));
    }
    return journeyBox("retention", title, el("table", {}, el("thead", {}, head), body));
  }

  function journeyBox(id, title, content) {
    return el("section", { class: "panel", id: "panel-" + id }, el("h2", {}, title), content);
  }

  function journeys(data) {
    const box = $("journeys");
    box.hidden = false;
    if (!setup.events || !setup.events.length) {
      const text = "no events configured: a funnel and retention need [[event]] rows in the config";
      box.replaceChildren(journeyBox("funnel", "funnel and retention", el("p", { class: "empty" }, text)));
      return;
    }
    box.replaceChildren(funnelPanel(data.funnel), retentionPanel(data.retention));
  }

  // The panels' answers; an error of their own (an unknown event in the query string) is
  // shown in the panel, the rest of the page still drawn.
  function loadJourneys(site, window) {
    if (!setup.events || !setup.events.length) return [null, null];
    const own = (error) => {
      if (error instanceof Refused || error instanceof Unavailable || error instanceof TypeError) throw error;
      return { error: error.message };
    };
    const funnel = { site, window, events: journey.events };
    if (journey.within) funnel.within = journey.within;
    const retention = { site, cohort: journey.cohort, periods: journey.periods };
    if (journey.event) retention.event = journey.event;
    return [api("/api/funnel", funnel).catch(own), api("/api/retention", retention).catch(own)];
  }

  function render(data) {
    const summary = data.reports[0];
    const w = summary.window;
    $("window-note").textContent = `${summary.site} · ${w.start} .. ${w.end} (${w.source})`;
    cards(summary);
    chart(data.series);
    if (setup.mode !== "static") journeys(data);
    const panels = data.reports.map((r) => {
      const id = r.status_filter ? "status-" + r.status_filter : r.by;
      const title = r.status_filter ? `paths with status ${r.status_filter}` : r.by;
      return panel(id, title, r);
    });
    if (data.recent) panels.push(recentPanel(data.recent));
    $("panels").replaceChildren(...panels);
  }

  // --- live: the API ------------------------------------------------------------------

  class Refused extends Error {}
  class Unavailable extends Error {}

  async function api(path, params) {
    const query = new URLSearchParams(params).toString();
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(path + (query ? "?" + query : ""), { headers });
    if (response.status === 401) throw new Refused("token");
    const body = await response.json();
    if (response.status === 503) throw new Unavailable(body.error);
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function askToken(refused) {
    $("token-form").hidden = false;
    $("token-error").hidden = !refused;
    $("main").hidden = true;
    setStatus("a token is needed", true);
    $("token").focus();
  }

  // A day or a span typed in wins over the list (top's YYYY-MM-DD[..YYYY-MM-DD] windows).
  const choice = () => ({ site: $("site").value || setup.site,
    window: $("window-days").value.trim() || $("window").value });
  const isLive = (win) => win !== "yesterday" && !/^\d{4}-/.test(win);

  async function load() {
    const { site, window } = choice();
    const top = (extra) => api("/api/top", { site, window, limit: 10, details: "true", ...extra });
    const [funnel, retention, summary, series, recent, ...reports] = await Promise.all([
      ...loadJourneys(site, window),
      top({ by: "path" }),
      api("/api/series", { site, window }),
      api("/api/recent", { site, limit: 20 }),
      ...setup.dimensions.filter((d) => d !== "path").map((by) => top({ by })),
      top({ by: "path", status: "404" }),
      top({ by: "path", status: "5xx" }),
    ]);
    return { reports: [summary, ...reports], series, recent: recent.recent, funnel, retention };
  }

  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      do {
        again = false;
        render(await load());
        $("main").hidden = false;
        $("token-form").hidden = true;
        const when = new Date().toLocaleTimeString("en-GB");
        setStatus((isLive(choice().window) ? "live · updated " : "updated ") + when, false);
      } while (again);
    } catch (error) {
      if (error instanceof Refused) askToken(token !== null);
      else if (error instanceof Unavailable) setStatus("Redis or the store is unreachable: " + error.message, true);
      else if (error instanceof TypeError) setStatus("server unreachable", true);
      else setStatus("error: " + error.message, true);
    } finally {
      refreshing = false;
    }
  }

  // Server-sent events read with fetch (EventSource cannot send the token): a `change`
  // event means new lines were counted for the site.
  let feed = null;
  async function follow() {
    if (feed) feed.abort();
    const { site, window } = choice();
    if (!isLive(window)) return;
    const mine = (feed = new AbortController());
    while (!mine.signal.aborted) {
      try {
        const headers = token ? { Authorization: "Bearer " + token } : {};
        const response = await fetch("/api/events?" + new URLSearchParams({ site }), { headers, signal: mine.signal });
        if (response.status === 401) { askToken(token !== null); return; }
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let text = "";
        let first = true;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = text.indexOf("\n\n")) >= 0) {
            const message = text.slice(0, cut);
            text = text.slice(cut + 2);
            if (message.startsWith("event: change")) {
              if (!first) refresh();
              first = false;
            } else if (message.startsWith("event: unavailable")) {
              setStatus("Redis is unreachable", true);
              first = false;
            }
          }
        }
      } catch (error) {
        if (mine.signal.aborted) return;
      }
      if (mine.signal.aborted) return;
      setStatus("server unreachable", true);
      await new Promise((done) => setTimeout(done, 2000));
      refresh();
    }
  }

  async function start() {
    for (const win of setup.windows) $("window").append(el("option", { value: win }, win));
    $("window").value = "today";
    $("site").append(el("option", { value: setup.site }, setup.site));
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      boot();
    });
    $("controls").addEventListener("change", () => { refresh(); follow(); });
    $("controls").addEventListener("submit", (event) => { event.preventDefault(); refresh(); follow(); });
    $("window").addEventListener("change", () => { $("window-days").value = ""; });
    await boot();
  }

  async function boot() {
    try {
      const { sites } = await api("/api/sites", {});
      const current = $("site").value;
      const names = [...new Set([setup.site, ...sites.map((row) => row.site)])].sort();
      $("site").replaceChildren(...names.map((s) => el("option", { value: s }, s)));
      $("site").value = current || setup.site;
    } catch (error) {
      if (error instanceof Refused) { askToken(token !== null); return; }
    }
    await refresh();
    follow();
  }

  if (setup.mode === "static") {
    document.title = setup.title;
    $("title").textContent = setup.title;
    $("controls").hidden = true;
    $("status").textContent = "";
    render(setup.data);
  } else {
    start();
  }
})();
