"use strict";
// The viewer of a run's page: it draws the record inside the page (the JSON in #data) as a
// timeline, with filters, zoom and links from events to log lines. No library, no network.
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  const FAULT_COLOURS = {
    "fsync-stall": "#e74c3c", "fsync-eio": "#c0392b", "crash": "#7f0000", "stop": "#4d0000",
    "slow-disk": "#f39c12", "busy-disk": "#d35400", "busy-cpu": "#a04000", "disk-full": "#b9770e",
    "bitflip": "#6c3483", "read-eio": "#884ea0", "partition": "#2471a3", "packet-loss": "#5dade2",
    "net-latency": "#85c1e9", "clock-skew": "#17a589", "clock-drift": "#48c9b0", "pause": "#566573",
    "flood": "#922b21"
  };
  const LANE_H = 34, ROW_H = 16, LEFT = 170, RIGHT = 12, AXIS_H = 26;
  const KINDS = Array.from(new Set(D.ops.map(o => o.kind))).sort();
  const LEVELS = ["ERROR", "WARN", "INFO"];
  const MAX_LOG_ROWS = 1000, MAX_REQUESTS = 2000, MAX_MESSAGES = 3000, MAX_PARTITION_ROWS = 100, MAX_CLIENT_ROWS = 80;

  const nodeColour = {};
  D.nodes.forEach((n, i) => { nodeColour[n] = PALETTE[i % PALETTE.length]; });
  // The workload's topic: the topic (not internal) most partitions of which were led.
  const topicCount = {};
  D.roles.forEach(r => {
    const t = r.partition.slice(0, r.partition.lastIndexOf("/"));
    if (!t.startsWith("__")) topicCount[t] = (topicCount[t] || 0) + 1;
  });
  const topics = Object.keys(topicCount).sort((a, b) => topicCount[b] - topicCount[a]);
  const workloadTopic = topics.length ? topics[0] : null;
  const partName = p => (p === null || p === undefined) ? null :
    (workloadTopic ? workloadTopic + "/" + p : "partition " + p);
  const internal = name => name.startsWith("__");

  const allPartitions = Array.from(new Set(
    D.roles.map(r => r.partition)
      .concat(D.ops.filter(o => o.partition !== null).map(o => partName(o.partition)))
      .concat(D.told.map(t => partName(t[1])))
  )).sort((a, b) => {
    const [ta, pa] = [a.slice(0, a.lastIndexOf("/")), +a.slice(a.lastIndexOf("/") + 1)];
    const [tb, pb] = [b.slice(0, b.lastIndexOf("/")), +b.slice(b.lastIndexOf("/") + 1)];
    return ta === tb ? pa - pb : (ta < tb ? -1 : 1);
  });
  const allClients = Array.from(new Set(D.ops.map(o => o.client))).sort((a, b) =>
    a.localeCompare(b, undefined, { numeric: true }));
  const related = new Set(D.finding ? D.finding.ops : []);
  const relatedLogs = new Set(D.finding ? D.finding.logs : []);

  // What the reader chose: the window and the filters (also kept in the address's #).
  const state = {
    t0: 0, t1: Math.max(D.duration_s, 1),
    nodes: new Set(D.nodes), kinds: new Set(KINDS), levels: new Set(LEVELS),
    clients: new Set(allClients), partitions: new Set(allPartitions),
    requests: false, messages: false, internal: false, selected: null
  };

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function sv(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const fmt = t => (Math.round(t * 1000) / 1000).toFixed(3);

  // ---- the head, the finding, the bounds ----
  function head() {
    const h = document.getElementById("head");
    h.appendChild(el("h1", {}, D.scenario + " — seed " + D.seed + " (" + D.world + ")"));
    const meta = el("div", { class: "meta" });
    const badge = el("span", { class: "badge " + D.outcome, id: "outcome" }, D.outcome);
    meta.appendChild(badge);
    meta.appendChild(el("span", {}, "expected: " + D.expected + (D.as_expected ? " (as expected)" : " (NOT as expected)")));
    meta.appendChild(el("span", {}, "run: " + fmt(D.duration_s) + " s"));
    meta.appendChild(el("span", { class: "mono" }, "trace " + D.trace_hash));
    h.appendChild(meta);
    if (D.description) h.appendChild(el("p", {}, D.description));
    const replay = el("p", {}, "Replay: ");
    replay.appendChild(el("code", { id: "replay" }, D.replay));
    h.appendChild(replay);
    const f = document.getElementById("finding");
    if (D.finding) {
      f.hidden = false;
      f.appendChild(el("h2", {}, "Finding (" + D.finding.kind + ")"));
      f.appendChild(el("p", { id: "finding-text" }, D.finding.text));
      f.appendChild(el("pre", { id: "chain" }, D.finding.chain.join("\n")));
      if (D.findings.length > 1) f.appendChild(el("p", {}, (D.findings.length - 1) + " more finding(s): " + D.findings.slice(1, 4).join(" · ")));
      f.appendChild(el("p", { class: "hint" }, "Outlined in red on the timeline: the operations it concerns (" +
        D.finding.ops.length + "); marked in the log: its lines (" + D.finding.logs.length + ")."));
    }
    const b = D.bounds;
    document.getElementById("bounds").textContent =
      "Kept " + b.ops_kept + " of " + b.ops_total + " operations and " + b.logs_kept + " of " +
      b.logs_total + " log lines" + (b.messages_total ? ", " + b.messages_kept + " of " + b.messages_total + " frames between nodes" : "") + (b.logs_not_captured ? " (" + b.logs_not_captured + " more not captured)" : "") +
      "; whole between " + fmt(b.whole_from_s) + " and " + fmt(b.whole_until_s) + " s, sampled elsewhere.";
  }

  // ---- filters ----
  function checkboxes(id, values, set, label) {
    const box = document.getElementById(id);
    values.forEach(v => {
      const l = el("label");
      const c = el("input", { type: "checkbox", "data-value": v });
      c.checked = set.has(v);
      c.addEventListener("change", () => {
        if (c.checked) set.add(v); else set.delete(v);
        update();
      });
      l.appendChild(c);
      l.appendChild(document.createTextNode(" " + (label ? label(v) : v)));
      box.appendChild(l);
    });
  }
  function syncCheckboxes() {
    const pairs = [["f-nodes", state.nodes], ["f-kinds", state.kinds], ["f-levels", state.levels],
      ["f-clients", state.clients], ["f-partitions", state.partitions]];
    pairs.forEach(([id, set]) => {
      document.querySelectorAll("#" + id + " input").forEach(c => { c.checked = set.has(c.dataset.value); });
    });
    document.getElementById("requests").checked = state.requests;
    document.getElementById("messages").checked = state.messages;
    document.getElementById("internal").checked = state.internal;
  }

  // ---- the address's # ----
  function toHash() {
    const parts = ["t=" + fmt(state.t0) + "~" + fmt(state.t1)];
    const add = (k, set, all) => { if (set.size !== all.length) parts.push(k + "=" + Array.from(set).map(encodeURIComponent).join(",")); };
    add("nodes", state.nodes, D.nodes);
    add("kinds", state.kinds, KINDS);
    add("levels", state.levels, LEVELS);
    add("clients", state.clients, allClients);
    add("partitions", state.partitions, allPartitions);
    if (state.requests) parts.push("requests=1");
    if (state.messages) parts.push("messages=1");
    if (state.internal) parts.push("internal=1");
    const h = "#" + parts.join("&");
    if (location.hash !== h) history.replaceState(null, "", h);
  }
  function fromHash() {
    const h = location.hash.replace(/^#/, "");
    if (!h) return false;
    h.split("&").forEach(p => {
      const i = p.indexOf("=");
      if (i < 0) return;
      const k = p.slice(0, i), v = p.slice(i + 1);
      const list = () => new Set(v === "" ? [] : v.split(",").map(decodeURIComponent));
      if (k === "t") {
        const [a, b] = v.split("~").map(Number);
        if (isFinite(a) && isFinite(b) && b > a) { state.t0 = a; state.t1 = b; }
      } else if (k === "nodes") state.nodes = list();
      else if (k === "kinds") state.kinds = list();
      else if (k === "levels") state.levels = list();
      else if (k === "clients") state.clients = list();
      else if (k === "partitions") state.partitions = list();
      else if (k === "requests") state.requests = v === "1";
      else if (k === "messages") state.messages = v === "1";
      else if (k === "internal") state.internal = v === "1";
    });
    return true;
  }

  // ---- what passes the filters ----
  const opVisible = o => state.kinds.has(o.kind) && state.clients.has(o.client) &&
    (o.node === null || state.nodes.has(o.node)) &&
    (o.partition === null || state.partitions.has(partName(o.partition)));
  const logVisible = l => state.nodes.has(l.node) && state.levels.has(l.level === "ERROR" || l.level === "WARN" ? l.level : "INFO") &&
    (l.partition === null || state.partitions.has(l.partition) || !allPartitions.includes(l.partition));
  const inWindow = (a, b) => b >= state.t0 && a <= state.t1;

  // ---- the timeline ----
  let width = 1000;
  const x = t => LEFT + (t - state.t0) / (state.t1 - state.t0) * (width - LEFT - RIGHT);
  const tAt = px => state.t0 + (px - LEFT) / (width - LEFT - RIGHT) * (state.t1 - state.t0);

  function band(g, a, b, y, h, attrs) {
    const x0 = Math.max(x(a), LEFT), x1 = Math.min(x(b), width - RIGHT);
    if (x1 < LEFT || x0 > width - RIGHT) return null;
    const r = sv("rect", Object.assign({ x: x0, y: y, width: Math.max(x1 - x0, 1.5), height: h }, attrs || {}));
    g.appendChild(r);
    return r;
  }
  function clickable(node, what) {
    node.classList.add("ev");
    node.addEventListener("click", ev => { ev.stopPropagation(); select(what, node); });
    return node;
  }

  function draw() {
    const svg = document.getElementById("timeline");
    width = Math.max(document.getElementById("timeline-box").clientWidth, 600);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const g = sv("g");
    svg.appendChild(g);
    let y = AXIS_H;
    // Time axis.
    const span = state.t1 - state.t0;
    const step = Math.pow(10, Math.floor(Math.log10(span / 8)));
    const tick = [1, 2, 5, 10].map(m => m * step).find(s => span / s <= 10) || step * 10;
    for (let t = Math.ceil(state.t0 / tick) * tick; t <= state.t1; t += tick) {
      g.appendChild(sv("line", { x1: x(t), x2: x(t), y1: AXIS_H - 6, y2: 100000, stroke: "#eee" }));
      g.appendChild(sv("text", { x: x(t) + 2, y: AXIS_H - 10 }, (Math.round(t * 1000) / 1000) + " s"));
    }
    const rowsTop = y;
    const nodeY = {};
    // Nodes: partitions led, faults, warnings.
    g.appendChild(sv("text", { x: 4, y: y + 12, class: "section" }, "Nodes"));
    y += 16;
    D.nodes.filter(n => state.nodes.has(n)).forEach(n => {
      nodeY[n] = y;
      g.appendChild(sv("rect", { x: LEFT, y: y, width: width - LEFT - RIGHT, height: LANE_H - 4, class: "lane-bg" }));
      const label = sv("text", { x: 4, y: y + 14, fill: nodeColour[n], "data-lane": n }, n);
      label.setAttribute("style", "fill:" + nodeColour[n] + ";font-weight:600");
      g.appendChild(label);
      // Faults on this node (or on the network: every lane).
      D.faults.forEach(f => {
        if (f.node !== null && f.node !== n) return;
        if (!inWindow(f.from_s, f.until_s)) return;
        const r = band(g, f.from_s, f.until_s, y, LANE_H - 4, { fill: FAULT_COLOURS[f.kind] || "#999", opacity: 0.28, "data-kind": "fault" });
        if (r) {
          r.appendChild(sv("title", {}, f.kind + ": " + f.what + " (" + f.from_s + "–" + f.until_s + " s)"));
          clickable(r, { type: "fault", fault: f, node: n });
        }
      });
      // Raft leaderships held: a bar per partition led, stacked thin.
      const roles = D.roles.filter(r => r.node === n && inWindow(r.from_s, r.until_s) &&
        state.partitions.has(r.partition) && (state.internal || !internal(r.partition)));
      const parts = Array.from(new Set(roles.map(r => r.partition)));
      const h = Math.max(Math.min((LANE_H - 8) / Math.max(parts.length, 1), 6), 1);
      roles.forEach(r => {
        const i = parts.indexOf(r.partition);
        const b = band(g, r.from_s, r.until_s, y + 2 + i * h, Math.max(h - 0.5, 0.8), { fill: nodeColour[n], opacity: 0.75, "data-kind": "role" });
        if (b) {
          b.appendChild(sv("title", {}, n + " leads " + r.partition + " (term " + r.term + ") " + fmt(r.from_s) + "–" + fmt(r.until_s) + " s"));
          clickable(b, { type: "role", role: r });
        }
      });
      // Warnings and errors.
      D.logs.forEach(l => {
        if (l.node !== n || (l.level !== "WARN" && l.level !== "ERROR") || !state.levels.has(l.level)) return;
        if (l.t < state.t0 || l.t > state.t1) return;
        const m = sv("rect", { x: x(l.t) - 1, y: y + LANE_H - 10, width: 2.5, height: 6, fill: l.level === "ERROR" ? "#c0392b" : "#f1c40f", "data-kind": "log" });
        m.appendChild(sv("title", {}, l.level + " " + fmt(l.t) + " s: " + l.text));
        g.appendChild(clickable(m, { type: "log", log: l }));
      });
      y += LANE_H;
    });
    // Partitions: their Raft leader over time, and the leaders the clients were told of.
    const prows = allPartitions.filter(p => state.partitions.has(p) && (state.internal || !internal(p))).slice(0, MAX_PARTITION_ROWS);
    y += 6;
    g.appendChild(sv("text", { x: 4, y: y + 12, class: "section" }, "Partitions (Raft leader)"));
    y += 16;
    prows.forEach(p => {
      g.appendChild(sv("rect", { x: LEFT, y: y, width: width - LEFT - RIGHT, height: ROW_H - 3, class: "lane-bg" }));
      g.appendChild(sv("text", { x: 4, y: y + 11 }, p));
      D.roles.forEach(r => {
        if (r.partition !== p || !state.nodes.has(r.node) || !inWindow(r.from_s, r.until_s)) return;
        const b = band(g, r.from_s, r.until_s, y, ROW_H - 3, { fill: nodeColour[r.node], opacity: 0.8, "data-kind": "role" });
        if (b) {
          b.appendChild(sv("title", {}, r.node + " leads " + p + " (term " + r.term + ")"));
          clickable(b, { type: "role", role: r });
        }
      });
      D.told.forEach(([t, part, leader]) => {
        if (partName(part) !== p || t < state.t0 || t > state.t1) return;
        const tri = sv("path", { d: "M" + x(t) + " " + (y + ROW_H - 3) + " l-4 5 l8 0 z", fill: leader ? nodeColour[leader] : "#000", "data-kind": "told" });
        tri.appendChild(sv("title", {}, fmt(t) + " s: clients told the leader is " + (leader || "none")));
        g.appendChild(clickable(tri, { type: "told", t: t, partition: p, leader: leader }));
      });
      y += ROW_H;
    });
    // Clients: their operations.
    y += 6;
    g.appendChild(sv("text", { x: 4, y: y + 12, class: "section" }, "Clients"));
    y += 16;
    const clientY = {};
    const ops = D.ops.filter(o => opVisible(o) && inWindow(o.t0, o.t1));
    allClients.filter(c => state.clients.has(c)).slice(0, MAX_CLIENT_ROWS).forEach(c => {
      clientY[c] = y;
      g.appendChild(sv("rect", { x: LEFT, y: y, width: width - LEFT - RIGHT, height: ROW_H - 3, class: "lane-bg" }));
      g.appendChild(sv("text", { x: 4, y: y + 11 }, c));
      y += ROW_H;
    });
    ops.forEach(o => {
      const cy = clientY[o.client];
      if (cy === undefined) return;
      const r = band(g, o.t0, o.t1, cy + 1, ROW_H - 5, { class: o.outcome + (related.has(o.id) ? " related" : ""), "data-kind": o.kind, "data-op": o.id, "data-client": o.client, "data-text": o.text });
      if (r) {
        r.appendChild(sv("title", {}, o.text));
        clickable(r, { type: "op", op: o });
      }
    });
    // Every operation's density (the sampled-out ones too).
    y += 6;
    g.appendChild(sv("text", { x: 4, y: y + 12 }, "all operations"));
    const maxD = Math.max(1, ...D.density.map(d => d[1]));
    const dw = D.density.length > 1 ? D.density[1][0] - D.density[0][0] : 1;
    D.density.forEach(([t, n]) => {
      if (!n || !inWindow(t, t + dw)) return;
      const h = 14 * n / maxD;
      band(g, t, t + dw, y + 15 - h, h, { fill: "#95a5a6" });
    });
    y += 20;
    // Requests from clients to brokers, on demand.
    if (state.requests) {
      ops.filter(o => o.node !== null && nodeY[o.node] !== undefined && clientY[o.client] !== undefined)
        .slice(0, MAX_REQUESTS).forEach(o => {
          g.appendChild(sv("line", {
            x1: x(o.t0), y1: clientY[o.client] + 6, x2: x((o.t0 + o.t1) / 2), y2: nodeY[o.node] + LANE_H / 2,
            stroke: nodeColour[o.node], "stroke-width": 0.6, opacity: 0.6, "data-kind": "request"
          }));
        });
    }
    // Frames of Raft messages between nodes, on demand: from the sender's lane to the
    // receiver's, at the moment it was sent.
    if (state.messages) {
      D.messages.filter(m => m.t >= state.t0 && m.t <= state.t1 && nodeY[m.from] !== undefined && nodeY[m.to] !== undefined)
        .slice(0, MAX_MESSAGES).forEach(m => {
          const l = sv("line", {
            x1: x(m.t), y1: nodeY[m.from] + LANE_H / 2, x2: x(m.t) + 3, y2: nodeY[m.to] + LANE_H / 2,
            stroke: nodeColour[m.from], "stroke-width": Math.min(0.5 + Math.log2(1 + m.messages) / 2, 3), opacity: 0.7, "data-kind": "message"
          });
          l.appendChild(sv("title", {}, fmt(m.t) + " s: " + m.from + " → " + m.to + ", " + m.messages + " Raft message(s), " + m.bytes + " bytes"));
          g.appendChild(clickable(l, { type: "message", message: m }));
        });
    }
    // The finding: its span, and the moment it names.
    if (D.finding) {
      const f = D.finding;
      const r = band(g, f.from_s, Math.max(f.until_s, f.from_s + (state.t1 - state.t0) / 400), rowsTop, y - rowsTop, { fill: "#c0392b", opacity: 0.08, id: "finding-band" });
      if (r) r.appendChild(sv("title", {}, "the finding's span: " + f.text));
      const at = f.at_s !== null ? f.at_s : f.until_s;
      if (at >= state.t0 && at <= state.t1) {
        g.appendChild(sv("line", { x1: x(at), x2: x(at), y1: rowsTop, y2: y, stroke: "#c0392b", "stroke-width": 2, id: "finding-line" }));
      }
    }
    svg.setAttribute("height", y + 4);
    svg.setAttribute("viewBox", "0 0 " + width + " " + (y + 4));
    document.getElementById("from").value = fmt(state.t0);
    document.getElementById("to").value = fmt(state.t1);
  }

  // ---- the log table ----
  function logs() {
    const body = document.querySelector("#logs tbody");
    while (body.firstChild) body.removeChild(body.firstChild);
    const shown = D.logs.filter(l => logVisible(l) && l.t >= state.t0 && l.t <= state.t1);
    shown.slice(0, MAX_LOG_ROWS).forEach(l => {
      const tr = el("tr", { id: "log-" + l.id, class: l.level + (relatedLogs.has(l.id) ? " about" : "") });
      tr.appendChild(el("td", {}, fmt(l.t)));
      const node = el("td", {}, l.node);
      node.setAttribute("style", "color:" + (nodeColour[l.node] || "#000"));
      tr.appendChild(node);
      tr.appendChild(el("td", {}, l.level));
      tr.appendChild(el("td", { title: l.target }, l.text));
      tr.addEventListener("click", () => select({ type: "log", log: l }, null));
      body.appendChild(tr);
    });
    document.getElementById("log-count").textContent = "(" + Math.min(shown.length, MAX_LOG_ROWS) + " shown of " + shown.length + " in the window)";
  }

  // ---- an event chosen: what it is, and its log lines ----
  function linesNear(node, a, b, partition) {
    return D.logs.filter(l => (node === null || l.node === node) && l.t >= a && l.t <= b &&
      (partition === undefined || l.partition === partition)).slice(0, 60);
  }
  function select(what, svgNode) {
    document.querySelectorAll("#timeline .selected").forEach(n => n.classList.remove("selected"));
    if (svgNode) svgNode.classList.add("selected");
    state.selected = what;
    const d = document.getElementById("details");
    while (d.firstChild) d.removeChild(d.firstChild);
    let title = "", text = "", lines = [];
    if (what.type === "op") {
      const o = what.op;
      title = o.kind + " by " + o.client + (o.node ? " to " + o.node : "") + ": " + o.outcome + (related.has(o.id) ? " (about the finding)" : "");
      text = o.text;
      lines = linesNear(o.node, o.t0 - 0.05, o.t1 + 0.05);
    } else if (what.type === "fault") {
      const f = what.fault;
      title = "fault " + f.kind + (f.node ? " on " + f.node : "") + ", " + f.from_s + "–" + f.until_s + " s";
      text = f.what;
      lines = linesNear(f.node, f.from_s - 0.5, f.until_s + 0.5).filter(l => l.level !== "INFO" || l.partition === null).slice(0, 60);
    } else if (what.type === "role") {
      const r = what.role;
      title = r.node + " led " + r.partition + " in term " + r.term;
      text = fmt(r.from_s) + "–" + fmt(r.until_s) + " s";
      lines = linesNear(r.node, r.from_s - 0.5, r.from_s + 0.5, r.partition).concat(linesNear(r.node, r.until_s - 0.5, r.until_s + 0.5, r.partition));
    } else if (what.type === "message") {
      const m = what.message;
      title = m.from + " sent " + m.to + " " + m.messages + " Raft message(s)";
      text = fmt(m.t) + " s, " + m.bytes + " bytes";
      lines = linesNear(m.from, m.t - 0.05, m.t + 0.05).concat(linesNear(m.to, m.t, m.t + 0.1));
    } else if (what.type === "told") {
      title = "clients told " + what.partition + "'s leader is " + (what.leader || "none");
      text = fmt(what.t) + " s";
      lines = linesNear(null, what.t - 1, what.t + 0.1, what.partition);
    } else if (what.type === "log") {
      const l = what.log;
      title = l.level + " on " + l.node + " at " + fmt(l.t) + " s";
      text = l.target + ": " + l.text;
      lines = [l];
      if (l.t < state.t0 || l.t > state.t1) {
        const half = (state.t1 - state.t0) / 2;
        setWindow(l.t - half, l.t + half);
      }
    }
    d.appendChild(el("h3", { id: "details-title" }, title));
    d.appendChild(el("pre", {}, text));
    const p = el("p", {}, lines.length ? "Log lines (" + lines.length + "): " : "No log line of it was kept.");
    lines.forEach(l => {
      const a = el("a", { href: "#log-" + l.id, "data-log": l.id }, fmt(l.t) + " " + l.node);
      a.addEventListener("click", ev => { ev.preventDefault(); showLog(l); });
      p.appendChild(a);
      p.appendChild(document.createTextNode(" "));
    });
    d.appendChild(p);
  }
  function showLog(l) {
    document.querySelectorAll("#logs tr.hl").forEach(r => r.classList.remove("hl"));
    let row = document.getElementById("log-" + l.id);
    if (!row) {
      // Not shown by the filters: show its node and level, around it.
      state.nodes.add(l.node);
      state.levels.add(l.level === "ERROR" || l.level === "WARN" ? l.level : "INFO");
      if (l.t < state.t0 || l.t > state.t1) {
        const half = Math.min((state.t1 - state.t0) / 2, 5);
        state.t0 = l.t - half; state.t1 = l.t + half;
      }
      syncCheckboxes();
      update();
      row = document.getElementById("log-" + l.id);
    }
    if (row) {
      row.classList.add("hl");
      row.scrollIntoView({ block: "center" });
    }
  }

  // ---- zoom and move ----
  function setWindow(a, b) {
    const min = 0.001;
    if (b - a < min) { const m = (a + b) / 2; a = m - min / 2; b = m + min / 2; }
    state.t0 = a; state.t1 = b;
    update();
  }
  function zoom(factor, at) {
    const c = at === undefined ? (state.t0 + state.t1) / 2 : at;
    setWindow(c - (c - state.t0) * factor, c + (state.t1 - c) * factor);
  }
  function toFinding() {
    if (!D.finding) return;
    const f = D.finding;
    const pad = Math.max((f.until_s - f.from_s) * 0.3, 2);
    setWindow(f.from_s - pad, f.until_s + pad);
  }
  function wire() {
    document.getElementById("fit").addEventListener("click", () => setWindow(0, Math.max(D.duration_s, 1)));
    document.getElementById("to-finding").addEventListener("click", toFinding);
    document.getElementById("to-finding").disabled = !D.finding;
    document.getElementById("zoom-in").addEventListener("click", () => zoom(0.5));
    document.getElementById("zoom-out").addEventListener("click", () => zoom(2));
    const bound = () => {
      const a = Number(document.getElementById("from").value), b = Number(document.getElementById("to").value);
      if (isFinite(a) && isFinite(b) && b > a) setWindow(a, b);
    };
    document.getElementById("from").addEventListener("change", bound);
    document.getElementById("to").addEventListener("change", bound);
    document.getElementById("requests").addEventListener("change", e => { state.requests = e.target.checked; update(); });
    document.getElementById("messages").addEventListener("change", e => { state.messages = e.target.checked; update(); });
    document.getElementById("messages").disabled = D.messages.length === 0;
    document.getElementById("internal").addEventListener("change", e => { state.internal = e.target.checked; update(); });
    const box = document.getElementById("timeline-box");
    const svg = document.getElementById("timeline");
    const svgX = ev => (ev.clientX - svg.getBoundingClientRect().left) * width / svg.getBoundingClientRect().width;
    box.addEventListener("wheel", ev => {
      ev.preventDefault();
      zoom(ev.deltaY > 0 ? 1.25 : 0.8, tAt(svgX(ev)));
    }, { passive: false });
    let drag = null;
    box.addEventListener("mousedown", ev => { drag = { x: svgX(ev), t0: state.t0, t1: state.t1 }; });
    window.addEventListener("mouseup", () => { drag = null; });
    window.addEventListener("mousemove", ev => {
      if (!drag) return;
      const dt = (svgX(ev) - drag.x) / (width - LEFT - RIGHT) * (drag.t1 - drag.t0);
      if (Math.abs(dt) > 0) { state.t0 = drag.t0 - dt; state.t1 = drag.t1 - dt; update(); }
    });
    window.addEventListener("resize", () => draw());
  }

  let pending = false;
  function update() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); logs(); toHash(); });
  }

  head();
  checkboxes("f-nodes", D.nodes, state.nodes);
  checkboxes("f-kinds", KINDS, state.kinds);
  checkboxes("f-levels", LEVELS, state.levels);
  checkboxes("f-clients", allClients, state.clients);
  checkboxes("f-partitions", allPartitions, state.partitions);
  wire();
  if (!fromHash() && D.finding) {
    const f = D.finding;
    const pad = Math.max((f.until_s - f.from_s) * 0.3, 2);
    state.t0 = Math.max(0, f.from_s - pad); state.t1 = f.until_s + pad;
  }
  syncCheckboxes();
  draw();
  logs();
  document.body.setAttribute("data-ready", "1");
})();
