// socket-server dashboard: everything arrives from the primary's live feed
// (Server-Sent Events, /dashboard/api/feed); rooms and members are fetched on
// demand. Text from the server (room names, log lines) is only ever set with
// textContent, never parsed as HTML.

(() => {
  // A token given as ?token=… must not stay in the address bar.
  if (new URLSearchParams(location.search).has("token")) {
    history.replaceState(null, "", location.pathname);
  }

  const $ = (sel) => document.querySelector(sel);
  const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const rateFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const LEVELS = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
  const WINDOW_SECONDS = 600;
  const MAX_LOGS = 300;

  function setMetric(name, text) {
    const el = document.querySelector(`[data-metric="${name}"]`);
    if (el && el.textContent !== text) el.textContent = text;
  }
  function setApprox(name, approx) {
    const el = document.querySelector(`[data-approx="${name}"]`);
    if (el) el.hidden = !approx;
  }
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  const mb = (b) => (b === undefined ? "–" : `${(b / 1048576).toFixed(0)} MB`);
  function duration(s) {
    if (s === undefined) return "–";
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  // ---- chart (uPlot, served locally) --------------------------------------
  const series = [[], [], [], []]; // seconds, in/s, out/s, errors/s
  let plot;
  function chartSize() {
    const el = $("#chart");
    return { width: Math.max(300, el.clientWidth), height: 220 };
  }
  function makeChart() {
    if (typeof uPlot !== "function") return;
    plot = new uPlot(
      {
        ...chartSize(),
        scales: {
          // At least the last minute, so that a fresh chart reads in seconds.
          x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] },
          y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
        },
        series: [
          {},
          { label: "in /s", stroke: "#2a7de1", width: 2 },
          { label: "out /s", stroke: "#1a9e55", width: 2 },
          { label: "errors /s", stroke: "#d2382f", width: 2 },
        ],
        axes: [{}, { size: 60 }],
      },
      series,
      $("#chart"),
    );
    window.addEventListener("resize", () => plot.setSize(chartSize()));
  }
  function addPoints(points) {
    for (const [t, i, o, e] of points) {
      series[0].push(t / 1000);
      series[1].push(i);
      series[2].push(o);
      series[3].push(e);
    }
    const cutoff = Date.now() / 1000 - WINDOW_SECONDS;
    while (series[0].length > 0 && series[0][0] < cutoff) for (const s of series) s.shift();
    if (plot) plot.setData(series);
  }

  // ---- headline and workers -----------------------------------------------
  function showHeadline(h) {
    setMetric("connections", intFmt.format(h.connections));
    setMetric("users", intFmt.format(h.users));
    setApprox("users", !h.usersExact);
    setMetric("rooms", intFmt.format(h.rooms));
    setApprox("rooms", !h.roomsExact);
    setMetric("workers", intFmt.format(h.workers));
    $("#workers-total").textContent = `of ${h.workersTotal}`;
    setMetric("messages-in-per-second", rateFmt.format(h.messagesInPerSecond));
    setMetric("messages-out-per-second", rateFmt.format(h.messagesOutPerSecond));
    setMetric("errors-per-second", rateFmt.format(h.errorsPerSecond));
    $(".card.errors").classList.toggle("bad", h.errorsPerSecond > 0);
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }
  function showWorkers(rows) {
    const body = $("#workers tbody");
    const frag = document.createDocumentFragment();
    for (const w of rows) {
      const tr = document.createElement("tr");
      if (!w.up) tr.className = "down";
      cell(tr, String(w.worker));
      cell(tr, w.pid === undefined ? "–" : String(w.pid));
      cell(tr, w.up ? "up" : w.hung ? "hung: being replaced" : "not answering");
      cell(tr, w.connections === undefined ? "–" : intFmt.format(w.connections), "num");
      cell(tr, w.users === undefined ? "–" : intFmt.format(w.users), "num");
      cell(tr, w.rooms === undefined ? "–" : intFmt.format(w.rooms), "num");
      cell(tr, w.lagMs === undefined ? "–" : `${w.lagMs} ms`, "num");
      cell(tr, w.elu === undefined ? "–" : `${Math.round(w.elu * 100)} %`, "num");
      cell(tr, mb(w.rssBytes), "num");
      cell(tr, mb(w.heapUsedBytes), "num");
      cell(tr, duration(w.uptimeSeconds), "num");
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }
  // Hung workers the primary killed and replaced (newest first, at most 5 shown).
  function showReplaced(list) {
    const p = $("#replaced");
    p.hidden = !list || list.length === 0;
    if (p.hidden) return;
    p.textContent = `Replaced for not answering: ${list
      .slice(-5)
      .reverse()
      .map(
        (r) =>
          `worker ${r.worker} (pid ${r.pid}) at ${new Date(r.at).toLocaleTimeString()}, silent ${intFmt.format(r.silentMs)} ms`,
      )
      .join("; ")}`;
  }

  // ---- logs -----------------------------------------------------------------
  const logs = [];
  function addLogs(entries) {
    for (const e of entries) logs.push(e);
    if (logs.length > MAX_LOGS) logs.splice(0, logs.length - MAX_LOGS);
    renderLogs();
  }
  function renderLogs() {
    const min = Number($("#log-level").value);
    const frag = document.createDocumentFragment();
    for (let i = logs.length - 1; i >= 0; i--) {
      const e = logs[i];
      if (e.level < min) continue;
      const li = document.createElement("li");
      li.className = `lvl-${LEVELS[e.level] || "info"}`;
      li.title = e.line;
      const time = document.createElement("time");
      time.textContent = new Date(e.time).toLocaleTimeString();
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = e.worker === "primary" ? "primary" : `worker ${e.worker}`;
      const lvl = document.createElement("span");
      lvl.className = "lvl";
      lvl.textContent = LEVELS[e.level] || String(e.level);
      const msg = document.createElement("span");
      msg.className = "msg";
      msg.textContent = e.msg;
      li.append(time, who, lvl, msg);
      frag.appendChild(li);
    }
    $("#logs").replaceChildren(frag);
  }
  $("#log-level").addEventListener("change", renderLogs);

  // ---- rooms and members ------------------------------------------------------
  let roomsAfter = "";
  let nextAfter;
  async function getJson(url) {
    const res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (res.status === 401) {
      location.reload();
      throw new Error("logged out");
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  }
  async function loadRooms() {
    const q = new URLSearchParams({ limit: "50" });
    const prefix = $("#rooms-prefix").value.trim();
    if (prefix) q.set("prefix", prefix);
    if (roomsAfter) q.set("after", roomsAfter);
    if ($("#rooms-users").checked) q.set("userRooms", "1");
    try {
      const page = await getJson(`/dashboard/api/rooms?${q}`);
      const frag = document.createDocumentFragment();
      for (const r of page.rooms) {
        const tr = document.createElement("tr");
        const td = cell(tr, "");
        const a = document.createElement("button");
        a.type = "button";
        a.className = "link";
        a.textContent = r.room;
        a.addEventListener("click", () => loadMembers(r.room));
        td.appendChild(a);
        cell(tr, intFmt.format(r.sockets), "num");
        // Users present (PRESENCE_ROOMS only): those within their leave delay included.
        const present = cell(tr, r.present === undefined ? "" : intFmt.format(r.present), "num");
        if (r.present !== undefined) present.dataset.presence = r.room;
        frag.appendChild(tr);
      }
      if (page.rooms.length === 0) {
        const tr = document.createElement("tr");
        cell(tr, roomsAfter ? "no more rooms" : "no rooms", "muted").colSpan = 3;
        frag.appendChild(tr);
      }
      $("#rooms tbody").replaceChildren(frag);
      nextAfter = page.nextAfter;
      $("#rooms-next").disabled = nextAfter === undefined;
      $("#rooms-total").textContent =
        `${intFmt.format(page.rooms.length)} shown` +
        (nextAfter === undefined ? "" : ", more on the next page");
    } catch (err) {
      $("#rooms-total").textContent = `rooms unavailable (${err.message})`;
    }
  }
  async function loadMembers(room) {
    $("#members").hidden = false;
    $("#members-room").textContent = room;
    $("#members-summary").textContent = "loading…";
    try {
      const r = await getJson(`/dashboard/api/rooms/${encodeURIComponent(room)}`);
      $("#members-summary").textContent =
        `${intFmt.format(r.users)} users, ${intFmt.format(r.sockets)} sockets` +
        (r.present === undefined ? "" : `, ${intFmt.format(r.present)} present`) +
        (r.truncated ? ` (first ${r.members.length} shown)` : "");
      const frag = document.createDocumentFragment();
      for (const m of r.members) {
        const tr = document.createElement("tr");
        cell(tr, m.userId);
        cell(tr, intFmt.format(m.sockets), "num");
        frag.appendChild(tr);
      }
      $("#members-body").replaceChildren(frag);
    } catch (err) {
      $("#members-summary").textContent = `members unavailable (${err.message})`;
    }
  }
  $("#rooms-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    roomsAfter = "";
    loadRooms();
  });
  $("#rooms-first").addEventListener("click", () => {
    roomsAfter = "";
    loadRooms();
  });
  $("#rooms-next").addEventListener("click", () => {
    if (nextAfter === undefined) return;
    roomsAfter = nextAfter;
    loadRooms();
  });
  $("#members-close").addEventListener("click", () => {
    $("#members").hidden = true;
  });
  // The rooms table refreshes itself every few seconds while the tab is visible.
  setInterval(() => {
    if (document.visibilityState === "visible") loadRooms();
  }, 5000);

  // ---- live feed --------------------------------------------------------------
  function connectFeed() {
    const state = $("#feed-state");
    const es = new EventSource("/dashboard/api/feed");
    es.addEventListener("open", () => {
      state.textContent = "live";
      state.className = "state live";
    });
    es.addEventListener("snapshot", (ev) => {
      const s = JSON.parse(ev.data);
      for (const sr of series) sr.length = 0;
      addPoints(s.history || []);
      logs.length = 0;
      addLogs(s.logs || []);
      if (s.headline) showHeadline(s.headline);
      if (s.workers) showWorkers(s.workers);
      showReplaced(s.replaced);
    });
    es.addEventListener("update", (ev) => {
      const u = JSON.parse(ev.data);
      showHeadline(u.headline);
      showWorkers(u.workers);
      showReplaced(u.replaced);
      addPoints([u.point]);
      if (u.logs.length) addLogs(u.logs);
    });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (401 after the session expired, or too many dashboards):
        // reload, which shows the login form if the session is gone.
        state.textContent = "disconnected";
        state.className = "state down";
        setTimeout(() => location.reload(), 5000);
      } else {
        state.textContent = "reconnecting…";
        state.className = "state down";
      }
    });
  }

  makeChart();
  connectFeed();
  loadRooms();
})();
